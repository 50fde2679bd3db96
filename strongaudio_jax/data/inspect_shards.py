"""`strongaudio inspect`: what a set of shards holds, and any one record in full.

Reads every record (CRCs checked, damage counted instead of raised; the records after a
damaged header are found again, as data.skip_bad finds them) and reports
records, hours of audio, sample rates and formats, caption length distribution (words), the
most frequent tags, and corrupt or unparseable records with where they are.
"""

from __future__ import annotations

import collections
import io
import json
from typing import Sequence

import numpy as np

from strongaudio_jax.data import index as index_lib, schema, storage, tfrecord


class RecordNotFoundError(FileNotFoundError):
    """--dump names a record that is not there."""


def _records(path: str, stats: tfrecord.ReadStats):
    """(record number, bytes) of a TFRecord (damage counted in stats) or ArrayRecord file."""
    if path.endswith(index_lib.ARRAY_RECORD_SUFFIX):
        reader = index_lib.RecordReader(index_lib.build_index([path]))
        for i in range(len(reader.index)):
            stats.records += 1
            yield i, reader.read(i)
        return
    if tfrecord.is_gzip(path):  # (a damaged gzip stream ends the file there)
        yield from enumerate(tfrecord.read_records(path, skip_corrupt=True, stats=stats))
        return
    # Plain files: step over a damaged header to the records after it, as data.skip_bad does.
    rows, numbers, errors = tfrecord.index_records_resync(path)
    for e in errors:
        stats.bad.append(str(e))
        stats.truncated += e.truncated
        stats.corrupt += not e.truncated
    with storage.open_file(path) as f:
        for (offset, length), i in zip(rows.tolist(), numbers.tolist()):
            f.seek(offset)
            try:
                data = tfrecord.check_record_at(f.read(length + 4), offset, length, path=path,
                                                index=i)
            except tfrecord.CorruptRecordError as e:
                stats.bad.append(str(e))
                stats.corrupt += 1
                continue
            stats.records += 1
            yield i, data


def _num_samples(clip: schema.Clip) -> int:
    if clip.num_samples >= 0:
        return clip.num_samples
    import soundfile as sf

    return sf.info(io.BytesIO(clip.audio)).frames


def summarize(files: Sequence[str], top: int = 20) -> dict:
    rates, formats, tags = collections.Counter(), collections.Counter(), collections.Counter()
    words, seconds, problems, per_file = [], 0.0, [], {}
    records = 0
    for path in files:
        stats = tfrecord.ReadStats()
        n = 0
        for i, data in _records(path, stats):
            n += 1
            try:
                clip = schema.example_to_clip(data, f"{path} record {i}")
                seconds += _num_samples(clip) / clip.sample_rate
            except Exception as e:  # noqa: BLE001 (reported, with where it is)
                problems.append(str(e))
                continue
            rates[clip.sample_rate] += 1
            formats[clip.format] += 1
            tags.update(clip.tags)
            words.append(len(clip.caption.split()))
        problems += stats.bad
        per_file[path] = n
        records += n
    w = np.array(words or [0])
    return {
        "files": len(files), "records": records, "hours": round(seconds / 3600, 4),
        "sample_rates": dict(sorted(rates.items())), "formats": dict(formats),
        "caption_words": {"min": int(w.min()), "median": float(np.median(w)),
                          "mean": round(float(w.mean()), 1), "p90": float(np.percentile(w, 90)),
                          "max": int(w.max()), "empty": int((w == 0).sum()) if words else 0},
        "distinct_tags": len(tags), "top_tags": tags.most_common(top),
        "bad_records": len(problems), "problems": problems[:50],
        "records_per_file": per_file,
    }


def dump(files: Sequence[str], which: str) -> dict:
    """One record's fields (audio as its size and decoded shape): `which` is a clip id or
    a global record number (counting through the files in order)."""
    n = 0
    for path in files:
        for i, data in _records(path, tfrecord.ReadStats()):
            clip = schema.example_to_clip(data, f"{path} record {i}")
            if clip.id == which or (which.isdigit() and int(which) == n):
                out = {"file": path, "record": i, **{
                    k: v for k, v in vars(clip).items() if k != "audio"}}
                out["audio_bytes"] = len(clip.audio)
                out["tags"], out["labels"] = list(clip.tags), dict(clip.labels)
                return out
            n += 1
    raise RecordNotFoundError(f"no record with id or number {which!r} in {len(files)} file(s)")


def print_summary(s: dict) -> None:
    print(f"{s['records']} records in {s['files']} file(s), {s['hours']:.2f} hours of audio")
    print(f"sample rates: {s['sample_rates']}   formats: {s['formats']}")
    c = s["caption_words"]
    print(f"caption words: min {c['min']}, median {c['median']:g}, mean {c['mean']}, "
          f"p90 {c['p90']:g}, max {c['max']}; empty captions: {c['empty']}")
    print(f"{s['distinct_tags']} distinct tags; most frequent:")
    for tag, count in s["top_tags"]:
        print(f"  {count:8d}  {tag}")
    print(f"bad records (corrupt, truncated or unparseable): {s['bad_records']}")
    for p in s["problems"]:
        print(f"  {p}")


def main(files: Sequence[str], top: int, which: str | None, as_json: bool) -> None:
    if which is not None:
        print(json.dumps(dump(files, which), indent=1, ensure_ascii=False))
        return
    s = summarize(files, top)
    if as_json:
        print(json.dumps(s, ensure_ascii=False))
    else:
        print_summary(s)
