#!/usr/bin/env python3
"""Lhotse MonoCut manifests (as released with the UTS data) -> schema-v1 TFRecord shards.

The released manifests name a source dataset per recording (`"source": "audioset"`), not a
file: say where your copy of each dataset is, by recording id, with a pattern or a table:

    python tools/import_lhotse.py --manifest uts_cuts.jsonl.gz --out shards/ \\
        --audio audioset=/data/audioset/{id}.flac --audio vggsound=/data/vgg_ids.tsv

Manifests whose sources are file paths take `--audio-root DIR` instead. Fields
(supervisions[0].custom): `caption` (the long high-fidelity caption) -> caption;
`original_caption` (a list of the source datasets' weak captions) -> caption/original, kept
apart; `audio_tag` -> tags; `summary` (if any) -> caption/summary. The tool prints what it did
with each field. Clips whose audio is not found are skipped, counted and listed
(`--missing-list FILE` writes all of them; `--fail-on-missing` makes them fatal).
Resumable: complete shards are skipped; each shard is written to a .tmp name and renamed.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from strongaudio_jax.data import importers  # noqa: E402

if __name__ == "__main__":
    sys.exit(importers.cli("lhotse"))
