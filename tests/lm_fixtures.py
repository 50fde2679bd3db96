"""Tiny Hugging Face-style LM directories built offline for the LM tests."""

import json
import os

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# the audio-language model's: placeholder (id 3), begin / end of audio
AUDIO_SPECIAL = ["<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"]
SENTENCES = ["the dog barks at the door", "a bird sings in the morning rain",
             "rain falls on the roof of the house", "the user asks and the assistant answers",
             "system user assistant hello world"]


def write_tokenizer(directory: str, audio: bool = False) -> None:
    """A word-level tokenizer trained on a few sentences, a ChatML chat template (with `audio`,
    the audio special tokens follow the three text ones: <|AUDIO|> is id 3)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    tok = Tokenizer(models.WordLevel(unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(SENTENCES, trainers.WordLevelTrainer(
        special_tokens=SPECIAL + (AUDIO_SPECIAL if audio else [])))
    tok.save(os.path.join(directory, "tokenizer.json"))
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|im_end|>",
                   "pad_token": "<|endoftext|>", "bos_token": None,
                   "chat_template": CHAT_TEMPLATE, "model_max_length": 256}, f)


def write_chain_lm(directory: str, vocab: list[str], chains: list[list[str]]) -> None:
    """A Qwen2 checkpoint (before import-hf) whose greedy continuation of a prompt is fixed by
    its LAST token: each chain [a, b, c, ...] sends a -> b -> c -> ... Embeddings are one-hot,
    attention and MLP add nothing, and the head maps a token to its successor with a margin
    large enough that sampling at temperature 0.3 within top-p 0.9 picks the same token.
    `vocab` (ids in order) starts with SPECIAL; the tokenizer splits on whitespace only, so a
    vocab entry like '{"labels":' is one token, and decoding joins tokens with spaces."""
    import numpy as np
    from safetensors.numpy import save_file
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

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
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)},
                                     unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    tok.add_special_tokens([AddedToken(t, special=True) for t in SPECIAL])
    tok.save(os.path.join(directory, "tokenizer.json"))
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
                   "chat_template": CHAT_TEMPLATE}, f)
