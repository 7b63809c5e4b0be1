"""Model configurations and the LSTM language model builder."""

from tflm_compress.models.config import (PRESETS, ModelConfig, Preset, TrainConfig,
                                         get_preset)
from tflm_compress.models.loading import load_model
from tflm_compress.models.lstm_lm import (build_language_model, count_params, state_names,
                                          zero_states)

__all__ = ["PRESETS", "ModelConfig", "Preset", "TrainConfig", "get_preset",
           "build_language_model", "count_params", "load_model", "state_names", "zero_states"]
