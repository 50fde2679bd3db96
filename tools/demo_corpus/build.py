"""Renders a plan in parallel and writes TFRecord shards plus corpus.json."""

from __future__ import annotations

import collections
import json
import math
import multiprocessing
import os
import random
import shutil
import sys
import tempfile
import time

import numpy as np

from strongaudio_jax.data import schema, tfrecord

from . import audio, captions, events, music, plan, speech
from .sources import (APT_GET, EVENT_SOURCES, SOUNDFONT, SOUND_PACKAGES, ALL_PACKAGES, package_version,
                      tool_versions)

GENERATOR = "tools/make_demo_corpus.py"
GENERATOR_VERSION = 1
TEXT_MODEL = f"demo-corpus-templates-v{GENERATOR_VERSION} (written from ground-truth metadata)"

_TMP = None  # per-process scratch dir, set by _init


def _init(tmp: str) -> None:
    global _TMP
    _TMP = tmp


def source_text(spec: dict) -> str:
    """Human-readable provenance for the record's `source` field (no machine-specific versions)."""
    parts = []
    if spec["speech"]:
        s = spec["speech"]
        if s["engine"] == "festival":
            parts.append(f"festival voice_kal_diphone (stretch {s['stretch']}, f0 {s['f0']} Hz)")
        else:
            parts.append(f"espeak-ng voice {s['voice']}+{s['variant']} ({s['rate']} wpm, pitch {s['pitch']})")
        parts[-1] += f", sentence {s['language']}/{s['topic']}"
    if spec["music"]:
        m = spec["music"]
        parts.append(f"fluidsynth + FluidR3_GM.sf2, generated MIDI ({m['family']}: programs "
                     f"{m['lead_program']}/{m['acc_program']}, {m['bpm']} bpm, {music.key_name(m)})")
    if spec["event"]:
        src = events.SOURCES_BY_ID[spec["event"]["source"]]
        parts.append(f"Debian package {src.package}: {', '.join(src.files)} ({src.license})")
    return " + ".join(parts)


def render_audio(spec: dict, tmp: str) -> np.ndarray:
    """The clip's waveform (16 kHz mono float32, exactly num_samples long)."""
    n = spec["num_samples"]
    if spec["speech"]:
        fg = speech.render_speech(spec["speech"], n, tmp)
    elif spec["music"]:
        fg = music.render_music(spec["music"], n, tmp, spec["id"])
    else:
        fg = None
    x = fg
    if spec["event"]:
        ev = events.render_event(spec["event"], n)
        x = ev if fg is None else audio.mix_at_snr(fg, ev, spec["mix"]["snr_db"])
    rng = np.random.default_rng(spec["seed"])
    t = spec["traits"]
    if t["reverb"]:
        x = audio.add_reverb(x, rng, t["reverb"]["rt60"], t["reverb"]["wet"])
    if t["noise"]:
        g = 10 ** ((audio.active_rms_db(x) - t["noise"]["snr_db"]) / 20)
        x = x + g * audio.make_noise(rng, t["noise"]["kind"], n)
    x = audio.set_level(x, t["level_db"])
    if len(x) != n or not np.isfinite(x).all() or audio.rms_db(x) < -70:
        raise RuntimeError(f"clip {spec['id']}: rendering produced unusable audio")
    return x


