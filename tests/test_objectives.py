"""Objectives: each loss against a direct float64 numpy computation, padding invariance,
finite gradients, sharded == unsharded, configuration errors."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from strongaudio_jax import assets, objectives
from strongaudio_jax.config import ConfigError
from strongaudio_jax.models.base import EncoderOutput
from strongaudio_jax.models.text import decoder
from strongaudio_jax.objectives import captioning, masked, mtc, par
from strongaudio_jax.text.tokenizer import WordPieceTokenizer
from tests.conftest import REPO

B, N, D, K, L = 4, 6, 16, 5, 10


@pytest.fixture(scope="module")
def tokenizer():
    return WordPieceTokenizer.from_file(assets.demo_corpus("text_vocab.txt"))


def _ctx(tokenizer=None, encoder=None):
    return objectives.Context(num_classes=K, vocab=None, tokenizer=tokenizer, text_len=L,
                              encoder=encoder, mel_cfg=None)


def _enc(rng, n_real=(6, 4, 3, 6)):
    tokens = rng.standard_normal((B, N, D)).astype(np.float32)
    mask = np.arange(N)[None] < np.array(n_real)[:, None]
    return EncoderOutput(tokens=jnp.asarray(tokens), mask=jnp.asarray(mask), grid=(N, 1))


def _text(rng, tokenizer, lengths=(10, 7, 3, 5)):
    ids = np.full((B, L), tokenizer.pad_id, np.int32)
    mask = np.zeros((B, L), bool)
    for i, n in enumerate(lengths):
        ids[i, :n] = [tokenizer.cls_id, *rng.integers(5, tokenizer.vocab_size, n - 2), tokenizer.sep_id]
        mask[i, :n] = True
    return ids, mask


def _batch(rng, tokenizer=None):
    batch = {"tags": (rng.random((B, K)) < 0.4).astype(np.float32),
             "valid": np.array([True, True, True, False])}
    if tokenizer is not None:
        batch["text_ids"], batch["text_mask"] = _text(rng, tokenizer)
        batch["tag_ids"], batch["tag_mask"] = _text(rng, tokenizer, (6, 10, 4, 2))
    return batch


def _randomize(params, rng):
    return jax.tree.map(lambda p: jnp.asarray(rng.standard_normal(p.shape).astype(np.float32)),
                        params)


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


# ---------------------------------------------------------------- MTC


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_mtc_matches_numpy(pooling):
    rng = np.random.default_rng(0)
    enc, batch = _enc(rng), _batch(rng)
    ls, pw = 0.1, 3.0
    module = mtc.build(dict(pooling=pooling, label_smoothing=ls, pos_weight=pw), _ctx())
    params = _randomize(jax.tree.map(jnp.asarray, jax.device_get(
        objectives.nn.meta.unbox(module.init(jax.random.key(0), enc, batch, False)))), rng)
    loss, metrics = module.apply(params, enc, batch, True)

    p = jax.tree.map(lambda x: np.asarray(x, np.float64), params["params"])
    x, m = np.asarray(enc.tokens, np.float64), np.asarray(enc.mask)
    frame = x @ p["classifier"]["kernel"] + p["classifier"]["bias"]  # [B, N, K]
    if pooling == "mean":
        logits = (frame * m[..., None]).sum(1) / m.sum(1)[:, None]
    else:
        s = x @ p["attention"]["kernel"] + p["attention"]["bias"]
        s = np.where(m[..., None], s, -np.inf)
        a = np.exp(s - s.max(1, keepdims=True))
        logits = (a / a.sum(1, keepdims=True) * frame).sum(1)
    y = batch["tags"] * (1 - ls) + 0.5 * ls
    sig = 1 / (1 + np.exp(-logits))
    bce = -(pw * y * np.log(sig) + (1 - y) * np.log(1 - sig)).mean(-1)
    v = batch["valid"]
    np.testing.assert_allclose(float(loss), bce[v].mean(), rtol=1e-5)
    assert set(metrics) == {"bce", "exact_match"}


def test_mtc_default_equals_optax_bce():
    """With no smoothing and pos_weight 1 the loss is optax's BCE (the demo's numbers hold)."""
    import optax

    rng = np.random.default_rng(1)
    enc, batch = _enc(rng, (6, 6, 6, 6)), _batch(rng)
    batch["valid"][:] = True
    module = mtc.build({}, _ctx())
    params = _randomize(objectives.nn.meta.unbox(module.init(jax.random.key(0), enc, batch, False)), rng)
    loss, _ = module.apply(params, enc, batch, True)
    logits = module.apply(params, enc, method=mtc.MTC.logits)
    ref = optax.sigmoid_binary_cross_entropy(logits, batch["tags"]).mean()
    np.testing.assert_allclose(float(loss), float(ref), rtol=1e-6)


def test_mtc_summed_bce_and_dropout_as_the_reference():
    """reduction="sum": torch's BCEWithLogitsLoss(reduction="sum") over classes and valid
    examples, checked on numbers worked by hand; dropout acts in training only."""
    enc = EncoderOutput(tokens=jnp.zeros((2, 1, 1)), mask=jnp.ones((2, 1), bool), grid=(1, 1))
    batch = {"tags": np.array([[1, 0], [0, 1]], np.float32), "valid": np.array([True, True])}
    ctx = objectives.Context(num_classes=2, vocab=None, tokenizer=None, text_len=L, encoder=None,
                             mel_cfg=None)
    module = mtc.build(dict(reduction="sum"), ctx)
    # zero tokens: the logits are the classifier bias; set it to (0, log 3): sigmoid 1/2, 3/4
    params = {"params": {"classifier": {"kernel": jnp.zeros((1, 2)),
                                        "bias": jnp.array([0.0, np.log(3.0)])}}}
    loss, metrics = module.apply(params, enc, batch, True)
    # row 1: -log(1/2) - log(1 - 3/4) = log 2 + log 4; row 2: -log(1 - 1/2) - log(3/4) = log 2 + log 4/3
    by_hand = np.log(2) + np.log(4) + np.log(2) + np.log(4 / 3)
    np.testing.assert_allclose(float(loss), by_hand, rtol=1e-6)
    np.testing.assert_allclose(float(metrics["bce"]), by_hand / 4, rtol=1e-6)  # the mean, logged
    batch["valid"][1] = False  # padding rows add nothing
    np.testing.assert_allclose(float(module.apply(params, enc, batch, True)[0]), np.log(8), rtol=1e-6)

    rng = np.random.default_rng(2)
    enc, batch = _enc(rng), _batch(rng)
    plain, dropped = mtc.build({}, _ctx()), mtc.build(dict(dropout=0.5), _ctx())
    params = _randomize(objectives.nn.meta.unbox(plain.init(jax.random.key(0), enc, batch, False)), rng)
    rngs = {"dropout": jax.random.key(1)}
    ref = plain.apply(params, enc, batch, True)[0]
    assert float(dropped.apply(params, enc, batch, False)[0]) == float(ref)  # eval: no dropout
    assert float(dropped.apply(params, enc, batch, True, rngs=rngs)[0]) != float(ref)
    with pytest.raises(ConfigError, match="reduction='total'"):
        mtc.build(dict(reduction="total"), _ctx())
    torch_like = mtc.build(dict(classifier_init="torch"), _ctx())  # U(+-1/sqrt(D)), as nn.Linear
    p = objectives.nn.meta.unbox(torch_like.init(jax.random.key(0), enc, batch, False))["params"]
    for x in (p["classifier"]["kernel"], p["classifier"]["bias"]):
        x = np.asarray(x)
        assert np.abs(x).max() <= D ** -0.5 and np.abs(x).max() > 0.5 * D ** -0.5 and x.std() > 0


# ---------------------------------------------------------------- Decoders (PAR, captioning)


def test_token_loss_matches_numpy():
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((3, 7, 11)).astype(np.float32)
    targets = rng.integers(0, 11, (3, 7))
    weights = rng.random((3, 7)) < 0.6
    loss, acc = objectives.masked_token_loss(jnp.asarray(logits), jnp.asarray(targets),
                                             jnp.asarray(weights), label_smoothing=0.1)
    logp = _log_softmax(logits.astype(np.float64))
    nll = -np.take_along_axis(logp, targets[..., None], -1)[..., 0]
    ce = 0.9 * nll + 0.1 * -logp.mean(-1)
    np.testing.assert_allclose(float(loss), ce[weights].mean(), rtol=1e-5)
    np.testing.assert_allclose(float(acc), (logits.argmax(-1) == targets)[weights].mean(), rtol=1e-6)


def _decoder_logits(module, params, enc, batch, rng_key):
    (loss, metrics), state = module.apply(params, enc, batch, True, rngs={"mask": rng_key},
                                          capture_intermediates=lambda m, _: isinstance(m, decoder.Decoder),
                                          mutable=["intermediates"])
    outs = jax.tree.leaves(state["intermediates"])
    return loss, metrics, [np.asarray(o, np.float64) for o in outs]


def _perturbed_params(module, enc, batch, rng):
    """Initial parameters plus noise: LayerNorm scales and biases away from 1 and 0 too."""
    params = objectives.nn.meta.unbox(module.init(jax.random.key(0), enc, batch, False)["params"])
    return jax.tree.map(lambda x: x + 0.05 * rng.standard_normal(x.shape).astype(np.float32),
                        params)


def _np_layer_norm(x, p, eps=1e-6):  # flax.linen.LayerNorm's default epsilon
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * p["scale"] + p["bias"]


def _np_attention(x, kv, mask, p):
    """Multi-head attention [B, L, W] over kv [B, S, W]; mask [B, L, S] True = may attend."""
    q = np.einsum("blw,whd->bhld", x, p["query"]["kernel"]) + p["query"]["bias"][None, :, None]
    k = np.einsum("bsw,whd->bhsd", kv, p["key"]["kernel"]) + p["key"]["bias"][None, :, None]
    v = np.einsum("bsw,whd->bhsd", kv, p["value"]["kernel"]) + p["value"]["bias"][None, :, None]
    scores = np.einsum("bhld,bhsd->bhls", q, k) / np.sqrt(q.shape[-1])
    scores = np.where(mask[:, None], scores, -np.inf)
    w = np.exp(scores - scores.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    return np.einsum("bhls,bhsd,hdw->blw", w, v, p["out"]["kernel"]) + p["out"]["bias"]


def _np_gelu(x):  # tanh approximation, flax.linen.gelu's default
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def _np_decoder(p, inputs, parallel, enc):
    """The text decoder written out in float64 numpy from its parameters alone: token + position
    embeddings, pre-LN blocks of self-attention (causal unless the row is parallel),
    cross-attention to the real encoder tokens and a GELU MLP, final LayerNorm, logits."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), p)
    tokens, enc_mask = np.asarray(enc.tokens, np.float64), np.asarray(enc.mask)
    b, length = inputs.shape
    x = p["embed"]["embedding"][inputs] + p["pos"][None, :length]
    causal = np.tril(np.ones((length, length), bool))
    self_mask = causal[None] | np.asarray(parallel)[:, None, None]
    cross_mask = np.broadcast_to(enc_mask[:, None, :], (b, length, enc_mask.shape[1]))
    for i in range(len([k for k in p if k.startswith("block")])):
        blk = p[f"block{i}"]
        y = _np_layer_norm(x, blk["ln_self"])
        x = x + _np_attention(y, y, self_mask, blk["self_attn"])
        y = _np_layer_norm(x, blk["ln_cross"])
        x = x + _np_attention(y, tokens, cross_mask, blk["cross_attn"])
        y = _np_layer_norm(x, blk["ln_mlp"])
        y = _np_gelu(y @ blk["mlp_in"]["kernel"] + blk["mlp_in"]["bias"])
        x = x + y @ blk["mlp_out"]["kernel"] + blk["mlp_out"]["bias"]
    x = _np_layer_norm(x, p["ln_out"])
    return x @ p["logits"]["kernel"] + p["logits"]["bias"]


