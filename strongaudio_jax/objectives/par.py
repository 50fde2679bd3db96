"""PAR: parallel tag decoding (CapPa-style) of the clip's tags joined by ", ".

A transformer decoder cross-attends to the encoder tokens; its inputs are mask tokens
only and its self-attention has no causal mask, so it must read every tag of the sequence
off the audio at once, not from the tags before it. Cross-entropy over the real target
tokens (the [SEP] that ends the sequence included).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from strongaudio_jax.config import ConfigError
from strongaudio_jax.models.base import EncoderOutput
from strongaudio_jax.models.text import decoder as decoder_lib
from strongaudio_jax.objectives import masked_token_loss, options

FIELDS = ("tags",)
DEFAULTS = dict(decoder_size="xs", label_smoothing=0.0)


class PAR(nn.Module):
    vocab_size: int
    mask_id: int
    max_len: int
    decoder_size: str = "xs"
    label_smoothing: float = 0.0

    @nn.compact
    def __call__(self, enc: EncoderOutput, batch: dict, train: bool) -> tuple[jax.Array, dict]:
        ids, mask = batch["tag_ids"], batch["tag_mask"]
        parallel = jnp.ones(ids.shape[:1], bool)
        inputs, targets, weights = decoder_lib.teacher_forcing(ids, mask, self.mask_id, parallel)
        logits = decoder_lib.Decoder(self.vocab_size, self.max_len, self.decoder_size,
                                     name="decoder")(inputs, parallel, enc)
        weights = weights & batch["valid"][:, None]
        loss, acc = masked_token_loss(logits, targets, weights, self.label_smoothing)
        return loss, {"token_accuracy": acc}


def build(cfg, ctx) -> PAR:
    opts = options(cfg, DEFAULTS, "par")
    if opts["decoder_size"] not in decoder_lib.SIZES:
        raise ConfigError(f"objectives.par.decoder_size={opts['decoder_size']!r}: use one of "
                          f"{sorted(decoder_lib.SIZES)}")
    tok = ctx.tokenizer
    return PAR(vocab_size=tok.vocab_size, mask_id=tok.mask_id, max_len=ctx.text_len, **opts)
