"""`strongaudio curate plant` and `strongaudio curate dedup`: near-duplicates within a corpus
and leakage against evaluation sets, by approximate nearest neighbours (faiss) over clip
embeddings of an exported encoder.

plant: copies of chosen clips, each made three ways (re-encoded: lossy Ogg Vorbis; gain-changed by -12..-6 or +3..+6 dB; time-shifted by 0.2-0.5 s), written as a shard
plus `planted.json` (copy id -> original id, kind): the labelled check for the threshold.

dedup: embeddings (curate/embed.py, cached and resumable) of the corpus and of the evaluation
sets, centred on their common mean (`centre`); then
  * within the corpus, shard by shard: each shard's clips are searched against an index of all
    earlier shards and against themselves, then added to the index (faiss HNSW, inner product
    on L2-normalised vectors = cosine). Each pair is found once; the later clip is the one to
    remove.
  * leakage: an index of the evaluation clips, searched with every corpus clip.
Unless --no-verify, every candidate pair is then scored again by spectrogram alignment
(curate/verify.py), which tells copies from other takes of one kind of sound.
The threshold is given (--threshold) or chosen from planted copies (--labels planted.json):
positives are the (copy, original) similarities, negatives each corpus clip's best similarity
to a clip of another source and another origin (copies of different clips count); the threshold is the middle of the gap between them,
or, when they overlap, the one with the best F1 (and the overlap is reported).
"""

from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np

from strongaudio_jax.curate import records
from strongaudio_jax.curate.embed import Embeddings, normalize
from strongaudio_jax.data import audio as audio_lib, schema, tfrecord

KINDS = ("reencoded", "gain", "shifted")
SEP = "~"  # planted copy id = original id + SEP + kind


def _faiss():
    try:
        import faiss
    except ImportError:
        raise ImportError("strongaudio curate dedup searches with faiss, which is not installed: "
                          "pip install 'strongaudio_jax[curate]' (or pip install faiss-cpu)") from None
    return faiss


# ----------------------------------------------------------------------------- planted copies

def variant(wave: np.ndarray, rate: int, kind: str, rng: np.random.Generator) -> tuple[bytes, str, dict]:
    """(encoded audio, format, what was done) of one altered copy of `wave`."""
    if kind == "reencoded":  # a lossy codec round trip
        return audio_lib.encode(wave, rate, "ogg"), "ogg", {"via": "ogg vorbis"}
    if kind == "gain":
        peak = float(np.abs(wave).max()) or 1.0
        db = float(rng.uniform(3, 6)) if rng.random() < 0.5 else float(rng.uniform(-12, -6))
        db = min(db, 20 * np.log10(0.99 / peak))  # never clip
        return audio_lib.encode(wave * 10 ** (db / 20), rate), "flac", {"gain_db": round(db, 2)}
    if kind == "shifted":
        s = int(rate * rng.uniform(0.2, 0.5))
        shifted = np.concatenate([np.zeros(s, np.float32), wave[:-s] if s < len(wave) else wave[:0]])
        return audio_lib.encode(shifted, rate), "flac", {"shift_seconds": round(s / rate, 3),
                                                         "shift_samples": s}
    raise ValueError(f"unknown kind {kind!r}; one of {KINDS}")


def plant(files: Sequence[str], out_dir: str, num: int, seed: int = 0,
          kinds: Sequence[str] = KINDS, progress: bool = True) -> dict:
    """Altered copies of `num` clips drawn (seeded) from `files`: out_dir/planted.tfrecord and
    out_dir/planted.json. Returns the JSON object."""
    rng = np.random.default_rng(seed)
    all_ids = [c.id for _, c in records.clips(files, "plant: listing", progress=progress)]
    if num > len(all_ids):
        raise records.CurateError(f"--num {num} exceeds the {len(all_ids)} clips of {len(files)} shard(s)")
    chosen = set(rng.choice(len(all_ids), num, replace=False).tolist())
    chosen_ids = {all_ids[i] for i in chosen}
    os.makedirs(out_dir, exist_ok=True)
    copies = []
    with tfrecord.TFRecordWriter(os.path.join(out_dir, "planted.tfrecord")) as w:
        for _, clip in records.clips(files, "plant: copying", progress=progress):
            if clip.id not in chosen_ids:
                continue
            wave, rate = audio_lib.decode(clip.audio, f"clip {clip.id!r}")
            for kind in kinds:
                data, fmt, how = variant(wave, rate, kind, rng)
                cid = f"{clip.id}{SEP}{kind}"
                w.write(schema.clip_to_example(schema.Clip(
                    id=cid, audio=data, format=fmt, sample_rate=rate, num_samples=len(wave),
                    caption=clip.caption, summary=clip.summary, tags=clip.tags,
                    tag_scores=clip.tag_scores, source=clip.source, labels=dict(clip.labels))))
                copies.append({"id": cid, "original": clip.id, "kind": kind, **how})
    result = {"from": list(files), "seed": seed, "num_originals": num, "copies": copies}
    with open(os.path.join(out_dir, "planted.json"), "w") as f:
        json.dump(result, f, indent=1)
    return result


