"""`strongaudio curate coverage`: per-domain tag statistics of tiny corpora, worked out by hand,
the side-by-side of two corpora, damage counted, and the report's files."""

import json
import math

import numpy as np
import pytest

from strongaudio_jax import cli
from strongaudio_jax.curate import coverage
from strongaudio_jax.data import audio, schema, tfrecord


def _write(path, rows, corrupt_last=False):
    """rows: (id, domain, tags) -> one shard of 0.1 s silent clips."""
    with tfrecord.TFRecordWriter(str(path)) as w:
        for cid, dom, tags in rows:
            w.write(schema.clip_to_example(schema.Clip(
                id=cid, audio=audio.encode(np.zeros(1600), 16000), format="flac",
                sample_rate=16000, num_samples=1600, tags=tags, labels={"domain": dom})))
    if corrupt_last:
        data = bytearray(path.read_bytes())
        offset = tfrecord.index_records(str(path))[-1][0]
        data[offset + 30] ^= 1  # the last record fails its CRC
        path.write_bytes(bytes(data))
    return str(path)


A = [("a0", "speech", ["speech", "male"]), ("a1", "speech", ["speech", "female"]),
     ("a2", "speech", ["speech", "male"]), ("a3", "music", ["music", "piano"]),
     ("a4", "music", [])]
B = [("b0", "speech", ["speech", "male"]), ("b1", "music", ["music", "guitar"]),
     ("b2", "music", ["music", "guitar"])]


def test_statistics_by_hand(tmp_path):
    c = coverage.count("a", [_write(tmp_path / "a.tfrecord", A)], vocab=["male", "piano"],
                       progress=False)
    sp = coverage.domain_stats(c.domains["speech"], tail=2, vocab=["male", "piano"], top=3)
    # speech: df speech 3, male 2, female 1 over 3 clips
    assert sp["clips"] == 3 and sp["distinct_tags"] == 3 and sp["mean_tags"] == 2
    assert sp["long_tail_tags"] == 1 and sp["long_tail_share"] == pytest.approx(1 / 3)
    p = np.array([3, 2, 1]) / 6
    h = float(-(p * np.log2(p)).sum())
    assert sp["entropy_bits"] == pytest.approx(h)
    assert sp["normalised_entropy"] == pytest.approx(h / math.log2(3))
    assert sp["top_tags"] == [["speech", 3], ["male", 2], ["female", 1]]
    assert sp["clips_with_vocab_tag"] == pytest.approx(2 / 3)
    assert sp["vocab_tags_present"] == 1 and sp["tag_occurrences_in_vocab"] == pytest.approx(2 / 6)
    mu = coverage.domain_stats(c.domains["music"], tail=2, vocab=None, top=3)
    assert mu["clips"] == 2 and mu["tagged_fraction"] == 0.5 and mu["long_tail_share"] == 1.0
    assert mu["normalised_entropy"] == pytest.approx(1.0)  # two tags, equally often
    assert c.domains["all"].clips == 5


def test_js_divergence_bounds():
    assert coverage.js_divergence_bits({"x": 3}, {"x": 5}) == pytest.approx(0.0)
    assert coverage.js_divergence_bits({"x": 1}, {"y": 1}) == pytest.approx(1.0)
    mid = coverage.js_divergence_bits({"x": 1, "y": 1}, {"x": 1})
    assert 0 < mid < 1


def test_cli_two_corpora_side_by_side_with_plots(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _write(tmp_path / "a" / "train-0.tfrecord", A[:3])
    _write(tmp_path / "a" / "train-1.tfrecord", A[3:] + [("bad", "sound", ["x"])], corrupt_last=True)
    _write(tmp_path / "b" / "train-0.tfrecord", B)
    out = tmp_path / "report"
    assert cli.main(["curate", "coverage", "--corpus", f"A={tmp_path}/a/train-*.tfrecord",
                     "--corpus", f"B={tmp_path}/b/train-*.tfrecord", "--out-dir", str(out),
                     "--tail", "2"]) == 0
    printed = capsys.readouterr().out
    assert "A: 5 clips" in printed and "1 damaged record(s) skipped" in printed
    r = json.loads((out / "coverage.json").read_text())
    assert r["corpora"]["A"]["damaged_records"] == 1
    assert "train-1.tfrecord: record 2 " in r["corpora"]["A"]["damage"][0]
    cmp_ = r["comparison"]["domains"]
    assert (cmp_["music"]["shared_tags"], cmp_["music"]["only_a"], cmp_["music"]["only_b"]) == (1, 1, 1)
    assert cmp_["music"]["jaccard"] == pytest.approx(1 / 3)
    assert cmp_["speech"]["only_b"] == 0 and cmp_["speech"]["only_a"] == 1  # female
    # guitar (0 -> 1.0 of B's music clips) is the largest difference in music
    assert cmp_["music"]["largest_differences"][0] == ["guitar", 0.0, 1.0]
    md = (out / "coverage.md").read_text()
    assert "## A vs B" in md and "| A | speech | 3 |" in md
    for png in ("tag_frequency.png", "domains.png", "top_tags.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def test_cli_names_a_pattern_that_matches_nothing(tmp_path, capsys):
    assert cli.main(["curate", "coverage", "--corpus", f"{tmp_path}/none-*.tfrecord",
                     "--out-dir", str(tmp_path / "r")]) == 2
    assert "no shard matches" in capsys.readouterr().err
