"""UTS vocabularies: score tags by document frequency, keep the top K, read and write label_K.json.

score(t) = df(t) * log((N + 1) / (df(t) + 1)), with df(t) the number of clips tagged t and N the
number of clips. The score rewards tags that are common but not everywhere (a tag on every clip
scores ~0). Ties break by higher df, then alphabetically, so the ranking is reproducible; every
K is a prefix of one ranking, so vocabularies of different K are nested.

File format (as released in ../shared/uts/): a JSON object {"0": tag, "1": tag, ...} written
with 2-space indentation, ASCII escapes and no trailing newline.
"""

from __future__ import annotations

import collections
import json
import math
import re
from typing import Iterable, Mapping, Sequence

DOMAINS = ("speech", "music", "sound")


def document_frequency(clip_tags: Iterable[Sequence[str]]) -> tuple[collections.Counter, int]:
    """(df per tag, number of clips); a tag counts once per clip."""
    df: collections.Counter = collections.Counter()
    n = 0
    for tags in clip_tags:
        n += 1
        df.update(set(tags))
    return df, n


def score(df: int, n: int) -> float:
    return df * math.log((n + 1) / (df + 1))


def rank(df: Mapping[str, int], n: int) -> list[str]:
    """All tags, best first: score descending, then df descending, then alphabetical."""
    return sorted(df, key=lambda t: (-score(df[t], n), -df[t], t))


def top_k(df: Mapping[str, int], n: int, ks: Sequence[int]) -> dict[int, list[str]]:
    """Nested top-K vocabularies for every K (prefixes of one ranking)."""
    ranking = rank(df, n)
    too_big = [k for k in ks if k > len(ranking)]
    if too_big:
        raise ValueError(f"K={too_big} exceeds the {len(ranking)} distinct tags in the corpus; "
                         f"choose K <= {len(ranking)}")
    return {k: ranking[:k] for k in sorted(ks)}


def parse_k(text: str) -> int:
    """'800', '1k', '1.5k' -> 800, 1000, 1500."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kK]?)\s*", text)
    if not m:
        raise ValueError(f"K {text!r} is not a number like 800, 1k or 1.5k")
    value = float(m.group(1)) * (1000 if m.group(2) else 1)
    if value != int(value) or value < 1:
        raise ValueError(f"K {text!r} is not a positive whole number of tags")
    return int(value)


def k_name(k: int) -> str:
    """File-name form used by the released files: 800, 1k, 1.5k, 2k, 3k."""
    if k >= 1000 and k % 100 == 0:
        s = f"{k / 1000:g}k"
        return s
    return str(k)


def label_file_name(k: int) -> str:
    return f"label_{k_name(k)}.json"


def dumps_vocabulary(tags: Sequence[str]) -> str:
    return json.dumps({str(i): t for i, t in enumerate(tags)}, indent=2, ensure_ascii=True)


def write_vocabulary(path: str, tags: Sequence[str]) -> None:
    """Writes label_K.json byte-for-byte in the released format."""
    with open(path, "w", encoding="ascii") as f:
        f.write(dumps_vocabulary(tags))


def read_vocabulary(path: str) -> list[str]:
    """Tags of a label_K.json in index order, exactly as stored (duplicates kept)."""
    with open(path, encoding="utf-8") as f:
        try:
            table = json.load(f)
        except ValueError as e:
            raise ValueError(f"{path} is not JSON ({e})") from None
    if not isinstance(table, dict) or sorted(table, key=lambda k: (len(k), k)) != [
            str(i) for i in range(len(table))]:
        raise ValueError(f"{path} is not a vocabulary file: expected "
                         "{\"0\": tag, \"1\": tag, ...} "
                         "with consecutive indices")
    tags = [table[str(i)] for i in range(len(table))]
    bad = [i for i, t in enumerate(tags) if not isinstance(t, str) or not t]
    if bad:
        raise ValueError(f"{path}: entries {bad[:5]} are not tag strings")
    return tags


def check_vocabulary(tags: Sequence[str], normalize) -> dict:
    """Problems worth knowing before training on a vocabulary (not errors: the released files
    have some)."""
    seen: dict[str, int] = {}
    duplicates, collisions, not_normal = [], [], []
    for i, t in enumerate(tags):
        if t in seen:
            duplicates.append((t, seen[t], i))
            continue
        seen[t] = i
        n = normalize(t)
        if n != t:
            not_normal.append((i, t, n))
    by_norm: dict[str, list[str]] = collections.defaultdict(list)
    for t in seen:
        by_norm[normalize(t) or t].append(t)
    collisions = [v for v in by_norm.values() if len(v) > 1]
    return {"size": len(tags), "distinct": len(seen), "duplicates": duplicates,
            "normalisation_collisions": collisions, "not_normalised": not_normal}


def coverage(clip_tags: Mapping[str, Sequence[str]], domains: Mapping[str, str],
             vocab: Sequence[str]) -> dict:
    """Per domain: clips, clips with >= 1 vocabulary tag and their fraction, mean vocabulary
    tags per clip, and the share of all the clips' tags that the vocabulary keeps."""
    vocab_set = set(vocab)
    out: dict[str, dict] = {}
    for clip_id, tags in clip_tags.items():
        for dom in ("all", domains.get(clip_id) or "unknown"):
            d = out.setdefault(dom, {"clips": 0, "covered": 0, "vocab_tags": 0, "tags": 0})
            kept = len(vocab_set.intersection(tags))
            d["clips"] += 1
            d["covered"] += kept > 0
            d["vocab_tags"] += kept
            d["tags"] += len(set(tags))
    for d in out.values():
        d["fraction"] = d["covered"] / d["clips"]
        d["tag_fraction"] = d["vocab_tags"] / max(1, d.pop("tags"))
        d["mean_tags"] = d.pop("vocab_tags") / d["clips"]
    return out


def stats_for(vocab: Sequence[str], df: Mapping[str, int], n: int,
              clip_tags: Mapping[str, Sequence[str]], domains: Mapping[str, str]) -> dict:
    """The stats file written beside label_K.json."""
    return {
        "K": len(vocab), "num_clips": n, "distinct_tags": len(df),
        "score": "df * log((N + 1) / (df + 1))",
        "coverage": coverage(clip_tags, domains, vocab),
        "tags": [{"index": i, "tag": t, "df": df[t], "score": round(score(df[t], n), 6)}
                 for i, t in enumerate(vocab)],
    }


def infer_domain(tags: Sequence[str]) -> str:
    """speech / music / sound from a clip's tags, for clips without a label/domain."""
    s = set(tags)
    speech = bool(s & {"speech", "spoken", "voice", "narration", "conversation", "talking"})
    music = bool(s & {"music", "song", "melody", "instrumental", "singing"})
    if speech and music:
        return "mixture"
    return "speech" if speech else "music" if music else "sound"
