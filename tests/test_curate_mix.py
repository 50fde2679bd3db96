"""`strongaudio curate mix`: two smoke-sized proxy trainings over the demo corpus's domains,
scored by their probes; a rerun reads the finished trials back instead of training again."""

import json

import pytest

from strongaudio_jax import config
from strongaudio_jax.curate import mix
from tests.conftest import REPO


def test_two_trials_recommend_the_better_and_resume(tmp_path, monkeypatch):
    cfg = config.load(f"{REPO}/configs/mtc.py:smoke", ["train.steps=2", "probe.tasks=('domain',)",
                                                      "probe.steps=20"])
    out = tmp_path / "mix"
    result = mix.search(cfg, str(out), trials=2, seed=0, progress=False)
    corpora = json.loads((out / "corpora" / "corpora.json").read_text())
    assert set(corpora) == {"speech", "music", "sound", "mixture"}
    rows = result["trials"]
    assert [r["trial"] for r in rows] == [0, 1] and rows[0]["weights"]["speech"] == 0.25
    assert abs(sum(rows[1]["weights"].values()) - 1) < 0.01
    assert all(r["scores"] for r in rows)
    best = max(rows, key=lambda r: r["metric"])
    assert result["recommended"] == best["weights"]
    assert (out / "mix.png").stat().st_size > 0 and "Mixture search" in (out / "mix.md").read_text()

    def no_training(*a, **k):
        raise AssertionError("a finished trial was trained again")

    from strongaudio_jax.train import trainer
    monkeypatch.setattr(trainer, "train", no_training)
    again = mix.search(cfg, str(out), trials=2, seed=0, progress=False)
    assert again["recommended"] == result["recommended"]
    with pytest.raises(AssertionError, match="trained again"):  # a third trial does train
        mix.search(cfg, str(out), trials=3, seed=0, progress=False)
