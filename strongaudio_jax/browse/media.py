"""One clip's audio for the browser: decoded on request to 16-bit WAV, and its log-mel
spectrogram (the project's JAX frontend) as a PNG."""

from __future__ import annotations

import functools
import io

import numpy as np

from strongaudio_jax.data import audio

SPECTROGRAM_SECONDS = 300  # longer clips show their first 5 minutes
DISPLAY_RANGE_DB = 80.0  # colours span the clip's peak down to 80 dB below it


def wav_bytes(encoded: bytes, where: str) -> bytes:
    """A clip's audio (any schema format) as mono 16-bit WAV at its own rate."""
    wave, rate = audio.decode(encoded, where)
    return audio.encode(wave, rate, "wav")


@functools.lru_cache(maxsize=None)
def _frontend(preset: str):
    import jax

    from strongaudio_jax.frontend import logmel

    cfg = logmel.get_preset(preset)
    return cfg, jax.jit(lambda w, n: logmel.log_mel(w, cfg, n))


def _bucket(n: int, rate: int) -> int:
    """Padded length: a power of two of seconds (at least one), so few shapes are compiled."""
    seconds = 1
    while seconds * rate < n:
        seconds *= 2
    return seconds * rate


def spectrogram_png(encoded: bytes, where: str, preset: str = "mel_db") -> bytes:
    """The clip's log-mel spectrogram (frames across, mel bins up, 'magma' colours) as PNG."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import image

    cfg, frontend = _frontend(preset)
    wave, rate = audio.decode(encoded, where)
    if rate != cfg.sample_rate:
        wave = audio.resample(wave, rate, cfg.sample_rate)
    wave = wave[:SPECTROGRAM_SECONDS * cfg.sample_rate]
    padded = np.zeros(_bucket(len(wave), cfg.sample_rate), np.float32)
    padded[:len(wave)] = wave
    feats, mask = frontend(padded[None], np.array([len(wave)]))
    feats = np.asarray(feats[0])[np.asarray(mask[0])].T  # (mels, valid frames)
    peak = float(feats.max())
    shade = np.clip((feats - (peak - DISPLAY_RANGE_DB)) / DISPLAY_RANGE_DB, 0.0, 1.0)
    buf = io.BytesIO()
    image.imsave(buf, shade, cmap="magma", origin="lower", vmin=0.0, vmax=1.0, format="png")
    return buf.getvalue()
