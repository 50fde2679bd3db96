"""The study's recipe, text side: the field text objectives read (the long caption by default),
the reference's text preprocessing, a BPE tokenizer from a tokenizer.json, and a released-layout
UTS manifest trained on end to end (MTC + captioning) on its long caption."""

import gzip
import json

import numpy as np
import pytest

from strongaudio_jax import config
from strongaudio_jax.config import ConfigError
from strongaudio_jax.data import importers, schema, text_fields
from strongaudio_jax.text import tokenizer as tokenizer_lib
from strongaudio_jax.train import trainer
from tests.conftest import REPO


def test_reference_preprocess_is_the_reference_regexes():
    # by hand: lower-case -> 'a dog (small) barks , loudly. "yes!" then: rain; end'; a space
    # before , . ! ? ; : " that ends a word is dropped -> '... barks, loudly. ...'; the marks
    # ( , . ! ? ; : | * " ) become spaces -> 'a dog  small  barks  loudly   yes   then  rain  end';
    # one pass of "  " -> " " (3 spaces leave 2)
    assert (text_fields.reference_preprocess('A Dog (small) barks , loudly. "Yes!" Then: rain; end')
            == 'a dog small barks loudly  yes  then rain end')
    assert text_fields.reference_preprocess("It's a well-known tune.") == "it's a well-known tune "


def _clip(**kw):
    return schema.Clip(id="c", audio=b"", format="flac", sample_rate=16000, **kw)


def test_text_field_reads_the_named_field_and_draws_among_several():
    tok = tokenizer_lib.WordPieceTokenizer(
        [*tokenizer_lib.SPECIAL_TOKENS, "long", "short", "weak", "one", "two", "three", ","])
    clip = _clip(caption="long", summary="short", original_captions=("weak one", "weak two", "weak three"))
    pick = lambda **kw: text_fields.TextFields(tok, ("text",), 8, **kw)
    assert pick().text(clip) == "long"  # the caption by default
    assert pick(source="summary").text(clip) == "short"
    original = pick(source="original")
    assert original.text(clip) == "weak one"  # evaluation paths (no draw): the first
    drawn = [original.text(clip, draw=(0, b, 3)) for b in range(40)]
    assert set(drawn) == set(clip.original_captions)  # every one gets picked
    assert drawn == [original.text(clip, draw=(0, b, 3)) for b in range(40)]  # a function of the draw
    ids = original(clip, draw=(0, 1, 3))["text_ids"]
    assert tok.decode(ids) == original.text(clip, draw=(0, 1, 3))
    cfg = config.load(f"{REPO}/configs/captioning.py:smoke", ["text.field=originals"])
    with pytest.raises(ConfigError, match="text.field='originals' is not one of"):
        text_fields.from_config(cfg, ("text",))


def _bpe_json(tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = ["a dog barks twice in a quiet room", "rain falls on a tin roof",
              "a piano plays a slow melody"] * 20
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    return path


def test_bpe_tokenizer_from_tokenizer_json(tmp_path):
    path = _bpe_json(tmp_path)
    cfg = config.load(f"{REPO}/configs/captioning.py:smoke", [f"text.tokenizer={path}"])
    tok = text_fields.tokenizer_from_config(cfg)
    assert isinstance(tok, tokenizer_lib.BPETokenizer)
    assert (tok.bos_id, tok.pad_id, tok.eos_id, tok.mask_id) == (0, 1, 2, 4)  # BART's layout
    ids, mask = tok.encode(["a dog barks twice", "rain"], 8)
    assert ids[0, 0] == tok.bos_id and mask.sum(1).tolist()[1] == 2 + len(tok.token_ids("rain"))
    assert tok.decode(ids[1]) == "rain" and tok.decode(ids)[1] == "rain"
    long_ids, long_mask = tok.encode("a piano plays a slow melody in a quiet room", 6)
    assert long_mask.all() and long_ids[0, -1] == tok.eos_id  # cut, the end token kept
    assert tok.vocab[tok.mask_id] == "<mask>" and len(tok.vocab) == tok.vocab_size
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ConfigError, match="bad.json"):
        text_fields.tokenizer_from_config(config.load(f"{REPO}/configs/captioning.py:smoke",
                                                      [f"text.tokenizer={tmp_path / 'bad.json'}"]))


SEEN = []  # (clip id, text tokenised, decoded ids) of every clip the run below trained on


class _Recording(text_fields.TextFields):
    def __call__(self, clip, draw=None):
        out = super().__call__(clip, draw)
        SEEN.append((clip.id, self.text(clip, draw), self.tokenizer.decode(out["text_ids"])))
        return out


@pytest.mark.slow
def test_released_uts_manifest_trains_mtc_and_captioning_on_the_long_caption(
        shared_dir, tmp_path, monkeypatch):
    manifest = shared_dir / "fixtures" / "uts_manifest" / "cuts.jsonl.gz"
    if not manifest.is_file():
        pytest.skip(f"{manifest} not found (the released-layout UTS manifest fixture)")
    with gzip.open(manifest, "rt") as f:
        custom = {c["id"]: c["supervisions"][0]["custom"] for c in map(json.loads, f)}
    sources = importers.parse_sources([f"audioset={shared_dir}/fixtures/audio/{{id}}.wav"])
    items, _ = importers.lhotse_import(str(manifest), sources=sources)
    for prefix in ("a", "b"):  # twice: 8 records, one batch of the 8 devices
        importers.write_shards(items, str(tmp_path / "shards"), prefix=prefix, progress=False)

    cfg = config.load(f"{REPO}/configs/multitask.py:smoke", [
        f"data.train_files={tmp_path}/shards/*.tfrecord", "data.eval_files=",
        "data.vocab_min_count=1", "data.batch_size=8", "data.clip_seconds=1.0",
        "text.field=caption", "text.preprocess=reference", "text.max_len=40",
        "train.steps=2", "train.log_every=1", "train.checkpoint_every=2"])
    cfg.unlock()
    cfg.probe.tasks = ()
    cfg.lock()
    monkeypatch.setattr(text_fields, "from_config", lambda c, fields: _Recording(
        text_fields.tokenizer_from_config(c), tuple(fields), text_fields.text_length(c),
        source=c.text.field, preprocess=c.text.preprocess))
    SEEN.clear()
    out = trainer.train(cfg, str(tmp_path / "run"))
    assert [h["step"] for h in out["history"]][-1] == 2
    for h in out["history"]:
        assert np.isfinite(h["mtc/loss"]) and np.isfinite(h["captioning/loss"])
    assert len(SEEN) >= 16 and {cid for cid, _, _ in SEEN} == set(custom)
    for cid, text, decoded in SEEN:
        long_caption = custom[cid]["caption"]
        assert text == text_fields.reference_preprocess(long_caption)  # the long one, preprocessed
        assert decoded.split()[:4] == text.split()[:4]  # and what the decoder was taught
        assert all(text_fields.reference_preprocess(w) != text for w in custom[cid]["original_caption"])
