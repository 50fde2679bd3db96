"""Bridge from AudioSet's 527 classes to UTS tags, so AudioSet-labelled data lives in UTS space.

Matching is lexical, through the same normalisation and synonym table as the tags:
  exact - an alternative of the class name ("Walk, footsteps" -> "walk", "footsteps") is itself
          a vocabulary tag, as one word or as a hyphenated compound ("drum kit" -> drum-kit);
  stem  - an alternative matches once a verb ending is taken off ("Whispering" -> whisper);
  words - otherwise, the content words of the name that are vocabulary tags
          ("Male speech, man speaking" -> male, speech, man);
  none  - nothing matched: reported, never guessed.
Parenthesised qualifiers ("Whimper (dog)") are left out of the match.
"""

from __future__ import annotations

import collections
import csv
import os
import re
from typing import Sequence

from strongaudio_jax.uts.filter import VocabularyMap
from strongaudio_jax.uts.normalize import DATA_DIR, Normalizer

AUDIOSET_CLASSES = os.path.join(DATA_DIR, "audioset_527.csv")
STOPWORDS = frozenset("a an and or of the for with in on by to etc".split())


def audioset_names() -> list[str]:
    """The 527 AudioSet display names in class-index order."""
    with open(AUDIOSET_CLASSES, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    names = [r["display_name"] for r in rows]
    assert [int(r["index"]) for r in rows] == list(range(len(rows))), AUDIOSET_CLASSES
    return names


def _alternatives(name: str) -> list[list[str]]:
    name = re.sub(r"\([^)]*\)", " ", name)
    return [re.findall(r"[a-z0-9]+(?:['-][a-z0-9]+)*", alt.lower()) for alt in name.split(",")]


def stems(word: str) -> list[str]:
    """Base forms of an -ing / -ed word: whispering -> whisper, snoring -> snore, humming -> hum."""
    out = []
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            base = word[:-len(suffix)]
            out += [base, base + "e"]
            if len(base) > 2 and base[-1] == base[-2]:
                out.append(base[:-1])
    return out


def _whole_matches(name: str, vmap: VocabularyMap, stem: bool) -> list[str]:
    found: list[str] = []
    for words in _alternatives(name):
        if not words:
            continue
        candidates = ["-".join(words), "".join(words)]
        if stem:
            candidates = ["-".join(words[:-1] + [s]) for s in stems(words[-1])]
        for candidate in candidates:
            hit = vmap.lookup(candidate)
            if hit:
                found += [hit[1]] if hit[1] not in found else []
                break
    return found


def map_class(name: str, vmap: VocabularyMap) -> tuple[list[str], str]:
    """(UTS tags, match kind) for one class name."""
    for kind, stem in (("exact", False), ("stem", True)):
        found = _whole_matches(name, vmap, stem)
        if found:
            return found, kind
    content = [w for words in _alternatives(name) for w in words if w not in STOPWORDS]
    hits = [t for _, t in vmap(content)]
    return (hits, "words") if hits else ([], "none")


def bridge(vocab: Sequence[str], normalize: Normalizer, names: Sequence[str] | None = None) -> dict:
    """The class -> UTS mapping for a vocabulary, with counts and the unmapped classes."""
    names = audioset_names() if names is None else list(names)
    vmap = VocabularyMap(vocab, normalize)
    classes = []
    for i, name in enumerate(names):
        tags, kind = map_class(name, vmap)
        classes.append({"index": i, "name": name, "tags": tags, "match": kind})
    counts = collections.Counter(c["match"] for c in classes)
    return {"classes": classes,
            "counts": {k: counts.get(k, 0) for k in ("exact", "stem", "words", "none")},
            "unmapped": [c["name"] for c in classes if c["match"] == "none"]}


def to_uts(class_indices: Sequence[int], mapping: dict) -> list[str]:
    """UTS tags for a clip's AudioSet classes (union, in class order)."""
    out: list[str] = []
    for i in class_indices:
        out.extend(t for t in mapping["classes"][i]["tags"] if t not in out)
    return out


def translator(mapping: dict):
    """tags -> tags with AudioSet display names (any case) replaced by their UTS tags; other
    tags pass through unchanged, so records mixing both keep all of them."""
    by_name = {c["name"].lower(): c["tags"] for c in mapping["classes"]}

    def translate(tags):
        out: list[str] = []
        for t in tags:
            out.extend(x for x in by_name.get(t.lower(), [t]) if x not in out)
        return out
    return translate
