"""Keras layers of tflm_compress; each is registered as Keras serializable."""

from tflm_compress.layers.lstm import LSTM
from tflm_compress.layers.tied_embedding import TiedEmbedding

__all__ = ["LSTM", "TiedEmbedding"]
