"""Weight clustering (weight sharing) with TF Model Optimization.

Each targeted tensor keeps at most ``--num_clusters`` distinct values (Han et
al. 2016, "Deep Compression"): ``compress`` wraps the embedding, each LSTM's
input and recurrent kernels and the softmax kernel in TFMOT's
``ClusterWeights`` (our LSTM and tied embedding through
``ClusterableLayer.get_clusterable_weights``, see ``tfmot_support``), with
centroids initialised ``linear``ly between the tensor's min and max (Han et
al.'s best choice), by ``kmeans_plus_plus``, ``density_based`` or ``random``.
During fine-tuning each weight is replaced by its nearest centroid and the
centroids train; the assignment is refreshed every step. A centroid's gradient
is by default the *average* of its weights' gradients
(``--cluster_gradient=avg``, TFMOT's ``GradientAggregation.AVG``): TFMOT's own
default, the sum, moves a centroid of a 10k x 200 embedding (about 125k
weights per centroid at 16 clusters) by more than the centroids' spacing in one
SGD step, and fine-tuning diverges. ``strip`` (``strip_clustering``) writes the clustered
values into plain package layers.

A clustered tensor is still stored as float32 in ``.tflite``; the gain shows
in compressed size (k values need ``log2 k`` bits each: gzip of the file, or
an app that stores indices and a codebook) and composes with int8 (fewer
distinct values than int8 levels survive quantization unchanged).
TFMOT computes ``|w - c|`` for every weight and centroid at each step, so
memory grows with ``weights x clusters`` (a 10k x 200 embedding with 256
clusters needs about 2 GB per step).
"""

import dataclasses

import numpy as np
import tf_keras as keras
import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.clustering.keras.cluster_config import (
    GradientAggregation)

from tflm_compress.errors import UserError
from tflm_compress.layers.clustering import ClusterableLSTM, ClusterableTiedEmbedding
from tflm_compress.methods import tfmot_support
from tflm_compress.methods.base import CompressionContext, layer_kind, replace_layers

NAME = "cluster"
# The public config class, ``tflm_compress.Cluster``: ``Config`` with its fields' flag
# prefixes dropped (see :mod:`tflm_compress.api`).
API_NAME = "Cluster"
FLAG_PREFIXES = ("cluster_",)

CentroidInitialization = tfmot.clustering.keras.CentroidInitialization
INITS = {
    "linear": CentroidInitialization.LINEAR,
    "kmeans_plus_plus": CentroidInitialization.KMEANS_PLUS_PLUS,
    "density_based": CentroidInitialization.DENSITY_BASED,
    "random": CentroidInitialization.RANDOM,
}
MAX_CLUSTERS = 65536
# cluster_weights takes it, but tfmot 0.8 exports no public name for it.
GRADIENTS = {"avg": GradientAggregation.AVG, "sum": GradientAggregation.SUM}

FLAG_HELP = {
    "num_clusters": "Cluster: distinct values kept per targeted tensor (e.g. 16..256; "
                    "0 = unset).",
    "cluster_init": f"Cluster: centroid initialization, one of {sorted(INITS)}.",
    "cluster_gradient": "Cluster: a centroid's gradient, the avg (default) or the sum (TFMOT's "
                        "default) of its weights' gradients.",
    "cluster_targets": "Cluster: tensor groups to cluster, comma-separated from "
                       f"{','.join(tfmot_support.GROUPS)}.",
}


