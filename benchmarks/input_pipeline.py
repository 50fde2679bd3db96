"""Input pipeline throughput against the peers (tf.data, PyTorch DataLoader) on the same shards.

One command runs the project's pipeline, the same decoding on Grain's own dataset pieces and
worker pool (`grain`), the two peers of `../shared/bench/` and the FLAC
decoding ceiling in turns, several rounds, each run starting only once the CPU is idle, and
prints the medians as one JSON object:

    python benchmarks/input_pipeline.py --files '/tmp/bench_records/*.tfrecord' --rounds 3 \\
        --tf-python /work/vtf/bin/python --torch-python /work/vtorch/bin/python

Shards: `python ../shared/bench/make_bench_records.py --out /tmp/bench_records --clips 2000
--shards 8 --seed 0` (2,000 FLAC clips of 10 s). Everyone gets the same batch (64), crop (10 s),
number of worker processes (2), warm-up (10 batches) and timed batches (50); all measure the
host side only (batches delivered to the training process, no device transfer). A peer whose
Python is not given is left out. `--only ours` runs just the project's pipeline once.

clips/s depends on how much of the CPU the run gets; on a shared machine that varies with how
many threads a pipeline runs. So each runner is also run with twice the timed batches, and the
difference in CPU time (all its processes and threads) gives its steady-state CPU cost per clip,
which other load barely changes (`median_cpu_ms_per_clip`; `--no-cpu-cost` skips it).
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SHARED_BENCH = os.path.join(REPO, "..", "shared", "bench")


def ours(args) -> dict:
    """The project's pipeline: batches of int16 waveforms decoded by worker processes."""
    sys.path.insert(0, REPO)
    from strongaudio_jax.data import pipeline

    files = pipeline.expand_paths(args.files)
    crop = int(args.crop_seconds * args.sample_rate)
    feat = pipeline.Featurizer({}, args.sample_rate, crop, random_crop=True)
    it = iter(pipeline.train_dataset(files, feat, args.batch, seed=0, workers=args.workers))
    result = _time_batches(it, args)
    it.close()
    return result


def _time_batches(it, args) -> dict:
    """clips/s of `it` over args.batches batches after args.warmup untimed ones."""
    for _ in range(args.warmup):
        next(it)
    t0 = time.perf_counter()
    for _ in range(args.batches):
        next(it)
    clips = args.batches * args.batch / (time.perf_counter() - t0)
    return {"clips_per_s": round(clips, 1), "audio_seconds_per_s": round(clips * args.crop_seconds, 1)}


class _GrainRow:
    """One int16 row as our workers fill it (same decoder, same crop), as a Grain random map."""

    def __init__(self, featurizer):
        self.featurizer = featurizer

    def __call__(self, record, rng):
        import numpy as np

        wave = np.zeros(self.featurizer.clip_samples, np.int16)
        tags = np.zeros(len(self.featurizer.vocab), np.float32)
        length = self.featurizer.fill(*record, float(rng.random()), wave, tags)[0]
        row = {"waveform": wave, "length": np.int32(length)}
        if tags.size:  # Grain 0.2's shared-memory batching fails on a size-0 array (empty vocab)
            row["tags"] = tags
        return row


def grain_native(args) -> dict:
    """Grain's own pieces, as MaxText builds its pipeline: MapDataset.source(random access over
    the shards).seed().shuffle().repeat().random_map(decode + crop).batch() then mp_prefetch
    with the same number of worker processes. Record reading and FLAC decoding are ours (the
    same TFRecordSource and Featurizer), so the difference is shuffling, batching and the pool."""
    sys.path.insert(0, REPO)
    import grain
    from absl import flags

    from strongaudio_jax.data import pipeline

    if not flags.FLAGS.is_parsed():  # Grain reads absl flags; outside absl.app parse none
        flags.FLAGS.mark_as_parsed()

    files = pipeline.expand_paths(args.files)
    crop = int(args.crop_seconds * args.sample_rate)
    feat = pipeline.Featurizer({}, args.sample_rate, crop, random_crop=True)
    # batch() last before mp_prefetch, on the IterDataset: then workers write batches into
    # shared memory (Grain's SupportsSharedMemoryOutput) instead of pickling them (2.6x slower)
    ds = (grain.MapDataset.source(pipeline.TFRecordSource(files)).seed(0).shuffle().repeat()
          .random_map(_GrainRow(feat)).to_iter_dataset()
          .batch(args.batch, drop_remainder=True)
          .mp_prefetch(grain.MultiprocessingOptions(num_workers=args.workers,
                                                    per_worker_buffer_size=args.grain_buffer)))
    return _time_batches(iter(ds), args)


