"""`strongaudio curate consistency` on a contrastive export of a few steps on the tiny corpus:
the score is the head's audio-text cosine, the swap check's bookkeeping, the filter's side index
and shards, resuming from the embedding cache, and the error for a non-contrastive export; the
second signal (a captioning export's length-normalised log p, checked against a numpy
log-softmax) and `--signal logp|both`."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from strongaudio_jax import cli, config
from strongaudio_jax.curate import consistency, embed, records
from strongaudio_jax.data import tfrecord
from strongaudio_jax.train import export, trainer
from tests.conftest import REPO


def _export(tiny_corpus, root, name, steps=4, also=None):
    """Trains `configs/<name>.py:smoke` for a few steps (with the objectives `also` added) and
    exports it."""
    cfg = config.load(f"{REPO}/configs/{name}.py:smoke", [
        f"data.train_files={tiny_corpus}/train-*.tfrecord",
        f"data.eval_files={tiny_corpus}/heldout-*.tfrecord",
        "data.batch_size=8", "data.clip_seconds=1.0", "data.vocab_min_count=1",
        "probe.tasks=()", "probe.clip_seconds=1.0", "augment.time_masks=0", "augment.freq_masks=0",
        "model.max_frames=128",
        f"train.steps={steps}", f"train.checkpoint_every={steps}", f"train.log_every={steps}"])
    if also:
        with cfg.unlocked():
            cfg.objectives.update(also)
    trainer.train(cfg, str(root / "run"))
    export.export(str(root / "run"), str(root / "export"))
    return str(root / "export")


@pytest.fixture(scope="module")
def contrastive_export(tmp_path_factory, tiny_corpus):
    """A run with both heads (one export, one compile for the module): the contrastive one and
    a captioning one (configs/captioning.py:smoke's) for the logp signal."""
    cap = config.load(f"{REPO}/configs/captioning.py:smoke").objectives.captioning.to_dict()
    return _export(tiny_corpus, tmp_path_factory.mktemp("contrastive"), "contrastive",
                   also={"captioning": cap})


def test_score_is_the_heads_cosine_for_multi_window_clips(contrastive_export, tiny_corpus):
    model, head, params, tok, max_len = consistency.load_head(contrastive_export)
    embedder = consistency.audio_embedder(model, head, params, batch_size=4)
    clips = list(records.shard_clips(str(tiny_corpus / "train-00000-of-00001.tfrecord"),
                                     records.Damage()))
    clip = max(clips, key=lambda c: c.num_samples)
    wave = embed.decode(clip, model.sample_rate)
    assert len(embedder.windows(wave)) == 2  # 128 frames (1.27 s): the longest clip spans two
    got = embedder.embed_waves([wave, wave[:3000]])
    # By hand: each window alone through encoder and head, averaged, normalised.
    from strongaudio_jax import frontend
    vecs = []
    for piece in embedder.windows(wave):
        enc = model.encoder.apply({"params": model.params}, *frontend.log_mel(piece[None], model.mel_cfg))
        vecs.append(np.asarray(head.apply({"params": params}, enc, method="embed_audio"))[0])
    want = embed.normalize(np.mean(vecs, 0))
    np.testing.assert_allclose(got[0], want, atol=2e-5)
    assert len(embedder.windows(wave[:3000])) == 1 and np.linalg.norm(got[1]) == pytest.approx(1, abs=1e-5)
    zt = consistency.text_embeddings(head, params, tok, max_len, [clip.summary, "a b"], batch_size=8)
    ids, mask = tok.encode([clip.summary], max_len)
    direct = head.apply({"params": params}, jnp.asarray(ids), jnp.asarray(mask), method="embed_text")
    np.testing.assert_allclose(zt[0], np.asarray(direct)[0], atol=1e-5)


def test_swap_select_and_average_precision():
    emb = embed.Embeddings(ids=[f"c{i}" for i in range(20)], vectors=np.zeros((20, 2), np.float32),
                           domains=["x"] * 20, sources=[""] * 20, captions=[f"cap {i}" for i in range(20)],
                           summaries=[f"sum {i}" for i in range(20)], shards=["s"] * 20)
    swapped = consistency.swap_captions(emb, 0.2, seed=1)
    assert len(swapped) == 4 and len(set(emb.summaries)) == 20  # a rotation: nothing lost
    assert all(emb.summaries[i] != f"sum {i}" for i in swapped)
    assert sum(emb.summaries[i] != f"sum {i}" for i in range(20)) == 4
    scores = np.arange(10, dtype=float)
    kept, t = consistency.select(scores, 0.7, None)
    assert kept.sum() == 7 and t == 3.0 and not kept[:3].any()
    kept, t = consistency.select(scores, None, 5.5)
    assert kept.sum() == 4 and t == 5.5
    bad = np.zeros(10, bool)
    bad[[0, 1]] = True
    assert consistency.average_precision(scores, bad) == 1.0
    bad = np.zeros(10, bool)
    bad[[0, 9]] = True
    assert consistency.average_precision(scores, bad) == pytest.approx((1 + 2 / 10) / 2)


def test_cli_filter_writes_index_and_shards_and_resumes(contrastive_export, tiny_corpus, tmp_path, capsys):
    out, shards = tmp_path / "cons", tmp_path / "kept"
    args = ["curate", "consistency", "--model", contrastive_export, "--corpus",
            f"{tiny_corpus}/train-*.tfrecord", "--out-dir", str(out), "--keep-fraction", "0.75",
            "--swap-fraction", "0.25", "--seed", "3", "--write-shards", str(shards)]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    r = json.loads((out / "consistency.json").read_text())
    # 9 clips rotated; those that got a caption equal to their own (3 distinct captions) do not count
    assert 3 <= r["swap_check"]["swapped"] <= 9
    assert "kept 27 of 36 clips" in printed and f"swapped captions: {r['swap_check']['swapped']};" in printed
    kept = json.loads((out / "kept.json").read_text())
    assert len(kept["kept"]) == 27 and len(kept["removed"]) == 9
    assert r["by_domain"]["tone"]["clips"] == 12 and r["by_source"]["synthetic"]["removed"] == 9
    s = r["swap_check"]
    assert s["true_positives"] == round(s["precision"] * 9) and 0 <= s["recall"] <= 1
    assert s["average_precision"] > 0
    written = [d for d in tfrecord.read_records(str(shards / "train-00000-of-00001.tfrecord"))]
    assert len(written) == 27
    scores = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert sorted(x["id"] for x in scores if x["kept"]) == sorted(kept["kept"])
    assert "## Removed per domain" in (out / "consistency.md").read_text()
    # A rerun reads the audio embeddings back (the cache) and gives the same scores.
    cache = next((out / "audio_embeddings").glob("*.npz"))
    stamp = cache.stat().st_mtime_ns
    assert cli.main(args) == 0
    assert cache.stat().st_mtime_ns == stamp
    again = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert again == scores


def test_cli_refuses_an_export_without_a_contrastive_head(tiny_corpus, tmp_path, capsys):
    mtc = _export(tiny_corpus, tmp_path, "mtc", steps=2)
    assert cli.main(["curate", "consistency", "--model", mtc, "--corpus",
                     f"{tiny_corpus}/heldout-*.tfrecord", "--out-dir", str(tmp_path / "o")]) == 2
    assert "not contrastive" in capsys.readouterr().err
    assert cli.main(["curate", "consistency", "--model", mtc, "--signal", "logp", "--corpus",
                     f"{tiny_corpus}/heldout-*.tfrecord", "--out-dir", str(tmp_path / "o")]) == 2
    assert "not captioning" in capsys.readouterr().err


# The second signal: the captioner's length-normalised log p(caption | audio) (curate/logp.py).

def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_logp_is_the_mean_log_softmax_of_the_true_tokens(contrastive_export, tiny_corpus):
    from strongaudio_jax import frontend
    from strongaudio_jax.curate import logp

    model, module, params, fields = logp.load_captioner(contrastive_export)
    assert fields.source == "summary"  # what configs/contrastive.py:smoke's text.field is
    scorer = logp.LogpScorer(model, module, params, fields, batch_size=4)
    clips = list(records.shard_clips(str(tiny_corpus / "train-00000-of-00001.tfrecord"),
                                     records.Damage()))
    long_clip = max(clips, key=lambda c: c.num_samples)
    long_wave = embed.decode(long_clip, model.sample_rate)
    short_wave = long_wave[:3000]
    texts = [long_clip.summary, "a dog barks twice"]
    got = scorer.score_waves([long_wave, short_wave], texts)
    # By hand: each window alone through the encoder, the decoder fed [CLS] pieces (teacher
    # forcing), numpy log-softmax, the true next tokens' log-probs averaged; windows averaged.
    ids, mask = fields.tokenizer.encode(texts, fields.max_len)
    ids, mask = np.asarray(ids), np.asarray(mask, bool)
    def by_hand(wave, row):
        enc = model.encoder.apply({"params": model.params}, *frontend.log_mel(wave[None], model.mel_cfg))
        logits = module.apply({"params": params}, jnp.asarray(ids[row:row + 1, :-1]),
                              jnp.zeros(1, bool), enc, method=lambda m, *a: m.decoder(*a))
        lp = _log_softmax(np.asarray(logits, np.float64)[0])
        n = int(mask[row, 1:].sum())
        assert n >= 3 and mask[row, :n + 1].all()  # [CLS] pieces [SEP]: n targets after [CLS]
        return np.mean([lp[t, ids[row, t + 1]] for t in range(n)])
    windows = [long_wave[s:s + scorer.width] for s in range(0, len(long_wave), scorer.width)]
    assert len(windows) == 2
    np.testing.assert_allclose(got[0], np.mean([by_hand(w, 0) for w in windows]), atol=1e-4)
    np.testing.assert_allclose(got[1], by_hand(short_wave, 1), atol=1e-4)
    assert got.max() < 0


def test_rank_normalise():
    from strongaudio_jax.curate import logp

    np.testing.assert_allclose(logp.rank_normalise(np.array([3.0, -1.0, 3.0, 0.5, 10.0])),
                               [0.625, 0.0, 0.625, 0.25, 1.0])
    assert logp.rank_normalise(np.array([2.0])).tolist() == [0.5]


def test_cli_signals_logp_and_both(contrastive_export, tiny_corpus, tmp_path, capsys):
    from strongaudio_jax.curate import logp

    corpus = f"{tiny_corpus}/train-*.tfrecord"
    out = tmp_path / "both"
    args = ["curate", "consistency", "--model", contrastive_export, "--captioner", contrastive_export,
            "--signal", "both", "--corpus", corpus, "--out-dir", str(out), "--keep-fraction", "0.75",
            "--swap-fraction", "0.25", "--seed", "3"]
    assert cli.main(args) == 0
    rows = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert len(rows) == 36 and sum(r["kept"] for r in rows) == 27
    c, lp = np.array([r["contrastive"] for r in rows]), np.array([r["logp"] for r in rows])
    both = (logp.rank_normalise(c) + logp.rank_normalise(lp)) / 2
    np.testing.assert_allclose([r["score"] for r in rows], both, atol=1e-5)
    s = json.loads((out / "consistency.json").read_text())["swap_check"]
    assert set(s["average_precision_by_signal"]) == {"contrastive", "logp"}
    assert "mean of the rank-normalised" in (out / "consistency.md").read_text()
    # logp alone, on the captioning export, scores the same swapped texts the same way, from
    # its own cache; the scores there are the captioner's on the (swapped) summaries.
    cache = sorted((out / "logp_scores").glob("*.npz"))
    assert len(cache) == 1
    alone = tmp_path / "logp"
    assert cli.main(["curate", "consistency", "--model", contrastive_export, "--signal", "logp",
                     "--corpus", corpus, "--out-dir", str(alone), "--keep-fraction", "0.75",
                     "--swap-fraction", "0.25", "--seed", "3"]) == 0
    rows2 = [json.loads(line) for line in (alone / "scores.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows2] == [r["id"] for r in rows]
    np.testing.assert_allclose([r["score"] for r in rows2], lp, atol=1e-5)
    assert [r["summary"] for r in rows2] == [r["summary"] for r in rows]
    assert not (alone / "audio_embeddings").exists()
    stamp = cache[0].stat().st_mtime_ns
    assert cli.main(args) == 0 and cache[0].stat().st_mtime_ns == stamp  # resumed from the cache
