"""Event (timestamp) tasks: frame-level probes scored by event-based onset F-measure.

Each frame embedding of a clip (the HEAR module's timestamp embeddings) is labelled with
the events active at its timestamp (start <= t <= end, as hear-eval-kit does). A multi-label
frame classifier (the `linear` or `mlp` protocol) is fit on the training frames. Its
probabilities above 0.5, median-filtered over 250 ms, become events: a run of consecutive
active frames of one class, from the first frame's timestamp to the last one's; events
shorter than a minimum duration (125 or 250 ms, chosen on valid) are dropped, as in HEAR's
post-processing. The score is HEAR's primary event
metric: the event-based F-measure on onsets with a 200 ms collar (sed_eval's
`event_onset_200ms_fms`): a predicted event matches a reference event of the same class and
clip whose onset is within 200 ms, each reference matched at most once (a maximum matching),
F = 2 TP / (2 TP + FP + FN) over all events of the split. Hyper-parameters are chosen on
the validation split by that F-measure.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from strongaudio_jax.eval import protocols

EVENT_PROTOCOLS = ("linear", "mlp")
MEDIAN_MS = 250.0  # HEAR's post-processing: median filter, then a minimum event duration
MIN_DURATION_MS = (125.0, 250.0)  # chosen on the validation split


@dataclasses.dataclass
class EventSplit:
    """All frames of a split: x [F, D], y [F, K] 0/1, clip [F] clip index, time [F] ms;
    events: (clip index, class index, onset ms, offset ms) of the references."""
    x: np.ndarray
    y: np.ndarray
    clip: np.ndarray
    time: np.ndarray
    events: list[tuple[int, int, float, float]]

    def __len__(self) -> int:
        return len(self.y)


def frame_targets(times: np.ndarray, events: Sequence[tuple[int, float, float]],
                  num_classes: int) -> np.ndarray:
    """[T, K]: class k is on at frame t when an event of k has start <= t <= end."""
    y = np.zeros((len(times), num_classes), np.float32)
    for k, start, end in events:
        y[(times >= start) & (times <= end), k] = 1
    return y


def to_events(probs: np.ndarray, clip: np.ndarray, time: np.ndarray, threshold: float = 0.5,
              median_ms: float = MEDIAN_MS, min_duration_ms: float = 0.0
              ) -> list[tuple[int, int, float, float]]:
    """Runs of consecutive frames above threshold, per clip and class, after a median filter
    of about median_ms over each clip's frames; runs shorter than min_duration_ms dropped."""
    from scipy.ndimage import median_filter

    out = []
    for c in np.unique(clip):
        rows = np.flatnonzero(clip == c)
        on = probs[rows] > threshold  # [T, K]
        hop = float(np.median(np.diff(time[rows]))) if len(rows) > 1 else median_ms
        width = max(int(round(median_ms / hop)) | 1, 1)  # odd, in frames
        on = median_filter(on.astype(np.uint8), size=(width, 1), mode="nearest") > 0
        for k in range(probs.shape[1]):
            edges = np.diff(np.concatenate([[0], on[:, k].astype(np.int8), [0]]))
            for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
                onset, offset = float(time[rows[a]]), float(time[rows[b - 1]])
                if offset - onset >= min_duration_ms:
                    out.append((int(c), k, onset, offset))
    return out


def onset_f_measure(reference, estimated, collar_ms: float = 200.0) -> float:
    """Event-based F-measure on onsets (see the module docstring); both lists hold
    (clip, class, onset ms, ...). No events on either side: 1.0 when both are empty."""
    from scipy.optimize import linear_sum_assignment

    tp = 0
    keys = {(e[0], e[1]) for e in reference} | {(e[0], e[1]) for e in estimated}
    for key in keys:
        ref = np.array([e[2] for e in reference if (e[0], e[1]) == key])
        est = np.array([e[2] for e in estimated if (e[0], e[1]) == key])
        if len(ref) and len(est):
            ok = np.abs(ref[:, None] - est[None, :]) <= collar_ms
            rows, cols = linear_sum_assignment(-ok.astype(float))  # maximum matching
            tp += int(ok[rows, cols].sum())
    fp, fn = len(estimated) - tp, len(reference) - tp
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def _probabilities(name: str, scores: np.ndarray) -> np.ndarray:
    return scores if name == "linear" else 1.0 / (1.0 + np.exp(-scores))  # MLP: logits


def event_probe(name: str, train: EventSplit, valid: EventSplit, test: EventSplit,
                num_classes: int) -> protocols.Outcome:
    """The `linear` or `mlp` protocol on frames, chosen and scored by onset F-measure."""
    if name not in EVENT_PROTOCOLS:
        raise ValueError(f"event tasks support the protocols {EVENT_PROTOCOLS}, not {name!r}")
    if name == "linear":
        grid = [{"C": c} for c in protocols.LINEAR_C]
        fit = protocols.linear_fit(train.x, num_classes, True)
    else:
        grid = protocols.MLP_GRID
        fit = lambda split, setting: protocols.fit_mlp(split, valid, num_classes, True,
                                                       setting["hidden"], setting["lr"])
    f = lambda split, scores, min_ms: onset_f_measure(split.events, to_events(
        _probabilities(name, scores), split.clip, split.time, min_duration_ms=min_ms))
    best = None
    for setting in grid:
        predict = fit(train, setting)
        valid_scores = predict(valid)
        for min_ms in MIN_DURATION_MS:
            v = f(valid, valid_scores, min_ms)
            if best is None or v > best[0]:
                best = (v, {**setting, "min_duration_ms": min_ms}, predict)
    v, setting, predict = best
    scores = predict(test)
    return protocols.Outcome(f(test, scores, setting["min_duration_ms"]), v, setting, scores)
