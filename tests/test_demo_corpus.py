"""The demo corpus builder (tools/make_demo_corpus.py) and the committed corpus it made.

Building needs Debian packages (espeak-ng, festival, fluidsynth, the GM soundfont and a few
game-data packages with real sound effects); those tests skip with the apt-get line when
they are missing. The committed corpus is checked without any of them.
"""

from __future__ import annotations

import collections
import glob
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from strongaudio_jax.data import audio, schema, tfrecord

REPO = pathlib.Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "make_demo_corpus.py"
COMMITTED = REPO / "strongaudio_jax" / "assets" / "demo_corpus"
MAX_COMMITTED_BYTES = 15_000_000
PROBES = ("language", "instrument", "event")
DOMAINS = {"speech", "music", "sound", "mixture"}
if str(REPO / "tools") not in sys.path:
    sys.path.insert(0, str(REPO / "tools"))

from demo_corpus import captions, music, plan, sources  # noqa: E402


def _missing_prerequisites() -> str | None:
    try:
        sources.check_prerequisites()
    except sources.MissingPrerequisites as e:
        return str(e)
    return None


needs_packages = pytest.mark.skipif(
    _missing_prerequisites() is not None,
    reason=f"demo corpus build needs Debian packages: {_missing_prerequisites()}")


def read_corpus(path: pathlib.Path) -> dict[str, list[schema.Clip]]:
    """split -> clips, read back through the project's TFRecord reader and schema."""
    out = collections.defaultdict(list)
    for f in sorted(glob.glob(str(path / "*.tfrecord"))):
        split = os.path.basename(f).split("-")[0]
        for i, rec in enumerate(tfrecord.read_records(f)):
            out[split].append(schema.example_to_clip(rec, where=f"{f}#{i}"))
    return dict(out)


def _sentences(text: str) -> int:
    return len([s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s])


def check_clip(c: schema.Clip, split: str) -> None:
    where = f"clip {c.id}"
    assert c.format == "flac" and c.sample_rate == 16000, where
    wave, rate = audio.decode(c.audio, where)  # raises on undecodable / NaN audio
    assert rate == 16000 and len(wave) == c.num_samples, where
    assert 2.0 <= len(wave) / rate <= 5.0, f"{where}: {len(wave) / rate:.2f} s"
    assert np.isfinite(wave).all() and np.sqrt(np.mean(wave ** 2)) > 1e-3, f"{where}: silent"
    assert 5 <= len(c.tags) <= 10 and len(set(c.tags)) == len(c.tags), f"{where}: tags {c.tags}"
    assert all(re.fullmatch(r"[a-z]+", t) for t in c.tags), f"{where}: tags {c.tags}"
    assert _sentences(c.caption) >= 3, f"{where}: caption {c.caption!r}"
    assert _sentences(c.summary) == 1 and c.summary.endswith("."), f"{where}: summary {c.summary!r}"
    lab = c.labels
    assert lab["domain"] in DOMAINS and lab["split"] == split and lab.get("recording"), f"{where}: {lab}"
    expected = {"speech": {"language"}, "music": {"instrument"}, "sound": {"event"}}.get(lab["domain"])
    present = {k for k in PROBES if k in lab}
    if expected is not None:
        assert present == expected, f"{where}: labels {lab}"
    else:  # mixture: an event plus the foreground's language or instrument
        assert present in ({"language", "event"}, {"instrument", "event"}), f"{where}: labels {lab}"


def check_splits_disjoint(meta: dict, clips: dict[str, list[schema.Clip]]) -> None:
    rec = {sp: {c.labels["recording"] for c in cs} for sp, cs in clips.items()}
    assert not rec["train"] & rec["heldout"], "a recording appears in both splits"
    comp = collections.defaultdict(set)  # mixtures: foreground AND background sources
    for m in meta["clips"]:
        comp[m["split"]].update(m["components"])
    assert not comp["train"] & comp["heldout"], sorted(comp["train"] & comp["heldout"])


