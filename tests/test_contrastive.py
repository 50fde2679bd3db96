"""Contrastive objective: CLIP / SigLIP losses against numpy float64, masking of invalid rows
and padding, finite gradients, 8-device sharding (same numbers, no full [B, B] per device)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from strongaudio_jax import objectives
from strongaudio_jax.config import ConfigError
from strongaudio_jax.models.base import EncoderOutput
from strongaudio_jax.objectives import contrastive
from strongaudio_jax.parallel import mesh as mesh_lib
from strongaudio_jax.text import tokenizer as tok_lib

CAPTIONS = ["a dog barks", "rain on a roof", "a man speaks french", "a cheering crowd",
            "an organ plays a lively melody", "birds sing", "a car horn honks twice", "silence"]


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _numpy_clip(za, zt, scale, valid):
    za, zt = za[valid].astype(np.float64), zt[valid].astype(np.float64)
    logits = scale * za @ zt.T

    def xent(l):  # rows: -log softmax at the diagonal
        m = l.max(1, keepdims=True)
        lse = (m + np.log(np.exp(l - m).sum(1, keepdims=True)))[:, 0]
        return lse - np.diag(l)
    return 0.5 * (xent(logits).mean() + xent(logits.T).mean())


def _numpy_siglip(za, zt, scale, bias, valid):
    za, zt = za[valid].astype(np.float64), zt[valid].astype(np.float64)
    logits = scale * za @ zt.T + bias
    labels = 2 * np.eye(len(za)) - 1
    return np.log1p(np.exp(-labels * logits)).sum() / len(za)


@pytest.mark.parametrize("seed", [0, 1])
def test_losses_match_numpy_float64(seed):
    rng = np.random.default_rng(seed)
    za, zt = _unit(rng.standard_normal((12, 16))), _unit(rng.standard_normal((12, 16)))
    zt[:4] = _unit(za[:4] + 0.3 * rng.standard_normal((4, 16)))  # some pairs match
    valid = rng.random(12) > 0.25
    valid[0] = True
    for scale, bias in ((1 / 0.07, -10.0), (10.0, -3.0), (100.0, 0.5)):
        logits = scale * (jnp.asarray(za, jnp.float32) @ jnp.asarray(zt, jnp.float32).T)
        got = contrastive.clip_loss(logits, jnp.asarray(valid))
        np.testing.assert_allclose(got, _numpy_clip(za, zt, scale, valid), rtol=2e-5)
        got = contrastive.siglip_loss(logits + bias, jnp.asarray(valid))
        np.testing.assert_allclose(got, _numpy_siglip(za, zt, scale, bias, valid), rtol=2e-5)


def test_recall_at_1_counts_valid_rows_only():
    logits = jnp.asarray([[5.0, 1.0, 9.0], [0.0, 3.0, 1.0], [2.0, 8.0, 7.0]])
    a2t, t2a = contrastive.recall_at_1(logits, jnp.asarray([True, True, True]))
    assert float(a2t) == pytest.approx(1 / 3) and float(t2a) == pytest.approx(1 / 3)
    # Without row/column 2, both directions are right for rows 0 and 1.
    a2t, t2a = contrastive.recall_at_1(logits, jnp.asarray([True, True, False]))
    assert float(a2t) == 1.0 and float(t2a) == 1.0


# ------------------------------------------------------------------ the objective module

@pytest.fixture(scope="module")
def tokenizer():
    return tok_lib.WordPieceTokenizer(tok_lib.build_vocab(CAPTIONS, size=400, min_count=1))


def _module(tokenizer, text_len=16, **options):
    ctx = objectives.Context(num_classes=1, vocab=None, tokenizer=tokenizer, text_len=text_len,
                             encoder=None, mel_cfg=None)
    return contrastive.build({"text_size": "tiny", "embed_dim": 32, **options}, ctx)


def _inputs(tokenizer, batch=8, tokens=6, width=24, text_len=16, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.arange(tokens)[None] < rng.integers(2, tokens + 1, batch)[:, None]
    enc = EncoderOutput(tokens=jnp.asarray(rng.standard_normal((batch, tokens, width)), jnp.float32),
                        mask=jnp.asarray(mask), grid=(tokens, 1))
    ids, text_mask = tokenizer.encode([CAPTIONS[i % len(CAPTIONS)] for i in range(batch)], text_len)
    return enc, {"text_ids": jnp.asarray(ids), "text_mask": jnp.asarray(text_mask),
                 "valid": jnp.ones(batch, bool)}


_PARAMS = {}


def _init(module, enc, batch):
    """Parameters (they depend on the options, not on the batch size): once per module."""
    if module not in _PARAMS:
        one = jax.tree.map(lambda x: x[:1], (enc, batch))
        _PARAMS[module] = jax.jit(lambda r: nn.meta.unbox(module.init(r, *one, False)))(jax.random.key(0))
    return _PARAMS[module]


@pytest.mark.parametrize("loss", ["clip", "siglip"])
def test_module_loss_is_the_formula_on_its_embeddings(tokenizer, loss):
    module = _module(tokenizer, loss=loss, pooling="attention")
    enc, batch = _inputs(tokenizer)
    batch["valid"] = jnp.asarray([True] * 6 + [False] * 2)
    params = _init(module, enc, batch)
    value, metrics, za, zt = jax.jit(lambda p, e, b: (
        *module.apply(p, e, b, True), module.apply(p, e, method="embed_audio"),
        module.apply(p, b["text_ids"], b["text_mask"], method="embed_text")))(params, enc, batch)
    za, zt = np.asarray(za), np.asarray(zt)
    valid = np.asarray(batch["valid"])
    if loss == "clip":
        assert float(metrics["temperature"]) == pytest.approx(0.07)
        expected = _numpy_clip(za, zt, 1 / 0.07, valid)
    else:
        assert float(metrics["temperature"]) == pytest.approx(0.1) and float(metrics["bias"]) == -10.0
        expected = _numpy_siglip(za, zt, 10.0, -10.0, valid)
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    assert {"a2t_r1", "t2a_r1", "scale", "temperature"} <= set(metrics)


@pytest.mark.parametrize("loss", ["clip", "siglip"])
def test_invalid_rows_and_padding_do_not_change_the_loss(tokenizer, loss):
    module = _module(tokenizer, loss=loss)
    enc, batch = _inputs(tokenizer)
    params = _init(module, enc, batch)
    f = jax.jit(lambda p, e, b: module.apply(p, e, b, True)[0])
    batch["valid"] = jnp.asarray([True] * 5 + [False] * 3)
    base = f(params, enc, batch)
    # Other contents in the invalid rows (audio and text): same loss.
    rng = np.random.default_rng(5)
    tokens = enc.tokens.at[5:].set(jnp.asarray(rng.standard_normal((3, 6, 24)), jnp.float32))
    ids = batch["text_ids"].at[5:].set(batch["text_ids"][:3])
    np.testing.assert_allclose(f(params, enc.replace(tokens=tokens), {**batch, "text_ids": ids}), base, rtol=1e-6)
    # Dropping the invalid rows altogether: same loss.
    small = jax.tree.map(lambda x: x[:5], batch)
    np.testing.assert_allclose(f(params, EncoderOutput(enc.tokens[:5], enc.mask[:5], enc.grid), small),
                               base, rtol=1e-6)
    # More audio padding tokens (masked, arbitrary values) and a longer text padding: same loss.
    extra = jnp.asarray(rng.standard_normal((8, 3, 24)), jnp.float32)
    padded = EncoderOutput(jnp.concatenate([enc.tokens, extra], 1),
                           jnp.concatenate([enc.mask, jnp.zeros((8, 3), bool)], 1), enc.grid)
    ids, text_mask = tokenizer.encode([CAPTIONS[i % len(CAPTIONS)] for i in range(8)], 16)
    short_ids, short_mask = tokenizer.encode([CAPTIONS[i % len(CAPTIONS)] for i in range(8)], 10)
    np.testing.assert_allclose(
        f(params, padded, {**batch, "text_ids": jnp.asarray(short_ids), "text_mask": jnp.asarray(short_mask)}),
        f(params, enc, {**batch, "text_ids": jnp.asarray(ids), "text_mask": jnp.asarray(text_mask)}),
        rtol=2e-6)


@pytest.mark.parametrize("loss,pooling", [("clip", "attention"), ("siglip", "mean")])
def test_eight_devices_equal_one_and_gradients_are_finite(tokenizer, loss, pooling):
    """Sharded over (data=4, fsdp=2): same loss and gradients as on one device, and the
    compiled program never holds the whole [B, B] similarity matrix on a device. Gradients
    are finite however many rows are padding, and padding rows get none."""
    module = _module(tokenizer, loss=loss, pooling=pooling)
    b = 64
    enc, batch = _inputs(tokenizer, batch=b, seed=3)
    batch["valid"] = jnp.asarray(np.arange(b) < 61)
    params = _init(module, enc, batch)

    def loss_and_grads(p, e, bt):  # gradients for the parameters and the audio tokens
        f = lambda p, x: module.apply(p, e.replace(tokens=x), bt, True)[0]
        return jax.value_and_grad(f, argnums=(0, 1))(p, e.tokens)

    unsharded = jax.jit(loss_and_grads)
    want_loss, want_grads = unsharded(params, enc, batch)
    mesh = mesh_lib.make_mesh({"data": 4, "fsdp": 2, "tensor": 1})
    rows = mesh_lib.logical_to_spec(("batch",), mesh)
    place = lambda x: jax.device_put(x, jax.sharding.NamedSharding(
        mesh, jax.sharding.PartitionSpec(*rows, *[None] * (x.ndim - 1))))
    s_enc, s_batch = jax.tree.map(place, (enc, batch))
    sharded = jax.jit(mesh_lib.on_mesh(mesh, loss_and_grads)).lower(params, s_enc, s_batch).compile()
    got_loss, got_grads = sharded(params, s_enc, s_batch)
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5)
    jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6), got_grads, want_grads)
    hlo = sharded.as_text()
    assert f"f32[{b // 8},{b}]" in hlo  # each device's block of rows
    assert f"f32[{b},{b}]" not in hlo and f"pred[{b},{b}]" not in hlo

    assert float(jnp.abs(want_grads[0]["params"]["log_scale"])) > 0  # the temperature learns
    for n_valid in (61, 3, 0):
        _, grads = unsharded(params, enc, {**batch, "valid": jnp.arange(b) < n_valid})
        assert all(bool(jnp.isfinite(x).all()) for x in jax.tree.leaves(grads)), n_valid
        assert float(jnp.abs(grads[1][n_valid:]).max(initial=0.0)) == 0  # padding rows: none
    assert all(float(jnp.abs(x).max()) == 0 for x in jax.tree.leaves(grads))  # all padding


def test_a_clip_without_real_tokens_is_harmless(tokenizer):
    """Attention pooling over no real token (a padding row of nothing) stays finite."""
    module = _module(tokenizer, loss="siglip", pooling="attention")
    enc, batch = _inputs(tokenizer)
    params = _init(module, enc, batch)
    enc = enc.replace(mask=enc.mask.at[7].set(False))
    batch["valid"] = jnp.arange(8) < 7
    f = jax.jit(jax.value_and_grad(lambda p, e, b: module.apply(p, e, b, True)[0]))
    value, grads = f(params, enc, batch)
    assert all(bool(jnp.isfinite(x).all()) for x in jax.tree.leaves((value, grads)))
    small = jax.tree.map(lambda x: x[:7], (enc, batch))
    np.testing.assert_allclose(value, f(params, *small)[0], rtol=1e-6)


def test_options_are_checked(tokenizer):
    with pytest.raises(ConfigError, match="loss"):
        _module(tokenizer, loss="triplet")
    with pytest.raises(ConfigError, match="pooling"):
        _module(tokenizer, pooling="max")
    with pytest.raises(ConfigError, match="text_size"):
        _module(tokenizer, text_size="giant")
    with pytest.raises(ConfigError, match="temprature"):
        _module(tokenizer, temprature=0.1)
    with pytest.raises(ConfigError, match="text.tokenizer='minilm'"):
        _module(tokenizer, text_init="minilm")
