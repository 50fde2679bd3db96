"""Batch-inference jobs (strongaudio_jax/infer/): tagger and captioner on small models.

The models are export directories made here from freshly initialised (then perturbed)
parameters, so no training run is needed; what is checked is the engine: the same bytes
whatever the device count, batching or restarts, over-long clips and bad records counted.
"""

import json
import os
import pathlib
import signal
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO, _synthetic_clip

TAGS = ["click", "hiss", "music", "noise", "percussive", "rhythm", "sine", "static", "tone"]


@pytest.fixture(autouse=True)
def _no_persistent_cache_in_process(monkeypatch):
    """A job run inside pytest would turn JAX's persistent compilation cache on for the rest
    of the session; the jobs run as subprocesses below keep it on (in their tmp folder)."""
    from strongaudio_jax.infer import engine
    monkeypatch.setattr(engine, "enable_compilation_cache", lambda path: "off (in-process test)")


def _make_export(out: pathlib.Path, spec: str, overrides=()) -> pathlib.Path:
    """An export directory (the files infer/model.py reads) of a randomly initialised model."""
    import flax.linen as nn
    import jax
    from safetensors.numpy import save_file

    from strongaudio_jax import config
    from strongaudio_jax.train import export, run_config, step as step_lib

    cfg = config.load(spec, list(overrides))
    program = step_lib.build(cfg, len(TAGS), TAGS)
    params = nn.meta.unbox(program.init(jax.random.key(0))).params
    rng = np.random.default_rng(1)  # the MTC head starts at zero: perturb everything
    params = jax.tree.map(lambda x: np.asarray(x) + 0.2 * rng.standard_normal(x.shape).astype(
        np.float32), params)
    out.mkdir(parents=True)
    save_file(export.flatten(params), str(out / "model.safetensors"))
    run_config.save(cfg, str(out / run_config.FILE_NAME))
    (out / "frontend.json").write_text(export.frontend_to_json(program.mel_cfg))
    (out / "vocab.json").write_text(json.dumps({str(i): t for i, t in enumerate(TAGS)}))
    if cfg.text.tokenizer:
        (out / "text_vocab.txt").write_text(pathlib.Path(cfg.text.tokenizer).read_text())
    (out / "export.json").write_text(json.dumps({"format_version": export.FORMAT_VERSION,
                                                 "step": 7}))
    return out


@pytest.fixture(scope="module")
def mtc_export(tmp_path_factory):
    return _make_export(tmp_path_factory.mktemp("mtc") / "export", f"{REPO}/configs/mtc.py:smoke",
                        ["data.clip_seconds=1.0"])


@pytest.fixture(scope="module")
def cap_export(tmp_path_factory):
    return _make_export(tmp_path_factory.mktemp("cap") / "export",
                        f"{REPO}/configs/captioning.py:smoke", ["data.clip_seconds=1.0",
                                                                "text.max_len=8"])


def _corpus(root: pathlib.Path, shards: int = 2, per_shard: int = 9, long_clip: bool = False):
    """Shards of 1-2 s synthetic clips (one 2.5 s clip in the first with long_clip)."""
    from strongaudio_jax.data import audio, schema, tfrecord

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    kinds = ("tone", "noise", "click")
    for s in range(shards):
        with tfrecord.TFRecordWriter(str(root / f"part-{s:05d}-of-{shards:05d}.tfrecord")) as w:
            for i in range(per_shard):
                clip = _synthetic_clip(kinds[i % 3], s * 100 + i, rng)
                if long_clip and s == 0 and i == 1:
                    wave = 0.2 * np.sin(np.arange(40000) * 0.05)
                    clip = schema.Clip(id="long-clip", audio=audio.encode(wave, 16000),
                                       format="flac", sample_rate=16000, num_samples=len(wave),
                                       caption="A long tone.")
                w.write(schema.clip_to_example(clip))
    return root


