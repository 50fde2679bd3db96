"""Task loaders, each on a tiny fake copy of the layout its users download."""

import json
import os

import numpy as np
import pytest
import soundfile as sf

from eval_fakes import write_hear_event_task, write_hear_task, write_wav
from strongaudio_jax.eval import tasks

TONE = 0.1 * np.sin(np.linspace(0, 200, 8000))


def _wav(path):
    write_wav(str(path), TONE)


def test_hear_trainvaltest_and_folds(tmp_path):
    t = tasks.load(write_hear_task(tmp_path / "a", per_class=(2, 1, 1)), 16000)
    assert (t.name, t.multilabel, t.vocabulary) == ("toy_scene", False, ["low", "high", "noise"])
    assert {s: len(e) for s, e in t.splits.items()} == {"train": 6, "valid": 3, "test": 3}
    assert t.folds == [(("train",), "valid", "test")] and t.sample_duration == 1.0
    wave, sr = t.splits["test"][0].read()
    assert sr == 16000 and wave.ndim == 1
    k = tasks.load("hear:" + write_hear_task(tmp_path / "b", split_mode="new_split_kfold",
                                             per_class=(1, 1, 1)))
    # HEAR's rounds: fold i tests, fold i+1 validates, the rest trains
    assert k.folds == [(("fold02",), "fold01", "fold00"), (("fold00",), "fold02", "fold01"),
                       (("fold01",), "fold00", "fold02")]
    m = tasks.load(write_hear_task(tmp_path / "c", multilabel=True, per_class=(1, 1, 1)))
    assert m.multilabel and m.targets(m.splits["train"]).shape == (3, 4)


def test_hear_event_task(tmp_path):
    t = tasks.load(write_hear_event_task(tmp_path / "e", clips=(2, 1, 1)))
    assert t.mode == "event" and t.metric == "onset F1" and t.vocabulary == ["low", "high"]
    e = t.splits["train"][0]
    assert e.labels == ("high", "low") and [ev[0] for ev in e.events] == ["low", "high"]
    assert all(0 <= start < end <= 2000 for _, start, end in e.events)


def test_hear_errors_name_the_problem(tmp_path):
    root = write_hear_task(tmp_path / "a", per_class=(1, 1, 1))
    meta = json.load(open(os.path.join(root, "task_metadata.json")))
    json.dump({**meta, "embedding_type": "frames"}, open(os.path.join(root, "task_metadata.json"), "w"))
    with pytest.raises(tasks.TaskError, match="'frames' is not scene or event"):
        tasks.load(root)
    with pytest.raises(tasks.TaskError, match="task_metadata.json"):
        tasks.load_hear(str(tmp_path))
    with pytest.raises(tasks.TaskError, match="KIND:DIR"):
        tasks.load("nosuchkind:" + str(tmp_path))


def test_demo_corpus_task():
    t = tasks.load("demo:domain")
    assert set(t.splits) == {"train", "valid", "test"} and not t.multilabel
    assert set(t.vocabulary) >= {"speech", "music"}
    assert all(len(e) for e in t.splits.values())
    wave, sr = t.splits["test"][0].read()
    assert wave.size and sr > 0


def test_fsd50k(tmp_path):
    gt = tmp_path / "FSD50K.ground_truth"
    gt.mkdir()
    (gt / "vocabulary.csv").write_text("0,Bark,/m/05tny_\n1,Rain,/m/06mb1\n2,Music,/m/04rlf\n")
    (gt / "dev.csv").write_text('fname,labels,mids,split\n1,"Bark,Music","/m/05tny_,/m/04rlf",train\n'
                                '2,Rain,/m/06mb1,train\n3,Rain,/m/06mb1,val\n')
    (gt / "eval.csv").write_text('fname,labels,mids\n4,"Bark,Rain","/m/05tny_,/m/06mb1"\n')
    for f in ("1", "2", "3"):
        _wav(tmp_path / "FSD50K.dev_audio" / f"{f}.wav")
    _wav(tmp_path / "FSD50K.eval_audio" / "4.wav")
    t = tasks.load(f"fsd50k:{tmp_path}")
    assert t.multilabel and t.vocabulary == ["Bark", "Rain", "Music"] and t.metric == "mAP"
    assert [len(t.splits[s]) for s in ("train", "valid", "test")] == [2, 1, 1]
    np.testing.assert_array_equal(t.targets(t.splits["train"]), [[1, 0, 1], [0, 1, 0]])
    assert t.splits["test"][0].read()[0].size


