import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from strongaudio_jax.config import ConfigError
from strongaudio_jax.train import optimizer


def _cfg(**kw):
    base = dict(name="adamw", lr=1e-3, schedule="cosine", warmup_steps=10, end_lr_frac=0.02,
                weight_decay=0.1, b1=0.9, b2=0.98, clip_norm=1.0)
    return ml_collections.ConfigDict({**base, **kw})


@pytest.mark.parametrize("schedule,at50,at99", [("cosine", 5.95e-4, 2.03e-5),
                                                 ("rsqrt", 1e-3 * np.sqrt(10 / 50), 1e-3 * np.sqrt(10 / 99)),
                                                 ("constant", 1e-3, 1e-3)])
def test_schedules_warm_up_then_decay(schedule, at50, at99):
    lr = optimizer.schedule(_cfg(schedule=schedule), 100)
    assert float(lr(0)) == 0.0 and float(lr(5)) == pytest.approx(5e-4)
    assert float(lr(10)) == pytest.approx(1e-3)
    assert float(lr(50)) == pytest.approx(at50, rel=1e-3)
    assert float(lr(99)) == pytest.approx(at99, rel=1e-3)


@pytest.mark.parametrize("name", ["adamw", "lion", "adafactor"])
def test_weight_decay_spares_vectors(name):
    tx, _ = optimizer.make(_cfg(name=name, lr=1.0, schedule="constant", warmup_steps=0), 10)
    params = {"kernel": jnp.ones((4, 4)), "bias": jnp.ones(4)}
    zeros = {k: jnp.zeros_like(v) for k, v in params.items()}
    updates, _ = tx.update(zeros, tx.init(params), params)  # zero gradient: only decay moves
    assert np.all(np.asarray(updates["bias"]) == 0)
    assert np.all(np.asarray(updates["kernel"]) < 0)


def test_unknown_names_are_config_errors():
    with pytest.raises(ConfigError, match="optimizer.name='sgdx'"):
        optimizer.make(_cfg(name="sgdx"), 10)
    with pytest.raises(ConfigError, match="optimizer.schedule='linear'"):
        optimizer.make(_cfg(schedule="linear"), 10)


# ------------------------------------------------ icefall's Eden and ScaledAdam (the reference's)


def test_eden_schedule_by_hand():
    """lr = base * ((b^2 + B^2) / B^2)^-1/4 * ((e^2 + E^2) / E^2)^-1/4 * warmup, e = b / steps
    per epoch, warmup 0.5 -> 1 over 500 steps (the reference: 0.045, 7500, 3.5, 10000)."""
    lr = optimizer.schedule(_cfg(lr=0.045, schedule="eden", warmup_steps=500, lr_batches=7500,
                                 lr_epochs=3.5, steps_per_epoch=10000), 100_000)
    assert float(lr(0)) == pytest.approx(0.0225)  # warmup starts at half
    b = 250  # e = 0.025, warmup 0.75
    assert float(lr(b)) == pytest.approx(
        0.045 * ((b**2 + 7500**2) / 7500**2) ** -0.25 * ((0.025**2 + 3.5**2) / 3.5**2) ** -0.25 * 0.75,
        rel=1e-6)
    # b = 7500: 2^-1/4 from the batch term, e = 0.75
    assert float(lr(7500)) == pytest.approx(0.045 * 2 ** -0.25 * ((0.75**2 + 3.5**2) / 3.5**2) ** -0.25,
                                            rel=1e-6)
    # b = 35000: e = 3.5 = lr_epochs, so the epoch term is 2^-1/4 too
    assert float(lr(35_000)) == pytest.approx(
        0.045 * ((35_000**2 + 7500**2) / 7500**2) ** -0.25 * 2 ** -0.25, rel=1e-6)


def _scaled_adam(**kw):
    return optimizer.scaled_adam(0.1, **{"clipping_scale": None, **kw})


def test_scaled_adam_steps_by_hand():
    """Two steps of a 2-element tensor and a scalar, worked by hand from icefall's formulas."""
    tx = _scaled_adam()
    params = {"w": jnp.array([3.0, 4.0]), "s": jnp.array(2.0), "big": jnp.array(12.0)}
    grads = {"w": jnp.array([1.0, -2.0]), "s": jnp.array(0.5), "big": jnp.array(0.5)}
    state = tx.init(params)
    u0, state = tx.update(grads, state, params)
    # tensor: second moment / its bias correction = g^2 exactly, so the step is
    # -lr (1 - b1) rms(w) sign(g) with rms(w) = sqrt((9 + 16) / 2)
    d0 = -0.1 * 0.1 * np.sqrt(12.5) * np.array([1.0, -1.0])
    np.testing.assert_allclose(u0["w"], d0, rtol=1e-6)
    # scalar: Adam at lr * scalar_lr_scale: -0.1 * 0.1 * (1 - 0.9) * g / |g|
    np.testing.assert_allclose(u0["s"], -0.001, rtol=1e-5)
    np.testing.assert_allclose(u0["big"], (10.0 - 12.0) - 0.001, rtol=1e-6)  # clamped to 10 first
    params = optax.apply_updates(params, u0)
    u1, state = tx.update(grads, state, params)
    # momentum: delta = 0.9 delta + the same normalised step (the moment is g^2 again);
    # rms(w) is not refreshed until step 3 (size_update_period 4)
    np.testing.assert_allclose(u1["w"], 1.9 * d0, rtol=1e-5)
    np.testing.assert_allclose(u1["s"], -0.0019, rtol=1e-4)
    assert int(state.step) == 2


