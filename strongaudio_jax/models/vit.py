"""Patch transformer (ViT family) over log-mel spectrograms.

Input: features [B, frames, mels] and a frame mask. Patches tile time x frequency:
AST-style 16x16 (`patch_time=16, patch_freq=16`) or Dasheng-style full-band time patches
(`patch_freq == num_mels`, e.g. 64x4). Tokens are ordered time-major (all frequency patches
of one time step together), so the real tokens of an end-padded clip form a prefix.

Positions: separate time and frequency embeddings. `pos_time="slice"` gives a clip shorter
than `max_frames` the first time positions (so padding a clip does not move its positions)
and refuses longer clips; `pos_time="interpolate"` does the same up to `max_frames` and
stretches the table linearly for longer clips (fine-tuning or inference on long audio).

Blocks are pre-norm, with optional layer-scale and stochastic depth (linearly rising to
`drop_path` in the last block). Padding patches are masked in attention, and the output
`mask` keeps them out of every pooling downstream. `keep` (indices of the patches to encode)
runs the encoder on a subset of patches, as masked-autoencoder objectives need.

Scale-out options (all from the config): `attention` implementation, `remat` policy per
block, `scan_layers` (one compiled block, stacked parameters: fast compiles for deep models),
compute `dtype` (bf16 compute with float32 master weights).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from strongaudio_jax.config import ConfigError
from strongaudio_jax.models.base import (ACT, ATTENTION, REMAT, EncoderOutput, SelfAttention,  # noqa: F401
                                         check_choice, compute_dtype, dense, drop_path, masked_mean)
from strongaudio_jax.parallel.mesh import constrain

SIZES = {  # width, depth, heads, mlp
    "mu": (64, 2, 2, 256),
    "xs": (128, 4, 4, 512),
    "ti": (192, 12, 3, 768),
    "s": (384, 12, 6, 1536),
    "b": (768, 12, 12, 3072),
    "l": (1024, 24, 16, 4096),
    "h": (1280, 32, 16, 5120),  # Dasheng 0.6B-like
    "g": (1536, 40, 24, 6144),  # Dasheng 1.2B-like
}


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + MLP(LN(x))."""

    width: int
    heads: int
    mlp: int
    dtype: Any = jnp.float32
    attention: str = "xla"
    layer_scale: float = 0.0  # > 0: learned per-channel branch scale, initialised to this
    stochastic_depth: bool = False  # drop branches at drop_rate (needs a 'dropout' rng)
    train: bool = False

    @nn.compact
    def __call__(self, x, mask, drop_rate):
        def branch(y, name):
            if self.layer_scale:
                gamma = self.param(f"ls_{name}", nn.with_logical_partitioning(
                    nn.initializers.constant(self.layer_scale), ("embed",)), (self.width,))
                y = y * gamma.astype(y.dtype)
            if self.stochastic_depth:
                y = drop_path(self, y, drop_rate, self.train)
            return constrain(y, ACT)

        y = nn.LayerNorm(dtype=self.dtype, name="ln_attn")(x)
        y = SelfAttention(self.heads, self.dtype, self.attention, name="attn")(y, mask)
        x = x + branch(y, "attn")
        y = nn.LayerNorm(dtype=self.dtype, name="ln_mlp")(x)
        y = dense(self.mlp, ("embed", "mlp"), "mlp_in", self.dtype)(y)
        y = constrain(nn.gelu(y), ("batch", "length", "mlp"))
        y = dense(self.width, ("mlp", "embed"), "mlp_out", self.dtype)(y)
        return x + branch(y, "mlp")


class ScanBlock(Block):
    """Block with the (carry, per-layer input) signature nn.scan wants."""

    def __call__(self, x, mask, drop_rate):
        return super().__call__(x, mask, drop_rate), None


def patchify(feats: jax.Array, patch_time: int, patch_freq: int) -> jax.Array:
    """[B, T, F] -> [B, T//pt * F//pf, pt*pf] patches in token order (time-major); a partial
    last time patch is dropped. Also the target of masked-patch objectives."""
    b, t, f = feats.shape
    nt, nf = t // patch_time, f // patch_freq
    x = feats[:, :nt * patch_time].reshape(b, nt, patch_time, nf, patch_freq)
    return x.transpose(0, 1, 3, 2, 4).reshape(b, nt * nf, patch_time * patch_freq)


