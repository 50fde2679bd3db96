"""Linear probes on a frozen encoder: mean-pooled embeddings -> softmax regression.

The probe is fit on the training split's clips and scored on held-out recordings, one
task per ground-truth label (`label/<task>` in the records). Clips without a label for a
task are not part of that task. Chance is reported as the majority-class rate of the
held-out clips, the stronger of the usual baselines.
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


def embed_files(files: Sequence[str], embed_fn: Callable, featurizer: pipeline.Featurizer,
                batch_size: int) -> tuple[np.ndarray, list[dict]]:
    """Embeddings of every clip of `files` (its start, up to the featurizer's length) and
    each clip's labels."""
    embs, labels = [], []
    for batch, clips in pipeline.eval_batches(files, featurizer, batch_size):
        e = np.asarray(jax.device_get(embed_fn(batch)))[:len(clips)]
        embs.append(e)
        labels.extend(dict(c.labels) for c in clips)
    return np.concatenate(embs), labels


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


def linear_probes(train_x, train_labels, eval_x, eval_labels, tasks, l2=1e-3, steps=200):
    results = []
    for task in tasks:
        tr = [i for i, lab in enumerate(train_labels) if task in lab]
        ev = [i for i, lab in enumerate(eval_labels) if task in lab]
        if not tr or not ev:
            continue
        classes = sorted({train_labels[i][task] for i in tr})
        index = {c: k for k, c in enumerate(classes)}
        predict = fit_softmax(train_x[tr], np.array([index[train_labels[i][task]] for i in tr]),
                              len(classes), l2, steps)
        pred = predict(eval_x[ev]).argmax(-1)
        truth = [eval_labels[i][task] for i in ev]
        # A held-out class the probe never saw counts as an error, never as skipped.
        correct = sum(index.get(t, -1) == p for t, p in zip(truth, pred))
        _, counts = np.unique(truth, return_counts=True)
        results.append(ProbeResult(task, correct / len(ev), counts.max() / len(ev),
                                   len(classes), len(tr), len(ev)))
    return results


def run(cfg, embed_fn, featurizer, train_files, logger, step: int = 0) -> list[ProbeResult]:
    """Probes every configured task; prints a table and logs the numbers."""
    if not cfg.probe.tasks:
        return []
    eval_files = pipeline.expand_paths(cfg.data.eval_files)
    bs = cfg.probe.batch_size
    # Whole clips (up to probe.clip_seconds) rather than the random training crops.
    featurizer = dataclasses.replace(featurizer, random_crop=False, clip_samples=int(
        cfg.probe.clip_seconds * cfg.data.sample_rate))
    train_x, train_labels = embed_files(train_files, embed_fn, featurizer, bs)
    eval_x, eval_labels = embed_files(eval_files, embed_fn, featurizer, bs)
    results = linear_probes(train_x, train_labels, eval_x, eval_labels, cfg.probe.tasks,
                            cfg.probe.l2, cfg.probe.steps)
    logger.info(f"linear probe (frozen encoder, mean pooling), fit on {len(train_x)} training "
                f"clips, scored on {len(eval_x)} held-out clips:")
    logger.info(f"  {'task':<12} {'accuracy':>8} {'chance':>7} {'classes':>7} {'clips':>6}")
    for r in results:
        logger.info(f"  {r.task:<12} {r.accuracy:8.3f} {r.chance:7.3f} {r.num_classes:7d} "
                    f"{r.num_eval:6d}")
        logger.write({"step": step, "probe": r.task, **dataclasses.asdict(r)}, step=step,
                     scalars={f"probe/{r.task}_accuracy": r.accuracy})
    missing = set(cfg.probe.tasks) - {r.task for r in results}
    if missing:
        logger.info(f"  no labelled clips for task(s) {sorted(missing)} in one of the splits")
    return results
