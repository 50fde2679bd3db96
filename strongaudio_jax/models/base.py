"""What every encoder shares: its output, masked pooling, attention, and layer helpers.

Every encoder maps (features [B, T, mels], frame_mask [B, T]) to an `EncoderOutput` whose
`mask` marks real tokens; pooling anywhere downstream must go through that mask so padding
never changes a clip's embedding.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from strongaudio_jax.config import ConfigError
from strongaudio_jax.parallel.mesh import constrain

ATTENTION = ("auto", "xla", "cudnn", "pallas")
REMAT = {  # config name -> what the backward pass may keep instead of recomputing
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_saveable,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}
ACT = ("batch", "length", "embed")  # logical axes of a residual stream


@flax.struct.dataclass
class EncoderOutput:
    tokens: jax.Array  # [B, N, D] float32
    mask: jax.Array  # [B, N] bool, True for real (non-padding) tokens
    grid: tuple[int, int] = flax.struct.field(pytree_node=False)  # (time, freq) tokens

    def clip(self) -> jax.Array:
        """Clip-level embedding [B, D]: mean over real tokens."""
        return masked_mean(self.tokens, self.mask)

    def frames(self) -> tuple[jax.Array, jax.Array]:
        """Frame-level embeddings [B, T, D] (mean over the frequency tokens of each time step)
        and their mask [B, T]. Only for outputs that hold the full (time, freq) grid."""
        b, n, d = self.tokens.shape
        nt, nf = self.grid
        if n != nt * nf:
            raise ValueError(f"frames() needs all {nt}x{nf} tokens, this output holds {n} "
                             "(encoded with a keep subset?)")
        frames = self.tokens.reshape(b, nt, nf, d).mean(2)
        return frames, self.mask.reshape(b, nt, nf).any(-1)


def masked_mean(tokens: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean over real tokens only; a clip with no real token gives zeros, not NaN."""
    m = mask.astype(tokens.dtype)[..., None]
    return (tokens * m).sum(-2) / jnp.maximum(m.sum(-2), 1.0)


def dense(features: int, logical: tuple[str, str], name: str, dtype, init=None) -> nn.Dense:
    """Dense layer whose kernel carries logical axis names (float32 master weights)."""
    return nn.Dense(features, name=name, dtype=dtype, kernel_init=nn.with_logical_partitioning(
        init or nn.initializers.xavier_uniform(), logical))


def attention(q, k, v, mask: jax.Array, impl: str) -> jax.Array:
    """Multi-head attention of q, k, v [B, N, H, Dh] where keys outside `mask` [B, N] are
    ignored. impl: 'xla' (any device), 'cudnn' (fused flash attention on NVIDIA GPUs, bf16 /
    fp16; padding must be at the end, as the input pipeline delivers it), 'auto' (JAX picks
    cuDNN where it can), 'pallas' (the Pallas flash-attention kernel, TPU only)."""
    if impl == "pallas":
        from strongaudio_jax.models import pallas_attention
        return pallas_attention.attention(q, k, v, mask)
    if impl == "cudnn":  # cuDNN takes padding as sequence lengths
        lengths = mask.sum(-1).astype(jnp.int32)
        return jax.nn.dot_product_attention(q, k, v, query_seq_lengths=lengths,
                                            key_value_seq_lengths=lengths, implementation="cudnn")
    return jax.nn.dot_product_attention(q, k, v, mask=mask[:, None, None, :],
                                        implementation=None if impl == "auto" else impl)


class SelfAttention(nn.Module):
    """Self-attention with heads split over the 'tensor' mesh axis; `rotary` adds relative
    positions (RoPE) to queries and keys."""

    heads: int
    dtype: Any = jnp.float32
    impl: str = "xla"
    rotary: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        width = x.shape[-1]
        head_dim = width // self.heads
        proj = lambda name: nn.DenseGeneral(
            (self.heads, head_dim), name=name, dtype=self.dtype,
            kernel_init=nn.with_logical_partitioning(nn.initializers.xavier_uniform(),
                                                     ("embed", "heads", "kv")))
        q, k, v = (constrain(proj(n)(x), ("batch", "length", "heads", "kv"))
                   for n in ("query", "key", "value"))
        if self.rotary:
            q, k = rope(q), rope(k)
        y = attention(q, k, v, mask, self.impl)
        return nn.DenseGeneral(width, axis=(-2, -1), name="out", dtype=self.dtype,
                               kernel_init=nn.with_logical_partitioning(
                                   nn.initializers.xavier_uniform(), ("heads", "kv", "embed")))(y)


def rope(x: jax.Array, base: float = 10000.0) -> jax.Array:
    """Rotary position embedding over the sequence axis of [B, N, H, Dh]."""
    n, dh = x.shape[1], x.shape[-1]
    freqs = base ** (-jnp.arange(0, dh // 2, dtype=jnp.float32) / (dh // 2))
    angle = jnp.arange(n, dtype=jnp.float32)[:, None] * freqs[None]  # [N, Dh/2]
    cos, sin = (f(angle)[None, :, None, :].astype(x.dtype) for f in (jnp.cos, jnp.sin))
    x1, x2 = jnp.split(x, 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)


def drop_path(module: nn.Module, y: jax.Array, rate, train: bool) -> jax.Array:
    """Stochastic depth: drops a residual branch for whole examples with probability `rate`
    (a float or a traced scalar under scan), rescaling the kept ones."""
    if not train:
        return y
    keep = 1.0 - rate
    draw = jax.random.bernoulli(module.make_rng("dropout"), keep, (y.shape[0],) + (1,) * (y.ndim - 1))
    return jnp.where(draw, y / jnp.maximum(keep, 1e-6), 0).astype(y.dtype)


def check_choice(field: str, value, choices: Sequence) -> None:
    if value not in choices:
        raise ConfigError(f"model.{field}={value!r} is not one of {sorted(choices)}")


def compute_dtype(name: str):
    try:
        return jnp.dtype(name)
    except TypeError as e:
        raise ConfigError(f"model.dtype={name!r}: {e}") from None
