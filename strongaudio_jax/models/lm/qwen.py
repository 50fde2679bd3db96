"""The Qwen2 / Qwen2.5 and Qwen3 (dense) decoder-only transformers in Flax linen.

The parameter tree mirrors Hugging Face's names (`embed_tokens`, `layers_<i>/self_attn/q_proj`,
`mlp/gate_proj`, `norm`, `lm_head`) so that `infer/import_hf.py` maps a checkpoint tensor by
tensor. Both families: RMSNorm (pre-norm), rotary embeddings (rope_theta from the config),
grouped-query attention, SwiGLU MLP, tied or untied output embeddings. Qwen2 has biases on
q/k/v; Qwen3 has none there and instead normalises queries and keys per head (q_norm, k_norm)
and takes head_dim from the config.

One call serves the full forward, the prefill and a decode step: the model always writes the
new keys / values into a KV cache of fixed length S at slots [start, start + T) and attends to
the cache slots s <= its own slot whose `key_mask` is set. Rows are left-padded (padding at the
front, the prompts end at the same slot), so every row writes the same slot at each step and
`positions` (the rotary position of each token: how many real tokens precede it) carries the
per-row lengths.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from strongaudio_jax.parallel.mesh import constrain

SUPPORTED = ("qwen2", "qwen3")


@dataclasses.dataclass(frozen=True)
class QwenConfig:
    model_type: str  # 'qwen2' (also Qwen2.5) or 'qwen3'
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False

    @property
    def qkv_bias(self) -> bool:
        return self.model_type == "qwen2"

    @property
    def qk_norm(self) -> bool:
        return self.model_type == "qwen3"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> "QwenConfig":
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})

    @classmethod
    def from_hf(cls, hf: Mapping, source: str = "config.json") -> "QwenConfig":
        """From a Hugging Face config.json dict; refuses what this implementation does not
        compute (another architecture, sliding-window attention, scaled rotary embeddings)."""
        kind = hf.get("model_type")
        if kind not in SUPPORTED:
            raise ValueError(f"{source}: model_type {kind!r} (architectures "
                             f"{hf.get('architectures')}) is not supported; this imports "
                             f"{' / '.join(SUPPORTED)} decoder-only models")
        if hf.get("use_sliding_window"):
            raise ValueError(f"{source}: use_sliding_window=true is not implemented; only full "
                             f"attention in every layer")
        rope = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type != "default":
            raise ValueError(f"{source}: rope type {rope_type!r} is not implemented; only "
                             f"'default' rotary embeddings")
        theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
        try:
            heads = int(hf["num_attention_heads"])
            return cls(
                model_type=kind, vocab_size=int(hf["vocab_size"]),
                hidden_size=int(hf["hidden_size"]),
                intermediate_size=int(hf["intermediate_size"]),
                num_hidden_layers=int(hf["num_hidden_layers"]), num_attention_heads=heads,
                num_key_value_heads=int(hf.get("num_key_value_heads") or heads),
                head_dim=int(hf.get("head_dim") or int(hf["hidden_size"]) // heads),
                rope_theta=float(theta), rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
                tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)))
        except KeyError as e:
            raise ValueError(f"{source}: has no {e.args[0]!r}; is it a {kind} config?") from None


def init_cache(cfg: QwenConfig, batch: int, length: int, dtype=jnp.float32) -> list:
    """An empty KV cache: per layer (keys, values), each [batch, length, kv_heads, head_dim]."""
    shape = (batch, length, cfg.num_key_value_heads, cfg.head_dim)
    return [(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)) for _ in range(cfg.num_hidden_layers)]


def place_embeds(tokens, mask, embeds, placeholder_id: int):
    """Input vectors for the placeholder tokens: row b's i-th placeholder (where `mask` is set)
    takes embeds[b, i]. Returns (vectors [B, T, hidden], which tokens take one [B, T]) for
    `QwenLM(..., embeds, embeds_mask)`; rows must hold at most embeds.shape[1] placeholders."""
    is_slot = (tokens == placeholder_id) & mask
    index = jnp.clip(jnp.cumsum(is_slot.astype(jnp.int32), axis=1) - 1, 0, embeds.shape[1] - 1)
    return jnp.take_along_axis(embeds, index[..., None], axis=1), is_slot


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in float32 (as Hugging Face's Qwen2RMSNorm)."""

    eps: float
    logical: str | None = "embed"

    @nn.compact
    def __call__(self, x):
        w = self.param("weight", nn.with_logical_partitioning(nn.initializers.ones,
                                                              (self.logical,)), (x.shape[-1],))
        dtype = x.dtype
        x = x.astype(jnp.float32)
        x = x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + self.eps)
        return w.astype(dtype) * x.astype(dtype)


