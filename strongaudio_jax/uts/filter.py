"""Map each clip's tags onto a chosen vocabulary; drop (and count) clips left with none.

Tags are matched after normalisation on both sides, so a clip tagged "Cars" matches the
vocabulary entry "car", and "low-frequency" matches a released "low_frequency"; the clip
then carries the vocabulary's own spelling, which is what training looks up. Two outputs:
  - rewritten TFRecord shards (same shard names, tags replaced, provenance in tags/model);
  - a side index (JSONL: id -> vocabulary tags and indices) that leaves the shards untouched.
Tags may come from the records themselves or from a tag file written by `uts tag`; records
labelled with AudioSet class names are translated through an AudioSet bridge first.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable, Mapping, Sequence

from strongaudio_jax.uts.normalize import Normalizer


@dataclasses.dataclass
class FilterStats:
    clips: int = 0
    kept: int = 0
    dropped_no_tags: int = 0  # none of the clip's tags is in the vocabulary
    missing_from_tag_file: int = 0  # tag file given, but it has no usable row for the clip
    tags_in: int = 0
    tags_kept: int = 0

    def line(self) -> str:
        return (f"{self.clips} clips: kept {self.kept}, dropped {self.dropped_no_tags} with no "
                f"vocabulary tag, {self.missing_from_tag_file} without tags in the tag file; "
                f"{self.tags_kept}/{self.tags_in} tags kept")


class VocabularyMap:
    """Tag -> (vocabulary index, vocabulary spelling): the exact spelling if the vocabulary has
    it, else the first entry with the same normalised form (released vocabularies hold some
    pairs such as "drum" / "drums" that normalise alike)."""

    def __init__(self, vocab: Sequence[str], normalize: Normalizer):
        self.normalize = normalize
        self.exact: dict[str, tuple[int, str]] = {}
        self.index: dict[str, tuple[int, str]] = {}
        for i, tag in enumerate(vocab):
            self.exact.setdefault(tag, (i, tag))
            self.index.setdefault(normalize(tag) or tag, (i, tag))

    def lookup(self, tag: str) -> tuple[int, str] | None:
        return self.exact.get(tag) or self.index.get(self.normalize(tag) or tag)

    def __call__(self, tags: Sequence[str]) -> list[tuple[int, str]]:
        out: list[tuple[int, str]] = []
        for t in tags:
            hit = self.lookup(t)
            if hit and hit not in out:
                out.append(hit)
        return out


def filter_shards(files: Sequence[str], vocab: Sequence[str], normalize: Normalizer, *,
                  tag_rows: Mapping[str, dict] | None = None, out_dir: str | None = None,
                  index_path: str | None = None, provenance: str = "",
                  translate: Callable[[Sequence[str]], list[str]] | None = None,
                  bad=None) -> FilterStats:
    """Writes filtered shards to out_dir and/or a side index; returns the counts. A bad
    record raises naming it, or with `bad` (pipeline.BadData(skip=True)) is counted there and
    left out.

    translate: applied to each clip's tags first, e.g. AudioSet class names -> UTS tags
    (`bridge.translator`)."""
    from strongaudio_jax.data import pipeline, schema, tfrecord

    if not out_dir and not index_path:
        raise ValueError("give an output: a folder for rewritten shards, a side-index path, "
                         "or both")
    vmap = VocabularyMap(vocab, normalize)
    stats = FilterStats()
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        for path in files:
            if os.path.abspath(os.path.dirname(path)) == os.path.abspath(out_dir):
                raise ValueError(f"output folder {out_dir!r} holds the input {path!r}; "
                                 "write the filtered shards elsewhere")
    index = open(index_path, "w", encoding="utf-8") if index_path else None
    try:
        for path in files:
            writer = (tfrecord.TFRecordWriter(os.path.join(out_dir, os.path.basename(path)))
                      if out_dir else None)
            try:
                for clip in pipeline.clips([path], bad=bad):
                    stats.clips += 1
                    if tag_rows is not None:
                        row = tag_rows.get(clip.id)
                        if row is None:
                            stats.missing_from_tag_file += 1
                            continue
                        tags = row["tags"]
                    else:
                        tags = clip.tags
                    stats.tags_in += len(tags)  # before translation: lost classes show here
                    hits = vmap(translate(tags) if translate else tags)
                    stats.tags_kept += len(hits)
                    if not hits:
                        stats.dropped_no_tags += 1
                        continue
                    stats.kept += 1
                    if index:
                        index.write(json.dumps({"id": clip.id, "tags": [t for _, t in hits],
                                                "indices": [j for j, _ in hits]},
                                               ensure_ascii=False) + "\n")
                    if writer:
                        # The record's own scores follow their tags; tags from a tag file score 1.
                        scores: dict = {}
                        for t, sc in zip(clip.tags, clip.tag_scores) if tag_rows is None else ():
                            scores.setdefault(vmap.lookup(t), sc)
                        clip.tags = tuple(t for _, t in hits)
                        clip.tag_scores = tuple(scores.get(h, 1.0) for h in hits)
                        if provenance:
                            clip.tags_model = provenance
                        writer.write(schema.clip_to_example(clip))
            finally:
                if writer:
                    writer.close()
    finally:
        if index:
            index.close()
    return stats
