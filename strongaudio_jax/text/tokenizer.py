"""WordPiece tokenizer as BERT (uncased) does it, in plain Python over a `vocab.txt`.

Two steps, as in BERT and in the Hugging Face `tokenizers` BertNormalizer/BertPreTokenizer:
1. basic tokenisation: drop control characters, space out CJK ideographs, lowercase,
   strip accents (NFD, drop combining marks), split on whitespace and punctuation;
2. WordPiece: greedy longest-match-first over each word with `##` continuation pieces; a
   word longer than `max_chars_per_word` or with an unmatched part becomes [UNK].

`encode` wraps each text as [CLS] tokens [SEP] and pads with [PAD] to a fixed length, so
rows can be stacked into batches. Text objectives use [CLS] as BOS, [SEP] as EOS and
[MASK] as the parallel-decoding input. A vocabulary comes either from the MiniLM package
(`minilm.vocab_file()`) or from corpus captions (`build_vocab`, `tools/build_text_vocab.py`).
"""

from __future__ import annotations

import collections
import os
import unicodedata
from typing import Iterable, Sequence

import numpy as np

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# The text fields an objective can read, and their keys in a batch (token ids, mask): the
# contract between the input pipeline (data/text_fields.py) and the objectives.
FIELDS = {"text": ("text_ids", "text_mask"),  # the caption summary
          "tags": ("tag_ids", "tag_mask")}  # the clip's tags joined by ", "
CONTINUATION = "##"


def _is_cjk(cp: int) -> bool:
    """CJK Unified Ideographs blocks, as BERT defines them (not Hangul or kana)."""
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def _is_punctuation(ch: str) -> bool:
    """Unicode punctuation, plus every non-alphanumeric printable ASCII symbol ($, ^, `)."""
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_whitespace(ch: str) -> bool:
    return ch in " \t\n\r" or ch.isspace() or unicodedata.category(ch) == "Zs"


def _is_control(ch: str) -> bool:
    return ch not in "\t\n\r" and unicodedata.category(ch).startswith("C")


def basic_tokenize(text: str, lowercase: bool = True) -> list[str]:
    """Normalised words and punctuation marks of `text` (BERT's BasicTokenizer)."""
    chars = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or _is_control(ch):
            continue
        if _is_whitespace(ch):
            chars.append(" ")
        elif _is_cjk(cp):
            chars.append(f" {ch} ")
        else:
            chars.append(ch)
    text = "".join(chars)
    if lowercase:
        text = "".join(c for c in unicodedata.normalize("NFD", text.lower())
                       if unicodedata.category(c) != "Mn")
    words = []
    for word in text.split():
        start = 0
        for i, ch in enumerate(word):
            if _is_punctuation(ch):
                if i > start:
                    words.append(word[start:i])
                words.append(ch)
                start = i + 1
        if start < len(word):
            words.append(word[start:])
    return words


