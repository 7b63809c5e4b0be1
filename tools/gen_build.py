"""Regenerates BUILD from the tree: python tools/gen_build.py (tests/test_build_file.py checks it).

With --tracked, only files git tracks count (untracked work in progress is left out).
"""

import glob
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLOW_TESTS = ("test_training", "test_scripts", "test_pipeline", "test_multi_worker",
              "test_benchmark")


def _glob(pattern: str) -> list[str]:
  paths = glob.glob(os.path.join(ROOT, pattern))
  if "--tracked" in sys.argv:
    tracked = set(subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                                 check=True).stdout.split())
    paths = [p for p in paths if os.path.relpath(p, ROOT) in tracked]
  return paths


def _name(path):
  return os.path.splitext(os.path.basename(path))[0]


def build_text() -> str:
  out = ['# Bazel targets mirroring the tree; regenerate with `python tools/gen_build.py`.',
         '# CI checks them with `bazel query //...`. Third-party Python packages come from',
         '# pip (pyproject.toml), not from Bazel.', '',
         'package(default_visibility = ["//visibility:public"])', '',
         'py_library(', '    name = "tflm_compress",', '    srcs = glob(["tflm_compress/**/*.py"]),',
         '    data = glob(["tflm_compress/**/*.c"]),',
         '    imports = ["."],', ')', '',
         'py_library(', '    name = "test_support",', '    testonly = True,',
         '    srcs = ["tests/conftest.py"],', '    imports = ["tests"],',
         '    deps = [":tflm_compress"],', ')', '']
  binaries = [(_name(p), p) for p in _glob("scripts/*.py")]
  binaries += [(f"bench_{_name(p)}", p) for p in _glob("benchmarks/*.py")]
  for name, path in sorted(binaries):
    rel = os.path.relpath(path, ROOT)
    out += ['py_binary(', f'    name = "{name}",', f'    srcs = ["{rel}"],',
            f'    main = "{rel}",', '    python_version = "PY3",', '    deps = [":tflm_compress"],',
            ')', '']
  for path in sorted(_glob("tests/test_*.py")):
    rel = os.path.relpath(path, ROOT)
    size = "large" if _name(path) in SLOW_TESTS else "medium"
    out += ['py_test(', f'    name = "{_name(path)}",', f'    size = "{size}",', f'    srcs = ["{rel}"],',
            f'    main = "{rel}",', '    python_version = "PY3",',
            '    data = glob(["scripts/*.py", "BUILD", "tests/data/**", "android_demo/**"]),', '    deps = [":test_support"],', ')', '']
  return "\n".join(out)


if __name__ == "__main__":
  with open(os.path.join(ROOT, "BUILD"), "w") as f:
    f.write(build_text())
