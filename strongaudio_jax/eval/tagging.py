"""Tag mAP of the trained tag head (the MTC objective) on the held-out clips.

The study's headline number for supervised tagging; the trainer reports it with the probes at
every evaluation, so `train.best_metric="tags/mAP"` can keep the best tagger. Clips are scored
whole (up to probe.clip_seconds), like the probes. mAP is over the tags with at least one
positive held-out clip; per domain when the records carry a `domain` label.
"""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np

from strongaudio_jax.data import pipeline
from strongaudio_jax.eval import metrics, probe


def report(logits: np.ndarray, tags: np.ndarray, domains: np.ndarray) -> dict[str, float]:
    """{"tags/mAP": overall, "tags/mAP_<domain>": per domain label} (empty domains skipped)."""
    out = {"tags/mAP": metrics.mean_average_precision(logits, tags)}
    for d in sorted(set(domains.tolist()) - {""}):
        out[f"tags/mAP_{d}"] = metrics.mean_average_precision(logits[domains == d],
                                                              tags[domains == d])
    return out


def run(cfg, logits_fn: Callable, featurizer: pipeline.Featurizer, logger,
        step: int = 0) -> dict[str, float]:
    """Scores every held-out clip with logits_fn(batch) -> [B, K] and logs the mAP."""
    featurizer = probe.eval_featurizer(cfg, featurizer)
    logits, tags, domains = [], [], []
    bad = pipeline.BadData(skip=cfg.data.get("skip_bad", False))
    for batch, clips in pipeline.eval_batches(pipeline.expand_paths(cfg.data.eval_files),
                                              featurizer, cfg.probe.batch_size, bad=bad):
        logits.append(np.asarray(jax.device_get(logits_fn(batch)))[:len(clips)])
        tags.append(batch["tags"][:len(clips)])
        domains += [dict(c.labels).get("domain", "") for c in clips]
    if bad.counts:
        logger.info(f"tag mAP: {bad.summary()}")
    if not logits:
        return {}
    tags_all = np.concatenate(tags)
    result = report(np.concatenate(logits), tags_all, np.array(domains))
    with_positive = int((tags_all > 0.5).any(0).sum())
    logger.info(f"tag mAP of the tag head on {len(domains)} held-out clips "
                f"({with_positive} of {tags_all.shape[1]} tags occur there): "
                + ", ".join(f"{k.removeprefix('tags/')} {v:.3f}" for k, v in result.items()))
    logger.write({"step": step, **result}, step=step, scalars=result)
    return result
