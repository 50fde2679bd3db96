"""Evaluation protocols and metrics against hand-computed values and scikit-learn."""

import shutil

import numpy as np
import pytest

from strongaudio_jax.eval import captions, events, metrics, protocols


def test_knn_votes_are_temperature_weighted_cosine():
    train = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y = np.array([0, 1, 1])
    scores = protocols.knn_scores(train, y, np.array([[2.0, 0.0]]), num_classes=2, k=2)
    # neighbours by cosine: clip 0 (similarity 1) and clip 2 (1/sqrt 2); clip 1 (0) is out
    np.testing.assert_allclose(scores, [[np.exp(1 / 0.07), np.exp(2 ** -0.5 / 0.07)]], rtol=1e-6)
    multi = protocols.knn_scores(train, np.array([[1, 0], [0, 1], [1, 1]], float),
                                 np.array([[2.0, 0.0]]), 2, k=2)
    np.testing.assert_allclose(multi, [[np.exp(1 / 0.07) + np.exp(2 ** -0.5 / 0.07),
                                        np.exp(2 ** -0.5 / 0.07)]], rtol=1e-6)


def test_retrieval_recall_and_map_both_ways():
    audio = np.eye(3)
    text = np.array([[1, 0, 0], [0.1, 1, 0], [0, 0.5, 1], [0, 0, 1]])
    r = protocols.retrieval(audio, text, text_to_audio=[0, 0, 1, 2])
    # audio 0 finds its captions 0, 1 at ranks 1, 2; audio 1 its caption 2 at rank 2;
    # audio 2 its caption 3 at rank 1
    assert r["audio_to_text"] == pytest.approx(
        {"R@1": 2 / 3, "R@5": 1.0, "R@10": 1.0, "mAP@10": (1 + 0.5 + 1) / 3})
    # captions 0, 3 find their clip first, captions 1, 2 second
    assert r["text_to_audio"] == pytest.approx({"R@1": 0.5, "R@5": 1.0, "R@10": 1.0,
                                                "mAP@10": 0.75})
    with pytest.raises(ValueError, match="one clip index"):
        protocols.retrieval(audio, text, text_to_audio=[0, 1])


def test_retrieval_recall_agrees_with_the_old_metric():
    rng = np.random.default_rng(0)
    a, t = rng.standard_normal((20, 8)), rng.standard_normal((20, 8))
    r = protocols.retrieval(a, t)
    an = a / np.linalg.norm(a, axis=1, keepdims=True)
    tn = t / np.linalg.norm(t, axis=1, keepdims=True)
    old = metrics.recall_at_k(an @ tn.T, ks=(1, 5, 10))
    assert [r["audio_to_text"][f"R@{k}"] for k in (1, 5, 10)] == pytest.approx(
        [old[k] for k in (1, 5, 10)])


def test_map_matches_the_hand_written_metric():
    rng = np.random.default_rng(1)
    y = (rng.random((40, 6)) < 0.3).astype(float)
    y[:, 5] = 0  # a class without positives is left out by both
    s = rng.standard_normal((40, 6))
    assert protocols.mean_average_precision(y, s) == pytest.approx(
        metrics.mean_average_precision(s, y))


def _blobs(n, centres, rng):
    y = np.arange(n) % len(centres)
    return protocols.Split(centres[y] + 0.3 * rng.standard_normal((n, centres.shape[1])), y)


@pytest.mark.parametrize("probe", ["linear", "mlp", "knn"])
def test_probes_separate_clear_classes(probe):
    rng = np.random.default_rng(0)
    centres = 3 * rng.standard_normal((3, 6))
    train, valid, test = _blobs(60, centres, rng), _blobs(30, centres, rng), _blobs(30, centres, rng)
    out = protocols.PROBES[probe](train, valid, test, 3, False)
    assert out.test == 1.0 and out.scores.shape == (30, 3)
    # a class the probe never saw in training is an error, never skipped
    test.y = np.full(30, 2)
    train_wo = protocols.Split(train.x[train.y < 2], train.y[train.y < 2])
    valid_wo = protocols.Split(valid.x[valid.y < 2], valid.y[valid.y < 2])
    assert protocols.PROBES[probe](train_wo, valid_wo, test, 3, False).test == 0.0


def test_probes_multilabel():
    rng = np.random.default_rng(0)

    def split(n):
        y = (rng.random((n, 3)) < 0.4).astype(np.float32)
        tokens = rng.standard_normal((n, 5, 4)).astype(np.float32) * 0.3
        tokens[:, 2, :3] += 2 * y  # the labels show in one frame
        return protocols.Split(tokens.mean(1), y, tokens, np.ones((n, 5), bool))

    train, valid, test = split(60), split(30), split(30)
    lin = protocols.linear_probe(train, valid, test, 3, True)
    att = protocols.attention_probe(train, valid, test, 3, True, steps=150)
    mlp = protocols.mlp_probe(train, valid, test, 3, True)
    assert lin.test > 0.9 and att.test > 0.9 and mlp.test > 0.9
    assert lin.chosen["C"] in protocols.LINEAR_C and att.chosen["l2"] in protocols.ATTENTION_L2


