"""The tokenizer and chat template of an imported LM (tokenizer.json, tokenizer_config.json).

Tokenization uses the `tokenizers` package (Tokenizer.from_file). The chat template is the
jinja2 text in tokenizer_config.json's `chat_template`, rendered as transformers'
apply_chat_template does (a sandboxed, immutable jinja2 environment with trim_blocks and
lstrip_blocks, `raise_exception`, `tojson`): the template can format text, not run code.
"""

from __future__ import annotations

import json
import os
from typing import Mapping, Sequence


class TokenizerError(ValueError):
    """A missing or unusable tokenizer file (named in the text)."""


def _token_text(value):
    return value.get("content") if isinstance(value, dict) else value


class ChatTokenizer:
    def __init__(self, directory: str):
        from tokenizers import Tokenizer
        path = os.path.join(directory, "tokenizer.json")
        cfg_path = os.path.join(directory, "tokenizer_config.json")
        for p in (path, cfg_path):
            if not os.path.isfile(p):
                raise TokenizerError(f"{p} does not exist")
        self.tokenizer = Tokenizer.from_file(path)
        with open(cfg_path) as f:
            self.config = json.load(f)
        self.eos_token = _token_text(self.config.get("eos_token"))
        self.bos_token = _token_text(self.config.get("bos_token"))
        self.pad_token = _token_text(self.config.get("pad_token"))

    def token_id(self, token: str | None) -> int | None:
        return None if token is None else self.tokenizer.token_to_id(token)

    def encode(self, text: str) -> list[int]:
        """Ids of `text` without added special tokens (as apply_chat_template tokenizes)."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def apply_chat_template(self, messages: Sequence[Mapping], add_generation_prompt: bool = True,
                            **kwargs) -> str:
        template = self.config.get("chat_template")
        if isinstance(template, list):  # named templates: the 'default' one
            template = {t["name"]: t["template"] for t in template}.get("default")
        if not template:
            raise TokenizerError("tokenizer_config.json has no chat_template")
        return _compile(template).render(
            messages=list(messages), add_generation_prompt=add_generation_prompt,
            bos_token=self.bos_token or "", eos_token=self.eos_token or "", **kwargs)


def _compile(template: str):
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template)
