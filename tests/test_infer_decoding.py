"""The captioner's KV-cache decoding (infer/decoding.py) against the decoder's own forward."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from strongaudio_jax.infer import decoding
from strongaudio_jax.models.base import EncoderOutput
from strongaudio_jax.models.text import decoder as decoder_lib

V, L, B, N = 40, 9, 3, 7
TOKS = decoding.Tokens(bos=2, eos=3, pad=0, banned=(0, 1, 2, 4))


def _setup():
    dec = decoder_lib.Decoder(V, L, "mu")
    rng = np.random.default_rng(0)
    ids = jnp.asarray(rng.integers(5, V, (B, L)), jnp.int32)
    enc = EncoderOutput(tokens=jnp.asarray(rng.standard_normal((B, N, 64)), jnp.float32),
                        mask=jnp.asarray(np.arange(N)[None] < np.array([[7], [4], [2]])),
                        grid=(N, 1))
    params = nn.meta.unbox(dec.init(jax.random.key(0), ids, jnp.zeros(B, bool), enc)["params"])
    return dec, params, ids, enc


def test_cached_steps_match_the_teacher_forced_forward():
    dec, params, ids, enc = _setup()
    full = dec.apply({"params": params}, ids, jnp.zeros(B, bool), enc)
    cache, mask = decoding.prefill(params, enc.tokens, enc.mask, L)
    steps = []
    for t in range(L):
        logits, cache = decoding.step(params, cache, mask, ids[:, t], t)
        steps.append(logits)
    np.testing.assert_allclose(np.stack(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_greedy_is_the_argmax_of_its_own_prefix_and_one_beam_is_greedy():
    dec, params, _, enc = _setup()
    s = decoding.Settings()
    keys = decoding.row_keys(0, ["a", "b", "c"])
    out = np.asarray(decoding.generate(params, enc.tokens, enc.mask, keys, s, TOKS, L))
    assert (out[:, 0] == TOKS.bos).all()
    # Re-running the full decoder on the result predicts the same next tokens.
    logits = np.array(dec.apply({"params": params}, jnp.asarray(out[:, :-1]),
                                  jnp.zeros(B, bool), enc))
    logits[..., list(TOKS.banned)] = -1e9
    for r in range(B):
        end = list(out[r]).index(TOKS.eos) if TOKS.eos in out[r] else L - 1
        last = end if end < L - 1 else end - 1  # a [SEP] forced at the last position
        assert (logits[r, :last].argmax(-1) == out[r, 1:last + 1]).all()
        assert (out[r, end + 1:] == TOKS.pad).all()
    beam = decoding.beam_search(params, enc.tokens, enc.mask,
                                decoding.Settings(strategy="beam", beams=1), TOKS, L)
    np.testing.assert_array_equal(np.asarray(beam), out)


def test_beam_search_scores_at_least_greedy_and_sampling_is_keyed_by_clip():
    dec, params, _, enc = _setup()

    def logp(rows):  # log p of each row's tokens up to and including [SEP]
        rows = np.asarray(rows)
        lp = np.asarray(jax.nn.log_softmax(dec.apply({"params": params}, jnp.asarray(rows[:, :-1]),
                                                      jnp.zeros(B, bool), enc)))
        total = []
        for r in range(B):
            end = list(rows[r]).index(TOKS.eos) if TOKS.eos in rows[r] else L - 1
            total.append(sum(lp[r, t, rows[r, t + 1]] for t in range(end)))
        return np.array(total)

    keys = decoding.row_keys(0, ["a", "b", "c"])
    greedy = decoding.generate(params, enc.tokens, enc.mask, keys, decoding.Settings(), TOKS, L)
    beam = decoding.beam_search(params, enc.tokens, enc.mask, decoding.Settings(
        strategy="beam", beams=4, length_penalty=0.0), TOKS, L)
    assert (logp(beam) >= logp(greedy) - 1e-4).all()
    s = decoding.Settings(strategy="sample", top_p=0.8, temperature=1.5)
    a = decoding.generate(params, enc.tokens, enc.mask, keys, s, TOKS, L)
    swapped = decoding.row_keys(0, ["c", "b", "a"])[::-1]  # same ids per row, other order
    b = decoding.generate(params, enc.tokens, enc.mask, swapped, s, TOKS, L)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    other = decoding.generate(params, enc.tokens, enc.mask, decoding.row_keys(1, "abc"), s,
                              TOKS, L)
    assert not np.array_equal(np.asarray(a), np.asarray(other))
