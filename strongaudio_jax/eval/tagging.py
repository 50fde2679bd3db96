"""Tag mAP of the trained tag head (the MTC objective) on the held-out clips.

The study's headline number for supervised tagging; the trainer reports it with the probes at
every evaluation, so `train.best_metric="tags/mAP"` can keep the best tagger. Clips are scored
whole (up to the evaluator's clip_seconds), like the probes, on the mesh (eval/evaluators.py).
mAP is over the tags with at least one positive held-out clip; per domain when the records carry
a `domain` label.
"""

from __future__ import annotations

import numpy as np

from strongaudio_jax.data import pipeline
from strongaudio_jax.eval import metrics


def report(logits: np.ndarray, tags: np.ndarray, domains: np.ndarray) -> dict[str, float]:
    """{"tags/mAP": overall, "tags/mAP_<domain>": per domain label} (empty domains skipped)."""
    out = {"tags/mAP": metrics.mean_average_precision(logits, tags)}
    for d in sorted(set(domains.tolist()) - {""}):
        out[f"tags/mAP_{d}"] = metrics.mean_average_precision(logits[domains == d],
                                                              tags[domains == d])
    return out


class Evaluator:
    """Tag mAP of the MTC head as a training-time evaluator (eval/evaluators.py): on
    `eval_files` (default: data.eval_files), the first `max_clips` (0: all), clips cut to
    `clip_seconds`, scored on the mesh in batches of `batch_size`."""

    DEFAULTS = dict(every=0, eval_files="", max_clips=0, clip_seconds=3.0, batch_size=32)

    def __init__(self, name: str, block: dict, ctx):
        from strongaudio_jax.config import ConfigError
        from strongaudio_jax.eval import evaluators

        unknown = set(block) - set(self.DEFAULTS)
        if unknown:
            raise ConfigError(f"evals.{name}: unknown key(s) {sorted(unknown)}; tagging takes "
                              f"{sorted(self.DEFAULTS)}")
        if not any(o.name == "mtc" for o in ctx.program.objectives):
            raise ConfigError(f"evals.{name}: tagging scores the MTC tag head, and this run "
                              "has no mtc objective")
        self.name, self.ctx = name, ctx
        self.c = {**self.DEFAULTS, **block}
        self.every = self.c["every"]
        self.files = pipeline.expand_paths(self.c["eval_files"] or ctx.cfg.data.eval_files)
        self.featurizer = evaluators.eval_featurizer(ctx.featurizer, self.c["clip_seconds"],
                                                     ctx.cfg.data.sample_rate)
        program = ctx.program
        self.jitted = evaluators.on_mesh(lambda p, b: (program.tag_logits(p, b), b["tags"]),
                                         ctx.mesh, program.rules)

    def run(self, params, step: int) -> dict[str, float]:
        """Scores every clip with the tag head and logs the mAP (overall and per domain)."""
        from strongaudio_jax.eval import evaluators

        bad = pipeline.BadData(skip=self.ctx.cfg.data.get("skip_bad", False))
        (logits, tags), clips = evaluators.embed(
            self.files, self.featurizer, self.jitted, params, self.c["batch_size"],
            self.ctx.mesh, self.ctx.program.rules, self.c["max_clips"],
            self.ctx.cfg.data.verify_crc, bad)
        if bad.counts:
            self.ctx.logger.info(f"evals.{self.name}: {bad.summary()}")
        domains = np.array([dict(c.labels).get("domain", "") for c in clips])
        result = report(logits, tags, domains)
        with_positive = int((tags > 0.5).any(0).sum())
        self.ctx.logger.info(f"tag mAP of the tag head on {len(domains)} held-out clips "
                             f"({with_positive} of {tags.shape[1]} tags occur there): "
                             + ", ".join(f"{k.removeprefix('tags/')} {v:.3f}"
                                         for k, v in result.items()))
        self.ctx.logger.write({"step": step, **result}, step=step, scalars=result)
        return result