def check_counts(meta: dict, clips: dict[str, list[schema.Clip]], out: pathlib.Path) -> None:
    assert meta["schema_version"] == schema.SCHEMA_VERSION
    assert meta["num_clips"] == sum(len(cs) for cs in clips.values())
    for split, cs in clips.items():
        c = meta["counts"][split]
        assert c["clips"] == len(cs) == meta["splits"][split]["clips"]
        assert c["domain"] == dict(collections.Counter(x.labels["domain"] for x in cs))
        for key in PROBES:
            assert c[key] == dict(collections.Counter(x.labels[key] for x in cs if key in x.labels)), key
        assert all((out / f).is_file() for f in meta["splits"][split]["shards"])
    df = collections.Counter(t for cs in clips.values() for c in cs for t in set(c.tags))
    assert meta["tag_vocabulary"] == [{"tag": t, "df": df[t]} for t in sorted(df)]
    ids = [c.id for cs in clips.values() for c in cs]
    assert len(ids) == len(set(ids)) == len(meta["clips"])


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    base = tmp_path_factory.mktemp("demo")
    out, scratch = base / "corpus", base / "tmp"
    scratch.mkdir()
    proc = subprocess.run([sys.executable, str(TOOL), "--out", str(out), "--num-clips", "24", "--seed", "3",
                           "--jobs", "2", "--shard-size", "8"], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, TMPDIR=str(scratch)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not list(scratch.iterdir()), "the builder left temporary files behind"
    return out


@needs_packages
def test_small_build_every_clip_is_valid(small_corpus):
    clips = read_corpus(small_corpus)
    assert set(clips) == {"train", "heldout"}
    assert sum(len(cs) for cs in clips.values()) == 24
    for split, cs in clips.items():
        for c in cs:
            check_clip(c, split)
    assert {c.labels["domain"] for cs in clips.values() for c in cs} == DOMAINS


@needs_packages
def test_small_build_metadata_and_splits(small_corpus):
    meta = json.loads((small_corpus / "corpus.json").read_text())
    clips = read_corpus(small_corpus)
    check_counts(meta, clips, small_corpus)
    check_splits_disjoint(meta, clips)
    assert len(meta["splits"]["train"]["shards"]) == -(-meta["splits"]["train"]["clips"] // 8)
    assert meta["seed"] == 3 and "--num-clips 24" in meta["command"]
    assert meta["tools"]["espeak-ng"] and meta["tools"]["fluidsynth"]
    for src in meta["event_sources"]:
        assert src["license"] and src["package"] and src["version"] and src["files"], src


def test_missing_packages_are_named(tmp_path):
    """Without the Debian tools on PATH the builder stops and says what to apt-get install."""
    env = dict(os.environ, PATH=str(tmp_path))
    proc = subprocess.run([sys.executable, str(TOOL), "--out", str(tmp_path / "x"), "--num-clips", "8"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2
    assert "espeak-ng" in proc.stderr and "fluidsynth" in proc.stderr and "apt-get install" in proc.stderr
    assert not (tmp_path / "x").exists()


def test_plan_is_deterministic_and_held_out_by_recording():
    a, b = plan.make_plan(120, 7), plan.make_plan(120, 7)
    assert json.dumps(a) == json.dumps(b)
    assert json.dumps(a) != json.dumps(plan.make_plan(120, 8))
    comps = collections.defaultdict(set)
    topics = collections.defaultdict(set)
    for s in a:
        comps[s["split"]].update(s["components"])
        if s["speech"]:
            topics[s["split"]].add((s["speech"]["language"], s["speech"]["topic"]))
    assert not comps["train"] & comps["heldout"]
    assert not topics["train"] & topics["heldout"], "held-out speech must use unseen sentences"


def test_every_tag_word_is_in_the_lexicon():
    words = {t for f in music.FAMILIES.values() for t in [f["tag"]] if t} | set(music.PROGRAM_TAGS.values())
    words |= {w for s in sources.EVENT_SOURCES for w in s.words}
    words |= {w for tags, _, _ in captions.EVENT_INFO.values() for w in tags}
    assert words <= captions.TAG_LEXICON, sorted(words - captions.TAG_LEXICON)
    assert all(re.fullmatch(r"[a-z]+", t) for t in captions.TAG_LEXICON)


def test_tag_lexicon_is_in_the_uts_vocabulary(shared_dir):
    path = shared_dir / "uts" / "label_3k.json"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    vocab = set(json.loads(path.read_text()).values())
    assert captions.TAG_LEXICON <= vocab, sorted(captions.TAG_LEXICON - vocab)


def test_committed_corpus():
    meta_path = COMMITTED / "corpus.json"
    assert meta_path.is_file(), f"{COMMITTED} is missing; build it with python {TOOL.relative_to(REPO)} --out {COMMITTED.relative_to(REPO)}"
    size = sum(f.stat().st_size for f in COMMITTED.glob("*.tfrecord"))
    assert 0 < size <= MAX_COMMITTED_BYTES, f"{size} bytes of TFRecords"
    meta = json.loads(meta_path.read_text())
    clips = read_corpus(COMMITTED)
    check_counts(meta, clips, COMMITTED)
    check_splits_disjoint(meta, clips)
    assert 250 <= meta["num_clips"] <= 400
    for key, classes in meta["label_classes"].items():
        if key == "split":
            continue
        for split in ("train", "heldout"):
            seen = {c.labels[key] for c in clips[split] if key in c.labels}
            assert seen == set(classes), f"{split} lacks {key} classes {set(classes) - seen}"
    for split, cs in clips.items():
        for c in cs[:: max(1, len(cs) // 40)]:  # a spread sample keeps this test fast
            check_clip(c, split)
