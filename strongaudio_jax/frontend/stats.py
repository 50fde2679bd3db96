"""Normalisation statistics of a frontend over a dataset, saved as JSON next to the config.

Training and evaluation must divide by the same numbers (a classic silent bug when they drift apart),
so the statistics are computed once, stored with the frontend they belong to, and turned into the
frontend's own `norm_mean` / `norm_std` by `with_stats`, which refuses statistics of another frontend.

- Only valid frames count: frames past a clip's end (frame_mask) and padding rows (valid=False) are
  left out, so the numbers do not depend on the batch size or on how clips were padded.
- The statistics are of the un-normalised features: `norm_mean` / `norm_std` of the given config are
  reset to 0 / 1 before computing, so recomputing with stats already applied gives the same numbers.
- Streaming in float64 on the host: each batch's per-bin count / mean / M2 is merged with Chan et al.'s
  parallel update, which stays exact where a float32 sum of squares over millions of frames would not.
- std is the population std (ddof = 0). "global" statistics pool every bin of every valid frame.

The pass over a corpus's records (`strongaudio stats`) is `train/frontend_stats.py`: the frontend
layer reads no data files.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Iterable

import jax
import numpy as np

from strongaudio_jax.frontend.logmel import PRESETS, MelConfig, get_preset, log_mel

_NORM_FIELDS = ("norm_mean", "norm_std")


def _raw(mel_cfg: MelConfig | str) -> MelConfig:
    cfg = get_preset(mel_cfg) if isinstance(mel_cfg, str) else mel_cfg
    return dataclasses.replace(cfg, norm_mean=0.0, norm_std=1.0)


def _describe(cfg: MelConfig) -> dict:
    """The frontend's fields without the normalisation (JSON-friendly), to recognise it later."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _NORM_FIELDS}


def _preset_name(cfg: MelConfig):
    return next((name for name, p in PRESETS.items() if _raw(p) == cfg), None)


class _Moments:
    """Per-bin count / mean / M2 in float64, merged batch by batch (Chan et al. 1979)."""

    def __init__(self, n_bins: int):
        self.n, self.mean, self.m2 = 0, np.zeros(n_bins), np.zeros(n_bins)

    def add(self, x: np.ndarray):  # x: [N, n_bins] valid frames
        n_b = x.shape[0]
        if n_b == 0:
            return
        mean_b = x.mean(axis=0)
        m2_b = ((x - mean_b) ** 2).sum(axis=0)
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + delta ** 2 * (self.n * n_b / n)
        self.n = n


def compute_stats(batches: Iterable[dict], mel_cfg: MelConfig | str, per_bin: bool) -> dict:
    """Mean / std of the frontend's features over the valid frames of `batches`.

    Args:
      batches: batch dicts with waveform [B, T], length [B] and optionally valid [B] (numpy or jax).
      mel_cfg: the frontend (its norm_mean / norm_std are ignored, see the module docstring).
      per_bin: one mean / std per mel bin (lists of n_mels) or one for all bins (floats).
    Returns:
      dict(mean, std, count, preset, per_bin, mel_config): count is the number of valid frames;
      preset is the matching preset name or None; mel_config the frontend's fields without norm.
    """
    cfg = _raw(mel_cfg)
    features = jax.jit(lambda w, n: log_mel(w, cfg, n))
    moments = _Moments(cfg.n_mels)
    for batch in batches:
        feats, frame_mask = features(batch["waveform"], batch["length"])
        mask = np.asarray(frame_mask)
        if "valid" in batch:
            mask = mask & np.asarray(batch["valid"], bool)[:, None]
        moments.add(np.asarray(feats, np.float64)[mask])
    if moments.n == 0:
        raise ValueError("no valid frames to compute statistics from (empty dataset, or every clip "
                         "shorter than one frame)")
    if per_bin:
        mean, std = moments.mean.tolist(), np.sqrt(moments.m2 / moments.n).tolist()
    else:  # pool the bins: equal counts per bin, so the law of total variance is a plain average
        mean = float(moments.mean.mean())
        std = float(np.sqrt(moments.m2.sum() / (moments.n * cfg.n_mels)
                            + ((moments.mean - mean) ** 2).mean()))
    return dict(mean=mean, std=std, count=int(moments.n), preset=_preset_name(cfg), per_bin=bool(per_bin),
                mel_config=_describe(cfg))


def save_stats(path, stats: dict) -> None:
    with open(path, "w") as f:
        json.dump(stats, f, indent=1)
        f.write("\n")


def load_stats(path) -> dict:
    with open(path) as f:
        stats = json.load(f)
    missing = {"mean", "std", "count", "mel_config"} - set(stats)
    if missing:
        raise ValueError(f"{path} is not a frontend statistics file (missing {sorted(missing)})")
    return stats


def with_stats(mel_cfg: MelConfig | str, stats: dict, min_std: float = 1e-3) -> MelConfig:
    """`mel_cfg` normalised by `stats`: (x - mean) / max(std, min_std), per bin or global.

    Raises ValueError if the statistics were computed with a different frontend (any field other than
    the normalisation differs). min_std keeps a constant bin (e.g. above a band limit) finite.
    """
    cfg = _raw(mel_cfg)
    defaults = {f.name: f.default for f in dataclasses.fields(MelConfig)  # fields newer than the file
                if f.name not in _NORM_FIELDS}
    ours, theirs = _describe(cfg), {**defaults, **stats["mel_config"]}
    diff = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
    if diff:
        detail = ", ".join(f"{k}: stats {theirs.get(k)!r} vs config {ours.get(k)!r}" for k in diff)
        raise ValueError(f"these statistics were computed with another frontend ({detail}); "
                         f"recompute them with `strongaudio stats` for this config")
    std = np.maximum(np.asarray(stats["std"], np.float64), min_std)
    return dataclasses.replace(cfg, norm_mean=stats["mean"], norm_std=std.tolist() if std.ndim else float(std))
