"""The Whisper-style audio encoder of Qwen2-Audio in Flax linen.

log-mel features [B, F, mel] -> conv1d (k 3, GELU) -> conv1d (k 3, stride 2, GELU) -> + learned
positions -> pre-norm transformer layers (LayerNorm, bidirectional attention, GELU MLP) ->
average pooling over pairs of frames -> LayerNorm: [B, F // 4, d_model], one vector per 40 ms.

Parameter names follow Hugging Face's `Qwen2AudioEncoder` (`conv1`, `conv2`, `embed_positions`,
`layers_<i>/self_attn/{q,k,v,out}_proj`, `self_attn_layer_norm`, `fc1`, `fc2`,
`final_layer_norm`, `layer_norm`) so that infer/import_hf.py maps them tensor by tensor.

Padding: `lengths` [B] are the valid mel frames of each clip; after the stride-2 convolution
the frames past (lengths - 1) // 2 + 1 are never attended to (as transformers masks them), and
`output_lengths` says how many pooled vectors of each row are real. Qwen2-Audio always feeds
2 * max_source_positions mel frames (30 s); this encoder takes any count up to that, which gives
the same real vectors as long as at least one padded frame follows the last real one.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from strongaudio_jax.parallel.mesh import constrain


@dataclasses.dataclass(frozen=True)
class WhisperEncoderConfig:
    num_mel_bins: int = 128
    d_model: int = 1280
    encoder_layers: int = 32
    encoder_attention_heads: int = 20
    encoder_ffn_dim: int = 5120
    max_source_positions: int = 1500  # positions after the stride-2 convolution (30 s)
    kind: str = "whisper"  # the entry of models/alm.ENCODERS that builds this encoder

    @property
    def max_frames(self) -> int:
        """Mel frames the encoder can take (2 * max_source_positions; 3000 = 30 s)."""
        return 2 * self.max_source_positions

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> "WhisperEncoderConfig":
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})

    # transformers' Qwen2AudioConfig defaults for an audio_config that leaves fields out
    HF_DEFAULTS = {"num_mel_bins": 128, "d_model": 1280, "encoder_layers": 32,
                   "encoder_attention_heads": 20, "encoder_ffn_dim": 5120,
                   "max_source_positions": 1500, "activation_function": "gelu",
                   "scale_embedding": False}

    @classmethod
    def from_hf(cls, hf: Mapping, source: str = "config.json") -> "WhisperEncoderConfig":
        hf = {**cls.HF_DEFAULTS, **{k: v for k, v in hf.items() if v is not None}}
        if hf["activation_function"] != "gelu":
            raise ValueError(f"{source}: audio_config.activation_function "
                             f"{hf['activation_function']!r} is not implemented; only 'gelu'")
        if hf["scale_embedding"]:
            raise ValueError(f"{source}: audio_config.scale_embedding=true is not implemented")
        if hf["d_model"] % hf["encoder_attention_heads"]:
            raise ValueError(f"{source}: audio_config.d_model {hf['d_model']} does not divide "
                             f"into {hf['encoder_attention_heads']} heads")
        return cls(**{f.name: int(hf[f.name]) for f in dataclasses.fields(cls)
                      if f.name != "kind"})


def output_lengths(lengths):
    """Pooled vectors (LM audio tokens) of clips with `lengths` mel frames (ints or arrays):
    (lengths - 1) // 2 + 1 frames after the stride-2 convolution, halved by the pooling."""
    conv = (lengths - 1) // 2 + 1
    return (conv - 2) // 2 + 1


def _dense(features, logical, name, dtype, bias=True, axis=-1):
    return nn.DenseGeneral(features, axis=axis, name=name, dtype=dtype, use_bias=bias,
                           kernel_init=nn.with_logical_partitioning(
                               nn.initializers.normal(0.02), logical),
                           bias_init=nn.with_logical_partitioning(
                               nn.initializers.zeros, logical[-len(features) if isinstance(
                                   features, tuple) else -1:]))


