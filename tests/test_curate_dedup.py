"""`strongaudio curate plant` / `dedup`: planted copies (re-encoded, gain-changed, time-shifted)
of held-out clips hidden in a training shard are found as leaks with a threshold chosen from
their labels; the clean corpus raises no alarm; the shard-by-shard index finds within-corpus
pairs once; the embedding cache resumes and refuses another model."""

import json

import numpy as np
import pytest

pytest.importorskip("faiss")

from strongaudio_jax import hub  # noqa: E402
from strongaudio_jax.curate import dedup, embed, records  # noqa: E402
from strongaudio_jax.data import audio, schema, tfrecord  # noqa: E402
from tests.hub_fixtures import tiny_model  # noqa: E402

SR = 16000


def _signal(kind: int, seed: int) -> np.ndarray:
    """Clearly different 3 s sounds (no noise: two noise clips are alike to any encoder):
    kind picks the family, seed its parameters."""
    rng = np.random.default_rng(seed)
    t = np.arange(3 * SR) / SR
    f0 = 150 + 41 * seed  # every seed its own pitch
    family = kind % 6
    if family == 0:  # tone with vibrato
        w = np.sin(2 * np.pi * f0 * t + 3 * np.sin(2 * np.pi * 5 * t))
    elif family == 1:  # a chirp, rising or falling
        w = np.sin(2 * np.pi * (f0 + (1 if seed % 4 else -1) * 150 * seed * t) * t)
    elif family == 2:  # tone bursts
        w = np.sin(2 * np.pi * 2 * f0 * t) * (np.sin(2 * np.pi * (2 + seed % 7) * t) > 0.5)
    elif family == 3:  # click train
        w = np.zeros(len(t))
        w[:: SR // (5 + 3 * seed)] = 1.0
    elif family == 4:  # square wave melody
        notes = f0 * 2 ** (rng.integers(0, 12, 6) / 12)
        w = np.sign(np.sin(2 * np.pi * np.repeat(notes, len(t) // 6 + 1)[:len(t)] * t))
    else:  # a decaying fifth
        w = (np.sin(2 * np.pi * f0 * t) + np.sin(2 * np.pi * 1.5 * f0 * t)) * np.exp(-3 * t)
    return (0.4 * w / np.abs(w).max()).astype(np.float32)


def _shard(path, prefix, kinds):
    with tfrecord.TFRecordWriter(str(path)) as w:
        for i, (kind, seed) in enumerate(kinds):
            wave = _signal(kind, seed)
            w.write(schema.clip_to_example(schema.Clip(
                id=f"{prefix}{i}", audio=audio.encode(wave, SR), format="flac", sample_rate=SR,
                num_samples=len(wave), source=f"{prefix} {kind}/{seed}",
                labels={"domain": "sound"})))
    return str(path)


@pytest.fixture(scope="module")
def model():
    return tiny_model(batch_size=8, source_workdir="test", step=0, params="raw", model="vit")[0]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("dedup_corpus")
    # Sound families 1, 3, 5 held out, 0, 2, 4 in training: no two clean clips are alike.
    heldout = _shard(root / "heldout.tfrecord", "h", [(1, 2), (3, 6), (5, 10)])
    train = [_shard(root / "train-0.tfrecord", "t0-", [(0, 12), (2, 16)]),
             _shard(root / "train-1.tfrecord", "t1-", [(4, 20)])]
    planted = dedup.plant([heldout], str(root / "planted"), num=3, seed=0, progress=False)
    return root, heldout, train, planted


def test_planted_copies_are_labelled_and_altered(corpus):
    root, heldout, _, planted = corpus
    assert len(planted["copies"]) == 9 and {c["kind"] for c in planted["copies"]} == set(dedup.KINDS)
    clips = {c.id: c for c in records.shard_clips(str(root / "planted" / "planted.tfrecord"),
                                                  records.Damage())}
    originals = {c.id: c for c in records.shard_clips(heldout, records.Damage())}
    for c in planted["copies"]:
        copy, orig = clips[c["id"]], originals[c["original"]]
        a, _ = audio.decode(copy.audio)
        b, _ = audio.decode(orig.audio)
        assert copy.format == ("ogg" if c["kind"] == "reencoded" else "flac")
        assert not np.array_equal(a[:len(b)], b)  # really altered
        if c["kind"] == "gain":
            assert np.abs(a).max() / np.abs(b).max() == pytest.approx(10 ** (c["gain_db"] / 20), rel=0.01)
        if c["kind"] == "shifted":
            s = c["shift_samples"]
            np.testing.assert_allclose(a[s:], b[:len(b) - s], atol=1e-4)


def test_leaks_found_and_no_false_alarm_on_the_clean_corpus(corpus, model, tmp_path):
    root, heldout, train, planted = corpus
    embedder = embed.Embedder(model, batch_size=8)
    cache = str(tmp_path / "cache")
    emb = embed.embed_corpus(embedder, train + [str(root / "planted" / "planted.tfrecord")], cache,
                             "c", progress=False)
    ref = embed.embed_corpus(embedder, [heldout], cache, "r", progress=False)
    assert len(emb) == 3 + 9 and len(ref) == 3
    mean = dedup.centre(emb, ref)
    within = dedup.within_pairs(emb, k=3)
    against = dedup.against_pairs(emb, ref, k=3)
    # Found: each copy's nearest held-out clip is the clip it was made from.
    nearest = {}
    for i, j, sim in against:
        if sim > nearest.get(emb.ids[i], ("", -2))[1]:
            nearest[emb.ids[i]] = (ref.ids[j], sim)
    assert all(nearest[c["id"]][0] == c["original"] for c in planted["copies"]), nearest
    # The threshold from the labels, and what it recalls, as computed by hand.
    cal = dedup.calibrate(emb, ref, planted, within, against)
    sims = [nearest[c["id"]][1] for c in planted["copies"]]
    assert cal["positive_min"] == pytest.approx(min(sims), abs=1e-5)
    assert cal["recall"] == pytest.approx(np.mean(np.array(sims) >= cal["threshold"]))
    assert cal["recall"] >= 2 / 3  # an untrained encoder: most, not all, above the line
    out = tmp_path / "report"
    s = dedup.report(emb, ref, within, against, cal["threshold"], str(out), cal, planted)
    rows = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    leaks = {(r["id"], r["match"]) for r in rows if r["kind"] == "leak" and r["planted"]}
    assert leaks == {(c["id"], c["original"]) for c in planted["copies"]
                     if nearest[c["id"]][1] >= cal["threshold"]}
    assert s["planted_found"] == len({i for i, _ in leaks} | {r["id"] for r in rows if r["planted"]})
    removed = set((out / "remove.txt").read_text().split())
    assert {i for i, _ in leaks} <= removed and not removed & {"t0-0", "t0-1", "t1-0"}
    assert "## Threshold from planted copies" in (out / "dedup.md").read_text()

    # The clean corpus alone (no planted shard), at the calibrated threshold: no alarm at all.
    clean = embed.embed_corpus(embedder, train, cache, "clean", progress=False)
    clean.vectors = embed.normalize(clean.vectors - mean)
    pairs = [p for p in dedup.within_pairs(clean, 3) + dedup.against_pairs(clean, ref, 3)
             if p[2] >= cal["threshold"]]
    assert pairs == []


def test_within_corpus_index_pairs_each_once_across_shards():
    v = np.eye(4, dtype=np.float32)
    v = np.concatenate([v, v[[1]], v[[2]] * 0.9 + v[[3]] * 0.1])  # 4 = copy of 1, 5 ~ 2
    emb = embed.Embeddings(ids=list("abcdef"), vectors=embed.normalize(v), domains=["x"] * 6,
                           sources=list("abcdef"), captions=[""] * 6, summaries=[""] * 6,
                           shards=["s0", "s0", "s1", "s1", "s2", "s2"])
    pairs = {(i, j): round(s, 3) for i, j, s in dedup.within_pairs(emb, k=2, index_kind="hnsw")
             if s > 0.5}
    assert set(pairs) == {(4, 1), (5, 2)} and pairs[(4, 1)] == 1.0


def test_cache_resumes_and_refuses_another_model(corpus, model, tmp_path, monkeypatch):
    root, heldout, train, _ = corpus
    cache = tmp_path / "cache"
    embed.embed_corpus(embed.Embedder(model, 8), [heldout], str(cache), "r", progress=False)
    (npz,) = cache.glob("*.npz")
    before = npz.stat().st_mtime_ns
    again = embed.embed_corpus(embed.Embedder(model, 8), [heldout], str(cache), "r", progress=False)
    assert npz.stat().st_mtime_ns == before and len(again) == 3
    monkeypatch.setattr(embed, "CLIPS_IN_MEMORY", 2)  # a shard embedded in pieces: same result
    pieces = embed.embed_corpus(embed.Embedder(model, 8), [heldout], str(tmp_path / "c2"), "r",
                                progress=False)
    np.testing.assert_allclose(pieces.vectors, again.vectors, atol=1e-6)
    other = hub.StrongAudioModel(encoder=model.encoder, params=model.params, mel_cfg=model.mel_cfg,
                                 config=model.config, info={**model.info, "step": 1}, batch_size=8)
    with pytest.raises(embed.CacheMismatchError, match="another model"):
        embed.embed_corpus(embed.Embedder(other, 8), [heldout], str(cache), "r", progress=False)


def test_alignment_check_tells_copies_from_other_takes_of_one_texture():
    """Two takes of one noisy texture pool to the same embedding; only copies line up in time."""
    from strongaudio_jax.curate import verify

    def take(seed):  # rain-like: noise with random crackle bursts
        rng = np.random.default_rng(seed)
        env = np.repeat(rng.uniform(0.2, 1.0, 3 * SR // 800), 800)
        return (0.1 * rng.standard_normal(3 * SR) * env).astype(np.float32)

    original, other = take(0), take(1)
    spec = verify.spectrogram(original)
    rng = np.random.default_rng(0)
    for kind in dedup.KINDS:
        data, _, _ = dedup.variant(original, SR, kind, rng)
        copy, rate = audio.decode(data, kind)
        assert rate == SR and verify.align_score(spec, verify.spectrogram(copy)) > 0.95, kind
    assert verify.align_score(spec, verify.spectrogram(other)) < 0.5


def test_embedding_pass_resumes_inside_a_half_done_shard(corpus, model, tmp_path, monkeypatch):
    """A pass stopped after the first block of a shard (an exception once that block's file
    exists, standing in for a kill) resumes at the second block and gives the same result."""
    _, heldout, _, _ = corpus
    whole = embed.embed_corpus(embed.Embedder(model, 8), [heldout], str(tmp_path / "whole"), "r",
                               progress=False)
    monkeypatch.setattr(embed, "CLIPS_IN_MEMORY", 1)  # 3 clips: 3 blocks
    cache = tmp_path / "cache"
    real = embed.Embedder.embed_waves
    calls = []

    def stop_after_first_block(self, waves):
        if list(cache.glob("*.b1-0.npz")):
            raise KeyboardInterrupt("killed")
        calls.append(len(waves))
        return real(self, waves)

    monkeypatch.setattr(embed.Embedder, "embed_waves", stop_after_first_block)
    with pytest.raises(KeyboardInterrupt):
        embed.embed_corpus(embed.Embedder(model, 8), [heldout], str(cache), "r", progress=False)
    assert calls == [1] and len(list(cache.glob("*.b1-*.npz"))) == 1
    assert not [p for p in cache.glob("*.npz") if ".b1-" not in p.name]  # no shard file yet

    monkeypatch.setattr(embed.Embedder, "embed_waves", lambda self, w: calls.append(len(w))
                        or real(self, w))
    resumed = embed.embed_corpus(embed.Embedder(model, 8), [heldout], str(cache), "r",
                                 progress=False)
    assert calls == [1, 1, 1]  # blocks 2 and 3 only
    assert resumed.ids == whole.ids
    np.testing.assert_allclose(resumed.vectors, whole.vectors, atol=1e-6)
    assert [p.name for p in cache.glob("*.npz")] == [p.name for p in (tmp_path / "whole").glob("*.npz")]
