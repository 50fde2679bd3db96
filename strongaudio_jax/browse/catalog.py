"""What the browser searches: one row of metadata per record of a corpus, and queries over it.

A corpus is read once at start, record by record through the sidecar index (data/index.py:
local or bucket paths, never a whole shard in memory); each record keeps its id, lower-cased
caption and summary for text search, a caption snippet, tags with scores, source, domain
(`label/domain`), duration and any curation scores given in side files. Audio and full
captions stay in the shards and are read again by record number when a clip is opened.

A query (`Query`, parsed from URL parameters by `parse_query`) narrows the rows with numpy masks
and per-tag row lists, then tests the caption words on what is left. Results are kept per query
(LRU), so turning pages of a result is a slice, whatever the corpus size.

The metadata of each shard read without damage is kept in `$STRONGAUDIO_CACHE/browse/` (JSON,
named by a hash of the shard's path, size, modification time, record table and first and last
64 KiB), so the next start over the same shards reads that instead of every record.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import threading
from typing import Iterable, Mapping, Sequence

import numpy as np

from strongaudio_jax.data import index as index_lib, schema, storage

SNIPPET_CHARS = 240
MAX_PER_PAGE = 200
QUERY_CACHE = 64  # result row lists kept (per corpus)
METADATA_VERSION = 1  # of the per-shard metadata cache files (bump when _meta changes)
META_FIELDS = 9  # id, search text, snippet, summary, tags, scores, domain, source, seconds


class QueryError(ValueError):
    """A malformed search request (answered with HTTP 400 and this message)."""


class ScoresFileError(ValueError):
    """A curation scores file that cannot be read (names the file and what is wrong)."""


@dataclasses.dataclass(frozen=True)
class Query:
    words: tuple[str, ...] = ()  # every word must occur in caption or summary (case-insensitive)
    tags: tuple[str, ...] = ()  # every tag must be on the clip
    domain: str | None = None
    source: str | None = None
    ranges: tuple[tuple[str, float, float], ...] = ()  # (numeric column, low, high), inclusive
    tag_score_min: float | None = None  # the named tags' scores (or, without tags, any tag's)
    sort: str | None = None  # a numeric column, '-column' for descending; None: corpus order
    page: int = 0
    per_page: int = 20

    def filters(self) -> "Query":
        """The query without its page: the key of its cached result."""
        return dataclasses.replace(self, page=0, per_page=0)


def _float(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise QueryError(f"{name}={text!r} is not a number") from None
    if not math.isfinite(value):
        raise QueryError(f"{name}={text!r} must be a finite number")
    return value


def _int(name: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise QueryError(f"{name}={text!r} is not a whole number") from None
    if not low <= value <= high:
        raise QueryError(f"{name}={value} is out of range [{low}, {high}]")
    return value


def parse_query(args: Mapping[str, Sequence[str]], numeric: Iterable[str]) -> Query:
    """A Query from URL parameters (each name -> its list of values); unknown or malformed
    parameters raise QueryError naming them. `numeric` are the columns that `min.<name>` and
    `max.<name>` may filter (duration and the corpus's curation scores)."""
    numeric = set(numeric)
    single = {"q", "domain", "source", "tag_score_min", "page", "per_page", "corpus", "sort"}
    words, tags, ranges, fields = (), (), {}, {}
    for name, values in args.items():
        if name in single and len(values) > 1:
            raise QueryError(f"parameter {name!r} given {len(values)} times; give it once")
        if name == "q":
            words = tuple(values[0].lower().split())
        elif name == "tag":
            tags = tuple(t.strip().lower() for t in values if t.strip())
        elif name in ("domain", "source"):
            fields[name] = values[0] or None
        elif name == "tag_score_min":
            fields[name] = _float(name, values[0]) if values[0] else None
        elif name == "page":
            fields[name] = _int(name, values[0], 0, 10 ** 9)
        elif name == "per_page":
            fields[name] = _int(name, values[0], 1, MAX_PER_PAGE)
        elif name == "sort":
            if values[0] and values[0].lstrip("-") not in numeric:
                raise QueryError(f"cannot sort by {values[0]!r}: the numeric columns here are "
                                 f"{sorted(numeric)} (a leading '-' sorts in descending order)")
            fields[name] = values[0] or None
        elif name == "corpus":
            pass  # chosen by the server
        elif name.startswith(("min.", "max.")):
            column = name[4:]
            if column not in numeric:
                raise QueryError(f"cannot filter on {column!r}: the numeric columns here are "
                                 f"{sorted(numeric)}")
            if len(values) > 1:
                raise QueryError(f"parameter {name!r} given {len(values)} times; give it once")
            if values[0]:
                low, high = ranges.get(column, (-math.inf, math.inf))
                value = _float(name, values[0])
                ranges[column] = (value, high) if name[:3] == "min" else (low, value)
        else:
            raise QueryError(f"unknown parameter {name!r}; known: q, tag, domain, source, "
                             "tag_score_min, min.<column>, max.<column>, sort, page, per_page")
    return Query(words=words, tags=tags,
                 ranges=tuple(sorted((c, lo, hi) for c, (lo, hi) in ranges.items())), **fields)


def read_scores_file(path: str) -> dict[str, dict[str, float]]:
    """{clip id: {score name: value}} from a curation tool's side file: JSON Lines (one object
    per line with "id" and numeric fields) or CSV (a header with an `id` column). Fields that
    are not numbers (other than id) are ignored."""
    if not path.endswith((".jsonl", ".csv")):
        raise ScoresFileError(f"{path}: scores files are .jsonl or .csv (with an 'id' column)")
    text = storage.read_text(path)
    rows: list[dict] = []
    if path.endswith(".jsonl"):
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ScoresFileError(f"{path} line {n}: not JSON ({e})") from None
            if not isinstance(obj, dict):
                raise ScoresFileError(f"{path} line {n}: expected an object with an 'id'")
            rows.append(obj)
    else:
        rows = list(csv.DictReader(io.StringIO(text)))
    out: dict[str, dict[str, float]] = {}
    for n, row in enumerate(rows, 1):
        if "id" not in row:
            raise ScoresFileError(f"{path} row {n}: no 'id' field (fields: {sorted(row)})")
        values = {}
        for key, value in row.items():
            if key == "id" or isinstance(value, bool):
                continue
            try:
                values[key] = float(value)
            except (TypeError, ValueError):
                continue
        out[str(row["id"])] = values
    return out


def _categories(values: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct values, each value's position among them)."""
    names = sorted(set(values))
    position = {v: i for i, v in enumerate(names)}
    codes = np.fromiter((position[v] for v in values), np.int64, len(values))
    return np.array(names, object), codes


def _load_metas(path: str | None, n: int) -> list | None:
    """A shard's cached metadata rows, or None (no cache, or one that does not fit)."""
    if path is None or not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            metas = json.load(f)
    except (OSError, ValueError):
        return None
    fits = (isinstance(metas, list) and len(metas) == n
            and all(isinstance(m, list) and len(m) == META_FIELDS for m in metas))
    return metas if fits else None


def _save_metas(path: str, metas: list) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(metas, f, ensure_ascii=False)
    os.replace(tmp, path)


class Catalog:
    """The metadata of one corpus (a list of shard files) and the queries over it."""

    def __init__(self, name: str, paths: Sequence[str], scores_files: Sequence[str] = (),
                 progress: bool = False, cache: bool = True):
        self.name, self.paths = name, list(paths)
        self.index = index_lib.build_index(self.paths, skip_bad=True)
        self.reader = index_lib.RecordReader(self.index)
        self._read_lock = threading.Lock()  # the reader keeps open files: one user at a time
        self._cache_lock = threading.Lock()
        self._results: collections.OrderedDict = collections.OrderedDict()
        self.cached_files = 0  # shards whose metadata came from the cache
        self._scan(progress, cache)
        self._load_scores(scores_files)

    # --- building --------------------------------------------------------------------------
    def _scan(self, progress: bool, cache: bool) -> None:
        n = len(self.index)
        metas: list = [None] * n
        self.errors: dict[int, str] = {}  # row -> why it cannot be shown
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=n, desc=f"reading {self.name}", unit="clip", mininterval=1.0)
        counts = self.index.records_per_file()
        starts = np.concatenate([[0], np.cumsum(counts)])  # rows come file by file, in order
        for fi in range(len(self.paths)):
            rows = list(range(int(starts[fi]), int(starts[fi + 1])))
            cache_file = self._cache_file(fi, rows) if cache and rows else None
            got = _load_metas(cache_file, len(rows))
            if got is None:
                got = []
                for start in range(0, len(rows), 256):
                    chunk = rows[start:start + 256]
                    got += [self._meta(r, data) for r, data in zip(chunk, self.reader.read_many(chunk))]
                if cache_file and all(isinstance(m, list) for m in got):
                    _save_metas(cache_file, got)  # damage is read again at the next start
            else:
                self.cached_files += 1
            for r, m in zip(rows, got):
                if isinstance(m, str):
                    self.errors[r] = m
                else:
                    metas[r] = m
            if bar is not None:
                bar.update(len(rows))
        if bar is not None:
            bar.close()
        self._columns(metas)

    def _meta(self, row: int, data) -> list | str:
        """[id, search text, snippet, summary, tags, scores, domain, source, seconds] of one
        record, or why it cannot be read."""
        if isinstance(data, Exception):
            return str(data)
        try:
            clip = schema.example_to_clip(data, self.reader.where(row))
        except schema.SchemaError as e:
            return str(e)
        seconds = None
        if clip.num_samples >= 0 and clip.sample_rate > 0:
            seconds = clip.num_samples / clip.sample_rate
        else:
            try:
                import soundfile as sf
                seconds = sf.info(io.BytesIO(clip.audio)).duration
            except Exception:  # noqa: BLE001 (unknown length; playing it will say why)
                pass
        return [clip.id, f"{clip.summary}\n{clip.caption}".lower(), clip.caption[:SNIPPET_CHARS],
                clip.summary, list(clip.tags), list(clip.tag_scores or (1.0,) * len(clip.tags)),
                clip.labels.get("domain", ""), clip.source, seconds]

    def _columns(self, metas: list) -> None:
        n = len(metas)
        self.ids: list[str] = [""] * n
        self.text: list[str] = [""] * n  # lower-cased summary + caption, for word search
        self.snippet: list[str] = [""] * n
        self.summary: list[str] = [""] * n
        self.tags: list[tuple[str, ...]] = [()] * n
        self.tag_scores: list[tuple[float, ...]] = [()] * n
        self.duration = np.full(n, np.nan)
        self.max_tag_score = np.full(n, -np.inf)
        domains, sources = [""] * n, [""] * n
        for r, m in enumerate(metas):
            if m is None:
                continue
            (self.ids[r], self.text[r], self.snippet[r], self.summary[r], tags, scores,
             domains[r], sources[r], seconds) = m
            self.tags[r], self.tag_scores[r] = tuple(tags), tuple(scores)
            if scores:
                self.max_tag_score[r] = max(scores)
            if seconds is not None:
                self.duration[r] = seconds
        self.id_rows = {cid: r for r, cid in enumerate(self.ids) if r not in self.errors}
        self.domain_names, self.domain_codes = _categories(domains)
        self.source_names, self.source_codes = _categories(sources)
        self.ok = np.ones(n, bool)
        self.ok[list(self.errors)] = False
        by_tag: dict[str, tuple[list[int], list[float]]] = collections.defaultdict(lambda: ([], []))
        for r in np.flatnonzero(self.ok):
            for tag, score in zip(self.tags[r], self.tag_scores[r]):
                by_tag[tag][0].append(r)
                by_tag[tag][1].append(score)
        self.tag_rows = {t: (np.array(rs, np.int64), np.array(ss, np.float32))
                         for t, (rs, ss) in by_tag.items()}
        self.tag_df = sorted(((t, len(rs)) for t, (rs, _) in self.tag_rows.items()),
                             key=lambda x: (-x[1], x[0]))

    def _cache_file(self, fi: int, rows: list[int]) -> str:
        """Where file `fi`'s metadata is kept between starts: named by a hash of the shard's
        path, size, local modification time, record table and first and last 64 KiB."""
        path, read = self.paths[fi], self.index.read_paths[fi]
        size = storage.size(read)
        with storage.open_file(read) as f:
            head = f.read(1 << 16)
            f.seek(max(0, size - (1 << 16)))
            tail = f.read()
        mtime = "" if storage.is_url(read) else os.stat(read).st_mtime_ns
        table = self.index.rows[rows[0]:rows[-1] + 1, 1:]
        key = hashlib.sha1(f"{METADATA_VERSION}|{storage.abspath(path)}|{size}|{mtime}".encode()
                           + table.tobytes() + head + tail).hexdigest()[:24]
        return os.path.join(index_lib.default_cache_dir(), "browse", f"{key}.json")

    def _load_scores(self, files: Sequence[str]) -> None:
        n = len(self.ids)
        self.scores: dict[str, np.ndarray] = {}
        self.unmatched_scores = 0  # ids in the scores files that this corpus does not hold
        for path in files:
            for cid, values in read_scores_file(path).items():
                row = self.id_rows.get(cid)
                if row is None:
                    self.unmatched_scores += 1
                    continue
                for key, value in values.items():
                    if key == "duration":
                        raise ScoresFileError(f"{path}: 'duration' is the clips' own column; "
                                              "name the score something else")
                    self.scores.setdefault(key, np.full(n, np.nan))[row] = value

    # --- reading ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ids)

    @property
    def numeric(self) -> dict[str, np.ndarray]:
        return {"duration": self.duration, **self.scores}

    def check_row(self, row: int) -> None:
        if not 0 <= row < len(self):
            raise IndexError(f"corpus {self.name!r} has records 0..{len(self) - 1}, not {row}")

    def where(self, row: int) -> str:
        return self.reader.where(row)

    def read_clip(self, row: int) -> schema.Clip:
        """The record in full (read again from its shard; damage raises with where it is)."""
        self.check_row(row)
        with self._read_lock:
            data = self.reader.read(row)
        return schema.example_to_clip(data, self.where(row))

    def summary_of(self, row: int) -> dict:
        """What a result list shows of one clip."""
        tags = sorted(zip(self.tags[row], self.tag_scores[row]), key=lambda x: -x[1])
        return {
            "row": row, "id": self.ids[row], "summary": self.summary[row],
            "snippet": self.snippet[row], "tags": [[t, round(float(s), 4)] for t, s in tags],
            "domain": self.domain_names[self.domain_codes[row]],
            "source": self.source_names[self.source_codes[row]],
            "duration": None if np.isnan(self.duration[row]) else round(float(self.duration[row]), 3),
            "scores": {k: round(float(v[row]), 4) for k, v in self.scores.items()
                       if not np.isnan(v[row])},
        }

    # --- queries ---------------------------------------------------------------------------
    def search(self, query: Query) -> np.ndarray:
        """The rows matching the query's filters, in corpus order (cached per filter set)."""
        key = query.filters()
        with self._cache_lock:
            if key in self._results:
                self._results.move_to_end(key)
                return self._results[key]
        rows = self._search(key)
        with self._cache_lock:
            self._results[key] = rows
            while len(self._results) > QUERY_CACHE:
                self._results.popitem(last=False)
        return rows

    def _search(self, q: Query) -> np.ndarray:
        mask = self.ok.copy()
        for value, names, codes in ((q.domain, self.domain_names, self.domain_codes),
                                    (q.source, self.source_names, self.source_codes)):
            if value is not None:
                hit = np.flatnonzero(names == value)
                mask &= (codes == hit[0]) if len(hit) else False
        numeric = self.numeric
        for column, low, high in q.ranges:
            with np.errstate(invalid="ignore"):
                mask &= (numeric[column] >= low) & (numeric[column] <= high)
        for tag in q.tags:
            rows, scores = self.tag_rows.get(tag, (np.zeros(0, np.int64), np.zeros(0)))
            if q.tag_score_min is not None:
                rows = rows[scores >= q.tag_score_min]
            has = np.zeros_like(mask)
            has[rows] = True
            mask &= has
        if q.tag_score_min is not None and not q.tags:
            mask &= self.max_tag_score >= q.tag_score_min
        rows = np.flatnonzero(mask)
        if q.words:
            text = self.text
            rows = np.array([r for r in rows.tolist() if all(w in text[r] for w in q.words)],
                            np.int64)
        if q.sort:  # stable, so ties keep corpus order; clips without the value come last
            values = numeric[q.sort.lstrip("-")][rows]
            rows = rows[np.argsort(-values if q.sort.startswith("-") else values, kind="stable")]
        return rows

    def page(self, query: Query) -> dict:
        rows = self.search(query)
        start = query.page * query.per_page
        return {"total": int(len(rows)), "page": query.page, "per_page": query.per_page,
                "pages": max(1, -(-len(rows) // query.per_page)),
                "results": [self.summary_of(int(r)) for r in rows[start:start + query.per_page]]}

    def tag_info(self, tag: str, top: int = 20) -> dict:
        """Document frequency of a tag, its scores and the tags that occur with it most."""
        rows, scores = self.tag_rows.get(tag, (np.zeros(0, np.int64), np.zeros(0)))
        together = collections.Counter()
        for r in rows.tolist():
            together.update(self.tags[r])
        together.pop(tag, None)
        n = int(self.ok.sum())
        df = int(len(rows))
        return {"tag": tag, "df": df, "clips": n, "share": df / n if n else 0.0,
                "idf": math.log((n + 1) / (df + 1)),
                "mean_score": float(scores.mean()) if df else None,
                "rank": next((i + 1 for i, (t, _) in enumerate(self.tag_df) if t == tag), None),
                "co_occurring": together.most_common(top)}

    def info(self) -> dict:
        return {
            "name": self.name, "files": len(self.paths), "clips": int(self.ok.sum()),
            "records": len(self), "damaged": len(self.errors) + len(self.index.damaged),
            "problems": ([f"record {r}: {e}" for r, e in list(self.errors.items())[:50]]
                         + self.index.damaged[:50]),
            "domains": [d for d in self.domain_names.tolist() if d],
            "sources": [s for s in self.source_names.tolist() if s],
            "numeric": sorted(self.numeric), "scores": sorted(self.scores),
            "distinct_tags": len(self.tag_df),
            "unmatched_scores": self.unmatched_scores,
        }