def ceiling(args) -> dict:
    """FLAC decoding alone on one core, times the number of worker processes: soundfile reading
    a BytesIO (what both peers do, and the figure quoted in the issue), soundfile reading a memfd
    into a preallocated int16 buffer, and dr_flac decoding into that buffer (what the pipeline
    does for 16-bit mono FLAC; the fastest, so the strictest ceiling)."""
    sys.path.insert(0, REPO)
    import io

    import numpy as np
    import soundfile as sf

    from strongaudio_jax.data import audio as audio_lib, index as index_lib, schema

    reader = index_lib.RecordReader(index_lib.build_index(
        sorted(__import__("glob").glob(args.files))[:1]))
    clips = [schema.example_to_clip(reader.read(i)).audio for i in range(min(200, len(reader.index)))]
    out = np.zeros(int(args.crop_seconds * args.sample_rate), np.int16)

    def bytesio(a):
        sf.read(io.BytesIO(a), dtype="int16")

    def memfd(a):
        with audio_lib._open(a) as f:  # noqa: SLF001 (the pipeline's own decode path)
            f.read(len(out), dtype="int16", out=out)

    def drflac(a):
        audio_lib._decode_flac_into(a, out, where="clip", rate=args.sample_rate, crop=None)  # noqa: SLF001

    result = {}
    for name, fn in (("bytesio", bytesio), ("memfd", memfd), ("drflac", drflac)):
        for a in clips[:10]:
            fn(a)
        t0, c0 = time.perf_counter(), time.process_time()
        for a in clips:
            fn(a)
        per_clip = (time.perf_counter() - t0) / len(clips)
        result[f"ms_per_clip_one_core_{name}"] = round(per_clip * 1e3, 3)
        result[f"cpu_ms_per_clip_{name}"] = round((time.process_time() - c0) / len(clips) * 1e3, 3)
        result[f"clips_per_s_{name}"] = round(args.workers / per_clip, 1)
    result["clips_per_s_soundfile"] = max(result["clips_per_s_bytesio"],
                                          result["clips_per_s_memfd"])
    result["clips_per_s"] = max(result["clips_per_s_soundfile"], result["clips_per_s_drflac"])
    return result


def wait_idle(threshold: float, timeout: float) -> float:
    """Waits until the CPU was >= threshold idle over one second; returns that idle fraction."""
    def snapshot():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return v[3] + v[4], sum(v)  # idle + iowait, total

    deadline = time.time() + timeout
    while True:
        i0, t0 = snapshot()
        time.sleep(1.0)
        i1, t1 = snapshot()
        idle = (i1 - i0) / max(t1 - t0, 1)
        if idle >= threshold or time.time() > deadline:
            return idle


