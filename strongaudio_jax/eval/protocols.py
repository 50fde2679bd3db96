"""Evaluation protocols on frozen embeddings: probes, kNN, retrieval.

Every probe is fit on a task's training split, its hyper-parameters are chosen on the
validation split (as HEAR does), and it is scored on the test split:

  * `linear`: mean-pooled embeddings -> standardised -> logistic regression (scikit-learn;
    one-vs-rest for multi-label), L2 strength chosen from `LINEAR_C`;
  * `attention`: frame embeddings -> a few learned attention queries (padding masked) -> a
    linear classifier, trained full-batch with Adam in JAX (no library offers it); L2
    strength chosen from `ATTENTION_L2`;
  * `mlp`: one hidden layer in JAX (AdamW, early stopping on the validation score, as
    HEAR's probe), width and learning rate from `MLP_GRID`. On 5,000 training clips of 768
    dimensions, 50 classes, 2 CPU cores, the whole 4-setting search took 39 s; one setting
    of scikit-learn's MLPClassifier took 38 s and its 4-setting search (by L2) had not
    finished after 4 minutes;
  * `knn`: k = 10 nearest training clips by cosine similarity, votes weighted by
    exp(similarity / 0.07) (the DINO / BEATs kNN); no hyper-parameters.

Multi-class tasks are scored by accuracy, multi-label tasks by mAP (macro average precision
over the classes with a positive test clip). `retrieval` gives R@1/5/10 and mAP@10 in both
directions from precomputed audio and text embeddings.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Callable, Sequence

import numpy as np

LINEAR_C = (0.01, 0.1, 1.0, 10.0)
ATTENTION_L2 = (1e-4, 1e-2)
MLP_GRID = ({"hidden": 512, "lr": 1e-3}, {"hidden": 512, "lr": 1e-4},
            {"hidden": 1024, "lr": 1e-3}, {"hidden": 1024, "lr": 1e-4})
PROTOCOLS = ("linear", "attention", "mlp", "knn")


@dataclasses.dataclass
class Split:
    """One split of a task after embedding. `x`: [N, D] mean-pooled embeddings; `tokens` and
    `mask`: [N, T, D] frame embeddings and [N, T] real-frame flags (None when not computed);
    `y`: [N] class indices (multi-class) or [N, K] 0/1 (multi-label)."""
    x: np.ndarray
    y: np.ndarray
    tokens: np.ndarray | None = None
    mask: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.y)


@dataclasses.dataclass
class Outcome:
    """A protocol's score on the test split, its validation score, the chosen setting and
    the test scores per class [N, K] (for confusion matrices and plots)."""
    test: float
    valid: float
    chosen: dict
    scores: np.ndarray


# ----------------------------------------------------------------------------- metrics


def accuracy(y: np.ndarray, scores: np.ndarray) -> float:
    return float((np.asarray(scores).argmax(-1) == np.asarray(y)).mean())


def mean_average_precision(y: np.ndarray, scores: np.ndarray) -> float:
    """Macro average precision over the classes [N, K] with at least one positive."""
    from sklearn.metrics import average_precision_score

    y = np.asarray(y) > 0.5
    keep = y.any(0)
    if not keep.any():
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(average_precision_score(y[:, keep], np.asarray(scores)[:, keep],
                                             average="macro"))


def score(y: np.ndarray, scores: np.ndarray, multilabel: bool) -> float:
    return mean_average_precision(y, scores) if multilabel else accuracy(y, scores)


def _columns(scores: np.ndarray, seen: np.ndarray, num_classes: int, fill: float) -> np.ndarray:
    """Scores over the classes a classifier saw -> [N, num_classes]; unseen classes get
    `fill` (never the argmax), so a test clip of a class absent in training is an error."""
    out = np.full((len(scores), num_classes), fill, np.float64)
    out[:, seen] = scores
    return out


# ----------------------------------------------------------------------------- probes


def _standardise(train: np.ndarray):
    mean, std = train.mean(0), train.std(0) + 1e-6
    return lambda x: (np.asarray(x, np.float64) - mean) / std


def _select(train: Split, valid: Split, test: Split, multilabel: bool, grid: Sequence,
            fit: Callable) -> Outcome:
    """Fits one model per grid setting on train, keeps the best on valid, scores test."""
    best = None
    for setting in grid:
        predict = fit(train, setting)
        v = score(valid.y, predict(valid), multilabel)
        if best is None or v > best[0]:
            best = (v, setting, predict)
    v, setting, predict = best
    s = predict(test)
    return Outcome(score(test.y, s, multilabel), v, dict(setting), s)


def linear_fit(train_x: np.ndarray, num_classes: int, multilabel: bool) -> Callable:
    """fit(split, {"C": C}) -> predict(split) -> scores [N, K]: logistic regression on
    embeddings standardised by the training split (probabilities for multi-label, log
    probabilities for multi-class)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    norm = _standardise(train_x)

    def fit(split, setting):
        clf = LogisticRegression(C=setting["C"], max_iter=1000)
        if multilabel:
            present = split.y.any(0) & ~split.y.all(0)  # a one-class column cannot be fit
            model = OneVsRestClassifier(clf).fit(norm(split.x), split.y[:, present])
            return lambda s: _columns(model.predict_proba(norm(s.x)).reshape(len(s.x), -1),
                                      present, num_classes, 0.0)
        model = clf.fit(norm(split.x), split.y)
        return lambda s: _columns(model.predict_log_proba(norm(s.x)), model.classes_,
                                  num_classes, -np.inf)

    return fit