def rotary(x: jax.Array, positions: jax.Array, theta: float) -> jax.Array:
    """Rotary embedding of x [B, T, H, D] at integer positions [B, T], in Hugging Face's
    half-split layout (rotate_half)."""
    d = x.shape[-1]
    inv_freq = 1.0 / (theta ** (jnp.arange(0, d, 2, dtype=jnp.float32) / d))
    angle = positions.astype(jnp.float32)[..., None] * inv_freq  # [B, T, D/2]
    angle = jnp.concatenate([angle, angle], axis=-1)[:, :, None, :]
    cos, sin = jnp.cos(angle).astype(x.dtype), jnp.sin(angle).astype(x.dtype)
    x1, x2 = jnp.split(x, 2, axis=-1)
    return x * cos + jnp.concatenate([-x2, x1], axis=-1) * sin


def _proj(features, logical, name, dtype, bias):
    return nn.DenseGeneral(features, name=name, dtype=dtype, use_bias=bias,
                           kernel_init=nn.with_logical_partitioning(
                               nn.initializers.normal(0.02), logical),
                           bias_init=nn.with_logical_partitioning(
                               nn.initializers.zeros, logical[1:]))


class Attention(nn.Module):
    cfg: QwenConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, positions, start, key_mask, cache):
        cfg = self.cfg
        h, kvh, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        q = _proj((h, d), ("embed", "heads", "kv"), "q_proj", self.dtype, cfg.qkv_bias)(x)
        k = _proj((kvh, d), ("embed", "heads", "kv"), "k_proj", self.dtype, cfg.qkv_bias)(x)
        v = _proj((kvh, d), ("embed", "heads", "kv"), "v_proj", self.dtype, cfg.qkv_bias)(x)
        if cfg.qk_norm:
            q = RMSNorm(cfg.rms_norm_eps, "kv", name="q_norm")(q)
            k = RMSNorm(cfg.rms_norm_eps, "kv", name="k_norm")(k)
        q, k = rotary(q, positions, cfg.rope_theta), rotary(k, positions, cfg.rope_theta)
        q = constrain(q, ("batch", "length", "heads", "kv"))
        ck, cv = cache
        ck = jax.lax.dynamic_update_slice_in_dim(ck, k.astype(ck.dtype), start, axis=1)
        cv = jax.lax.dynamic_update_slice_in_dim(cv, v.astype(cv.dtype), start, axis=1)
        b, t = x.shape[:2]
        s = ck.shape[1]
        # query at slot start+i sees cache slots <= start+i that hold a real token
        q_slot = start + jnp.arange(t)
        allowed = (jnp.arange(s)[None, :] <= q_slot[:, None])[None] & key_mask[:, None, :]
        qg = q.reshape(b, t, kvh, h // kvh, d)
        scores = jnp.einsum("btkgd,bskd->bkgts", qg, ck.astype(q.dtype)) * (d ** -0.5)
        scores = jnp.where(allowed[:, None, None], scores.astype(jnp.float32),
                           jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(scores, axis=-1).astype(q.dtype)
        y = jnp.einsum("bkgts,bskd->btkgd", probs, cv.astype(q.dtype)).reshape(b, t, h, d)
        y = constrain(y, ("batch", "length", "heads", "kv"))
        out = nn.DenseGeneral(cfg.hidden_size, axis=(-2, -1), name="o_proj", dtype=self.dtype,
                              use_bias=False, kernel_init=nn.with_logical_partitioning(
                                  nn.initializers.normal(0.02), ("heads", "kv", "embed")))(y)
        return out, (ck, cv)


class MLP(nn.Module):
    cfg: QwenConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        n = self.cfg.intermediate_size
        gate = _proj(n, ("embed", "mlp"), "gate_proj", self.dtype, False)(x)
        up = _proj(n, ("embed", "mlp"), "up_proj", self.dtype, False)(x)
        y = constrain(nn.silu(gate) * up, ("batch", "length", "mlp"))
        return _proj(self.cfg.hidden_size, ("mlp", "embed"), "down_proj", self.dtype, False)(y)


class DecoderLayer(nn.Module):
    cfg: QwenConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, positions, start, key_mask, cache):
        eps = self.cfg.rms_norm_eps
        y, cache = Attention(self.cfg, self.dtype, name="self_attn")(
            RMSNorm(eps, name="input_layernorm")(x), positions, start, key_mask, cache)
        x = x + y
        x = x + MLP(self.cfg, self.dtype, name="mlp")(
            RMSNorm(eps, name="post_attention_layernorm")(x))
        return constrain(x, ("batch", "length", "embed")), cache


class QwenLM(nn.Module):
    """tokens [B, T] -> (logits [B, T, vocab] float32, updated cache).

    positions [B, T]: rotary positions; start: the cache slot of tokens[:, 0] (a scalar, may be
    traced); key_mask [B, S]: which cache slots hold real tokens (False for left padding);
    cache: `init_cache(cfg, B, S)` (S >= start + T).
    Embedding inputs (the audio-language model, models/alm): where `embeds_mask` [B, T] is set,
    the input vector is taken from `embeds` [B, T, hidden] instead of the token's embedding.
    `last_only`: logits of the last position only ([B, 1, vocab]; what a prefill needs, and the
    full [B, T, vocab] of a long prompt and a large vocabulary is big)."""

    cfg: QwenConfig
    dtype: Any = jnp.float32  # computation dtype; parameters stay as stored

    @nn.compact
    def __call__(self, tokens, positions, start, key_mask, cache, embeds=None, embeds_mask=None,
                 last_only: bool = False):
        cfg = self.cfg
        embed = nn.Embed(cfg.vocab_size, cfg.hidden_size, dtype=self.dtype, name="embed_tokens",
                         embedding_init=nn.with_logical_partitioning(
                             nn.initializers.normal(0.02), ("vocab", "embed")))
        x = embed(tokens)
        if embeds is not None:
            x = jnp.where(embeds_mask[..., None], embeds.astype(x.dtype), x)
        x = constrain(x, ("batch", "length", "embed"))
        new_cache = []
        for i in range(cfg.num_hidden_layers):
            x, c = DecoderLayer(cfg, self.dtype, name=f"layers_{i}")(
                x, positions, start, key_mask, cache[i])
            new_cache.append(c)
        if last_only:
            x = x[:, -1:]
        x = RMSNorm(cfg.rms_norm_eps, name="norm")(x)
        if cfg.tie_word_embeddings:
            logits = embed.attend(x)
        else:
            logits = _proj(cfg.vocab_size, ("embed", "vocab"), "lm_head", self.dtype, False)(x)
        return logits.astype(jnp.float32), new_cache

    def dummy_inputs(self):
        """Arguments of `init` for a batch of one (shapes only matter)."""
        tokens = jnp.zeros((1, 1), jnp.int32)
        return tokens, tokens, 0, jnp.ones((1, 1), bool), init_cache(self.cfg, 1, 1)