def _cfg(kind: str, model, files, out, *extra):
    from strongaudio_jax import config

    return config.load(f"{REPO}/configs/{kind}.py:smoke", [
        f"model.path={model}", f"input.files={files}", f"output.dir={out}", *extra])


def _records(path):
    from strongaudio_jax.data import schema, tfrecord

    return [schema.example_to_clip(r) for r in tfrecord.read_records(str(path))]


def _shard_bytes(out: pathlib.Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.tfrecord*"))}


def test_tag_same_bytes_on_8_and_1_devices_with_provenance(mtc_export, tmp_path):
    from strongaudio_jax.data import index
    from strongaudio_jax.infer import jobs

    corpus = _corpus(tmp_path / "in")
    files = f"{corpus}/*.tfrecord"
    s8 = jobs.run(_cfg("tag", mtc_export, files, tmp_path / "o8", "tag.top_k=3"), "tag")
    s1 = jobs.run(_cfg("tag", mtc_export, files, tmp_path / "o1", "tag.top_k=3", "devices=1",
                       "buckets.window=5"), "tag")
    assert s8["counts"]["written"] == s1["counts"]["written"] == 18
    a, b = _shard_bytes(tmp_path / "o8"), _shard_bytes(tmp_path / "o1")
    assert sorted(a) == ["part-00000-of-00002.tfrecord", "part-00000-of-00002.tfrecord.idx",
                         "part-00001-of-00002.tfrecord", "part-00001-of-00002.tfrecord.idx"]
    assert a == b
    clips = _records(tmp_path / "o8" / "part-00000-of-00002.tfrecord")
    originals = _records(corpus / "part-00000-of-00002.tfrecord")
    assert [c.id for c in clips] == [c.id for c in originals]  # order and every clip kept
    assert len({c.tags for c in clips}) > 1  # the labels depend on the audio
    for c, o in zip(clips, originals):
        assert len(c.tags) == 3 and set(c.tags) <= set(TAGS)
        assert list(c.tag_scores) == sorted(c.tag_scores, reverse=True)
        assert c.audio == o.audio and c.caption == o.caption and c.labels == o.labels
        prov = json.loads(c.tags_model)
        assert prov["step"] == 7 and prov["settings"]["top_k"] == 3
        assert prov["checkpoint"] == str(mtc_export)
    # The sidecar describes the shard (training hosts index it with one read).
    rows = index.read_sidecar(str(tmp_path / "o8" / "part-00000-of-00002.tfrecord"))
    assert len(rows) == 9
    summary = json.loads((tmp_path / "o8" / "summary.json").read_text())
    assert summary["counts"]["clips"] == 18 and summary["counts"]["failures"] == {}
    assert summary["hours"] > 0
    # A second run finds everything finished and rewrites nothing.
    s = jobs.run(_cfg("tag", mtc_export, files, tmp_path / "o8", "tag.top_k=3"), "tag")
    assert s["this_run"]["records"] == 0 and _shard_bytes(tmp_path / "o8") == a


KILLER = """
import os, signal, sys
from strongaudio_jax import cli
from strongaudio_jax.infer import output
where, after = sys.argv[1], int(sys.argv[2])
calls = [0]
if where == "append":  # records written and flushed, progress not yet saved: a torn window
    original = output.ShardOutput.append
    def append(self, records, progress):
        calls[0] += 1
        if calls[0] == after:
            for r in records:
                self._file.write(output._frame(r))
            self._file.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, records, progress)
    output.ShardOutput.append = append
else:  # the shard renamed to its final name, its index and stats not yet written
    original = output.os.replace
    def replace(src, dst):
        original(src, dst)
        if src.endswith(".partial"):
            calls[0] += 1
            if calls[0] == after:
                os.kill(os.getpid(), signal.SIGKILL)
    output.os.replace = replace
sys.exit(cli.main(sys.argv[3:]))
"""


@pytest.mark.parametrize("where,after", [("append", 3), ("finish", 1)])
def test_sigkill_and_restart_give_the_same_shards(mtc_export, tmp_path, where, after):
    corpus = _corpus(tmp_path / "in", shards=2, per_shard=9)
    args = ["tag", "--config", f"{REPO}/configs/tag.py:smoke", f"model.path={mtc_export}",
            f"input.files={corpus}/*.tfrecord", "buckets.window=4", "devices=2",
            f"compilation_cache={tmp_path / 'cache'}"]
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=2")
    killed = tmp_path / "killed"
    p = subprocess.run([sys.executable, "-c", KILLER, where, str(after), *args,
                        f"output.dir={killed}"], env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert not (killed / "summary.json").exists()
    work = killed / "_inference"
    if where == "append":  # window 3 = shard 0's last window: shard 0 is half done
        progress = json.loads((work / "part-00000-of-00002.tfrecord.progress.json").read_text())
        assert progress["done"] == 8
        assert (work / "part-00000-of-00002.tfrecord.partial").stat().st_size > progress["bytes"]
    else:
        assert (killed / "part-00000-of-00002.tfrecord").exists()
        assert not (killed / "part-00000-of-00002.tfrecord.idx").exists()
    p = subprocess.run([sys.executable, "-m", "strongaudio_jax.cli", *args,
                        f"output.dir={killed}"], env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr
    assert "resuming 1 half-done" in p.stdout or where == "finish", p.stdout
    whole = tmp_path / "whole"
    p = subprocess.run([sys.executable, "-m", "strongaudio_jax.cli", *args,
                        f"output.dir={whole}"], env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr
    assert _shard_bytes(killed) == _shard_bytes(whole)
    assert any((tmp_path / "cache").iterdir())  # the compiled programs, for the restart
    assert sorted(os.listdir(work)) == sorted(os.listdir(whole / "_inference"))
    assert json.loads((killed / "summary.json").read_text())["counts"]["written"] == 18


def test_over_long_clip_chunked_or_refused_and_counted(mtc_export, tmp_path):
    from strongaudio_jax.infer import jobs

    corpus = _corpus(tmp_path / "in", shards=1, per_shard=4, long_clip=True)
    files = f"{corpus}/*.tfrecord"
    s = jobs.run(_cfg("tag", mtc_export, files, tmp_path / "chunk"), "tag")
    assert s["counts"]["chunked"] == 1 and s["counts"]["written"] == 4
    ids = [c.id for c in _records(tmp_path / "chunk" / "part-00000-of-00001.tfrecord")]
    assert "long-clip" in ids
    s = jobs.run(_cfg("tag", mtc_export, files, tmp_path / "refuse",
                      "buckets.over_long=refuse"), "tag")
    assert s["counts"]["failures"] == {"too_long": 1} and s["counts"]["written"] == 3
    ids = [c.id for c in _records(tmp_path / "refuse" / "part-00000-of-00001.tfrecord")]
    assert "long-clip" not in ids and len(ids) == 3


def test_corrupt_record_is_named_or_skipped_and_counted(mtc_export, tmp_path, capsys):
    from strongaudio_jax.data import tfrecord
    from strongaudio_jax.infer import inputs, jobs

    corpus = _corpus(tmp_path / "in", shards=1, per_shard=4)
    shard = corpus / "part-00000-of-00001.tfrecord"
    rows = tfrecord.index_records(str(shard))
    data = bytearray(shard.read_bytes())
    data[int(rows[2, 0]) + 40] ^= 0xFF  # a flipped byte in record 2's data: its CRC fails
    shard.write_bytes(bytes(data))
    with pytest.raises(inputs.BadRecord, match=f"{shard}: record 2 .*corrupt"):
        jobs.run(_cfg("tag", mtc_export, str(shard), tmp_path / "strict"), "tag")
    from strongaudio_jax import cli
    assert cli.main(["tag", "--config", f"{REPO}/configs/tag.py:smoke", f"model.path={mtc_export}",
                     f"input.files={shard}", f"output.dir={tmp_path / 'cli'}"]) == 2
    assert f"strongaudio tag: error: {shard}: record 2 at byte offset" in capsys.readouterr().err
    s = jobs.run(_cfg("tag", mtc_export, str(shard), tmp_path / "skip", "input.skip_bad=True"),
                 "tag")
    assert s["counts"]["failures"] == {"corrupt_record": 1} and s["counts"]["written"] == 3
    assert len(_records(tmp_path / "skip" / shard.name)) == 3


def test_caption_to_tags_with_the_rules_extractor(tmp_path):
    from strongaudio_jax.data import audio, schema, tfrecord
    from strongaudio_jax.infer import jobs

    wave = audio.encode(np.zeros(1600), 16000)
    shard = tmp_path / "caps.tfrecord"
    with tfrecord.TFRecordWriter(str(shard)) as w:
        for i, cap in enumerate(["A dog barks while rain falls on a tin roof outdoors.",
                                 "A man speaks calmly over soft piano music in a room.", ""]):
            w.write(schema.clip_to_example(schema.Clip(
                id=f"c{i}", audio=wave, format="flac", sample_rate=16000, caption=cap,
                tags=("old",))))
    from strongaudio_jax.config import ConfigError
    with pytest.raises(ConfigError, match="would overwrite the input shard"):
        jobs.run(_cfg("tag", "", str(shard), tmp_path, "tag.mode=caption"), "tag")
    s = jobs.run(_cfg("tag", "", str(shard), tmp_path / "out", "tag.mode=caption"), "tag")
    clips = _records(tmp_path / "out" / "caps.tfrecord")
    assert "dog" in clips[0].tags and "rain" in clips[0].tags
    assert "speech" in clips[1].tags or "piano" in clips[1].tags
    assert clips[2].tags == () and s["counts"]["empty"] == 1
    assert json.loads(clips[0].tags_model)["model"] == "uts:rules"


def test_caption_job_strategies(cap_export, tmp_path):
    from strongaudio_jax.infer import jobs

    corpus = _corpus(tmp_path / "in", shards=1, per_shard=4)
    files = f"{corpus}/*.tfrecord"
    out = {}
    for name, extra in (("greedy", ()), ("beam1", ("decode.strategy=beam", "decode.beams=1")),
                        ("sample", ("decode.strategy=sample", "decode.top_p=0.9")),
                        ("parallel", ("decode.strategy=parallel", "decode.refine_steps=1"))):
        s = jobs.run(_cfg("caption", cap_export, files, tmp_path / name, *extra), "caption")
        assert s["counts"]["written"] == 4
        out[name] = _records(tmp_path / name / "part-00000-of-00001.tfrecord")
    jobs.run(_cfg("caption", cap_export, files, tmp_path / "greedy1", "devices=1"), "caption")
    assert _shard_bytes(tmp_path / "greedy1") == _shard_bytes(tmp_path / "greedy")
    greedy = [c.caption for c in out["greedy"]]
    assert all(greedy) and greedy == [c.summary for c in out["greedy"]]
    assert [c.caption for c in out["beam1"]] == greedy  # one beam is greedy search
    for c in out["sample"]:
        assert json.loads(c.caption_model)["settings"]["top_p"] == 0.9
    assert json.loads(out["parallel"][0].caption_model)["settings"] == {
        "strategy": "parallel", "max_len": 8, "refine_steps": 1}


@pytest.mark.slow  # two jax.distributed processes
def test_two_processes_split_the_shards_with_no_clip_lost_or_doubled(mtc_export, tmp_path):
    from tests.test_multiprocess import run_two_hosts

    corpus = _corpus(tmp_path / "in", shards=3, per_shard=5)
    out = tmp_path / "out"
    logs = run_two_hosts(
        [sys.executable, "-m", "strongaudio_jax.cli", "tag", "--config",
         f"{REPO}/configs/tag.py:smoke", f"model.path={mtc_export}",
         f"input.files={corpus}/*.tfrecord", f"output.dir={out}",
         f"compilation_cache={tmp_path / 'cache'}"], timeout=600)
    assert "2 on process 0 of 2" in logs[0] and "1 on process 1 of 2" in logs[1], logs
    ids = [c.id for p in sorted(out.glob("*.tfrecord")) for c in _records(p)]
    originals = [c.id for p in sorted(corpus.glob("*.tfrecord")) for c in _records(p)]
    assert sorted(ids) == sorted(originals) and len(ids) == 15
    summary = json.loads((out / "summary.json").read_text())
    assert summary["shards"] == 3 and summary["counts"]["written"] == 15


def test_audio_folder_input_becomes_shards(mtc_export, tmp_path):
    from strongaudio_jax.data import audio
    from strongaudio_jax.infer import jobs

    folder = tmp_path / "audio" / "sub"
    folder.mkdir(parents=True)
    for i in range(3):
        (folder / f"clip{i}.wav").write_bytes(audio.encode(0.1 * np.sin(np.arange(8000 + 4000 * i)
                                                                         * (0.01 + i * 0.02)),
                                                           16000, "wav"))
    (folder / "broken.wav").write_bytes(b"RIFF not audio")
    cfg = _cfg("tag", mtc_export, "", tmp_path / "out", f"input.audio_folder={folder.parent}",
               "input.clips_per_shard=2", "input.skip_bad=True")
    s = jobs.run(cfg, "tag")
    assert s["counts"]["written"] == 3 and s["counts"]["failures"] == {"unreadable_file": 1}
    names = sorted(p.name for p in (tmp_path / "out").glob("*.tfrecord"))
    assert names == ["folder-00000-of-00002.tfrecord", "folder-00001-of-00002.tfrecord"]
    ids = [c.id for n in names for c in _records(tmp_path / "out" / n)]
    assert ids == ["sub/clip0", "sub/clip1", "sub/clip2"]


def test_parallel_decoding_equals_serial_and_names_bad_files(mtc_export, tmp_path):
    """Audio-folder input read and decoded (and resampled) by a thread pool with a small
    read-ahead: the same shards as in the main thread; a bad file is named, or skipped and
    counted with skip_bad."""
    from strongaudio_jax.data import audio
    from strongaudio_jax.infer import inputs, jobs

    folder = tmp_path / "audio"
    folder.mkdir()
    for i in range(6):
        rate = 22050 if i % 2 else 16000
        (folder / f"clip{i}.wav").write_bytes(audio.encode(
            0.1 * np.sin(np.arange(rate // 2 + 900 * i) * (0.01 + i * 0.02)), rate, "wav"))
    (folder / "clip3b.wav").write_bytes(b"RIFF not audio")
    common = [f"input.audio_folder={folder}", "input.clips_per_shard=4", "buckets.window=3"]
    with pytest.raises(inputs.BadRecord, match="clip3b.wav: audio cannot be decoded"):
        jobs.run(_cfg("tag", mtc_export, "", tmp_path / "strict", *common,
                      "input.decode_workers=3"), "tag")
    outs = {}
    for workers, ahead in ((0, 0), (3, 2)):
        out = tmp_path / f"w{workers}"
        s = jobs.run(_cfg("tag", mtc_export, "", out, *common, "input.skip_bad=True",
                          f"input.decode_workers={workers}", f"input.read_ahead={ahead}"), "tag")
        assert s["counts"]["written"] == 6 and s["counts"]["failures"] == {"unreadable_file": 1}
        outs[workers] = _shard_bytes(out)
    assert outs[0] == outs[3] and len(outs[0]) == 4  # 2 shards + their .idx
