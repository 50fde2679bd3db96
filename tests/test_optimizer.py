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
