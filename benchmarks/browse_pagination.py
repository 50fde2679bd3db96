"""Latency of `strongaudio browse` on a generated corpus: start-up (reading every record's
metadata, then again from the metadata cache) and search / page requests through a live server, cold (a new query) and warm
(turning pages of a query already run). Prints one JSON object.

    python benchmarks/browse_pagination.py --clips 100000 --out /tmp/browse_bench

The corpus is made once in --out (kept for reruns): schema-v1 records with captions of about
390 words (the study's average) from a 3,000-word vocabulary, a 15-word summary, 10 tags from
1,500 (Zipf-distributed), 4 domains, 200 sources, durations of 1-30 s. Every record carries
the same 0.1 s FLAC: the audio's size does not enter these timings, only its reading at start.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import resource
import shutil
import statistics
import threading
import time

import numpy as np

from strongaudio_jax.browse import catalog as catalog_lib, server
from strongaudio_jax.data import audio, index as index_lib, schema, tfrecord


def make_corpus(out: str, clips: int, shards: int, seed: int = 0) -> list[str]:
    paths = [os.path.join(out, f"bench-{s:05d}-of-{shards:05d}.tfrecord") for s in range(shards)]
    if all(os.path.exists(tfrecord.index_path(p)) for p in paths):
        return paths
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(seed)
    words = np.array([f"w{i}" for i in range(3000)] + ["dog", "barks", "piano", "rain"])
    word_p = 1.0 / np.arange(1, len(words) + 1)
    word_p /= word_p.sum()
    tags = np.array([f"tag{i}" for i in range(1500)])
    tag_p = 1.0 / np.arange(1, len(tags) + 1) ** 0.8
    tag_p /= tag_p.sum()
    sound = audio.encode(np.zeros(1600, np.float32), 16000)
    per_shard = -(-clips // shards)
    for s, path in enumerate(paths):
        with tfrecord.TFRecordWriter(path) as w:
            for i in range(s * per_shard, min(clips, (s + 1) * per_shard)):
                n_words = int(rng.integers(200, 580))
                caption = " ".join(rng.choice(words, n_words, p=word_p))
                clip_tags = list(dict.fromkeys(rng.choice(tags, 12, p=tag_p)))[:10]
                w.write(schema.clip_to_example(schema.Clip(
                    id=f"clip-{i:07d}", audio=sound, format="flac", sample_rate=16000,
                    num_samples=int(rng.integers(16000, 480000)), caption=caption,
                    summary=" ".join(rng.choice(words, 15, p=word_p)), tags=clip_tags,
                    tag_scores=rng.uniform(0.2, 1.0, len(clip_tags)).round(3).tolist(),
                    source=f"source-{int(rng.integers(200))}", caption_model="bench-captioner",
                    tags_model="bench-tagger",
                    labels={"domain": ("speech", "music", "sound", "mixture")[i % 4]})))
        index_lib.write_sidecar(path)
    return paths


def timed_get(port: int, path: str) -> tuple[float, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    start = time.perf_counter()
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    ms = 1000 * (time.perf_counter() - start)
    conn.close()
    if r.status != 200:
        raise RuntimeError(f"{path}: {r.status} {body[:200]!r}")
    return ms, json.loads(body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=100_000)
    ap.add_argument("--shards", type=int, default=16)
    ap.add_argument("--out", default="/tmp/strongaudio_browse_bench")
    ap.add_argument("--per-page", type=int, default=20)
    args = ap.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request

    start = time.perf_counter()
    paths = make_corpus(args.out, args.clips, args.shards)
    made_s = time.perf_counter() - start
    cache = os.path.join(args.out, "cache")  # the metadata cache: emptied, filled, reused
    shutil.rmtree(cache, ignore_errors=True)
    os.environ["STRONGAUDIO_CACHE"] = cache
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    cat = catalog_lib.Catalog("bench", paths)
    startup_s = time.perf_counter() - start
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    again = catalog_lib.Catalog("bench", paths)
    restart_s = time.perf_counter() - start
    assert again.cached_files == len(paths) and again.ids == cat.ids
    del again
    httpd = server.serve([cat], "127.0.0.1", 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()

    pp = args.per_page
    queries = {
        "all": "",
        "tag (common)": "&tag=tag3",
        "tag (rare)": "&tag=tag900",
        "caption word": "&q=barks",
        "two caption words": "&q=w7+w1200",
        "domain + duration + tag score": "&domain=music&min.duration=5&max.duration=12"
                                         "&tag_score_min=0.9",
    }
    results = {}
    for name, qs in queries.items():
        cold_ms, first = timed_get(httpd.port, f"/api/search?per_page={pp}{qs}")
        pages = first["pages"]
        turn = [min(p, pages - 1) for p in (1, 2, 3, 10, 100, 1000, pages // 2, pages - 1)]
        warm = [timed_get(httpd.port, f"/api/search?per_page={pp}&page={p}{qs}")[0]
                for p in turn * 3]
        results[name] = {"matches": first["total"], "pages": pages,
                         "cold_first_page_ms": round(cold_ms, 2),
                         "warm_page_ms_median": round(statistics.median(warm), 2),
                         "warm_page_ms_max": round(max(warm), 2)}
    clip_ms = [timed_get(httpd.port, f"/api/clip/0/{r}")[0]
               for r in np.random.default_rng(1).integers(0, len(cat), 50)]
    httpd.shutdown()
    print(json.dumps({
        "clips": len(cat), "shards": len(paths), "per_page": pp,
        "corpus_bytes": sum(os.path.getsize(p) for p in paths),
        "corpus_made_s": round(made_s, 1), "startup_s": round(startup_s, 2),
        "startup_clips_per_s": round(len(cat) / startup_s),
        "restart_from_cache_s": round(restart_s, 2),
        "cache_bytes": sum(os.path.getsize(os.path.join(cache, "browse", f))
                           for f in os.listdir(os.path.join(cache, "browse"))),
        "catalog_rss_mb": round((rss1 - rss0) / 1024, 1),
        "open_clip_ms_median": round(statistics.median(clip_ms), 2),
        "queries": results,
    }, indent=1))


if __name__ == "__main__":
    main()
