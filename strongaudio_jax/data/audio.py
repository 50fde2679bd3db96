"""Audio bytes <-> float32 waveforms (soundfile: FLAC, WAV, OGG)."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf


class AudioDecodeError(ValueError):
    """Audio bytes that cannot be decoded or are unusable; the message names the clip."""


def decode(data: bytes, where: str = "clip") -> tuple[np.ndarray, int]:
    """Decodes to a mono float32 waveform in [-1, 1] (channels averaged) and its rate."""
    try:
        wave, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises several types for bad bytes
        raise AudioDecodeError(f"{where}: audio cannot be decoded ({e})") from e
    wave = wave.mean(axis=1) if wave.shape[1] > 1 else wave[:, 0]
    if wave.size == 0:
        raise AudioDecodeError(f"{where}: audio has zero samples")
    if not np.isfinite(wave).all():
        raise AudioDecodeError(f"{where}: audio contains NaN or Inf samples")
    return wave, int(rate)


def encode(wave: np.ndarray, rate: int, fmt: str = "flac") -> bytes:
    """Encodes a float waveform (clipped to [-1, 1]) as 16-bit FLAC/WAV or Vorbis OGG."""
    buf = io.BytesIO()
    subtype = {"flac": "PCM_16", "wav": "PCM_16", "ogg": "VORBIS"}[fmt]
    sf.write(buf, np.clip(wave, -1.0, 1.0), rate, format=fmt.upper(), subtype=subtype)
    return buf.getvalue()
