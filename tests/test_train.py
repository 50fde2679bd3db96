"""The end-to-end path on a tiny synthetic corpus: loss falls, checkpoints restore, resume is exact."""

import os
import shutil

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P, SingleDeviceSharding

from strongaudio_jax.train import checkpoint, trainer

pytestmark = pytest.mark.slow  # training runs (a module-scoped 30-step run and several short ones)


@pytest.fixture(scope="module")
def run30(tmp_path_factory, tiny_corpus):
    from strongaudio_jax import config
    from tests.conftest import REPO  # noqa: F401  (module-scoped copy of tiny_config)

    cfg = config.load(f"{REPO}/configs/mtc.py:smoke", [
        f"data.train_files={tiny_corpus}/train-*.tfrecord",
        f"data.eval_files={tiny_corpus}/heldout-*.tfrecord",
        "data.batch_size=8", "data.clip_seconds=1.0", "data.vocab_min_count=1",
        "probe.tasks=('domain',)", "augment.time_masks=0", "augment.freq_masks=0",
        "train.steps=30", "train.log_every=5",
        "train.checkpoint_every=15"])
    workdir = str(tmp_path_factory.mktemp("run30"))
    return cfg, workdir, trainer.train(cfg, workdir)


def test_loss_falls(run30):
    _, _, out = run30
    losses = [h["loss"] for h in out["history"]]
    assert len(losses) == 30
    # Each of the 9 tags is on exactly a third of the clips, so the best prediction that ignores
    # the audio (learned biases alone) has a BCE of H(1/3) = 0.637: below it the encoder hears.
    best_blind = -(np.log(1 / 3) / 3 + 2 * np.log(2 / 3) / 3)
    assert np.mean(losses[-5:]) < best_blind - 0.03, losses
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses


def test_probe_separates_classes(run30):
    _, _, out = run30
    (result,) = out["probe"]
    assert result.task == "domain" and result.num_classes == 3 and result.num_eval == 12
    assert result.chance == pytest.approx(1 / 3)
    assert result.accuracy >= 0.9, result


