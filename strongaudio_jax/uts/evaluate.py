"""Precision and recall of extracted tags against reference tags (e.g. the demo corpus's)."""

from __future__ import annotations

import collections
from typing import Mapping, Sequence

from strongaudio_jax.uts.normalize import Normalizer


def precision_recall(predicted: Mapping[str, Sequence[str]], reference: Mapping[str, Sequence[str]],
                     normalize: Normalizer | None) -> dict:
    """Micro-averaged over clips in `reference`; tags compared after `normalize` (None: raw).

    A clip missing from `predicted` counts with no tags (its reference tags are all missed)."""
    norm = normalize.many if normalize else (lambda ts: list(dict.fromkeys(ts)))
    tp = n_pred = n_ref = 0
    missed: collections.Counter = collections.Counter()
    extra: collections.Counter = collections.Counter()
    for clip_id, ref in reference.items():
        r = set(norm(ref))
        p = set(norm(predicted.get(clip_id, ())))
        tp += len(r & p)
        n_pred += len(p)
        n_ref += len(r)
        missed.update(r - p)
        extra.update(p - r)
    return {"clips": len(reference), "missing_clips": sum(k not in predicted for k in reference),
            "precision": tp / n_pred if n_pred else 0.0, "recall": tp / n_ref if n_ref else 0.0,
            "true_positives": tp, "predicted": n_pred, "reference": n_ref,
            "most_missed": missed.most_common(10), "most_extra": extra.most_common(10)}
