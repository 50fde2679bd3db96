#!/usr/bin/env python3
"""WebDataset tar shards (audio + json per sample) -> schema-v1 TFRecord shards.

    python tools/import_webdataset.py data/shard-*.tar --out shards/

The json may hold caption (or text), summary, tags (list or ';'-separated), source, id.
Resumable: complete shards are skipped; each shard is written to a .tmp name and renamed.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from strongaudio_jax.data import importers  # noqa: E402

if __name__ == "__main__":
    sys.exit(importers.cli("webdataset"))
