"""Streaming over the clips of schema-v1 shards, for every curation command.

`clips(files)` reads the shards one after the other (CRCs checked; corrupt, truncated or
unparseable records are counted in `ReadStats` and skipped, never silent) and shows a progress
bar over shards with the clip count. Nothing holds more than one record in memory.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterator, Sequence

from strongaudio_jax.data import index as index_lib, pipeline, schema, tfrecord
from strongaudio_jax.uts import vocab as vocab_lib


class CurateError(ValueError):
    """A curation command was given something it cannot use (says what and what to do)."""


@dataclasses.dataclass
class Damage:
    """What a pass skipped: damaged records, with where they are."""
    count: int = 0
    where: list[str] = dataclasses.field(default_factory=list)

    def add(self, what: str) -> None:
        self.count += 1
        if len(self.where) < 50:
            self.where.append(what)


def expand(patterns: str | Sequence[str]) -> list[str]:
    """Shard paths of glob patterns (local or gs:// / s3://); FileNotFoundError naming the
    pattern when one matches nothing."""
    try:
        return pipeline.expand_paths(patterns)
    except FileNotFoundError:
        raise FileNotFoundError(f"no shard matches {patterns!r}: give TFRecord / ArrayRecord "
                                "shards as a glob (quoted), e.g. 'corpus/train-*.tfrecord'") from None


def shard_records(path: str, damage: Damage) -> Iterator[tuple[int, bytes]]:
    """(record number, bytes) of one TFRecord or ArrayRecord shard; damage counted."""
    if path.endswith(index_lib.ARRAY_RECORD_SUFFIX):
        reader = index_lib.RecordReader(index_lib.build_index([path]))
        for i in range(len(reader.index)):
            yield i, reader.read(i)
        return
    stats = tfrecord.ReadStats()
    yield from enumerate(tfrecord.read_records(path, skip_corrupt=True, stats=stats))
    for bad in stats.bad:
        damage.add(bad)


def shard_clips(path: str, damage: Damage) -> Iterator[schema.Clip]:
    """The parsed clips of one shard (unparseable records counted in `damage`)."""
    for i, data in shard_records(path, damage):
        try:
            yield schema.example_to_clip(data, f"{path} record {i}")
        except schema.SchemaError as e:
            damage.add(str(e))


def clips(files: Sequence[str], desc: str, damage: Damage | None = None,
          progress: bool = True) -> Iterator[tuple[str, schema.Clip]]:
    """(shard path, clip) over every shard in order, with a progress bar on stderr."""
    from tqdm.auto import tqdm

    damage = damage if damage is not None else Damage()
    bar = tqdm(total=len(files), unit="shard", desc=desc, disable=not progress, leave=False)
    n = 0
    try:
        for path in files:
            for clip in shard_clips(path, damage):
                n += 1
                yield path, clip
            bar.update(1)
            bar.set_postfix(clips=n, damaged=damage.count)
    finally:
        bar.close()


def domain(clip: schema.Clip) -> str:
    """The clip's domain: its label/domain, else inferred from its tags (as `uts report`)."""
    return clip.labels.get("domain") or vocab_lib.infer_domain(clip.tags)


def source_group(source: str) -> str:
    """The leading name of a `source` field, for per-source tables: the text before the first
    ':', ' voice', ' (' or ' + ' ("Debian package minetest-data: /usr/..." -> "Debian package
    minetest-data", "espeak-ng voice fr-fr+m6 ..." -> "espeak-ng")."""
    head = source
    for cut in (":", " voice", " (", " + "):
        head = head.split(cut)[0]
    return head.strip()[:60] or "(none)"


def shard_key(path: str) -> str:
    """A file name for per-shard outputs of `path` (its base name, made unique by a short
    hash of the full path, so shards of the same name in two folders do not collide)."""
    import hashlib

    base = os.path.basename(path.rstrip("/"))
    return f"{base}.{hashlib.sha1(path.encode()).hexdigest()[:8]}"