@dataclasses.dataclass(frozen=True)
class Config:
  """Clusters per tensor and how they start.

  Attributes:
    num_clusters: centroids per targeted tensor (``2..65536``).
    cluster_init: ``linear``, ``kmeans_plus_plus``, ``density_based`` or
      ``random``.
    cluster_gradient: ``avg`` or ``sum``: how a centroid's gradient
      aggregates its weights' gradients during fine-tuning.
    cluster_targets: comma-separated groups (``embedding``, ``lstm``,
      ``softmax``); a tied embedding is the ``embedding`` group.
  """

  num_clusters: int = 0
  cluster_init: str = "linear"
  cluster_gradient: str = "avg"
  cluster_targets: str = "embedding,lstm,softmax"

  def __post_init__(self):
    if not 2 <= self.num_clusters <= MAX_CLUSTERS:
      raise UserError(f"--num_clusters={self.num_clusters}; cluster needs 2..{MAX_CLUSTERS} "
                      "distinct values per tensor (e.g. 16 = 4-bit indices)")
    if self.cluster_init not in INITS:
      raise UserError(f"--cluster_init={self.cluster_init!r}; use one of {sorted(INITS)}")
    if self.cluster_gradient not in GRADIENTS:
      raise UserError(f"--cluster_gradient={self.cluster_gradient!r}; use one of "
                      f"{sorted(GRADIENTS)}")
    self.groups()  # Validates.

  def groups(self) -> tuple[str, ...]:
    names = tuple(g.strip() for g in self.cluster_targets.split(",") if g.strip())
    bad = [g for g in names if g not in tfmot_support.GROUPS]
    if bad or not names:
      raise UserError(f"--cluster_targets={self.cluster_targets!r}; use a comma-separated "
                      f"subset of {','.join(tfmot_support.GROUPS)}")
    return names


def _clusterable(layer: keras.layers.Layer) -> keras.layers.Layer | None:
  """A fresh clusterable copy of a targeted package layer, or None."""
  return tfmot_support.targeted_copy(layer, ClusterableLSTM, ClusterableTiedEmbedding)


def compress(model: keras.Model, config: Config,
             context: CompressionContext | None = None) -> keras.Model:
  """Wraps each targeted layer of ``model`` in ``ClusterWeights``."""
  del context
  groups = config.groups()
  targets = set()
  for layer in model.layers:
    if layer_kind(layer) in groups and _clusterable(layer) is not None:
      for short, weight in tfmot_support.targeted_weights(layer).items():
        if config.num_clusters > int(np.prod(weight.shape)):
          raise UserError(f"--num_clusters={config.num_clusters} exceeds the "
                          f"{int(np.prod(weight.shape))} weights of {layer.name}/{short}; use "
                          "fewer clusters")
      targets.add(layer.name)
  if not targets:
    raise UserError(f"cluster found no dense layer in --cluster_targets={config.cluster_targets!r}"
                    " (layers of other methods are left alone)")

  def make_layer(layer):
    if layer.name not in targets:
      return None
    # The centroids start from the wrapped layer's weights when the wrapper is
    # built, so the copy gets the trained weights before it is wrapped.
    inner = _clusterable(layer)
    inner.build(layer.get_build_config()["input_shape"])
    inner.set_weights(layer.get_weights())
    return tfmot.clustering.keras.cluster_weights(
        inner, number_of_clusters=config.num_clusters,
        cluster_centroids_init=INITS[config.cluster_init],
        cluster_gradient_aggregation=GRADIENTS[config.cluster_gradient])

  def init_layer(new, old):
    del new, old  # The wrapped layer already holds the weights.

  return replace_layers(model, make_layer, init_layer)


def strip(model: keras.Model, config: Config | None = None) -> keras.Model:
  """``strip_clustering`` (clustered values into the layers), then package layers."""
  del config  # Everything strip needs is in the wrappers.
  return tfmot_support.to_package_layers(tfmot.clustering.keras.strip_clustering(model))


def unique_values(model: keras.Model) -> dict[str, int]:
  """Distinct values in each targeted tensor (``lstm_0/kernel``...)."""
  return {name: int(np.unique(value).size)
          for name, value in tfmot_support.target_tensors(model).items()}


def packed_bytes(values: np.ndarray) -> int:
  """Bytes of ``values`` stored as a float32 codebook plus ``ceil(log2 k)``-bit indices."""
  k = int(np.unique(values).size)
  bits = max(1, int(np.ceil(np.log2(k))))
  return 4 * k + int(np.ceil(values.size * bits / 8))


def report(model: keras.Model) -> dict:
  """Distinct values per targeted tensor (<= ``num_clusters`` for clustered ones).

  Also the targeted tensors' float32 bytes against their size as codebook +
  packed indices (what an app storing them that way would ship; the
  ``.tflite`` itself keeps float32, or int8 after quantization).
  """
  tensors = tfmot_support.target_tensors(model)
  return {"unique_values": unique_values(model),
          "float32_bytes": int(sum(4 * v.size for v in tensors.values())),
          "packed_bytes": int(sum(packed_bytes(v) for v in tensors.values()))}
