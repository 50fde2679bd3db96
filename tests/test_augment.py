"""Augmentations (gain, mixup, SpecAugment): determinism, bounds, padding untouched, mixup label rule."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from strongaudio_jax.frontend import AugmentConfig, augment_features, augment_waveforms, log_mel
from strongaudio_jax.frontend import augment

PAD = 0.25  # non-zero padding value: must come out unchanged
SENTINEL = -999.0
# Eager calls in most tests: jax caches each primitive, where a jit per config would compile the whole
# function again (the Beta sampler's loop alone takes ~1 s to compile).


def _batch(B=6, T=800, K=None, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(T // 4, T + 1, B).astype(np.int32)
    lengths[0] = T
    wave = np.full((B, T), PAD, np.float32)
    for i, n in enumerate(lengths):
        wave[i, :n] = rng.uniform(0.1, 1.0, n) * rng.choice([-1, 1], n)  # never zero inside a clip
    tags = np.eye(B, K or B, dtype=np.float32)  # one tag per clip: mixed tags reveal lam and partner
    valid = np.ones(B, bool)
    return dict(waveform=jnp.asarray(wave), length=jnp.asarray(lengths), tags=jnp.asarray(tags),
                valid=jnp.asarray(valid))


def _feats(B=4, F=50, M=16, seed=0):
    rng = np.random.default_rng(seed)
    feats = jnp.asarray(rng.standard_normal((B, F, M)).astype(np.float32))
    n_valid = jnp.asarray([F, 30, 7, 0][:B])
    mask = jnp.arange(F)[None, :] < n_valid[:, None]
    return feats, mask


def _equal(a, b):
    return jax.tree.all(jax.tree.map(lambda x, y: bool(jnp.array_equal(x, y)), a, b))


def test_defaults_are_off():
    cfg = AugmentConfig()
    batch = _batch()
    assert _equal(augment_waveforms(jax.random.key(0), batch, cfg), batch)
    feats, mask = _feats()
    assert augment_features(jax.random.key(0), feats, mask, cfg) is feats


def test_config_errors():
    for bad in (dict(gain_db_min=3, gain_db_max=-3), dict(mixup_alpha=-1), dict(mixup_labels="sum"),
                dict(mixup_prob=2.0), dict(time_masks=-1)):
        with pytest.raises(ValueError):
            AugmentConfig(**bad)


def _runs(row):
    """(start, length) of runs of True in a 1-d bool array."""
    d = np.diff(np.concatenate([[0], row.astype(int), [0]]))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1) - np.flatnonzero(d == 1)))


def test_spec_augment_bounds_and_padding():
    """One mask on one axis: a single run of width 0..max, time masks inside each clip's valid frames."""
    feats, mask = _feats()
    f, m = np.asarray(feats), np.asarray(mask)
    n_valid = m.sum(axis=1)
    keys = jax.random.split(jax.random.key(0), 128)
    for axis, (W_t, W_f) in (("time", (12, 0)), ("freq", (0, 5))):
        fn = jax.jit(jax.vmap(lambda k: augment.spec_augment(k, feats, mask, 1, W_t, 1, W_f, SENTINEL)))
        out = np.asarray(fn(keys))
        hit = out == SENTINEL
        assert not hit[:, ~m].any()                               # padding frames never masked
        np.testing.assert_array_equal(out[~hit], np.broadcast_to(f, out.shape)[~hit])  # rest untouched
        widths = set()
        for o in hit:
            for b, n in enumerate(n_valid):
                if n == 0:
                    assert not o[b].any()
                    continue
                if axis == "time":
                    rows = o[b].all(axis=1)
                    assert (o[b].any(axis=1) == rows).all()       # whole frames
                    runs, cap = _runs(rows), min(W_t, n)
                    assert all(s + w <= n for s, w in runs)       # inside the valid frames
                else:
                    cols = o[b, :n].all(axis=0)
                    assert (o[b, :n].any(axis=0) == cols).all()   # whole bins (over valid frames)
                    runs, cap = _runs(cols), W_f
                assert len(runs) <= 1 and all(w <= cap for _, w in runs)
                if b == 0:
                    widths.add(runs[0][1] if runs else 0)
        assert {0, max(W_t, W_f)} <= widths  # widths are drawn from 0..max, both ends reached


