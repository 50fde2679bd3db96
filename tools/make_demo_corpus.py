#!/usr/bin/env python3
"""Builds the demo corpus from sound made on this machine with Debian packages.

    python tools/make_demo_corpus.py --out DIR [--num-clips 370] [--seed 0] [--shard-size 64] [--jobs 2]

Speech comes from espeak-ng (8 languages, many voice variants) and festival, music from
fluidsynth rendering MIDI written here, and sound events from real recordings shipped by
Debian game packages (see tools/demo_corpus/sources.py and docs/demo_corpus.md).
Writes train-*.tfrecord, heldout-*.tfrecord and corpus.json to DIR. Deterministic for a seed:
the clip list, labels, captions and tags never change; audio may follow tool versions.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
for _p in (_HERE, os.path.dirname(_HERE)):  # the helper package and the repo's strongaudio_jax
    if _p not in sys.path:
        sys.path.insert(0, _p)

from demo_corpus import build, sources  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory (its old shards and corpus.json are replaced)")
    ap.add_argument("--num-clips", type=int, default=370)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shard-size", type=int, default=64, help="records per TFRecord shard")
    ap.add_argument("--jobs", type=int, default=2, help="rendering processes")
    args = ap.parse_args(argv)
    if args.num_clips < 4 or args.shard_size < 1 or args.jobs < 1:
        ap.error("--num-clips must be >= 4, --shard-size and --jobs >= 1")
    try:
        sources.check_prerequisites()
    except sources.MissingPrerequisites as e:
        print(f"make_demo_corpus: {e}", file=sys.stderr)
        return 2
    command = "python tools/make_demo_corpus.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    res = build.build(args.out, args.num_clips, args.seed, args.shard_size, args.jobs, command)
    c = res["counts"]
    print(f"wrote {res['clips']} clips ({c['train']['clips']} train, {c['heldout']['clips']} heldout), "
          f"{res['bytes'] / 1e6:.2f} MB of TFRecords to {args.out} in {res['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
