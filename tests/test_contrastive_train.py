"""A short contrastive run through the trainer: the caption summaries reach the step through
Featurizer.extra (tokenised with the config's vocabulary), and the loss falls."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from strongaudio_jax import config
from strongaudio_jax.data import text_fields
from strongaudio_jax.train import step as step_lib, trainer
from tests.conftest import REPO


@pytest.mark.slow
def test_contrastive_loss_falls(tmp_path, tiny_corpus):
    cfg = config.load(f"{REPO}/configs/contrastive.py:smoke", [
        f"data.train_files={tiny_corpus}/train-*.tfrecord",
        f"data.eval_files={tiny_corpus}/heldout-*.tfrecord",
        "data.batch_size=8", "data.clip_seconds=1.0", "data.vocab_min_count=1",
        "probe.tasks=()", "augment.time_masks=0", "augment.freq_masks=0",
        "train.steps=30", "train.log_every=10", "train.checkpoint_every=30"])
    out = trainer.train(cfg, str(tmp_path))
    losses = [h["contrastive/loss"] for h in out["history"]]
    assert len(losses) == 30
    # Three distinct captions ("A tone.", ...) in batches of 8: the best in-batch InfoNCE is
    # about log(8 / 3) ~ 1, the start (random embeddings, scale 1/0.07) is above log 8.
    assert np.mean(losses[:3]) > np.log(8), losses
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5]), losses


@pytest.mark.parametrize("variant", ["demo", "smoke", "large"])
def test_config_variants_build(variant):
    """Every variant builds its program; the large one's text tower is MiniLM-shaped."""
    if variant == "large":
        from strongaudio_jax.text import minilm
        try:
            minilm.model_dir()
        except ImportError as e:
            pytest.skip(f"configs/contrastive.py:large needs the MiniLM package: {e}")
    cfg = config.load(f"{REPO}/configs/contrastive.py:{variant}")
    program = step_lib.build(cfg, num_classes=10)
    assert program.text_fields == ("text",)
    assert text_fields.from_config(cfg, program.text_fields).fields == ("text",)
    assert program.batch_spec["text_ids"].shape == (cfg.data.batch_size, cfg.text.max_len)
    if variant == "large":
        state = jax.eval_shape(program.init, jax.random.key(0))
        text = nn.meta.unbox(state.params["heads"]["contrastive"]["text"]["encoder"])
        assert text["token_embed"].shape == (30522, 384) and "block5" in text
