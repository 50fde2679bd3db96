"""Captioning: an encoder-decoder trained to write the clip's caption summary.

Each example is decoded autoregressively (teacher forcing, causal self-attention) or in
parallel (CapPa: mask-token inputs, full self-attention). `parallel_fraction` sets the
mix: with mix="sample" each example draws its mode (CapPa's recipe, one decoder pass);
with mix="sum" both passes run on every example and the loss is
(1 - parallel_fraction) * L_AR + parallel_fraction * L_PAR, the study's multi-task form.
Label smoothing 0.1 by default, as in the study.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from strongaudio_jax.config import ConfigError
from strongaudio_jax.models.base import EncoderOutput
from strongaudio_jax.models.text import decoder as decoder_lib
from strongaudio_jax.objectives import masked_token_loss, options

FIELDS = ("text",)
DEFAULTS = dict(decoder_size="xs", label_smoothing=0.1, parallel_fraction=0.5, mix="sample")


class Captioning(nn.Module):
    vocab_size: int
    mask_id: int
    max_len: int
    decoder_size: str = "xs"
    label_smoothing: float = 0.1
    parallel_fraction: float = 0.5
    mix: str = "sample"  # "sample" | "sum"

    def setup(self):
        self.decoder = decoder_lib.Decoder(self.vocab_size, self.max_len, self.decoder_size)

    def mode_loss(self, enc, ids, mask, valid, parallel):
        inputs, targets, weights = decoder_lib.teacher_forcing(ids, mask, self.mask_id, parallel)
        logits = self.decoder(inputs, parallel, enc)
        return masked_token_loss(logits, targets, weights & valid[:, None], self.label_smoothing)

    def __call__(self, enc: EncoderOutput, batch: dict, train: bool) -> tuple[jax.Array, dict]:
        ids, mask, valid = batch["text_ids"], batch["text_mask"], batch["valid"]
        b = ids.shape[0]
        if self.mix == "sum":
            f = self.parallel_fraction
            ar, ar_acc = self.mode_loss(enc, ids, mask, valid, jnp.zeros(b, bool))
            par, par_acc = self.mode_loss(enc, ids, mask, valid, jnp.ones(b, bool))
            return (1 - f) * ar + f * par, {"ar_loss": ar, "par_loss": par, "ar_token_accuracy": ar_acc,
                                            "par_token_accuracy": par_acc}
        parallel = jax.random.bernoulli(self.make_rng("mask"), self.parallel_fraction, (b,))
        loss, acc = self.mode_loss(enc, ids, mask, valid, parallel)
        return loss, {"token_accuracy": acc}

    def log_likelihood(self, enc: EncoderOutput, ids: jax.Array, mask: jax.Array) -> jax.Array:
        """Autoregressive log p(text | audio) per row [B] (retrieval by likelihood)."""
        parallel = jnp.zeros(ids.shape[:1], bool)
        inputs, targets, weights = decoder_lib.teacher_forcing(ids, mask, self.mask_id, parallel)
        logp = jax.nn.log_softmax(self.decoder(inputs, parallel, enc))
        token = jnp.take_along_axis(logp, targets[..., None], -1)[..., 0]
        return (token * weights).sum(-1)


def build(cfg, ctx) -> Captioning:
    opts = options(cfg, DEFAULTS, "captioning")
    if opts["mix"] not in ("sample", "sum"):
        raise ConfigError(f"objectives.captioning.mix={opts['mix']!r}: use 'sample' or 'sum'")
    if not 0.0 <= opts["parallel_fraction"] <= 1.0:
        raise ConfigError(f"objectives.captioning.parallel_fraction={opts['parallel_fraction']} "
                          "must be within [0, 1]")
    if opts["decoder_size"] not in decoder_lib.SIZES:
        raise ConfigError(f"objectives.captioning.decoder_size={opts['decoder_size']!r}: use one "
                          f"of {sorted(decoder_lib.SIZES)}")
    tok = ctx.tokenizer
    return Captioning(vocab_size=tok.vocab_size, mask_id=tok.mask_id, max_len=ctx.text_len, **opts)
