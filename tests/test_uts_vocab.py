"""UTS vocabularies: scoring, nested top-K, the released file format, normalisation, filtering,
the AudioSet bridge, the report and the `strongaudio uts` commands."""

import json
import math

import pytest

from strongaudio_jax import cli
from strongaudio_jax.data import schema, tfrecord
from strongaudio_jax.uts import bridge, filter as filter_lib, normalize, vocab

RELEASED = ("label_800.json", "label_1k.json", "label_1.5k.json", "label_2k.json", "label_3k.json")

# Five clips worked by hand: N = 5; df a=4, b=3, c=d=e=1.
CLIPS = [["a", "b", "c"], ["a", "b"], ["a", "d"], ["a"], ["b", "e"]]


def test_score_and_top_k_match_hand_computation():
    df, n = vocab.document_frequency(CLIPS)
    assert n == 5 and dict(df) == {"a": 4, "b": 3, "c": 1, "d": 1, "e": 1}
    # score = df * ln((N+1)/(df+1)): a = 4 ln(6/5), b = 3 ln(6/4), c = d = e = ln(6/2)
    assert vocab.score(4, 5) == pytest.approx(0.729286, abs=1e-6)
    assert vocab.score(3, 5) == pytest.approx(1.216395, abs=1e-6)
    assert vocab.score(1, 5) == pytest.approx(math.log(3), abs=1e-12)
    # b (1.216) > c = d = e (1.099; equal df, so alphabetical) > a (0.729: on most clips)
    assert vocab.rank(df, n) == ["b", "c", "d", "e", "a"]
    assert vocab.top_k(df, n, [2, 4]) == {2: ["b", "c"], 4: ["b", "c", "d", "e"]}


def test_vocabularies_of_several_k_are_nested():
    clips = [[f"t{(i * j) % 37}" for j in range(1, 8)] for i in range(200)]
    df, n = vocab.document_frequency(clips)
    ks = [5, 10, 20, len(df)]
    out = vocab.top_k(df, n, ks)
    for small, big in zip(ks, ks[1:]):
        assert out[big][:small] == out[small]
    assert len(set(out[len(df)])) == len(df)
    with pytest.raises(ValueError, match=f"exceeds the {len(df)} distinct tags"):
        vocab.top_k(df, n, [len(df) + 1])


def test_k_names_follow_the_released_files():
    assert [vocab.parse_k(k) for k in ("800", "1k", "1.5k", "2K")] == [800, 1000, 1500, 2000]
    assert [vocab.label_file_name(k) for k in (800, 1000, 1500, 3000, 50)] == [
        "label_800.json", "label_1k.json", "label_1.5k.json", "label_3k.json", "label_50.json"]
    with pytest.raises(ValueError, match="not a number"):
        vocab.parse_k("lots")


@pytest.mark.parametrize("name", RELEASED)
def test_released_vocabularies_reexport_byte_identically(shared_dir, tmp_path, name):
    src = shared_dir / "uts" / name
    tags = vocab.read_vocabulary(str(src))
    assert len(tags) == vocab.parse_k(name[len("label_"):-len(".json")])
    vocab.write_vocabulary(str(tmp_path / name), tags)
    assert (tmp_path / name).read_bytes() == src.read_bytes()


def test_released_vocabulary_quirks_are_reported(shared_dir):
    """label_1.5k holds 'instructional' twice: check says so rather than hiding it."""
    tags = vocab.read_vocabulary(str(shared_dir / "uts" / "label_1.5k.json"))
    report = vocab.check_vocabulary(tags, normalize.Normalizer())
    assert ("instructional", 89, 1348) in report["duplicates"]
    assert report["distinct"] == 1499


def test_read_vocabulary_rejects_other_json(tmp_path):
    bad = tmp_path / "v.json"
    bad.write_text(json.dumps({"0": "a", "2": "b"}))
    with pytest.raises(ValueError, match="consecutive indices"):
        vocab.read_vocabulary(str(bad))


def test_normalisation():
    n = normalize.Normalizer()
    cases = {"Automobiles": "car", "colour": "color", "Drums": "drum", "glass": "glass",
             "bass": "bass", "bodies": "body", "boxes": "box", "echoes": "echo", "men": "man",
             "low_frequency_hum": "low-frequency-hum", "sound-effects": "sound-effect",
             "8-bit": "8-bit", "1980s": "1980s", " Rain. ": "rain", "crackle": "crackling",
             "analyses": "analysis", "series": "series", "news": "news"}
    assert {k: n(k) for k in cases} == cases
    for bad in ("dog bark", "", "--", "a_b c", None, 3):
        assert n(bad) is None
    assert n.many(["Dogs", "dog", "dog barking", "cat"]) == ["dog", "cat"]


def test_user_synonym_table_extends_and_overrides(tmp_path):
    table = tmp_path / "syn.tsv"
    table.write_text("# mine\nhound dog\nautomobile vehicle\n")
    n = normalize.Normalizer([str(table)])
    assert n("hounds") == "dog" and n("automobile") == "vehicle"
    table.write_text("one two three\n")
    with pytest.raises(ValueError, match="syn.tsv:1"):
        normalize.Normalizer([str(table)])


