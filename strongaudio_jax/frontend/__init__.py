"""Audio frontends in JAX (log-mel, Kaldi fbank, Whisper mel) that run inside the jitted train step."""
from strongaudio_jax.frontend.logmel import (MelConfig, PRESETS, get_preset, log_mel, mel_filterbank,
                                             num_frames)

__all__ = ["MelConfig", "PRESETS", "get_preset", "log_mel", "mel_filterbank", "num_frames"]
