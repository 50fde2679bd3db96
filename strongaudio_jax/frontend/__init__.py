"""Audio frontends in JAX (log-mel, Kaldi fbank, Whisper mel) that run inside the jitted train step,
their augmentations (gain, mixup, SpecAugment) and dataset normalisation statistics."""
from strongaudio_jax.frontend.augment import AugmentConfig, augment_features, augment_waveforms
from strongaudio_jax.frontend.logmel import (MelConfig, PRESETS, get_preset, log_mel, mel_filterbank,
                                             num_frames)
from strongaudio_jax.frontend.stats import compute_stats, load_stats, save_stats, with_stats

__all__ = ["AugmentConfig", "MelConfig", "PRESETS", "augment_features", "augment_waveforms",
           "compute_stats", "get_preset", "load_stats", "log_mel", "mel_filterbank", "num_frames",
           "save_stats", "with_stats"]
