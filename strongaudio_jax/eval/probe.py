"""Probes on a frozen encoder: mean pooling + linear softmax, or attention pooling.

The probe is fit on the training split's clips and scored on held-out recordings, one
task per ground-truth label (`label/<task>` in the records). Clips without a label for a
task are not part of that task. Chance is reported as the majority-class rate of the
held-out clips, the stronger of the usual baselines. The attention probe (the study's
second protocol) learns a few attention queries over the frozen tokens (padding masked)
and a linear classifier on what they pool; with zero queries it starts as mean pooling.
The solvers are those of eval/protocols.py (scikit-learn's logistic regression, the JAX
attention probe) with the evaluator's fixed l2 / steps instead of a search on a validation
split (the pre-training corpus has none; `strongaudio eval` searches). `Evaluator` runs them
during training (eval/evaluators.py: embedding on the mesh).
"""

from __future__ import annotations

import dataclasses
import warnings

import jax
import numpy as np
from sklearn.exceptions import ConvergenceWarning

from strongaudio_jax.data import pipeline
from strongaudio_jax.eval import protocols


@dataclasses.dataclass
class ProbeResult:
    task: str
    accuracy: float
    chance: float  # majority-class rate on the evaluated clips
    num_classes: int
    num_train: int
    num_eval: int
    pooling: str = "mean"


