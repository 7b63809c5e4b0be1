"""Resumable, claimable pipeline stages with done-markers and config hashes.

A stage owns one folder. It writes ``STAGE.json`` (its config hash) when it
starts and ``DONE.json`` (hash + result) atomically when it ends:

* ``DONE.json`` with the same hash: the stage is skipped and its result reused.
* A different hash (the config changed): the folder is stale and is wiped.
* The same hash but no ``DONE.json`` (the run was killed): the stage runs
  again in the same folder, so training inside it resumes from checkpoints.

Several processes may share an output dir (e.g. one variant per machine). A
stage is claimed with ``CLAIM.json`` created exclusively (``O_EXCL`` on local
disks); a process that finds a live claim waits for ``DONE.json``, and a claim
left by a dead process on this host is taken over.
"""

import dataclasses
import hashlib
import json
import os
import socket
import time
from typing import Callable

import tensorflow as tf

from tflm_compress import io_utils

DONE_FILE = "DONE.json"
STAGE_FILE = "STAGE.json"
CLAIM_FILE = "CLAIM.json"


def config_hash(config) -> str:
  """A stable hash of a JSON-able config (dict keys sorted)."""
  text = json.dumps(config, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def _read(path: str):
  try:
    with tf.io.gfile.GFile(path) as f:
      return json.load(f)
  except (tf.errors.NotFoundError, json.JSONDecodeError):
    return None


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def _try_claim(folder: str) -> bool:
  path = os.path.join(folder, CLAIM_FILE)
  claim = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()})
  if "://" in folder:  # No exclusive create on remote filesystems: best effort.
    if tf.io.gfile.exists(path):
      return False
    io_utils.atomic_write_text(path, claim)
    return True
  try:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
  except FileExistsError:
    return False
  with os.fdopen(fd, "w") as f:
    f.write(claim)
  return True


def _claim_is_dead(folder: str) -> bool:
  claim = _read(os.path.join(folder, CLAIM_FILE))
  if claim is None:
    return True
  return claim.get("host") == socket.gethostname() and not _pid_alive(int(claim.get("pid", -1)))


@dataclasses.dataclass
class StageRunner:
  """Runs stages, printing a progress line per stage with an ETA.

  Args:
    total: number of stages this process expects to run (for the ETA).
    log: where progress lines go.
    poll_seconds: how often to look for another process's ``DONE.json``.
  """

  total: int = 0
  log: Callable[[str], None] = print
  poll_seconds: float = 2.0
  done_count: int = 0
  run_seconds: list = dataclasses.field(default_factory=list)

  def run(self, folder: str, description: str, config, fn: Callable[[str], dict]) -> dict:
    """Runs ``fn(folder) -> result`` unless an up-to-date result exists."""
    digest = config_hash(config)
    self.done_count += 1
    prefix = f"[{self.done_count}/{self.total}] {description}" if self.total else description
    while True:
      done = _read(os.path.join(folder, DONE_FILE))
      if done is not None and done.get("hash") == digest:
        self.log(f"{prefix}: up to date, skipped")
        return done["result"]
      stage = _read(os.path.join(folder, STAGE_FILE))
      if (done is not None or stage is not None) and (stage or done).get("hash") != digest:
        self.log(f"{prefix}: config changed, redoing")
        tf.io.gfile.rmtree(folder)
      io_utils.makedirs(folder)
      if _try_claim(folder):
        break
      if _claim_is_dead(folder):
        tf.io.gfile.remove(os.path.join(folder, CLAIM_FILE))
        continue
      time.sleep(self.poll_seconds)  # Another process works on it: wait for DONE.
    try:
      io_utils.atomic_write_json(os.path.join(folder, STAGE_FILE),
                                 {"hash": digest, "config": config})
      start = time.time()
      self.log(f"{prefix}: running")
      result = fn(folder)
      seconds = time.time() - start
      io_utils.atomic_write_json(os.path.join(folder, DONE_FILE),
                                 {"hash": digest, "result": result, "seconds": seconds})
    finally:
      try:
        tf.io.gfile.remove(os.path.join(folder, CLAIM_FILE))
      except tf.errors.NotFoundError:
        pass
    self.run_seconds.append(seconds)
    remaining = max(self.total - self.done_count, 0)
    eta = remaining * sum(self.run_seconds) / len(self.run_seconds)
    self.log(f"{prefix}: done in {seconds:.0f} s" +
             (f" (ETA {eta / 60:.1f} min for {remaining} more)" if self.total else ""))
    return result


def read_done(folder: str) -> dict | None:
  """The result of a finished stage, or None."""
  done = _read(os.path.join(folder, DONE_FILE))
  return None if done is None else done["result"]


def replace_result(folder: str, result: dict) -> None:
  """Replaces a finished stage's result, keeping its hash (a re-measurement)."""
  done = _read(os.path.join(folder, DONE_FILE)) or {}
  io_utils.atomic_write_json(os.path.join(folder, DONE_FILE),
                             {**done, "hash": done.get("hash"), "result": result})
