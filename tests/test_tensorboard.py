"""Training logs: TensorBoard event files (tensorboardX, no TensorFlow) read back with
TensorBoard's own EventAccumulator, and metrics.jsonl, in a local and in a URL work dir
(fsspec's memory://, which goes through the same remote code path as gs:// and s3://)."""

import json
import os

import fsspec
import numpy as np
import pytest

from strongaudio_jax.data import storage
from strongaudio_jax.train import log

ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator",
                         reason="`pip install tensorboard` (no TensorFlow needed) to read the "
                                "event files with TensorBoard's own reader")

STEPS = [0, 1, 2, 5, 10, 100]


def values_at(step):
    # 0.0 at step 0 checks that a zero scalar is still written.
    return {"train/loss": 0.0 if step == 0 else 1.0 / step, "train/lr": 1e-3 * (step + 1),
            "eval/acc": step / 100.0}


def scalars(logdir) -> dict:
    acc = ea.EventAccumulator(str(logdir), size_guidance=ea.STORE_EVERYTHING_SIZE_GUIDANCE).Reload()
    return {(e.step, tag): e.value for tag in acc.Tags()["scalars"] for e in acc.Scalars(tag)}


def f32(x):
    return float(np.float32(x))


def test_event_writer_scalars_read_by_tensorboard(tmp_path):
    w = log.EventWriter(str(tmp_path / "tb"))
    for s in STEPS:
        w.scalars(s, {**values_at(s), "skipped": None})
    got = scalars(tmp_path / "tb")  # read before close: every call is flushed
    w.close()
    assert got == {(s, k): f32(v) for s in STEPS for k, v in values_at(s).items()}


def test_two_writers_keep_separate_files(tmp_path):
    a, b = log.EventWriter(str(tmp_path)), log.EventWriter(str(tmp_path))
    a.scalars(1, {"x": 1.0})
    b.scalars(2, {"x": 2.0})
    a.close(), b.close()
    assert a.path != b.path and len(os.listdir(tmp_path)) == 2
    assert scalars(tmp_path) == {(1, "x"): 1.0, (2, "x"): 2.0}


def test_logger_on_a_url_workdir_resumes_metrics_and_uploads_events(tmp_path):
    workdir = "memory://strongaudio-test-logs/run"
    fs = fsspec.filesystem("memory")
    if fs.exists(workdir):
        fs.rm(workdir, recursive=True)
    storage.makedirs(workdir)
    first = log.Logger(workdir)
    first.write({"step": 1, "loss": 2.0}, step=1, scalars={"train/loss": 2.0})
    # A second logger (a resumed run) keeps the first one's lines.
    second = log.Logger(workdir)
    second.write({"step": 2, "loss": 1.5}, step=2, scalars={"train/loss": 1.5})
    lines = storage.read_text(storage.join(workdir, "metrics.jsonl")).splitlines()
    assert [json.loads(l)["step"] for l in lines] == [1, 2]
    first.close(), second.close()

    names = storage.listdir(storage.join(workdir, "tensorboard"))
    assert len(names) == 2 and all(n.startswith("events.out.tfevents.") for n in names)
    for n in names:  # TensorBoard reads local dirs: download the bucket's copy
        storage.copy(storage.join(storage.join(workdir, "tensorboard"), n), str(tmp_path / n))
    assert scalars(tmp_path) == {(1, "train/loss"): 2.0, (2, "train/loss"): 1.5}
    fs.rm(workdir, recursive=True)


def test_text_log_repairs_a_torn_last_line():
    path = "memory://strongaudio-test-logs/torn.jsonl"
    storage.write_text(path, '{"step": 1}\n{"ste')
    t = storage.TextLog(path)
    t.append('{"step": 2}')
    assert storage.read_text(path) == '{"step": 1}\n{"ste\n{"step": 2}\n'
    storage.remove(path)


def test_storage_helpers_local_and_url(tmp_path):
    for root in (str(tmp_path / "a" / "b"), "memory://strongaudio-test-logs/helpers"):
        storage.makedirs(root)
        storage.write_text(storage.join(root, "x.txt"), "hello")
        storage.copy(storage.join(root, "x.txt"), storage.join(root, "y.txt"))
        storage.rename(storage.join(root, "y.txt"), storage.join(root, "z.txt"))
        assert storage.listdir(root) == ["x.txt", "z.txt"]
        assert storage.read_text(storage.join(root, "z.txt")) == "hello"
        src = tmp_path / "tree"
        (src / "sub").mkdir(parents=True, exist_ok=True)
        (src / "sub" / "t.bin").write_bytes(b"\0\1")
        storage.upload_tree(str(src), storage.join(root, "up"))
        with storage.open_file(storage.join(root, "up/sub/t.bin")) as f:
            assert f.read() == b"\0\1"