def render_clip(spec: dict) -> dict:
    """Worker: one plan entry -> serialised record + the metadata corpus.json keeps."""
    tmp = os.path.join(_TMP, spec["id"])
    os.makedirs(tmp, exist_ok=True)
    try:
        x = render_audio(spec, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    caption, summary, tags = captions.describe(spec)
    clip = schema.Clip(id=spec["id"], audio=audio.flac_bytes(x), format="flac", sample_rate=audio.SR,
                       num_samples=len(x), caption=caption, summary=summary, tags=tags,
                       tag_scores=[1.0] * len(tags), source=source_text(spec), caption_model=TEXT_MODEL,
                       tags_model=TEXT_MODEL, labels=dict(spec["labels"]))
    return {"id": spec["id"], "record": schema.clip_to_example(clip), "caption": caption, "summary": summary,
            "tags": tags, "source": clip.source, "flac_bytes": len(clip.audio),
            "peak": round(float(np.max(np.abs(x))), 4), "rms_db": round(audio.rms_db(x), 2)}


def _progress(total: int):
    """tqdm on a terminal, otherwise a line every ~10%."""
    if sys.stderr.isatty():
        from tqdm import tqdm
        bar = tqdm(total=total, unit="clip", desc="rendering", file=sys.stderr)
        return bar.update, bar.close
    state = {"done": 0, "next": 0.1, "t0": time.time()}

    def update(k=1):
        state["done"] += k
        if state["done"] / total >= state["next"] or state["done"] == total:
            print(f"rendered {state['done']}/{total} clips ({time.time() - state['t0']:.0f} s)",
                  file=sys.stderr, flush=True)
            state["next"] += 0.1
    return update, lambda: None


def _counts(specs: list[dict]) -> dict:
    out: dict = {}
    for split in plan.SPLITS:
        part = [s for s in specs if s["split"] == split]
        c = {"clips": len(part)}
        for key in ("domain", "language", "instrument", "event"):
            c[key] = dict(sorted(collections.Counter(s["labels"][key] for s in part if key in s["labels"]).items()))
        c["recordings"] = len({s["labels"]["recording"] for s in part})
        out[split] = c
    return out


def build(out_dir: str, num_clips: int, seed: int, shard_size: int, jobs: int, command: str) -> dict:
    t0 = time.time()
    specs = plan.make_plan(num_clips, seed)
    os.makedirs(out_dir, exist_ok=True)
    for f in os.listdir(out_dir):  # a rebuild replaces the previous corpus, never mixes with it
        if f.endswith(".tfrecord") or f == "corpus.json":
            os.remove(os.path.join(out_dir, f))
    n_split = collections.Counter(s["split"] for s in specs)
    shards = {sp: max(1, math.ceil(n_split[sp] / shard_size)) for sp in plan.SPLITS if n_split[sp]}
    pos = collections.Counter()
    writers: dict = {}
    shard_files: dict = {sp: [] for sp in shards}
    results = {}
    tmp = tempfile.mkdtemp(prefix="demo_corpus_")
    update, close = _progress(len(specs))
    pool = None
    try:
        if jobs > 1:
            pool = multiprocessing.get_context("fork").Pool(jobs, initializer=_init, initargs=(tmp,))
            it = pool.imap(render_clip, specs, chunksize=1)
        else:
            _init(tmp)
            it = map(render_clip, specs)
        for spec, res in zip(specs, it):
            sp = spec["split"]
            shard = pos[sp] // shard_size
            if (sp, shard) not in writers:
                for key in [k for k in writers if k[0] == sp]:
                    writers.pop(key).close()
                name = f"{sp}-{shard:05d}-of-{shards[sp]:05d}.tfrecord"
                shard_files[sp].append(name)
                writers[(sp, shard)] = tfrecord.TFRecordWriter(os.path.join(out_dir, name))
            writers[(sp, shard)].write(res.pop("record"))
            pos[sp] += 1
            results[spec["id"]] = res
            update(1)
        if pool:
            pool.close()
            pool.join()
            pool = None
        tools = tool_versions(tmp)
    finally:  # on failure no corpus.json is written, so a half-built directory never looks complete
        if pool:
            pool.terminate()
        close()
        for w in writers.values():
            w.close()
        shutil.rmtree(tmp, ignore_errors=True)

    tag_df = collections.Counter(t for r in results.values() for t in r["tags"])
    used = {s["event"]["source"] for s in specs if s["event"]}
    src_split = {sid: sp for cls in plan.split_sources(random.Random(seed)).values()
                 for sp, ids in cls.items() for sid in ids}
    versions = {p: package_version(p) for p in SOUND_PACKAGES}
    total_bytes = sum(os.path.getsize(os.path.join(out_dir, f)) for fs in shard_files.values() for f in fs)
    meta = {
        "name": "strongaudio demo corpus",
        "schema_version": schema.SCHEMA_VERSION,
        "generator": GENERATOR, "generator_version": GENERATOR_VERSION,
        "command": command, "seed": seed, "num_clips": len(specs), "shard_size": shard_size,
        "tools": tools,
        "soundfont": SOUNDFONT,
        "debian_packages": list(ALL_PACKAGES), "apt_get": APT_GET,
        "audio": {"sample_rate": audio.SR, "channels": 1, "format": "flac", "bits": 16,
                  "min_seconds": 2.0, "max_seconds": 5.0,
                  "total_seconds": round(sum(s["num_samples"] for s in specs) / audio.SR, 2)},
        "splits": {sp: {"clips": n_split[sp], "shards": shard_files[sp]} for sp in shard_files},
        "tfrecord_bytes": total_bytes,
        "counts": _counts(specs),
        "label_classes": {"domain": ["speech", "music", "sound", "mixture"],
                          "language": list(plan.LANGUAGE_CLASSES), "instrument": list(plan.INSTRUMENT_CLASSES),
                          "event": sorted({s.event for s in EVENT_SOURCES}), "split": list(plan.SPLITS)},
        "tag_vocabulary": [{"tag": t, "df": tag_df[t]} for t in sorted(tag_df)],
        "event_sources": [{"id": s.id, "event": s.event, "package": s.package, "version": versions[s.package],
                           "files": list(s.files), "license": s.license, "copyright": s.copyright,
                           "split": src_split[s.id], "used": s.id in used} for s in EVENT_SOURCES],
        "clips": [{"id": s["id"], "split": s["split"], "labels": s["labels"], "num_samples": s["num_samples"],
                   "seconds": round(s["num_samples"] / audio.SR, 4), "components": s["components"],
                   "speech": s["speech"], "music": s["music"], "event": s["event"], "mix": s["mix"],
                   "traits": s["traits"], **results[s["id"]]} for s in specs],
    }
    with open(os.path.join(out_dir, "corpus.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, ensure_ascii=False, indent=1)
        f.write("\n")
    return {"seconds": time.time() - t0, "bytes": total_bytes, "clips": len(specs), "counts": meta["counts"]}
