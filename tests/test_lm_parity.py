"""Qwen2 / Qwen3 in Flax against transformers: tiny random-weight models saved as sharded
safetensors, imported with `strongaudio import-hf`; logits, greedy generation (one device and a
(data 2, tensor 4) mesh of the 8 CPU devices) and the chat template."""

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="parity tests need torch (CPU)")
transformers = pytest.importorskip("transformers", reason="parity tests need transformers")

from strongaudio_jax import cli  # noqa: E402
from strongaudio_jax.infer import chat, generate as gen, import_hf  # noqa: E402
from strongaudio_jax.parallel.mesh import make_mesh  # noqa: E402

from lm_fixtures import write_tokenizer  # noqa: E402

PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [3, 4], [100, 101, 102, 103, 104], [42], [7, 7, 7],
           [200, 1, 2, 3, 4, 5, 6, 7, 8], [9, 8], [250, 251, 252, 253]]
STEPS = 32


@pytest.fixture(scope="module", params=["qwen2", "qwen3"])
def lm(request, tmp_path_factory):
    """(torch model, imported Flax model, params, import directory) for one family."""
    kind = request.param
    torch.manual_seed(0)
    common = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  initializer_range=0.2,  # spread logits: no near-ties for greedy decoding
                  eos_token_id=None, bos_token_id=None, pad_token_id=0)
    if kind == "qwen2":  # untied output embedding, rope_theta not the default
        cfg = transformers.Qwen2Config(tie_word_embeddings=False, rope_theta=5000.0, **common)
    else:  # tied embeddings, head_dim apart from hidden / heads
        cfg = transformers.Qwen3Config(tie_word_embeddings=True, head_dim=32, **common)
    model = transformers.AutoModelForCausalLM.from_config(cfg).eval()
    src = tmp_path_factory.mktemp(f"{kind}_hf")
    model.save_pretrained(src, max_shard_size="20KB")
    assert os.path.isfile(src / "model.safetensors.index.json")  # the sharded path
    write_tokenizer(str(src))
    out = tmp_path_factory.mktemp(f"{kind}_out") / "ckpt"
    assert cli.main(["import-hf", "--from", str(src), "--out", str(out)]) == 0
    flax_model, params = import_hf.load(str(out))
    return model, flax_model, params, out


def _torch_logits(model, tokens, mask):
    with torch.no_grad():
        return model(input_ids=torch.tensor(tokens).long(),
                     attention_mask=torch.tensor(mask).long()).logits.numpy()


def test_logits_match(lm):
    model, flax_model, params, _ = lm
    tokens, mask = gen.left_pad(PROMPTS)
    ref = _torch_logits(model, tokens, mask)
    out = np.asarray(gen.forward(flax_model, params, tokens, mask))
    np.testing.assert_allclose(out[mask], ref[mask], rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def _torch_greedy(model, prompts):
    tokens, mask = gen.left_pad(prompts)
    with torch.no_grad():
        out = model.generate(input_ids=torch.tensor(tokens).long(),
                             attention_mask=torch.tensor(mask).long(), do_sample=False,
                             max_new_tokens=STEPS, min_new_tokens=STEPS)
    return out[:, tokens.shape[1]:].tolist()


def test_greedy_generation_matches(lm):
    model, flax_model, params, _ = lm
    prompts = PROMPTS[:3]
    assert gen.generate(flax_model, params, prompts, STEPS) == _torch_greedy(model, prompts)


def test_sharded_generation_matches(lm):
    model, flax_model, params, _ = lm
    mesh = make_mesh({"data": 2, "tensor": 4})
    sharded = gen.shard_params(flax_model, params, mesh)
    q = sharded["layers_0"]["self_attn"]["q_proj"]["kernel"]
    assert q.sharding.spec[1] == "tensor"  # the 4 query heads split over the tensor axis
    got = gen.generate(flax_model, sharded, PROMPTS, STEPS, mesh=mesh)
    assert got == _torch_greedy(model, PROMPTS)


def test_eos_stops_and_nucleus_of_one_is_greedy(lm):
    _, flax_model, params, _ = lm
    greedy = gen.generate(flax_model, params, PROMPTS[:2], 8)
    stop = greedy[0][2]
    cut = gen.generate(flax_model, params, PROMPTS[:2], 8, eos_id=stop)
    assert cut[0] == greedy[0][:greedy[0].index(stop) + 1]
    # top_p below every token's probability keeps only the most likely token: greedy again
    assert gen.generate(flax_model, params, PROMPTS[:2], 8, temperature=0.7,
                        top_p=1e-6, seed=3) == greedy
    sampled = [gen.generate(flax_model, params, PROMPTS[:2], 8, temperature=1.0, seed=s)
               for s in range(3)]
    assert any(s != greedy for s in sampled)


def test_chat_template_matches_transformers(lm):
    _, _, _, out = lm
    messages = [{"role": "system", "content": "the assistant answers"},
                {"role": "user", "content": "the dog barks at the door"}]
    ours = chat.ChatTokenizer(str(out))
    theirs = transformers.AutoTokenizer.from_pretrained(str(out))
    text = ours.apply_chat_template(messages, add_generation_prompt=True)
    assert text == theirs.apply_chat_template(messages, add_generation_prompt=True,
                                              tokenize=False)
    assert ours.encode(text) == theirs(text, add_special_tokens=False)["input_ids"]
