"""Objectives inside the train step: weighted combination, finite gradients, sharded ==
unsharded, config errors, exact resume, and each objective's loss falling on the demo corpus."""

import os
import shutil

import jax
import numpy as np
import pytest

from strongaudio_jax import config
from strongaudio_jax.data import text_fields
from strongaudio_jax.config import ConfigError
from strongaudio_jax.parallel import mesh as mesh_lib
from strongaudio_jax.train import step as step_lib, trainer
from tests.conftest import REPO

ALL = {"mtc": {"weight": 1.0, "pooling": "attention"},
       "par": {"weight": 0.3, "decoder_size": "mu"},
       "captioning": {"weight": 0.2, "decoder_size": "mu", "mix": "sample"},
       "masked": {"weight": 0.5, "decoder_width": 32, "decoder_depth": 1}}


def _with(cfg, objectives):
    """cfg with its objectives dict replaced (a dict cannot be a command-line override)."""
    cfg.unlock()
    cfg.objectives = objectives
    cfg.lock()
    return cfg


def _cfg(spec="captioning.py:smoke", *overrides):
    return config.load(f"{REPO}/configs/{spec}", ["data.batch_size=8", "data.clip_seconds=0.5",
                                                  "text.max_len=16", "train.steps=4", *overrides])


def _random_batch(program, rng):
    spec = program.batch_spec
    b, n = spec["waveform"].shape
    batch = {"waveform": (0.1 * rng.standard_normal((b, n))).astype(np.float32),
             "length": rng.integers(n // 2, n + 1, b).astype(np.int32),
             "tags": (rng.random(spec["tags"].shape) < 0.3).astype(np.float32),
             "valid": np.arange(b) < b - 1}
    texts = [f"a dog barks {i} times, then music" for i in range(b)]
    extra = text_fields.from_config(program.cfg, program.text_fields)
    for field in program.text_fields:
        ids, mask = extra.tokenizer.encode(texts, extra.max_len)
        key_ids, key_mask = text_fields.FIELDS[field]
        batch[key_ids], batch[key_mask] = ids, mask
    assert set(batch) == set(spec)
    return batch


@pytest.fixture(scope="module")
def program_and_batch():
    # The objectives with their own parameter layouts over the mesh (a decoder with a vocab
    # axis, a second encoder pass on a subset of patches); captioning shares PAR's decoder.
    cfg = _with(_cfg(), {k: v for k, v in ALL.items() if k != "captioning"})
    program = step_lib.build(cfg, num_classes=12)
    return program, _random_batch(program, np.random.default_rng(0))


@pytest.mark.slow
def test_sharded_equals_unsharded(program_and_batch, capfd):
    """One step on a 2x2x2 mesh of 8 devices gives the loss and parameters of one device, and
    XLA never has to replicate an activation to re-shard it (the heads pin their layouts)."""
    program, batch = program_and_batch
    state = jax.jit(lambda r: step_lib.nn.meta.unbox(program.init(r)))(jax.random.key(0))
    results = []
    for devices, shape in ((jax.devices()[:1], dict(data=1)),
                           (jax.devices(), dict(data=2, fsdp=2, tensor=2))):
        mesh = mesh_lib.make_mesh(shape, devices)
        state_sh, batch_sh = program.shardings(mesh)
        step = jax.jit(mesh_lib.on_mesh(mesh, program.train_step), in_shardings=(state_sh, batch_sh),
                       out_shardings=(state_sh, None))
        placed = {k: jax.device_put(v, batch_sh[k]) for k, v in batch.items()}
        new, metrics = step(jax.device_put(state, state_sh), placed)
        results.append((jax.device_get(metrics), jax.device_get(new.params)))
    (m1, p1), (m8, p8) = results
    assert "Involuntary full rematerialization" not in capfd.readouterr().err
    for k in m1:
        np.testing.assert_allclose(m8[k], m1[k], rtol=2e-4, atol=1e-6, err_msg=k)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8)):
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("objectives,message", [
    ({"mtcc": {"weight": 1.0}}, "unknown objective 'mtcc'.*known: .*'mtc'"),
    ({"mtc": {"weight": 1.0, "pool": "mean"}}, "objectives.mtc.pool is not an option"),
    ({"mtc": {"pooling": "mean"}}, "objectives.mtc has no weight"),
    ({"mtc": {"weight": 1.0, "pooling": "max"}}, "pooling='max'"),
    ({}, "config has no objectives"),
])
def test_config_errors_name_the_problem(objectives, message):
    cfg = _with(config.load(f"{REPO}/configs/mtc.py:smoke"), objectives)
    with pytest.raises(ConfigError, match=message):
        step_lib.build(cfg, num_classes=5)


def test_text_objective_without_tokenizer_is_a_config_error():
    cfg = config.load(f"{REPO}/configs/par.py:smoke", ["text.tokenizer="])
    with pytest.raises(ConfigError, match="reads text but the config has no text tokenizer"):
        step_lib.build(cfg, num_classes=5)


def test_batch_spec_lists_the_text_fields():
    program = step_lib.build(_cfg("multitask.py:smoke"), num_classes=5)
    spec = program.batch_spec
    assert spec["text_ids"].shape == (8, 16) and spec["text_mask"].dtype == np.bool_
    assert "tag_ids" not in spec  # multitask reads the summary only
    assert "tag_ids" in step_lib.build(_cfg("par.py:smoke"), num_classes=5).batch_spec


def _demo(workdir, *overrides):
    """Every objective at once on the bundled demo corpus (one run keeps the test short)."""
    cfg = config.load(f"{REPO}/configs/captioning.py:smoke", [
        "data.batch_size=8", "data.clip_seconds=1.0", "probe.tasks=()", "train.log_every=1",
        "augment.time_masks=0", "augment.freq_masks=0", "optimizer.warmup_steps=5",
        "optimizer.lr=0.002", "text.max_len=16", "train.steps=30", "train.checkpoint_every=15",
        *overrides])
    return trainer.train(_with(cfg, ALL), str(workdir))


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("all_objectives")
    return workdir, _demo(workdir)


@pytest.mark.slow
def test_every_objective_loss_falls_on_the_demo_corpus(demo_run):
    _, out = demo_run
    history = out["history"]
    for name, opts in ALL.items():
        losses = [h[f"{name}/loss"] for h in history]
        assert np.mean(losses[-5:]) < 0.85 * np.mean(losses[:5]), (name, losses)
    for h in history:  # the loss is the weighted sum; gradients stay finite
        total = sum(opts["weight"] * h[f"{name}/loss"] for name, opts in ALL.items())
        np.testing.assert_allclose(h["loss"], total, rtol=1e-5)
        assert np.isfinite(h["grad_norm"]) and h["nonfinite"] == 0
    assert {"mtc/bce", "par/token_accuracy", "captioning/token_accuracy", "masked/mse"} <= set(history[0])
    assert set(out["state"].params["heads"]) == set(ALL)


@pytest.mark.slow
def test_multi_objective_resume_is_exact(demo_run, tmp_path):
    """With their random masking and mode draws, a resumed run replays the same losses."""
    workdir, out = demo_run
    cut = tmp_path / "cut"
    shutil.copytree(workdir, cut)
    shutil.rmtree(os.path.join(cut, "checkpoints", "30"))
    again = _demo(cut)
    assert [h["step"] for h in again["history"]] == list(range(16, 31))
    for key in ("loss", "masked/loss", "captioning/loss"):
        assert [h[key] for h in again["history"]] == [h[key] for h in out["history"][15:]], key
    for a, b in zip(jax.tree.leaves(again["state"].params), jax.tree.leaves(out["state"].params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
