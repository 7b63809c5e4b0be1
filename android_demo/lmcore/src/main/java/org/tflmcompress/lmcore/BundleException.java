package org.tflmcompress.lmcore;

/**
 * A bundle written by {@code scripts/convert.py} is missing, malformed or inconsistent.
 *
 * <p>The message names the file and says what to fix; apps show it as it is.
 */
public final class BundleException extends Exception {
  private static final long serialVersionUID = 1L;

  public BundleException(String message) {
    super(message);
  }
}