def _np_token_loss(p, enc, ids, mask, valid, parallel, mask_id, ls):
    """Teacher forcing in numpy (targets: the row after [CLS]; inputs: the previous tokens, or
    the mask token everywhere for parallel rows) and the label-smoothed cross-entropy."""
    inputs = np.where(np.asarray(parallel)[:, None], mask_id, ids[:, :-1])
    return _ce(_np_decoder(p, inputs, parallel, enc), ids, mask, valid, ls)


def _ce(logits, ids, mask, valid, ls):
    logp = _log_softmax(logits)
    t, w = ids[:, 1:], mask[:, 1:] & valid[:, None]
    nll = -np.take_along_axis(logp, t[..., None], -1)[..., 0]
    return ((1 - ls) * nll + ls * -logp.mean(-1))[w].mean()


def test_par_matches_numpy_and_decodes_in_parallel(tokenizer):
    rng = np.random.default_rng(3)
    enc, batch = _enc(rng), _batch(rng, tokenizer)
    module = par.build(dict(decoder_size="mu"), _ctx(tokenizer))
    params = _perturbed_params(module, enc, batch, rng)
    loss, _ = module.apply({"params": params}, enc, batch, True, rngs={"mask": jax.random.key(1)})
    every_row = np.ones(B, bool)  # PAR decodes every row in parallel
    ref = _np_token_loss(params["decoder"], enc, batch["tag_ids"], batch["tag_mask"],
                         batch["valid"], every_row, tokenizer.mask_id, 0.0)
    np.testing.assert_allclose(float(loss), ref, rtol=2e-5)
    # Parallel: inputs are mask tokens only, so the targets cannot leak into the logits.
    _, _, (logits,) = _decoder_logits(module, {"params": params}, enc, batch, jax.random.key(1))
    other = dict(batch, tag_ids=np.where(batch["tag_mask"], 7, batch["tag_ids"]))
    _, _, (logits2,) = _decoder_logits(module, {"params": params}, enc, other, jax.random.key(1))
    np.testing.assert_allclose(logits, logits2, rtol=1e-6)


