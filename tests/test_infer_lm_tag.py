"""`strongaudio tag` in caption mode with tag.extractor=lm: an imported LM inside the engine.

The LM is test_lm_tagger's hand-built one whose greedy reply is a known JSON tag list, so the
tags that come out can be checked; with temperature > 0 its replies vary (some unparseable),
which exercises the per-record sampling keys and the failure counts.
"""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO
from tests.test_infer import KILLER, _records, _shard_bytes

from test_lm_tagger import TAGS, write_lm


@pytest.fixture(autouse=True)
def _no_persistent_cache_in_process(monkeypatch):
    from strongaudio_jax.infer import engine
    monkeypatch.setattr(engine, "enable_compilation_cache", lambda path: "off (in-process test)")


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    from strongaudio_jax import cli

    root = tmp_path_factory.mktemp("lm")
    write_lm(root / "hf", chain=True)
    assert cli.main(["import-hf", "--from", str(root / "hf"), "--out", str(root / "lm")]) == 0
    return root / "lm"


@pytest.fixture(scope="module")
def caption_shards(tmp_path_factory):
    """2 shards of 7 records, captions of 1-9 words (two prompt-length buckets), one empty."""
    from strongaudio_jax.data import audio, schema, tfrecord

    root = tmp_path_factory.mktemp("caps")
    wave = audio.encode(np.zeros(800), 16000)
    for s in range(2):
        with tfrecord.TFRecordWriter(str(root / f"part-{s:05d}-of-00002.tfrecord")) as w:
            for i in range(7):
                k = 7 * s + i
                cap = "" if k == 3 else " ".join(["a", "dog", "barks"] * (1 + k % 3))
                w.write(schema.clip_to_example(schema.Clip(
                    id=f"c{k}", audio=wave, format="flac", sample_rate=16000, caption=cap)))
    return root


def _cfg(lm, files, out, *extra):
    from strongaudio_jax import config

    return config.load(f"{REPO}/configs/tag.py:smoke", [
        "tag.mode=caption", "tag.extractor=lm", f"model.path={lm}", f"input.files={files}",
        f"output.dir={out}", "tag.max_new_tokens=8", "tag.length_multiple=16", *extra])


def test_lm_tags_in_the_engine_8_devices_equal_1(lm_dir, caption_shards, tmp_path):
    from strongaudio_jax.infer import jobs

    files = f"{caption_shards}/*.tfrecord"
    s = jobs.run(_cfg(lm_dir, files, tmp_path / "o8"), "tag")
    assert s["counts"]["written"] == 14 and s["counts"]["failures"] == {"no caption": 1}
    clips = [c for p in sorted((tmp_path / "o8").glob("*.tfrecord")) for c in _records(p)]
    assert [c.id for c in clips] == [f"c{k}" for k in range(14)]
    for c in clips:
        assert list(c.tags) == ([] if c.id == "c3" else TAGS), c.id
    prov = json.loads(clips[0].tags_model)
    assert prov["model"] == "uts:jax-lm:lm" and prov["step"] is None
    assert prov["checkpoint"] == os.path.abspath(lm_dir) and "{caption}" in prov["prompt"]
    assert prov["settings"]["temperature"] == 0.0 and prov["settings"]["max_new_tokens"] == 8
    jobs.run(_cfg(lm_dir, files, tmp_path / "o1", "devices=1"), "tag")
    assert _shard_bytes(tmp_path / "o1") == _shard_bytes(tmp_path / "o8")
    # the model split over a (data 2, tensor 4) mesh: the same tags
    jobs.run(_cfg(lm_dir, files, tmp_path / "tp", "model.tensor_parallel=4"), "tag")
    assert _shard_bytes(tmp_path / "tp") == _shard_bytes(tmp_path / "o8")


def test_lm_sampling_keys_per_record(lm_dir, caption_shards, tmp_path):
    """Sampled replies depend on the record only: 8 devices (batches of 16) == 1 device
    (batches of 2), and the parse failures are counted by reason."""
    from strongaudio_jax.infer import jobs

    files = f"{caption_shards}/*.tfrecord"
    hot = ["tag.temperature=0.8"]
    s8 = jobs.run(_cfg(lm_dir, files, tmp_path / "o8", *hot), "tag")
    jobs.run(_cfg(lm_dir, files, tmp_path / "o1", "devices=1", *hot), "tag")
    assert _shard_bytes(tmp_path / "o1") == _shard_bytes(tmp_path / "o8")
    fails = s8["counts"]["failures"]
    assert fails.pop("no caption") == 1 and fails and all(k.startswith("reply: ") for k in fails)
    clips = [c for p in sorted((tmp_path / "o8").glob("*.tfrecord")) for c in _records(p)]
    assert any(list(c.tags) == TAGS for c in clips)  # some replies still parse (greedy: all)


def test_lm_tag_sigkill_and_restart_give_the_same_shards(lm_dir, caption_shards, tmp_path):
    from strongaudio_jax.infer import jobs

    files = f"{caption_shards}/*.tfrecord"
    hot = ["tag.temperature=0.8", "buckets.window=3", "devices=2"]
    args = ["tag", "--config", f"{REPO}/configs/tag.py:smoke", "tag.mode=caption",
            "tag.extractor=lm", f"model.path={lm_dir}", f"input.files={files}",
            "tag.max_new_tokens=8", "tag.length_multiple=16", *hot,
            f"compilation_cache={tmp_path / 'cache'}"]
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=2")
    killed = tmp_path / "killed"
    p = subprocess.run([sys.executable, "-c", KILLER, "append", "2", *args,
                        f"output.dir={killed}"], env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == -signal.SIGKILL, p.stderr
    p = subprocess.run([sys.executable, "-m", "strongaudio_jax.cli", *args,
                        f"output.dir={killed}"], env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr
    assert "resuming 1 half-done (3 records)" in p.stdout, p.stdout
    jobs.run(_cfg(lm_dir, files, tmp_path / "whole", *hot), "tag")  # uninterrupted, in-process
    assert _shard_bytes(killed) == _shard_bytes(tmp_path / "whole")
    assert json.loads((killed / "summary.json").read_text())["counts"]["written"] == 14
