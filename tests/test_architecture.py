"""Imports run one way (docs/architecture.md): no cycle, no backward import."""

import ast
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

PACKAGE_DIR = os.path.join(REPO_ROOT, "tflm_compress")

# Each group's level; a module may import its own group or a lower level only.
LEVELS = {
    "errors": -1,
    "names": 0, "io_utils": 0, "compat": 0, "distribute": 0, "progress": 0,
    "quiet": 0,
    "data": 1, "layers": 1,
    "models": 2,
    "methods": 3, "evaluation": 3,
    "training": 4, "export": 4,
    "compression": 5, "artifacts": 5, "benchmark": 5, "testing": 5,
    "report": 5, "stages": 5,
    "pipeline": 6, "api": 6, "cli": 6, "results_page": 6,
    "compose": 7,  # the composition search drives the pipeline's variants
    "": 8,  # tflm_compress/__init__.py
}
# benchmark.schema is a leaf of plain data the cli shares with the benchmarks.
LEAF_MODULES = {"tflm_compress.benchmark.schema": 0}


def _modules() -> dict[str, str]:
  found = {}
  for folder, _, files in os.walk(PACKAGE_DIR):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        module = os.path.relpath(path[:-3], REPO_ROOT).replace(os.sep, ".")
        found[module.removesuffix(".__init__")] = path
  return found


MODULES = _modules()


def _imports(path: str) -> set[str]:
  """The package modules ``path`` imports, at top level or inside functions.

  ``from a import b`` is an import of ``a.b`` where that is a module, else of ``a``.
  """
  out = set()
  for node in ast.walk(ast.parse(open(path).read())):
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      for alias in node.names:
        target = f"{node.module}.{alias.name}"
        out.add(target if target in MODULES else node.module)
    elif isinstance(node, ast.Import):
      out.update(a.name for a in node.names)
  return {m for m in out if m in MODULES}


GRAPH = {module: _imports(path) for module, path in MODULES.items()}


def _group(module: str) -> str:
  parts = module.split(".")
  return parts[1] if len(parts) > 1 else ""


def _level(module: str) -> int:
  return LEAF_MODULES.get(module, LEVELS[_group(module)])


def test_every_module_has_a_level():
  assert sorted({_group(m) for m in MODULES} - set(LEVELS)) == []


def test_imports_go_only_to_lower_levels_or_the_same_group():
  backward = sorted(f"{m} -> {d}" for m, deps in GRAPH.items() for d in deps
                    if _group(d) != _group(m) and _level(d) >= _level(m))
  assert not backward, "\n".join(backward)


def test_no_import_cycle():
  state, cycles = {}, []

  def visit(module, path):
    state[module] = "open"
    for dep in sorted(GRAPH[module]):
      if state.get(dep) == "open":
        cycles.append(" -> ".join(path[path.index(dep):] + [dep]))
      elif dep not in state:
        visit(dep, path + [dep])
    state[module] = "done"

  for module in sorted(GRAPH):
    if module not in state:
      visit(module, [module])
  assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize("importer, forbidden", [
    ("tflm_compress.methods", ("tflm_compress.export", "tflm_compress.training")),
    ("tflm_compress.export", ("tflm_compress.training", "tflm_compress.methods",
                              "tflm_compress.compression")),
    ("tflm_compress.models", ("tflm_compress.methods",)),
    ("tflm_compress.layers", ("tflm_compress.methods", "tflm_compress.models")),
])
def test_the_rules_of_the_architecture_page(importer, forbidden):
  bad = sorted(f"{m} -> {d}" for m, deps in GRAPH.items() if m.startswith(importer)
               for d in deps if d.startswith(forbidden))
  assert not bad, "\n".join(bad)


def test_a_method_module_that_fails_to_import_fails_the_package_import():
  code = ("import sys; sys.modules['tflm_compress.methods.iss'] = None\n"
          "try:\n  import tflm_compress\nexcept ImportError as e:\n  print('ImportError', e)\n")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO_ROOT, check=True)
  assert "ImportError import of tflm_compress.methods.iss halted" in result.stdout
