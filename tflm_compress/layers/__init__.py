"""Keras layers of tflm_compress, one module per method's layers.

Importing this package (which ``import tflm_compress`` does) registers every
layer with Keras serialization (package ``tflm_compress``), so a model saved
by the package loads with plain ``tf_keras.models.load_model``. Each layer
that the step graph can lower says how in its class body
(``tflite_lowering``; see :func:`tflm_compress.export.tflite_lowering`).
"""

from tflm_compress.layers.clustering import ClusterableLSTM, ClusterableTiedEmbedding
from tflm_compress.layers.group_reduce import GroupReduceEmbedding, GroupReduceSoftmax
from tflm_compress.layers.low_rank import LowRankDense, LowRankEmbedding, LowRankLSTM
from tflm_compress.layers.lstm import LSTM
from tflm_compress.layers.pruning import PrunableLSTM, PrunableTiedEmbedding, PruneLowMagnitude
from tflm_compress.layers.quantization import (EmbeddingQuantizeConfig, LSTMQuantizeConfig,
                                               QuantizableLSTM)
from tflm_compress.layers.slim_embedding import SlimEmbedding, SlimSoftmax
from tflm_compress.layers.tensor_train import TTDense, TTEmbedding, TTLSTM
from tflm_compress.layers.tied_embedding import TiedEmbedding

__all__ = ["ClusterableLSTM", "ClusterableTiedEmbedding", "EmbeddingQuantizeConfig",
           "GroupReduceEmbedding", "GroupReduceSoftmax", "LSTM", "LSTMQuantizeConfig",
           "LowRankDense", "LowRankEmbedding", "LowRankLSTM", "PrunableLSTM",
           "PrunableTiedEmbedding", "PruneLowMagnitude", "QuantizableLSTM", "SlimEmbedding",
           "SlimSoftmax", "TTDense", "TTEmbedding", "TTLSTM", "TiedEmbedding"]
