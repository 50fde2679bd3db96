"""Evaluation used to compare objectives: mAP, retrieval recall@k, the attention probe."""

import numpy as np
import pytest

from strongaudio_jax.eval import metrics, probe


def test_average_precision_by_hand():
    # Positives ranked 1st and 3rd: AP = (1/1 + 2/3) / 2.
    assert metrics.average_precision(np.array([0.9, 0.8, 0.7, 0.1]), np.array([1, 0, 1, 0])) == \
        pytest.approx((1 + 2 / 3) / 2)
    scores = np.array([[0.9, 0.1], [0.8, 0.7], [0.1, 0.9]])
    labels = np.array([[1, 0], [0, 1], [0, 0]])  # class 1: its positive is ranked 2nd
    assert metrics.mean_average_precision(scores, labels) == pytest.approx((1 + 0.5) / 2)
    # A class without positives is left out rather than counted as 0 or NaN.
    assert metrics.mean_average_precision(scores, np.array([[1, 0], [0, 0], [0, 0]])) == 1.0


def test_average_precision_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    s, y = rng.random(50), rng.random(50) < 0.3
    ranks = np.argsort(-s)
    precisions = [y[ranks[:i + 1]].mean() for i in range(50) if y[ranks[i]]]
    assert metrics.average_precision(s, y) == pytest.approx(np.mean(precisions))


def test_recall_at_k():
    sim = np.array([[0.9, 0.1, 0.0],   # match ranked 1st
                    [0.8, 0.5, 0.1],   # 2nd
                    [0.3, 0.3, 0.3]])  # tied with all: counts as last
    assert metrics.recall_at_k(sim, ks=(1, 2, 3)) == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3), 3: 1.0}


def test_attention_probe_finds_the_informative_token():
    """The class is in one token at a random place among many noise tokens: attention
    pooling reads it, mean pooling mostly averages it away."""
    rng = np.random.default_rng(0)

    def data(n):
        y = rng.integers(0, 3, n)
        tokens = rng.standard_normal((n, 24, 8)).astype(np.float32)
        where = rng.integers(0, 20, n)
        tokens[np.arange(n), where] = 0.0
        tokens[np.arange(n), where, 0] = 6.0  # a marker the queries can find
        tokens[np.arange(n), where, 1 + y] = 6.0  # the class
        mask = np.ones((n, 24), bool)
        mask[:, 20:] = False  # padding: must not matter
        tokens[:, 20:] = 100.0
        return (tokens, mask), [{"c": str(v)} for v in y]

    train, train_labels = data(300)
    test, test_labels = data(120)
    (att,) = probe.attention_probes(train, train_labels, test, test_labels, ["c"], l2=1e-4, steps=300)
    (mean,) = probe.linear_probes(probe.masked_mean_np(*train), train_labels,
                                  probe.masked_mean_np(*test), test_labels, ["c"], steps=100)
    assert att.pooling == "attention" and att.accuracy > 0.9, att
    assert att.accuracy > mean.accuracy


def test_tag_map_report_overall_and_per_domain():
    from strongaudio_jax.eval import tagging

    tags = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], np.float32)
    domains = np.array(["speech", "speech", "music", ""])
    perfect = tagging.report(tags * 2 - 1, tags, domains)
    assert perfect == {"tags/mAP": 1.0, "tags/mAP_music": 1.0, "tags/mAP_speech": 1.0}
    inverted = tagging.report(1 - tags, tags, domains)["tags/mAP"]
    # each tag: two positives ranked 3rd and 4th of 4 -> AP = (1/3 + 2/4) / 2
    assert inverted == pytest.approx((1 / 3 + 2 / 4) / 2)