def test_captioning_sum_matches_numpy(tokenizer):
    rng = np.random.default_rng(4)
    enc, batch = _enc(rng), _batch(rng, tokenizer)
    module = captioning.build(dict(decoder_size="mu", mix="sum", parallel_fraction=0.75),
                              _ctx(tokenizer))
    params = _perturbed_params(module, enc, batch, rng)
    loss, metrics = module.apply({"params": params}, enc, batch, True,
                                 rngs={"mask": jax.random.key(1)})
    ids, mask, valid = batch["text_ids"], batch["text_mask"], batch["valid"]
    ar, par_ = (_np_token_loss(params["decoder"], enc, ids, mask, valid, np.full(B, mode),
                               tokenizer.mask_id, 0.1) for mode in (False, True))
    np.testing.assert_allclose(float(metrics["ar_loss"]), ar, rtol=2e-5)
    np.testing.assert_allclose(float(metrics["par_loss"]), par_, rtol=2e-5)
    np.testing.assert_allclose(float(loss), 0.25 * ar + 0.75 * par_, rtol=2e-5)


def test_autoregressive_decoding_is_causal(tokenizer):
    """Changing token i changes no logit before position i (teacher forcing is causal)."""
    rng = np.random.default_rng(5)
    enc, batch = _enc(rng), _batch(rng, tokenizer)
    module = captioning.build(dict(decoder_size="mu", mix="sample", parallel_fraction=0.0),
                              _ctx(tokenizer))
    params = module.init(jax.random.key(0), enc, batch, False)
    _, _, (a,) = _decoder_logits(module, params, enc, batch, jax.random.key(1))
    changed = dict(batch, text_ids=batch["text_ids"].copy())
    changed["text_ids"][:, 4] = 9
    _, _, (b,) = _decoder_logits(module, params, enc, changed, jax.random.key(1))
    np.testing.assert_allclose(a[:, :4], b[:, :4], rtol=1e-6)  # inputs 0..3 unchanged
    assert not np.allclose(a[:, 4:], b[:, 4:])


