"""Sharded forward and gradient equal the single-device result, for several mesh shapes; the
parameters land where the rules say (literal specs), and the config's sharding_rules change that."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from strongaudio_jax.config import ConfigError
from strongaudio_jax.models import vit, zipformer
from strongaudio_jax.parallel import mesh as mesh_lib
from strongaudio_jax.train import sharding_summary

from conftest import REPO

MESHES = [dict(data=8, fsdp=1, tensor=1), dict(data=2, fsdp=4, tensor=1),
          dict(data=2, fsdp=2, tensor=2), dict(data=1, fsdp=4, tensor=2)]
P = jax.sharding.PartitionSpec
# The first MLP kernel [embed, mlp] on each mesh: 'embed' on fsdp, 'mlp' on tensor, and a
# mesh axis of size 1 dropped (replicated).
MLP_IN_SPECS = {"8x1x1": P(None, None), "2x4x1": P("fsdp", None), "2x2x2": P("fsdp", "tensor"),
                "1x4x2": P("fsdp", "tensor")}


def _inputs(b=8, t=64, f=64):
    feats = jax.random.normal(jax.random.key(0), (b, t, f))
    lengths = jnp.array([64, 40, 64, 17, 52, 64, 33, 60])[:b]
    return feats, jnp.arange(t)[None] < lengths[:, None]


def _loss(model, params, feats, frame_mask):
    enc = model.apply({"params": params}, feats, frame_mask)
    return (enc.clip() ** 2).sum() + (enc.tokens[:, :4] * enc.mask[:, :4, None]).mean()


_SINGLE = {}  # model -> single-device (loss, grads), computed once per model


def _single_and_sharded(model, mesh_shape):
    feats, frame_mask = _inputs()
    boxed = jax.jit(model.init)(jax.random.key(1), feats, frame_mask)["params"]
    params = nn.meta.unbox(boxed)
    f = jax.value_and_grad(lambda p, x, m: _loss(model, p, x, m))
    if model not in _SINGLE:
        _SINGLE[model] = jax.jit(f)(*jax.device_put((params, feats, frame_mask), jax.devices()[0]))
    single = _SINGLE[model]

    mesh = mesh_lib.make_mesh(mesh_shape)
    p_sh = mesh_lib.state_shardings(nn.get_partition_spec(boxed), params, mesh)
    x_sh, m_sh = mesh_lib.batch_sharding(mesh, 3), mesh_lib.batch_sharding(mesh, 2)
    args = jax.device_put((params, feats, frame_mask), (p_sh, x_sh, m_sh))
    sharded = jax.jit(mesh_lib.on_mesh(mesh, f), in_shardings=(p_sh, x_sh, m_sh))(*args)
    return single, sharded, p_sh


def _assert_close(single, sharded, rtol, atol):
    (l1, g1), (l2, g2) = single, sharded
    np.testing.assert_allclose(l2, l1, rtol=rtol, atol=atol)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=rtol, atol=atol,
                                   err_msg=jax.tree_util.keystr(path))


def _assert_close_bf16(single, sharded, tol):
    """bf16 sums in another order differ elementwise by a few ulps of the largest term, so
    compare each gradient as a whole: |sharded - single| / |single| <= tol (a gradient that is
    zero in exact arithmetic, e.g. of the key bias, is compared to 1% of the total norm)."""
    (l1, g1), (l2, g2) = single, sharded
    np.testing.assert_allclose(l2, l1, rtol=tol)
    floor = 0.01 * float(np.sqrt(sum(np.sum(np.square(np.asarray(a, np.float64)))
                                     for a in jax.tree.leaves(g1))))
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(g1), jax.tree.leaves(g2)):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        err = np.linalg.norm(b - a) / max(np.linalg.norm(a), floor)
        assert err <= tol, f"{jax.tree_util.keystr(path)}: relative error {err:.3g} > {tol}"


VIT = vit.build(dict(size="mu", patch_time=4, patch_freq=32, max_frames=64, num_mels=64))


def _mesh_id(m):
    return "x".join(str(v) for v in m.values())


@pytest.mark.parametrize("mesh_shape", MESHES, ids=_mesh_id)
def test_vit_sharded_equals_single_device(mesh_shape):
    model = VIT
    single, sharded, p_sh = _single_and_sharded(model, mesh_shape)
    _assert_close(single, sharded, rtol=2e-5, atol=2e-6)
    # The parameters really are split where the mesh says so (not silently replicated).
    assert p_sh["block0"]["mlp_in"]["kernel"].spec == MLP_IN_SPECS[_mesh_id(mesh_shape)]
    if mesh_shape["tensor"] > 1:  # query kernel [embed, heads, kv]
        assert p_sh["block0"]["attn"]["query"]["kernel"].spec == P("fsdp", "tensor", None)


@pytest.mark.slow
def test_vit_scan_remat_bf16_sharded_equals_single_device():
    model = vit.build(dict(size="mu", patch_time=4, patch_freq=32, max_frames=64, num_mels=64,
                           scan_layers=True, remat="dots", dtype="bfloat16", layer_scale=0.1))
    single, sharded, p_sh = _single_and_sharded(model, MESHES[2])
    _assert_close_bf16(single, sharded, tol=5e-2)  # bf16: 8-bit mantissa, sums of 256 terms
    assert tuple(p_sh["blocks"]["mlp_in"]["kernel"].spec) == (None, "fsdp", "tensor")  # layers, embed, mlp


@pytest.mark.slow
def test_zipformer_sharded_equals_single_device():
    model = zipformer.build(dict(size="tiny", num_mels=64))
    single, sharded, _ = _single_and_sharded(model, MESHES[2])
    _assert_close(single, sharded, rtol=1e-4, atol=1e-5)


def _specs(overrides=()):
    summary = sharding_summary.golden_summary("vit_b_mtc", REPO / "configs", tuple(overrides))
    return {name: e["spec"] for name, e in summary["params"].items()}


def test_config_sharding_rules_change_the_parameter_sharding():
    """A layout is a config override: the same config, other rules, other parameter specs."""
    default = _specs()
    assert default["encoder/blocks/mlp_in/kernel"] == [None, "fsdp", "tensor"]
    assert default["encoder/blocks/attn/query/kernel"] == [None, "fsdp", "tensor", None]
    changed = _specs(["sharding_rules.mlp=()", "sharding_rules.heads=('fsdp',)",
                      "sharding_rules.embed=('tensor',)"])
    assert changed["encoder/blocks/mlp_in/kernel"] == [None, "tensor", None]
    # 'embed' took tensor first, so 'heads' gets fsdp
    assert changed["encoder/blocks/attn/query/kernel"] == [None, "tensor", "fsdp", None]
    assert changed["encoder/blocks/mlp_out/kernel"] == [None, None, "tensor"]  # [mlp, embed]


def test_config_sharding_rules_pin_activations():
    """`constrain` inside the step follows the rules given to on_mesh, not the default table."""
    mesh = mesh_lib.make_mesh(dict(data=1, fsdp=4, tensor=2))
    rules = mesh_lib.rules_from_config({**mesh_lib.default_rules(), "embed": ("tensor",)})
    f = lambda x: mesh_lib.constrain(x * 2, ("batch", "length", "embed"))
    x = jnp.ones((8, 4, 16))
    for r, embed in [(None, None), (rules, "tensor")]:
        out = jax.jit(mesh_lib.on_mesh(mesh, f, r))(x)
        expected = jax.sharding.NamedSharding(mesh, P("fsdp", None, embed))
        assert out.sharding.is_equivalent_to(expected, x.ndim), (r is None, out.sharding)


def test_unknown_mesh_axis_in_a_rule_is_a_config_error():
    with pytest.raises(ConfigError, match="sharding_rules.mlp .* names mesh axis 'model'"):
        _specs(["sharding_rules.mlp=('model',)"])
