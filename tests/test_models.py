"""Encoders: padding invariance, positions for variable length, subsets of patches, sizes."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from strongaudio_jax.config import ConfigError
from strongaudio_jax.models import vit, zipformer


def _params(model, feats, mask):
    return jax.jit(model.init)(jax.random.key(0), feats, mask)


def _padded_vs_unpadded(model, real_frames, padded_frames, mels):
    """Clip embedding of a clip alone vs the same clip end-padded with garbage."""
    feats = jax.random.normal(jax.random.key(1), (1, padded_frames, mels))
    mask = jnp.arange(padded_frames)[None] < real_frames
    variables = _params(model, feats, mask)
    apply = jax.jit(model.apply)
    padded = apply(variables, feats, mask).clip()
    alone = apply(variables, feats[:, :real_frames], mask[:, :real_frames]).clip()
    return np.asarray(padded), np.asarray(alone)


@pytest.mark.parametrize("patches", [(16, 16), (4, 64)], ids=["ast16x16", "dasheng64x4"])
def test_vit_clip_embedding_ignores_padding(patches):
    pt, pf = patches
    model = vit.build(dict(size="mu", patch_time=pt, patch_freq=pf, max_frames=128, num_mels=64))
    padded, alone = _padded_vs_unpadded(model, real_frames=80, padded_frames=128, mels=64)
    np.testing.assert_allclose(padded, alone, rtol=1e-5, atol=1e-5)
    assert np.abs(alone).max() > 0.1  # a real embedding, not zeros


def test_zipformer_clip_embedding_ignores_padding():
    model = zipformer.build(dict(size="tiny", num_mels=64))
    padded, alone = _padded_vs_unpadded(model, real_frames=61, padded_frames=100, mels=64)
    np.testing.assert_allclose(padded, alone, rtol=1e-5, atol=1e-5)


def test_vit_positions_slice_or_interpolate():
    feats = jax.random.normal(jax.random.key(0), (2, 96, 64))
    mask = jnp.ones((2, 96), bool)
    sliced = vit.build(dict(size="mu", patch_time=4, patch_freq=64, max_frames=64, num_mels=64))
    with pytest.raises(ValueError, match="more than max_frames=64.*interpolate"):
        sliced.init(jax.random.key(0), feats, mask)
    stretched = vit.build(dict(size="mu", patch_time=4, patch_freq=64, max_frames=64, num_mels=64,
                               pos_time="interpolate"))
    variables = _params(stretched, feats[:, :64], mask[:, :64])  # table of 16 time positions
    out = jax.jit(stretched.apply)(variables, feats, mask)  # 24 time patches: table stretched
    assert out.tokens.shape == (2, 24, 64) and np.isfinite(out.tokens).all()


def test_vit_keep_subset_and_frame_outputs():
    model = vit.build(dict(size="mu", patch_time=4, patch_freq=32, max_frames=64, num_mels=64))
    feats = jax.random.normal(jax.random.key(0), (2, 64, 64))
    mask = jnp.arange(64)[None] < jnp.array([[64], [40]])
    variables = _params(model, feats, mask)
    apply = jax.jit(model.apply)
    full = apply(variables, feats, mask)
    assert full.grid == (16, 2) and full.tokens.shape == (2, 32, 64)
    frames, frame_mask = full.frames()
    assert frames.shape == (2, 16, 64) and frame_mask.sum(-1).tolist() == [16, 10]
    everything = apply(variables, feats, mask, keep=jnp.tile(jnp.arange(32), (2, 1)))
    np.testing.assert_allclose(everything.tokens, full.tokens, atol=1e-5)
    keep = jnp.array([[0, 5, 9, 30], [1, 2, 3, 25]])  # token 25 of clip 2 is padding
    part = apply(variables, feats, mask, keep=keep)
    assert part.tokens.shape == (2, 4, 64) and part.mask.tolist() == [[True] * 4, [True] * 3 + [False]]
    with pytest.raises(ValueError, match="keep"):
        part.frames()


def test_stochastic_depth_needs_rng_only_in_training():
    model = vit.build(dict(size="mu", patch_time=4, patch_freq=64, max_frames=64, num_mels=64,
                           drop_path=0.5, layer_scale=0.1))
    feats, mask = jax.random.normal(jax.random.key(0), (4, 64, 64)), jnp.ones((4, 64), bool)
    variables = _params(model, feats, mask)
    assert "ls_attn" in variables["params"]["block1"]
    apply = jax.jit(model.apply, static_argnames="train")
    np.testing.assert_array_equal(apply(variables, feats, mask).tokens,
                                  apply(variables, feats, mask).tokens)
    train = lambda k: apply(variables, feats, mask, train=True, rngs={"dropout": jax.random.key(k)}).tokens
    assert not np.allclose(train(1), train(2))


@pytest.mark.parametrize("cfg, message", [
    (dict(size="xl"), "model.size='xl' is not one of"),
    (dict(attention="flash"), "model.attention='flash'"),
    (dict(remat="some"), "model.remat='some'"),
    (dict(patches=16), "model.patches is not a ViT option"),
])
def test_vit_config_errors_name_the_field(cfg, message):
    with pytest.raises(ConfigError, match=message):
        vit.build(cfg)


@pytest.mark.parametrize("build, cfg, millions", [
    (vit.build, dict(size="b", patch_time=16, patch_freq=16, max_frames=1024, num_mels=128), 86),
    (vit.build, dict(size="l", patch_time=16, patch_freq=16, max_frames=1024, num_mels=128), 303),
    (vit.build, dict(size="h", patch_time=4, patch_freq=64, max_frames=1008, num_mels=64), 630),
    (zipformer.build, dict(size="m", num_mels=80), 65),
])
def test_parameter_counts_match_the_named_sizes(build, cfg, millions):
    model = build(cfg)
    t, f = cfg.get("max_frames", 200), cfg["num_mels"]
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, t, f)), jnp.ones((1, t), bool))
    n = sum(x.size for x in jax.tree.leaves(nn.meta.unbox(shapes)))
    assert abs(n / 1e6 - millions) / millions < 0.03, n