def linear_probe(train: Split, valid: Split, test: Split, num_classes: int,
                 multilabel: bool) -> Outcome:
    """Logistic regression on standardised mean-pooled embeddings, C chosen on valid."""
    return _select(train, valid, test, multilabel, [{"C": c} for c in LINEAR_C],
                   linear_fit(train.x, num_classes, multilabel))


def fit_mlp(train: Split, valid: Split, num_classes: int, multilabel: bool, hidden: int,
            lr: float, max_epochs: int = 100, patience: int = 10, batch_size: int = 256,
            weight_decay: float = 1e-4, seed: int = 0) -> Callable:
    """One hidden layer (ReLU) on standardised embeddings, AdamW on mini-batches, early
    stopping on the validation score (checked every epoch; the best epoch's weights are
    kept, training stops after `patience` epochs without improvement), as HEAR's probe does.
    Returns predict(split) -> scores [N, K]."""
    import jax
    import jax.numpy as jnp
    import optax

    norm = _standardise(train.x)
    x, xv = jnp.asarray(norm(train.x), jnp.float32), jnp.asarray(norm(valid.x), jnp.float32)
    y = jnp.asarray(train.y, jnp.float32 if multilabel else jnp.int32)
    k1, k2 = jax.random.split(jax.random.key(seed))
    d = x.shape[1]
    params = {"w1": jax.random.normal(k1, (d, hidden)) * np.sqrt(2.0 / d),
              "b1": jnp.zeros(hidden),
              "w2": jax.random.normal(k2, (hidden, num_classes)) * np.sqrt(1.0 / hidden),
              "b2": jnp.zeros(num_classes)}

    def logits_fn(p, x):
        return jax.nn.relu(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

    def loss(p, x, y):
        z = logits_fn(p, x)
        if multilabel:
            return optax.sigmoid_binary_cross_entropy(z, y).mean()
        return optax.softmax_cross_entropy_with_integer_labels(z, y).mean()

    opt = optax.adamw(lr, weight_decay=weight_decay)
    state = opt.init(params)

    @jax.jit
    def step(p, state, xb, yb):
        grad = jax.grad(loss)(p, xb, yb)
        updates, state = opt.update(grad, state, p)
        return optax.apply_updates(p, updates), state

    predict = jax.jit(logits_fn)
    rng = np.random.default_rng(seed)
    best, best_params, waited = -np.inf, params, 0
    for _ in range(max_epochs):
        order = rng.permutation(len(train))
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            params, state = step(params, state, x[idx], y[idx])
        v = score(valid.y, np.asarray(predict(params, xv)), multilabel)
        if v > best:
            best, best_params, waited = v, params, 0
        else:
            waited += 1
            if waited >= patience:
                break
    return lambda s: np.asarray(predict(best_params, jnp.asarray(norm(s.x), jnp.float32)))


def mlp_probe(train: Split, valid: Split, test: Split, num_classes: int, multilabel: bool,
              seed: int = 0) -> Outcome:
    """One-hidden-layer MLP (JAX), early-stopped on valid; width and learning rate chosen
    on valid from MLP_GRID."""
    fit = lambda split, setting: fit_mlp(split, valid, num_classes, multilabel,
                                         setting["hidden"], setting["lr"], seed=seed)
    return _select(train, valid, test, multilabel, MLP_GRID, fit)


def knn_scores(train_x: np.ndarray, train_y: np.ndarray, query_x: np.ndarray, num_classes: int,
               k: int = 10, temperature: float = 0.07) -> np.ndarray:
    """Class scores [Q, K]: the k most cosine-similar training clips vote for their classes
    (or, multi-label, their label vectors) with weight exp(similarity / temperature)."""
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(train_x))
    nn = NearestNeighbors(n_neighbors=k, metric="cosine").fit(train_x)
    dist, idx = nn.kneighbors(query_x)
    weight = np.exp((1.0 - dist) / temperature)  # [Q, k]
    labels = train_y if train_y.ndim == 2 else np.eye(num_classes)[train_y]
    return np.einsum("qk,qkc->qc", weight, labels[idx])


