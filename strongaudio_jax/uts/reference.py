"""The reference study's tagging method, reproduced: `uts tag --reference`, `uts build --reference`.

The study's released code (AudenAI/Auden `examples/uts/utils/extract_tags.py` and
`build_labelsys.py`) tags each caption with Qwen2.5-7B-Instruct under vLLM and builds the
vocabulary from the raw replies. What it does, and what this module does the same way:
  * the prompt `PROMPT` below (exactly 10 one-word lowercase labels under the key "labels"),
    sent as plain text (vLLM's `LLM.generate`, no chat template);
  * sampling at temperature 0.3 within top-p 0.9, at most 512 new tokens;
  * the reply's text from its first "{" to its last "}" is read as JSON and its "labels" taken
    as they are: no lower-casing, no one-word check, no spelling / plural / synonym folding, no
    count limits (`parse_labels`);
  * a reply that does not parse gives no tags, and the clip still counts in N, the number of
    documents of the score df * log((N + 1) / (df + 1)) (`uts build --reference`).
Differences, each on purpose: every record draws from its own key (`--seed` and a crc32 of the
clip id, infer/decoding.row_keys), so its draws do not depend on the other clips of its batch
(vLLM's depend on the batch and the engine's seed); a "labels" value that is not a list, and
list items that are not strings, give no tag and are noted in `problems` (the reference would
count a string's characters as tags); ties in the score break by df then alphabetically (the
reference keeps Python's set order, which changes from run to run with the hash seed).
"""

from __future__ import annotations

import json
from typing import Iterator, Sequence

from strongaudio_jax.uts.llm_reply import TagResult
from strongaudio_jax.uts.tagging import CaptionItem

TEMPERATURE, TOP_P, MAX_NEW_TOKENS = 0.3, 0.9, 512

# Verbatim from extract_tags.py (TEMPLATE), including its blank lines and final newline.
PROMPT = """You are a labeling assistant for audio descriptions.
Extract essential, compact English labels for the audio caption.

Output rules:
- Output JSON only with a single key "labels": a list of 10 labels.
- Each label must be ONE WORD.
- Return ONLY a raw JSON object with key "labels". Do not use code fences or any extra text.
- Use lowercase.
- No full sentences, no punctuation beyond hyphens.
- Prefer canonical, domain-relevant terms with high reusability across captions.
- Avoid synonyms: collapse to a single consistent term set (e.g., always use "car" not "automobile").
- Avoid rare or obscure words; choose common, widely recognized terms.
- Cover five aspects when possible: scene/environment, sound sources, sound types/events, audio/production traits, semantic function/intent.
- Avoid duplicates.

Expected JSON:
{{"labels": ["xxx", "xxx", "xxx", "xxx", "xxx"]}}

Now process the following caption and return JSON only:
CAPTION:
{caption}
"""


def prompt(caption: str) -> str:
    return PROMPT.format(caption=caption.strip())


def parse_labels(text: str) -> TagResult:
    """The reference's `parse_labels`: JSON from the first "{" to the last "}", its "labels"
    kept verbatim (status ok), or no tags (status failed, the reason in `problems`)."""
    text = (text or "").strip()
    json_str = text[text.find("{"): text.rfind("}") + 1]
    try:
        value = json.loads(json_str) if json_str else None
    except ValueError:
        value = None
    if not isinstance(value, dict):
        return TagResult.failed("no JSON object in the reply")
    labels = value.get("labels", [])
    if not isinstance(labels, list):
        return TagResult.failed(f"'labels' is a {type(labels).__name__}, not a list")
    tags = [t for t in labels if isinstance(t, str)]
    problems = [f"dropped non-string label {t!r}" for t in labels if not isinstance(t, str)]
    if not tags:
        return TagResult([], "failed", problems + ["no 'labels' in the reply"])
    return TagResult(tags, "ok", problems)


class ReferenceLMTagger:
    """The reference extractor over `generate(prompts, ids) -> replies` (lm_tagger.LMGenerator
    with temperature 0.3, top-p 0.9, no chat template and --seed: each record samples with its
    own key from its id). A failed parse is final: the same record key would give the same
    reply, and the reference does not retry either."""

    retry_failed = False

    def __init__(self, generate, batch_size: int = 32, name: str = "reference-lm"):
        self.generate = generate
        self.batch_size = batch_size
        self.name = name

    def tag_many(self, items: Sequence[CaptionItem]) -> Iterator[tuple[str, TagResult]]:
        for start in range(0, len(items), self.batch_size):
            batch = items[start:start + self.batch_size]
            replies = list(self.generate([prompt(it.caption) for it in batch],
                                         [it.id for it in batch]))
            if len(replies) != len(batch):
                raise RuntimeError(f"{self.name}: generate() returned {len(replies)} replies for "
                                   f"{len(batch)} prompts; it must return one per prompt, in order")
            for it, reply in zip(batch, replies):
                yield it.id, parse_labels(reply)


def load_clip_tags(paths) -> tuple[dict, dict, int]:
    """(id -> tags as written, id -> domain, clips without tags) from tag files or TFRecords,
    as the reference reads its tag file: every clip counts, failed ones with no tags."""
    from strongaudio_jax.uts import tagging

    clip_tags, domains = {}, {}
    for path in tagging.expand(paths, "tag"):
        if path.endswith((".jsonl", ".json")):
            for k, r in tagging.read_tag_file(path).items():
                ok = r.get("status") in tagging.DONE
                clip_tags[k] = list(r["tags"]) if ok else []
                domains[k] = r.get("domain", "")
        else:
            for it in tagging.read_captions(path):
                clip_tags[it.id] = list(it.tags)
                domains[it.id] = it.domain
    return clip_tags, domains, sum(not t for t in clip_tags.values())
