"""Extractor over the project's own decoder-only LM (JAX): prompt in, reply text out.

The contract: a `generate(prompts) -> replies` function decodes a batch of plain-text prompts
(built by `llm_reply.lm_prompt`) into reply strings, one per prompt, in order. Replies are
judged by `llm_reply.parse_reply` exactly like those of an HTTP endpoint.

`lm_generate(directory)` is that function for an LM imported with `strongaudio import-hf`
(`strongaudio uts tag --extractor lm --model DIR`): each prompt becomes the user message of the
model's chat template (when tokenizer_config.json has one), then infer/generate.py decodes the
batch greedily (left padding, KV cache) until the end token.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Iterator, Sequence

from strongaudio_jax.uts import llm_reply
from strongaudio_jax.uts.normalize import Normalizer
from strongaudio_jax.uts.tagging import CaptionItem

GenerateFn = Callable[[Sequence[str]], Sequence[str]]


class LMTagger:
    """Batches captions into prompts for `generate` and parses each reply."""

    def __init__(self, generate: GenerateFn, normalize: Normalizer | None = None,
                 batch_size: int = 32, name: str = "jax-lm"):
        self.generate = generate
        self.normalize = normalize or Normalizer()
        self.batch_size = batch_size
        self.name = name

    def tag_many(self, items: Sequence[CaptionItem]) -> Iterator[tuple[str, llm_reply.TagResult]]:
        for start in range(0, len(items), self.batch_size):
            batch = items[start:start + self.batch_size]
            replies = list(self.generate([llm_reply.lm_prompt(it.caption) for it in batch]))
            if len(replies) != len(batch):
                raise RuntimeError(f"{self.name}: generate() returned {len(replies)} replies for "
                                   f"{len(batch)} prompts; it must return one per prompt, in order")
            for it, reply in zip(batch, replies):
                yield it.id, llm_reply.parse_reply(reply, self.normalize)


def lm_generate(directory: str, max_new_tokens: int = 128, batch_size: int = 32,
                tensor_parallel: int = 1, length_multiple: int = 64, temperature: float = 0.0,
                top_p: float = 1.0, chat_template: bool = True) -> GenerateFn:
    """`generate(prompts) -> replies` over the import-hf directory `directory` (a text LM, or
    the LM of an audio-language model). Batches are padded to `batch_size` rows and prompt
    lengths to a multiple of `length_multiple`, so a corpus compiles a few shapes only. With
    `tensor_parallel` > 1 the model runs on a (data, tensor) mesh of all local devices.
    `temperature` > 0 samples within `top_p` (uts/reference.py); `generate(prompts, keys)`
    then draws prompt i's reply from its own key keys[i] (infer/generate.py `row_keys`).
    `chat_template=False` sends the prompts as plain text, as vLLM's `LLM.generate` does."""
    import jax

    from strongaudio_jax.infer import chat, generate as gen, import_hf
    from strongaudio_jax.models.lm import QwenLM
    from strongaudio_jax.parallel.mesh import make_mesh

    mesh = None
    if tensor_parallel > 1:
        n = jax.device_count()
        if n % tensor_parallel:
            raise ValueError(f"--tensor-parallel {tensor_parallel} does not divide the {n} "
                             f"devices")
        mesh = make_mesh({"data": n // tensor_parallel, "tensor": tensor_parallel})
        data = n // tensor_parallel
        batch_size = -(-batch_size // data) * data
    model, params = import_hf.load(directory, mesh=mesh)
    if not isinstance(model, QwenLM):  # an audio-language model: its LM alone
        model, params = QwenLM(model.cfg.text, model.dtype), params["language_model"]
    tok = chat.ChatTokenizer(directory)
    templated = chat_template and bool(tok.config.get("chat_template"))
    eos = {tok.token_id(tok.eos_token)}
    gen_path = os.path.join(directory, "generation_config.json")
    if os.path.isfile(gen_path):
        with open(gen_path) as f:
            extra = json.load(f).get("eos_token_id")
        eos |= set([extra] if isinstance(extra, int) else (extra or []))
    eos.discard(None)
    pad = tok.token_id(tok.pad_token)
    pad = pad if pad is not None else 0

    def generate(prompts: Sequence[str], keys=None) -> list[str]:
        texts = [tok.apply_chat_template([{"role": "user", "content": p}]) if templated else p
                 for p in prompts]
        ids = [tok.encode(t) for t in texts]
        rows = len(ids)
        ids += [ids[-1]] * (-rows % batch_size)  # fixed batch shape; extra rows dropped
        if keys is not None:
            keys = list(keys) + [keys[-1]] * (len(ids) - rows)
        out = gen.generate(model, params, ids, max_new_tokens, eos_id=sorted(eos), pad_id=pad,
                           mesh=mesh, length_multiple=length_multiple,
                           temperature=temperature, top_p=top_p, row_keys=keys)
        return [tok.decode(o) for o in out[:rows]]

    return generate
