"""`strongaudio curate ...`: measure and improve a corpus (docs/curation.md).

  coverage     per-domain UTS tag coverage, long tail, entropy; two corpora side by side
"""

from __future__ import annotations

import argparse


class CurateError(ValueError):
    """A curation command was given something it cannot use (says what and what to do)."""


def add_parser(sub) -> None:
    """Registers `curate` and its subcommands on the top-level `strongaudio` parser."""
    p = sub.add_parser("curate", help="data curation: UTS coverage, near-duplicates and "
                       "leakage, caption-audio consistency", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    cur = p.add_subparsers(dest="curate_command", required=True)

    q = cur.add_parser("coverage", help="per-domain UTS tag coverage, long tail and entropy of "
                       "one or more corpora (tables + PNG plots)")
    q.add_argument("--corpus", action="append", required=True, metavar="NAME=PATTERN",
                   help="a corpus: its shards as a glob (local or gs://), optionally named; "
                        "repeat for a side-by-side (the first two are compared)")
    q.add_argument("--out-dir", required=True, help="where coverage.md, coverage.json and the "
                   "PNGs go")
    q.add_argument("--tail", type=int, default=5, help="long tail: tags on fewer than this "
                   "many clips (default 5)")
    q.add_argument("--vocab", help="a UTS vocabulary (label_K.json) to measure coverage of")
    q.add_argument("--top", type=int, default=15, help="top tags listed per domain")
    q.add_argument("--no-plots", action="store_true", help="tables only (no matplotlib)")
    q.set_defaults(curate_func=cmd_coverage)

    p.set_defaults(func=run)


def run(args) -> int:
    return args.curate_func(args)


def cmd_coverage(args) -> int:
    from strongaudio_jax.curate import coverage, records
    from strongaudio_jax.uts import vocab as vocab_lib

    if args.tail < 1:
        raise CurateError(f"--tail {args.tail}: give a number of clips >= 1")
    named = [coverage.parse_corpus(c) for c in args.corpus]
    names = [n for n, _ in named]
    if len(set(names)) != len(names):
        raise CurateError(f"corpus names {names} repeat; name them: --corpus A=PATTERN "
                          "--corpus B=PATTERN")
    vocab = vocab_lib.read_vocabulary(args.vocab) if args.vocab else None
    counted = [coverage.count(name, records.expand(pattern), vocab) for name, pattern in named]
    result = coverage.report(counted, args.out_dir, args.tail, vocab, args.vocab or "",
                             args.top, plots=not args.no_plots)
    for name, c in result["corpora"].items():
        a = c["domains"][coverage.ALL]
        print(f"{name}: {a['clips']} clips, {a['distinct_tags']} distinct tags, long-tail share "
              f"{a['long_tail_share']:.3f}, entropy {a['entropy_bits']:.2f} bits"
              + (f", {c['damaged_records']} damaged record(s) skipped" if c["damaged_records"] else ""))
    print(f"report: {args.out_dir}/coverage.md")
    return 0
