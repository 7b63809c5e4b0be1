package org.tflmcompress.lmcore;

import java.io.File;
import java.io.FileInputStream;
import java.io.FileNotFoundException;
import java.io.IOException;
import java.io.InputStream;

/**
 * The files {@code scripts/convert.py} writes for apps: {@code model_meta.json}, the vocabulary it
 * names, and the {@code .tflite} it names (opened by the runtime, not here).
 */
public final class Bundle {
  /** Where the bundle's files come from: a folder, or an Android APK's assets. */
  public interface Files {
    /** Opens {@code name}; throws FileNotFoundException if there is no such file. */
    InputStream open(String name) throws IOException;
  }

  private final ModelMeta meta;
  private final Vocabulary vocab;

  public Bundle(ModelMeta meta, Vocabulary vocab) {
    this.meta = meta;
    this.vocab = vocab;
  }

  /**
   * Reads and cross-checks the meta file and the vocabulary.
   *
   * @param where the folder or "assets", for messages
   */
  public static Bundle load(Files files, String where) throws IOException, BundleException {
    String metaPath = where + "/" + ModelMeta.FILE_NAME;
    ModelMeta meta = ModelMeta.parse(Utf8.decode(read(files, ModelMeta.FILE_NAME, where), metaPath),
        metaPath);
    String vocabPath = where + "/" + meta.getVocabFile();
    Vocabulary vocab = Vocabulary.parse(read(files, meta.getVocabFile(), where), vocabPath);
    vocab.checkMatches(meta, vocabPath);
    return new Bundle(meta, vocab);
  }

  /** Reads the bundle in a folder. */
  public static Bundle loadDirectory(final File dir) throws IOException, BundleException {
    if (!dir.isDirectory()) {
      throw new BundleException("bundle folder not found: " + dir);
    }
    return load(new Files() {
      @Override
      public InputStream open(String name) throws IOException {
        return new FileInputStream(new File(dir, name));
      }
    }, dir.getPath());
  }

  private static byte[] read(Files files, String name, String where)
      throws IOException, BundleException {
    InputStream in;
    try {
      in = files.open(name);
    } catch (FileNotFoundException e) {
      throw new BundleException(where + " has no " + name + ": put the whole folder that "
          + "scripts/convert.py wrote there (model_meta.json, the .tflite and vocab.txt; "
          + "android_demo/copy_bundle.sh BUNDLE_DIR does it for the app)");
    }
    try {
      return Utf8.readAll(in);
    } finally {
      in.close();
    }
  }

  public ModelMeta getMeta() {
    return meta;
  }

  public Vocabulary getVocabulary() {
    return vocab;
  }
}
