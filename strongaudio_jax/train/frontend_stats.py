"""Frontend normalisation statistics over a corpus: the body of `strongaudio stats`.

The statistics themselves (streaming moments, saving, checking them against a frontend) are
`frontend/stats.py`; this module feeds them every record of the training files once.
"""

from __future__ import annotations

import dataclasses

from strongaudio_jax.data import pipeline
from strongaudio_jax.frontend.logmel import MelConfig, get_preset
from strongaudio_jax.frontend.stats import compute_stats


def stats_from_files(files, featurizer, mel_cfg: MelConfig | str, batch_size: int,
                     per_bin: bool, bad: pipeline.BadData | None = None) -> dict:
    """compute_stats over every record of `files` once, through data.pipeline.eval_batches (each clip's
    first featurizer.clip_samples samples, padding rows marked invalid). The training featurizer is
    fine: its random crop is turned off. The body of the `strongaudio stats` command. Bad
    records raise, or with `bad` skipping (data.skip_bad) are counted and left out."""
    if getattr(featurizer, "random_crop", False):
        featurizer = dataclasses.replace(featurizer, random_crop=False)
    cfg = get_preset(mel_cfg) if isinstance(mel_cfg, str) else mel_cfg
    if featurizer.sample_rate != cfg.sample_rate:
        raise ValueError(f"the data is read at {featurizer.sample_rate} Hz but the frontend expects "
                         f"{cfg.sample_rate} Hz; use a preset for {featurizer.sample_rate} Hz or resample")
    batches = pipeline.eval_batches(files, featurizer, batch_size, bad=bad)
    return compute_stats((batch for batch, _ in batches), cfg, per_bin)


def stats_from_config(cfg, mel_cfg: MelConfig, per_bin: bool) -> dict:
    """Statistics of `mel_cfg` over the config's training files (data.mix or data.train_files),
    read as evaluation reads them (each clip's first data.clip_seconds); data.skip_bad skips
    bad records and prints their count."""
    files = [f for paths, _ in pipeline.mixture(cfg.data).values() for f in paths]
    featurizer = pipeline.featurizer_from_config(cfg, {}, train=False)
    bad = pipeline.BadData(skip=cfg.data.get("skip_bad", False))
    result = stats_from_files(files, featurizer, mel_cfg, cfg.data.batch_size, per_bin, bad)
    if bad.counts:
        print(bad.summary())
    return result
