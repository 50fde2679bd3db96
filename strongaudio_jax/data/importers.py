"""Importers to schema-v1 TFRecord shards: a folder of audio + CSV/JSONL captions, Lhotse
MonoCut manifests (as released with the UTS data), WebDataset tars of audio + json.

Every importer lists its items first, then writes shard i from items [i*S, (i+1)*S), so a rerun
skips shards that are already complete (they are never rewritten) and each shard appears under
its final name only when whole (written to '<name>.tmp' and renamed). A path that leaves the
given audio root (.., absolute paths elsewhere, symlinks out) is refused: manifests are input
from elsewhere and must not read arbitrary files.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import gzip
import io
import json
import math
import os
import tarfile
from typing import Callable, Iterable, Sequence

import soundfile as sf

from strongaudio_jax.data import audio, index as index_lib, schema, storage, tfrecord

AUDIO_SUFFIXES = (".flac", ".wav", ".ogg", ".mp3", ".opus", ".aiff", ".aif")


class ImportErrorWithPlace(ValueError):
    """An input the importer cannot use; names the manifest line or file and what to do."""


def safe_path(root: str, name: str) -> str:
    """`name` (relative to `root`, or absolute) as a real path inside `root`, else an error."""
    real_root = os.path.realpath(root)
    path = os.path.realpath(name if os.path.isabs(name) else os.path.join(root, name))
    if path != real_root and not path.startswith(real_root + os.sep):
        raise ImportErrorWithPlace(f"{name!r} resolves to {path}, outside the audio root "
                                   f"{real_root}; refusing to read it (fix the manifest or "
                                   "pass the right --audio-root)")
    return path


@dataclasses.dataclass
class Item:
    """One clip to write; `load` returns it (audio is read only when its shard is written)."""
    where: str  # names the item in errors: manifest line or file
    load: Callable[[], schema.Clip]


def clip_from_audio(cid: str, data: bytes, where: str, *, start: float = 0.0,
                    duration: float | None = None, channel: int | None = None,
                    **fields) -> schema.Clip:
    """A Clip from encoded audio bytes. Whole FLAC/WAV/OGG files are kept byte for byte (the
    pipeline downmixes several channels when reading); cuts, channel picks and other formats
    are decoded and re-encoded as 16-bit mono FLAC."""
    try:
        info = sf.info(io.BytesIO(data))
    except Exception as e:  # noqa: BLE001 (soundfile raises several types)
        raise ImportErrorWithPlace(f"{where}: audio cannot be decoded ({e})") from e
    fmt = info.format.lower()
    whole = start == 0 and (duration is None or duration * info.samplerate >= info.frames)
    if whole and fmt in schema.AUDIO_FORMATS and channel is None:
        return schema.Clip(id=cid, audio=data, format=fmt, sample_rate=info.samplerate,
                           num_samples=info.frames, **fields)
    try:
        wave, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as e:  # noqa: BLE001
        raise ImportErrorWithPlace(f"{where}: audio cannot be decoded ({e})") from e
    first = int(round(start * rate))
    last = len(wave) if duration is None else first + int(round(duration * rate))
    if first >= len(wave) or last > len(wave) + 1:
        raise ImportErrorWithPlace(f"{where}: cut {start:.3f}+{duration} s is outside the "
                                   f"recording ({len(wave) / rate:.3f} s)")
    wave = wave[first:last]
    wave = wave[:, channel] if channel is not None else wave.mean(axis=1)
    return schema.Clip(id=cid, audio=audio.encode(wave, rate), format="flac", sample_rate=rate,
                       num_samples=len(wave), **fields)


def write_shards(items: Sequence[Item], out_dir: str, *, prefix: str = "train",
                 clips_per_shard: int = 1000, progress: bool = True) -> dict:
    """Writes <out_dir>/<prefix>-00000-of-000NN.tfrecord...; skips shards already complete."""
    if not items:
        raise ImportErrorWithPlace("nothing to import: the input lists no clips")
    if not storage.is_url(out_dir):
        os.makedirs(out_dir, exist_ok=True)
    n = math.ceil(len(items) / clips_per_shard)
    done = skipped = 0
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(items), unit="clip", desc=f"importing into {out_dir}")
    for i in range(n):
        chunk = items[i * clips_per_shard:(i + 1) * clips_per_shard]
        final = storage.join(out_dir, f"{prefix}-{i:05d}-of-{n:05d}.tfrecord")
        if storage.exists(final):
            skipped += 1
            if not storage.exists(tfrecord.index_path(final)):  # stopped before its index
                index_lib.write_sidecar(final)
        else:
            tmp = final + ".tmp"
            with _writer(tmp) as w:
                for item in chunk:
                    w.write(schema.clip_to_example(item.load()))
            storage.rename(tmp, final)
            index_lib.write_sidecar(final, w.w.rows)  # hosts index it with one small read
            done += 1
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return {"shards": n, "written": done, "already_complete": skipped, "clips": len(items)}


class _writer:
    """A TFRecordWriter for local paths, or one that uploads the finished file for URLs."""

    def __init__(self, path: str):
        self.path = path
        self.local = path if not storage.is_url(path) else f"/tmp/{os.getpid()}-upload.tfrecord"
        self.w = tfrecord.TFRecordWriter(self.local, compression="")

    def write(self, data: bytes) -> None:
        self.w.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.w.close()
        if self.local != self.path:
            with open(self.local, "rb") as src, storage.open_file(self.path, "wb") as dst:
                dst.write(src.read())
            os.remove(self.local)


def _tags(value) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        sep = ";" if ";" in value else ","
        return tuple(t.strip() for t in value.split(sep) if t.strip())
    return tuple(str(t).strip() for t in value if str(t).strip())


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


# ---------------------------------------------------------------- (a) folder + CSV/JSONL


def folder_items(audio_root: str, metadata: str | None = None) -> list[Item]:
    """Items of a folder: the rows of `metadata` (CSV with a header, or JSONL; fields `path`
    (or `file`), `caption`, `tags` (list, or ';'/','-separated), optional `id`, `summary`,
    `source`), or without metadata every audio file under the folder, sorted."""
    if metadata is None:
        rows = [{"path": os.path.relpath(os.path.join(d, f), audio_root)}
                for d, _, files in sorted(os.walk(audio_root)) for f in sorted(files)
                if f.lower().endswith(AUDIO_SUFFIXES)]
        places = [f"{audio_root}/{r['path']}" for r in rows]
    else:
        with open(metadata, newline="") as f:
            if metadata.endswith((".jsonl", ".json")):
                rows = [json.loads(line) for line in f if line.strip()]
            else:
                rows = list(csv.DictReader(f))
        places = [f"{metadata} line {i + (1 if metadata.endswith(('.jsonl', '.json')) else 2)}"
                  for i in range(len(rows))]
    items = []
    for row, where in zip(rows, places):
        rel = row.get("path") or row.get("file")
        if not rel:
            raise ImportErrorWithPlace(f"{where}: no 'path' (or 'file') field in {row!r}")
        path = safe_path(audio_root, rel)
        cid = row.get("id") or os.path.splitext(rel)[0].replace(os.sep, "/")
        fields = dict(caption=row.get("caption") or "", summary=row.get("summary") or "",
                      tags=_tags(row.get("tags")), source=row.get("source") or "")
        items.append(Item(where, lambda path=path, cid=cid, where=where, fields=fields:
                          clip_from_audio(cid, _read_file(path), where, **fields)))
    return items


# ---------------------------------------------------------------- (b) Lhotse MonoCut JSONL


class SourceResolver:
    """Recording id -> audio file of one source dataset, as the user lays it out: a pattern
    with `{id}` (`/data/audioset/{id}.flac`) or an id -> path table (a .json object, or a .tsv /
    .csv of `id<TAB or ,>path` rows; relative paths are relative to the table)."""

    def __init__(self, name: str, spec: str):
        self.name, self.spec = name, spec
        self.table: dict[str, str] | None = None
        if "{id}" in spec:
            self.root = os.path.dirname(spec.split("{id}", 1)[0]) or "."
            return
        if not os.path.isfile(spec):
            raise ImportErrorWithPlace(f"--audio {name}={spec}: neither a pattern with {{id}} "
                                       f"(e.g. {name}=/data/{name}/{{id}}.flac) nor an id -> path "
                                       "table file (.json, .tsv, .csv)")
        base = os.path.dirname(os.path.abspath(spec))
        with open(spec, newline="") as f:
            if spec.endswith(".json"):
                rows = json.load(f).items()
            else:
                rows = [r[:2] for r in csv.reader(f, delimiter="\t" if spec.endswith(".tsv") else ",")
                        if len(r) >= 2 and not r[0].startswith("#")]
        self.table = {str(k): os.path.join(base, str(v)) for k, v in rows}

    def path(self, rec_id: str) -> str | None:
        """The file of recording `rec_id`, or None when the user's copy lacks it."""
        if self.table is not None:
            path = self.table.get(rec_id)
        else:
            path = safe_path(self.root, self.spec.replace("{id}", rec_id))
        return path if path is not None and os.path.isfile(path) else None