def test_captioning_sample_mix_draws_modes(tokenizer):
    """parallel_fraction 1 is PAR-style decoding: the loss equals the 'sum' mix's PAR part."""
    rng = np.random.default_rng(6)
    enc, batch = _enc(rng), _batch(rng, tokenizer)
    ctx = _ctx(tokenizer)
    sample = captioning.build(dict(decoder_size="mu", mix="sample", parallel_fraction=1.0), ctx)
    both = captioning.build(dict(decoder_size="mu", mix="sum", parallel_fraction=1.0), ctx)
    params = sample.init(jax.random.key(0), enc, batch, False)
    l1, _ = sample.apply(params, enc, batch, True, rngs={"mask": jax.random.key(2)})
    _, m2 = both.apply(params, enc, batch, True, rngs={"mask": jax.random.key(2)})
    np.testing.assert_allclose(float(l1), float(m2["par_loss"]), rtol=1e-6)


# ---------------------------------------------------------------- Padding


def _pad(enc, batch, rng):
    """Two more garbage tokens per clip (masked) and a garbage padding row (valid False)."""
    tokens = np.concatenate([np.asarray(enc.tokens), 50 * rng.standard_normal((B, 2, D))], 1)
    tokens = np.concatenate([tokens, 50 * rng.standard_normal((1, N + 2, D))], 0).astype(np.float32)
    mask = np.concatenate([np.asarray(enc.mask), np.zeros((B, 2), bool)], 1)
    mask = np.concatenate([mask, np.ones((1, N + 2), bool)], 0)
    padded = {k: np.concatenate([v, v[:1]], 0) for k, v in batch.items()}
    padded["valid"][-1] = False
    return EncoderOutput(jnp.asarray(tokens), jnp.asarray(mask), (N + 2, 1)), padded