# ----------------------------------------------------------------------------- search

def centre(*sets: Embeddings | None) -> np.ndarray:
    """Subtracts the mean embedding of all given sets (in place) and re-normalises; returns
    the mean. Every clip of an encoder shares a common direction, which makes all cosines
    high; without it, the cosines spread out and duplicates stand apart more."""
    sets = [s for s in sets if s is not None and len(s)]
    if not sets:
        return np.zeros(0, np.float32)
    mean = np.concatenate([s.vectors for s in sets]).mean(0)
    for s in sets:
        s.vectors = normalize(s.vectors - mean)
    return mean


def make_index(dim: int, kind: str, n_expected: int):
    """An inner-product faiss index: exact ('flat') or HNSW ('hnsw'); 'auto' is exact below
    50,000 vectors."""
    faiss = _faiss()
    if kind == "auto":
        kind = "flat" if n_expected < 50_000 else "hnsw"
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = 128
        return index
    raise ValueError(f"index kind {kind!r}: use flat, hnsw or auto")


def within_pairs(emb: Embeddings, k: int, index_kind: str = "auto") -> list[tuple[int, int, float]]:
    """(later clip, earlier clip, cosine) for each clip's k nearest earlier-or-same-shard
    neighbours, building the index shard by shard (see the module docstring)."""
    faiss = _faiss()
    if not len(emb):
        return []
    x = np.ascontiguousarray(emb.vectors, np.float32)
    index = make_index(x.shape[1], index_kind, len(x))
    pairs = []
    bounds = np.flatnonzero(np.r_[True, np.array(emb.shards[1:]) != np.array(emb.shards[:-1]), True])
    for a, b in zip(bounds[:-1], bounds[1:]):
        block = x[a:b]
        if index.ntotal:
            sims, nbrs = index.search(block, min(k, index.ntotal))
            pairs += [(a + i, int(j), float(s)) for i in range(len(block))
                      for s, j in zip(sims[i], nbrs[i]) if j >= 0]
        local = faiss.IndexFlatIP(x.shape[1])  # within the shard: exact, earlier rows only
        local.add(block)
        sims, nbrs = local.search(block, min(k + 1, len(block)))
        pairs += [(a + i, a + int(j), float(s)) for i in range(len(block))
                  for s, j in zip(sims[i], nbrs[i]) if 0 <= j < i]
        index.add(block)
    return pairs


def against_pairs(emb: Embeddings, ref: Embeddings, k: int,
                  index_kind: str = "auto") -> list[tuple[int, int, float]]:
    """(corpus clip, reference clip, cosine) of each corpus clip's k nearest reference clips."""
    if not len(emb) or not len(ref):
        return []
    index = make_index(ref.vectors.shape[1], index_kind, len(ref))
    index.add(np.ascontiguousarray(ref.vectors, np.float32))
    sims, nbrs = index.search(np.ascontiguousarray(emb.vectors, np.float32), min(k, len(ref)))
    return [(i, int(j), float(s)) for i in range(len(emb)) for s, j in zip(sims[i], nbrs[i]) if j >= 0]


# ----------------------------------------------------------------------------- threshold

def calibrate(emb: Embeddings, ref: Embeddings | None, labels: dict,
              within: list, against: list, score=None) -> dict:
    """Threshold from planted copies (see the module docstring). `score(id_a, id_b)` scores a
    (copy, original) pair the way `within` and `against` were scored (default: the cosine)."""
    pos_of = {c["id"]: c for c in labels["copies"]}
    where = {cid: ("corpus", i) for i, cid in enumerate(emb.ids)}
    if ref is not None:
        where.update({cid: ("ref", i) for i, cid in enumerate(ref.ids) if cid not in where})
    vec = lambda w: (emb if w[0] == "corpus" else ref).vectors[w[1]]
    positives = []
    for cid, c in pos_of.items():
        if cid in where and c["original"] in where:
            s = (score(cid, c["original"]) if score is not None
                 else float(vec(where[cid]) @ vec(where[c["original"]])))
            positives.append((cid, c["kind"], s))
    if not positives:
        raise records.CurateError("none of the planted copies in the labels file is in the corpus together "
                         "with its original: add the planted shard to --corpus and the shards of "
                         "the originals to --corpus or --against")
    origin = lambda cid: pos_of[cid]["original"] if cid in pos_of else cid
    best: dict[int, float] = {}
    for i, j, s, other in ([(i, j, s, emb) for i, j, s in within]
                           + [(i, j, s, ref) for i, j, s in against]):
        if origin(emb.ids[i]) == origin(other.ids[j]):
            continue  # a planted copy and its original, or two copies of one clip
        if emb.sources[i] and emb.sources[i] == other.sources[j]:
            continue  # same recording: not a clean negative
        best[i] = max(best.get(i, -1.0), s)
    negatives = np.array(sorted(best.values()))
    pos = np.array([p[2] for p in positives])
    lo_pos, hi_neg = float(pos.min()), float(negatives.max()) if len(negatives) else -1.0
    if lo_pos > hi_neg:
        threshold, rule = (lo_pos + hi_neg) / 2, "middle of the gap"
    else:
        cands = np.unique(np.r_[pos, negatives])
        f1 = [_f1((pos >= t).sum(), (negatives >= t).sum(), len(pos)) for t in cands]
        threshold, rule = float(cands[int(np.argmax(f1))]), "best F1 (positives and negatives overlap)"
    per_kind = {}
    for kind in sorted({p[1] for p in positives}):
        s = np.array([p[2] for p in positives if p[1] == kind])
        per_kind[kind] = {"copies": len(s), "min": float(s.min()), "median": float(np.median(s)),
                          "recall": float((s >= threshold).mean())}
    return {"threshold": float(threshold), "rule": rule, "positives": len(pos),
            "positive_min": lo_pos, "negatives": len(negatives), "negative_max": hi_neg,
            "negative_p99": float(np.percentile(negatives, 99)) if len(negatives) else None,
            "recall": float((pos >= threshold).mean()),
            "false_alarms": int((negatives >= threshold).sum()), "by_kind": per_kind,
            "missed": [p[0] for p in positives if p[2] < threshold]}


