"""Decoding the captioning decoder (models/text/decoder.py) with a KV cache.

The decoder's parameters are used as trained; this module runs the same computation one
position at a time: each block's self-attention keys and values are kept in a cache
[B, L, heads, head_dim] and extended by one position per step, and the cross-attention keys
and values of the encoder tokens are computed once per clip (not once per step).
`tests/test_infer_decoding.py` checks the cached logits against the decoder's own
teacher-forced forward pass.

Strategies (all batched; each row stops at its first [SEP]):
  greedy     argmax at each step
  sample     temperature and nucleus (top-p) sampling; each row's random key comes from the
             clip id (`row_keys`), so a clip's caption does not depend on its batch
  beam       beam search over `beams` hypotheses per clip, scores = log-probability /
             length ** length_penalty (finished hypotheses compete with running ones)
  parallel   CapPa: one pass with mask-token inputs and full self-attention, then
             `refine_steps` passes that re-predict every token from the previous guess
             (teacher-forced, causal): for checkpoints trained with parallel_fraction > 0
`min_len` forbids [SEP] before that many tokens (benchmarks decode a fixed length with it).
A repetition penalty (Keskar et al., as Hugging Face applies it: a seen token's logit is
divided by the penalty when positive, multiplied when negative) applies to greedy, sample
and beam. Special tokens other than [SEP] are never generated.
"""

from __future__ import annotations

import dataclasses
import zlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from strongaudio_jax.models.text import decoder as decoder_lib

NEG = -1e9


@dataclasses.dataclass(frozen=True)
class Settings:
    strategy: str = "greedy"  # greedy | sample | beam | parallel
    max_len: int = 0  # tokens incl. [CLS] and [SEP]; 0: the decoder's max_len
    min_len: int = 0  # no [SEP] before this many tokens (incl. [CLS]); benchmarks use max_len
    temperature: float = 1.0  # (sample)
    top_p: float = 1.0  # (sample) nucleus mass; 1: the whole distribution
    beams: int = 4  # (beam)
    length_penalty: float = 1.0  # (beam)
    repetition_penalty: float = 1.0  # 1: off
    refine_steps: int = 0  # (parallel)
    seed: int = 0  # (sample)

    def check(self) -> None:
        from strongaudio_jax.config import ConfigError

        if self.strategy not in ("greedy", "sample", "beam", "parallel"):
            raise ConfigError(f"decode.strategy={self.strategy!r}: use greedy, sample, beam or "
                              "parallel")
        if self.temperature <= 0 or not 0 < self.top_p <= 1 or self.beams < 1 or \
                self.repetition_penalty <= 0 or self.refine_steps < 0 or self.min_len < 0:
            raise ConfigError(f"decode settings {dataclasses.asdict(self)}: temperature > 0, "
                              "0 < top_p <= 1, beams >= 1, repetition_penalty > 0 and "
                              "refine_steps >= 0 are required")


def row_keys(seed: int, ids) -> np.ndarray:
    """Per-row sampling keys from the clip ids (crc32), as raw uint32 key data [B, 2]."""
    return np.array([[seed & 0xFFFFFFFF, zlib.crc32(i.encode())] for i in ids], np.uint32)


# ---------------------------------------------------------------- the cached decoder


def _ln(p, x):
    return nn.LayerNorm().apply({"params": p}, x)


def _proj(p, x):  # DenseGeneral [W] -> [H, D]
    return jnp.einsum("...w,whd->...hd", x, p["kernel"]) + p["bias"]


def _out(p, x):  # DenseGeneral [H, D] -> [W]
    return jnp.einsum("...hd,hdw->...w", x, p["kernel"]) + p["bias"]


def _attend(q, k, v, mask):
    """q [B, 1, H, D], k/v [B, N, H, D], mask [B, N] -> [B, 1, H, D] (flax's arithmetic)."""
    q = q / jnp.sqrt(q.shape[-1]).astype(q.dtype)
    w = jnp.einsum("bqhd,bkhd->bhqk", q, k)
    w = jnp.where(mask[:, None, None, :], w, jnp.finfo(w.dtype).min)
    w = jax.nn.softmax(w, axis=-1)
    return jnp.einsum("bhqk,bkhd->bqhd", w, v)


def _depth(params) -> int:
    return sum(1 for k in params if k.startswith("block"))


def prefill(params, enc_tokens, enc_mask, max_len: int):
    """The decoding state before the first step: empty self-attention caches and the
    cross-attention keys / values of the encoder tokens, per block."""
    b = enc_tokens.shape[0]
    cache = []
    for i in range(_depth(params)):
        p = params[f"block{i}"]
        h, d = p["self_attn"]["key"]["kernel"].shape[1:]
        cache.append({
            "k": jnp.zeros((b, max_len, h, d), enc_tokens.dtype),
            "v": jnp.zeros((b, max_len, h, d), enc_tokens.dtype),
            "xk": _proj(p["cross_attn"]["key"], enc_tokens),
            "xv": _proj(p["cross_attn"]["value"], enc_tokens),
        })
    return cache, enc_mask


