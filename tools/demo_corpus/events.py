"""Sound-event clips cut from the real recordings listed in `sources.EVENT_SOURCES`.

How a clip is made depends on the source kind: continuous ambiences (water, fire, crowd,
traffic) are cropped (looped if short); impulses (explosion, glass) are placed 1-2 times;
doors open and/or close; footsteps are sequenced at a walking pace from the surface's takes.
"""

from __future__ import annotations

import functools

import numpy as np

from . import audio
from .sources import EVENT_SOURCES

SOURCES_BY_ID = {s.id: s for s in EVENT_SOURCES}


@functools.lru_cache(maxsize=None)
def load_take(path: str) -> np.ndarray:
    """One source file at 16 kHz mono, peak-normalised (cached per worker process)."""
    x, sr = audio.read_mono(path)
    x = audio.resample(x, sr)
    x = x - float(np.mean(x))
    peak = float(np.max(np.abs(x))) or 1.0
    return (x / peak).astype(np.float32)


def plan_event(rng, source_id: str, seconds: float) -> dict:
    """Serialisable choices for one event clip (crop offsets, timings, counts)."""
    src = SOURCES_BY_ID[source_id]
    p = dict(source=source_id, kind=src.kind, seconds=seconds, seed=int(rng.integers(0, 2 ** 31)))
    if src.kind == "continuous":
        p["offset"] = float(rng.random())  # fraction of the free range
    elif src.kind == "impulse":
        p["count"] = 1 if rng.random() < 0.6 else 2
    elif src.kind == "door":
        p["action"] = str(rng.choice(["open", "close", "open_close", "open_close"]))
    elif src.kind == "steps":
        p["interval"] = round(float(rng.uniform(0.42, 0.7)), 3)  # seconds between steps
    return p


def render_event(p: dict, num_samples: int) -> np.ndarray:
    """Audio for an event plan, exactly num_samples long."""
    src = SOURCES_BY_ID[p["source"]]
    rng = np.random.default_rng(p["seed"])
    takes = [load_take(f) for f in src.files]
    out = np.zeros(num_samples, np.float32)
    if src.kind == "continuous":
        x = takes[0]
        if len(x) < num_samples + 1:  # loop with a crossfade until long enough
            xf = int(0.2 * audio.SR)
            while len(x) < num_samples + 1:
                ramp = np.linspace(0, 1, xf, dtype=np.float32)
                x = np.concatenate([x[:-xf], x[-xf:] * (1 - ramp) + takes[0][:xf] * ramp, takes[0][xf:]])
        start = int(p["offset"] * (len(x) - num_samples))
        out = audio.fade(x[start:start + num_samples], 0.05, 0.1)
    elif src.kind == "impulse":
        x = audio.trim_silence(takes[0], -50.0, 0.01)
        free = max(1, num_samples - len(x))
        starts = sorted(int(rng.uniform(0.02, 0.6) * free) if i == 0 else int(rng.uniform(0.5, 1.0) * free)
                        for i in range(p["count"]))
        for i, s in enumerate(starts):
            audio.place(out, x, s, 1.0 if i == 0 else float(rng.uniform(0.5, 1.0)))
        out = audio.fade(out, 0.0, 0.1)
    elif src.kind == "door":
        opening, closing = (audio.trim_silence(t, -50.0, 0.01) for t in takes)
        seq = {"open": [opening], "close": [closing], "open_close": [opening, closing]}[p["action"]]
        t = int(rng.uniform(0.1, 0.6) * audio.SR)
        for x in seq:
            audio.place(out, x, t, float(rng.uniform(0.8, 1.0)))
            t += len(x) + int(rng.uniform(0.6, 1.6) * audio.SR)
        out = audio.fade(out, 0.0, 0.1)
    elif src.kind == "steps":
        step = int(p["interval"] * audio.SR)
        t = int(rng.uniform(0.05, 0.3) * audio.SR)
        while t < num_samples - int(0.1 * audio.SR):
            x = audio.trim_silence(takes[int(rng.integers(0, len(takes)))], -50.0, 0.005)
            audio.place(out, x, t, float(10 ** (rng.uniform(-4, 0) / 20)))
            t += int(step * rng.uniform(0.92, 1.08))
        out = audio.fade(out, 0.0, 0.1)
    return out
