"""`strongaudio finetune` on a tiny export and a toy HEAR task: runs on the 8-device mesh,
resumes exactly, layer-wise lr decay gives the hand-computed ratios, bad inputs are named."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from strongaudio_jax import cli, config
from strongaudio_jax.eval import tasks as tasks_lib
from strongaudio_jax.train import export, finetune, trainer
from tests import eval_fakes
from tests.conftest import REPO


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory, tiny_corpus):
    """A 2-step MTC run of the micro ViT (128 frames) on the tiny corpus, exported."""
    root = tmp_path_factory.mktemp("ft_export")
    cfg = config.load(f"{REPO}/configs/mtc.py:smoke", [
        f"data.train_files={tiny_corpus}/train-*.tfrecord", "data.eval_files=''",
        "data.batch_size=8", "data.clip_seconds=1.0", "data.vocab_min_count=1",
        "probe.tasks=()", "train.steps=2", "train.checkpoint_every=2", "train.log_every=2",
        "model.max_frames=128"])
    trainer.train(cfg, str(root / "run"))
    export.export(str(root / "run"), str(root / "export"))
    return str(root / "export")


@pytest.fixture(scope="module")
def toy_task(tmp_path_factory):
    return eval_fakes.write_hear_task(tmp_path_factory.mktemp("toy_scene"))


def _cfg(*overrides):
    return config.load(f"{REPO}/configs/finetune.py:smoke", list(overrides))


def _params(state):
    return jax.tree.map(np.asarray, jax.device_get(state.params))


@pytest.fixture(scope="module")
def mesh_run(tiny_export, toy_task, tmp_path_factory):
    """4 steps on a data 2 x fsdp 2 x tensor 2 mesh with mixup and balanced sampling,
    checkpoints at steps 2 and 4."""
    workdir = tmp_path_factory.mktemp("ft_mesh") / "run"
    cfg = _cfg("mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2", "augment.mixup_alpha=0.4",
               "data.balanced=True", "train.steps=4", "train.checkpoint_every=2")
    return cfg, workdir, finetune.finetune(cfg, tiny_export, toy_task, str(workdir))


@pytest.mark.slow  # a 2-step pre-training run for the export, then fine-tuning
def test_runs_on_the_8_device_mesh(mesh_run, tiny_export, toy_task):
    from strongaudio_jax import hub

    _, workdir, out = mesh_run
    state = out["state"]
    kernel = state.params["encoder"]["block0"]["mlp_in"]["kernel"]  # ('embed', 'mlp')
    assert len(kernel.sharding.device_set) == 8
    assert kernel.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor")
    assert int(state.step) == 4 and all(np.isfinite(h["loss"]) for h in out["history"])
    # The head started at zero and learned; the encoder moved away from the export.
    assert np.abs(_params(state)["head"]["out"]["kernel"]).max() > 0
    start = jax.device_get(hub.load_model(tiny_export).params)
    moved = jax.tree.map(lambda a, b: float(np.abs(a - np.asarray(b)).max()),
                         _params(state)["encoder"], start)
    assert max(jax.tree.leaves(moved)) > 0
    results = json.load(open(workdir / "results.json"))
    assert results["task"] == "toy_scene" and results["metric"] == "accuracy"
    assert results["clips"] == {"train": 24, "valid": 12, "test": 12}
    assert results["weights"] == "ema" and 0.0 <= results["test"] <= 1.0
    assert results["test"] == results["ema"]["test"] and "raw" in results
    saved = json.load(open(workdir / "config.json"))
    assert saved["export"] == tiny_export and saved["task"] == toy_task


@pytest.mark.slow  # a 2-step pre-training run for the export, then fine-tuning
def test_resume_equals_uninterrupted(mesh_run, tiny_export, toy_task, tmp_path):
    cfg, workdir, full = mesh_run
    resumed = tmp_path / "resumed"
    shutil.copytree(workdir, resumed)
    shutil.rmtree(resumed / "checkpoints" / "4")  # as if stopped after step 2's save
    os.remove(resumed / "results.json")
    again = finetune.finetune(cfg, tiny_export, toy_task, str(resumed))
    assert [h["step"] for h in again["history"]] == [3, 4]
    assert [h["loss"] for h in again["history"]] == [h["loss"] for h in full["history"][2:]]
    jax.tree.map(np.testing.assert_array_equal, _params(again["state"]), _params(full["state"]))
    assert again["results"]["test"] == full["results"]["test"]


@pytest.mark.slow  # a 2-step pre-training run for the export, then fine-tuning
def test_layer_decay_gives_the_hand_computed_lr_ratios(tiny_export):
    from strongaudio_jax import hub

    model = hub.load_model(tiny_export)  # ViT-mu: 2 blocks
    cfg = _cfg("optimizer.layer_decay=0.5", "optimizer.schedule='constant'",
               "optimizer.warmup_steps=0", "optimizer.weight_decay=0.0", "optimizer.clip_norm=0.0",
               "optimizer.lr=0.01")
    program = finetune.build(cfg, model.config, model.mel_cfg, 3, False, 1.0)
    params = program.abstract_params()
    params = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), params)
    grads = jax.tree.map(np.ones_like, params)
    # Adam's first step moves every weight by lr * (its scale): the ratios are the lr ratios.
    updates, _ = program.tx.update(grads, program.tx.init(params), params)
    step = lambda *path: -float(np.asarray(_at(updates, path)).mean())
    # L = 2 blocks: embeddings 0.5^3, block0 0.5^2, block1 0.5, top (ln_out, head) 1.
    want = {("encoder", "patch_embed", "kernel"): 0.125, ("encoder", "pos_time"): 0.125,
            ("encoder", "block0", "mlp_in", "kernel"): 0.25,
            ("encoder", "block1", "attn", "query", "kernel"): 0.5,
            ("encoder", "ln_out", "scale"): 1.0, ("head", "out", "kernel"): 1.0}
    for path, scale in want.items():
        assert step(*path) == pytest.approx(0.01 * scale, rel=1e-4), path


def _at(tree, path):
    for k in path:
        tree = tree[k]
    return tree


def test_layer_ids_of_scanned_and_zipformer_layouts():
    z = np.zeros((2, 2))
    ids, depth = finetune.layer_ids({"patch_embed": {"kernel": z}, "blocks": {"mlp": {
        "kernel": np.zeros((3, 4, 4))}}, "ln_out": {"scale": z}})
    assert depth == 3 and ids["patch_embed"]["kernel"] == 0 and ids["ln_out"]["scale"] == 4
    assert ids["blocks"]["mlp"]["kernel"].reshape(-1).tolist() == [1, 2, 3]
    assert ids["blocks"]["mlp"]["kernel"].shape == (3, 1, 1)  # broadcasts over the stacked axis
    ids, depth = finetune.layer_ids({
        "embed_conv0": {"kernel": z}, "stack0": {"layer0": {"k": z}, "layer1": {"k": z},
                                                 "bypass_scale": z},
        "stack1": {"layer0": {"k": z}, "downsample_logits": z}, "ln_out": {"scale": z},
        "out_downsample_logits": z})
    assert depth == 3
    assert (ids["stack0"]["layer0"]["k"], ids["stack0"]["layer1"]["k"], ids["stack0"]["bypass_scale"],
            ids["stack1"]["layer0"]["k"], ids["stack1"]["downsample_logits"]) == (1, 2, 1, 3, 3)
    assert ids["embed_conv0"]["kernel"] == 0 and ids["out_downsample_logits"] == 4


def test_balanced_sampling_evens_out_the_classes():
    y = np.array([0] * 30 + [1] * 6 + [2] * 4)
    sampler = finetune.Sampler(len(y), 0, finetune.balance_weights(y, False))
    drawn = np.bincount(y[[sampler(p) for p in range(4000)]], minlength=3) / 4000
    np.testing.assert_allclose(drawn, 1 / 3, atol=0.04)
    plain = finetune.Sampler(len(y), 0)
    assert sorted(plain(p) for p in range(40, 80)) == list(range(40))  # epochs: each clip once
    multi = np.array([[1, 0], [1, 0], [1, 0], [1, 1]], np.float32)
    np.testing.assert_allclose(finetune.balance_weights(multi, True), [0.25, 0.25, 0.25, 1.0],
                               rtol=1e-6)


@pytest.mark.slow  # a 2-step pre-training run for the export, then fine-tuning
def test_bad_task_spec_and_export_give_clear_errors(tiny_export, toy_task, tmp_path, capsys,
                                                    tiny_corpus):
    with pytest.raises(tasks_lib.TaskError, match="name a HEAR task directory"):
        finetune.finetune(_cfg(), tiny_export, "nosuchkind:/nowhere", str(tmp_path / "a"))
    events = eval_fakes.write_hear_event_task(tmp_path / "events")
    with pytest.raises(tasks_lib.TaskError, match="event .*scene tasks"):
        finetune.finetune(_cfg(), tiny_export, events, str(tmp_path / "b"))
    with pytest.raises(config.ConfigError, match="fold=3"):
        finetune.finetune(_cfg("fold=3"), tiny_export, toy_task, str(tmp_path / "c"))
    assert cli.main(["finetune", "--from", str(tiny_corpus), "--task", toy_task, "--out",
                     str(tmp_path / "d"), "--config", f"{REPO}/configs/finetune.py:smoke"]) == 2
    assert "is not an export directory" in capsys.readouterr().err
    assert cli.main(["finetune", "--from", tiny_export, "--task", "fsd50k:/no/such/dir", "--out",
                     str(tmp_path / "e"), "--config", f"{REPO}/configs/finetune.py:smoke"]) == 2
    assert "is not a directory" in capsys.readouterr().err
