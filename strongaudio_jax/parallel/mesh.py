"""One mesh built from the config, one table of logical-axis rules.

Models name their parameter and activation axes logically ('batch', 'embed', 'mlp', ...);
the rules map those names onto mesh axes. `LOGICAL_RULES` is the default table; a config's
`sharding_rules` (after MaxText's logical_axis_rules, big_vision's sharding_rules) replaces it,
so another layout is a config override, e.g. `sharding_rules.mlp=()` (replicate the MLP hidden
layer) or `"sharding_rules.embed=('fsdp','tensor')"`. Changing how a model is sharded is
changing the rules or the mesh shape in the config, never the model code.

- data: pure data parallelism (parameters replicated).
- fsdp: data parallelism with parameters and optimizer state sharded along 'embed' (ZeRO-3);
  XLA all-gathers each layer's weights when it is used.
- tensor: Megatron-style tensor parallelism: attention heads and the MLP hidden layer are
  split, the residual stream is replicated.
Activations use the same names: a mesh axis is used once per array, so the activations'
'embed' stays replicated where 'batch' already took 'fsdp'.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")

# logical axis name -> mesh axis (or tuple of mesh axes, or None = replicated).
LOGICAL_RULES: tuple[tuple[str, object], ...] = (
    ("batch", ("data", "fsdp")),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv", None),
    ("vocab", "tensor"),
    ("classes", "tensor"),
    ("patch", None),
    ("length", None),
    ("freq", None),
    ("layers", None),  # the stacked axis of scanned layers
    ("conv", None),  # convolution kernel taps
)
Rules = tuple[tuple[str, tuple[str, ...]], ...]  # (logical name, mesh axes); () = replicated


def _axes(target) -> tuple[str, ...]:
    return (target,) if isinstance(target, str) else tuple(target or ())


def default_rules() -> dict[str, tuple[str, ...]]:
    """`LOGICAL_RULES` as a config block: {logical name: tuple of mesh axes}, () = replicated."""
    return {name: _axes(target) for name, target in LOGICAL_RULES}


def rules_from_config(rules: Mapping | None) -> Rules:
    """A config's `sharding_rules` ({logical name: mesh axis, tuple of them, or None}) as a rules
    table; None or empty gives the default table. Mesh axis names are checked."""
    if not rules:
        rules = default_rules()
    out = []
    for name, target in dict(rules).items():
        axes = _axes(target)
        unknown = [a for a in axes if a not in MESH_AXES]
        if unknown:
            raise ValueError(f"sharding_rules.{name} = {target!r} names mesh axis {unknown[0]!r}; "
                             f"the mesh axes are {MESH_AXES} (use () to replicate)")
        if len(set(axes)) != len(axes):
            raise ValueError(f"sharding_rules.{name} = {target!r} names a mesh axis twice")
        out.append((name, axes))
    return tuple(out)


DEFAULT_RULES: Rules = rules_from_config(None)


def make_mesh(shape: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Builds the (data, fsdp, tensor) mesh; one size may be -1 to take the remaining devices."""
    devices = list(devices if devices is not None else jax.devices())
    unknown = set(shape) - set(MESH_AXES)
    if unknown:
        raise ValueError(f"mesh axes {sorted(unknown)} are not known; use {MESH_AXES}")
    sizes = [int(shape.get(a, 1)) for a in MESH_AXES]
    if sizes.count(-1) > 1:
        raise ValueError(f"mesh {dict(shape)}: at most one axis may be -1")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if len(devices) % known:
            raise ValueError(f"mesh {dict(shape)}: {len(devices)} devices are not divisible by {known}")
        sizes[sizes.index(-1)] = len(devices) // known
    if math.prod(sizes) != len(devices):
        raise ValueError(f"mesh {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} devices, "
                         f"but {len(devices)} are available; set one axis to -1 to fill")
    try:  # physical order (TPU torus, NVLink islands) where JAX knows it
        grid = mesh_utils.create_device_mesh(sizes, devices, allow_split_physical_axes=True)
    except (ValueError, NotImplementedError, AssertionError):
        grid = np.asarray(devices).reshape(sizes)
    return Mesh(grid, MESH_AXES)