class WordPieceTokenizer:
    """Text <-> fixed-length id rows over one vocabulary (a list of tokens, id = index)."""

    def __init__(self, vocab: Sequence[str], lowercase: bool = True, max_chars_per_word: int = 100):
        self.vocab = list(vocab)
        self.index = {t: i for i, t in enumerate(self.vocab)}
        missing = [t for t in SPECIAL_TOKENS if t not in self.index]
        if missing:
            raise ValueError(f"vocabulary lacks the special tokens {missing}; a WordPiece vocab.txt "
                             f"must hold {list(SPECIAL_TOKENS)} (build one with tools/build_text_vocab.py)")
        self.lowercase = lowercase
        self.max_chars_per_word = max_chars_per_word
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (
            self.index[t] for t in SPECIAL_TOKENS)
        # Decoders use [CLS] as the start token and [SEP] as the end token, as BERT-style
        # captioners (e.g. BLIP's) do: no new tokens, so MiniLM's vocabulary works as is.
        self.bos_id, self.eos_id = self.cls_id, self.sep_id
        self._special_ids = frozenset((self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id))
        self._pieces_cache: dict[str, tuple[int, ...]] = {}

    @classmethod
    def from_file(cls, path: str | os.PathLike, **kwargs) -> "WordPieceTokenizer":
        """Reads a BERT `vocab.txt` (one token per line; line number = id)."""
        try:
            with open(path, encoding="utf-8") as f:
                vocab = [line.rstrip("\n") for line in f]
        except OSError as e:
            raise FileNotFoundError(f"cannot read the tokenizer vocabulary {path}: {e}") from None
        if vocab and vocab[-1] == "":
            vocab.pop()
        return cls(vocab, **kwargs)

    def save(self, path: str | os.PathLike) -> None:
        """Writes `vocab.txt`, e.g. into the work dir beside the checkpoint."""
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(t + "\n" for t in self.vocab)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def _word_ids(self, word: str) -> tuple[int, ...]:
        """Greedy longest-match-first WordPiece of one word (memoised: captions repeat words)."""
        ids = self._pieces_cache.get(word)
        if ids is not None:
            return ids
        if len(word) > self.max_chars_per_word:
            ids = (self.unk_id,)
        else:
            out, start = [], 0
            while start < len(word):
                end = len(word)
                while end > start:
                    piece = word[start:end] if start == 0 else CONTINUATION + word[start:end]
                    if piece in self.index:
                        out.append(self.index[piece])
                        break
                    end -= 1
                if end == start:  # no piece matches: the whole word is unknown
                    out = [self.unk_id]
                    break
                start = end
            ids = tuple(out)
        if len(self._pieces_cache) < 1_000_000:
            self._pieces_cache[word] = ids
        return ids

    def token_ids(self, text: str) -> list[int]:
        """Ids of the text's word pieces, without [CLS]/[SEP]."""
        return [i for w in basic_tokenize(text, self.lowercase) for i in self._word_ids(w)]

    def tokenize(self, text: str) -> list[str]:
        return [self.vocab[i] for i in self.token_ids(text)]

    def encode(self, texts: Iterable[str] | str, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids int32 [N, max_len], mask bool [N, max_len]): [CLS] pieces [SEP] then [PAD].

        Pieces beyond max_len - 2 are cut (the [SEP] is kept), as BERT truncates."""
        if max_len < 2:
            raise ValueError(f"max_len={max_len} leaves no room for [CLS] and [SEP]; use >= 2")
        texts = [texts] if isinstance(texts, str) else list(texts)
        ids = np.full((len(texts), max_len), self.pad_id, np.int32)
        mask = np.zeros((len(texts), max_len), bool)
        for row, text in enumerate(texts):
            seq = [self.cls_id, *self.token_ids(text)[:max_len - 2], self.sep_id]
            ids[row, :len(seq)] = seq
            mask[row, :len(seq)] = True
        return ids, mask

    def decode(self, ids) -> str | list[str]:
        """Text of one id row (or a list of texts for [N, L]): stops at the first [SEP] after
        the first token, skips the other special tokens ([UNK] too), joins `##` pieces and tidies punctuation
        spacing token by token, as Hugging Face's WordPiece decoder does."""
        ids = np.asarray(ids)
        if ids.ndim == 2:
            return [self.decode(row) for row in ids]
        pieces: list[str] = []
        for pos, i in enumerate(int(i) for i in ids):
            if i == self.sep_id and pos > 0:
                break
            if i in self._special_ids or not 0 <= i < len(self.vocab):
                continue
            tok = self.vocab[i]
            if not pieces:
                pieces.append(tok)
            elif tok.startswith(CONTINUATION):
                pieces.append(tok[len(CONTINUATION):])
            else:
                pieces.append(_cleanup(" " + tok))
        return "".join(pieces)


def _cleanup(piece: str) -> str:
    for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
                 (" n't", "n't"), (" 'm", "'m"), (" do not", " don't"), (" 's", "'s"),
                 (" 've", "'ve"), (" 're", "'re")):
        piece = piece.replace(a, b)
    return piece


def build_vocab(texts: Iterable[str], size: int = 8000, min_count: int = 2,
                lowercase: bool = True) -> list[str]:
    """A WordPiece vocabulary from corpus text: the special tokens, every character seen
    (alone and as a `##` piece, so any word of these characters is tokenisable), then whole
    words by descending frequency (ties alphabetical) with count >= min_count, up to `size`.

    Deliberately simple (no subword merging): captions of one corpus reuse a small word set,
    and a rare word falls back to characters instead of [UNK]."""
    words = collections.Counter(w for t in texts for w in basic_tokenize(t, lowercase))
    chars = sorted({c for w in words for c in w})
    vocab = [*SPECIAL_TOKENS, *chars, *(CONTINUATION + c for c in chars)]
    if size < len(vocab):
        raise ValueError(f"vocabulary size {size} is smaller than the {len(vocab)} special and "
                         f"character tokens this text needs; raise it")
    seen = set(vocab)
    for w, c in sorted(words.items(), key=lambda wc: (-wc[1], wc[0])):
        if len(vocab) >= size or c < min_count:
            break
        if w not in seen:
            vocab.append(w)
            seen.add(w)
    return vocab
