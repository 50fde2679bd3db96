#!/usr/bin/env python3
"""Folder of audio files (+ a CSV or JSONL of captions/tags) -> schema-v1 TFRecord shards.

    python tools/import_folder.py --audio-root clips/ --metadata captions.csv --out shards/ \\
        --clips-per-shard 1000

CSV header: path,caption,tags[,id,summary,source] (tags separated by ';'); JSONL: the same
fields per line (tags may be a list). Without --metadata every audio file is imported.
Resumable: complete shards are skipped; each shard is written to a .tmp name and renamed.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from strongaudio_jax.data import importers  # noqa: E402

if __name__ == "__main__":
    sys.exit(importers.cli("folder"))
