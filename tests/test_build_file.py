"""The Bazel BUILD file matches the tree (regenerate with tools/gen_build.py)."""

import os
import re
import sys

from conftest import REPO_ROOT

sys.path.insert(0, os.path.join(REPO_ROOT, "tools"))
import gen_build  # noqa: E402  pylint: disable=g-import-not-at-top


def test_build_file_is_current():
  assert open(os.path.join(REPO_ROOT, "BUILD")).read() == gen_build.build_text()


def test_every_script_and_test_has_a_target():
  text = gen_build.build_text()
  binaries = set(re.findall(r'py_binary\(\s*name = "([^"]+)"', text))
  tests = set(re.findall(r'py_test\(\s*name = "([^"]+)"', text))
  assert {"train", "evaluate", "convert"} <= binaries
  assert {"test_build_file", "test_export", "test_training"} <= tests