def _f1(tp, fp, n_pos) -> float:
    return 2 * tp / max(1, 2 * tp + fp + (n_pos - tp))


# ----------------------------------------------------------------------------- report

def report(emb: Embeddings, ref: Embeddings | None, within: list, against: list, threshold: float,
           out_dir: str, calibration: dict | None = None, labels: dict | None = None) -> dict:
    """Writes pairs.jsonl, remove.txt, dedup.json and dedup.md; returns the summary."""
    planted = {c["id"]: c for c in (labels or {}).get("copies", [])}
    origin = lambda cid: planted[cid]["original"] if cid in planted else cid
    rows = []
    for kind, pairs, other in (("duplicate", within, emb), ("leak", against, ref)):
        for i, j, s in pairs:
            if s < threshold:
                continue
            rows.append({"kind": kind, "id": emb.ids[i], "match": other.ids[j],
                         "score": round(s, 5), "domain": emb.domains[i],
                         "same_source": bool(emb.sources[i]) and emb.sources[i] == other.sources[j],
                         "planted": (emb.ids[i] in planted or other.ids[j] in planted)
                         and origin(emb.ids[i]) == origin(other.ids[j])})
    rows.sort(key=lambda r: -r["score"])
    remove = sorted({r["id"] for r in rows})
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "pairs.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    with open(os.path.join(out_dir, "remove.txt"), "w") as f:
        f.writelines(i + "\n" for i in remove)
    count = lambda kind, **kw: sum(1 for r in rows if r["kind"] == kind
                                   and all(r[k] == v for k, v in kw.items()))
    summary = {
        "threshold": threshold, "corpus_clips": len(emb), "reference_clips": len(ref) if ref else 0,
        "duplicate_pairs": count("duplicate"), "leak_pairs": count("leak"),
        "planted_found": len({r["id"] for r in rows if r["planted"] and r["id"] in planted}),
        "planted_total": len(planted),
        "same_source_pairs": sum(1 for r in rows if r["same_source"] and not r["planted"]),
        "other_pairs": sum(1 for r in rows if not r["same_source"] and not r["planted"]),
        "remove": len(remove), "calibration": calibration,
    }
    with open(os.path.join(out_dir, "dedup.json"), "w") as f:
        json.dump(summary, f, indent=1)
    lines = ["# Near-duplicates and leakage", "",
             f"{len(emb)} corpus clips, {summary['reference_clips']} evaluation clips; score "
             f"threshold {threshold:.4f} (the spectrogram alignment of each candidate pair, or "
             f"the embedding cosine with --no-verify).", "",
             f"- duplicate pairs within the corpus: {summary['duplicate_pairs']}",
             f"- corpus clips matching an evaluation clip (leaks): {summary['leak_pairs']}",
             f"- planted copies found: {summary['planted_found']} of {summary['planted_total']}",
             f"- pairs of clips from the same source recording: {summary['same_source_pairs']}",
             f"- other pairs (not planted, different sources): {summary['other_pairs']}",
             f"- clips to remove (remove.txt): {len(remove)}", ""]
    if calibration:
        c = calibration
        lines += ["## Threshold from planted copies", "",
                  f"{c['positives']} planted copies (score against their original >= {c['positive_min']:.4f}); "
                  f"{c['negatives']} corpus clips (best score against a clip of another source and origin <= "
                  f"{c['negative_max']:.4f}). Rule: {c['rule']}; recall {c['recall']:.3f}, "
                  f"false alarms {c['false_alarms']}.", "",
                  "| kind | copies | min score | median score | recall |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {v['copies']} | {v['min']:.4f} | {v['median']:.4f} | {v['recall']:.3f} |"
                  for k, v in c["by_kind"].items()]
        lines.append("")
    lines += ["## Pairs (highest first, at most 50)", "",
              "| kind | clip | matches | score | same source | planted |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['kind']} | {r['id']} | {r['match']} | {r['score']:.4f} | "
              f"{'yes' if r['same_source'] else ''} | {'yes' if r['planted'] else ''} |" for r in rows[:50]]
    with open(os.path.join(out_dir, "dedup.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return summary