def test_spec_augment_many_masks_total_width():
    feats, mask = _feats()
    cfg = AugmentConfig(time_masks=3, time_mask_width=4, freq_masks=2, freq_mask_width=3, mask_value=SENTINEL)
    out = np.asarray(jax.jit(jax.vmap(lambda k: augment_features(k, feats, mask, cfg)))(
        jax.random.split(jax.random.key(1), 32)))
    hit = out == SENTINEL
    # Clips 0 and 1 (50 and 30 valid frames): neither axis's masks can cover the other axis entirely, so
    # fully masked frames come from time masks only (<= 3 x 4) and fully masked bins from freq masks (<= 2 x 3).
    for b, n in ((0, 50), (1, 30)):
        assert (hit[:, b].all(axis=2).sum(axis=1) <= 3 * 4).all()
        assert (hit[:, b, :n].all(axis=1).sum(axis=1) <= 2 * 3).all()
    assert hit[:, 0].all(axis=2).any() and hit[:, 0, :50].all(axis=1).any()
    assert not hit[:, ~np.asarray(mask)].any()
    assert np.isfinite(out).all()


def test_gain_range_and_padding():
    batch = _batch()
    cfg = AugmentConfig(gain_db_min=-12.0, gain_db_max=6.0)
    out = augment_waveforms(jax.random.key(3), batch, cfg)
    w, o, n = np.asarray(batch["waveform"]), np.asarray(out["waveform"]), np.asarray(batch["length"])
    for i in range(len(n)):
        ratio = o[i, :n[i]] / w[i, :n[i]]
        np.testing.assert_allclose(ratio, ratio[0], rtol=1e-5)  # one gain per clip
        assert -12.0 - 1e-4 <= 20 * np.log10(ratio[0]) <= 6.0 + 1e-4
        assert np.all(o[i, n[i]:] == PAD)
    np.testing.assert_array_equal(np.asarray(out["length"]), n)
    np.testing.assert_array_equal(np.asarray(out["tags"]), np.asarray(batch["tags"]))


def _partner_and_lam(tags_out, i):
    """From one-hot tags mixed by the convex rule: (partner, lam) of row i (partner i if not mixed)."""
    row = np.asarray(tags_out[i])
    others = [j for j in np.flatnonzero(row) if j != i]
    return (others[0], float(row[i])) if others else (i, 1.0)


@pytest.mark.parametrize("per_example", [True, False])
def test_mixup_waveforms_lengths_and_labels(per_example):
    """Clip i = lam x_i + (1 - lam) x_j on max(len_i, len_j) samples; tags convex or max, same draw."""
    batch = _batch(B=8)
    cfg = AugmentConfig(mixup_alpha=0.5, mixup_per_example=per_example)
    key = jax.random.key(11)
    out = augment_waveforms(key, batch, cfg)
    out_max = augment_waveforms(key, batch, dataclasses.replace(cfg, mixup_labels="max"))
    w, n, tags = np.asarray(batch["waveform"]), np.asarray(batch["length"]), np.asarray(batch["tags"])
    o, on = np.asarray(out["waveform"]), np.asarray(out["length"])
    np.testing.assert_array_equal(o, np.asarray(out_max["waveform"]))  # the rule only changes the tags
    lams, mixed = [], 0
    for i in range(len(n)):
        j, lam = _partner_and_lam(out["tags"], i)
        assert j == (i - 1) % len(n)  # the neighbour: every clip is mixed, and once a partner
        own = np.where(np.arange(w.shape[1]) < n[i], w[i], 0.0)
        other = np.where(np.arange(w.shape[1]) < n[j], w[j], 0.0)
        L = max(n[i], n[j])
        assert on[i] == L
        np.testing.assert_allclose(o[i, :L], lam * own[:L] + (1 - lam) * other[:L], rtol=1e-5, atol=1e-6)
        assert np.all(o[i, L:] == PAD)  # past the mixed length: padding as it was
        # label rules: convex weights sum to 1; max is the union of both clips' tags
        np.testing.assert_allclose(np.asarray(out["tags"][i]).sum(), 1.0, rtol=1e-6)
        np.testing.assert_array_equal(np.asarray(out_max["tags"][i]), np.maximum(tags[i], tags[j]))
        if j != i:
            mixed += 1
            lams.append(lam)
            assert 0.0 <= lam <= 1.0
    assert mixed == len(n)
    if not per_example:
        np.testing.assert_allclose(lams, lams[0], rtol=1e-6)
    assert np.isfinite(o).all()


