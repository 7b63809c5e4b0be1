"""Imported first by every script, before anything imports TensorFlow: quiet unless --verbose.

  import quiet_start  # noqa: F401  (first: quiet unless --verbose; see scripts/quiet_start.py)

Runs :func:`tflm_compress.quiet.quiet_unless_verbose` (TensorFlow's logging
off, its chatter filtered off stderr) and makes a Ctrl-C while TensorFlow
loads one line. ``tflm_compress/quiet.py`` is loaded from the package's folder
without importing the package, because importing the package imports
TensorFlow, whose loading is the first thing to quiet; it is registered as
``tflm_compress.quiet``, so the package, imported next, uses this same module.
Only the scripts do this: importing the library changes nothing in a process.
"""

import importlib.util
import os
import sys


def _load_quiet_module():
  name = "tflm_compress.quiet"
  if name in sys.modules:
    return sys.modules[name]
  package = importlib.util.find_spec("tflm_compress")  # Finds it; imports nothing.
  if package is None or not package.submodule_search_locations:
    raise ImportError("tflm_compress is not installed: run `pip install -e .` in the repo")
  path = os.path.join(list(package.submodule_search_locations)[0], "quiet.py")
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  spec.loader.exec_module(module)
  return module


quiet = _load_quiet_module()
quiet.install_interrupt_hook()
quiet.quiet_unless_verbose()