def step(params, cache, enc_mask, token, t):
    """Logits [B, V] for position t given input tokens [B] at t; returns the updated cache."""
    x = params["embed"]["embedding"][token] + params["pos"][t]
    x = x[:, None, :]  # [B, 1, W]
    max_len = cache[0]["k"].shape[1]
    self_mask = jnp.broadcast_to(jnp.arange(max_len) <= t, (x.shape[0], max_len))
    new_cache = []
    for i, c in enumerate(cache):
        p = params[f"block{i}"]
        y = _ln(p["ln_self"], x)
        a = p["self_attn"]
        k = jax.lax.dynamic_update_slice(c["k"], _proj(a["key"], y), (0, t, 0, 0))
        v = jax.lax.dynamic_update_slice(c["v"], _proj(a["value"], y), (0, t, 0, 0))
        x = x + _out(a["out"], _attend(_proj(a["query"], y), k, v, self_mask))
        y = _ln(p["ln_cross"], x)
        a = p["cross_attn"]
        x = x + _out(a["out"], _attend(_proj(a["query"], y), c["xk"], c["xv"], enc_mask))
        y = _ln(p["ln_mlp"], x)
        y = nn.gelu(y @ p["mlp_in"]["kernel"] + p["mlp_in"]["bias"])
        x = x + (y @ p["mlp_out"]["kernel"] + p["mlp_out"]["bias"])
        new_cache.append({**c, "k": k, "v": v})
    x = _ln(params["ln_out"], x)
    logits = x[:, 0] @ params["logits"]["kernel"] + params["logits"]["bias"]
    return logits, new_cache


# ---------------------------------------------------------------- strategies


@dataclasses.dataclass(frozen=True)
class Tokens:
    """The special ids decoding needs (text.tokenizer.WordPieceTokenizer's)."""
    bos: int
    eos: int
    pad: int
    banned: tuple[int, ...]  # never generated ([PAD], [UNK], [CLS], [MASK])

    @classmethod
    def of(cls, tok) -> "Tokens":
        return cls(tok.bos_id, tok.eos_id, tok.pad_id,
                   (tok.pad_id, tok.unk_id, tok.cls_id, tok.mask_id))


def _adjust(logits, seen, s: Settings, toks: Tokens, t):
    logits = logits.astype(jnp.float32)
    if s.min_len:  # position t + 1 is being chosen
        logits = logits.at[:, toks.eos].set(jnp.where(t + 2 < s.min_len, NEG, logits[:, toks.eos]))
    if s.repetition_penalty != 1.0:
        pen = jnp.where(logits > 0, logits / s.repetition_penalty, logits * s.repetition_penalty)
        logits = jnp.where(seen, pen, logits)
    return logits.at[:, jnp.array(toks.banned)].set(NEG)


def _sample(logits, keys, t, s: Settings):
    logits = logits / s.temperature
    if s.top_p < 1.0:
        probs = jax.nn.softmax(logits, -1)
        order = jnp.argsort(-probs, axis=-1)
        sorted_p = jnp.take_along_axis(probs, order, -1)
        before = jnp.cumsum(sorted_p, -1) - sorted_p  # mass of the more likely tokens
        keep_sorted = before < s.top_p  # the smallest set reaching top_p (never empty)
        keep = jnp.zeros_like(keep_sorted).at[jnp.arange(logits.shape[0])[:, None], order].set(
            keep_sorted)
        logits = jnp.where(keep, logits, NEG)
    step_keys = jax.vmap(lambda k: jax.random.fold_in(jax.random.wrap_key_data(k), t))(keys)
    return jax.vmap(jax.random.categorical)(step_keys, logits)


def generate(params, enc_tokens, enc_mask, keys, s: Settings, toks: Tokens, max_len: int):
    """Token rows [B, max_len] ([CLS] first; after [SEP] all [PAD]) by greedy or sampling."""
    b, vocab = enc_tokens.shape[0], params["logits"]["kernel"].shape[1]
    cache, mask = prefill(params, enc_tokens, enc_mask, max_len)
    out = jnp.full((b, max_len), toks.pad, jnp.int32).at[:, 0].set(toks.bos)
    seen = jnp.zeros((b, vocab), bool).at[:, toks.bos].set(True)
    done = jnp.zeros((b,), bool)

    def cond(state):
        t, _, _, _, done = state
        return (t < max_len - 1) & ~done.all()

    def body(state):
        t, out, cache, seen, done = state
        logits, cache = step(params, cache, mask, out[:, t], t)
        logits = _adjust(logits, seen, s, toks, t)
        nxt = _sample(logits, keys, t, s) if s.strategy == "sample" else logits.argmax(-1)
        if_last = t + 1 == max_len - 1  # the last position can only hold [SEP]
        nxt = jnp.where(if_last, toks.eos, nxt).astype(jnp.int32)
        nxt = jnp.where(done, toks.pad, nxt)
        out = out.at[:, t + 1].set(nxt)
        seen = seen.at[jnp.arange(b), nxt].set(True)
        return t + 1, out, cache, seen, done | (nxt == toks.eos)

    _, out, _, _, _ = jax.lax.while_loop(cond, body, (jnp.int32(0), out, cache, seen, done))
    return out