def run_one(name: str, cmd: list[str]) -> tuple[dict, float]:
    """The command's JSON line and the CPU seconds it and its waited-for children used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode or not lines:
        raise RuntimeError(f"{name} failed ({out.returncode}): {out.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return json.loads(lines[-1]), cpu


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--files", default="/tmp/bench_records/*.tfrecord")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--batches", type=int, default=50)
    ap.add_argument("--crop-seconds", type=float, default=10.0)
    ap.add_argument("--sample-rate", type=int, default=16000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tf-python", default="", help="a Python with tensorflow-cpu + soundfile")
    ap.add_argument("--torch-python", default="", help="a Python with torch + soundfile")
    ap.add_argument("--peers-dir", default=SHARED_BENCH)
    ap.add_argument("--idle", type=float, default=0.9, help="start a run once the CPU is this idle")
    ap.add_argument("--idle-timeout", type=float, default=120.0)
    ap.add_argument("--grain-buffer", type=int, default=2,
                    help="Grain's per_worker_buffer_size (batches each worker runs ahead)")
    ap.add_argument("--only", choices=["ours", "grain", "ceiling"],
                    help="run one measurement, print it")
    ap.add_argument("--no-cpu-cost", dest="cpu_cost", action="store_false",
                    help="skip the second run (2x batches) per runner that measures CPU per clip")
    args = ap.parse_args()

    if args.only:
        print(json.dumps({"ours": ours, "grain": grain_native, "ceiling": ceiling}[args.only](args)))
        return

    def runners(batches: int) -> dict[str, list[str]]:
        me = [sys.executable, os.path.abspath(__file__), "--files", args.files, "--batch",
              str(args.batch), "--workers", str(args.workers), "--warmup", str(args.warmup),
              "--batches", str(batches), "--crop-seconds", str(args.crop_seconds)]
        common = ["--files", args.files, "--batch", str(args.batch), "--warmup", str(args.warmup),
                  "--batches", str(batches)]
        out = {"ours": me + ["--only", "ours"], "grain": me + ["--only", "grain"],
               "ceiling": me + ["--only", "ceiling"]}
        if args.tf_python:
            tf = [args.tf_python, os.path.join(args.peers_dir, "tfdata_peer.py"), *common]
            out["tfdata_autotune"] = tf
            out["tfdata_workers"] = tf + ["--workers", str(args.workers)]
        if args.torch_python:
            out["torch"] = [args.torch_python, os.path.join(args.peers_dir, "torch_peer.py"),
                            *common, "--workers", str(args.workers)]
        return out

    plain, longer = runners(args.batches), runners(2 * args.batches)
    runs: dict[str, list[float]] = {name: [] for name in plain}
    cpu_ms: dict[str, list[float]] = {name: [] for name in plain if name != "ceiling"}
    idle: list[float] = []
    details: list[dict] = []
    for r in range(args.rounds):
        for name, cmd in plain.items():
            idle.append(round(wait_idle(args.idle, args.idle_timeout), 3))
            result, cpu = run_one(name, cmd)
            runs[name].append(result["clips_per_s"])
            if name == "ceiling":
                details.append(result)
            elif args.cpu_cost:  # the same run with twice the timed batches: the extra CPU
                _, cpu2 = run_one(name, longer[name])  # is what args.batches batches cost
                cpu_ms[name].append(round((cpu2 - cpu) / (args.batches * args.batch) * 1e3, 3))
            print(f"round {r + 1}/{args.rounds} {name}: {result['clips_per_s']} clips/s "
                  f"(idle before: {idle[-1]:.0%})"
                  + (f", {cpu_ms[name][-1]} CPU-ms per clip" if name in cpu_ms and cpu_ms[name]
                     else ""), file=sys.stderr, flush=True)

    med = {name: statistics.median(v) for name, v in runs.items()}
    summary = {
        "benchmark": "input_pipeline", "median_clips_per_s": med,
        "median_audio_seconds_per_s": {k: round(v * args.crop_seconds, 1) for k, v in med.items()
                                       if k != "ceiling"},
        "runs_clips_per_s": runs,
        "ours_fraction_of_decode_ceiling": round(med["ours"] / med["ceiling"], 3),
        # The ceiling: soundfile decoding (what the peers use) on every core.
        "ours_fraction_of_soundfile_ceiling": round(
            med["ours"] / statistics.median(d["clips_per_s_soundfile"] for d in details), 3),
        # Steady-state CPU cost per clip (all processes and threads of a run): robust to other
        # load on the machine, unlike clips/s. Decoding alone costs ceiling_runs' ms_per_clip.
        "median_cpu_ms_per_clip": {k: statistics.median(v) for k, v in cpu_ms.items() if v},
        "decode_only_cpu_ms_per_clip": statistics.median(
            min(d["cpu_ms_per_clip_bytesio"], d["cpu_ms_per_clip_memfd"],
                d["cpu_ms_per_clip_drflac"]) for d in details),
        "cpu_ms_per_clip_runs": cpu_ms,
        "ceiling_runs": details,
        "ours_vs_peers": {k: round(med["ours"] / v, 3) for k, v in med.items()
                          if k not in ("ours", "ceiling")},
        "batch": args.batch, "workers": args.workers, "crop_seconds": args.crop_seconds,
        "warmup_batches": args.warmup, "timed_batches": args.batches, "rounds": args.rounds,
        "cpu_idle_before_each_run": idle, "loadavg_at_end": os.getloadavg(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or ''}",
        "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                      time.gmtime()),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
