"""`strongaudio uts tag --extractor lm --model DIR` on an LM imported with import-hf, then
`uts build` on its tag file. The LM is tiny and built by hand so that its greedy reply is a
fixed JSON tag list (each token's embedding is one-hot, attention and MLP add nothing, and the
output head maps each token to the next one of the reply): the path (chat template, tokenizer,
import, batched generation with padding, parsing, the tag file, the vocabulary) is the real
one, and what comes out can be checked. A random LM then runs the same path (its text is
random, so every clip fails to parse and is recorded as failed)."""

import json
import os

import numpy as np
from safetensors.numpy import save_file

from strongaudio_jax import cli
from strongaudio_jax.infer import import_hf
from strongaudio_jax.models.lm import QwenConfig

from lm_fixtures import SPECIAL, write_word_tokenizer

REPLY = ['{"tags":', '["dog",', '"bark",', '"park",', '"loud",', '"outdoor",', '"animal"]}']
TAGS = ["dog", "bark", "park", "loud", "outdoor", "animal"]
WORDS = ["user", "assistant", "a", "dog", "barks"]
VOCAB = SPECIAL + REPLY + WORDS  # ids in this order
HF_CONFIG = {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "vocab_size": 16,
             "hidden_size": 16, "intermediate_size": 8, "num_hidden_layers": 1,
             "num_attention_heads": 4, "num_key_value_heads": 2, "tie_word_embeddings": False}


def write_lm(directory, chain: bool):
    """A Qwen2 checkpoint: with `chain`, 'assistant' -> REPLY tokens -> <|im_end|> greedily."""
    os.makedirs(directory, exist_ok=True)
    cfg = QwenConfig.from_hf(HF_CONFIG)
    rng = np.random.default_rng(0)
    tensors = {}
    for path, shape in import_hf.expected_shapes(cfg).items():
        name = import_hf.hf_name(path)
        torch_shape = import_hf.hf_shape(path, shape)
        if not chain:
            tensors[name] = rng.normal(size=torch_shape).astype(np.float32)
        elif "norm" in name:
            tensors[name] = np.ones(torch_shape, np.float32)
        else:  # attention and MLP add nothing to the residual stream
            tensors[name] = np.zeros(torch_shape, np.float32)
    if chain:
        tensors["model.embed_tokens.weight"] = np.eye(16, dtype=np.float32)
        head = np.zeros((16, 16), np.float32)  # torch [vocab, hidden]: row = next token
        order = ["assistant"] + REPLY + ["<|im_end|>"]
        for a, b in zip(order, order[1:]):
            head[VOCAB.index(b), VOCAB.index(a)] = 1.0
        tensors["lm_head.weight"] = head
    save_file(tensors, os.path.join(directory, "model.safetensors"))
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(HF_CONFIG, f)
    write_word_tokenizer(directory, VOCAB)


def _captions(path, n=5):
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"clip{i}", "caption": "a dog barks " * (i + 1)}) + "\n")


def test_uts_tag_with_imported_lm_then_build(tmp_path, capsys):
    write_lm(tmp_path / "hf", chain=True)
    assert cli.main(["import-hf", "--from", str(tmp_path / "hf"), "--out",
                     str(tmp_path / "lm")]) == 0
    _captions(tmp_path / "captions.jsonl")
    tags = tmp_path / "tags.jsonl"
    assert cli.main(["uts", "tag", "--captions", str(tmp_path / "captions.jsonl"), "--out",
                     str(tags), "--extractor", "lm", "--model", str(tmp_path / "lm"),
                     "--batch-size", "2", "--max-new-tokens", "8"]) == 0
    rows = [json.loads(line) for line in tags.read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == [f"clip{i}" for i in range(5)]
    assert all(r["status"] in ("ok", "repaired") and r["tags"] == TAGS
               for r in rows), rows
    assert rows[0]["extractor"] == "jax-lm:lm"
    # the same on a (data 2, tensor 4) mesh of the 8 CPU devices, model restored onto it
    assert cli.main(["uts", "tag", "--captions", str(tmp_path / "captions.jsonl"), "--out",
                     str(tmp_path / "tags_tp.jsonl"), "--extractor", "lm", "--model",
                     str(tmp_path / "lm"), "--batch-size", "2", "--max-new-tokens", "8",
                     "--tensor-parallel", "4"]) == 0
    rows_tp = [json.loads(line) for line in (tmp_path / "tags_tp.jsonl").read_text().splitlines()]
    assert {r["id"]: r["tags"] for r in rows_tp} == {r["id"]: r["tags"] for r in rows}
    assert cli.main(["uts", "build", "--tags", str(tags), "--k", "2",
                     "--out-dir", str(tmp_path / "uts")]) == 0
    vocab = json.loads((tmp_path / "uts" / "label_2.json").read_text())
    assert sorted(vocab) == ["0", "1"] and set(vocab.values()) <= set(TAGS)  # {index: tag}


def test_uts_tag_with_random_lm_records_failures(tmp_path, capsys):
    write_lm(tmp_path / "hf", chain=False)
    assert cli.main(["import-hf", "--from", str(tmp_path / "hf"), "--out",
                     str(tmp_path / "lm")]) == 0
    _captions(tmp_path / "captions.jsonl", n=3)
    tags = tmp_path / "tags.jsonl"
    assert cli.main(["uts", "tag", "--captions", str(tmp_path / "captions.jsonl"), "--out",
                     str(tags), "--extractor", "lm", "--model", str(tmp_path / "lm"),
                     "--batch-size", "4", "--max-new-tokens", "4"]) == 0
    rows = [json.loads(line) for line in tags.read_text().splitlines()]
    assert len(rows) == 3 and all(r["status"] == "failed" and r["problems"] for r in rows)
    assert "3 clips have no usable tags" in capsys.readouterr().out
    assert cli.main(["uts", "tag", "--captions", str(tmp_path / "captions.jsonl"), "--out",
                     str(tmp_path / "t2.jsonl"), "--extractor", "lm"]) == 2
    assert "--model" in capsys.readouterr().err