def logical_to_spec(logical: Sequence[str | None], mesh: Mesh,
                    shape: Sequence[int] | None = None, rules: Rules | None = None) -> P:
    """PartitionSpec for logical axis names under `rules` (default: those of the activation
    context being traced, else the default table). A mesh axis of size 1, already used, or
    (when `shape` is given) not dividing that dimension is dropped: that dimension is
    replicated. A name without a rule is replicated."""
    table = dict(rules if rules is not None else current_rules())
    used: set[str] = set()
    out = []
    for i, name in enumerate(logical):
        axes = table.get(name, ()) if name is not None else ()
        axes = tuple(a for a in axes if a not in used and mesh.shape[a] > 1)
        if shape is not None:
            while axes and shape[i] % math.prod(mesh.shape[a] for a in axes):
                axes = axes[:-1]
        used.update(axes)
        out.append(axes[0] if len(axes) == 1 else (axes or None))
    return P(*out)


_ACTIVE: contextvars.ContextVar[tuple[Mesh, Rules] | None] = contextvars.ContextVar(
    "activation_mesh", default=None)


@contextlib.contextmanager
def activation_mesh(mesh: Mesh, rules: Rules | None = None):
    """Within this context (at trace time) `constrain` pins activations onto `mesh` by `rules`
    (default: the default table)."""
    token = _ACTIVE.set((mesh, rules if rules is not None else DEFAULT_RULES))
    try:
        yield mesh
    finally:
        _ACTIVE.reset(token)


def on_mesh(mesh: Mesh, fn, rules: Rules | None = None):
    """`fn` traced with `mesh` (and `rules`) as the activation mesh (wrap before jax.jit)."""
    @functools.wraps(fn)
    def traced(*args, **kwargs):
        with activation_mesh(mesh, rules):
            return fn(*args, **kwargs)
    return traced


def current_mesh() -> Mesh | None:
    """The activation mesh being traced for (None outside `activation_mesh`)."""
    active = _ACTIVE.get()
    return active[0] if active else None


def current_rules() -> Rules:
    """The rules of the activation context being traced, else the default table."""
    active = _ACTIVE.get()
    return active[1] if active else DEFAULT_RULES


def constrain(x: jax.Array, logical: Sequence[str | None]) -> jax.Array:
    """Sharding constraint on an activation by logical axis names; a no-op outside
    `activation_mesh` (single device, eager use, tests of the model alone)."""
    mesh = current_mesh()
    if mesh is None or mesh.size == 1:
        return x
    return jax.lax.with_sharding_constraint(
        x, NamedSharding(mesh, logical_to_spec(logical, mesh, x.shape)))


def state_shardings(logical_specs, abstract_state, mesh: Mesh, rules: Rules | None = None):
    """NamedShardings for a state tree from its logical PartitionSpecs and shapes."""
    return jax.tree.map(
        lambda spec, x: NamedSharding(mesh, logical_to_spec(tuple(spec), mesh, x.shape, rules)),
        logical_specs, abstract_state, is_leaf=lambda x: isinstance(x, P))


def batch_sharding(mesh: Mesh, ndim: int, rules: Rules | None = None) -> NamedSharding:
    """Leading axis by the 'batch' rule (every data-parallel mesh axis), the rest replicated."""
    return NamedSharding(mesh, logical_to_spec(["batch"] + [None] * (ndim - 1), mesh, None, rules))


def global_batch(local: Mapping[str, np.ndarray], mesh: Mesh,
                 rules: Rules | None = None) -> dict[str, jax.Array]:
    """Places this host's part of the batch as global arrays sharded along the batch axis.

    An int16 waveform (what the input pipeline ships: half the bytes of float32) travels as
    int16 and becomes float32 = int16 / 32768 on the devices, the values soundfile gives.
    The input arrays may be views into the pipeline's reused shared-memory slots: on CPU, where
    a device array may alias host memory, they are copied first; accelerators copy anyway.
    """
    cpu = mesh.devices.flat[0].platform == "cpu"
    out = {}
    for k, v in local.items():
        v = np.array(v) if cpu else np.asarray(v)
        sharding = batch_sharding(mesh, v.ndim, rules)
        out[k] = jax.make_array_from_process_local_data(sharding, v)
        if k == "waveform" and v.dtype == np.int16:
            out[k] = _int16_to_float(sharding)(out[k])
    return out


@functools.lru_cache(maxsize=None)
def _int16_to_float(sharding: NamedSharding):
    return jax.jit(lambda w: w.astype(jnp.float32) * (1.0 / 32768.0), out_shardings=sharding)