def test_mixup_never_touches_padding_rows():
    batch = _batch(B=8)
    batch["valid"] = jnp.asarray([True, True, True, True, True, False, False, False])
    cfg = AugmentConfig(mixup_alpha=1.0, gain_db_min=-6, gain_db_max=6)
    for seed in range(5):
        out = augment_waveforms(jax.random.key(seed), batch, cfg)
        for k in ("waveform", "length", "tags", "valid"):
            np.testing.assert_array_equal(np.asarray(out[k][5:]), np.asarray(batch[k][5:]))
        assert not np.asarray(out["tags"][:5, 5:]).any()  # valid rows never mix with padding rows


def test_mixup_prob_and_extreme_alpha_no_nan():
    batch = _batch(B=8)
    batch["length"] = batch["length"].at[1].set(0)  # an empty clip in the batch
    for alpha in (1e-3, 0.01, 100.0):
        out = augment_waveforms(jax.random.key(0), batch, AugmentConfig(mixup_alpha=alpha, gain_db_min=-20,
                                                                         gain_db_max=20))
        assert all(bool(jnp.isfinite(v).all()) for k, v in out.items() if k != "valid")
        assert float(out["tags"].min()) >= 0 and float(out["tags"].max()) <= 1
    out = augment_waveforms(jax.random.key(0), batch, AugmentConfig(mixup_alpha=1.0, mixup_prob=0.0))
    assert _equal(out, batch)


def test_deterministic_jit_and_vmap():
    """The whole chain (gain, mixup, log-mel, SpecAugment) under jit: same key, same output; another
    key, another output; vmap over a leading axis (e.g. per device) equals per-slice calls."""
    cfg = AugmentConfig(gain_db_min=-6, gain_db_max=6, mixup_alpha=0.3, mixup_labels="max", time_masks=2,
                        time_mask_width=8, freq_masks=1, freq_mask_width=6)
    batches = [_batch(B=4, T=3200, K=5, seed=s) for s in range(2)]
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *batches)
    keys = jax.random.split(jax.random.key(5), 2)

    def chain(key, batch):
        k1, k2 = jax.random.split(key)
        b = augment_waveforms(k1, batch, cfg)
        feats, mask = log_mel(b["waveform"], "mel_db", b["length"])
        return augment_features(k2, feats, mask, cfg), mask, b

    one = jax.jit(chain)
    first = one(keys[0], batches[0])
    assert _equal(first, one(keys[0], batches[0]))
    other = one(keys[1], batches[0])
    assert not _equal(first[0], other[0]) and not _equal(first[2]["waveform"], other[2]["waveform"])
    vm = jax.jit(jax.vmap(chain))(keys, stacked)
    for s in range(2):
        ref = first if s == 0 else one(keys[s], batches[s])
        for a, b in zip(jax.tree.leaves(vm), jax.tree.leaves(ref)):
            np.testing.assert_allclose(np.asarray(a[s]), np.asarray(b), rtol=1e-5, atol=1e-4)
    assert bool(jnp.isfinite(vm[0]).all())
