"""Evaluation protocols on frozen embeddings: probes, kNN, retrieval.

Every probe is fit on a task's training split, its hyper-parameters are chosen on the
validation split (as HEAR does), and it is scored on the test split:

  * `linear`: mean-pooled embeddings -> standardised -> logistic regression (scikit-learn;
    one-vs-rest for multi-label), L2 strength chosen from `LINEAR_C`;
  * `attention`: frame embeddings -> a few learned attention queries (padding masked) -> a
    linear classifier, trained full-batch with Adam in JAX (no library offers it); L2
    strength chosen from `ATTENTION_L2`;
  * `mlp`: one hidden layer (scikit-learn MLPClassifier), width and L2 from `MLP_GRID`;
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
MLP_GRID = ({"hidden": 512, "alpha": 1e-4}, {"hidden": 512, "alpha": 1e-2},
            {"hidden": 1024, "alpha": 1e-4}, {"hidden": 1024, "alpha": 1e-2})
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


def linear_probe(train: Split, valid: Split, test: Split, num_classes: int,
                 multilabel: bool) -> Outcome:
    """Logistic regression on standardised mean-pooled embeddings, C chosen on valid."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    norm = _standardise(train.x)

    def fit(split, setting):
        clf = LogisticRegression(C=setting["C"], max_iter=1000)
        if multilabel:
            present = split.y.any(0) & ~split.y.all(0)  # a one-class column cannot be fit
            model = OneVsRestClassifier(clf).fit(norm(split.x), split.y[:, present])
            return lambda s: _columns(model.predict_proba(norm(s.x)), present, num_classes, 0.0)
        model = clf.fit(norm(split.x), split.y)
        return lambda s: _columns(model.predict_log_proba(norm(s.x)), model.classes_,
                                  num_classes, -np.inf)

    return _select(train, valid, test, multilabel, [{"C": c} for c in LINEAR_C], fit)


def mlp_probe(train: Split, valid: Split, test: Split, num_classes: int, multilabel: bool,
              seed: int = 0) -> Outcome:
    """One-hidden-layer MLP (Adam, scikit-learn), width and L2 chosen on valid."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    norm = _standardise(train.x)

    def fit(split, setting):
        clf = MLPClassifier(hidden_layer_sizes=(setting["hidden"],), alpha=setting["alpha"],
                            max_iter=200, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            if multilabel:
                model = clf.fit(norm(split.x), split.y.astype(int))
                return lambda s: model.predict_proba(norm(s.x))
            model = clf.fit(norm(split.x), split.y)
        return lambda s: _columns(model.predict_proba(norm(s.x)), model.classes_, num_classes,
                                  -1.0)

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
