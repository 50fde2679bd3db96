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
