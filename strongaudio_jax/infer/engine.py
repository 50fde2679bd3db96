"""The batch-inference loop shared by the captioner and the tagger jobs.

    shards -> this host's shards -> per shard, windows of records -> decode audio ->
    pieces by length bucket -> fixed-shape batches on the mesh -> results per clip ->
    labelled records appended to the shard's output (output.py) -> progress + summary

A labeler (tagger.py, captioner.py) says what it needs and what it writes:

    name, provenance (dict: model, checkpoint, step, settings), needs_audio (bool),
    sample_rate (when it needs audio), batch_size (rows per batch: per-device x devices),
    label_audio(waves [B, S] float32, lengths [B] int32, ids) -> list of B results
    combine(results of one clip's pieces) -> one result
    label_clips(clips) -> list of results           (text-only labelers)
    apply(clip, result) -> (Clip, empty: bool)      (the clip to write, whether it got no label)
    failure(result) -> reason or None               (optional: a written record's failure,
                                                     counted under failures by reason)

Every host runs its own shards on its own devices (a mesh of `jax.local_devices()`): no
collective crosses hosts inside the loop, so hosts with more or slower shards never hold the
others up. The labels of a record depend only on that record (fixed batch shapes, per-clip
random keys), so the output does not depend on batching, restarts or the device count.
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import json
import os
import sys
import time
from typing import Iterator, Sequence

import numpy as np

from strongaudio_jax.data import audio as audio_lib, schema
from strongaudio_jax.infer import buckets as buckets_lib, inputs as inputs_lib, output as output_lib


def enable_compilation_cache(path: str) -> str:
    """Turns on JAX's persistent compilation cache (a restarted job does not recompile) unless
    the user configured one (JAX_COMPILATION_CACHE_DIR); returns the folder in use."""
    import jax

    current = jax.config.jax_compilation_cache_dir
    if current:
        return current
    if not path:
        from strongaudio_jax.data.index import default_cache_dir
        path = os.path.join(default_cache_dir(), "jax_compilation")
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return path


class Progress:
    """A tqdm bar of clips with clips/s and ETA (on stderr), or nothing when disabled."""

    def __init__(self, total: int, done: int, enabled: bool, desc: str):
        self.bar = None
        if enabled:
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=done, unit="clip", desc=desc, file=sys.stderr,
                            dynamic_ncols=True, smoothing=0.1)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _add(counts: dict, other: dict) -> dict:
    out = dict(counts)
    for k, v in other.items():
        out[k] = (_add(out.get(k, {}), v) if isinstance(v, dict)
                  else round(out.get(k, 0) + v, 6) if isinstance(v, float) else out.get(k, 0) + v)
    return out


def _empty_counts() -> dict:
    return {"clips": 0, "written": 0, "seconds": 0.0, "chunked": 0, "empty": 0, "failures": {}}


def run(labeler, shards: Sequence[inputs_lib.InputShard], out_dir: str, *,
        buckets: buckets_lib.Buckets | None, skip_bad: bool, resample: bool = True,
        window: int = 256, progress: bool = True, log=print, decode_workers: int = 0,
        read_ahead: int = 0) -> dict:
    """Labels `shards` (this host's) into `out_dir`; returns this host's summary.

    Records are read and their audio decoded / resampled by `decode_workers` threads (0: in
    this thread), at most `read_ahead` records (default: one window) ahead of the labeling, so
    the next window decodes while this one is on the devices; results are taken in record
    order, so the output is the same as a serial run's."""
    pool = (concurrent.futures.ThreadPoolExecutor(decode_workers, "strongaudio-decode")
            if decode_workers > 0 else None)
    try:
        return _run(labeler, shards, out_dir, buckets=buckets, skip_bad=skip_bad,
                    resample=resample, window=window, progress=progress, log=log, pool=pool,
                    read_ahead=read_ahead or window)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _run(labeler, shards, out_dir, *, buckets, skip_bad, resample, window, progress, log, pool,
         read_ahead) -> dict:
    output_lib.check_output_dir(out_dir)
    t0 = time.perf_counter()
    outs = {s.name: output_lib.ShardOutput(out_dir, s.name) for s in shards}
    todo = [s for s in shards if not outs[s.name].finished()]
    already = sum(s.count for s in shards if s not in todo)
    done_before = {}
    for s in todo:
        p = outs[s.name].progress_path
        if os.path.exists(p) and os.path.exists(outs[s.name].partial):
            with open(p) as f:
                done_before[s.name] = json.load(f)["done"]
    total = sum(s.count for s in shards)
    resumed = sum(done_before.values())
    log(f"{labeler.name}: {len(shards)} shard(s), {total} record(s) on this host; "
        f"{len(shards) - len(todo)} shard(s) already finished"
        + (f", resuming {len(done_before)} half-done ({resumed} records)" if done_before else ""))
    bar = Progress(total, already + resumed, progress, labeler.name)
    labelled = 0
    t_start = time.perf_counter()
    try:
        for shard in todo:
            out = outs[shard.name]
            state = out.open(labeler.provenance)
            state["counts"] = _add(_empty_counts(), state["counts"])
            if shard.damaged and state["done"] == 0:  # (skip_bad) records past the damage
                log(f"skip_bad: {shard.damaged}")
                state["counts"]["failures"]["damaged_shard_tail"] = 1
            loaded = _loaded(shard, range(state["done"], shard.count), labeler, resample, pool,
                             read_ahead)
            for start in range(state["done"], shard.count, window):
                stop = min(shard.count, start + window)
                records, counts = _label_window(labeler, itertools.islice(loaded, stop - start),
                                                buckets, skip_bad)
                state["done"] = stop
                state["counts"] = _add(state["counts"], counts)
                out.append(records, state)
                bar.update(stop - start)
                labelled += stop - start
            out.finish(state["counts"])
            out.close()
    finally:
        bar.close()
        for o in outs.values():
            o.close()
    summary = {"shards": len(shards), "counts": _empty_counts()}
    for s in shards:
        summary["counts"] = _add(summary["counts"], outs[s.name].stats())
    summary["hours"] = round(summary["counts"]["seconds"] / 3600, 4)
    wall = time.perf_counter() - t_start
    summary["this_run"] = {"records": labelled, "seconds": round(wall, 2),
                           "clips_per_s": round(labelled / wall, 2) if wall > 0 else None,
                           "wall_s_with_setup": round(time.perf_counter() - t0, 2)}
    return summary


def summary_line(name: str, summary: dict) -> str:
    c = summary["counts"]
    fails = ", ".join(f"{k} {v}" for k, v in sorted(c["failures"].items())) or "none"
    return (f"{name}: {c['written']} of {c['clips']} clip(s) written ({summary['hours']:.3f} h of "
            f"audio, {c['chunked']} chunked, {c['empty']} without labels); failures: {fails}")


def _load(shard, i: int, labeler, resample: bool):
    """(clip, waveform or None, None) of record i, or (None, None, the error) if it is bad."""
    try:
        clip = shard.read(i)
        return clip, _decode(clip, labeler, resample) if labeler.needs_audio else None, None
    except (inputs_lib.BadRecord, audio_lib.AudioDecodeError) as e:
        return None, None, e


def _loaded(shard, indices: range, labeler, resample: bool, pool, read_ahead: int) -> Iterator:
    """_load of each index in order: in this thread, or on `pool` with at most `read_ahead`
    records in flight."""
    if pool is None:
        yield from (_load(shard, i, labeler, resample) for i in indices)
        return
    pending = collections.deque()
    todo = iter(indices)
    for i in itertools.islice(todo, max(1, read_ahead)):
        pending.append(pool.submit(_load, shard, i, labeler, resample))
    try:
        while pending:
            got = pending.popleft().result()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(pool.submit(_load, shard, nxt, labeler, resample))
            yield got
    finally:  # an error or the end of the job: drop what was read ahead
        for f in pending:
            f.cancel()


def _label_window(labeler, loaded, buckets, skip_bad: bool) -> tuple[list[bytes], dict]:
    """Labelled records of the (clip, wave, error) of a window's input records (in order), and
    their counts."""
    counts = _empty_counts()
    fails = collections.Counter()
    clips: list[schema.Clip | None] = []
    waves: list[np.ndarray | None] = []
    for clip, wave, error in loaded:
        counts["clips"] += 1
        if error is not None:
            if not skip_bad:
                raise error
            fails[error.reason] += 1
        clips.append(clip)
        waves.append(wave)

    if labeler.needs_audio:
        results = _label_audio(labeler, clips, waves, buckets, fails, counts)
    else:
        live = [c for c in clips if c is not None]
        found = iter(labeler.label_clips(live))
        results = [next(found) if c is not None else None for c in clips]

    records = []
    for clip, wave, result in zip(clips, waves, results):
        if clip is None or result is None:
            continue
        reason = labeler.failure(result) if hasattr(labeler, "failure") else None
        if reason:
            fails[reason] += 1
        labelled, empty = labeler.apply(clip, result)
        counts["empty"] += int(empty)
        counts["written"] += 1
        n = len(wave) if wave is not None else clip.num_samples
        counts["seconds"] += round(n / (labeler.sample_rate if wave is not None else
                                        clip.sample_rate), 6) if n and n > 0 else 0.0
        records.append(schema.clip_to_example(labelled))
    counts["failures"] = dict(fails)
    return records, counts


def _decode(clip: schema.Clip, labeler, resample: bool) -> np.ndarray:
    where = f"clip {clip.id!r}"
    wave, rate = audio_lib.decode(clip.audio, where)
    if rate != labeler.sample_rate:
        if not resample:
            raise audio_lib.AudioDecodeError(
                f"{where}: {rate} Hz, the model takes {labeler.sample_rate} Hz (set "
                "input.resample=True to resample)", "sample_rate")
        wave = audio_lib.resample(wave, rate, labeler.sample_rate)
    return wave


def _label_audio(labeler, clips, waves, buckets, fails, counts) -> list:
    """Per clip: the combined result of its pieces (None for failed or refused clips)."""
    pieces: dict[int, list] = collections.defaultdict(list)  # bucket -> [(clip no, piece no, wave)]
    n_pieces = {}
    for k, (clip, wave) in enumerate(zip(clips, waves)):
        if clip is None:
            continue
        try:
            parts = buckets.pieces(len(wave), f"clip {clip.id!r}")
        except buckets_lib.TooLong:
            fails[buckets_lib.TooLong.reason] += 1
            clips[k] = None
            continue
        counts["chunked"] += int(len(parts) > 1)
        n_pieces[k] = len(parts)
        for j, (s, n) in enumerate(parts):
            pieces[buckets.bucket(n)].append((k, j, wave[s:s + n]))
    found: dict[tuple[int, int], object] = {}
    b = labeler.batch_size
    for bi in sorted(pieces):
        size = buckets.sizes[bi]
        items = pieces[bi]
        for start in range(0, len(items), b):
            batch = items[start:start + b]
            w = np.zeros((b, size), np.float32)
            lengths = np.full((b,), size, np.int32)  # padding rows: full length, ignored
            ids = [""] * b
            for r, (k, _, piece) in enumerate(batch):
                w[r, :len(piece)] = piece
                lengths[r] = len(piece)
                ids[r] = clips[k].id
            out = labeler.label_audio(w, lengths, ids)
            for r, (k, j, _) in enumerate(batch):
                found[(k, j)] = out[r]
    results = []
    for k, clip in enumerate(clips):
        if clip is None:
            results.append(None)
            continue
        parts = [found[(k, j)] for j in range(n_pieces[k])]
        results.append(parts[0] if len(parts) == 1 else labeler.combine(parts))
    return results
