"""Shared fixtures: a small generated corpus and a tiny trained model."""

import dataclasses
import json
import os

import pytest

import tflm_compress  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)
from tflm_compress.data import GeneratedCorpusConfig, generated_corpus
from tflm_compress.models import get_preset

# A source small enough that the tiny model gets close to its entropy in seconds.
SMALL_SOURCE = GeneratedCorpusConfig(vocab_size=200, num_classes=5, train_tokens=50_000,
                                     valid_tokens=5_000, test_tokens=5_000, seed=0)
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_addoption(parser):
  parser.addoption("--run_large", action="store_true", help="run slow golden tests")


def pytest_collection_modifyitems(config, items):
  if config.getoption("--run_large"):
    return
  skip = pytest.mark.skip(reason="large test: pass --run_large")
  for item in items:
    if "large" in item.keywords:
      item.add_marker(skip)


@pytest.fixture(scope="session")
def small_corpus():
  return generated_corpus(SMALL_SOURCE)


@pytest.fixture(scope="session")
def tiny_run(small_corpus, tmp_path_factory):
  """A tiny model trained 3 epochs on the small generated corpus: (run dir, metrics)."""
  from tflm_compress.training import train_language_model  # pylint: disable=g-import-not-at-top

  preset = get_preset("tiny")
  run_dir = str(tmp_path_factory.mktemp("tiny_run"))
  metrics = train_language_model(small_corpus, preset.model,
                                 dataclasses.replace(preset.train, epochs=3), run_dir,
                                 progress=False, log=lambda _: None)
  return run_dir, metrics


def compress_tiny_run(tiny_run, corpus, output_dir: str, spec: str, values: dict,
                      **kwargs) -> dict:
  """The tiny run compressed by ``spec`` with ``values`` and fine-tuned one epoch: its metrics.

  ``kwargs`` go to ``compress_and_finetune`` (e.g. ``finetune_dropout``)."""
  from tflm_compress import compression  # pylint: disable=g-import-not-at-top
  from tflm_compress.models import TrainConfig  # pylint: disable=g-import-not-at-top

  run_dir = tiny_run[0]
  with open(os.path.join(run_dir, "config.json")) as f:
    base_config = json.load(f)
  train = compression.finetune_config(TrainConfig(**base_config["train"]), epochs=1)
  return compression.compress_and_finetune(
      os.path.join(run_dir, "model.keras"), spec, values, corpus, train, output_dir,
      base_run_config=base_config, progress=False, log=lambda _: None, **kwargs)


@pytest.fixture(scope="session")
def tiny_model(tiny_run):
  from tflm_compress.models import load_model  # pylint: disable=g-import-not-at-top

  return load_model(os.path.join(tiny_run[0], "model.keras"))


@pytest.fixture(scope="session")
def tiny_step_model_path(tmp_path_factory):
  """An untrained one-layer step model (vocabulary 50, embedding and hidden 8) as ``.tflite``."""
  from tflm_compress.export import convert_step_model  # pylint: disable=g-import-not-at-top
  from tflm_compress.models import ModelConfig, build_language_model  # pylint: disable=g-import-not-at-top

  model = build_language_model(ModelConfig(vocab_size=50, embedding_size=8, hidden_sizes=(8,)),
                               seed=0)
  path = str(tmp_path_factory.mktemp("tiny_step") / "model.tflite")
  with open(path, "wb") as f:
    f.write(convert_step_model(model))
  return path
