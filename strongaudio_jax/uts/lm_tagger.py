"""Extractor over the project's own decoder-only LM (JAX): prompt in, reply text out.

The contract: a `generate(prompts) -> replies` function decodes a batch of plain-text prompts
(built by `llm_reply.lm_prompt`) into reply strings, one per prompt, in order. Replies are
judged by `llm_reply.parse_reply` exactly like those of an HTTP endpoint.

`LMGenerator(directory)` is that function for an LM imported with `strongaudio import-hf`, used
by both `strongaudio uts tag --extractor lm --model DIR` and `strongaudio tag` with
tag.extractor=lm (infer/tagger.py, on the job's mesh): each prompt becomes the user message of
the model's chat template (when tokenizer_config.json has one); prompts are grouped by their
token length rounded up to `length_multiple` (fixed shapes: one compiled program per length
bucket) into fixed-size batches, and infer/generate.py decodes them (left padding, KV cache)
until the end token. Greedy by default; with temperature > 0 every record samples with its own
key (infer/decoding.row_keys: the seed and a crc32 of the record's id), so a reply depends on the record only (not on
its batch, the device count or a restart).
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
            prompts = [llm_reply.lm_prompt(it.caption) for it in batch]
            replies = list(self.generate(prompts, [it.id for it in batch])
                           if getattr(self.generate, "per_record", False)
                           else self.generate(prompts))
            if len(replies) != len(batch):
                raise RuntimeError(f"{self.name}: generate() returned {len(replies)} replies for "
                                   f"{len(batch)} prompts; it must return one per prompt, in order")
            for it, reply in zip(batch, replies):
                yield it.id, llm_reply.parse_reply(reply, self.normalize)


class LMGenerator:
    """`generate(prompts, ids) -> replies` over the import-hf directory `directory` (a text LM, or
    the LM of an audio-language model); see the module docstring.

    `mesh`: a mesh to run on (data-parallel over its data axes, the model split over its
    `tensor` axis); without one, `tensor_parallel` > 1 makes a (data, tensor) mesh of all local
    devices and 1 runs on the default device. `batch_size` is rounded up to a multiple of the
    data-parallel devices."""

    per_record = True  # LMTagger passes the record ids

    def __init__(self, directory: str, max_new_tokens: int = 128, batch_size: int = 32,
                 tensor_parallel: int = 1, length_multiple: int = 64, temperature: float = 0.0,
                 top_p: float = 1.0, seed: int = 0, mesh=None, chat_template: bool = True):
        import jax

        from strongaudio_jax.infer import chat, import_hf
        from strongaudio_jax.models.lm import QwenLM
        from strongaudio_jax.parallel.mesh import make_mesh

        if mesh is None and tensor_parallel > 1:
            n = jax.device_count()
            if n % tensor_parallel:
                raise ValueError(f"--tensor-parallel {tensor_parallel} does not divide the {n} "
                                 f"devices")
            mesh = make_mesh({"data": n // tensor_parallel, "tensor": tensor_parallel})
        if mesh is not None:
            data = mesh.size // mesh.shape.get("tensor", 1)
            batch_size = -(-batch_size // data) * data
        model, params = import_hf.load(directory, mesh=mesh)
        if not isinstance(model, QwenLM):  # an audio-language model: its LM alone
            model, params = QwenLM(model.cfg.text, model.dtype), params["language_model"]
        self.model, self.params, self.mesh = model, params, mesh
        self.tok = tok = chat.ChatTokenizer(directory)
        # chat_template=False sends the prompts as plain text, as vLLM's `LLM.generate` does
        # (uts/reference.py)
        self.templated = chat_template and bool(tok.config.get("chat_template"))
        eos = {tok.token_id(tok.eos_token)}
        gen_path = os.path.join(directory, "generation_config.json")
        if os.path.isfile(gen_path):
            with open(gen_path) as f:
                extra = json.load(f).get("eos_token_id")
            eos |= set([extra] if isinstance(extra, int) else (extra or []))
        eos.discard(None)
        self.eos = sorted(eos)
        pad = tok.token_id(tok.pad_token)
        self.pad = pad if pad is not None else 0
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.length_multiple = length_multiple
        self.temperature, self.top_p, self.seed = float(temperature), float(top_p), int(seed)
        self.settings = {"max_new_tokens": max_new_tokens, "temperature": self.temperature,
                         "top_p": self.top_p, "seed": self.seed,
                         "chat_template": self.templated}

    def __call__(self, prompts: Sequence[str], ids: Sequence[str] | None = None) -> list[str]:
        from strongaudio_jax.infer import decoding, generate as gen

        if ids is None:
            ids = [str(i) for i in range(len(prompts))]
        texts = [self.tok.apply_chat_template([{"role": "user", "content": p}])
                 if self.templated else p for p in prompts]
        tokens = [self.tok.encode(t) for t in texts]
        m = self.length_multiple
        buckets: dict[int, list[int]] = {}
        for k, t in enumerate(tokens):
            buckets.setdefault(-(-len(t) // m) * m, []).append(k)
        replies: list[str | None] = [None] * len(prompts)
        b = self.batch_size
        for length in sorted(buckets):
            rows = buckets[length]
            for start in range(0, len(rows), b):
                batch = rows[start:start + b]
                padded = batch + [batch[-1]] * (b - len(batch))  # fixed shape; copies dropped
                keys = None
                if self.temperature > 0:
                    keys = decoding.row_keys(self.seed, [ids[k] for k in padded])
                out = gen.generate(self.model, self.params, [tokens[k] for k in padded],
                                   self.max_new_tokens, eos_id=self.eos, pad_id=self.pad,
                                   temperature=self.temperature, top_p=self.top_p,
                                   mesh=self.mesh, length_multiple=m, row_keys=keys)
                for k, o in zip(batch, out):
                    replies[k] = self.tok.decode(o)
        return replies

