"""`strongaudio eval --model <export directory>`: a trained, exported encoder through the
project's own HEAR module (strongaudio_jax.hub)."""

import json
import os

import pytest

from eval_fakes import write_hear_task
from strongaudio_jax import cli

hub = pytest.importorskip("strongaudio_jax.hub", reason="strongaudio_jax.hub (the export "
                          "module) is not in this checkout")
export = pytest.importorskip("strongaudio_jax.train.export")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_eval_reads_an_export_directory(tiny_corpus, tmp_path):
    from strongaudio_jax import config
    from strongaudio_jax.train import trainer

    cfg = config.load(f"{REPO}/configs/mtc.py:smoke", [
        f"data.train_files={tiny_corpus}/train-*.tfrecord",
        f"data.eval_files={tiny_corpus}/heldout-*.tfrecord",
        "data.batch_size=8", "data.clip_seconds=1.0", "data.vocab_min_count=1",
        "probe.tasks=()", "probe.clip_seconds=1.0", "train.steps=2", "train.checkpoint_every=2", "train.log_every=2",
        "model.max_frames=128"])
    trainer.train(cfg, str(tmp_path / "run"))
    dest = str(tmp_path / "export")
    export.export(str(tmp_path / "run"), dest)
    task = write_hear_task(tmp_path / "task", per_class=(4, 2, 2))
    out = tmp_path / "out"
    assert cli.main(["eval", "--model", dest, "--tasks", task, "--out", str(out),
                     "--protocols", "linear", "knn", "--no-plots"]) == 0
    results = json.load(open(out / "results.json"))
    assert results["models"] == ["export"]
    for proto in ("linear", "knn"):
        assert 0.0 <= results["scores"]["export"]["toy_scene"][proto]["test"] <= 1.0
    assert "| toy_scene | accuracy | linear |" in (out / "report.md").read_text()
