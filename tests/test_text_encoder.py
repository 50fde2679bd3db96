"""Text encoder: shapes, padding invariance, logical axis names, safetensors reader."""


import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from strongaudio_jax.config import ConfigError
from strongaudio_jax.parallel import mesh as mesh_lib
from strongaudio_jax.models.text import encoder


def _random_batch(rng, n, length, vocab):
    ids = rng.integers(5, vocab, (n, length)).astype(np.int32)
    lengths = rng.integers(2, length + 1, n)
    mask = np.arange(length)[None] < lengths[:, None]
    return np.where(mask, ids, 0), mask


def test_shapes_and_unit_norm():
    enc = encoder.TextEncoder(vocab_size=50, size="tiny", max_len=16)
    ids, mask = _random_batch(np.random.default_rng(0), 3, 12, 50)
    params = nn.meta.unbox(enc.init(jax.random.key(0), ids, mask))
    tokens = enc.apply(params, ids, mask)
    assert tokens.shape == (3, 12, 128) and tokens.dtype == jnp.float32
    emb = encoder.sentence_embedding(tokens, mask)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=-1), 1.0, rtol=1e-6)
    assert encoder.sentence_embedding(tokens, mask, normalize=False).shape == (3, 128)
    with pytest.raises(ValueError, match="max_len=16"):
        enc.apply(params, np.zeros((1, 17), np.int32), np.ones((1, 17), bool))


def test_padding_does_not_change_the_embedding():
    enc = encoder.TextEncoder(vocab_size=50, size="tiny", max_len=32)
    ids, mask = _random_batch(np.random.default_rng(1), 4, 10, 50)
    params = nn.meta.unbox(enc.init(jax.random.key(0), ids, mask))
    short = encoder.sentence_embedding(enc.apply(params, ids, mask), mask)
    # 14 more padding positions filled with arbitrary token ids: they must not matter.
    junk = np.random.default_rng(2).integers(0, 50, (4, 14)).astype(np.int32)
    long_ids = np.concatenate([ids, junk], 1)
    long_mask = np.concatenate([mask, np.zeros((4, 14), bool)], 1)
    long = encoder.sentence_embedding(enc.apply(params, long_ids, long_mask), long_mask)
    np.testing.assert_allclose(long, short, atol=2e-6)


def test_parameters_carry_logical_axis_names():
    enc = encoder.TextEncoder(vocab_size=64, size="tiny", max_len=16)
    boxed = enc.init(jax.random.key(0), np.zeros((2, 8), np.int32), np.ones((2, 8), bool))
    specs = nn.get_partition_spec(boxed)["params"]
    assert tuple(specs["token_embed"]) == ("vocab", "embed")
    assert tuple(specs["block0"]["attn"]["query"]["kernel"]) == ("embed", "heads", "kv")
    assert tuple(specs["block1"]["mlp_in"]["kernel"]) == ("embed", "mlp")
    mesh = mesh_lib.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    assert mesh_lib.logical_to_spec(specs["token_embed"], mesh, (64, 128)) == jax.sharding.PartitionSpec("tensor", "fsdp")


def test_build_rejects_unknown_options():
    assert encoder.build({"size": "minilm", "max_len": 64}, vocab_size=10).width == 384
    with pytest.raises(ConfigError, match="size"):
        encoder.build({"size": "huge"}, vocab_size=10)
    with pytest.raises(ConfigError, match="dropout"):
        encoder.build({"dropout": 0.1}, vocab_size=10)