def test_filter_rewrites_shards_and_counts_dropped(tiny_corpus, tmp_path):
    files = sorted(str(p) for p in tiny_corpus.glob("train-*.tfrecord"))
    # tone clips carry tone/sine/music, noise clips noise/hiss/static, click clips click/rhythm/...
    vocab_tags = ["Hisses", "sine", "music"]  # spelled differently on purpose: matched normalised
    stats = filter_lib.filter_shards(files, vocab_tags, normalize.Normalizer(),
                                     out_dir=str(tmp_path / "out"), index_path=str(tmp_path / "i.jsonl"),
                                     provenance="test")
    assert (stats.clips, stats.kept, stats.dropped_no_tags) == (36, 24, 12)
    clips = [schema.example_to_clip(r) for r in tfrecord.read_records(str(tmp_path / "out" / files[0].split("/")[-1]))]
    assert len(clips) == 24 and not any(c.id.startswith("click") for c in clips)
    by_kind = {c.id.split("-")[0]: c.tags for c in clips}
    assert by_kind == {"tone": ("sine", "music"), "noise": ("Hisses",)}
    assert all(c.tags_model == "test" and len(c.audio) > 100 for c in clips)
    index = [json.loads(line) for line in open(tmp_path / "i.jsonl")]
    assert index[0] == {"id": clips[0].id, "tags": list(clips[0].tags), "indices": [1, 2]}


def test_filter_from_tag_file_counts_clips_without_tags(tiny_corpus, tmp_path):
    files = sorted(str(p) for p in tiny_corpus.glob("train-*.tfrecord"))
    rows = {"tone-000": {"tags": ["beep", "sine"]}, "noise-000": {"tags": ["beep"]}}
    stats = filter_lib.filter_shards(files, ["sine"], normalize.Normalizer(), tag_rows=rows,
                                     index_path=str(tmp_path / "i.jsonl"))
    assert (stats.kept, stats.dropped_no_tags, stats.missing_from_tag_file) == (1, 1, 34)


def test_audioset_names_and_bridge():
    names = bridge.audioset_names()
    assert len(names) == 527 and len(set(names)) == 527
    assert (names[0], names[74], names[137], names[300], names[426], names[500], names[526]) == (
        "Speech", "Dog", "Music", "Vehicle", "Explosion", "Silence", "Field recording")
    uts = ["speech", "dog", "drum-kit", "whisper", "male", "music", "car"]
    result = bridge.bridge(uts, normalize.Normalizer())
    by_name = {c["name"]: (c["tags"], c["match"]) for c in result["classes"]}
    assert by_name["Speech"] == (["speech"], "exact")
    assert by_name["Drum kit"] == (["drum-kit"], "exact")
    assert by_name["Whispering"] == (["whisper"], "stem")
    assert by_name["Male speech, man speaking"] == (["male", "speech"], "words")
    assert by_name["Canidae, dogs, wolves"] == (["dog"], "exact")  # plural folded
    assert by_name["Harpsichord"] == ([], "none") and "Harpsichord" in result["unmapped"]
    assert sum(result["counts"].values()) == 527
    assert bridge.to_uts([0, 1, 74], result) == ["speech", "male", "dog"]


def _write_tag_file(path, rows):
    with open(path, "w") as f:
        for i, (tags, domain) in enumerate(rows):
            f.write(json.dumps({"id": f"c{i}", "tags": tags, "status": "ok", "problems": [],
                                "extractor": "test", "domain": domain}) + "\n")
        f.write(json.dumps({"id": "bad", "tags": [], "status": "failed", "problems": ["x"],
                            "extractor": "test", "domain": ""}) + "\n")


