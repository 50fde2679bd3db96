"""`strongaudio tag` and `strongaudio caption`: a config in, labelled schema-v1 shards out.

    input shards (all hosts) -> this host's share -> labeler on this host's mesh -> engine ->
    <output.dir>/<shard>.tfrecord + .idx, <output.dir>/summary.json

configs/tag.py and configs/caption.py describe the config blocks and hold launch commands.
"""

from __future__ import annotations

import json
import os

import jax

from strongaudio_jax.config import ConfigError
from strongaudio_jax.data import storage
from strongaudio_jax.infer import buckets as buckets_lib, engine, inputs, output


def _labeler(cfg, kind: str, mesh):
    from strongaudio_jax.infer import model as model_lib, tagger

    if kind == "tag" and cfg.tag.mode == "caption":
        extractor = tagger.extractor_from_config(cfg.tag, cfg.model, mesh,
                                                 cfg.buckets.batch_per_device, cfg.buckets.window)
        return tagger.CaptionTagger(extractor, cfg.tag.caption_field)
    if kind == "tag" and cfg.tag.mode != "audio":
        raise ConfigError(f"tag.mode={cfg.tag.mode!r}: use 'audio' (an MTC checkpoint) or "
                          "'caption' (a UTS extractor on the records' captions)")
    from strongaudio_jax.infer import captioner, import_hf
    if kind == "caption" and os.path.isfile(os.path.join(cfg.model.path, import_hf.CONFIG_FILE)):
        return captioner.AudioLMCaptioner(cfg.model.path, mesh, cfg.buckets.batch_per_device,
                                          captioner.settings_from_config(cfg.decode),
                                          cfg.model.get("prompt", ""))
    trained = model_lib.load(cfg.model.path, cfg.model.step)
    if kind == "tag":
        return tagger.MTCTagger(trained, mesh, cfg.buckets.batch_per_device, cfg.tag.top_k,
                                cfg.tag.threshold)
    return captioner.Captioner(trained, mesh, cfg.buckets.batch_per_device,
                               captioner.settings_from_config(cfg.decode))


def run(cfg, kind: str, log=print) -> dict:
    """Runs the job of `kind` ('tag' | 'caption') on this host; returns the host's summary
    (process 0 also writes <output.dir>/summary.json over every host's shards)."""
    from strongaudio_jax.infer import model as model_lib

    cache = engine.enable_compilation_cache(cfg.compilation_cache)
    shards = inputs.from_config(cfg)
    same = lambda a, b: a == b if storage.is_url(a) else os.path.realpath(a) == os.path.realpath(b)
    clash = [s.source for s in shards
             if cfg.output.dir and same(storage.join(cfg.output.dir, s.name), s.source)]
    if clash:
        raise ConfigError(f"output.dir={cfg.output.dir!r} would overwrite the input shard "
                          f"{clash[0]}: write the labelled shards to another folder")
    mine = inputs.host_shards(shards, jax.process_index(), jax.process_count())
    mesh_cfg = dict(cfg.mesh)
    if cfg.model.get("tensor_parallel", 1) > 1:  # a language model split over `tensor`
        mesh_cfg["tensor"] = cfg.model.tensor_parallel
    mesh = model_lib.local_mesh(mesh_cfg, cfg.devices)
    labeler = _labeler(cfg, kind, mesh)
    buckets = None
    if labeler.needs_audio:
        buckets = buckets_lib.Buckets.from_seconds(cfg.buckets.seconds, labeler.sample_rate,
                                                   cfg.buckets.over_long)
        check = getattr(labeler, "check_bucket", None)
        if check:
            check(buckets.largest)
    log(f"{kind}: {len(shards)} input shard(s), {len(mine)} on process {jax.process_index()} "
        f"of {jax.process_count()}; mesh {dict(mesh.shape)} of {jax.local_device_count()} local "
        f"device(s); compilation cache {cache}")
    summary = engine.run(labeler, mine, cfg.output.dir, buckets=buckets,
                         skip_bad=cfg.input.skip_bad, resample=cfg.input.resample,
                         window=cfg.buckets.window, progress=cfg.progress, log=log,
                         decode_workers=cfg.input.get("decode_workers", 0),
                         read_ahead=cfg.input.get("read_ahead", 0))
    summary["provenance"] = labeler.provenance
    log(engine.summary_line(f"{kind} (process {jax.process_index()})", summary))
    if jax.process_count() > 1:  # every host's shards are finished before the pod summary
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices("strongaudio_infer_done")
    if jax.process_index() == 0:
        total = engine._empty_counts()
        for s in shards:
            total = engine._add(total, output.ShardOutput(cfg.output.dir, s.name).stats())
        pod = {"job": kind, "shards": len(shards), "counts": total,
               "hours": round(total["seconds"] / 3600, 4), "provenance": labeler.provenance}
        storage.write_text(storage.join(cfg.output.dir, "summary.json"),
                           json.dumps(pod, indent=1, sort_keys=True))
        if jax.process_count() > 1:
            log(engine.summary_line(f"{kind} (all processes)", pod))
    return summary
