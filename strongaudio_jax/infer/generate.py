"""Batched text generation with a KV cache for the decoder-only LMs of models/lm.

Padding: prompts are LEFT-padded to a common length T, so all rows end at the same cache slot
and every decode step writes one slot for the whole batch; the per-row lengths live in the
rotary positions (real tokens before this one) and the key mask (pad slots are never attended).

Two jitted functions: `prefill` runs the padded prompts through the model in one call and fills
cache slots [0, T); `decode step` feeds one token per row at slot T + i (the slot is a traced
scalar, so the step compiles once). The loop over steps is a Python loop over the jitted step
rather than a lax.while_loop: it compiles the same single step, lets the host stop as soon as
every row has produced its end token, and costs one small dispatch per token, which is small
against a decode step of a real model; the cache is donated so it is updated in place.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding

from strongaudio_jax.models.lm import QwenLM, init_cache, place_embeds
from strongaudio_jax.parallel import mesh as mesh_lib


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int = 0,
             length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(tokens [B, T] int32, mask [B, T] bool) with each prompt right-aligned."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    t = max(len(p) for p in prompts) if length is None else length
    tokens = np.full((len(prompts), t), pad_id, np.int32)
    mask = np.zeros((len(prompts), t), bool)
    for i, p in enumerate(prompts):
        if len(p) > t:
            raise ValueError(f"prompt {i} has {len(p)} tokens, more than length={t}")
        tokens[i, t - len(p):] = p
        mask[i, t - len(p):] = True
    return tokens, mask


def _positions(mask):
    return jnp.maximum(jnp.cumsum(mask.astype(jnp.int32), axis=1) - 1, 0)


def forward(model: QwenLM, params, tokens, mask) -> jax.Array:
    """Logits [B, T, vocab] of left-padded `tokens` (rows of padding give meaningless logits)."""
    cache = init_cache(model.cfg, tokens.shape[0], tokens.shape[1], model.dtype)
    logits, _ = model.apply({"params": params}, jnp.asarray(tokens),
                            _positions(jnp.asarray(mask)), 0, jnp.asarray(mask), cache)
    return logits


def param_shardings(model, mesh: Mesh, rules=None):
    """NamedShardings of the parameters of `model` (QwenLM, or models/alm's AudioLM) on `mesh`
    by the logical-axis rules."""
    abstract = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                                 *model.dummy_inputs()))["params"]
    specs = nn.get_partition_spec(abstract)
    return mesh_lib.state_shardings(specs, nn.unbox(abstract), mesh, rules)


def shard_params(model, params, mesh: Mesh, rules=None):
    """Places host parameters on `mesh` (tensor-parallel heads / MLP / vocab by the rules)."""
    return jax.device_put(params, param_shardings(model, mesh, rules))


def _sample(logits, rng, temperature: float, top_p: float):
    """Greedy when temperature == 0, else temperature sampling within the top-p nucleus."""
    if temperature == 0.0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits / temperature
    if top_p < 1.0:
        sorted_logits = jnp.sort(logits, axis=-1)[:, ::-1]
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        before = jnp.cumsum(probs, axis=-1) - probs  # mass of the tokens ranked above
        kept = jnp.where(before < top_p, sorted_logits, jnp.inf).min(axis=-1, keepdims=True)
        logits = jnp.where(logits >= kept, logits, -jnp.inf)
    if rng.ndim == 2:  # one key per row (generate's row_keys)
        return jax.vmap(lambda k, l: jax.random.categorical(k, l))(rng, logits).astype(jnp.int32)
    return jax.random.categorical(rng, logits, axis=-1).astype(jnp.int32)


@functools.lru_cache(maxsize=16)
def _compiled(model: QwenLM, mesh: Mesh | None, temperature: float, top_p: float,
              placeholder_id: int | None):
    wrap = (lambda f: mesh_lib.on_mesh(mesh, f)) if mesh is not None else (lambda f: f)

    def prefill(params, tokens, mask, key_mask, cache, rng, embeds):
        extra = (None, None) if embeds is None else place_embeds(tokens, mask, embeds,
                                                                 placeholder_id)
        logits, cache = model.apply({"params": params}, tokens, _positions(mask), 0, key_mask,
                                    cache, *extra, last_only=True)
        return _sample(logits[:, -1], rng, temperature, top_p), cache

    def step(params, token, position, slot, key_mask, cache, rng):
        logits, cache = model.apply({"params": params}, token[:, None], position[:, None], slot,
                                    key_mask, cache)
        return _sample(logits[:, -1], rng, temperature, top_p), cache

    return (jax.jit(wrap(prefill), donate_argnums=(4,)),
            jax.jit(wrap(step), donate_argnums=(5,)))


def generate(model: QwenLM, params, prompts: Sequence[Sequence[int]], max_new_tokens: int, *,
             eos_id: int | Sequence[int] | None = None, pad_id: int = 0,
             temperature: float = 0.0, top_p: float = 1.0, seed: int = 0,
             mesh: Mesh | None = None, embeds=None, placeholder_id: int | None = None,
             length_multiple: int = 1, row_keys=None) -> list[list[int]]:
    """New token ids per prompt (up to and including an end token in `eos_id`, at most
    `max_new_tokens`). Greedy by default; temperature > 0 samples (within top_p). With `mesh`,
    params should come from `shard_params` and the batch is split over the data axes (its size
    must divide by them).

    Embedding inputs (audio-language models): with `embeds` [B, A, hidden], the prompt tokens
    equal to `placeholder_id` take row b's vectors embeds[b, 0], embeds[b, 1], ... in order
    instead of their token embedding (models/lm.place_embeds).

    `length_multiple`: the padded prompt length is rounded up to a multiple of it, so batches
    of prompts of varying lengths reuse a few compiled shapes (a corpus job sets e.g. 64).

    `row_keys` [B, 2] (uint32 PRNG keys, one per prompt): when sampling, row b's token i is drawn
    with fold_in(row_keys[b], i) instead of a key split from `seed` for the whole batch, so a
    row's reply does not depend on which other rows share its batch."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens}: must be at least 1")
    if (embeds is None) != (placeholder_id is None):
        raise ValueError("embeds and placeholder_id go together: give both or neither")
    eos = set([eos_id] if isinstance(eos_id, int) else (eos_id or []))
    longest = max((len(p) for p in prompts), default=0)
    tokens, mask = left_pad(prompts, pad_id, -(-longest // length_multiple) * length_multiple
                            if prompts else None)
    b, t = tokens.shape
    if embeds is not None and embeds.shape[0] != b:
        raise ValueError(f"embeds has {embeds.shape[0]} rows for {b} prompts; give one per prompt")
    key_mask = np.concatenate([mask, np.ones((b, max_new_tokens), bool)], axis=1)
    cache = init_cache(model.cfg, b, t + max_new_tokens, model.dtype)
    if mesh is not None:
        axes = mesh_lib.batch_sharding(mesh, 1).spec[0] or ()
        data = math.prod(mesh.shape[a] for a in ((axes,) if isinstance(axes, str) else axes))
        if b % data:
            raise ValueError(f"{b} prompts cannot be split over the {data} data-parallel devices "
                             f"of the mesh {dict(mesh.shape)}; give a multiple of {data}")
        put = lambda x: jax.device_put(x, mesh_lib.batch_sharding(mesh, x.ndim))
        tokens, mask, key_mask = put(tokens), put(mask), put(key_mask)
        if embeds is not None:
            embeds = put(embeds)
        cache_sharding = NamedSharding(mesh, mesh_lib.logical_to_spec(
            ("batch", "length", "heads", "kv"), mesh, cache[0][0].shape))
        cache = jax.device_put(cache, cache_sharding)
    prefill, step = _compiled(model, mesh, float(temperature), float(top_p),
                              None if placeholder_id is None else int(placeholder_id))
    rng = jax.random.PRNGKey(seed)
    if row_keys is not None:
        row_keys = np.asarray(row_keys, np.uint32)
        if row_keys.shape != (b, 2):
            raise ValueError(f"row_keys has shape {row_keys.shape}; give one key per prompt "
                             f"({b}, 2)")
        fold = jax.jit(jax.vmap(jax.random.fold_in, in_axes=(0, None)))
        next_key = lambda i: fold(row_keys, i)
    else:
        def next_key(i):
            nonlocal rng
            rng, sub = jax.random.split(rng)
            return sub
    token, cache = prefill(params, tokens, mask, key_mask, cache, next_key(0), embeds)
    position = np.asarray(mask).sum(axis=1).astype(np.int32)  # next rotary position per row
    out = [[] for _ in range(b)]
    done = np.zeros(b, bool)
    for i in range(max_new_tokens):
        host = np.asarray(token)
        for r in range(b):
            if not done[r]:
                out[r].append(int(host[r]))
                done[r] = int(host[r]) in eos
        if done.all() or i == max_new_tokens - 1:
            break
        token, cache = step(params, token, position + i, t + i, key_mask, cache, next_key(i + 1))
    return out