def test_vggsound(tmp_path):
    rows = [("abc", 30, "dog barking", "train"), ("def", 0, "playing piano", "train"),
            ("ghi", 5, "dog barking", "test"), ("gone", 1, "dog barking", "train")]
    (tmp_path / "vggsound.csv").write_text("".join(f"{a},{b},{c},{d}\n" for a, b, c, d in rows))
    _wav(tmp_path / "audio" / "abc_000030.wav")
    _wav(tmp_path / "audio" / "def_000000.wav")
    _wav(tmp_path / "audio" / "test" / "ghi_5.wav")
    t = tasks.load(f"vggsound:{tmp_path}")
    assert t.vocabulary == ["dog barking", "playing piano"]
    assert len(t.splits["train"]) + len(t.splits["valid"]) == 2  # 'gone' has no clip
    assert [e.key for e in t.splits["test"]] == ["ghi_5"]


def test_voxceleb2(tmp_path):
    for spk in ("id00012", "id00015"):
        for v in ("vid_a", "vid_b", "vid_c"):
            _wav(tmp_path / "dev" / "wav" / spk / v / "00001.wav")
    _wav(tmp_path / "test" / "wav" / "id09999" / "only_one" / "00001.wav")  # too few videos
    t = tasks.load(f"voxceleb2:{tmp_path}")
    assert t.vocabulary == ["id00012", "id00015"]
    assert [len(t.splits[s]) for s in ("train", "valid", "test")] == [2, 2, 2]
    assert all("vid_c" in e.key for e in t.splits["test"])
    m4a = tasks.Example("x", ("a",), path=str(tmp_path / "x.m4a"))
    with pytest.raises(tasks.TaskError, match="convert"):
        m4a.read()


def test_cremad(tmp_path):
    for actor in range(1001, 1011):
        for emo in ("ANG", "HAP"):
            _wav(tmp_path / "AudioWAV" / f"{actor}_IEO_{emo}_HI.wav")
    t = tasks.load(f"cremad:{tmp_path}")
    assert t.vocabulary == ["ANG", "HAP"]
    actors = {s: {e.key[:4] for e in t.splits[s]} for s in t.splits}
    assert actors["train"] == {str(a) for a in range(1001, 1008)}
    assert actors["valid"] == {"1008"} and actors["test"] == {"1009", "1010"}


def test_mtat(tmp_path):
    header = ["clip_id", "guitar", "classical", "rock", "mp3_path"]
    rows = [["1", "1", "0", "1", "0/a-1.mp3"], ["2", "0", "1", "0", "c/b-2.mp3"],
            ["3", "1", "0", "0", "d/c-3.mp3"], ["4", "0", "0", "0", "e/d-4.mp3"]]
    (tmp_path / "annotations_final.csv").write_text(
        "\n".join("\t".join(f'"{c}"' for c in r) for r in [header] + rows) + "\n")  # all quoted
    for r in rows:
        path = tmp_path / r[-1]
        path.parent.mkdir(exist_ok=True)
        sf.write(str(path), TONE, 16000, format="MP3")
    t = tasks.load_mtat(str(tmp_path), top=2)
    assert t.multilabel and t.vocabulary == ["classical", "guitar"]  # the two most frequent
    assert [len(t.splits[s]) for s in ("train", "valid", "test")] == [1, 1, 1]  # clip 4: no tag
    wave, sr = t.splits["train"][0].read()
    assert sr == 16000 and wave.size > 4000


def test_nsynth(tmp_path):
    for split, fam in (("train", "guitar"), ("valid", "organ"), ("test", "guitar")):
        d = tmp_path / f"nsynth-{split}"
        key = f"{fam}_acoustic_000-060-100"
        _wav(d / "audio" / f"{key}.wav")
        (d / "examples.json").write_text(json.dumps(
            {key: {"instrument_family_str": fam, "pitch": 60, "note_str": key}}))
    t = tasks.load(f"nsynth:{tmp_path}")
    assert t.vocabulary == ["guitar", "organ"] and not t.multilabel
    assert t.targets(t.splits["valid"]).tolist() == [1]