def test_tag_head_map_on_held_out_clips(run30):
    _, workdir, out = run30
    scores = out["scores"]
    # 9 tags, each on a third of the clips: scores that ignore the audio give an mAP near 1/3.
    assert scores["tags/mAP"] > 0.6, scores
    assert {k for k in scores if k.startswith("tags/mAP_")} == {
        "tags/mAP_tone", "tags/mAP_noise", "tags/mAP_click"}, scores
    records = [__import__("json").loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [r["step"] for r in records if "tags/mAP" in r] == [30]


def test_checkpoint_restores_on_another_mesh(run30):
    cfg, workdir, out = run30
    mngr = checkpoint.manager(workdir, keep=2)
    assert mngr.all_steps() == [15, 30]
    one_device = SingleDeviceSharding(jax.devices()[0])
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=one_device),
                            out["state"])
    restored, _ = checkpoint.restore(mngr, 30, abstract)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(out["state"])):
        assert a.sharding == one_device
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_resume_is_exact(run30, tmp_path):
    """Drop the last checkpoint, rerun: steps 16..30 replay bit-identically (data order too)."""
    cfg, workdir, out = run30
    resumed = str(tmp_path / "resumed")
    shutil.copytree(workdir, resumed)
    shutil.rmtree(os.path.join(resumed, "checkpoints", "30"))
    again = trainer.train(cfg, resumed)
    assert [h["step"] for h in again["history"]] == list(range(16, 31))
    assert [h["loss"] for h in again["history"]] == [h["loss"] for h in out["history"][15:]]
    for a, b in zip(jax.tree.leaves(again["state"].params), jax.tree.leaves(out["state"].params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_sharded_over_data_fsdp_tensor(tiny_config, tmp_path):
    """A 2x2x2 mesh: parameters really are split over fsdp and tensor, and training runs."""
    cfg = tiny_config("mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2", "train.steps=3",
                      "train.log_every=3", "probe.tasks=()")
    out = trainer.train(cfg, str(tmp_path))
    assert np.isfinite(out["history"][-1]["loss"])
    mlp_in = out["state"].params["encoder"]["block0"]["mlp_in"]["kernel"]
    assert mlp_in.sharding.spec == P("fsdp", "tensor")
    assert len(mlp_in.addressable_shards) == 8
    assert mlp_in.addressable_shards[0].data.shape == (mlp_in.shape[0] // 2, mlp_in.shape[1] // 2)


def test_tensorboard_has_training_and_probe_scalars(run30):
    from tensorboard.backend.event_processing import event_accumulator as ea

    _, workdir, out = run30
    acc = ea.EventAccumulator(os.path.join(workdir, "tensorboard"),
                              size_guidance=ea.STORE_EVERYTHING_SIZE_GUIDANCE).Reload()
    tags = {(e.step, tag): e.value for tag in acc.Tags()["scalars"] for e in acc.Scalars(tag)}
    assert tags[(30, "train/loss")] == pytest.approx(out["history"][-1]["loss"], rel=1e-6)
    assert (30, "probe/domain_accuracy") in tags and (30, "tags/mAP") in tags


def test_ema_eval_during_training_best_checkpoint_and_profile(tiny_config, tmp_path):
    cfg = tiny_config("train.steps=8", "train.log_every=2", "train.ema_decay=0.9",
                      "train.eval_every=4", "train.best_metric='probe/domain_accuracy'",
                      "train.profile_steps=(5, 7)", "model.dtype='bfloat16'")
    out = trainer.train(cfg, str(tmp_path))
    state = out["state"]
    for e, p in zip(jax.tree.leaves(state.ema_params), jax.tree.leaves(state.params)):
        assert e.dtype == p.dtype == np.float32 and not np.array_equal(np.asarray(e), np.asarray(p))
    records = [__import__("json").loads(l) for l in open(tmp_path / "metrics.jsonl")]
    assert [r["step"] for r in records if r.get("probe") == "domain"] == [4, 8]
    best = checkpoint.best_manager(str(tmp_path), "probe/domain_accuracy")
    assert best.best_step() in (4, 8) and len(best.all_steps()) == 1
    assert any(f.endswith(".xplane.pb") for _, _, fs in os.walk(tmp_path / "profile") for f in fs)


def test_gradient_accumulation_matches_one_big_batch(tiny_config, tmp_path):
    runs = [trainer.train(tiny_config("train.steps=3", "train.log_every=1", "probe.tasks=()",
                                      f"train.grad_accum={k}"), str(tmp_path / str(k)))
            for k in (1, 4)]
    np.testing.assert_allclose([h["loss"] for h in runs[0]["history"]],
                               [h["loss"] for h in runs[1]["history"]], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(runs[0]["state"].params), jax.tree.leaves(runs[1]["state"].params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_fixed_vocabulary_file(tiny_config, tmp_path, shared_dir):
    """A released UTS vocabulary drives the MTC head; tags outside it are ignored."""
    label_file = shared_dir / "uts" / "label_800.json"
    out = trainer.train(tiny_config(f"data.vocab_file={label_file}", "train.steps=2",
                                    "probe.tasks=()"), str(tmp_path))
    assert len(out["vocab"]) == 800
    assert out["state"].params["heads"]["mtc"]["classifier"]["kernel"].shape[-1] == 800


def test_tags_outside_a_fixed_vocabulary_are_reported(tiny_config, tmp_path, capsys):
    """The tiny corpus has 3 tags per clip; a vocabulary of one tag per class leaves 2 out."""
    import json

    vocab = tmp_path / "label_3.json"
    vocab.write_text(json.dumps({"0": "tone", "1": "noise", "2": "click"}))
    cfg = tiny_config(f"data.vocab_file='{vocab}'", "train.steps=4", "train.log_every=2",
                      "probe.tasks=()")
    trainer.train(cfg, str(tmp_path / "run"))
    out = capsys.readouterr().out
    assert "vocabulary: 32 tag occurrence(s) in 16 training record(s) so far are not in" in out
    assert "64 tag occurrence(s) in 32 training record(s) in all" in out
    records = [json.loads(l) for l in open(tmp_path / "run" / "metrics.jsonl")]
    assert [r["tags_outside_vocab"] for r in records if "tags_outside_vocab" in r] == [32, 64]


def test_outside_vocab_message_names_examples_only_when_it_has_some():
    """The counts are summed over processes but the examples are the local ones: a process
    that saw none must not print '(e.g. )'."""
    import dataclasses

    from strongaudio_jax.data import batcher
    from strongaudio_jax.train.trainer import _outside_vocab_message

    none = dataclasses.replace(batcher.OutsideVocab(), occurrences=3, records=2)
    assert "(e.g." not in _outside_vocab_message(none, "so far")
    some = dataclasses.replace(none, examples=["wood", "snow"])
    assert "train nothing (e.g. 'wood', 'snow');" in _outside_vocab_message(some, "so far")
