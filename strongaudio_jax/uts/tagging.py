"""Captions in, tags out: the extractor interface, caption readers and the resumable tag file.

An extractor is any object with a `name` and `tag_many(items)` that yields `(clip_id,
TagResult)` pairs in any order as they finish. `tag_corpus` writes each result to a JSONL
file the moment it arrives, so an interrupted run keeps what it finished and the next run
sends only the clips without a usable result (failed ones are tried again unless the extractor
sets `retry_failed = False`, as the deterministic rules extractor does).

Tag file lines: {"id", "tags", "status", "problems", "extractor", "domain"}; the last line for
an id wins.
"""

from __future__ import annotations

import dataclasses
import glob
import itertools
import json
import os
from typing import Iterable, Iterator, Protocol, Sequence

from strongaudio_jax.uts.llm_reply import TagResult

DONE = ("ok", "repaired")


@dataclasses.dataclass(frozen=True)
class CaptionItem:
    id: str
    caption: str
    domain: str = ""  # the record's label/domain where it has one (for per-domain reports)
    tags: tuple[str, ...] = ()  # tags already in the record (ground truth for evaluation)


class Extractor(Protocol):
    name: str

    def tag_many(self, items: Sequence[CaptionItem]) -> Iterator[tuple[str, TagResult]]:
        ...


def expand(patterns: str | Sequence[str], what: str = "input") -> list[str]:
    """Sorted files matching glob patterns (a folder means its *.tfrecord* files)."""
    out: list[str] = []
    for p in [patterns] if isinstance(patterns, str) else patterns:
        p = os.path.expanduser(p)
        if os.path.isdir(p):
            p = os.path.join(p, "*.tfrecord*")
        found = sorted(glob.glob(p))
        if not found:
            raise FileNotFoundError(f"no {what} files match {p!r}")
        out.extend(found)
    return out


def read_captions(patterns: str | Sequence[str], bad=None) -> list[CaptionItem]:
    """Caption items from TFRecord shards (schema v1) or JSONL files ({"id", "caption"}).
    A bad record raises naming it, or with `bad` (pipeline.BadData(skip=True)) is counted
    there and left out."""
    from strongaudio_jax.data import pipeline

    items: list[CaptionItem] = []
    for path in expand(patterns, "caption"):
        if path.endswith((".jsonl", ".json")):
            with open(path, encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    row = json.loads(line)
                    if "id" not in row or "caption" not in row:
                        raise ValueError(f"{path}:{n}: a caption line needs 'id' and 'caption'")
                    items.append(CaptionItem(str(row["id"]), row["caption"], row.get("domain", ""),
                                             tuple(row.get("tags", ()))))
        else:
            for clip in pipeline.clips([path], bad=bad):
                items.append(CaptionItem(clip.id, clip.caption, clip.labels.get("domain", ""),
                                         clip.tags))
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"clip id {dup!r} occurs more than once in {patterns}; ids must be unique")
    return items


def read_tag_file(path: str) -> dict[str, dict]:
    """Latest row per clip id of a tag file. A cut-off last line (killed writer) is ignored."""
    rows: dict[str, dict] = {}
    if not os.path.exists(path):
        return rows
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            if n == len(lines):  # an unterminated last line: the writer died mid-write
                continue
            raise ValueError(f"{path}:{n}: not a JSON line") from None
        if not isinstance(row, dict) or "id" not in row or "tags" not in row:
            raise ValueError(f"{path}:{n}: a tag-file line needs 'id' and 'tags'")
        rows[row["id"]] = row
    return rows


def usable_tags(path: str) -> dict[str, dict]:
    """Rows of a tag file whose extraction succeeded (status ok or repaired)."""
    rows = read_tag_file(path)
    return {k: r for k, r in rows.items() if r.get("status") in DONE}


@dataclasses.dataclass
class TagRunStats:
    total: int = 0
    skipped_done: int = 0  # already in the tag file from an earlier run
    ok: int = 0
    repaired: int = 0
    failed: int = 0

    def line(self) -> str:
        return (f"{self.total} clips: {self.skipped_done} already tagged, {self.ok} ok, "
                f"{self.repaired} repaired, {self.failed} failed")


def tag_corpus(items: Sequence[CaptionItem], extractor: Extractor, out_path: str,
               progress=None) -> TagRunStats:
    """Tags every item not yet done in `out_path`, appending one flushed line per result."""
    # Failed clips are tried again, unless the extractor is deterministic (same caption, same
    # reply).
    retry = getattr(extractor, "retry_failed", True)
    done = usable_tags(out_path) if retry else read_tag_file(out_path)
    stats = TagRunStats(total=len(items), skipped_done=sum(it.id in done for it in items))
    pending = [it for it in items if it.id not in done and it.caption.strip()]
    no_caption = [(it.id, TagResult.failed("no caption")) for it in items
                  if it.id not in done and not it.caption.strip()]
    domains = {it.id: it.domain for it in items}
    _terminate_last_line(out_path)
    results = extractor.tag_many(pending)
    try:
        with open(out_path, "a", encoding="utf-8") as f:
            for clip_id, result in itertools.chain(no_caption, results):
                row = {"id": clip_id, "tags": result.tags, "status": result.status,
                       "problems": result.problems, "extractor": extractor.name,
                       "domain": domains.get(clip_id, "")}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                f.flush()
                setattr(stats, result.status, getattr(stats, result.status) + 1)
                if progress:
                    progress(stats)
    finally:  # on Ctrl-C or an error: the extractor stops sending (its generator's cleanup)
        close = getattr(results, "close", None)
        if close:
            close()
    return stats


def _terminate_last_line(path: str) -> None:
    """Ends an unterminated last line: kept if it is a whole row, else cut off (a writer killed
    mid-line; `read_tag_file` ignored it too, so its clip is tagged again)."""
    if not os.path.exists(path) or not os.path.getsize(path):
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data.endswith(b"\n"):
            return
        start = data.rfind(b"\n") + 1
        try:
            json.loads(data[start:])
            f.write(b"\n")
        except ValueError:
            f.truncate(start)


def results_in_order(items: Iterable[CaptionItem], fn) -> Iterator[tuple[str, TagResult]]:
    """Helper for synchronous extractors: applies fn(caption) -> TagResult item by item."""
    for it in items:
        yield it.id, fn(it.caption)
