"""Pod readiness without a pod: compile the full train step for a TPU topology on a CPU host.

libtpu can describe a TPU slice it is not running on (`jax.experimental.topologies`): its
compile-only devices let XLA:TPU partition and compile the very program `strongaudio train`
would run there (train/step.py's Program on the config's mesh), with abstract inputs. Nothing
executes; the compiled program reports its memory per device, which must fit the chip's HBM.

    strongaudio compile-check --config configs/vit_b_mtc.py:v5p-64
    strongaudio compile-check --config configs/vit_l_mtc.py:v5e-256 --topology v5e-256

Needs libtpu (`pip install -e '.[tpu]'`, or TPU_LIBRARY_PATH=/path/to/libtpu.so).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time

import flax.linen as nn
import jax

from strongaudio_jax.config import ConfigError
from strongaudio_jax.parallel import mesh as mesh_lib
from strongaudio_jax.train import step as step_lib

# Cloud TPU slice names -> libtpu topology. v4 / v5p names count TensorCores (2 per chip),
# v5e / v6e names count chips. Any "vX:AxB[xC]" libtpu topology string is accepted as well.
TOPOLOGIES = {
    "v4-8": "v4:2x2x1", "v4-32": "v4:2x2x4", "v4-128": "v4:4x4x4",
    "v5p-8": "v5p:2x2x1", "v5p-64": "v5p:4x4x2", "v5p-128": "v5p:4x4x4", "v5p-256": "v5p:4x4x8",
    "v5e-8": "v5e:2x4", "v5e-16": "v5e:4x4", "v5e-64": "v5e:8x8", "v5e-256": "v5e:16x16",
    "v6e-8": "v6e:2x4", "v6e-64": "v6e:8x8", "v6e-256": "v6e:16x16",
}
HBM_GIB_PER_CHIP = {"TPU v4": 32, "TPU v5 lite": 16, "TPU v5": 95, "TPU v6 lite": 32}
GIB = 2 ** 30


class LibtpuMissingError(RuntimeError):
    """libtpu is not installed: compile-check cannot describe a TPU."""


@dataclasses.dataclass
class Report:
    topology: str
    device_kind: str
    devices: int
    mesh: dict
    params: int
    arguments: int  # bytes per device: state + batch
    outputs: int
    aliased: int  # outputs written in place of donated arguments
    temporaries: int
    code: int
    hbm: int  # bytes per device
    compile_s: float
    compiler_error: str = ""  # XLA refused: it would not fit (RESOURCE_EXHAUSTED)
    arguments_label: str = "arguments (state + batch)"
    advice: str = ("lower the per-chip batch, set model.remat (e.g. full), train.grad_accum, "
                   "or a larger fsdp axis")

    @property
    def peak(self) -> int:
        return self.arguments + self.outputs - self.aliased + self.temporaries + self.code

    @property
    def fits(self) -> bool:
        return self.peak <= self.hbm and not self.compiler_error

    def table(self) -> str:
        if self.compiler_error:
            return (f"topology {self.topology}: {self.devices} x {self.device_kind}, mesh "
                    f"{self.mesh}, {self.params / 1e6:.1f}M parameters\nDOES NOT FIT: XLA "
                    f"refused to compile it: {self.compiler_error}\n{self.advice}")
        g = lambda b: f"{b / GIB:8.2f} GiB"
        rows = [(self.arguments_label, self.arguments), ("outputs", self.outputs),
                ("  of which aliased to arguments", self.aliased),
                ("temporaries", self.temporaries), ("generated code", self.code),
                ("peak (arg + out - aliased + temp + code)", self.peak),
                (f"HBM of one {self.device_kind} device", self.hbm)]
        lines = [f"topology {self.topology}: {self.devices} x {self.device_kind}, mesh {self.mesh}, "
                 f"{self.params / 1e6:.1f}M parameters, compiled in {self.compile_s:.0f} s",
                 "per-device memory:"]
        lines += [f"  {name:<42}{g(b)}" for name, b in rows]
        verdict = "fits" if self.fits else "DOES NOT FIT"
        lines.append(f"{verdict}: {self.peak / self.hbm:.0%} of HBM"
                     + ("" if self.fits else f"; {self.advice}"))
        return "\n".join(lines)


def libtpu_available() -> bool:
    import importlib.util
    path = os.environ.get("TPU_LIBRARY_PATH")
    return bool(path and os.path.isfile(path)) or importlib.util.find_spec("libtpu") is not None


def topology_devices(topology: str) -> list:
    """Compile-only devices of a TPU slice, e.g. 'v5p-64' or 'v5e:16x16'."""
    name = TOPOLOGIES.get(topology, topology)
    if ":" not in name:
        raise ConfigError(f"unknown TPU topology {topology!r}; use one of {sorted(TOPOLOGIES)} "
                          "or a libtpu topology such as 'v5p:4x4x4'")
    if not libtpu_available():
        raise LibtpuMissingError("compile-check needs libtpu: pip install -e '.[tpu]' (or set "
                                 "TPU_LIBRARY_PATH to a libtpu.so)")
    # No TPU here: skip the metadata-server queries, and let several processes (test workers)
    # load libtpu at once; nothing runs on a device.
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    from jax.experimental import topologies
    try:
        return list(topologies.get_topology_desc(name, "tpu").devices)
    except Exception as e:  # libtpu reports a bad topology as a generic runtime error
        raise ConfigError(f"libtpu cannot describe topology {name!r}: {e}") from e


def hbm_per_device(devices) -> int:
    kind = devices[0].device_kind
    if kind not in HBM_GIB_PER_CHIP:
        raise ConfigError(f"no HBM size known for {kind!r}; add it to HBM_GIB_PER_CHIP")
    per_chip = len({tuple(d.coords) for d in devices})
    return HBM_GIB_PER_CHIP[kind] * GIB * per_chip // len(devices)  # v4 exposes 2 cores per chip


def num_classes_of(cfg) -> int:
    """The tag vocabulary size, from the config alone (compile-check reads no data)."""
    if cfg.data.get("vocab_file"):
        from strongaudio_jax.data import pipeline
        try:
            return len(pipeline.load_vocabulary(cfg.data.vocab_file))
        except (OSError, ValueError) as e:
            raise ConfigError(f"data.vocab_file: {e}") from e
    n = cfg.get("compile_check", {}).get("num_classes")
    if not n:
        raise ConfigError("the config gives no vocabulary size: set data.vocab_file (a UTS "
                          "label_K.json) or compile_check.num_classes, or pass --num-classes")
    return int(n)


def compile_for(cfg, topology: str, num_classes: int) -> Report:
    """Lowers and compiles the config's train step for `topology`; memory per device."""
    devices = topology_devices(topology)
    try:
        mesh = mesh_lib.make_mesh(cfg.mesh, devices)
    except ValueError as e:
        raise ConfigError(f"mesh for {topology}: {e}") from e
    dp = mesh.shape["data"] * mesh.shape["fsdp"]
    if cfg.data.batch_size % dp:
        raise ConfigError(f"data.batch_size={cfg.data.batch_size} is not divisible by the "
                          f"{dp} data-parallel devices of mesh {dict(mesh.shape)} on {topology}")
    program = step_lib.build(cfg, num_classes=num_classes)
    t0 = time.perf_counter()
    _, train_step, state_sh = program.compile(mesh)  # what `strongaudio train` runs
    _, batch_sh = program.shardings(mesh)
    state = jax.eval_shape(lambda: nn.meta.unbox(program.init(jax.random.key(0))))
    as_input = lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s)
    state_in = jax.tree.map(as_input, state, state_sh)
    batch_in = {k: as_input(v, batch_sh[k]) for k, v in program.batch_spec.items()}
    lowered = train_step.lower(state_in, batch_in)
    t1 = time.perf_counter()
    report = functools.partial(
        Report, topology=topology, device_kind=devices[0].device_kind, devices=len(devices),
        mesh=dict(mesh.shape), params=sum(x.size for x in jax.tree.leaves(state.params)),
        hbm=hbm_per_device(devices))
    try:
        compiled = lowered.compile()
    except jax.errors.JaxRuntimeError as e:  # XLA:TPU refuses programs that exceed HBM
        if "RESOURCE_EXHAUSTED" not in str(e):
            raise
        return report(arguments=0, outputs=0, aliased=0, temporaries=0, code=0,
                      compile_s=time.perf_counter() - t0, compiler_error=str(e).strip())
    seconds = time.perf_counter() - t0
    if os.environ.get("STRONGAUDIO_DEBUG"):
        print(f"lowered in {t1 - t0:.1f} s, compiled in {time.perf_counter() - t1:.1f} s")
    mem = compiled.memory_analysis()
    return report(arguments=mem.argument_size_in_bytes, outputs=mem.output_size_in_bytes,
                  aliased=mem.alias_size_in_bytes, temporaries=mem.temp_size_in_bytes,
                  code=mem.generated_code_size_in_bytes, compile_s=seconds)


def main(cfg, topologies: list[str], num_classes: int | None = None) -> int:
    """Compiles for each topology and prints the tables; 1 if any does not fit, else 0."""
    topologies = topologies or [cfg.get("compile_check", {}).get("topology", "")]
    if not topologies[0]:
        raise ConfigError("no topology: pass --topology (e.g. v5p-64) or set "
                          "compile_check.topology in the config")
    n = num_classes or num_classes_of(cfg)
    ok = True
    for topology in topologies:
        report = compile_for(cfg, topology, n)
        print(report.table(), flush=True)
        ok &= report.fits
    return 0 if ok else 1