@pytest.mark.parametrize("name,opts", [
    ("mtc", dict(pooling="mean")), ("mtc", dict(pooling="attention")),
    ("par", dict(decoder_size="mu")),
    ("captioning", dict(decoder_size="mu", mix="sum"))])
def test_padding_does_not_change_the_loss(name, opts, tokenizer):
    rng = np.random.default_rng(7)
    enc, batch = _enc(rng), _batch(rng, tokenizer)
    module = {"mtc": mtc, "par": par, "captioning": captioning}[name].build(opts, _ctx(tokenizer))
    params = _randomize(objectives.nn.meta.unbox(module.init(jax.random.key(0), enc, batch, False)), rng)
    loss, _ = module.apply(params, enc, batch, True)
    padded_loss, _ = module.apply(params, *_pad(enc, batch, rng), True)
    np.testing.assert_allclose(float(padded_loss), float(loss), rtol=1e-5)


# ---------------------------------------------------------------- Masked (MAE)


def test_visible_patches():
    real = jnp.asarray(np.arange(8)[None] < np.array([[8], [5], [2]]))
    order, visible = masked.visible_patches(jax.random.key(0), real, 0.75)
    assert order.shape == (3, 2) and visible.sum(1).tolist() == [2, 2, 2]
    assert bool((visible <= real).all())  # real patches come first
    assert len({tuple(np.asarray(masked.visible_patches(jax.random.key(s), real, 0.75)[0][0]))
                for s in range(6)}) > 1


def _masked_setup(rng, pad_frames=0):
    from strongaudio_jax.models import vit

    encoder = vit.ViT(size="mu", patch_time=4, patch_freq=8, max_frames=64, num_mels=16)
    t = 40
    feats = rng.standard_normal((B, t, 16)).astype(np.float32)
    frame_mask = np.arange(t)[None] < np.array([40, 36, 20, 40])[:, None]
    feats = np.where(frame_mask[..., None], feats, 100.0 * rng.standard_normal(feats.shape)).astype(np.float32)
    return encoder, feats, frame_mask


def test_masked_matches_numpy_and_ignores_padding():
    rng = np.random.default_rng(8)
    encoder, feats, frame_mask = _masked_setup(rng)
    module = masked.build(dict(mask_ratio=0.6, decoder_width=16, decoder_heads=2), _ctx(encoder=encoder))
    batch = {"features": feats, "frame_mask": frame_mask, "valid": np.array([True, True, True, False])}
    enc_vars = encoder.init(jax.random.key(0), feats, frame_mask)
    encode = lambda f, m, train, **kw: encoder.apply(enc_vars, f, m, train=train, **kw)
    enc = encode(feats, frame_mask, False)
    params = module.init({"params": jax.random.key(1), "mask": jax.random.key(2)}, enc, batch, False,
                         encode=encode)

    def run(b):
        return module.apply(params, encode(b["features"], b["frame_mask"], False), b, True,
                            encode=encode, rngs={"mask": jax.random.key(3)},
                            capture_intermediates=lambda m, _: m.name == "pred",
                            mutable=["intermediates"])

    (loss, metrics), state = run(batch)
    pred = np.asarray(state["intermediates"]["pred"]["__call__"][0], np.float64)
    hidden = np.asarray(state["intermediates"]["hidden"][0]) > 0
    nt, nf = 10, 2
    target = feats.reshape(B, nt, 4, nf, 8).transpose(0, 1, 3, 2, 4).reshape(B, nt * nf, 32)
    target = target.astype(np.float64)
    target = (target - target.mean(-1, keepdims=True)) / np.sqrt(target.var(-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(float(loss), ((pred - target) ** 2).mean(-1)[hidden].mean(), rtol=1e-5)
    # Hidden: real patches of valid rows, all but keep = round(0.4 * 10) = 4 time patches.
    real = np.repeat(frame_mask.reshape(B, nt, 4).all(-1), nf, 1) & batch["valid"][:, None]
    assert not (hidden & ~real).any()
    assert hidden.sum(1).tolist() == [(10 - 4) * nf, (9 - 4) * nf, (5 - 4) * nf, 0]

    # Padding frames (garbage beyond each clip) and padding rows do not change the loss.
    noisy = dict(batch, features=np.where(frame_mask[..., None], feats, -feats))
    noisy["features"][3] = 7.0
    (loss2, _), _ = run(noisy)
    np.testing.assert_allclose(float(loss2), float(loss), rtol=1e-5)
