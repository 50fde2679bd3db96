"""Tag normalisation: one canonical spelling per tag, so counts and vocabularies agree.

Order: lowercase and trim -> check it is one word (letters/digits, hyphenated compounds
allowed; `_` and inner spaces of released compounds become `-`) -> British to American
spelling -> plural to singular where the rule is safe -> synonym collapse. The spelling and
synonym tables are plain two-column files in `strongaudio_jax/uts/data/`; users extend the
synonym table with their own files (later entries win).
"""

from __future__ import annotations

import os
import re
from typing import Iterable, Sequence

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
DEFAULT_SYNONYMS = os.path.join(DATA_DIR, "synonyms.tsv")
SPELLING = os.path.join(DATA_DIR, "spelling.tsv")
DEMO_SYNONYMS = os.path.join(DATA_DIR, "demo_corpus_synonyms.tsv")

# One word: runs of letters or digits (any script), joined by single hyphens.
_WORD = re.compile(r"[^\W_]+(?:-[^\W_]+)*")
_STRIP = " \t\r\n\"'`.,;:!?()[]{}<>*#"

# Words ending in -s that are not plurals (or whose singular means something else).
NOT_PLURAL = frozenset("""
bass glass grass brass class mass moss hiss kiss boss loss chess fuss less dress press
bus chorus virus status focus genus campus bonus circus octopus cactus fungus stimulus
analysis basis crisis thesis synthesis emphasis axis tennis iris chaos bias canvas atlas gas
lens yes always perhaps series species news means physics acoustics electronics dynamics
aesthetics ethics economics politics mathematics linguistics athletics gymnastics
mechanics graphics various previous serious nervous joyous famous gorgeous
dangerous mysterious ominous vigorous rhythmic this thus was has is its his hers ours
yours cosmos pathos ethos kudos bellows gallows scissors trousers pants jeans glasses
headphones earphones binoculars tongs pliers tweezers blues jazzes thanks diabetes measles
""".split())

# Irregular plurals and -ves/-ies/-oes words the suffix rules would get wrong.
IRREGULAR = {
    "men": "man", "women": "woman", "children": "child", "people": "person", "feet": "foot",
    "teeth": "tooth", "geese": "goose", "mice": "mouse", "oxen": "ox", "dice": "die",
    "wolves": "wolf", "leaves": "leaf", "knives": "knife", "lives": "life", "hooves": "hoof",
    "shelves": "shelf", "halves": "half", "calves": "calf", "thieves": "thief", "wives": "wife",
    "movies": "movie", "cookies": "cookie", "zombies": "zombie", "pies": "pie", "ties": "tie",
    "lies": "lie", "cries": "cry", "shoes": "shoe", "toes": "toe", "canoes": "canoe",
    "echoes": "echo", "heroes": "hero", "potatoes": "potato", "tomatoes": "tomato",
    "volcanoes": "volcano", "buses": "bus", "choruses": "chorus", "viruses": "virus",
    "gases": "gas", "lenses": "lens", "analyses": "analysis", "crises": "crisis",
}


def read_table(path: str) -> dict[str, str]:
    """A two-column mapping file: `variant<TAB or spaces>canonical`, `#` comments."""
    table: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 2:
                raise ValueError(
                    f"{path}:{n}: expected 'variant canonical' (two words), got {line!r}")
            table[parts[0].lower()] = parts[1].lower()
    return table


def singular(word: str) -> str:
    """Plural -> singular when the suffix rule is safe; otherwise the word unchanged."""
    if word in IRREGULAR:
        return IRREGULAR[word]
    if "-" in word:  # compounds: singularise the last part ("sound-effects")
        head, _, last = word.rpartition("-")
        return f"{head}-{singular(last)}"
    if len(word) <= 3 or word in NOT_PLURAL or not word.endswith("s") or not word.isalpha():
        return word
    if word.endswith(("ss", "us", "is", "ous", "'s")):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "ches", "shes", "xes", "zzes")):
        return word[:-2]
    return word[:-1]


class Normalizer:
    """Maps raw tags to canonical ones; `None` for anything that is not one word."""

    def __init__(self, synonym_files: Sequence[str] = (), use_default_synonyms: bool = True):
        self.spelling = read_table(SPELLING)
        self.synonyms: dict[str, str] = {}
        for path in ([DEFAULT_SYNONYMS] if use_default_synonyms else []) + list(synonym_files):
            if not os.path.exists(path):
                raise FileNotFoundError(f"synonym table {path!r} does not exist")
            self.synonyms.update(read_table(path))
        self.synonym_files = tuple(synonym_files)

    def __call__(self, raw: str) -> str | None:
        if not isinstance(raw, str):
            return None
        tag = raw.strip(_STRIP).lower().replace("_", "-")
        if not _WORD.fullmatch(tag):
            return None
        tag = self.spelling.get(tag, tag)
        tag = singular(tag)
        tag = self.spelling.get(tag, tag)
        # Follow synonym chains (a -> b -> c) but never loop.
        seen = {tag}
        while tag in self.synonyms and self.synonyms[tag] not in seen:
            tag = self.synonyms[tag]
            seen.add(tag)
        return tag

    def many(self, raws: Iterable[str]) -> list[str]:
        """Normalised, de-duplicated (first occurrence kept), invalid ones left out."""
        out: list[str] = []
        for raw in raws:
            t = self(raw)
            if t and t not in out:
                out.append(t)
        return out
