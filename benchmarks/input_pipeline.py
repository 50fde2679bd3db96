"""Input pipeline throughput: TFRecords -> decoded, cropped, batched numpy (clips/s), as JSON.

    python benchmarks/input_pipeline.py --files 'strongaudio_jax/assets/demo_corpus/train-*' \
        --batch-size 32 --batches 40 [--workers 2]

Measures the host side only (no device transfer), after `--warmup` batches, so worker
start-up and the first file reads are not counted. Prints one JSON object.
"""

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from strongaudio_jax import assets  # noqa: E402
from strongaudio_jax.data import pipeline  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--files", default=assets.demo_corpus("train-*.tfrecord"))
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--clip-seconds", type=float, default=4.0)
    ap.add_argument("--workers", type=int, default=0)
    args = ap.parse_args()

    files = pipeline.expand_paths(args.files)
    vocab = pipeline.tag_vocabulary(files)
    featurizer = pipeline.Featurizer({t: i for i, t in enumerate(vocab)}, 16000,
                                     int(args.clip_seconds * 16000), random_crop=True)
    it = iter(pipeline.train_dataset(files, featurizer, args.batch_size, seed=0,
                                     workers=args.workers))
    for _ in range(args.warmup):
        next(it)
    t0 = time.perf_counter()
    for _ in range(args.batches):
        next(it)
    dt = time.perf_counter() - t0
    print(json.dumps({
        "benchmark": "input_pipeline", "clips_per_s": round(args.batches * args.batch_size / dt, 1),
        "batch_size": args.batch_size, "batches": args.batches, "workers": args.workers,
        "clip_seconds": args.clip_seconds, "files": len(files),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores", "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }))


if __name__ == "__main__":
    main()
