"""The FLOP count behind the trainer's MFU: matrix products only, scans times their length,
activation recomputation not counted."""

import os
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from strongaudio_jax import config as config_lib
from strongaudio_jax.train import flops, step as step_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_dot_and_conv_counts():
    x, w = jnp.ones((8, 5, 64)), jnp.ones((64, 32))
    assert flops.matmul_flops(jax.make_jaxpr(lambda x, w: x @ w)(x, w)) == 2 * 8 * 5 * 64 * 32
    img, k = jnp.ones((2, 3, 16, 16)), jnp.ones((6, 3, 3, 3))  # NCHW, OIHW, 'SAME'
    conv = lambda img, k: jax.lax.conv_general_dilated(img, k, (1, 1), "SAME")
    assert flops.matmul_flops(jax.make_jaxpr(conv)(img, k)) == 2 * (2 * 6 * 16 * 16) * (3 * 3 * 3)
    grouped = lambda img, k: jax.lax.conv_general_dilated(img, k, (1, 1), "SAME",
                                                          feature_group_count=3)
    k1 = jnp.ones((6, 1, 3, 3))
    assert flops.matmul_flops(jax.make_jaxpr(grouped)(img, k1)) == 2 * (2 * 6 * 16 * 16) * 9


def test_scan_counts_every_iteration():
    w = jnp.ones((32, 32))
    body = lambda c, _: (jnp.tanh(c @ w), None)
    looped = lambda x: jax.lax.scan(body, x, None, length=5)[0]
    assert flops.matmul_flops(jax.make_jaxpr(looped)(jnp.ones((4, 32)))) == 5 * 2 * 4 * 32 * 32


def _step_flops(**model):
    cfg = config_lib.load(os.path.join(REPO, "configs", "mtc.py") + ":smoke")
    with cfg.unlocked():
        cfg.model.size = "ti"
        cfg.model.update(model)
    program = step_lib.build(cfg, 20)
    state = nn.meta.unbox(jax.eval_shape(program.init, jax.random.key(0)))
    tokens = jax.eval_shape(program.tokens, state.params["encoder"], program.batch_spec)[0]
    return program.model_flops(state, program.batch_spec), tokens.shape


def test_train_step_matches_the_closed_form_whatever_scan_or_remat():
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    from train_step import train_flops_per_sample  # the peer benchmark's own count

    plain, (batch, n_tokens, width) = _step_flops()
    depth = 12  # ViT-Ti
    expected = batch * train_flops_per_sample(depth, width, n_tokens, 4 * 64, 20)
    # The closed form also counts the patch embedding's input gradient, which the step never
    # computes (features need no gradient): a 0.1 % difference at this size.
    assert plain == pytest.approx(expected, rel=2e-3)
    for variant in (dict(scan_layers=True), dict(remat="full"),
                    dict(scan_layers=True, remat="dots")):
        assert _step_flops(**variant)[0] == pytest.approx(plain, rel=1e-9), variant
