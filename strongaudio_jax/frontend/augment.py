"""Training-time augmentations on device: random gain, mixup (waveforms), SpecAugment (features).

All are pure functions of a `jax.random` key (same key, same output), jit- and vmap-friendly, and
respect the padding: samples past a clip's length and frames outside its frame mask come out exactly
as they went in, and rows with valid=False are returned untouched. With the default `AugmentConfig`
every augmentation is off and both functions return their inputs unchanged.

In the train step (one key per step, e.g. `jax.random.fold_in(key, step)`):

    k_wave, k_feat = jax.random.split(key)
    batch = augment_waveforms(k_wave, batch, aug_cfg)        # gain, then mixup (tags mixed too)
    feats, frame_mask = log_mel(batch["waveform"], mel_cfg, batch["length"])
    feats = augment_features(k_feat, feats, frame_mask, aug_cfg)   # SpecAugment
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings; the defaults switch everything off. Frozen: a static jit argument."""

    # Random gain: each clip scaled by 10 ** (g / 20), g ~ U[gain_db_min, gain_db_max].
    gain_db_min: float = 0.0
    gain_db_max: float = 0.0
    # Mixup: x_i = lam * x_i + (1 - lam) * x_{i-1}, lam ~ Beta(alpha, alpha). alpha = 0: off.
    mixup_alpha: float = 0.0
    mixup_per_example: bool = True     # one lam per clip (True) or one for the whole batch (False)
    mixup_prob: float = 1.0            # fraction of clips that are mixed (the others keep lam = 1)
    # 'convex': tags = lam * tags_i + (1 - lam) * tags_{i-1} (soft targets, the usual mixup rule).
    # 'max': tags = max(tags_i, tags_{i-1}) (both sources are in the mixture, so both clips' tags hold).
    mixup_labels: str = "convex"
    # SpecAugment: `count` masks per clip, each of a width drawn uniformly from 0..max_width.
    time_masks: int = 0
    time_mask_width: int = 0           # frames; also capped at the clip's valid frames
    freq_masks: int = 0
    freq_mask_width: int = 0           # mel bins
    mask_value: float = 0.0            # value of masked cells: 0 is the mean of normalised features

    def __post_init__(self):
        if self.gain_db_min > self.gain_db_max:
            raise ValueError(f"gain_db_min {self.gain_db_min} > gain_db_max {self.gain_db_max}")
        if self.mixup_alpha < 0:
            raise ValueError(f"mixup_alpha must be >= 0 (0 = off), got {self.mixup_alpha}")
        if not 0.0 <= self.mixup_prob <= 1.0:
            raise ValueError(f"mixup_prob must be in [0, 1], got {self.mixup_prob}")
        if self.mixup_labels not in ("convex", "max"):
            raise ValueError(f"mixup_labels must be 'convex' or 'max', got {self.mixup_labels!r}")
        for name in ("time_masks", "time_mask_width", "freq_masks", "freq_mask_width"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    @property
    def gain(self) -> bool:
        return self.gain_db_min != 0.0 or self.gain_db_max != 0.0

    @property
    def mixup(self) -> bool:
        return self.mixup_alpha > 0.0 and self.mixup_prob > 0.0


# ----------------------------------------------------------------------------------------------------
# Waveforms: gain and mixup
# ----------------------------------------------------------------------------------------------------
def random_gain(key, waveform, length, db_min: float, db_max: float):
    """Each clip's valid samples scaled by a random gain in [db_min, db_max] dB; padding untouched."""
    B, T = waveform.shape
    db = jax.random.uniform(key, (B, 1), minval=db_min, maxval=db_max)
    inside = jnp.arange(T)[None, :] < length[:, None]
    gained = waveform * (10.0 ** (db / 20.0)).astype(waveform.dtype)
    return jnp.where(inside, gained, waveform)


def mixup(key, batch: dict, alpha: float, per_example: bool = True, prob: float = 1.0,
          labels: str = "convex") -> dict:
    """Mixes each clip with its neighbour in the batch (waveforms, lengths and tags).

    Clip i becomes lam_i * x_i + (1 - lam_i) * x_j with j = i - 1 (cyclic), on the samples of either
    clip (each counts as zero past its own length); its length becomes max(len_i, len_j). Samples past
    that stay as they were. Tags follow `labels` ('convex' or 'max', see AugmentConfig). A clip whose
    partner is padding (valid=False) is not mixed; a padding row is returned as it was.

    Why the neighbour and not a random permutation: batches come shuffled, so the pairs are as random,
    no clip is paired with itself, and on a batch sharded over devices a roll moves one row per device
    (collective-permute) where a permutation all-gathers the whole global batch onto every device.
    """
    wave, length, valid = batch["waveform"], batch["length"], batch["valid"]
    B, T = wave.shape
    other = lambda a: jnp.roll(a, 1, axis=0)  # row i -> row i - 1
    k_lam, k_on = jax.random.split(key)
    lam = jax.random.beta(k_lam, alpha, alpha, (B,) if per_example else (1,))
    lam = jnp.broadcast_to(jnp.clip(jnp.nan_to_num(lam, nan=1.0), 0.0, 1.0), (B,))
    mix = valid & other(valid)
    if prob < 1.0:
        mix = mix & jax.random.bernoulli(k_on, prob, (B,))
    lam = jnp.where(mix, lam, 1.0)

    inside = jnp.arange(T)[None, :] < length[:, None]
    own = jnp.where(inside, wave, 0.0)
    lam_w = lam[:, None].astype(wave.dtype)
    mixed = lam_w * own + (1 - lam_w) * other(own)
    new_length = jnp.where(mix, jnp.maximum(length, other(length)), length)
    new_inside = jnp.arange(T)[None, :] < new_length[:, None]
    out = dict(batch)
    out["waveform"] = jnp.where(mix[:, None] & new_inside, mixed, wave)
    out["length"] = new_length.astype(length.dtype)
    if "tags" in batch:
        tags = batch["tags"]
        if labels == "max":
            mixed_tags = jnp.maximum(tags, other(tags))
        else:
            lam_t = lam[:, None].astype(tags.dtype)
            mixed_tags = lam_t * tags + (1 - lam_t) * other(tags)
        out["tags"] = jnp.where(mix[:, None], mixed_tags, tags)
    return out


def augment_waveforms(key, batch: dict, cfg: AugmentConfig) -> dict:
    """Random gain, then mixup, on a batch dict (waveform [B, T], length [B], tags [B, K], valid [B]).

    Gain comes first so that mixed clips meet at random relative levels. Other keys pass through.
    """
    k_gain, k_mix = jax.random.split(key)
    out = dict(batch)
    if cfg.gain:
        gained = random_gain(k_gain, out["waveform"], out["length"], cfg.gain_db_min, cfg.gain_db_max)
        out["waveform"] = jnp.where(out["valid"][:, None], gained, out["waveform"])
    if cfg.mixup:
        out = mixup(k_mix, out, cfg.mixup_alpha, cfg.mixup_per_example, cfg.mixup_prob, cfg.mixup_labels)
    return out


# ----------------------------------------------------------------------------------------------------
# Features: SpecAugment
# ----------------------------------------------------------------------------------------------------
def _random_spans(key, count: int, max_width: int, size):
    """[B, count] starts and widths for [B] sizes: width ~ U{0..min(max_width, size)}, start ~
    U{0..size - width}. Integers come from uniform floats so the bounds can be traced values."""
    size = size.astype(jnp.int32)[:, None]
    k_w, k_s = jax.random.split(key)
    cap = jnp.minimum(max_width, size)
    width = jnp.minimum(jnp.floor(jax.random.uniform(k_w, (size.shape[0], count)) * (cap + 1)), cap)
    width = width.astype(jnp.int32)
    room = size - width
    start = jnp.minimum(jnp.floor(jax.random.uniform(k_s, width.shape) * (room + 1)), room)
    return start.astype(jnp.int32), width


def _covered(start, width, n: int):
    """[B, n] bool: positions inside any of the [B, count] spans."""
    pos = jnp.arange(n)[None, None, :]
    return jnp.any((pos >= start[..., None]) & (pos < (start + width)[..., None]), axis=1)


def spec_augment(key, feats, frame_mask, time_masks: int, time_mask_width: int, freq_masks: int,
                 freq_mask_width: int, mask_value: float = 0.0):
    """Time and frequency masks on [B, frames, mels], drawn independently for each clip.

    Time masks fall within each clip's valid frames (frame_mask), so short clips in a padded batch are
    masked in proportion to their own length; masked-out (padding) frames are never changed.
    """
    B, F, M = feats.shape
    k_t, k_f = jax.random.split(key)
    hit = jnp.zeros((B, F, M), bool)
    if time_masks and time_mask_width:
        n_valid = jnp.sum(frame_mask, axis=1)
        start, width = _random_spans(k_t, time_masks, time_mask_width, n_valid)
        hit = hit | _covered(start, width, F)[:, :, None]
    if freq_masks and freq_mask_width:
        start, width = _random_spans(k_f, freq_masks, freq_mask_width, jnp.full((B,), M))
        hit = hit | _covered(start, width, M)[:, None, :]
    hit = hit & frame_mask[:, :, None]
    return jnp.where(hit, jnp.asarray(mask_value, feats.dtype), feats)


def augment_features(key, feats, frame_mask, cfg: AugmentConfig):
    """SpecAugment with the config's counts and widths (a no-op when they are 0)."""
    if not ((cfg.time_masks and cfg.time_mask_width) or (cfg.freq_masks and cfg.freq_mask_width)):
        return feats
    return spec_augment(key, feats, frame_mask, cfg.time_masks, cfg.time_mask_width, cfg.freq_masks,
                        cfg.freq_mask_width, cfg.mask_value)