class ViT(nn.Module):
    size: str = "mu"
    patch_time: int = 16
    patch_freq: int = 16
    max_frames: int = 1024
    num_mels: int = 64
    dtype: Any = jnp.float32
    pos_time: str = "slice"  # or "interpolate" (clips longer than max_frames)
    layer_scale: float = 0.0
    drop_path: float = 0.0  # stochastic depth rate of the last block (0 in the first)
    attention: str = "xla"  # "auto", "cudnn" (GPU), "pallas" (TPU)
    remat: str = "none"  # "full", "dots", "dots_no_batch": recompute activations in backward
    scan_layers: bool = False

    @nn.compact
    def __call__(self, feats: jax.Array, frame_mask: jax.Array, train: bool = False,
                 keep: jax.Array | None = None) -> EncoderOutput:
        """keep: optional [B, K] int indices (token order) of the patches to encode."""
        width, depth, heads, mlp = SIZES[self.size]
        b, t, f = feats.shape
        if f != self.num_mels or f % self.patch_freq:
            raise ValueError(f"ViT expects {self.num_mels} mel bins divisible by patch_freq="
                             f"{self.patch_freq}, got features of shape {feats.shape}")
        nt, nf = t // self.patch_time, f // self.patch_freq
        table_len = self.max_frames // self.patch_time
        if nt > table_len and self.pos_time != "interpolate":
            raise ValueError(f"clip has {t} frames, more than max_frames={self.max_frames}; "
                             "crop it or set model.pos_time='interpolate'")
        x = dense(width, ("patch", "embed"), "patch_embed", self.dtype)(
            patchify(feats, self.patch_time, self.patch_freq).astype(self.dtype))
        pos_t = self.param("pos_time", nn.with_logical_partitioning(
            nn.initializers.normal(0.02), ("length", "embed")), (table_len, width))
        pos_f = self.param("pos_freq", nn.with_logical_partitioning(
            nn.initializers.normal(0.02), ("freq", "embed")), (nf, width))
        pos_t = jax.image.resize(pos_t, (nt, width), "linear") if nt > table_len else pos_t[:nt]
        pos = (pos_t[:, None] + pos_f[None]).reshape(nt * nf, width)
        x = constrain(x + pos.astype(self.dtype)[None], ACT)
        # A patch is real when all its frames are real: no padding leaks into its embedding.
        patch_mask = frame_mask[:, :nt * self.patch_time].reshape(b, nt, self.patch_time).all(-1)
        mask = jnp.repeat(patch_mask, nf, axis=1)
        if keep is not None:
            x = jnp.take_along_axis(x, keep[..., None], axis=1)
            mask = jnp.take_along_axis(mask, keep, axis=1)

        # Stochastic depth rate per block, rising linearly to drop_path in the last one.
        rates = np.linspace(0.0, self.drop_path, depth) if depth > 1 else np.zeros(1)
        kw = dict(width=width, heads=heads, mlp=mlp, dtype=self.dtype, attention=self.attention,
                  layer_scale=self.layer_scale, stochastic_depth=self.drop_path > 0, train=train)
        block = ScanBlock if self.scan_layers else Block
        if self.remat != "none":  # recompute the block's activations in the backward pass
            block = nn.remat(block, policy=REMAT[self.remat], prevent_cse=not self.scan_layers)
        if self.scan_layers:  # one block's program, parameters stacked on a 'layers' axis
            stack = nn.scan(block, variable_axes={"params": 0},
                            split_rngs={"params": True, "dropout": True},
                            in_axes=(nn.broadcast, 0), length=depth,
                            metadata_params={nn.PARTITION_NAME: "layers"})
            x, _ = stack(**kw, name="blocks")(x, mask, jnp.asarray(rates, jnp.float32))
        else:
            for i in range(depth):
                x = block(**kw, name=f"block{i}")(x, mask, float(rates[i]))
        x = nn.LayerNorm(dtype=self.dtype, name="ln_out")(x)
        return EncoderOutput(tokens=x.astype(jnp.float32), mask=mask, grid=(nt, nf))


def build(cfg) -> ViT:
    """Model factory: the config's `model` block holds ViT's fields."""
    fields = {f.name for f in dataclasses.fields(ViT)} - {"parent", "name"}
    unknown = set(cfg) - fields
    if unknown:
        raise ConfigError(f"model.{sorted(unknown)[0]} is not a ViT option; known: {sorted(fields)}")
    check_choice("size", cfg.get("size", "mu"), SIZES)
    check_choice("pos_time", cfg.get("pos_time", "slice"), ("slice", "interpolate"))
    check_choice("attention", cfg.get("attention", "xla"), ATTENTION)
    check_choice("remat", cfg.get("remat", "none"), REMAT)
    return ViT(**{**cfg, "dtype": compute_dtype(cfg.get("dtype", "float32"))})