def test_scaled_adam_learns_the_scale_every_size_update_period():
    """At step 3 (period 4) the tensor's rms is refreshed and its scale moves against
    sum(p * g): a gradient along p shrinks the tensor beyond Adam's own step."""
    params = {"w": jnp.array([1.0, 1.0, 1.0, 1.0])}
    grads = {"w": jnp.array([1.0, 1.0, 1.0, 1.0])}  # = p: sum(p * g) = 4 each step
    tx = _scaled_adam()
    state = tx.init(params)
    moves = []
    for _ in range(4):
        u, state = tx.update(grads, state, params)
        moves.append(float(u["w"][0]))
        params = optax.apply_updates(params, u)
    # steps 0-2 by hand: delta_k = 0.9 delta_{k-1} - 0.01 * rms (rms(w) = 1, g / sqrt(g^2) = 1)
    np.testing.assert_allclose(moves[:3], [-0.01, -0.019, -0.0271], rtol=1e-5)
    # step 3: rms refreshed to the current |w| = 1 - 0.0561 = 0.9439; the scale gradients
    # were sum(p_k * g) = 4 p_k: 4, 4 * 0.99, 4 * 0.971, 4 * 0.9439; with
    # beta2_corr = 0.98^4 the size step is -lr * 0.1 * sqrt(1 - beta2_corr) * sum / sqrt(avg),
    # avg = (1 - beta2_corr) * mean(sg^2), so = -0.01 * sum(sg) / sqrt(mean(sg^2))
    w = 0.9439
    sg = 4 * np.array([1.0, 0.99, 0.971, w])
    scale_step = -0.01 * sg.sum() / np.sqrt((sg**2).mean())
    expected = 0.9 * -0.0271 + 0.1 * scale_step * w - 0.01 * w
    np.testing.assert_allclose(moves[3], expected, rtol=1e-4)


def test_scaled_adam_clips_to_twice_the_median_norm():
    """From step 10 on (period 100) a gradient far above clipping_scale x the median of the
    recent RMS-scaled norms (x2 at the irregular re-estimates) is scaled down to it."""
    params = {"w": jnp.array([2.0, 2.0])}  # rms 2: the scaled norm of g is 2 |g|
    tx = optimizer.scaled_adam(0.0, clipping_scale=2.0)  # lr 0: only the state moves
    state = tx.init(params)
    for _ in range(10):
        _, state = tx.update({"w": jnp.array([3.0, 4.0])}, state, params)  # norm 2 * 5 = 10
    assert float(state.threshold) < 0  # not estimated before step 10
    _, state = tx.update({"w": jnp.array([300.0, 400.0])}, state, params)  # step 10
    # median of the last 10 norms (nine 10s and this 1000) is 10: threshold 2 * 10 * 2 = 40
    assert float(state.threshold) == pytest.approx(40.0)
    # the second moment saw the clipped gradient: 40 / 1000 of (300, 400) = (12, 16)
    tx_free = optimizer.scaled_adam(0.0, clipping_scale=None)
    s2 = tx_free.init(params)
    for g in [jnp.array([3.0, 4.0])] * 10 + [jnp.array([12.0, 16.0])]:
        _, s2 = tx_free.update({"w": g}, s2, params)
    np.testing.assert_allclose(state.exp_avg_sq["w"], s2.exp_avg_sq["w"], rtol=1e-5)


def test_scaled_adam_from_config_trains_a_model_state():
    tx, lr = optimizer.make(_cfg(name="scaled_adam", lr=0.045, schedule="eden", warmup_steps=500,
                                 clip_norm=0.0, weight_decay=0.0), 1000)
    params = {"kernel": jnp.ones((3, 4)), "bias": jnp.zeros(4), "scale": jnp.ones(())}
    loss = lambda p: jnp.sum((p["kernel"] * 2.0 - 1.0) ** 2) + jnp.sum((p["bias"] - 0.5) ** 2)
    state = tx.init(params)
    first = float(loss(params))
    step = jax.jit(lambda p, s: tx.update(jax.grad(loss)(p), s, p))
    for _ in range(50):
        u, state = step(params, state)
        params = optax.apply_updates(params, u)
    assert float(loss(params)) < 0.5 * first and float(lr(0)) == pytest.approx(0.0225)
