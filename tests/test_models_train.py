"""The Zipformer-style encoder trains end to end on the bundled demo corpus (MTC objective)."""

import numpy as np
import pytest

from strongaudio_jax import config
from strongaudio_jax.train import trainer

from conftest import REPO

pytestmark = pytest.mark.slow  # a Zipformer trained on the demo corpus


def test_zipformer_trains_on_demo_corpus(tmp_path):
    cfg = config.load(f"{REPO}/configs/zipformer_mtc.py:smoke", [
        "train.steps=24", "train.log_every=8", "train.checkpoint_every=24", "data.batch_size=8",
        "optimizer.warmup_steps=4", "data.clip_seconds=1.0", "probe.tasks=('domain',)",
        "probe.steps=50", "probe.clip_seconds=1.0"])
    out = trainer.train(cfg, str(tmp_path))
    losses = [h["loss"] for h in out["history"]]
    assert len(losses) == 24 and np.isfinite(losses).all()
    assert np.mean(losses[-6:]) < 0.92 * np.mean(losses[:3]), losses  # ~0.28 -> ~0.25 here
    (result,) = out["probe"]
    assert result.accuracy > 0.6  # domain of held-out clips; chance (majority) is 0.41
