"""`uts tag --reference` / `uts build --reference`: the reference study's prompt, sampling,
"labels" parsing without normalisation, and failed parses counted in N (uts/reference.py)."""

import json
import math
import os

import numpy as np
import pytest

from strongaudio_jax import cli
from strongaudio_jax.infer import decoding
from strongaudio_jax.uts import reference, tagging

from lm_fixtures import SPECIAL, write_word_tokenizer

LABELS = '{"labels": ["Dog", "bark", "city park", "Loud"]}'


def write_chain_lm(directory: str, vocab: list[str], chains: list[list[str]]) -> None:
    """A Qwen2 checkpoint (before import-hf) whose greedy continuation of a prompt is fixed by
    its LAST token: each chain [a, b, c, ...] sends a -> b -> c -> ... Embeddings are one-hot,
    attention and MLP add nothing, and the head maps a token to its successor with a margin
    large enough that sampling at temperature 0.3 within top-p 0.9 picks the same token.
    `vocab` (ids in order) starts with SPECIAL; the tokenizer splits on whitespace only, so a
    vocab entry like '{"labels":' is one token, and decoding joins tokens with spaces."""
    from safetensors.numpy import save_file

    from strongaudio_jax.infer import import_hf
    from strongaudio_jax.models.lm import QwenConfig

    assert vocab[:len(SPECIAL)] == SPECIAL and len(vocab) <= 32, vocab
    hf_config = {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "vocab_size": 32,
                 "hidden_size": 32, "intermediate_size": 8, "num_hidden_layers": 1,
                 "num_attention_heads": 4, "num_key_value_heads": 2,
                 "tie_word_embeddings": False}
    os.makedirs(directory, exist_ok=True)
    cfg = QwenConfig.from_hf(hf_config)
    tensors = {}
    for path, shape in import_hf.expected_shapes(cfg).items():
        name = import_hf.hf_name(path)
        fill = np.ones if "norm" in name else np.zeros
        tensors[name] = fill(import_hf.hf_shape(path, shape), np.float32)
    tensors["model.embed_tokens.weight"] = np.eye(32, dtype=np.float32)
    head = np.zeros((32, 32), np.float32)  # torch [vocab, hidden]: row = next token
    for chain in chains:
        for a, b in zip(chain, chain[1:]):
            head[vocab.index(b), vocab.index(a)] = 1.0
    tensors["lm_head.weight"] = head
    save_file(tensors, os.path.join(directory, "model.safetensors"))
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(hf_config, f)
    write_word_tokenizer(directory, vocab)


@pytest.mark.parametrize("reply,tags,status", [
    (LABELS, ["Dog", "bark", "city park", "Loud"], "ok"),  # verbatim: case, two words, 4 labels
    ('Sure! {"labels": ["a", "b"]} Hope this helps.', ["a", "b"], "ok"),  # first { to last }
    ('```json\n{"labels": ["rain", "rain", "roof"]}\n```', ["rain", "rain", "roof"], "ok"),
    ('{"labels": ' + json.dumps([f"t{i}" for i in range(12)]) + "}",
     [f"t{i}" for i in range(12)], "ok"),  # no limit on the count
    ('{"tags": ["dog", "bark"]}', [], "failed"),  # the project's key is not the reference's
    ('["dog", "bark"]', [], "failed"),  # a bare list
    ('{"labels": "dog"}', [], "failed"),
    ('{"labels": ["dog", 3]}', ["dog"], "ok"),
    ('{"labels": ["dog", "bark"', [], "failed"),  # cut off
    ("", [], "failed"),
])
def test_parse_labels(reply, tags, status):
    r = reference.parse_labels(reply)
    assert (r.tags, r.status) == (tags, status)
    assert r.problems or status == "ok"


def test_prompt_is_the_reference_template():
    p = reference.prompt("  A dog barks twice.\n")
    assert p.startswith("You are a labeling assistant for audio descriptions.\n")
    assert 'a list of 10 labels.' in p and '{"labels": ["xxx", "xxx", "xxx", "xxx", "xxx"]}' in p
    assert p.endswith("CAPTION:\nA dog barks twice.\n")
    assert (reference.TEMPERATURE, reference.TOP_P) == (0.3, 0.9)


def test_per_record_keys_and_no_retry(tmp_path):
    """generate() gets each clip's id (LMGenerator derives its sampling key from it and --seed),
    whatever batch it lands in; a failed parse is final and stays in the tag file."""
    seen = {}

    def generate(prompts, ids):
        for p, i in zip(prompts, ids):
            seen.setdefault(p.rsplit("\n", 2)[-2], set()).add(i)
        return [LABELS if "dog" in p else "no json" for p in prompts]

    items = [tagging.CaptionItem(f"c{i}", "a dog" if i % 2 else "a bird") for i in range(5)]
    out = str(tmp_path / "tags.jsonl")
    stats = tagging.tag_corpus(items, reference.ReferenceLMTagger(generate, batch_size=2), out)
    assert (stats.ok, stats.failed) == (2, 3)
    again = tagging.tag_corpus(items[::-1], reference.ReferenceLMTagger(generate, batch_size=3),
                               out)
    assert again.skipped_done == 5 and again.ok == again.failed == 0  # nothing retried
    assert seen["a dog"] == {"c1", "c3"}


