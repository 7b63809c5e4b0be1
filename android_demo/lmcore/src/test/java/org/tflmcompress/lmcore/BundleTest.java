package org.tflmcompress.lmcore;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

public class BundleTest {
  @Rule public TemporaryFolder tmp = new TemporaryFolder();

  @Test
  public void loadsAFolderAsConvertPyWritesIt() throws Exception {
    File dir = TestBundles.writeBundle(tmp.newFolder("b"), TestBundles.metaJson(),
        TestBundles.VOCAB_TXT);
    Bundle bundle = Bundle.loadDirectory(dir);
    assertEquals(8, bundle.getVocabulary().size());
    assertEquals("model.tflite", bundle.getMeta().getModelFile());
  }

  @Test
  public void missingFilesSayWhatToCopy() throws Exception {
    File dir = TestBundles.writeBundle(tmp.newFolder("b"), TestBundles.metaJson(), null);
    assertError(dir, "has no vocab.txt: put the whole folder that scripts/convert.py wrote there");
    assertError(new File(dir, "nope"), "bundle folder not found");
    File empty = tmp.newFolder("empty");
    assertError(empty, "has no model_meta.json");
  }

  @Test
  public void aVocabularyFromAnotherBundleIsRefused() throws Exception {
    File dir = TestBundles.writeBundle(tmp.newFolder("b"), TestBundles.metaJson(),
        TestBundles.VOCAB_TXT + "extra\t1\n");
    assertError(dir, "has 9 words but model_meta.json says vocab_size=8");
  }

  @Test
  public void metaErrorsNameTheFile() throws Exception {
    File dir = TestBundles.writeBundle(tmp.newFolder("b"), "{", TestBundles.VOCAB_TXT);
    assertError(dir, new File(dir, "model_meta.json").getPath() + ": invalid JSON");
  }

  private static void assertError(File dir, String expected) throws Exception {
    try {
      Bundle.loadDirectory(dir);
      fail();
    } catch (BundleException e) {
      assertTrue(e.getMessage(), e.getMessage().contains(expected));
    }
  }
}
