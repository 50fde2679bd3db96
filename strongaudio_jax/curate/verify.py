"""Alignment check of candidate near-duplicate pairs, after the embedding search.

Clip embeddings are pooled over time, so two different recordings of one stationary sound
(two takes of a stream, two fire loops from one game's sound pack) can embed almost identically
although neither is a copy of the other. A copy, though, lines up with its original frame by
frame. So every candidate pair the ANN search returns is scored again: the best correlation of
the two clips' log-mel spectrograms (dB, floored at 60 dB below each clip's peak; each band less
its mean over the overlap, since two recordings of one kind of sound share their average
spectrum) over time lags of up to `MAX_LAG_SECONDS`, where the overlap covers at least half of
the shorter clip. The correlation ignores a constant dB offset (gain changes), a lag finds time
shifts, and a lossy codec changes little of a spectrogram at this resolution; independent takes
of a noisy texture do not correlate frame by frame.

Only the clips of candidate pairs (and of the labelled check) are decoded, in one streaming pass
over the shards; their spectrograms are small (64 bands x 100 frames per second, float16).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from strongaudio_jax import frontend
from strongaudio_jax.curate import records
from strongaudio_jax.curate.embed import decode
from strongaudio_jax.data import audio as audio_lib

RATE = 16000
HOP = 160
N_FFT = 512
N_MELS = 64
FLOOR_DB = 60.0
MAX_LAG_SECONDS = 1.0
MIN_OVERLAP = 0.5

_MEL = frontend.mel_filterbank(frontend.MelConfig(sample_rate=RATE, win_length=400, n_fft=N_FFT,
                                                  n_mels=N_MELS))
_WINDOW = np.hanning(N_FFT + 1)[:-1].astype(np.float32)


def spectrogram(wave: np.ndarray) -> np.ndarray:
    """[frames, N_MELS] float16 log-mel (dB) of a mono 16 kHz wave, floored at peak - FLOOR_DB."""
    wave = np.asarray(wave, np.float32)
    if len(wave) < N_FFT:
        wave = np.pad(wave, (0, N_FFT - len(wave)))
    frames = np.lib.stride_tricks.sliding_window_view(wave, N_FFT)[::HOP] * _WINDOW
    power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2
    db = 10 * np.log10(np.maximum(power @ _MEL, 1e-10))
    return np.maximum(db, db.max() - FLOOR_DB).astype(np.float16)


def align_score(a: np.ndarray, b: np.ndarray, max_lag: int = int(MAX_LAG_SECONDS * RATE / HOP),
                min_overlap: float = MIN_OVERLAP) -> float:
    """Best correlation of two spectrograms over time lags in [-max_lag, max_lag]: of their
    changes over time in each band (each band's mean over the overlap removed), since two
    recordings of one kind of sound share their average spectrum but not its course in time."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    need = max(1, int(min_overlap * min(len(a), len(b))))
    best = -1.0
    for lag in range(-max_lag, max_lag + 1):  # b[t + lag] against a[t]
        a0, b0 = max(0, -lag), max(0, lag)
        n = min(len(a) - a0, len(b) - b0)
        if n < need:
            continue
        x, y = a[a0:a0 + n], b[b0:b0 + n]
        x, y = (x - x.mean(0)).ravel(), (y - y.mean(0)).ravel()  # the changes in each band
        den = float(np.sqrt((x @ x) * (y @ y)))
        if den > 0:
            best = max(best, float(x @ y) / den)
    return best


def spectra(files: Sequence[str], ids: Iterable[str], desc: str = "dedup: verify",
            progress: bool = True) -> dict[str, np.ndarray]:
    """Spectrograms of the clips named in `ids`, from one streaming pass over `files`."""
    want = set(ids)
    out: dict[str, np.ndarray] = {}
    damage = records.Damage()
    for _, clip in records.clips(files, desc, progress=progress):
        if clip.id in want and clip.id not in out:
            try:
                out[clip.id] = spectrogram(decode(clip, RATE))
            except audio_lib.AudioDecodeError as e:
                damage.add(str(e))
    return out


def rescore(pairs: list[tuple[int, int, float]], ids: Sequence[str], other_ids: Sequence[str],
            specs: dict[str, np.ndarray]) -> list[tuple[int, int, float]]:
    """The same candidate pairs with their cosine replaced by the alignment score (pairs whose
    clips could not be decoded are dropped)."""
    done: dict[tuple[str, str], float] = {}
    out = []
    for i, j, _ in pairs:
        a, b = ids[i], other_ids[j]
        if a in specs and b in specs:
            key = (a, b) if a <= b else (b, a)  # a pair found from both sides is scored once
            if key not in done:
                done[key] = align_score(specs[a], specs[b])
            out.append((i, j, done[key]))
    return out
