#!/usr/bin/env python3
"""Lhotse MonoCut manifests (as released with the UTS data) -> schema-v1 TFRecord shards.

    python tools/import_lhotse.py --manifest cuts.jsonl.gz --audio-root /data/audio --out shards/

Caption: supervisions[0].custom.caption; summary: .original_caption; tags: .audio_tag; audio:
recording.sources[0] under --audio-root, cut to [start, start + duration).
Resumable: complete shards are skipped; each shard is written to a .tmp name and renamed.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from strongaudio_jax.data import importers  # noqa: E402

if __name__ == "__main__":
    sys.exit(importers.cli("lhotse"))
