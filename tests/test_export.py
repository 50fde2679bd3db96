"""Export: a checkpoint written on 8 devices -> a params-only directory that loads on one CPU
and gives the training-time encoder's embeddings; no pickle; clear errors."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from strongaudio_jax import cli, hub
from strongaudio_jax.train import export, step as step_lib, trainer
from tests.conftest import REPO

AUDIO = np.random.default_rng(0).normal(0, 0.1, (8, 16000)).astype(np.float32)


def _train(tiny_corpus, workdir, *overrides):
    from strongaudio_jax import config

    cfg = config.load(f"{REPO}/configs/mtc.py:smoke", [  # tests/conftest.py's tiny_config
        f"data.train_files={tiny_corpus}/train-*.tfrecord",
        f"data.eval_files={tiny_corpus}/heldout-*.tfrecord",
        "data.batch_size=8", "data.clip_seconds=1.0", "data.vocab_min_count=1",
        "augment.time_masks=0", "augment.freq_masks=0", "probe.tasks=()", "probe.clip_seconds=1.0",
        "train.steps=4", "train.checkpoint_every=2", "train.log_every=2", "model.max_frames=128",
        *overrides])
    return cfg, trainer.train(cfg, str(workdir))


@pytest.fixture(scope="module")
def run_ema(tmp_path_factory, tiny_corpus):
    workdir = tmp_path_factory.mktemp("run_ema")
    cfg, out = _train(tiny_corpus, workdir, "train.ema_decay=0.5")
    assert jax.device_count() == 8 and len(out["state"].params["encoder"]["patch_embed"]["kernel"]
                                               .sharding.device_set) == 8
    return cfg, str(workdir), out


def test_export_loads_on_one_cpu_with_the_training_embeddings(run_ema, tmp_path):
    cfg, workdir, out = run_ema
    dest = str(tmp_path / "export")
    info = export.export(workdir, dest)
    assert info["step"] == 4 and info["params"] == "ema" and info["sample_rate"] == 16000
    assert set(os.listdir(dest)) == {"params", "model.safetensors", "config.json", "frontend.json",
                                     "vocab.json", "export.json"}
    assert json.load(open(os.path.join(dest, "export.json"))) == info

    # The training-time encoder on the 8-device state (EMA parameters).
    program = step_lib.build(cfg, len(out["vocab"]), out["vocab"])
    want = np.asarray(jax.jit(program.embed)(out["state"].ema_params["encoder"],
                                             {"waveform": AUDIO, "length": np.full(8, 16000)}))
    model = hub.load_model(dest)
    assert model.mel_cfg == program.mel_cfg
    np.testing.assert_allclose(hub.get_scene_embeddings(AUDIO, model), want, rtol=1e-4, atol=1e-5)

    # Another process with a single CPU device loads it and gets the same numbers.
    np.save(tmp_path / "audio.npy", AUDIO)
    env = {**os.environ, "PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu"}
    env["XLA_FLAGS"] = env.get("XLA_FLAGS", "").replace(
        "--xla_force_host_platform_device_count=8", "").strip()
    if not env["XLA_FLAGS"]:
        del env["XLA_FLAGS"]
    script = ("import sys, jax, numpy as np; from strongaudio_jax import hub\n"
              "assert jax.device_count() == 1, jax.devices()\n"
              "m = hub.load_model(sys.argv[1])\n"
              "np.save(sys.argv[3], hub.get_scene_embeddings(np.load(sys.argv[2]), m))\n")
    subprocess.run([sys.executable, "-c", script, dest, str(tmp_path / "audio.npy"),
                    str(tmp_path / "scene.npy")], env=env, check=True, timeout=600)
    np.testing.assert_allclose(np.load(tmp_path / "scene.npy"), want, rtol=1e-4, atol=1e-5)

    # model.safetensors holds the same arrays, for use outside JAX.
    from safetensors.numpy import load_file
    flat = load_file(os.path.join(dest, "model.safetensors"))
    kernel = np.asarray(out["state"].ema_params["encoder"]["patch_embed"]["kernel"])
    np.testing.assert_array_equal(flat["encoder/patch_embed/kernel"], kernel)
    assert any(k.startswith("heads/mtc/") for k in flat)


def test_export_contains_no_pickle(run_ema, tmp_path):
    _, workdir, _ = run_ema
    dest = tmp_path / "export"
    export.export(workdir, str(dest), step=2, ema=False)
    files = [p for p in dest.rglob("*") if p.is_file()]
    assert files
    for p in files:
        head = p.read_bytes()[:2]
        # Pickle protocol 2+ starts with 0x80 then the protocol number; no .pkl / .npy either.
        assert not (head[:1] == b"\x80" and head[1:2] in bytes(range(2, 6))), p
        assert p.suffix not in (".pkl", ".pickle", ".npy", ".npz"), p
    assert json.loads((dest / "export.json").read_text())["params"] == "raw"


def test_cli_export_and_user_errors(run_ema, tmp_path, capsys, tiny_corpus):
    _, workdir, _ = run_ema
    dest = str(tmp_path / "cli")
    assert cli.main(["export", "--workdir", workdir, "--out", dest]) == 0
    assert "exported step 4: ema parameters" in capsys.readouterr().out

    def error(*argv):
        assert cli.main(["export", *argv]) == 2
        return capsys.readouterr().err

    assert "is not empty" in error("--workdir", workdir, "--out", dest)
    assert "no checkpoint of step 3" in error("--workdir", workdir, "--out", str(tmp_path / "a"),
                                              "--step", "3")
    assert "available: [2, 4]" in error("--workdir", workdir, "--out", str(tmp_path / "a"),
                                        "--step", "3")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text((tmp_path / "cli" / "config.json").read_text())
    assert "no complete checkpoint" in error("--workdir", str(empty), "--out", str(tmp_path / "b"))
    os.remove(empty / "config.json")
    assert "has no config.json" in error("--workdir", str(empty), "--out", str(tmp_path / "b"))

    # A run without EMA: raw parameters by default, and --ema is refused.
    raw_dir = tmp_path / "raw_run"
    _train(tiny_corpus, raw_dir, "train.steps=2")
    assert "--ema: the state at step 2" in error("--workdir", str(raw_dir), "--out",
                                                 str(tmp_path / "c"), "--ema")
    assert cli.main(["export", "--workdir", str(raw_dir), "--out", str(tmp_path / "d")]) == 0
    assert ": raw parameters" in capsys.readouterr().out