def knn_probe(train: Split, valid: Split, test: Split, num_classes: int,
              multilabel: bool) -> Outcome:
    run = lambda s: knn_scores(train.x, train.y, s.x, num_classes)
    s = run(test)
    return Outcome(score(test.y, s, multilabel), score(valid.y, run(valid), multilabel),
                   {"k": 10, "temperature": 0.07}, s)


def fit_attention(tokens: np.ndarray, mask: np.ndarray, y: np.ndarray, num_classes: int,
                  l2: float, steps: int, multilabel: bool = False, heads: int = 4,
                  lr: float = 3e-3) -> Callable:
    """Attention pooling (`heads` learned queries, softmax over real frames) and a linear
    classifier on the pooled vectors, trained full-batch with Adam. With zero queries it
    starts as mean pooling. Returns predict(tokens, mask) -> logits [N, K]."""
    import jax
    import jax.numpy as jnp
    import optax

    real = mask.astype(bool)
    mean, std = tokens[real].mean(0), tokens[real].std(0) + 1e-6
    d = tokens.shape[-1]

    def logits_fn(w, x, m):
        x = (x - mean) / std
        att = jax.nn.softmax(jnp.where(m[..., None], x @ w["q"].T, -1e9), axis=1)  # [N, T, H]
        pooled = jnp.einsum("nth,ntd->nhd", att, x).reshape(x.shape[0], -1)
        return pooled @ w["w"] + w["b"]

    def loss(w, x, m, y):
        logits = logits_fn(w, x, m)
        if multilabel:
            fit = optax.sigmoid_binary_cross_entropy(logits, y).mean()
        else:
            fit = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return fit + l2 * (jnp.sum(w["w"] ** 2) + jnp.sum(w["q"] ** 2))

    w = {"q": jnp.zeros((heads, d)), "w": jnp.zeros((heads * d, num_classes)),
         "b": jnp.zeros(num_classes)}
    opt = optax.adam(lr)
    state = opt.init(w)
    x, m = jnp.asarray(tokens, jnp.float32), jnp.asarray(real)
    yj = jnp.asarray(y, jnp.float32 if multilabel else jnp.int32)

    @jax.jit
    def step(w, state):
        grad = jax.grad(loss)(w, x, m, yj)
        updates, state = opt.update(grad, state, w)
        return optax.apply_updates(w, updates), state

    for _ in range(steps):
        w, state = step(w, state)
    predict = jax.jit(logits_fn)
    return lambda t, mk: np.asarray(predict(w, jnp.asarray(t, jnp.float32),
                                            jnp.asarray(mk.astype(bool))))


