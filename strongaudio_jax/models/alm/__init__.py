"""Audio-language models (Qwen2-Audio kind): an audio encoder, a projector and models/lm's LM."""

from strongaudio_jax.models.alm.model import ENCODERS, AudioLM, AudioLMConfig, check_placeholders
from strongaudio_jax.models.alm.whisper_encoder import (WhisperEncoder, WhisperEncoderConfig,
                                                        output_lengths)

__all__ = ["ENCODERS", "AudioLM", "AudioLMConfig", "WhisperEncoder", "WhisperEncoderConfig",
           "check_placeholders", "output_lengths"]
