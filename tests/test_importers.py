"""Importers: folder + CSV/JSONL, Lhotse MonoCut manifests, WebDataset tars -> schema-v1 shards."""

import csv
import gzip
import io
import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import soundfile as sf

from strongaudio_jax.data import importers, schema, tfrecord
from tests.conftest import REPO

SR = 16000


def _tone(seconds, freq=440.0, channels=1, rate=SR):
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * freq * t)
    return np.stack([wave, -wave / 2][:channels], 1) if channels > 1 else wave


def _write(path, wave, fmt="FLAC"):
    sf.write(str(path), wave, SR, format=fmt, subtype="MPEG_LAYER_III" if fmt == "MP3" else "PCM_16")


def _clips(out_dir):
    clips = []
    names = sorted(os.listdir(out_dir))
    shards = [n for n in names if n.endswith(".tfrecord")]
    # no temporary files left behind; each shard has its sidecar index
    assert names == sorted(shards + [n + ".idx" for n in shards]), names
    for name in shards:
        clips += [schema.example_to_clip(r) for r in tfrecord.read_records(os.path.join(out_dir, name))]
    return clips


def test_folder_with_csv_is_imported_and_resumes_without_rewriting(tmp_path):
    root = tmp_path / "audio"
    (root / "sub").mkdir(parents=True)
    _write(root / "a.flac", _tone(0.5))
    _write(root / "sub" / "b.wav", _tone(0.3, 220), fmt="WAV")
    _write(root / "c.mp3", _tone(0.2, channels=2), fmt="MP3")  # not a schema format: -> FLAC
    meta = tmp_path / "meta.csv"
    with open(meta, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "caption", "tags"])
        w.writerow(["a.flac", "A tone.", "tone;sine"])
        w.writerow(["sub/b.wav", "A lower tone.", "tone"])
        w.writerow(["c.mp3", "Stereo.", ""])
    out = tmp_path / "shards"
    result = importers.write_shards(importers.folder_items(str(root), str(meta)), str(out),
                                    clips_per_shard=2, progress=False)
    assert result == {"shards": 2, "written": 2, "already_complete": 0, "clips": 3}
    clips = _clips(out)
    assert [c.id for c in clips] == ["a", "sub/b", "c"]
    assert [c.tags for c in clips] == [("tone", "sine"), ("tone",), ()]
    assert clips[0].caption == "A tone." and clips[0].format == "flac"
    assert clips[0].audio == open(root / "a.flac", "rb").read()  # kept byte for byte
    assert clips[1].format == "wav" and clips[1].num_samples == int(0.3 * SR)
    wave, _ = sf.read(io.BytesIO(clips[2].audio))
    assert clips[2].format == "flac" and wave.ndim == 1 and abs(len(wave) - int(0.2 * SR)) < 1200

    first = out / "train-00000-of-00002.tfrecord"
    stamp = os.stat(first).st_mtime_ns
    os.remove(out / "train-00001-of-00002.tfrecord")
    result = importers.write_shards(importers.folder_items(str(root), str(meta)), str(out),
                                    clips_per_shard=2, progress=False)
    assert result["written"] == 1 and result["already_complete"] == 1
    assert os.stat(first).st_mtime_ns == stamp  # the complete shard was not rewritten
    assert [c.id for c in _clips(out)] == ["a", "sub/b", "c"]


def test_folder_with_jsonl_and_without_metadata(tmp_path):
    root = tmp_path / "audio"
    root.mkdir()
    _write(root / "x.flac", _tone(0.2))
    _write(root / "y.flac", _tone(0.2, 330))
    meta = tmp_path / "meta.jsonl"
    meta.write_text(json.dumps({"path": "y.flac", "caption": "Y.", "tags": ["beep"], "id": "yy"}) + "\n")
    importers.write_shards(importers.folder_items(str(root), str(meta)), str(tmp_path / "o1"),
                           progress=False)
    assert [(c.id, c.tags) for c in _clips(tmp_path / "o1")] == [("yy", ("beep",))]
    importers.write_shards(importers.folder_items(str(root)), str(tmp_path / "o2"), progress=False)
    assert [c.id for c in _clips(tmp_path / "o2")] == ["x", "y"]


def _cut(cid, source, start, duration, caption, tags, channel=0, channels=(0,)):
    return {"id": cid, "start": start, "duration": duration, "channel": channel,
            "supervisions": [{"id": f"{cid}-sup", "recording_id": f"{cid}-rec", "start": 0.0,
                              "duration": duration, "channel": channel,
                              "custom": {"audio_tag": tags, "caption": caption,
                                         "original_caption": f"orig {caption}"}}],
            "recording": {"id": f"{cid}-rec", "sources": [{"type": "file", "channels": list(channels),
                                                          "source": source}],
                          "sampling_rate": SR, "num_samples": 2 * SR, "duration": 2.0},
            "type": "MonoCut"}


