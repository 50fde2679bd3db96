"""Tokenised text in the batch, for the objectives that read text (PAR, captioning, contrastive).

An objective declares the fields it reads (`FIELDS = ("text",)` in its module); the trainer
asks this module for the `Featurizer.extra` that produces them, built from the config:

    text.tokenizer   "" (no text), "minilm" (MiniLM's WordPiece vocabulary), the path of a
                     WordPiece vocab.txt (e.g. built from the corpus captions), or the path of a
                     Hugging Face tokenizer.json (BPE, e.g. BART-base's, as the reference study)
    text.max_len     tokens per field, start and end tokens included
    text.field       which text of a clip the "text" field is: "caption" (the long caption,
                     default), "summary" (caption/summary) or "original" (caption/original: the
                     source datasets' weak captions). A field holding several texts gives one
                     chosen at random per clip and batch (a function of seed, batch and row, so a
                     resumed run draws the same); evaluation paths take the first.
    text.preprocess  "" (the text as it is; the tokenizer's own normalisation applies) or
                     "reference": lower-cased with punctuation stripped, as the reference
                     study's data module does before BART's tokenizer

The "tags" field is the clip's tags joined by ", ". Token rows are start pieces end [PAD]...
(text.tokenizer: WordPieceTokenizer or BPETokenizer); the mask is True on real tokens.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Sequence

import numpy as np

from strongaudio_jax.config import ConfigError
from strongaudio_jax.text.tokenizer import FIELDS  # noqa: F401 (field -> batch keys)

TEXT_SOURCES = ("caption", "summary", "original")
PREPROCESS = ("", "reference")


def reference_preprocess(sentence: str) -> str:
    """Lower-case, punctuation stripped: the reference's `_text_preprocess` (AudenAI/Auden
    examples/uts/data_module.py), regex for regex."""
    sentence = sentence.lower()
    sentence = re.sub(r'\s([,.!?;:"](?:\s|$))', r"\1", sentence).replace("  ", " ")
    return re.sub('[(,.!?;:|*")]', " ", sentence).replace("  ", " ")


def text_length(cfg) -> int:
    """Tokens per text field: the config's text.max_len (32 when the config has no text)."""
    return int(cfg.get("text", {}).get("max_len", 32))


def tokenizer_from_config(cfg):
    """The config's text tokenizer (text.tokenizer), or None when it names none."""
    name = cfg.get("text", {}).get("tokenizer", "")
    if not name:
        return None
    from strongaudio_jax.text import tokenizer as tokenizer_lib
    try:
        if name == "minilm":
            from strongaudio_jax.text import minilm
            return tokenizer_lib.WordPieceTokenizer.from_file(minilm.vocab_file())
        if str(name).endswith(".json"):
            return tokenizer_lib.BPETokenizer(name)
        return tokenizer_lib.WordPieceTokenizer.from_file(name)
    except (ImportError, OSError, ValueError) as e:
        raise ConfigError(f"text.tokenizer={name!r}: {e}") from e


@dataclasses.dataclass(frozen=True)
class TextFields:
    """Featurizer.extra for text objectives: tokenises a clip's text (`source`: caption,
    summary or original captions) and / or its tags (picklable, so it runs in decoding
    worker processes)."""

    tokenizer: Any
    fields: tuple[str, ...]
    max_len: int
    source: str = "caption"
    preprocess: str = ""
    takes_draw = True  # Featurizer.extras passes draw=(seed, batch, row) for random choices

    def __post_init__(self):
        unknown = sorted(set(self.fields) - set(FIELDS))
        if unknown:
            raise ValueError(f"text field {unknown[0]!r} is not one of {sorted(FIELDS)}")
        if self.source not in TEXT_SOURCES:
            raise ValueError(f"text.field={self.source!r} is not one of {TEXT_SOURCES}")
        if self.preprocess not in PREPROCESS:
            raise ValueError(f"text.preprocess={self.preprocess!r} is not one of {PREPROCESS}")

    def text(self, clip, draw: tuple[int, ...] | None = None) -> str:
        """The clip's text for the "text" field: one of several chosen by `draw` (the first
        without one), preprocessed as configured."""
        if self.source == "caption":
            options = [clip.caption]
        elif self.source == "summary":
            options = [clip.summary]
        else:
            options = list(clip.original_captions) or [""]
        pick = 0
        if len(options) > 1 and draw is not None:
            pick = int(np.random.default_rng([*draw, 0x74657874]).integers(len(options)))
        text = options[pick]
        return reference_preprocess(text) if self.preprocess == "reference" else text

    def __call__(self, clip, draw: tuple[int, ...] | None = None) -> dict[str, np.ndarray]:
        out = {}
        for f in self.fields:
            text = self.text(clip, draw) if f == "text" else ", ".join(clip.tags)
            ids, mask = self.tokenizer.encode([text], self.max_len)
            key_ids, key_mask = FIELDS[f]
            out[key_ids] = np.asarray(ids[0], np.int32)
            out[key_mask] = np.asarray(mask[0], bool)
        return out


def from_config(cfg, fields: Sequence[str]) -> TextFields | None:
    """The Featurizer.extra producing `fields` (what the configured objectives read, e.g. the
    Program's `text_fields`) with the config's tokenizer; None when no field is read."""
    if not fields:
        return None
    tokenizer = tokenizer_from_config(cfg)
    if tokenizer is None:
        raise ConfigError(f"the objectives read text ({', '.join(fields)}) but the config has no "
                          "text tokenizer; set text.tokenizer ('minilm', a vocab.txt or a "
                          "tokenizer.json path)")
    text = cfg.get("text", {})
    try:
        return TextFields(tokenizer, tuple(fields), text_length(cfg),
                          source=text.get("field", "caption"),
                          preprocess=text.get("preprocess", ""))
    except ValueError as e:
        raise ConfigError(str(e)) from e