def attention_probe(train: Split, valid: Split, test: Split, num_classes: int,
                    multilabel: bool, steps: int = 300) -> Outcome:
    """Attention pooling over frame embeddings + linear classifier, L2 chosen on valid."""
    if train.tokens is None:
        raise ValueError("the attention probe needs frame (timestamp) embeddings")

    def fit(split, setting):
        predict = fit_attention(split.tokens, split.mask, split.y, num_classes, setting["l2"],
                                steps, multilabel)
        return lambda s: predict(s.tokens, s.mask)

    return _select(train, valid, test, multilabel, [{"l2": v} for v in ATTENTION_L2], fit)


PROBES = {"linear": linear_probe, "attention": attention_probe, "mlp": mlp_probe,
          "knn": knn_probe}


# ----------------------------------------------------------------------------- retrieval


def _rank_metrics(sim: np.ndarray, relevant: np.ndarray, ks=(1, 5, 10)) -> dict[str, float]:
    """sim [Q, C], relevant [Q, C] bool: R@k (a relevant item in the top k) and mAP@10
    (sum over the top 10 of precision@r at each relevant r, / min(#relevant, 10))."""
    order = np.argsort(-sim, axis=1, kind="stable")  # ties: lower column index first
    hits = np.take_along_axis(relevant, order, axis=1)
    out = {f"R@{k}": float(hits[:, :k].any(1).mean()) for k in ks}
    top = hits[:, :10].astype(np.float64)
    precision = np.cumsum(top, 1) / np.arange(1, top.shape[1] + 1)
    denom = np.minimum(relevant.sum(1), 10)
    out["mAP@10"] = float(((precision * top).sum(1) / np.maximum(denom, 1)).mean())
    return out


def retrieval(audio_emb: np.ndarray, text_emb: np.ndarray,
              text_to_audio: Sequence[int] | None = None) -> dict[str, dict[str, float]]:
    """Audio <-> text retrieval by cosine similarity. audio_emb [N, D], text_emb [M, D];
    text_to_audio[j] is the clip caption j describes (default: j, one caption per clip).
    Returns {"audio_to_text": {...}, "text_to_audio": {...}} with R@1, R@5, R@10, mAP@10."""
    a = np.asarray(audio_emb, np.float64)
    t = np.asarray(text_emb, np.float64)
    owner = np.arange(len(t)) if text_to_audio is None else np.asarray(text_to_audio)
    if len(owner) != len(t) or owner.max() >= len(a):
        raise ValueError(f"text_to_audio must give one clip index (< {len(a)}) per caption "
                         f"({len(t)} captions)")
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    t = t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)
    return retrieval_from_similarity(a @ t.T, owner)


def retrieval_from_similarity(sim: np.ndarray, text_to_audio: Sequence[int] | None = None
                              ) -> dict[str, dict[str, float]]:
    """The same metrics from any audio x text score matrix [N, M] (e.g. a captioner's
    log p(caption | audio))."""
    sim = np.asarray(sim, np.float64)
    owner = np.arange(sim.shape[1]) if text_to_audio is None else np.asarray(text_to_audio)
    relevant = owner[None, :] == np.arange(sim.shape[0])[:, None]
    return {"audio_to_text": _rank_metrics(sim, relevant),
            "text_to_audio": _rank_metrics(sim.T, relevant.T)}
