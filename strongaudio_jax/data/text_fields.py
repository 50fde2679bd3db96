"""Tokenised text in the batch, for the objectives that read text (PAR, captioning, contrastive).

An objective declares the fields it reads (`FIELDS = ("text",)` in its module); the trainer
asks this module for the `Featurizer.extra` that produces them, built from the config:

    text.tokenizer  "" (no text), "minilm" (MiniLM's WordPiece vocabulary) or the path of a
                    WordPiece vocab.txt (e.g. built from the corpus captions)
    text.max_len    tokens per field, [CLS] and [SEP] included

Token rows are [CLS] pieces [SEP] [PAD]... (text.tokenizer.WordPieceTokenizer); the mask is
True on real tokens.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from strongaudio_jax.config import ConfigError
from strongaudio_jax.text.tokenizer import FIELDS  # noqa: F401 (field -> batch keys)


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
        return tokenizer_lib.WordPieceTokenizer.from_file(name)
    except (ImportError, OSError, ValueError) as e:
        raise ConfigError(f"text.tokenizer={name!r}: {e}") from e


@dataclasses.dataclass(frozen=True)
class TextFields:
    """Featurizer.extra for text objectives: tokenises a clip's summary and / or its tags
    (picklable, so it runs in decoding worker processes)."""

    tokenizer: Any
    fields: tuple[str, ...]
    max_len: int

    def __post_init__(self):
        unknown = sorted(set(self.fields) - set(FIELDS))
        if unknown:
            raise ValueError(f"text field {unknown[0]!r} is not one of {sorted(FIELDS)}")

    def __call__(self, clip) -> dict[str, np.ndarray]:
        out = {}
        for f in self.fields:
            text = clip.summary if f == "text" else ", ".join(clip.tags)
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
                          "text tokenizer; set text.tokenizer ('minilm' or a vocab.txt path)")
    return TextFields(tokenizer, tuple(fields), text_length(cfg))
