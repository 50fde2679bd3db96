"""Ranking metrics: mean average precision (multi-label tagging) and retrieval recall@k."""

from __future__ import annotations

import numpy as np


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """AP of one class: mean precision at the rank of each positive (ties: stable order)."""
    order = np.argsort(-scores, kind="stable")
    hits = labels[order] > 0.5
    if not hits.any():
        return float("nan")
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())


def mean_average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """mAP over the classes [N, K] that have at least one positive among the N clips."""
    aps = [average_precision(scores[:, k], labels[:, k]) for k in range(labels.shape[1])
           if (labels[:, k] > 0.5).any()]
    return float(np.mean(aps)) if aps else float("nan")


def recall_at_k(similarity: np.ndarray, ks=(1, 10)) -> dict[int, float]:
    """Share of queries (rows) whose match (the same index in the columns) ranks in the top
    k; ties count against the query (the match must beat every other column strictly)."""
    sim = np.asarray(similarity, np.float64)
    match = np.diag(sim)[:, None]
    rank = (sim > match).sum(1) + ((sim == match).sum(1) - 1)  # 0 = first
    return {k: float((rank < k).mean()) for k in ks}
