"""`strongaudio eval` end to end: a HEAR-format task on disk, a HEAR module by name."""

import json

import pytest

from eval_fakes import write_hear_event_task, write_hear_task, write_toy_module
from strongaudio_jax import cli


def test_strongaudio_eval_writes_report_results_and_plots(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(tmp_path))
    module = write_toy_module(tmp_path)
    scene = write_hear_task(tmp_path / "scene", per_class=(6, 3, 3))
    folds = write_hear_task(tmp_path / "folds", name="toy_folds", split_mode="new_split_kfold",
                            per_class=(0, 3, 0), seed=1)
    out = tmp_path / "out"
    rc = cli.main(["eval", "--model", module, f"{module}:1", "--tasks", scene, f"hear:{folds}",
                   "--out", str(out), "--protocols", "linear", "attention", "knn"])
    assert rc == 0
    results = json.load(open(out / "results.json"))
    assert results["models"] == [module, f"{module}:1"]
    assert list(results["tasks"]) == ["toy_scene", "toy_folds"]
    for model in results["models"]:
        for task in ("toy_scene", "toy_folds"):
            for proto in ("linear", "attention", "knn"):
                r = results["scores"][model][task][proto]
                assert 0.0 <= r["test"] <= 1.0
                assert len(r["folds"]) == (3 if task == "toy_folds" else 1)
    # the toy embedding separates tones from noise: far above the 1/3 majority baseline
    assert results["scores"][module]["toy_scene"]["linear"]["test"] > 0.6
    assert results["tasks"]["toy_scene"]["chance"] == pytest.approx(1 / 3)
    report = (out / "report.md").read_text()
    assert "| toy_scene | accuracy | linear |" in report and f"`{module}:1`" in report
    for png in ("scores.png", "pooling.png", "embedding_toy_scene.png",
                "confusion_toy_scene.png"):
        assert (out / png).stat().st_size > 5000 and f"]({png})" in report


def test_strongaudio_eval_user_errors(tmp_path, capsys):
    task = write_hear_task(tmp_path / "t", per_class=(1, 1, 1))
    rc = cli.main(["eval", "--model", "no_such_hear_module", "--tasks", task,
                   "--out", str(tmp_path / "o")])
    assert rc == 2 and "no_such_hear_module" in capsys.readouterr().err
    rc = cli.main(["eval", "--model", "json", "--tasks", task, "--out", str(tmp_path / "o")])
    assert rc == 2 and "lacks the HEAR function" in capsys.readouterr().err


def test_strongaudio_eval_hear_event_task(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    module = write_toy_module(tmp_path)
    task = write_hear_event_task(tmp_path / "events", clips=(6, 3, 3))
    out = tmp_path / "out"
    assert cli.main(["eval", "--model", module, "--tasks", task, "--out", str(out),
                     "--protocols", "linear", "knn"]) == 0
    results = json.load(open(out / "results.json"))
    scores = results["scores"][module]["toy_events"]
    assert results["tasks"]["toy_events"]["metric"] == "onset F1"
    assert set(scores) == {"linear"}  # kNN does not apply to frames; the table shows a dash
    assert scores["linear"]["test"] > 0.8  # tone bursts on faint noise: clear onsets
    assert "| toy_events | onset F1 | knn | — |" in (out / "report.md").read_text()
