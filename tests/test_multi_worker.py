"""Two workers on loopback with TF_CONFIG train exactly like one process."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT

TRAIN_FLAGS = ["--config=tiny", "--epochs=1", "--batch_size=8", "--num_steps=10",
               "--generated_tokens=4000", "--generated_vocab_size=60", "--hidden_sizes=16,16",
               "--embedding_size=16", "--optimizer=sgd", "--learning_rate=1.0",
               "--progress=false"]


def _free_ports(n):
  socks = [socket.socket() for _ in range(n)]
  for s in socks:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in socks]
  for s in socks:
    s.close()
  return ports


def _train(output_dir, *extra, env=None):
  return subprocess.Popen([sys.executable, os.path.join(REPO_ROOT, "scripts", "train.py"),
                           *TRAIN_FLAGS, f"--output_dir={output_dir}", *extra],
                          cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def _weights(run_dir):
  from tflm_compress.models import load_model  # pylint: disable=g-import-not-at-top

  return load_model(os.path.join(run_dir, "model.keras")).get_weights()


def test_two_workers_equal_one_process(tmp_path):
  single = _train(tmp_path / "single")
  workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
  procs = []
  try:
    for index in range(2):
      env = dict(os.environ, TF_CONFIG=json.dumps(
          {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}))
      procs.append(_train(tmp_path / "multi", "--strategy=multi_worker", env=env))
    outputs = [p.communicate(timeout=240) for p in procs + [single]]
  finally:
    for p in procs + [single]:
      if p.poll() is None:
        p.kill()
  for p, (_, err) in zip(procs + [single], outputs):
    assert p.returncode == 0, err[-3000:]
  multi = json.load(open(tmp_path / "multi" / "metrics.json"))
  assert multi["num_replicas"] == 2
  one = json.load(open(tmp_path / "single" / "metrics.json"))
  assert multi["test_ppl"] == pytest.approx(one["test_ppl"], rel=1e-4)
  for a, b in zip(_weights(tmp_path / "single"), _weights(tmp_path / "multi")):
    np.testing.assert_allclose(a, b, atol=1e-4)
  # Only the chief wrote the run dir; the other worker's temp dir is gone.
  assert sorted(os.listdir(tmp_path)) == ["multi", "single"]


@pytest.mark.parametrize("tf_config, message", [
    ("{not json", "TF_CONFIG is not valid JSON"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}}', "no 'task'"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}',
     "is not in the cluster"),
])
def test_malformed_tf_config(tmp_path, tf_config, message):
  proc = _train(tmp_path / "out", "--strategy=multi_worker",
                env=dict(os.environ, TF_CONFIG=tf_config))
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 1 and message in err and "Traceback" not in err
  assert not (tmp_path / "out").exists()