def parse_sources(specs: Sequence[str]) -> dict[str, SourceResolver]:
    """`["audioset=/data/audioset/{id}.flac", "vggsound=ids.tsv"]` -> resolvers by dataset."""
    out = {}
    for spec in specs:
        name, sep, where = spec.partition("=")
        if not sep or not name or not where:
            raise ImportErrorWithPlace(f"--audio {spec!r}: use DATASET=PATTERN (e.g. "
                                       "audioset=/data/audioset/{id}.flac) or DATASET=TABLE")
        out[name] = SourceResolver(name, where)
    return out


@dataclasses.dataclass
class LhotseReport:
    """What the Lhotse import found and did, field by field (printed by the tool)."""
    clips: int = 0
    missing: list = dataclasses.field(default_factory=list)  # (cut id, recording id, dataset)
    sources: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    caption_words: int = 0
    caption_lists: int = 0  # list-valued caption: its first item kept
    no_caption: int = 0
    original: int = 0  # clips with weak captions
    original_total: int = 0
    summaries: int = 0
    tags: int = 0
    tags_total: int = 0
    ignored: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    def lines(self) -> list[str]:
        n = max(self.clips, 1)
        out = [
            f"caption          <- supervisions[0].custom.caption (the long caption): "
            f"{self.clips - self.no_caption} of {self.clips} clips, "
            f"{self.caption_words / n:.0f} words on average"
            + (f"; {self.caption_lists} were lists, their first item kept" if self.caption_lists else ""),
            f"caption/original <- custom.original_caption (the source datasets' weak captions, "
            f"kept apart): {self.original} clips, {self.original_total} captions",
            f"caption/summary  <- custom.summary: {self.summaries} clips"
            + (" (the release has none: left empty)" if not self.summaries else ""),
            f"tags             <- custom.audio_tag: {self.tags} clips, "
            f"{self.tags_total / n:.1f} tags per clip",
            "source           <- recording.sources[0].source: "
            + ", ".join(f"{k} ({v})" for k, v in sorted(self.sources.items())),
        ]
        if self.ignored:
            out.append("not imported     : custom." + ", custom.".join(
                f"{k} ({v})" for k, v in sorted(self.ignored.items())))
        if self.missing:
            shown = ", ".join(f"{c} ({d}:{r})" for c, r, d in self.missing[:10])
            out.append(f"MISSING audio    : {len(self.missing)} clips skipped, e.g. {shown}")
        return out