def test_row_keys_make_each_draw_independent_of_the_batch():
    """With row_keys, a prompt samples the same tokens first or last, beside any other."""
    import jax

    from strongaudio_jax.infer import generate as gen
    from strongaudio_jax.models.lm import QwenConfig, QwenLM

    cfg = QwenConfig.from_hf({"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"],
                              "vocab_size": 64, "hidden_size": 16, "intermediate_size": 16,
                              "num_hidden_layers": 1, "num_attention_heads": 2,
                              "num_key_value_heads": 1, "tie_word_embeddings": True})
    model = QwenLM(cfg)
    params = model.init(jax.random.PRNGKey(0), *model.dummy_inputs())["params"]
    a, b, c = [1, 2, 3], [4, 5], [6]

    def run(prompts, ids):
        return gen.generate(model, params, prompts, 6, temperature=1.0, top_p=0.9,
                            length_multiple=4, row_keys=decoding.row_keys(0, ids))

    ab = run([a, b], ["a", "b"])
    assert run([b, a], ["b", "a"]) == ab[::-1]
    assert run([c, b], ["c", "b"])[1] == ab[1]


def test_uts_tag_and_build_reference_with_an_lm(tmp_path, capsys):
    """A tiny LM imported with import-hf answers the reference prompt: captions ending in
    'barks' get LABELS, those ending in 'sings' an empty reply (a failed parse). The tags are
    kept as written, and `uts build --reference` counts the failed clip in N."""
    reply = ['{"labels":', '["Dog",', '"bark",', '"city', 'park",', '"Loud"]}']
    vocab = SPECIAL + reply + ["barks", "sings"]
    write_chain_lm(str(tmp_path / "hf"), vocab, [["barks"] + reply + ["<|im_end|>"],
                                                  ["sings", "<|im_end|>"]])
    assert cli.main(["import-hf", "--from", str(tmp_path / "hf"), "--out",
                     str(tmp_path / "lm")]) == 0
    with open(tmp_path / "captions.jsonl", "w") as f:
        for i, cap in enumerate(["A dog barks", "The dog barks", "A bird sings"]):
            f.write(json.dumps({"id": f"clip{i}", "caption": cap}) + "\n")
    tags = tmp_path / "tags.jsonl"
    assert cli.main(["uts", "tag", "--reference", "--captions", str(tmp_path / "captions.jsonl"),
                     "--out", str(tags), "--extractor", "lm", "--model", str(tmp_path / "lm"),
                     "--batch-size", "2", "--max-new-tokens", "10"]) == 0
    rows = {r["id"]: r for r in map(json.loads, tags.read_text().splitlines())}
    assert rows["clip0"]["tags"] == rows["clip1"]["tags"] == ["Dog", "bark", "city park", "Loud"]
    assert rows["clip2"]["status"] == "failed" and rows["clip2"]["tags"] == []
    assert rows["clip0"]["extractor"] == "reference-lm:lm"
    assert "1 clips have no usable tags" in capsys.readouterr().out
    # the same, sampled on a (data 2, tensor 4) mesh of the 8 CPU devices
    assert cli.main(["uts", "tag", "--reference", "--captions", str(tmp_path / "captions.jsonl"),
                     "--out", str(tmp_path / "tags_tp.jsonl"), "--extractor", "lm", "--model",
                     str(tmp_path / "lm"), "--batch-size", "2", "--max-new-tokens", "10",
                     "--tensor-parallel", "4"]) == 0
    rows_tp = [json.loads(line) for line in (tmp_path / "tags_tp.jsonl").read_text().splitlines()]
    assert {r["id"]: r["tags"] for r in rows_tp} == {k: r["tags"] for k, r in rows.items()}

    assert cli.main(["uts", "build", "--reference", "--tags", str(tags), "--k", "4",
                     "--out-dir", str(tmp_path / "ref")]) == 0
    assert "3 clips (1 failed extractions counted in N" in capsys.readouterr().out
    stats = json.loads((tmp_path / "ref" / "label_4.stats.json").read_text())
    assert stats["num_clips"] == 3 and stats["failed_extractions_counted_in_n"] == 1
    # every tag has df 2 of N = 3: equal scores, so df then alphabetical order (capitals first)
    assert [t["tag"] for t in stats["tags"]] == ["Dog", "Loud", "bark", "city park"]
    assert stats["tags"][0]["score"] == pytest.approx(2 * math.log(4 / 3), abs=1e-6)
    # the project's build of the same file: normalised tags, the failed clip left out
    assert cli.main(["uts", "build", "--tags", str(tags), "--k", "3",
                     "--out-dir", str(tmp_path / "own")]) == 0
    own = json.loads((tmp_path / "own" / "label_3.stats.json").read_text())
    assert own["num_clips"] == 2 and own["failed_extractions_left_out"] == 1
    assert {t["tag"] for t in own["tags"]} == {"dog", "bark", "loud"}


def test_reference_needs_the_lm_extractor(tmp_path, capsys):
    (tmp_path / "c.jsonl").write_text('{"id": "a", "caption": "a dog barks"}\n')
    assert cli.main(["uts", "tag", "--reference", "--captions", str(tmp_path / "c.jsonl"),
                     "--out", str(tmp_path / "t.jsonl")]) == 2
    assert "--extractor lm --model DIR" in capsys.readouterr().err
    assert not (tmp_path / "t.jsonl").exists()
