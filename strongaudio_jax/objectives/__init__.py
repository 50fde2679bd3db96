"""Pre-training objectives: one module per objective, combined by weight in the config.

Configuration (any weighted combination trains in one step; the loss is the weighted sum):

    c.objectives = dict(mtc=dict(weight=1.0, pooling="mean"),
                        captioning=dict(weight=0.5, parallel_fraction=0.75))

Every key of an objective's block except `weight` is that objective's option; an unknown
objective or option is a ConfigError that lists the known ones.

Interface of an objective module `strongaudio_jax/objectives/<name>.py` (resolved by name through
`strongaudio_jax.registry`: a module of this package with a `build` is an objective):

    build(cfg: dict, ctx: Context) -> flax.linen.Module
        `cfg` is the objective's block without `weight` (use `options()` to merge it with
        defaults and reject unknown keys). `ctx` carries what heads need beyond their options.
    module(enc: EncoderOutput, batch: dict, train: bool) -> (loss: scalar, metrics: dict)
        `enc` is the encoder's output on the (augmented) batch; metric names are unprefixed:
        the combination reports them as "<objective>/<metric>" next to "<objective>/loss".
        Randomness comes from the flax rng streams 'dropout' and 'mask' (a function of
        (seed, step, objective), so a resumed run replays it).
    FIELDS (optional, module level): the text fields the objective reads from the batch, a
        subset of text.tokenizer.FIELDS; the input pipeline then tokenises them (the trainer
        builds that from the config: data.text_fields.from_config).
    USES_ENCODER = True (optional, module level): the module is also called with
        `encode=fn`, fn(features, frame_mask, train, **kw) -> EncoderOutput, for an objective
        that runs the shared encoder on its own view of the input (masked prediction passes
        keep=[B, K] patch indices: models/vit.py).

What every objective finds in `batch` (global arrays, sharded over the batch axis):
    waveform [B, S] f32, length [B] i32, tags [B, K] f32 multi-hot, valid [B] bool (False
    for padding rows: they must not change any loss), features [B, T, M] f32 log-mel after
    augmentation and frame_mask [B, T] bool (added by the train step), and when some
    objective asks for them: text_ids / text_mask [B, L] (the clip's text: config text.field,
    the long caption by default) and tag_ids / tag_mask [B, L] (the clip's tags joined by ", "), from the text tokenizer.
    Token rows are [CLS] pieces [SEP] [PAD]... (text.tokenizer.WordPieceTokenizer, or a
    BPETokenizer's <s> ... </s>: cls_id / bos_id is BOS, sep_id / eos_id EOS, mask_id the
    parallel-decoding input); mask is True on real tokens.
    The architectures the heads use (text decoder, text encoder) are in models/text/.

The tokenizer comes from the config's `text.tokenizer` ("minilm", a WordPiece vocab.txt or a
tokenizer.json) and `text.max_len`; training saves its vocabulary as <workdir>/text_vocab.txt. Parameters
live in state.params["heads"][<objective>]; the encoder's in params["encoder"]. With
gradient accumulation every microbatch of a step draws the same random numbers.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from strongaudio_jax import registry
from strongaudio_jax.config import ConfigError
from strongaudio_jax.text.tokenizer import FIELDS as TEXT_FIELDS

RNG_STREAMS = ("dropout", "mask")


@dataclasses.dataclass(frozen=True, eq=False)
class Context:
    """What objective heads may need beyond their own options."""

    num_classes: int  # size of the tag vocabulary (MTC targets)
    vocab: tuple[str, ...] | None  # the tags themselves (None when lowering without data)
    tokenizer: Any | None  # text.tokenizer.WordPieceTokenizer, from the config's text.tokenizer
    text_len: int  # tokens per text field ([CLS] and [SEP] included): text.max_len
    encoder: nn.Module  # the shared audio encoder (for its patch geometry)
    mel_cfg: Any  # frontend.MelConfig


@dataclasses.dataclass(frozen=True, eq=False)
class Objective:
    name: str
    weight: float
    module: nn.Module
    fields: tuple[str, ...]  # keys of TEXT_FIELDS
    uses_encoder: bool


def known_objectives() -> list[str]:
    """Names of the objective modules (strongaudio_jax.registry)."""
    return registry.known("objectives")


def options(cfg, defaults: dict, objective: str) -> dict:
    """`defaults` updated by the config block, with a ConfigError naming any unknown key."""
    cfg = dict(cfg)
    unknown = sorted(set(cfg) - set(defaults))
    if unknown:
        raise ConfigError(f"objectives.{objective}.{unknown[0]} is not an option of {objective}; "
                          f"known: {sorted(defaults) + ['weight']}")
    return {**defaults, **cfg}


def build_all(cfg_objectives, ctx: Context) -> tuple[Objective, ...]:
    """The configured objectives, in config order, each with its weight and module."""
    if not cfg_objectives:
        raise ConfigError(f"config has no objectives; set e.g. objectives=dict(mtc=dict(weight=1.0)) "
                          f"(known: {known_objectives()})")
    out = []
    for name, block in cfg_objectives.items():
        mod = registry.resolve("objectives", name)
        block = dict(block)
        if "weight" not in block:
            raise ConfigError(f"objectives.{name} has no weight; add weight=1.0")
        weight = float(block.pop("weight"))
        fields = tuple(getattr(mod, "FIELDS", ()))
        if fields and ctx.tokenizer is None:
            raise ConfigError(f"objective {name!r} reads text but the config has no text tokenizer "
                              f"(set text.tokenizer)")
        out.append(Objective(name, weight, mod.build(block, ctx), fields,
                             bool(getattr(mod, "USES_ENCODER", False))))
    return tuple(out)


def text_fields(objectives: Sequence[Objective]) -> tuple[str, ...]:
    return tuple(sorted({f for o in objectives for f in o.fields}))


def text_batch_spec(fields: Sequence[str], batch_size: int, text_len: int) -> dict:
    spec = {}
    for f in fields:
        ids, mask = TEXT_FIELDS[f]
        spec[ids] = jax.ShapeDtypeStruct((batch_size, text_len), jnp.int32)
        spec[mask] = jax.ShapeDtypeStruct((batch_size, text_len), jnp.bool_)
    return spec


def init_all(objectives: Sequence[Objective], rng, enc, batch: dict, encode: Callable) -> dict:
    """Each objective's parameters, keyed by objective name (empty for parameter-free ones)."""
    params = {}
    for i, obj in enumerate(objectives):
        rngs = {"params": jax.random.fold_in(rng, i), **_rngs(rng, i)}
        kw = {"encode": encode} if obj.uses_encoder else {}
        params[obj.name] = obj.module.init(rngs, enc, batch, False, **kw).get("params", {})
    return params