_CUSTOM_READ = ("caption", "original_caption", "summary", "audio_tag")


def _as_texts(value) -> list[str]:
    if value is None:
        return []
    values = [value] if isinstance(value, str) else list(value)
    return [str(v).strip() for v in values if str(v).strip()]


def lhotse_import(manifest: str, audio_root: str | None = None, *,
                  sources: dict[str, SourceResolver] | None = None,
                  fail_on_missing: bool = False) -> tuple[list[Item], LhotseReport]:
    """Items of a Lhotse cuts manifest (JSONL, optionally .gz) of MonoCuts, and a report of
    what was done with each field.

    Audio: a recording whose `sources[0].source` names a dataset in `sources` (the released
    UTS manifests: `"source": "audioset"`) is found by its recording id through that dataset's
    resolver; any other source is a file path under `audio_root`. The clip is cut to
    [start, start + duration) and its channel. Clips whose audio is not found are skipped
    and listed in the report (an error with fail_on_missing).
    Text (supervisions[0].custom, as released): `caption` is THE caption (the long one; a
    list keeps its first item), `original_caption` (a string or a list) the weak captions
    (schema `caption/original`), `summary` the summary if present, `audio_tag` the tags
    (a list, or a ';'/','-separated string)."""
    sources = sources or {}
    report = LhotseReport()
    opener = gzip.open if manifest.endswith(".gz") else open
    items, unresolved = [], collections.Counter()
    with opener(manifest, "rt") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{manifest} line {n}"
            try:
                cut = json.loads(line)
                rec = cut["recording"]
                source = next(s for s in rec["sources"] if s.get("type", "file") == "file")
                sup = (cut.get("supervisions") or [{}])[0]
                custom = sup.get("custom") or {}
                start, duration = float(cut.get("start", 0.0)), cut.get("duration")
                rec_id, name = str(rec["id"]), str(source["source"])
            except (ValueError, KeyError, StopIteration, TypeError) as e:
                raise ImportErrorWithPlace(f"{where}: not a Lhotse MonoCut with a file source "
                                           f"({type(e).__name__}: {e})") from None
            cid = str(cut.get("id", rec_id))
            if name in sources:
                path = sources[name].path(rec_id)
            elif audio_root is not None:
                path = safe_path(audio_root, name)
                path = path if os.path.isfile(path) else None
            else:
                unresolved[name] += 1
                continue
            report.sources[name if name in sources else "files under --audio-root"] += 1
            if path is None:
                report.missing.append((cid, rec_id, name))
                continue
            captions = _as_texts(custom.get("caption") or sup.get("text"))
            original = _as_texts(custom.get("original_caption"))
            summary = " ".join(_as_texts(custom.get("summary")))
            tags = _tags(custom.get("audio_tag"))
            report.clips += 1
            report.caption_words += len(captions[0].split()) if captions else 0
            report.caption_lists += isinstance(custom.get("caption"), list)
            report.no_caption += not captions
            report.original += bool(original)
            report.original_total += len(original)
            report.summaries += bool(summary)
            report.tags += bool(tags)
            report.tags_total += len(tags)
            report.ignored.update(k for k in custom if k not in _CUSTOM_READ)
            channel = cut.get("channel")
            channel = channel[0] if isinstance(channel, list) else channel
            if channel is not None and len(source.get("channels", [0])) == 1:
                channel = None  # a mono file: nothing to pick
            fields = dict(caption=captions[0] if captions else "", summary=summary,
                          original_captions=tuple(original), tags=tags,
                          source=name if name in sources else rec_id)
            items.append(Item(where, lambda path=path, cid=cid, where=where, start=start,
                              duration=duration, channel=channel, fields=fields:
                              clip_from_audio(cid, _read_file(path), where, start=start,
                                              duration=None if duration is None else float(duration),
                                              channel=channel, **fields)))
    if unresolved:
        names = ", ".join(f"{k!r} ({v} clips)" for k, v in sorted(unresolved.items()))
        first = sorted(unresolved)[0]
        raise ImportErrorWithPlace(
            f"{manifest}: recording sources {names} name no dataset given with --audio and no "
            f"--audio-root was given; say where that dataset's files are, e.g. "
            f"--audio {first}=/data/{first}/{{id}}.flac (or DATASET=ids.tsv)")
    if report.missing and fail_on_missing:
        raise ImportErrorWithPlace(f"{manifest}: audio of {len(report.missing)} clips not found, "
                                   f"e.g. {report.missing[:5]}; fix the --audio patterns or drop "
                                   "--fail-on-missing to import the others")
    return items, report


