"""UTS tag extraction: LLM reply parsing on recorded replies, the JAX-LM extractor contract,
the offline rules extractor (with its precision/recall on the demo corpus) and resumable tag files."""

import json

import pytest

from strongaudio_jax import assets
from strongaudio_jax.uts import evaluate, llm_reply, lm_tagger, normalize, rules_tagger, tagging

NORM = normalize.Normalizer()
GOOD = ["dog", "bark", "outdoor", "park", "distant", "loud"]

# Replies as LLMs wrote them (status expected, and a problem text expected where repaired/failed).
RECORDED = [
    ('{"tags": ["dog", "bark", "outdoor", "park", "distant", "loud"]}', "ok", None),
    ('```json\n{"tags": ["dog", "bark", "outdoor", "park", "distant", "loud"]}\n```', "repaired", "code fence"),
    ('Sure! Here are the tags:\n{"tags": ["dog", "bark", "outdoor", "park", "distant", "loud"]}\nHope it helps.',
     "repaired", "text around"),
    ('{"Tags": ["dog", "bark", "outdoor", "park", "distant", "loud"]}', "repaired", "read as 'tags'"),
    ('{"tags": ["Dogs", "bark", "dog", "outdoor", "park", "distant", "loud"]}', "repaired", "duplicate 'dog'"),
    ('{"tags": ["dog", "dog barking", "bark", "outdoor", "park", "distant", "loud"]}', "repaired",
     "'dog barking': not one word"),
    ('{"tags": ["dog", "bark", "outdoor", "park", "distant", "loud", 7]}', "repaired", "non-string"),
    ('{"tags": ["a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9", "a10", "a11", "a12"]}', "repaired",
     "first 10 of 12"),
    ('{"labels": ["dog", "bark", "outdoor", "park", "distant", "loud"]}', "failed", "no 'tags' key"),
    ('{"tags": "dog, bark, outdoor, park, distant"}', "failed", "not a list"),
    ('["dog", "bark", "outdoor", "park", "distant"]', "failed", "not an object"),
    ('dog, bark, outdoor, park, distant, loud', "failed", "no JSON"),
    ('{"tags": ["dog barking in a park", "very loud sound", "dog", "bark"]}', "failed", "only 2 valid"),
    ('{"tags": ["dog", "bark", "outdoor"', "failed", "no JSON"),
    ("", "failed", "empty"),
]


@pytest.mark.parametrize("reply,status,problem", RECORDED)
def test_parse_recorded_replies(reply, status, problem):
    r = llm_reply.parse_reply(reply, NORM)
    assert r.status == status, r
    if status != "failed":
        assert 5 <= len(r.tags) <= 10 and len(set(r.tags)) == len(r.tags)
        if "a1" not in r.tags:
            assert r.tags == GOOD
    if problem:
        assert any(problem in p for p in r.problems), r.problems
    else:
        assert r.problems == []


def test_prompt_carries_caption_and_format():
    msgs = llm_reply.chat_messages("A dog barks twice in a park.")
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert "A dog barks twice in a park." in msgs[1]["content"] and '{"tags": [' in msgs[1]["content"]
    assert "5 to 10 tags" in msgs[1]["content"]
    assert llm_reply.lm_prompt("A dog.").endswith("A dog.\n\nJSON:")


def test_lm_tagger_batches_prompts_and_parses_replies():
    seen = []

    def generate(prompts):  # stands in for the JAX decoder
        seen.append(len(prompts))
        return [RECORDED[i % 3][0] for i in range(len(prompts))]

    items = [tagging.CaptionItem(f"c{i}", f"caption {i}") for i in range(5)]
    out = dict(lm_tagger.LMTagger(generate, NORM, batch_size=2).tag_many(items))
    assert seen == [2, 2, 1] and list(out) == [f"c{i}" for i in range(5)]
    assert [r.status for r in out.values()] == ["ok", "repaired", "ok", "repaired", "ok"]  # per batch
    bad = lm_tagger.LMTagger(lambda ps: ps[:1], NORM, batch_size=2)
    with pytest.raises(RuntimeError, match="returned 1 replies for 2 prompts"):
        list(bad.tag_many(items))


