"""Choosing a ``tf.distribute`` strategy, and who writes artifacts.

``default`` is one device; ``mirrored`` is every local GPU
(``MirroredStrategy``); ``multi_worker`` is ``MultiWorkerMirroredStrategy`` with
the cluster read from the standard ``TF_CONFIG`` environment variable. Only the
chief writes a run's artifacts; other workers write to a temporary folder they
delete (TensorFlow's multi-worker checkpoint pattern).
"""

import json
import os
import tempfile

import tensorflow as tf

from tflm_compress.errors import UserError

STRATEGIES = ("default", "mirrored", "multi_worker")


def _parse_tf_config() -> dict:
  raw = os.environ.get("TF_CONFIG")
  if not raw:
    raise UserError("--strategy=multi_worker needs the TF_CONFIG environment variable "
                    "(cluster and task, see README 'Training on several GPUs or machines')")
  try:
    tf_config = json.loads(raw)
  except json.JSONDecodeError as e:
    raise UserError(f"TF_CONFIG is not valid JSON: {e}") from None
  cluster, task = tf_config.get("cluster"), tf_config.get("task")
  if not isinstance(cluster, dict) or not cluster:
    raise UserError("TF_CONFIG has no 'cluster' mapping of job names to address lists")
  if not isinstance(task, dict) or "type" not in task or "index" not in task:
    raise UserError("TF_CONFIG has no 'task' with 'type' and 'index'")
  jobs = cluster.get(task["type"])
  if not isinstance(jobs, list) or not 0 <= int(task["index"]) < len(jobs):
    raise UserError(f"TF_CONFIG task {task} is not in the cluster {sorted(cluster)}")
  return tf_config


def make_strategy(name: str) -> tf.distribute.Strategy:
  """The strategy named by ``--strategy``; create it before other TF work."""
  if name not in STRATEGIES:
    raise UserError(f"unknown --strategy={name!r}; use one of {STRATEGIES}")
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  _parse_tf_config()
  return tf.distribute.MultiWorkerMirroredStrategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """True for the one process that writes the run's artifacts."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not getattr(resolver, "task_type", None):
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  cluster = resolver.cluster_spec().as_dict()
  if "chief" in cluster:
    return task_type == "chief"
  return task_type == "worker" and task_id == 0


def writer_dir(strategy: tf.distribute.Strategy, output_dir: str) -> str:
  """``output_dir`` on the chief; a fresh temporary folder on other workers."""
  if is_chief(strategy):
    return output_dir
  return tempfile.mkdtemp(prefix="tflm_compress_worker_")