def lhotse_items(manifest: str, audio_root: str | None = None, **kw) -> list[Item]:
    """The items of `lhotse_import` (without its report)."""
    return lhotse_import(manifest, audio_root, **kw)[0]


# ---------------------------------------------------------------- (c) WebDataset tars


def webdataset_items(tars: Iterable[str]) -> list[Item]:
    """Items of WebDataset shards: members grouped by key (the name up to the first dot after
    the last '/'); each sample needs one audio member and may have a .json with caption /
    tags (or text / summary / source). Member names with '..' or a leading '/' are refused."""
    items = []
    for tar_path in tars:
        with tarfile.open(tar_path) as tar:
            samples: dict[str, dict[str, tarfile.TarInfo]] = {}
            for m in tar.getmembers():
                if not m.isfile():
                    continue
                if m.name.startswith("/") or ".." in m.name.split("/"):
                    raise ImportErrorWithPlace(f"{tar_path}: member {m.name!r} escapes the "
                                               "archive root; refusing it")
                base = m.name.rsplit("/", 1)[-1]
                key = m.name[:len(m.name) - len(base)] + base.split(".", 1)[0]
                ext = base.split(".", 1)[1].lower() if "." in base else ""
                samples.setdefault(key, {})[ext] = m
        for key, members in samples.items():
            where = f"{tar_path} sample {key!r}"
            audio_ext = [e for e in members if "." + e.rsplit(".", 1)[-1] in AUDIO_SUFFIXES]
            if len(audio_ext) != 1:
                raise ImportErrorWithPlace(f"{where}: expected one audio member, found "
                                           f"{sorted(members)}")
            items.append(Item(where, lambda tar_path=tar_path, key=key, where=where,
                              a=members[audio_ext[0]], j=members.get("json"):
                              _webdataset_clip(tar_path, key, where, a, j)))
    return items


