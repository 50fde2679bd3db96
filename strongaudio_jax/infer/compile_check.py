"""Pod readiness of the inference jobs without a pod: compile `strongaudio tag` / `strongaudio
caption`'s device program for a TPU topology on a CPU host (train/compile_check.py does the same
for the train step, and this module reuses its topologies, HBM table and report).

The jobs run one mesh per host, over that host's chips (infer/jobs.py: hosts label disjoint
shards independently), so what is compiled is one host's program on the devices of the
topology's first host, with the shardings the job uses: the tagger's forward (frontend,
encoder, MTC head, sigmoid) or the captioner's whole decode (encoder, prefill, decoding loop
with its KV cache, for decode.strategy), once per bucket shape, as the job compiles them.

    strongaudio compile-check --config configs/tag.py:v5p-64
    strongaudio compile-check --config configs/caption.py:v5e-256 decode.strategy=beam

The model: model.path's training config when model.path is set (a training work dir or an
export directory, as the job loads it), else the training config named by
compile_check.model_config (the pre-training config of the same target), with
compile_check.num_classes tags when that config gives no vocabulary. Nothing is read but
configs; the parameters are abstract.
"""

from __future__ import annotations

import functools
import os
import time

import flax.linen as nn
import jax
import numpy as np

from strongaudio_jax import config as config_lib
from strongaudio_jax.config import ConfigError
from strongaudio_jax.data import storage
from strongaudio_jax.infer import buckets as buckets_lib, captioner, decoding, model as model_lib, tagger
from strongaudio_jax.parallel import mesh as mesh_lib
from strongaudio_jax.train import compile_check as train_check, run_config, step as step_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def job_of(cfg) -> str | None:
    """'tag' or 'caption' for an inference job's config, None for a training config."""
    if "buckets" not in cfg:
        return None
    return "tag" if "tag" in cfg else "caption"


def _config_path(spec: str) -> str:
    """A config spec as given, or relative to the checkout when not found from here."""
    path, sep, arg = spec.partition(":")
    if not os.path.isfile(path) and os.path.isfile(os.path.join(REPO, path)):
        path = os.path.join(REPO, path)
    return path + sep + arg


def model_config(cfg) -> tuple[object, int, str]:
    """(training config, number of tags, where it came from) of the model the job would run."""
    path = cfg.model.path
    if path:
        if storage.exists(storage.join(path, "export.json")) or storage.exists(
                storage.join(path, run_config.FILE_NAME)):
            train_cfg = run_config.load(storage.join(path, run_config.FILE_NAME))
            vocab = storage.join(path, "vocab.json")
            n = len(model_lib._read_json(vocab)) if storage.exists(vocab) else 1
            return train_cfg.copy_and_resolve_references(), max(n, 1), path
        raise ConfigError(f"model.path={path!r} has no {run_config.FILE_NAME}: compile-check "
                          "compiles models of this stack (a training --workdir or an export "
                          "directory); leave model.path empty to use compile_check.model_config")
    spec = cfg.get("compile_check", {}).get("model_config", "")
    if not spec:
        raise ConfigError("no model: set model.path (a training --workdir or export directory) "
                          "or compile_check.model_config (e.g. configs/mtc.py:v5p-64)")
    train_cfg = config_lib.load(_config_path(spec), [])
    n = cfg.compile_check.get("num_classes") or (
        train_check.num_classes_of(train_cfg) if "mtc" in train_cfg.get("objectives", {}) else 1)
    return train_cfg, int(n), spec


def host_devices(topology: str, devices: int = 0) -> list:
    """Compile-only devices of one host of the topology (all of them, or the first `devices`),
    as a one-host slice of the same chips: XLA:TPU compiles for a whole slice only (v5e
    refuses a device assignment that leaves chips out), and one host's chips are such a slice
    (e.g. v5e-256's hosts hold 2x2 chips: 'v5e:2x2')."""
    name = train_check.TOPOLOGIES.get(topology, topology)
    everything = train_check.topology_devices(name)
    host = [d for d in everything if d.process_index == 0]
    if len(host) < len(everything):
        generation, dims = name.split(":")
        coords = np.array([d.coords for d in host])[:, :len(dims.split("x"))]
        shape = coords.max(axis=0) - coords.min(axis=0) + 1
        host = train_check.topology_devices(f"{generation}:{'x'.join(str(n) for n in shape)}")
    if devices > len(host):
        raise ConfigError(f"devices={devices}: a host of {topology} has {len(host)} device(s)")
    return host[:devices] if devices > 0 else host


def _abstract_params(program, mesh):
    """The parameters as the job places them (TrainedModel.place), shapes only."""
    boxed = jax.eval_shape(program.init, jax.random.key(0))
    specs = nn.get_partition_spec(boxed).params
    abstract = nn.meta.unbox(boxed).params
    shardings = mesh_lib.state_shardings(specs, abstract, mesh, program.rules)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        abstract, shardings)