def weighted_loss(objectives: Sequence[Objective], params: dict, enc, batch: dict, rng,
                  train: bool, encode: Callable | None = None) -> tuple[jax.Array, dict]:
    """sum_i weight_i * loss_i, with every objective's loss and metrics under its name."""
    total, metrics = jnp.zeros((), jnp.float32), {}
    for i, obj in enumerate(objectives):
        kw = {"encode": encode} if obj.uses_encoder else {}
        loss, m = obj.module.apply({"params": params[obj.name]}, enc, batch, train,
                                   rngs=_rngs(rng, i), **kw)
        total = total + obj.weight * loss
        metrics[f"{obj.name}/loss"] = loss
        metrics.update({f"{obj.name}/{k}": v for k, v in m.items()})
    return total, metrics


def _rngs(rng, index: int) -> dict:
    """Per-objective streams: objectives never share random numbers."""
    key = jax.random.fold_in(rng, 1000 + index)
    return {s: jax.random.fold_in(key, j) for j, s in enumerate(RNG_STREAMS)}


def masked_token_loss(logits: jax.Array, targets: jax.Array, weights: jax.Array,
                      label_smoothing: float = 0.0) -> tuple[jax.Array, jax.Array]:
    """Cross-entropy per real target token (weights [B, L]), averaged over them, with label
    smoothing over the whole vocabulary; also the token accuracy. Shared by the decoders."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32))
    nll = -jnp.take_along_axis(logp, targets[..., None], -1)[..., 0]
    smooth = -logp.mean(-1)
    ce = (1.0 - label_smoothing) * nll + label_smoothing * smooth
    w = weights.astype(jnp.float32)
    n = jnp.maximum(w.sum(), 1.0)
    acc = ((logits.argmax(-1) == targets) * w).sum() / n
    return (ce * w).sum() / n, acc