def _webdataset_clip(tar_path, key, where, audio_member, json_member) -> schema.Clip:
    with tarfile.open(tar_path) as tar:
        data = tar.extractfile(audio_member).read()
        meta = json.loads(tar.extractfile(json_member).read()) if json_member else {}
    return clip_from_audio(meta.get("id") or key.rsplit("/", 1)[-1], data, where,
                           caption=meta.get("caption") or meta.get("text") or "",
                           summary=meta.get("summary") or "", tags=_tags(meta.get("tags")),
                           source=meta.get("source") or os.path.basename(tar_path))


def cli(kind: str, argv: Sequence[str] | None = None) -> int:
    """Shared command line of tools/import_{folder,lhotse,webdataset}.py."""
    import argparse

    ap = argparse.ArgumentParser(description={
        "folder": "Folder of audio files (+ CSV/JSONL captions and tags) -> TFRecord shards.",
        "lhotse": "Lhotse MonoCut JSONL(.gz) manifest (e.g. the released UTS ones) + your copy of "
                  "the audio -> TFRecord shards.",
        "webdataset": "WebDataset tar shards of audio + json -> TFRecord shards."}[kind])
    if kind == "folder":
        ap.add_argument("--audio-root", required=True)
        ap.add_argument("--metadata", help="CSV (header: path,caption,tags,...) or JSONL")
    elif kind == "lhotse":
        ap.add_argument("--manifest", required=True, help="cuts .jsonl or .jsonl.gz")
        ap.add_argument("--audio", action="append", default=[], metavar="DATASET=WHERE",
                        help="where a source dataset's recordings are, by recording id: a pattern "
                        "(audioset=/data/audioset/{id}.flac) or an id->path table (.json/.tsv/.csv); "
                        "repeat per dataset (the released UTS manifests name datasets, not files)")
        ap.add_argument("--audio-root", help="recording sources that are file paths are under here")
        ap.add_argument("--fail-on-missing", action="store_true",
                        help="stop when some clip's audio is not found (default: skip and list them)")
        ap.add_argument("--missing-list", help="write the ids of clips whose audio is missing here")
    else:
        ap.add_argument("tars", nargs="+", help="WebDataset .tar shards")
    ap.add_argument("--out", required=True, help="output directory (local or gs://...)")
    ap.add_argument("--prefix", default="train", help="shard name prefix (train, heldout, ...)")
    ap.add_argument("--clips-per-shard", type=int, default=1000)
    args = ap.parse_args(argv)
    try:
        if kind == "folder":
            items = folder_items(args.audio_root, args.metadata)
        elif kind == "lhotse":
            items, report = lhotse_import(args.manifest, args.audio_root,
                                          sources=parse_sources(args.audio),
                                          fail_on_missing=args.fail_on_missing)
            print("\n".join(report.lines()), flush=True)
            if args.missing_list:
                with open(args.missing_list, "w") as f:
                    f.writelines(f"{c}\t{d}\t{r}\n" for c, r, d in report.missing)
        else:
            items = webdataset_items(args.tars)
        result = write_shards(items, args.out, prefix=args.prefix,
                              clips_per_shard=args.clips_per_shard)
    except (ImportErrorWithPlace, OSError) as e:
        print(f"import_{kind}: error: {e}", flush=True)
        return 2
    if kind == "lhotse":
        result["missing"] = len(report.missing)
    print(json.dumps(result))
    return 0