def _device_program(kind: str, cfg, program, train_cfg):
    """(function, whether it takes per-row keys, a description) as the job jits it."""
    if kind == "tag":
        if cfg.tag.mode != "audio":
            raise ConfigError(f"tag.mode={cfg.tag.mode!r} runs no model on the chips (a UTS "
                              "extractor on the host): nothing to compile")
        mtc = _objective(program, "mtc")
        return tagger.probs_fn(program, mtc), False, "tagger forward"
    module = _objective(program, "captioning").module
    settings = captioner.settings_from_config(cfg.decode)
    from strongaudio_jax.data import text_fields
    tokenizer = text_fields.tokenizer_from_config(train_cfg)
    max_len = captioner.decode_length(module, settings)
    fn = captioner.caption_fn(program, module, settings, decoding.Tokens.of(tokenizer), max_len)
    return fn, True, f"captioner decode ({settings.strategy}, {max_len} tokens)"


def _objective(program, name: str):
    for o in program.objectives:
        if o.name == name:
            return o
    raise ConfigError(f"the model was trained with the objectives "
                      f"{[o.name for o in program.objectives]}, not {name!r}")


def compile_for(cfg, kind: str, topology: str) -> list[train_check.Report]:
    """Compiles the job's device program for one host of `topology`, once per bucket;
    one report (memory per device) per bucket."""
    train_cfg, num_classes, source = model_config(cfg)
    program = step_lib.build(train_cfg, num_classes=num_classes)
    devices = host_devices(topology, int(cfg.get("devices", 0)))
    try:
        mesh = mesh_lib.make_mesh(dict(cfg.mesh), devices)
    except ValueError as e:
        raise ConfigError(f"mesh for one host of {topology}: {e}") from e
    fn, takes_keys, what = _device_program(kind, cfg, program, train_cfg)
    rate = int(program.mel_cfg.sample_rate)
    buckets = buckets_lib.Buckets.from_seconds(cfg.buckets.seconds, rate, cfg.buckets.over_long)
    checker = model_lib.TrainedModel(path=source, kind="config", step=0, cfg=train_cfg,
                                     program=program, params={}, vocab=[], text_vocab="")
    checker.check_bucket(buckets.largest)
    batch = cfg.buckets.batch_per_device * mesh.size // mesh.shape["tensor"]
    batch_sh = mesh_lib.batch_sharding(mesh, 2, program.rules)
    len_sh = mesh_lib.batch_sharding(mesh, 1, program.rules)
    in_sh = (None, batch_sh, len_sh) + ((batch_sh,) if takes_keys else ())
    jitted = jax.jit(mesh_lib.on_mesh(mesh, fn, program.rules), in_shardings=in_sh)
    params = _abstract_params(program, mesh)
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    reports = []
    for size in buckets.sizes:
        args = [params, jax.ShapeDtypeStruct((batch, size), np.float32, sharding=batch_sh),
                jax.ShapeDtypeStruct((batch,), np.int32, sharding=len_sh)]
        if takes_keys:
            args.append(jax.ShapeDtypeStruct((batch, 2), np.uint32, sharding=batch_sh))
        report = functools.partial(
            train_check.Report,
            topology=f"{topology} (one host), {what}, bucket {size / rate:g} s x {batch} clips",
            device_kind=devices[0].device_kind, devices=len(devices), mesh=dict(mesh.shape),
            params=n_params, hbm=train_check.hbm_per_device(devices),
            arguments_label="arguments (params + batch)",
            advice="lower buckets.batch_per_device or the largest buckets.seconds, or split "
                   "the model over mesh.tensor")
        t0 = time.perf_counter()
        try:
            compiled = jitted.lower(*args).compile()
        except jax.errors.JaxRuntimeError as e:  # XLA:TPU refuses programs that exceed HBM
            if "RESOURCE_EXHAUSTED" not in str(e):
                raise
            reports.append(report(arguments=0, outputs=0, aliased=0, temporaries=0, code=0,
                                  compile_s=time.perf_counter() - t0,
                                  compiler_error=str(e).strip()))
            continue
        mem = compiled.memory_analysis()
        reports.append(report(arguments=mem.argument_size_in_bytes,
                              outputs=mem.output_size_in_bytes, aliased=mem.alias_size_in_bytes,
                              temporaries=mem.temp_size_in_bytes,
                              code=mem.generated_code_size_in_bytes,
                              compile_s=time.perf_counter() - t0))
    return reports


def main(cfg, topologies: list[str]) -> int:
    """Compiles for each topology and bucket and prints the tables; 1 if any does not fit."""
    kind = job_of(cfg)
    topologies = topologies or [cfg.get("compile_check", {}).get("topology", "")]
    if not topologies[0]:
        raise ConfigError("no topology: pass --topology (e.g. v5p-64) or set "
                          "compile_check.topology in the config")
    ok = True
    for topology in topologies:
        for report in compile_for(cfg, kind, topology):
            print(report.table(), flush=True)
            ok &= report.fits
    return 0 if ok else 1