def test_rules_tagger_reads_negation_topic_and_tempo():
    t = rules_tagger.RulesTagger(NORM)
    tags = t.raw_tags("A woman speaks French. She talks about music and cars. There is no music or "
                      "traffic. It is loud and close to the microphone.")
    assert tags[:3] == ["female", "speech", "spoken"] and "french" in tags and "loud" in tags
    assert "music" not in tags and "car" not in tags and "traffic" not in tags
    assert "clean" in tags  # no noise or reverberation described
    drums = t.raw_tags("A drum kit plays a rock beat at about 140 beats per minute. A faint hiss runs underneath.")
    assert {"drums", "percussion", "music", "rock", "beat", "fast", "hiss", "noise"} <= set(drums)
    assert "clean" not in drums and drums.index("music") < drums.index("drums")
    assert t.tag("Silence.").status == "failed"


def test_rules_tagger_recovers_demo_corpus_tags():
    """Recall >= 0.8 of the demo corpus's ground-truth tags from its captions alone."""
    items = tagging.read_captions(assets.demo_corpus("*.tfrecord"))
    demo = normalize.Normalizer([normalize.DEMO_SYNONYMS])
    results = dict(rules_tagger.RulesTagger(demo).tag_many(items))
    pred = {k: r.tags for k, r in results.items() if r.status in tagging.DONE}
    ref = {it.id: it.tags for it in items}
    assert len(ref) == 370 and len(pred) >= 360
    # The generator picks among interchangeable words at random (talking / spoken, robotic /
    # synthetic / computer ...); the demo synonym table collapses them, as UTS building does.
    m = evaluate.precision_recall(pred, ref, demo)
    raw = evaluate.precision_recall(pred, ref, None)
    print(f"demo corpus, rules extractor: precision {m['precision']:.3f} recall {m['recall']:.3f} "
          f"(raw tags: {raw['precision']:.3f} / {raw['recall']:.3f})")
    assert m["recall"] >= 0.8 and m["precision"] >= 0.8
    assert raw["recall"] >= 0.7


def test_tag_corpus_resumes_and_survives_a_cut_off_line(tmp_path):
    items = [tagging.CaptionItem(f"c{i}", "A man speaks English slowly in a small room. A dog barks.")
             for i in range(4)]
    out = tmp_path / "tags.jsonl"
    stats = tagging.tag_corpus(items[:2], rules_tagger.RulesTagger(NORM), str(out))
    assert (stats.ok + stats.repaired, stats.skipped_done) == (2, 0)
    with open(out, "a") as f:
        f.write('{"id": "c2", "tags": ["x"')  # a writer killed mid-line
    stats = tagging.tag_corpus(items, rules_tagger.RulesTagger(NORM), str(out))
    assert (stats.skipped_done, stats.ok + stats.repaired) == (2, 2)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["c0", "c1", "c2", "c3"]
    assert rows[0]["tags"][:4] == ["male", "speech", "spoken", "english"]
    # A whole last row without its newline is kept, not cut off.
    out.write_text(out.read_text().rstrip("\n"))
    assert tagging.tag_corpus(items, rules_tagger.RulesTagger(NORM), str(out)).skipped_done == 4
    assert len(out.read_text().splitlines()) == 4 and out.read_text().endswith("\n")
    # A caption the rules cannot tag fails once; rerunning does not append it again.
    silent = [tagging.CaptionItem("s", "Silence.")]
    assert tagging.tag_corpus(silent, rules_tagger.RulesTagger(NORM), str(out)).failed == 1
    assert tagging.tag_corpus(silent, rules_tagger.RulesTagger(NORM), str(out)).skipped_done == 1
    assert len(out.read_text().splitlines()) == 5
    # A clip without a caption is never sent to an extractor; it is recorded as failed.
    stats = tagging.tag_corpus([tagging.CaptionItem("e", " ")], rules_tagger.RulesTagger(NORM), str(out))
    assert stats.failed == 1 and tagging.read_tag_file(str(out))["e"]["problems"] == ["no caption"]
