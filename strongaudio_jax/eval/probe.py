"""Probes on a frozen encoder: mean pooling + linear softmax, or attention pooling.

The probe is fit on the training split's clips and scored on held-out recordings, one
task per ground-truth label (`label/<task>` in the records). Clips without a label for a
task are not part of that task. Chance is reported as the majority-class rate of the
held-out clips, the stronger of the usual baselines. The attention probe (the study's
second protocol) learns a few attention queries over the frozen tokens (padding masked)
and a linear classifier on what they pool; with zero queries it starts as mean pooling.
The solvers are those of eval/protocols.py (scikit-learn's logistic regression, the JAX
attention probe) with the trainer's fixed probe.l2 / probe.steps instead of a search on a
validation split (the pre-training corpus has none; `strongaudio eval` searches).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Callable, Sequence

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


def embed_files(files: Sequence[str], embed_fn: Callable, featurizer: pipeline.Featurizer,
                batch_size: int, bad: pipeline.BadData | None = None):
    """embed_fn's outputs (an array, or a tuple of arrays: e.g. tokens and their mask) for
    every clip of `files` (its start, up to the featurizer's length) and each clip's labels.
    Bad records raise, or with `bad` skipping (data.skip_bad) are left out and counted."""
    outs, labels = [], []
    for batch, clips in pipeline.eval_batches(files, featurizer, batch_size, bad=bad):
        out = jax.device_get(embed_fn(batch))
        outs.append(jax.tree.map(lambda x: np.asarray(x)[:len(clips)], out))
        labels.extend(dict(c.labels) for c in clips)
    return jax.tree.map(lambda *xs: np.concatenate(xs), *outs), labels


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


def run(cfg, embed_fn, featurizer, train_files, logger, step: int = 0,
        tokens_fn: Callable | None = None) -> list[ProbeResult]:
    """Probes every configured task with each pooling of probe.pooling ("mean", "attention";
    attention needs tokens_fn: batch -> (tokens, mask)); prints a table, logs the numbers."""
    if not cfg.probe.tasks:
        return []
    poolings = tuple(cfg.probe.get("pooling", ("mean",)))
    unknown = set(poolings) - {"mean", "attention"}
    if unknown or ("attention" in poolings and tokens_fn is None):
        raise ValueError(f"probe.pooling={poolings}: use 'mean' and / or 'attention' (the "
                         "latter needs the encoder's tokens)")
    eval_files = pipeline.expand_paths(cfg.data.eval_files)
    bs = cfg.probe.batch_size
    featurizer = eval_featurizer(cfg, featurizer)
    bad = pipeline.BadData(skip=cfg.data.get("skip_bad", False))
    if "attention" in poolings:  # one encoder pass gives both poolings' inputs
        train_t, train_labels = embed_files(train_files, tokens_fn, featurizer, bs, bad)
        eval_t, eval_labels = embed_files(eval_files, tokens_fn, featurizer, bs, bad)
        train_x, eval_x = masked_mean_np(*train_t), masked_mean_np(*eval_t)
    else:
        train_x, train_labels = embed_files(train_files, embed_fn, featurizer, bs, bad)
        eval_x, eval_labels = embed_files(eval_files, embed_fn, featurizer, bs, bad)
    if bad.counts:
        logger.info(f"probe: {bad.summary()}")
    results = []
    if "mean" in poolings:
        results += linear_probes(train_x, train_labels, eval_x, eval_labels, cfg.probe.tasks,
                                 cfg.probe.l2, cfg.probe.steps)
    if "attention" in poolings:
        results += attention_probes(train_t, train_labels, eval_t, eval_labels, cfg.probe.tasks,
                                    cfg.probe.l2, cfg.probe.steps)
    logger.info(f"linear probe (frozen encoder, {' / '.join(poolings)} pooling), fit on "
                f"{len(train_x)} training clips, scored on {len(eval_x)} held-out clips:")
    logger.info(f"  {'task':<12} {'pooling':<9} {'accuracy':>8} {'chance':>7} {'classes':>7} {'clips':>6}")
    for r in results:
        logger.info(f"  {r.task:<12} {r.pooling:<9} {r.accuracy:8.3f} {r.chance:7.3f} "
                    f"{r.num_classes:7d} {r.num_eval:6d}")
        logger.write({"step": step, "probe": r.task, **dataclasses.asdict(r)}, step=step,
                     scalars={metric_name(r): r.accuracy})
    missing = set(cfg.probe.tasks) - {r.task for r in results}
    if missing:
        logger.info(f"  no labelled clips for task(s) {sorted(missing)} in one of the splits")
    return results


def eval_featurizer(cfg, featurizer: pipeline.Featurizer) -> pipeline.Featurizer:
    """The training featurizer for evaluation: whole clips (from the start, up to
    probe.clip_seconds) rather than random training crops."""
    return dataclasses.replace(featurizer, random_crop=False, clip_samples=int(
        cfg.probe.clip_seconds * cfg.data.sample_rate))


def metric_name(r: ProbeResult) -> str:
    """probe/<task>_accuracy (mean pooling), probe/<task>_attention_accuracy."""
    return f"probe/{r.task}_accuracy" if r.pooling == "mean" else f"probe/{r.task}_attention_accuracy"


def masked_mean_np(tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask.astype(tokens.dtype)[..., None]
    return (tokens * m).sum(1) / np.maximum(m.sum(1), 1.0)