def _layer_norm(name, dtype):
    # torch.nn.LayerNorm's epsilon (flax's default is 1e-6)
    return nn.LayerNorm(epsilon=1e-5, name=name, dtype=dtype,
                        scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
                        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)))


class EncoderAttention(nn.Module):
    """Bidirectional multi-head attention over the frames whose `key_mask` is set (no bias on
    the keys, as Whisper)."""

    cfg: WhisperEncoderConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, key_mask):
        h = self.cfg.encoder_attention_heads
        d = self.cfg.d_model // h
        q = _dense((h, d), ("embed", "heads", "kv"), "q_proj", self.dtype)(x)
        k = _dense((h, d), ("embed", "heads", "kv"), "k_proj", self.dtype, bias=False)(x)
        v = _dense((h, d), ("embed", "heads", "kv"), "v_proj", self.dtype)(x)
        q = constrain(q, ("batch", "length", "heads", "kv"))
        scores = jnp.einsum("bthd,bshd->bhts", q * (d ** -0.5), k).astype(jnp.float32)
        scores = jnp.where(key_mask[:, None, None, :], scores, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
        y = jnp.einsum("bhts,bshd->bthd", probs, v)
        y = constrain(y, ("batch", "length", "heads", "kv"))
        return _dense(self.cfg.d_model, ("heads", "kv", "embed"), "out_proj", self.dtype,
                      axis=(-2, -1))(y)


class EncoderLayer(nn.Module):
    cfg: WhisperEncoderConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, key_mask):
        cfg = self.cfg
        y = _layer_norm("self_attn_layer_norm", self.dtype)(x)
        x = x + EncoderAttention(cfg, self.dtype, name="self_attn")(y, key_mask)
        y = _layer_norm("final_layer_norm", self.dtype)(x)
        y = nn.gelu(_dense(cfg.encoder_ffn_dim, ("embed", "mlp"), "fc1", self.dtype)(y),
                    approximate=False)
        y = constrain(y, ("batch", "length", "mlp"))
        x = x + _dense(cfg.d_model, ("mlp", "embed"), "fc2", self.dtype)(y)
        return constrain(x, ("batch", "length", "embed"))


class WhisperEncoder(nn.Module):
    """(features [B, F, num_mel_bins], lengths [B] valid frames) -> (vectors [B, F2 // 2,
    d_model], output_lengths [B]) with F2 = (F - 1) // 2 + 1 and F <= 2 * max_source_positions."""

    cfg: WhisperEncoderConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, features, lengths):
        cfg = self.cfg
        if features.shape[1] > cfg.max_frames:
            raise ValueError(f"{features.shape[1]} mel frames: the audio encoder takes at most "
                             f"{cfg.max_frames} (2 * max_source_positions); crop the audio")
        conv = lambda name, stride, logical: nn.Conv(
            cfg.d_model, (3,), strides=(stride,), padding=((1, 1),), name=name, dtype=self.dtype,
            kernel_init=nn.with_logical_partitioning(nn.initializers.normal(0.02), logical),
            bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)))
        x = features.astype(self.dtype)
        x = nn.gelu(conv("conv1", 1, ("conv", "freq", "embed"))(x), approximate=False)
        x = nn.gelu(conv("conv2", 2, ("conv", None, "embed"))(x), approximate=False)
        positions = self.param("embed_positions", nn.with_logical_partitioning(
            nn.initializers.normal(0.02), (None, "embed")), (cfg.max_source_positions,
                                                             cfg.d_model))
        t = x.shape[1]
        x = constrain(x + positions[:t].astype(x.dtype), ("batch", "length", "embed"))
        key_mask = jnp.arange(t)[None, :] < ((lengths - 1) // 2 + 1)[:, None]
        for i in range(cfg.encoder_layers):
            x = EncoderLayer(cfg, self.dtype, name=f"layers_{i}")(x, key_mask)
        b, _, d = x.shape
        x = x[:, :t // 2 * 2].reshape(b, t // 2, 2, d).mean(axis=2)  # AvgPool1d(2, stride 2)
        x = _layer_norm("layer_norm", self.dtype)(x)
        return x, output_lengths(lengths)
