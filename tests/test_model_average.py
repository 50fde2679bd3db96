"""icefall's model averaging (train.average_period): the kept parameters are the mean of the
states after every period-th step, as update_averaged_model computes it."""

import jax
import numpy as np
import pytest

from strongaudio_jax import config
from strongaudio_jax.config import ConfigError
from strongaudio_jax.parallel import mesh as mesh_lib
from strongaudio_jax.train import step as step_lib
from tests.conftest import REPO


def _cfg(*overrides):
    return config.load(f"{REPO}/configs/mtc.py:smoke", ["data.batch_size=4", "data.clip_seconds=0.25",
                                                        *overrides])


def test_average_is_the_mean_of_every_period_th_state():
    program = step_lib.build(_cfg("train.average_period=2"), num_classes=6)
    mesh = mesh_lib.make_mesh(dict(data=1), jax.devices()[:1])
    init, train_step, _ = program.compile(mesh)
    state = init(jax.random.key(0))
    rng = np.random.default_rng(0)
    kept = {}
    for step in range(1, 6):
        batch = {"waveform": (0.1 * rng.standard_normal((4, 4000))).astype(np.float32),
                 "length": np.full(4, 4000, np.int32),
                 "tags": (rng.random((4, 6)) < 0.3).astype(np.float32), "valid": np.ones(4, bool)}
        state, _ = train_step(state, batch)
        kept[step] = (jax.device_get(state.params), jax.device_get(state.ema_params))
    leaves = lambda tree: [np.asarray(x) for x in jax.tree.leaves(tree)]
    for got, want in zip(leaves(kept[2][1]), leaves(kept[2][0])):  # step 2: weight 2/2 = 1
        np.testing.assert_array_equal(got, want)
    for got, want in zip(leaves(kept[3][1]), leaves(kept[2][0])):  # step 3: unchanged
        np.testing.assert_array_equal(got, want)
    for got, p2, p4 in zip(leaves(kept[5][1]), leaves(kept[2][0]), leaves(kept[4][0])):
        np.testing.assert_allclose(got, (p2 + p4) / 2, rtol=1e-6, atol=1e-7)  # 1/2 p2 + 2/4 p4
    assert not all(np.array_equal(a, b) for a, b in zip(leaves(kept[2][0]), leaves(kept[4][0])))


def test_average_and_ema_together_is_a_config_error():
    with pytest.raises(ConfigError, match="ema_decay and train.average_period"):
        step_lib.build(_cfg("train.average_period=2", "train.ema_decay=0.9"), num_classes=6)
