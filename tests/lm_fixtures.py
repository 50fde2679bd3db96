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


def write_hf_checkpoint(directory, hf_config: dict, shards: int = 1, seed: int = 0,
                        layout: int = 0) -> dict:
    """A Hugging Face-layout checkpoint directory of random float32 weights for the config.json
    dict `hf_config` (qwen2 / qwen3 / qwen2_audio): the weights in `shards` safetensors files
    (with model.safetensors.index.json when more than one), config.json and a tokenizer.
    `layout` picks an audio LM's tensor names (import_hf.hf_names: 0 the Hub's
    'language_model.model.layers...', 1 transformers 5's 'model.language_model.layers...').
    Returns {tensor name: array}."""
    import numpy as np
    from safetensors.numpy import save_file
    from strongaudio_jax.infer import import_hf

    directory = str(directory)
    os.makedirs(directory, exist_ok=True)
    cfg = import_hf.ARCHITECTURES[hf_config["model_type"]][0].from_hf(hf_config)
    rng = np.random.default_rng(seed)
    tensors = {import_hf.hf_names(path)[layout]: rng.normal(size=import_hf.hf_shape(path, shape))
               .astype(np.float32) for path, shape in import_hf.expected_shapes(cfg).items()}
    names = sorted(tensors)
    if shards == 1:
        save_file(tensors, os.path.join(directory, "model.safetensors"))
    else:
        weight_map = {}
        for i in range(shards):
            file = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            part = {n: tensors[n] for n in names[i::shards]}
            save_file(part, os.path.join(directory, file))
            weight_map.update({n: file for n in part})
        with open(os.path.join(directory, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {}, "weight_map": weight_map}, f)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(hf_config, f)
    write_tokenizer(directory, audio=hf_config["model_type"] == "qwen2_audio")
    return tensors


def import_refused(tmp_path, capsys) -> str:
    """`strongaudio import-hf` of tmp_path/hf into tmp_path/out, which must be refused (exit
    code 2); returns its stderr."""
    from strongaudio_jax import cli
    code = cli.main(["import-hf", "--from", str(tmp_path / "hf"), "--out", str(tmp_path / "out")])
    assert code == 2
    return capsys.readouterr().err


def write_word_tokenizer(directory: str, vocab: list[str]) -> None:
    """A word-level tokenizer over `vocab` (ids in order, starting with SPECIAL) that splits on
    whitespace only (so '{"tags":' is one token) and joins words with spaces, with the ChatML
    template: replies of hand-built LMs decode to exactly the text their tokens spell."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)},
                                     unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    tok.add_special_tokens([AddedToken(t, special=True) for t in SPECIAL])
    tok.save(os.path.join(directory, "tokenizer.json"))
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
                   "chat_template": CHAT_TEMPLATE}, f)
