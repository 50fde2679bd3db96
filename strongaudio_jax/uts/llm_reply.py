"""The tagging prompt for an LLM and the strict parsing of its reply.

Shared by every LLM-backed extractor (the project's JAX LM tagger and any OpenAI-compatible
endpoint), so a reply is judged the same way whoever wrote it. The reply must be a JSON object
`{"tags": [...]}` with 5-10 one-word lowercase tags. Parsing repairs only what cannot change
the meaning (surrounding prose or code fences, case, a differently-cased key, duplicates,
more than 10 tags) and records each repair; anything else fails the reply, with the reason.
"""

from __future__ import annotations

import dataclasses
import json
import re

from strongaudio_jax.uts.normalize import Normalizer

MIN_TAGS, MAX_TAGS = 5, 10

SYSTEM_PROMPT = (
    "You turn audio captions into tags for a unified audio tag vocabulary covering speech, "
    "music and environmental sound. Reply with JSON only.")

USER_PROMPT = """Read the audio caption below and list {min_tags} to {max_tags} tags for the clip.
Cover, where the caption says so: the scene or environment, the sound sources, the sound
events, audio and production traits (loudness, reverb, noise, recording quality) and the
semantic function (e.g. narration, advertisement, alarm).
Rules:
- each tag is ONE lowercase English word; a hyphenated compound counts as one word;
- use the most common word for a thing (car, not automobile); singular nouns;
- no duplicates; nothing the caption does not support; nothing the caption negates;
- reply with exactly one JSON object and nothing else: {{"tags": ["tag1", "tag2", ...]}}

Caption:
{caption}"""


def user_prompt(caption: str) -> str:
    return USER_PROMPT.format(min_tags=MIN_TAGS, max_tags=MAX_TAGS, caption=caption.strip())


def chat_messages(caption: str) -> list[dict]:
    """OpenAI-style chat messages for one caption."""
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": user_prompt(caption)}]


def lm_prompt(caption: str) -> str:
    """The same instructions as one plain-text prompt, for a decoder-only LM without chat roles."""
    return f"{SYSTEM_PROMPT}\n\n{user_prompt(caption)}\n\nJSON:"


@dataclasses.dataclass
class TagResult:
    """Outcome of tagging one caption. status: ok | repaired | failed."""
    tags: list[str]
    status: str
    problems: list[str] = dataclasses.field(default_factory=list)

    @classmethod
    def failed(cls, reason: str) -> "TagResult":
        return cls([], "failed", [reason])


_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n?(.*?)\n?```$", re.S)


def _find_json(text: str) -> tuple[object, list[str]] | None:
    """The reply's JSON value: the whole text, else one fenced block, else the first {...}."""
    stripped = text.strip()
    try:
        return json.loads(stripped), []
    except ValueError:
        pass
    m = _FENCE.match(stripped)
    if m:
        try:
            return json.loads(m.group(1)), ["removed code fence"]
        except ValueError:
            pass
    start = stripped.find("{")
    if start >= 0:
        try:
            value, _ = json.JSONDecoder().raw_decode(stripped[start:])
            return value, ["removed text around the JSON"]
        except ValueError:
            pass
    return None


def parse_reply(text: str, normalize: Normalizer) -> TagResult:
    """Judges one LLM reply: strict JSON `{"tags": [...]}`, safe repairs listed in `problems`."""
    if not isinstance(text, str) or not text.strip():
        return TagResult.failed("empty reply")
    found = _find_json(text)
    if found is None:
        return TagResult.failed("no JSON object in the reply")
    value, problems = found
    if not isinstance(value, dict):
        return TagResult.failed(
            f"reply is a JSON {type(value).__name__}, not an object with 'tags'")
    if "tags" in value:
        raw = value["tags"]
    else:
        keys = [k for k in value if isinstance(k, str) and k.strip().lower() == "tags"]
        if len(keys) != 1:
            return TagResult.failed(f"no 'tags' key (keys: {sorted(map(str, value))[:5]})")
        raw = value[keys[0]]
        problems.append(f"key {keys[0]!r} read as 'tags'")
    if not isinstance(raw, list):
        return TagResult.failed(f"'tags' is a {type(raw).__name__}, not a list")

    tags: list[str] = []
    for item in raw:
        if not isinstance(item, str):
            problems.append(f"dropped non-string tag {item!r}")
            continue
        tag = normalize(item)
        if tag is None:
            problems.append(f"dropped {item!r}: not one word")
        elif tag in tags:
            problems.append(f"dropped duplicate {item!r}")
        else:  # case, plural, spelling and synonyms are normalisation, not repairs
            tags.append(tag)
    if len(tags) > MAX_TAGS:
        problems.append(f"kept the first {MAX_TAGS} of {len(tags)} tags")
        tags = tags[:MAX_TAGS]
    if len(tags) < MIN_TAGS:
        problems.append(f"only {len(tags)} valid tags (need {MIN_TAGS})")
        return TagResult(tags, "failed", problems)
    return TagResult(tags, "repaired" if problems else "ok", problems)