def beam_search(params, enc_tokens, enc_mask, s: Settings, toks: Tokens, max_len: int):
    """Token rows [B, max_len] of the best of `s.beams` hypotheses per clip."""
    b, k = enc_tokens.shape[0], s.beams
    vocab = params["logits"]["kernel"].shape[1]
    rep = lambda x: jnp.repeat(x, k, axis=0)  # [B, ...] -> [B*K, ...]
    cache, mask = prefill(params, rep(enc_tokens), rep(enc_mask), max_len)
    out = jnp.full((b * k, max_len), toks.pad, jnp.int32).at[:, 0].set(toks.bos)
    seen = jnp.zeros((b * k, vocab), bool).at[:, toks.bos].set(True)
    # Only the first beam of each clip is live at the start (the others would duplicate it).
    score = jnp.tile(jnp.array([0.0] + [NEG] * (k - 1), jnp.float32), b)
    done = jnp.zeros((b * k,), bool)
    length = jnp.ones((b * k,), jnp.int32)

    def cond(state):
        t, *_, done, _ = state
        return (t < max_len - 1) & ~done.all()

    def body(state):
        t, out, cache, seen, score, done, length = state
        logits, cache = step(params, cache, mask, out[:, t], t)
        logp = jax.nn.log_softmax(_adjust(logits, seen, s, toks, t), -1)
        logp = jnp.where(t + 1 == max_len - 1,
                         jnp.full_like(logp, NEG).at[:, toks.eos].set(0.0), logp)
        # A finished hypothesis continues with [PAD] at no cost (and nothing else).
        stay = jnp.full_like(logp, NEG).at[:, toks.pad].set(0.0)
        total = score[:, None] + jnp.where(done[:, None], stay, logp)  # [B*K, V]
        total = total.reshape(b, k * vocab)
        top, idx = jax.lax.top_k(total, k)  # [B, K]
        src = (idx // vocab + jnp.arange(b)[:, None] * k).reshape(-1)
        tok = (idx % vocab).reshape(-1).astype(jnp.int32)
        out = out[src].at[:, t + 1].set(tok)
        cache = jax.tree.map(lambda c: c[src], cache)
        seen = seen[src].at[jnp.arange(b * k), tok].set(True)
        was_done = done[src]
        length = length[src] + (~was_done).astype(jnp.int32)
        return (t + 1, out, cache, seen, top.reshape(-1), was_done | (tok == toks.eos), length)

    state = (jnp.int32(0), out, cache, seen, score, done, length)
    _, out, _, _, score, _, length = jax.lax.while_loop(cond, body, state)
    norm = (score / length.astype(jnp.float32) ** s.length_penalty).reshape(b, k)
    best = norm.argmax(-1) + jnp.arange(b) * k
    return out[best]


def parallel_decode(decoder: decoder_lib.Decoder, params, enc, s: Settings, toks: Tokens,
                    mask_id: int, max_len: int):
    """CapPa: all positions at once from mask tokens, then `refine_steps` causal passes."""
    b = enc.tokens.shape[0]
    n = max_len - 1
    apply = lambda inputs, par: decoder.apply({"params": params}, inputs, par, enc)
    banned = jnp.array(toks.banned)
    pick = lambda logits: logits.astype(jnp.float32).at[..., banned].set(NEG).argmax(-1)
    pred = pick(apply(jnp.full((b, n), mask_id, jnp.int32), jnp.ones((b,), bool)))
    for _ in range(s.refine_steps):
        inputs = jnp.concatenate([jnp.full((b, 1), toks.bos, jnp.int32), pred[:, :-1]], 1)
        pred = pick(apply(inputs.astype(jnp.int32), jnp.zeros((b,), bool)))
    pred = pred.at[:, -1].set(toks.eos).astype(jnp.int32)
    ended = jnp.cumsum(pred == toks.eos, axis=1) - (pred == toks.eos) > 0  # after the first [SEP]
    pred = jnp.where(ended, toks.pad, pred)
    return jnp.concatenate([jnp.full((b, 1), toks.bos, jnp.int32), pred], 1)
