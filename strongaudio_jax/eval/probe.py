"""Probes on a frozen encoder: mean pooling + linear softmax, or attention pooling.

The probe is fit on the training split's clips and scored on held-out recordings, one
task per ground-truth label (`label/<task>` in the records). Clips without a label for a
task are not part of that task. Chance is reported as the majority-class rate of the
held-out clips, the stronger of the usual baselines. The attention probe (the study's
second protocol) learns a few attention queries over the frozen tokens (padding masked)
and a linear classifier on what they pool; with zero queries it starts as mean pooling.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from strongaudio_jax.data import pipeline


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
                batch_size: int):
    """embed_fn's outputs (an array, or a tuple of arrays: e.g. tokens and their mask) for
    every clip of `files` (its start, up to the featurizer's length) and each clip's labels."""
    outs, labels = [], []
    for batch, clips in pipeline.eval_batches(files, featurizer, batch_size):
        out = jax.device_get(embed_fn(batch))
        outs.append(jax.tree.map(lambda x: np.asarray(x)[:len(clips)], out))
        labels.extend(dict(c.labels) for c in clips)
    return jax.tree.map(lambda *xs: np.concatenate(xs), *outs), labels


def fit_softmax(x: np.ndarray, y: np.ndarray, num_classes: int, l2: float, steps: int):
    """Full-batch L2-regularised multinomial logistic regression on standardised features."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    xs = jnp.asarray((x - mean) / std)
    yj = jnp.asarray(y)

    def loss(w):
        logits = xs @ w["w"] + w["b"]
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, yj).mean()
        return ce + l2 * jnp.sum(w["w"] ** 2)

    w = {"w": jnp.zeros((x.shape[1], num_classes)), "b": jnp.zeros(num_classes)}
    opt = optax.lbfgs()
    state = opt.init(w)
    value_and_grad = optax.value_and_grad_from_state(loss)

    @jax.jit
    def step(w, state):
        value, grad = value_and_grad(w, state=state)
        updates, state = opt.update(grad, state, w, value=value, grad=grad, value_fn=loss)
        return optax.apply_updates(w, updates), state

    for _ in range(steps):
        w, state = step(w, state)
    return lambda z: np.asarray(((z - mean) / std) @ np.asarray(w["w"]) + np.asarray(w["b"]))


def fit_attention(tokens: np.ndarray, mask: np.ndarray, y: np.ndarray, num_classes: int,
                  l2: float, steps: int, heads: int = 4, lr: float = 3e-3):
    """Attention pooling (`heads` learned queries, softmax over real tokens) and a linear
    softmax classifier on the pooled vectors, trained full-batch with Adam."""
    real = mask.astype(bool)
    mean, std = tokens[real].mean(0), tokens[real].std(0) + 1e-6
    d = tokens.shape[-1]

    def pool(w, x, m):
        x = (x - mean) / std
        scores = jnp.where(m[..., None], x @ w["q"].T, -1e9)  # [N, T, H]
        att = jax.nn.softmax(scores, axis=1)
        return jnp.einsum("nth,ntd->nhd", att, x).reshape(x.shape[0], -1)

    def logits_fn(w, x, m):
        return pool(w, x, m) @ w["w"] + w["b"]

    def loss(w, x, m, y):
        ce = optax.softmax_cross_entropy_with_integer_labels(logits_fn(w, x, m), y).mean()
        return ce + l2 * jnp.sum(w["w"] ** 2) + l2 * jnp.sum(w["q"] ** 2)

    w = {"q": jnp.zeros((heads, d)), "w": jnp.zeros((heads * d, num_classes)),
         "b": jnp.zeros(num_classes)}
    opt = optax.adam(lr)
    state = opt.init(w)
    x, m, yj = jnp.asarray(tokens), jnp.asarray(real), jnp.asarray(y)

    @jax.jit
    def step(w, state):
        grad = jax.grad(loss)(w, x, m, yj)
        updates, state = opt.update(grad, state, w)
        return optax.apply_updates(w, updates), state

    for _ in range(steps):
        w, state = step(w, state)
    predict = jax.jit(logits_fn)
    return lambda z: np.asarray(predict(w, jnp.asarray(z[0]), jnp.asarray(z[1].astype(bool))))


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
    if "attention" in poolings:  # one encoder pass gives both poolings' inputs
        train_t, train_labels = embed_files(train_files, tokens_fn, featurizer, bs)
        eval_t, eval_labels = embed_files(eval_files, tokens_fn, featurizer, bs)
        train_x, eval_x = masked_mean_np(*train_t), masked_mean_np(*eval_t)
    else:
        train_x, train_labels = embed_files(train_files, embed_fn, featurizer, bs)
        eval_x, eval_labels = embed_files(eval_files, embed_fn, featurizer, bs)
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