def test_caption_metrics_hand_computed():
    m = captions.caption_metrics(["A dog barks loudly."], [["a dog barks"]], spice=False)
    assert m["BLEU_1"] == pytest.approx(0.75, abs=1e-6)  # 3 of 4 words, no brevity penalty
    assert m["BLEU_2"] == pytest.approx((0.75 * 2 / 3) ** 0.5, abs=1e-6)
    # ROUGE-L: LCS 3, precision 3/4, recall 1, beta 1.2
    p, r, b2 = 0.75, 1.0, 1.2 ** 2
    assert m["ROUGE_L"] == pytest.approx((1 + b2) * p * r / (r + b2 * p), abs=1e-6)
    # CIDEr-D: each n-gram is in one of two clips (idf log 2); exact matches have cosine 1
    # for the n-gram orders they contain: (1+1+1+0)/4 and (1+1+0+0)/4, times 10
    m = captions.caption_metrics(["a dog barks", "rain falls"], [["a dog barks"], ["rain falls"]],
                                 spice=False)
    assert m["CIDEr-D"] == pytest.approx((7.5 + 5.0) / 2, abs=1e-6)
    assert m["BLEU_1"] == pytest.approx(1.0, abs=1e-6)
    assert "SPICE" not in m and m["skipped"]


def test_spice_skipped_with_a_reason_without_java(monkeypatch):
    monkeypatch.setattr(captions.shutil, "which", lambda name: None)
    m = captions.caption_metrics(["a dog"], [["a dog"]])
    assert "SPIDEr" not in m and "Java" in m["skipped"][0]


CAPTIONS = ["A dog, barking... Loudly!", "The dog's bark isn't loud.",
            "Birds chirp (in the distance); a car passes-by.",
            'Water "splashes" 2 times: then silence?',
            "A man speaks at 2.5 kHz & a woman laughs; they're talking about e-mail."]


def test_tokenize_matches_the_java_ptb_tokenizer():
    if shutil.which("java") is None:
        pytest.skip("the COCO PTB tokenizer needs Java (not installed)")
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    ptb = PTBTokenizer().tokenize({i: [{"caption": c}] for i, c in enumerate(CAPTIONS)})
    assert [captions.tokenize(c) for c in CAPTIONS] == [ptb[i][0] for i in range(len(CAPTIONS))]


def test_tokenize_like_the_coco_evaluation():
    assert captions.tokenize("A dog, barking... Loudly!") == "a dog barking loudly"
    assert captions.tokenize("The dog's bark") == "the dog 's bark"
    with pytest.raises(ValueError, match="one prediction per clip"):
        captions.caption_metrics(["a"], [["a"], ["b"]])


def test_event_onset_f_measure_hand_computed():
    # references: (clip, class, onset, offset) ms
    ref = [(0, 0, 0, 500), (0, 0, 1000, 1500), (0, 1, 200, 900)]
    est = [(0, 0, 100, 400),   # onset 100 ms off: a match
           (0, 0, 1300, 1400),  # 300 ms off: a false positive (and the reference is missed)
           (0, 1, 250, 800),   # a match
           (0, 2, 0, 100)]     # a class with no reference: a false positive
    assert events.onset_f_measure(ref, est) == pytest.approx(2 * 2 / (2 * 2 + 2 + 1))
    # each reference matches at most once; the matching is maximal, not greedy
    assert events.onset_f_measure([(0, 0, 0, 1), (0, 0, 300, 1)], [(0, 0, 150, 1), (0, 0, 350, 1)]) == 1.0
    assert events.onset_f_measure([(0, 0, 0, 1)], [(0, 0, 100, 1), (0, 0, 150, 1)]) == pytest.approx(2 / 3)


def test_frames_to_events_and_back():
    times = np.arange(0, 1000, 50.0)  # 20 frames, 50 ms hop
    y = events.frame_targets(times, [(1, 200, 500)], 2)
    assert y[:, 0].sum() == 0 and np.flatnonzero(y[:, 1]).tolist() == [4, 5, 6, 7, 8, 9, 10]
    probs = y.copy()
    probs[15, 0] = 0.9  # a one-frame blip: removed by the 250 ms median filter
    found = events.to_events(probs, np.zeros(20, int), times, min_duration_ms=125)
    assert found == [(0, 1, 200.0, 500.0)]
