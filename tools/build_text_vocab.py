#!/usr/bin/env python3
"""Builds a WordPiece vocab.txt from the captions of a corpus (for text objectives without
the MiniLM package).

    python tools/build_text_vocab.py --files 'corpus/train-*.tfrecord' --out vocab.txt \
        [--size 8000] [--min-count 2] [--fields summary,caption,tags]

The vocabulary holds BERT's special tokens, every character seen (alone and as a `##`
continuation, so no word of these characters is ever [UNK]) and the most frequent whole
words (see strongaudio_jax.text.tokenizer.build_vocab). Use it with `text.tokenizer=vocab.txt`;
the bundled demo corpus's own is strongaudio_jax/assets/demo_corpus/text_vocab.txt, built by
    python tools/build_text_vocab.py --files 'strongaudio_jax/assets/demo_corpus/train-*.tfrecord' \
        --out strongaudio_jax/assets/demo_corpus/text_vocab.txt --min-count 1
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from strongaudio_jax.data import batcher, pipeline  # noqa: E402
from strongaudio_jax.text import tokenizer  # noqa: E402

FIELDS = ("summary", "caption", "tags")


def corpus_texts(files, fields, bad=None):
    """The texts of every clip; a bad record raises naming shard and record, or with `bad`
    skipping (pipeline.BadData) is counted there and left out."""
    for clip in pipeline.clips(files, bad=bad):
        for f in fields:
            yield ", ".join(clip.tags) if f == "tags" else getattr(clip, f)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", required=True, nargs="+", help="TFRecord files or glob patterns")
    ap.add_argument("--out", required=True, help="vocab.txt to write")
    ap.add_argument("--size", type=int, default=8000, help="most tokens in the vocabulary")
    ap.add_argument("--min-count", type=int, default=2, help="fewest occurrences of a whole word")
    ap.add_argument("--fields", default=",".join(FIELDS), help=f"comma-separated, of {FIELDS}")
    ap.add_argument("--skip-bad", action="store_true",
                    help="skip corrupt or unreadable records and count them (default: stop)")
    args = ap.parse_args(argv)
    fields = [f for f in args.fields.split(",") if f]
    if not fields or set(fields) - set(FIELDS):
        ap.error(f"--fields must name some of {FIELDS}, got {args.fields!r}")
    bad = pipeline.BadData(skip=args.skip_bad)
    try:
        vocab = tokenizer.build_vocab(corpus_texts(pipeline.expand_paths(args.files), fields, bad),
                                      size=args.size, min_count=args.min_count)
    except (OSError, ValueError) as e:
        hint = (" (--skip-bad skips such records and counts them)"
                if batcher.bad_reason(e) is not None else "")
        print(f"error: {e}{hint}", file=sys.stderr)
        return 1
    if bad.counts:
        print(bad.summary().replace("data.skip_bad", "--skip-bad"))
    tokenizer.WordPieceTokenizer(vocab).save(args.out)
    print(f"wrote {args.out}: {len(vocab)} tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