def fit_softmax(x: np.ndarray, y: np.ndarray, num_classes: int, l2: float, steps: int):
    """L2-regularised multinomial logistic regression on standardised features (scikit-learn,
    L-BFGS, at most `steps` iterations): minimises mean cross-entropy + l2 * |w|^2."""
    from sklearn.linear_model import LogisticRegression

    mean, std = x.mean(0), x.std(0) + 1e-6
    norm = lambda z: (np.asarray(z, np.float64) - mean) / std
    clf = LogisticRegression(C=1.0 / (2.0 * l2 * len(x)), max_iter=steps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(norm(x), y)

    def predict(z):
        logits = clf.decision_function(norm(z))
        if logits.ndim == 1:  # two classes: one decision value, positive for classes_[1]
            logits = np.stack([-logits / 2, logits / 2], axis=1)
        return protocols._columns(logits, clf.classes_, num_classes, -np.inf)

    return predict


def fit_attention(tokens: np.ndarray, mask: np.ndarray, y: np.ndarray, num_classes: int,
                  l2: float, steps: int, heads: int = 4, lr: float = 3e-3):
    """Attention pooling (`heads` learned queries) + linear softmax (eval/protocols.py)."""
    predict = protocols.fit_attention(tokens, mask, y, num_classes, l2, steps, heads=heads, lr=lr)
    return lambda z: predict(z[0], z[1])


def linear_probes(train_x, train_labels, eval_x, eval_labels, tasks, l2=1e-3, steps=200):
    """Mean-pooled embeddings [N, D] -> linear softmax, per task."""
    return _probes(train_x, train_labels, eval_x, eval_labels, tasks, "mean",
                   lambda x, y, c: fit_softmax(x, y, c, l2, steps))


def attention_probes(train_tokens, train_labels, eval_tokens, eval_labels, tasks, l2=1e-3,
                     steps=300):
    """(tokens [N, T, D], mask [N, T]) -> attention pooling + linear softmax, per task."""
    return _probes(train_tokens, train_labels, eval_tokens, eval_labels, tasks, "attention",
                   lambda x, y, c: fit_attention(x[0], x[1], y, c, l2, steps))


def _probes(train_x, train_labels, eval_x, eval_labels, tasks, pooling, fit):
    take = lambda x, idx: jax.tree.map(lambda a: a[np.asarray(idx)], x)
    results = []
    for task in tasks:
        tr = [i for i, lab in enumerate(train_labels) if task in lab]
        ev = [i for i, lab in enumerate(eval_labels) if task in lab]
        if not tr or not ev:
            continue
        classes = sorted({train_labels[i][task] for i in tr})
        index = {c: k for k, c in enumerate(classes)}
        predict = fit(take(train_x, tr), np.array([index[train_labels[i][task]] for i in tr]),
                      len(classes))
        pred = predict(take(eval_x, ev)).argmax(-1)
        truth = [eval_labels[i][task] for i in ev]
        # A held-out class the probe never saw counts as an error, never as skipped.
        correct = sum(index.get(t, -1) == p for t, p in zip(truth, pred))
        _, counts = np.unique(truth, return_counts=True)
        results.append(ProbeResult(task, correct / len(ev), counts.max() / len(ev),
                                   len(classes), len(tr), len(ev), pooling))
    return results


class Evaluator:
    """The probes as a training-time evaluator (eval/evaluators.py): `tasks` (labels of the
    records), `pooling` ("mean" and / or "attention"), fit on `train_files` (default: the run's
    training files) and scored on `eval_files` (default: data.eval_files), the first `max_clips`
    of each (0: all), clips cut to `clip_seconds`, embedded on the mesh in batches of
    `batch_size`, solvers with `l2` and `steps` (the attention probe's: `attention_steps`,
    0: `steps`)."""

    DEFAULTS = dict(every=0, train_files="", eval_files="", max_clips=0, clip_seconds=3.0,
                    batch_size=32, tasks=("domain",), pooling=("mean",), l2=1e-3, steps=500,
                    attention_steps=0)

    def __init__(self, name: str, block: dict, ctx):
        from strongaudio_jax.config import ConfigError
        from strongaudio_jax.eval import evaluators

        unknown = set(block) - set(self.DEFAULTS)
        if unknown:
            raise ConfigError(f"evals.{name}: unknown key(s) {sorted(unknown)}; a probe takes "
                              f"{sorted(self.DEFAULTS)}")
        self.name, self.ctx = name, ctx
        self.c = {**self.DEFAULTS, **block}
        self.poolings = tuple(self.c["pooling"])
        if not self.poolings or set(self.poolings) - {"mean", "attention"}:
            raise ConfigError(f"evals.{name}.pooling={self.poolings}: use 'mean' and / or "
                              "'attention'")
        self.every = self.c["every"]
        cfg = ctx.cfg
        self.train_files = (pipeline.expand_paths(self.c["train_files"]) if self.c["train_files"]
                            else list(ctx.train_files))
        self.eval_files = pipeline.expand_paths(self.c["eval_files"] or cfg.data.eval_files)
        self.featurizer = evaluators.eval_featurizer(ctx.featurizer, self.c["clip_seconds"],
                                                     cfg.data.sample_rate)
        program = ctx.program
        # Only what the probes need comes back from the mesh: the pooled embedding, or the tokens
        # when an attention probe needs them.
        fn = program.tokens if "attention" in self.poolings else program.embed
        self.jitted = evaluators.on_mesh(fn, ctx.mesh, program.rules)
        self.results: list[ProbeResult] = []

    def _embed(self, params, files):
        from strongaudio_jax.eval import evaluators

        bad = pipeline.BadData(skip=self.ctx.cfg.data.get("skip_bad", False))
        out, clips = evaluators.embed(files, self.featurizer, self.jitted, params["encoder"],
                                      self.c["batch_size"], self.ctx.mesh,
                                      self.ctx.program.rules, self.c["max_clips"],
                                      self.ctx.cfg.data.verify_crc, bad)
        if bad.counts:
            self.ctx.logger.info(f"evals.{self.name}: {bad.summary()}")
        return out, [dict(c.labels) for c in clips]

    def run(self, params, step: int) -> dict:
        """Fits and scores the probes on the frozen encoder in params["encoder"]; logs a table."""
        tasks, logger = tuple(self.c["tasks"]), self.ctx.logger
        train_out, train_labels = self._embed(params, self.train_files)
        eval_out, eval_labels = self._embed(params, self.eval_files)
        attention = "attention" in self.poolings
        train_x = masked_mean_np(*train_out) if attention else train_out
        eval_x = masked_mean_np(*eval_out) if attention else eval_out
        results = []
        if "mean" in self.poolings:
            results += linear_probes(train_x, train_labels, eval_x, eval_labels, tasks,
                                     self.c["l2"], self.c["steps"])
        if attention:
            results += attention_probes(train_out, train_labels, eval_out, eval_labels, tasks,
                                        self.c["l2"], self.c["attention_steps"] or self.c["steps"])
        logger.info(f"linear probe (frozen encoder, {' / '.join(self.poolings)} pooling), fit on "
                    f"{len(train_x)} training clips, scored on {len(eval_x)} held-out clips:")
        logger.info(f"  {'task':<12} {'pooling':<9} {'accuracy':>8} {'chance':>7} {'classes':>7} "
                    f"{'clips':>6}")
        for r in results:
            logger.info(f"  {r.task:<12} {r.pooling:<9} {r.accuracy:8.3f} {r.chance:7.3f} "
                        f"{r.num_classes:7d} {r.num_eval:6d}")
            logger.write({"step": step, "probe": r.task, **dataclasses.asdict(r)}, step=step,
                         scalars={metric_name(r): r.accuracy})
        missing = set(tasks) - {r.task for r in results}
        if missing:
            logger.info(f"  no labelled clips for task(s) {sorted(missing)} in one of the splits")
        self.results = results
        return {metric_name(r): r.accuracy for r in results}


def metric_name(r: ProbeResult) -> str:
    """probe/<task>_accuracy (mean pooling), probe/<task>_attention_accuracy."""
    return f"probe/{r.task}_accuracy" if r.pooling == "mean" else f"probe/{r.task}_attention_accuracy"


def masked_mean_np(tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask.astype(tokens.dtype)[..., None]
    return (tokens * m).sum(1) / np.maximum(m.sum(1), 1.0)
