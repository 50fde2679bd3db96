"""Masked prediction (MAE-style), the self-supervised baseline.

A random `mask_ratio` of each clip's real time patches is hidden; the shared encoder runs
on the visible patches only (ViT's `keep`), a light transformer decoder sees the encoder's
tokens with a learned mask token in the hidden places and reconstructs the hidden
patches' log-mel values, each patch normalised to zero mean and unit variance (MAE's
norm_pix). Loss: mean squared error over hidden real patches. Masking is per time step
of patches (all frequency patches of it), which for full-band patches (Dasheng-style,
the configs' default) is per patch.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from strongaudio_jax.config import ConfigError
from strongaudio_jax.models.base import EncoderOutput
from strongaudio_jax.models.vit import Block, patchify
from strongaudio_jax.objectives import options

USES_ENCODER = True
DEFAULTS = dict(mask_ratio=0.75, decoder_width=64, decoder_depth=2, decoder_heads=2)


def visible_patches(rng, real: jax.Array, ratio: float) -> tuple[jax.Array, jax.Array]:
    """Which time patches stay visible, `keep` = round((1 - ratio) * N) (at least one) per
    row: (indices [B, keep] into the N time patches, visible [B, N] bool). Real patches
    are kept in random order before padding ones, so a clip shorter than the crop still
    hides `ratio` of what it has only when keep <= its real count; padding that is kept is
    masked out of attention by the encoder all the same."""
    b, n = real.shape
    keep = max(1, int(round((1.0 - ratio) * n)))
    noise = jax.random.uniform(rng, real.shape) + jnp.where(real, 0.0, 2.0)
    order = jnp.argsort(noise, axis=1)[:, :keep]
    visible = jnp.zeros((b, n), bool).at[jnp.arange(b)[:, None], order].set(True)
    return order, visible


class Masked(nn.Module):
    patch_time: int
    patch_freq: int
    max_time_patches: int
    mask_ratio: float = 0.75
    decoder_width: int = 64
    decoder_depth: int = 2
    decoder_heads: int = 2

    @nn.compact
    def __call__(self, enc: EncoderOutput, batch: dict, train: bool, encode=None):
        feats, frame_mask = batch["features"], batch["frame_mask"]
        nt, nf = enc.grid
        real_time = enc.mask.reshape(-1, nt, nf)[..., 0] & batch["valid"][:, None]
        order, visible_time = visible_patches(self.make_rng("mask"), real_time, self.mask_ratio)
        keep = (order[..., None] * nf + jnp.arange(nf)).reshape(order.shape[0], -1)
        seen = encode(feats, frame_mask, train, keep=keep)  # tokens of the kept patches only

        w = self.decoder_width
        b, n = keep.shape[0], nt * nf
        mask_token = self.param("mask_token", nn.initializers.normal(0.02), (w,))
        x = jnp.broadcast_to(mask_token, (b, n, w))
        x = x.at[jnp.arange(b)[:, None], keep].set(nn.Dense(w, name="embed")(seen.tokens))
        pos_t = self.param("pos_time", nn.initializers.normal(0.02), (self.max_time_patches, w))
        pos_f = self.param("pos_freq", nn.initializers.normal(0.02), (nf, w))
        x = x + (pos_t[:nt, None] + pos_f[None]).reshape(n, w)
        real = jnp.repeat(real_time, nf, 1)
        for i in range(self.decoder_depth):
            x = Block(w, self.decoder_heads, 4 * w, name=f"block{i}")(x, real, 0.0)
        pred = nn.Dense(self.patch_time * self.patch_freq, name="pred")(nn.LayerNorm(name="ln_out")(x))

        target = patchify(feats, self.patch_time, self.patch_freq)
        mean, var = target.mean(-1, keepdims=True), target.var(-1, keepdims=True)
        target = (target - mean) / jnp.sqrt(var + 1e-6)
        hidden = (real & ~jnp.repeat(visible_time, nf, 1)).astype(jnp.float32)
        self.sow("intermediates", "hidden", hidden)  # which patches the loss scores
        per_patch = ((pred - target) ** 2).mean(-1)
        loss = (per_patch * hidden).sum() / jnp.maximum(hidden.sum(), 1.0)
        return loss, {"mse": loss, "hidden_fraction": hidden.sum() / jnp.maximum(real.sum(), 1)}


def build(cfg, ctx) -> Masked:
    opts = options(cfg, DEFAULTS, "masked")
    if not 0.0 < opts["mask_ratio"] < 1.0:
        raise ConfigError(f"objectives.masked.mask_ratio={opts['mask_ratio']} must be in (0, 1)")
    e = ctx.encoder
    if not hasattr(e, "patch_time"):
        raise ConfigError("objectives.masked needs a patch encoder (model.patch_time / patch_freq)")
    return Masked(patch_time=e.patch_time, patch_freq=e.patch_freq,
                  max_time_patches=e.max_frames // e.patch_time, **opts)