def test_cli_build_report_and_errors(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    tags = tmp_path / "tags.jsonl"
    _write_tag_file(tags, [(t, d) for t, d in zip(CLIPS, ["speech", "music", "sound", "speech", "music"])])
    out = tmp_path / "v"
    assert cli.main(["uts", "build", "--tags", str(tags), "--k", "2", "4", "--out-dir", str(out)]) == 0
    assert vocab.read_vocabulary(str(out / "label_2.json")) == ["b", "c"]
    stats = json.loads((out / "label_4.stats.json").read_text())
    assert stats["num_clips"] == 5 and stats["failed_extractions_left_out"] == 1
    assert stats["tags"][0] == {"index": 0, "tag": "b", "df": 3, "score": round(3 * math.log(1.5), 6)}
    assert stats["coverage"]["sound"] == {"clips": 1, "covered": 1, "fraction": 1.0, "mean_tags": 1.0,
                                         "tag_fraction": 0.5}  # c2: d kept, a not in K=4
    assert stats["coverage"]["speech"]["covered"] == 1  # c3 ("a" only) has no tag in K=4

    rep = tmp_path / "rep"
    assert cli.main(["uts", "report", "--tags", str(tags), "--vocab", str(out / "label_2.json"),
                     str(out / "label_4.json"), "--out-dir", str(rep)]) == 0
    md = (rep / "report.md").read_text()
    for png in ("tag_frequency.png", "coverage.png", "top_tags.png", "overlap.png"):
        assert (rep / png).read_bytes()[:4] == b"\x89PNG" and png in md
    assert "| K=2 | K=4 |" in md and "| K=2 | 1.000 | 1.000 |" in md

    capsys.readouterr()
    assert cli.main(["uts", "build", "--tags", str(tags), "--k", "9", "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "exceeds the 5 distinct tags" in err and "Traceback" not in err


def test_cli_tag_build_filter_bridge_on_a_demo_shard(tmp_path, capsys):
    from strongaudio_jax import assets

    shard = assets.demo_corpus("heldout-00000-of-00002.tfrecord")
    tags, out = tmp_path / "tags.jsonl", tmp_path / "v"
    assert cli.main(["uts", "tag", "--captions", shard, "--out", str(tags), "--evaluate"]) == 0
    printed = capsys.readouterr().out
    assert "rules: 64 clips: 0 already tagged" in printed and "normalised: precision" in printed
    assert cli.main(["uts", "build", "--tags", str(tags), "--k", "10", "40", "--out-dir", str(out)]) == 0
    assert cli.main(["uts", "filter", "--records", shard, "--vocab", str(out / "label_10.json"),
                     "--tags", str(tags), "--index", str(tmp_path / "index.jsonl")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    kept = sum(1 for _ in open(tmp_path / "index.jsonl"))
    assert line.startswith(f"64 clips: kept {kept}, dropped ") and 40 <= kept <= 64
    assert cli.main(["uts", "bridge", "--vocab", str(out / "label_40.json"), "--out", str(tmp_path / "b.json")]) == 0
    mapping = json.loads((tmp_path / "b.json").read_text())
    assert mapping["classes"][0] == {"index": 0, "name": "Speech", "tags": ["speech"], "match": "exact"}
    assert "unmapped: " in capsys.readouterr().out


def test_report_without_matplotlib_says_how_to_install(tmp_path, capsys, monkeypatch):
    import sys

    tags = tmp_path / "tags.jsonl"
    _write_tag_file(tags, [(t, "speech") for t in CLIPS])
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert cli.main(["uts", "report", "--tags", str(tags), "--out-dir", str(tmp_path / "r")]) == 2
    assert "pip install 'strongaudio_jax[report]'" in capsys.readouterr().err


def test_filter_keeps_the_records_tag_scores(tmp_path):
    from tests.conftest import _synthetic_clip
    import numpy as np

    clip = _synthetic_clip("tone", 0, np.random.default_rng(0))
    clip.tags, clip.tag_scores = ("music", "Tones", "sine"), (0.9, 0.8, 0.7)
    src = tmp_path / "in" / "a.tfrecord"
    src.parent.mkdir()
    with tfrecord.TFRecordWriter(str(src)) as w:
        w.write(schema.clip_to_example(clip))
    filter_lib.filter_shards([str(src)], ["sine", "tone"], normalize.Normalizer(), out_dir=str(tmp_path / "out"))
    out = schema.example_to_clip(next(tfrecord.read_records(str(tmp_path / "out" / "a.tfrecord"))))
    assert out.tags == ("tone", "sine") and out.tag_scores == pytest.approx((0.8, 0.7))


def test_audioset_labelled_records_filtered_into_uts_space(tmp_path, capsys):
    from tests.conftest import _synthetic_clip
    import numpy as np

    clip = _synthetic_clip("noise", 0, np.random.default_rng(0))
    clip.tags, clip.tag_scores = ("Dog", "Male speech, man speaking", "Harpsichord"), ()
    (tmp_path / "in").mkdir()
    with tfrecord.TFRecordWriter(str(tmp_path / "in" / "a.tfrecord")) as w:
        w.write(schema.clip_to_example(clip))
    vocab.write_vocabulary(str(tmp_path / "label_4.json"), ["speech", "dog", "male", "music"])
    assert cli.main(["uts", "bridge", "--vocab", str(tmp_path / "label_4.json"),
                     "--out", str(tmp_path / "b.json")]) == 0
    assert cli.main(["uts", "filter", "--records", str(tmp_path / "in" / "a.tfrecord"),
                     "--vocab", str(tmp_path / "label_4.json"), "--audioset-bridge", str(tmp_path / "b.json"),
                     "--out-dir", str(tmp_path / "out")]) == 0
    assert "kept 1, dropped 0" in capsys.readouterr().out.splitlines()[-1]
    out = schema.example_to_clip(next(tfrecord.read_records(str(tmp_path / "out" / "a.tfrecord"))))
    assert out.tags == ("dog", "male", "speech") and "via b.json" in out.tags_model
    stats = filter_lib.filter_shards([str(tmp_path / "in" / "a.tfrecord")], ["speech"], normalize.Normalizer(),
                                     index_path=str(tmp_path / "i.jsonl"),
                                     translate=bridge.translator(json.loads((tmp_path / "b.json").read_text())))
    assert (stats.tags_in, stats.tags_kept) == (3, 1)  # three AudioSet classes in, one UTS tag kept
