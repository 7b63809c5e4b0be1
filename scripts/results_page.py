"""Regenerates the generated blocks of docs/RESULTS.md from the committed result files.

  python scripts/results_page.py                 # rewrite docs/RESULTS.md in place
  python scripts/results_page.py --check         # fail if the page differs from its files

Each block is ``<!-- generated: GENERATOR FILE [key=value ...] -->`` ...
``<!-- end generated -->`` (see tflm_compress/results_page.py); text outside
the blocks is left as written.
"""

import os

from absl import flags

import quiet_start  # noqa: F401  (first: quiet unless --verbose; see scripts/quiet_start.py)
from tflm_compress import cli, io_utils, results_page
from tflm_compress.errors import UserError

FLAGS = flags.FLAGS
flags.DEFINE_string("page", "docs/RESULTS.md", "The page to regenerate.")
flags.DEFINE_string("root", "", "Folder the blocks' file paths are relative to (default: the "
                    "repository root, the folder above scripts/).")
flags.DEFINE_bool("check", False, "Only check: exit 1 if the page is not what its files give.")


def main(argv):
  cli.reject_extra_args(argv)
  root = FLAGS.root or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  if not os.path.isfile(FLAGS.page):
    raise UserError(f"--page={FLAGS.page} does not exist")
  with open(FLAGS.page) as f:
    text = f.read()
  new = results_page.render(text, root, FLAGS.page)
  if FLAGS.check:
    if new != text:
      raise UserError(f"{FLAGS.page} is out of date with its result files; run "
                      f"python scripts/results_page.py --page={FLAGS.page}")
    print(f"{FLAGS.page}: up to date")
    return
  if new != text:
    io_utils.atomic_write_text(FLAGS.page, new)
  print(f"{FLAGS.page}: {'rewritten' if new != text else 'up to date'}")


if __name__ == "__main__":
  cli.run(main, stage="results_page")
