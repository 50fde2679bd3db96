"""Extractor over the project's own decoder-only LM (JAX): prompt in, reply text out.

The LM itself arrives with a later issue; what is fixed here is the contract it plugs into:
a `generate(prompts) -> replies` function that decodes a batch of plain-text prompts (built by
`llm_reply.lm_prompt`) into reply strings, one per prompt, in order. Replies are judged by
`llm_reply.parse_reply` exactly like those of an HTTP endpoint.
"""

from __future__ import annotations

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
