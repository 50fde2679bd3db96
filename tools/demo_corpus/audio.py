"""Small numpy DSP for the corpus: resampling, levels, synthetic rooms and noise, FLAC bytes.

Kept dependency-free (numpy + soundfile) so the builder runs wherever the project's venv does.
All randomness comes from a caller-supplied `numpy.random.Generator`, so a clip's audio is a
pure function of its plan entry (and of the Debian tools' versions).
"""

from __future__ import annotations

import io
import os
import subprocess

import numpy as np
import soundfile as sf

SR = 16000


def run_tool(cmd: list, tmp: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Runs a synthesis tool (espeak-ng, festival, fluidsynth) with its scratch files kept in the
    builder's own temporary directory. They link libpulse, which on a machine with no
    XDG_RUNTIME_DIR creates $TMPDIR/pulse-* and a link to it under ~/.config/pulse on first use:
    pointing both variables at `tmp` keeps that inside the directory the builder removes."""
    env = {**os.environ, "TMPDIR": tmp, "XDG_RUNTIME_DIR": tmp}
    return subprocess.run(cmd, check=check, capture_output=True, env=env, **kwargs)


def read_mono(path: str) -> tuple[np.ndarray, int]:
    """Any file libsndfile reads (wav/ogg/flac), averaged to mono float32."""
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    return x.mean(axis=1), sr


def resample(x: np.ndarray, sr_in: int, sr_out: int = SR) -> np.ndarray:
    """Band-limited FFT resampling; zero padding keeps the circular wrap-around out of the signal."""
    if sr_in == sr_out or len(x) == 0:
        return x.astype(np.float32)
    pad = int(0.05 * sr_in) + 16
    n_in = len(x) + 2 * pad
    n_out = int(round(n_in * sr_out / sr_in))
    spec = np.fft.rfft(np.pad(x.astype(np.float64), pad))
    k = n_out // 2 + 1
    out_spec = np.zeros(k, dtype=np.complex128)
    m = min(k, len(spec))
    out_spec[:m] = spec[:m]
    y = np.fft.irfft(out_spec, n_out) * (n_out / n_in)
    p_out = int(round(pad * sr_out / sr_in))
    length = int(round(len(x) * sr_out / sr_in))
    return y[p_out:p_out + length].astype(np.float32)


def rms_db(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-12))


def active_rms_db(x: np.ndarray, frame: int = 400) -> float:
    """RMS over the louder frames only, so sparse events (a door, a step) are levelled by their
    loudness rather than diluted by the silence around them."""
    n = len(x) // frame
    if n == 0:
        return rms_db(x)
    e = np.mean(np.square(x[: n * frame].reshape(n, frame), dtype=np.float64), axis=1)
    top = np.sort(e)[-max(1, n // 4):]
    return float(10 * np.log10(np.mean(top) + 1e-12))


def fade(x: np.ndarray, fade_in: float = 0.01, fade_out: float = 0.05) -> np.ndarray:
    x = x.copy()
    for n, sl, ramp in ((int(fade_in * SR), slice(0, None), 1), (int(fade_out * SR), slice(None), -1)):
        n = min(n, len(x))
        if n > 0:
            r = np.linspace(0.0, 1.0, n, dtype=np.float32)
            if ramp == 1:
                x[:n] *= r
            else:
                x[len(x) - n:] *= r[::-1]
    return x


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """Pads with silence or cuts (with a short fade) to exactly n samples."""
    if len(x) >= n:
        return fade(x[:n], 0.0, 0.08) if len(x) > n else x
    return np.concatenate([x, np.zeros(n - len(x), np.float32)])


def trim_silence(x: np.ndarray, threshold_db: float = -45.0, keep: float = 0.05) -> np.ndarray:
    """Drops leading/trailing near-silence (relative to the peak), keeping a short margin."""
    if len(x) == 0:
        return x
    env = np.abs(x)
    thr = env.max() * 10 ** (threshold_db / 20)
    idx = np.flatnonzero(env > thr)
    if len(idx) == 0:
        return x
    k = int(keep * SR)
    return x[max(0, idx[0] - k): idx[-1] + k]


def last_pause_before(x: np.ndarray, limit: int, min_len: int, frame: int = 320) -> int:
    """Sample index of the end of the last quiet stretch before `limit` (>= min_len), or limit.

    Used to cut speech between words instead of mid-syllable.
    """
    n = min(len(x), limit) // frame
    if n == 0:
        return limit
    e = np.sqrt(np.mean(np.square(x[: n * frame].reshape(n, frame)), axis=1))
    quiet = e < e.max() * 0.03
    for i in range(n - 1, 0, -1):
        if quiet[i] and quiet[i - 1] and i * frame >= min_len:
            return (i + 1) * frame
    return limit


def place(canvas: np.ndarray, x: np.ndarray, start: int, gain: float = 1.0) -> None:
    """Adds x into canvas at `start`, clipped to the canvas."""
    if start >= len(canvas):
        return
    end = min(len(canvas), start + len(x))
    canvas[start:end] += gain * x[: end - start]


def room_ir(rng: np.random.Generator, rt60: float) -> np.ndarray:
    """Synthetic room impulse response: a few early reflections plus an exponentially decaying
    noise tail whose high frequencies die faster (as in real rooms)."""
    n = int(SR * min(2.0, rt60 * 1.2))
    t = np.arange(n) / SR
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    # crude frequency-dependent decay: blend with a low-passed copy that dominates late
    lp = np.convolve(tail, np.ones(6) / 6, mode="same")
    w = np.clip(t / rt60, 0, 1)
    ir = (1 - w) * tail + w * lp
    ir[: int(0.005 * SR)] = 0
    for _ in range(6):
        d = int(rng.uniform(0.003, 0.03) * SR)
        ir[d] += rng.uniform(0.3, 0.7) * rng.choice([-1, 1])
    ir /= np.sqrt(np.sum(ir ** 2)) + 1e-9
    return ir.astype(np.float32)


def add_reverb(x: np.ndarray, rng: np.random.Generator, rt60: float, wet: float) -> np.ndarray:
    """Mixes in the convolution with a synthetic room (wet in 0..1, energy-preserving)."""
    ir = room_ir(rng, rt60)
    n = len(x) + len(ir) - 1
    nfft = 1 << (n - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(x, nfft) * np.fft.rfft(ir, nfft), nfft)[: len(x)]
    y *= np.sqrt(np.mean(x ** 2) / (np.mean(y ** 2) + 1e-12))
    return (np.sqrt(1 - wet) * x + np.sqrt(wet) * y).astype(np.float32)


def make_noise(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    """Unit-RMS background noise: 'hiss' (white), 'rumble' (brown-ish), 'hum' (mains hum)."""
    if kind == "hum":
        base = rng.choice([50.0, 60.0])
        t = np.arange(n) / SR
        y = sum(a * np.sin(2 * np.pi * base * h * t + rng.uniform(0, 2 * np.pi))
                for h, a in ((1, 1.0), (2, 0.5), (3, 0.35), (5, 0.2)))
        y = y + 0.05 * rng.standard_normal(n)
    else:
        w = rng.standard_normal(n)
        if kind == "rumble":
            spec = np.fft.rfft(w)
            f = np.fft.rfftfreq(n, 1 / SR)
            spec /= np.maximum(f, 20.0)
            y = np.fft.irfft(spec, n)
        else:
            y = w
    y = np.asarray(y, dtype=np.float64)
    return (y / (np.sqrt(np.mean(y ** 2)) + 1e-12)).astype(np.float32)


def mix_at_snr(fg: np.ndarray, bg: np.ndarray, snr_db: float) -> np.ndarray:
    """fg + bg with bg scaled so that active level(fg) - active level(bg) = snr_db."""
    g = 10 ** ((active_rms_db(fg) - active_rms_db(bg) - snr_db) / 20)
    return (fg + g * bg).astype(np.float32)


def set_level(x: np.ndarray, target_db: float, peak: float = 0.97) -> np.ndarray:
    """Scales to a target active RMS in dBFS, then limits the peak (so loud clips never clip)."""
    y = x * 10 ** ((target_db - active_rms_db(x)) / 20)
    p = float(np.max(np.abs(y))) if len(y) else 0.0
    if p > peak:
        y *= peak / p
    return y.astype(np.float32)


def flac_bytes(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.clip(x, -1.0, 1.0), SR, format="FLAC", subtype="PCM_16", compression_level=1.0)
    return buf.getvalue()