def test_lhotse_monocut_manifest_is_cut_and_mapped(tmp_path):
    root = tmp_path / "audio"
    root.mkdir()
    wave = _tone(2.0, channels=2)
    _write(root / "rec.flac", wave)
    manifest = tmp_path / "cuts.jsonl.gz"
    with gzip.open(manifest, "wt") as f:
        f.write(json.dumps(_cut("c1", "rec.flac", 0.5, 1.0, "A long caption.", ["tone", "hum"],
                                channel=1, channels=(0, 1))) + "\n")
        f.write(json.dumps(_cut("c2", str(root / "rec.flac"), 0.0, 0.25, "Start.", ["tone"],
                                channel=0, channels=(0, 1))) + "\n")
    importers.write_shards(importers.lhotse_items(str(manifest), str(root)), str(tmp_path / "out"),
                           progress=False)
    c1, c2 = _clips(tmp_path / "out")
    assert (c1.id, c1.caption, c1.summary, c1.tags) == ("c1", "A long caption.", "", ("tone", "hum"))
    assert c1.original_captions == ("orig A long caption.",)  # a string: one weak caption
    got, rate = sf.read(io.BytesIO(c1.audio))
    ref = sf.read(str(root / "rec.flac"))[0][SR // 2:SR // 2 + SR, 1]  # channel 1, 0.5-1.5 s
    assert rate == SR and c1.num_samples == SR
    np.testing.assert_allclose(got, ref, atol=1 / 32768)
    assert c2.num_samples == SR // 4 and c2.source == "c2-rec"


def _tar(path, members):
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _flac_bytes(seconds=0.2, freq=440.0):
    buf = io.BytesIO()
    sf.write(buf, _tone(seconds, freq), SR, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def test_webdataset_tars_are_imported(tmp_path):
    _tar(tmp_path / "shard-000.tar", [
        ("s/0001.flac", _flac_bytes()), ("s/0001.json", json.dumps({"caption": "One.", "tags": ["a", "b"]}).encode()),
        ("s/0002.flac", _flac_bytes(0.3)), ("s/0002.json", json.dumps({"text": "Two.", "tags": "c;d"}).encode())])
    _tar(tmp_path / "shard-001.tar", [("0003.flac", _flac_bytes(0.1))])
    items = importers.webdataset_items([str(tmp_path / "shard-000.tar"), str(tmp_path / "shard-001.tar")])
    importers.write_shards(items, str(tmp_path / "out"), progress=False)
    clips = _clips(tmp_path / "out")
    assert [(c.id, c.caption, c.tags) for c in clips] == [
        ("0001", "One.", ("a", "b")), ("0002", "Two.", ("c", "d")), ("0003", "", ())]
    assert clips[1].num_samples == int(0.3 * SR) and clips[2].source == "shard-001.tar"


def test_paths_escaping_the_audio_root_are_refused(tmp_path):
    root = tmp_path / "audio"
    root.mkdir()
    _write(tmp_path / "secret.flac", _tone(0.1))
    os.symlink(tmp_path / "secret.flac", root / "link.flac")
    meta = tmp_path / "meta.csv"
    for bad in ("../secret.flac", str(tmp_path / "secret.flac"), "link.flac"):
        meta.write_text(f"path,caption\n{bad},x\n")
        with pytest.raises(importers.ImportErrorWithPlace, match="outside the audio root"):
            importers.folder_items(str(root), str(meta))
    manifest = tmp_path / "cuts.jsonl"
    manifest.write_text(json.dumps(_cut("c", "../secret.flac", 0, 0.1, "x", [])) + "\n")
    with pytest.raises(importers.ImportErrorWithPlace, match="outside the audio root"):
        importers.lhotse_items(str(manifest), str(root))
    _tar(tmp_path / "evil.tar", [("../evil.flac", _flac_bytes())])
    with pytest.raises(importers.ImportErrorWithPlace, match="escapes the archive root"):
        importers.webdataset_items([str(tmp_path / "evil.tar")])


def test_import_tool_command_line(tmp_path):
    root = tmp_path / "audio"
    root.mkdir()
    _write(root / "a.flac", _tone(0.1))
    tool = [sys.executable, str(REPO / "tools" / "import_folder.py"), "--audio-root", str(root)]
    ok = subprocess.run(tool + ["--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert ok.returncode == 0 and json.loads(ok.stdout.splitlines()[-1])["written"] == 1, ok.stderr
    (tmp_path / "m.csv").write_text("path\n../../etc/passwd\n")
    bad = subprocess.run(tool + ["--metadata", str(tmp_path / "m.csv"), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "outside the audio root" in bad.stdout


def _uts_fixture(shared_dir):
    manifest = shared_dir / "fixtures" / "uts_manifest" / "cuts.jsonl.gz"
    if not manifest.is_file():
        pytest.skip(f"{manifest} not found (the released-layout UTS manifest fixture)")
    with gzip.open(manifest, "rt") as f:
        cuts = [json.loads(line) for line in f]
    return manifest, cuts


def test_released_uts_manifest_imports_as_it_is(shared_dir, tmp_path):
    """The released layout: sources name a dataset, found by recording id through the user's
    pattern; the long caption stays THE caption, the list of weak captions a field apart."""
    manifest, cuts = _uts_fixture(shared_dir)
    audio = shared_dir / "fixtures" / "audio"
    sources = importers.parse_sources([f"audioset={audio}/{{id}}.wav"])
    items, report = importers.lhotse_import(str(manifest), sources=sources)
    importers.write_shards(items, str(tmp_path / "out"), progress=False)
    clips = {c.id: c for c in _clips(tmp_path / "out")}
    assert sorted(clips) == sorted(c["id"] for c in cuts) and not report.missing
    for cut in cuts:
        custom, clip = cut["supervisions"][0]["custom"], clips[cut["id"]]
        assert clip.caption == custom["caption"] and len(clip.caption.split()) > 30
        assert clip.original_captions == tuple(custom["original_caption"])
        assert clip.summary == "" and clip.tags == tuple(custom["audio_tag"])
        assert clip.source == "audioset"
        assert clip.num_samples == round(cut["duration"] * SR)
    # env_water starts 1 s into its recording: the clip is that cut of the WAV
    ref = sf.read(str(audio / "env_water.wav"), dtype="float32")[0][SR:4 * SR]
    got = sf.read(io.BytesIO(clips["env_water"].audio), dtype="float32")[0]
    np.testing.assert_allclose(got, ref, atol=1 / 32768)
    lines = "\n".join(report.lines())
    assert "caption/original <- custom.original_caption" in lines and "4 clips, 7 captions" in lines
    assert "audioset (4)" in lines and "MISSING" not in lines


def test_uts_manifest_missing_ids_are_listed_not_fatal_unless_asked(shared_dir, tmp_path):
    manifest, cuts = _uts_fixture(shared_dir)
    audio = tmp_path / "audio"
    audio.mkdir()
    src = shared_dir / "fixtures" / "audio"
    for name in ("speech_en", "music_piano"):  # the user's copy lacks the other two
        (audio / f"{name}.wav").write_bytes((src / f"{name}.wav").read_bytes())
    table = tmp_path / "ids.tsv"  # an id -> path table instead of a pattern
    table.write_text("".join(f"{c['recording']['id']}\taudio/{c['recording']['id']}.wav\n" for c in cuts))
    items, report = importers.lhotse_import(str(manifest),
                                            sources=importers.parse_sources([f"audioset={table}"]))
    assert len(items) == 2 and sorted(c for c, _, _ in report.missing) == ["env_water", "music_drums_bass"]
    assert "MISSING audio    : 2 clips skipped" in "\n".join(report.lines())
    with pytest.raises(importers.ImportErrorWithPlace, match="audio of 2 clips not found"):
        importers.lhotse_import(str(manifest), sources=importers.parse_sources([f"audioset={table}"]),
                                fail_on_missing=True)
    with pytest.raises(importers.ImportErrorWithPlace, match=r"--audio audioset=/data/audioset/\{id\}"):
        importers.lhotse_import(str(manifest))  # the dataset's whereabouts were not given
    with pytest.raises(importers.ImportErrorWithPlace, match="outside the audio root"):
        importers.parse_sources([f"audioset={audio}/{{id}}.wav"])["audioset"].path("../ids")

    tool = [sys.executable, str(REPO / "tools" / "import_lhotse.py"), "--manifest", str(manifest),
            "--audio", f"audioset={audio}/{{id}}.wav", "--out", str(tmp_path / "out"),
            "--missing-list", str(tmp_path / "missing.tsv")]
    ok = subprocess.run(tool, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    out = ok.stdout.splitlines()
    assert json.loads(out[-1])["missing"] == 2 and json.loads(out[-1])["clips"] == 2
    assert any(line.startswith("caption          <- supervisions[0].custom.caption") for line in out)
    assert (tmp_path / "missing.tsv").read_text().count("\n") == 2
    bad = subprocess.run(tool + ["--fail-on-missing"], capture_output=True, text=True)
    assert bad.returncode == 2 and "not found" in bad.stdout
