"""Offline tag extractor: a phrase lexicon plus a few rules over the caption text.

For tests, the demo corpus and users without an LLM. Deterministic and fast (thousands of
captions per second). It reads a caption the way a careful tagger would:
  - clauses that negate ("no music", "without", "little reverberation", "neither ... nor")
    and clauses about what is *said* ("talks about the weather") contribute no tags;
  - cues from `data/rules_lexicon.txt` (longest phrase first, plurals folded) give tags in
    caption order, so the first-mentioned source comes first;
  - a tempo in beats per minute gives slow (< 85), fast (>= 128) or tempo;
  - a caption that describes neither noise nor reverberation gets "clean";
  - implications add domain-level tags a caption rarely states (a violin implies music).
Output goes through the same normalisation and the same 5-10 tag limits as LLM replies.
"""

from __future__ import annotations

import os
import re
from typing import Iterator, Sequence

from strongaudio_jax.uts import llm_reply
from strongaudio_jax.uts.normalize import DATA_DIR, Normalizer, singular
from strongaudio_jax.uts.tagging import CaptionItem

DEFAULT_LEXICON = os.path.join(DATA_DIR, "rules_lexicon.txt")

_NEGATION = re.compile(r"\b(?:no|not|without|neither|nor|never|little|almost no|none)\b")
_TOPIC = re.compile(r"\b(?:about|topic is|sentence is about|subject is)\b")
_BPM = re.compile(r"(\d+)\s*(?:beats per minute|bpm)\b")
_TOKEN = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
_NOISY = frozenset("noise hiss hum rumble reverb reverberant echo distorted muffled".split())


Lexicon = dict[tuple[str, ...], tuple[str, ...]]
Implications = dict[str, tuple[str, frozenset]]  # tag -> ("first" | "last", trigger tags)


def read_lexicon(path: str, lex: Lexicon, implies: Implications) -> None:
    """Adds a lexicon file's cues and implications (later files win)."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            if line.startswith(("implies-first ", "implies-last ")):
                head, colon, triggers = line.partition(":")
                kind, _, tag = head.partition(" ")
                if not colon or not tag.strip() or not triggers.split():
                    raise ValueError(f"{path}:{n}: expected '{kind} TAG: trigger1 trigger2 ...'")
                implies[tag.strip()] = (kind[len("implies-"):], frozenset(triggers.split()))
                continue
            cue, eq, tags = line.partition("=")
            words = tuple(cue.lower().split())
            if not words:
                raise ValueError(f"{path}:{n}: empty cue in {line!r}")
            lex[words] = tuple(tags.lower().split()) if eq else words


def _clauses(caption: str) -> Iterator[str]:
    """Lowercase clauses (split at sentence ends, commas, semicolons, colons, parentheses)."""
    for part in re.split(r"[.!?;:,()]\s*|\s+-\s+|\bwhile\b|\bbut\b", caption.lower()):
        if part.strip():
            yield part.strip()


class RulesTagger:
    """Deterministic caption -> tags extractor (see module docstring)."""

    def __init__(self, normalize: Normalizer | None = None, lexicon_files: Sequence[str] = ()):
        self.normalize = normalize or Normalizer()
        self.lexicon: Lexicon = {}
        self.implies: Implications = {}
        for path in [DEFAULT_LEXICON, *lexicon_files]:
            if not os.path.exists(path):
                raise FileNotFoundError(f"lexicon file {path!r} does not exist")
            read_lexicon(path, self.lexicon, self.implies)
        self.max_cue = max(len(k) for k in self.lexicon)
        self.name = "rules"
        self.retry_failed = False  # deterministic: a failed caption fails again

    def _cue_tags(self, clause: str) -> list[str]:
        words = _TOKEN.findall(clause)
        out: list[str] = []
        i = 0
        while i < len(words):
            for n in range(min(self.max_cue, len(words) - i), 0, -1):
                key = tuple(words[i:i + n])
                tags = self.lexicon.get(key)
                if tags is None:
                    tags = self.lexicon.get(key[:-1] + (singular(key[-1]),))
                if tags is not None:
                    out.extend(tags)
                    i += n
                    break
            else:
                i += 1
        return out

    def raw_tags(self, caption: str) -> list[str]:
        """Tags in caption order, before normalisation and limits."""
        tags: list[str] = []
        for clause in _clauses(caption):
            m = _BPM.search(clause)
            if m:
                bpm = int(m.group(1))
                tags.append("slow" if bpm < 85 else "fast" if bpm >= 128 else "tempo")
            neg = _NEGATION.search(clause)
            topic = _TOPIC.search(clause)
            cut = min((x.start() for x in (neg, topic) if x), default=len(clause))
            tags.extend(self._cue_tags(clause[:cut]))
        if tags and not _NOISY.intersection(tags):
            tags.append("clean")
        for tag, (where, triggers) in self.implies.items():
            if tag in tags:
                continue
            first = next((i for i, t in enumerate(tags) if t in triggers), None)
            if first is not None:
                tags.insert(first, tag) if where == "first" else tags.append(tag)
        return tags

    def tag(self, caption: str) -> llm_reply.TagResult:
        tags = self.normalize.many(self.raw_tags(caption))
        problems = []
        if len(tags) > llm_reply.MAX_TAGS:
            problems.append(f"kept the first {llm_reply.MAX_TAGS} of {len(tags)} tags")
            tags = tags[:llm_reply.MAX_TAGS]
        if len(tags) < llm_reply.MIN_TAGS:
            return llm_reply.TagResult(tags, "failed", problems + [
                f"only {len(tags)} tags found (need {llm_reply.MIN_TAGS}); extend the lexicon"])
        return llm_reply.TagResult(tags, "repaired" if problems else "ok", problems)

    def tag_many(self, items: Sequence[CaptionItem]) -> Iterator[tuple[str, llm_reply.TagResult]]:
        for it in items:
            yield it.id, self.tag(it.caption)
