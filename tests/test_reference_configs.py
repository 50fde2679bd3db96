"""configs/reference/: every variant builds and round-trips through config.json, says what it
mirrors, and the MTC recipe (ScaledAdam + Eden, summed BCE with dropout, model averaging)
trains in the real loop."""

import os

import numpy as np
import pytest

from strongaudio_jax import config
from strongaudio_jax.config import ConfigError
from strongaudio_jax.train import run_config, step as step_lib, trainer
from tests.conftest import REPO

NAMES = ("mtc", "captioning", "multitask")


@pytest.mark.parametrize("name", NAMES)
def test_reference_configs_build_and_say_what_they_mirror(name, tmp_path):
    path = f"{REPO}/configs/reference/{name}.py"
    doc = config.load_module(path).__doc__
    assert "What this mirrors" in doc and "What still differs" in doc
    assert f"configs/reference/{name}.py:full" in doc and f"configs/reference/{name}.py:demo" in doc
    for variant in ("smoke", "demo", "full"):
        cfg = config.load(f"{path}:{variant}", ["text.tokenizer=minilm"] if name != "mtc" else [])
        run_config.save(cfg, str(tmp_path / "c.json"))
        assert run_config.load(str(tmp_path / "c.json")).to_dict() == cfg.to_dict()
        program = step_lib.build(cfg, num_classes=20)
        assert cfg.optimizer.name == "scaled_adam" and cfg.optimizer.schedule == "eden"
        heads = {o.name: o.module for o in program.objectives}
        if "mtc" in heads:
            assert heads["mtc"].dropout == 0.1 and heads["mtc"].classifier_init == "torch"
            assert heads["mtc"].reduction == ("sum" if name == "mtc" else "mean")
        if "captioning" in heads:
            assert (cfg.text.field, cfg.text.preprocess, cfg.text.max_len) == ("caption", "reference", 130)
            assert heads["captioning"].decoder_size == {"smoke": "mu", "demo": "xs", "full": "b"}[variant]
        if variant == "full":
            assert cfg.model.name == "zipformer" and cfg.model.size == "m" and cfg.train.average_period == 200
    if name != "mtc":  # full needs the user's BART tokenizer.json: a clear error without it
        with pytest.raises(ConfigError, match="text tokenizer"):
            step_lib.build(config.load(f"{path}:full"), num_classes=20)
    with pytest.raises(ConfigError, match="unknown variant 'large'"):
        config.load(f"{path}:large")


@pytest.mark.slow
def test_reference_mtc_trains_in_the_loop(tmp_path):
    cfg = config.load(f"{REPO}/configs/reference/mtc.py:smoke", [
        "train.steps=12", "train.log_every=1", "train.average_period=4", "probe.tasks=()"])
    out = trainer.train(cfg, str(tmp_path / "run"))
    losses = [h["loss"] for h in out["history"]]
    assert len(losses) == 12 and np.all(np.isfinite(losses))
    # the summed BCE: ~ batch x classes x the mean BCE, falling
    first, last = np.mean(losses[:3]), np.mean(losses[-3:])
    assert first > 16 * 10 * 0.1 and last < first
    assert np.isclose(out["history"][0]["lr"], 0.045 * 0.5, rtol=1e-5)  # Eden's warmup starts at half
    assert out["state"].ema_params is not None  # the average evaluation uses
    assert os.path.exists(tmp_path / "run" / "config.json")
