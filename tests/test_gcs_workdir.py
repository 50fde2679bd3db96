"""A gs:// work dir end to end, against a local GCS emulator (gcp-storage-emulator) started here.

`strongaudio train --workdir gs://bucket/run` reading its shards from gs:// is SIGKILLed once a
checkpoint is committed in the bucket, resumed, and must match an uninterrupted run with a
local work dir bit for bit (losses and parameters); metrics.jsonl, vocab.json and the
TensorBoard events and a profile must be in the bucket and readable.

Everything reaches the emulator: gcsfs (shards, metrics, vocabulary, events) through
STORAGE_EMULATOR_HOST, orbax/tensorstore (checkpoints) through TENSORSTORE_GCS_HTTP_URL. The
emulator needs one fix, applied when this file starts it (`_serve`): its media downloads lack
the `x-goog-generation` header real GCS sends, without which tensorstore's OCDBT checkpoints
fail with "Malformed StorageGeneration".

`GcsEmulator.cli(...)` runs any `strongaudio` subcommand against the emulator, for further
steps on the same bucket (e.g. exporting the run).
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]  # (also run as a script: no tests package)

BUCKET = "strongaudio-test"
OVERRIDES = [f"data.train_files=gs://{BUCKET}/corpus/train-*.tfrecord", "data.eval_files=''",
             "data.batch_size=8", "data.clip_seconds=1.0", "data.vocab_min_count=1",
             "probe.tasks=()", "train.log_every=1", "train.checkpoint_every=2",
             # a learning rate that does not depend on train.steps, so a run killed on its way
             # to many steps and resumed for fewer must match a short uninterrupted run
             "optimizer.schedule='constant'", "optimizer.warmup_steps=0"]


def _serve(port: int) -> None:
    """Runs the emulator in this process, its media downloads carrying the generation."""
    from gcp_storage_emulator.handlers import objects

    plain_download = objects.download

    def download(request, response, storage, *args, **kwargs):
        try:
            obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
            response["x-goog-generation"] = str(obj["generation"])
            response["x-goog-metageneration"] = str(obj.get("metageneration", 1))
        except Exception:  # not found: the plain handler answers 404
            pass
        return plain_download(request, response, storage, *args, **kwargs)

    objects.download = download  # before server.py builds its routing table
    from gcp_storage_emulator.__main__ import main

    main(["start", "--port", str(port), "--in-memory"])


class GcsEmulator:
    def __init__(self, port: int, proc: subprocess.Popen):
        self.url = f"http://localhost:{port}"
        self.proc = proc
        self.env = dict(os.environ, STORAGE_EMULATOR_HOST=self.url,
                        TENSORSTORE_GCS_HTTP_URL=self.url,
                        # gcsfs otherwise probes the bucket type over gRPC and hangs
                        GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false")

    def subprocess_env(self) -> dict:
        return dict(self.env, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO),
                    XLA_FLAGS="--xla_force_host_platform_device_count=2")

    def cli(self, *args, log=None, timeout=600, env=None):
        """`strongaudio <args>` against the emulator (with more `env`); with `log` (a file
        path) a Popen in the background writing its output there."""
        cmd = [sys.executable, "-m", "strongaudio_jax.cli", *args]
        env = dict(self.subprocess_env(), **(env or {}))
        if log:
            with open(log, "w") as f:
                return subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        assert out.returncode == 0, f"strongaudio {' '.join(args)}:\n{out.stdout}\n{out.stderr}"
        return out


@pytest.fixture(scope="module")
def gcs(tiny_corpus):
    pytest.importorskip("gcsfs", reason="gs:// needs gcsfs: pip install -e '.[dev]'")
    pytest.importorskip("gcp_storage_emulator",
                        reason="the GCS emulator is gcp-storage-emulator: pip install -e '.[dev]'")
    import gcsfs

    with socket.socket() as s:  # a free port
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    err = tiny_corpus.parent / f"gcs_emulator_{port}.log"  # why it failed, if it does
    with open(err, "wb") as err_file:
        proc = subprocess.Popen([sys.executable, __file__, str(port)], stdout=subprocess.DEVNULL,
                                stderr=err_file)
    emulator = GcsEmulator(port, proc)
    deadline = time.time() + 120
    while True:  # poll until it answers
        try:
            urllib.request.urlopen(emulator.url, timeout=5).read()
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"the GCS emulator did not start on port {port}:\n"
                            f"{err.read_text(errors='replace')[-3000:]}")
            time.sleep(0.05)
    with pytest.MonkeyPatch.context() as mp:
        for k in ("STORAGE_EMULATOR_HOST", "TENSORSTORE_GCS_HTTP_URL",
                  "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"):
            mp.setenv(k, emulator.env[k])
        gcsfs.GCSFileSystem.clear_instance_cache()
        fs = gcsfs.GCSFileSystem()
        fs.mkdir(BUCKET)
        for name in os.listdir(tiny_corpus):
            fs.put_file(str(tiny_corpus / name), f"{BUCKET}/corpus/{name}")
        emulator.fs = fs
        try:
            yield emulator
        finally:
            gcsfs.GCSFileSystem.clear_instance_cache()
            proc.kill()
            proc.wait()


def _train(workdir, *overrides) -> list[str]:
    return ["train", "--config", f"{REPO}/configs/mtc.py:smoke", "--workdir", str(workdir),
            *OVERRIDES, *overrides]


def _losses(text: str) -> dict:
    """step -> loss, the last line of a step winning (a resumed run repeats steps it redoes)."""
    rows = [json.loads(l) for l in text.splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def test_gs_workdir_killed_and_resumed_matches_local_run(gcs, tmp_path):
    from tensorboard.backend.event_processing import event_accumulator as ea

    from strongaudio_jax.data import storage
    from strongaudio_jax.train import checkpoint

    run = f"gs://{BUCKET}/run"
    log = tmp_path / "killed.log"
    proc = gcs.cli(*_train(run, "train.steps=1000"), log=log)
    committed = []
    try:
        while not committed:  # orbax marks a finished step in a bucket with commit_success.txt
            assert proc.poll() is None, f"the run ended before a checkpoint:\n{log.read_text()}"
            gcs.fs.invalidate_cache()  # listings are cached otherwise
            committed = gcs.fs.glob(f"{BUCKET}/run/checkpoints/*/commit_success.txt")
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    gcs.fs.invalidate_cache()
    step = max(int(p.split("/")[-2]) for p in gcs.fs.glob(
        f"{BUCKET}/run/checkpoints/*/commit_success.txt"))
    total = step + 3

    resumed = gcs.cli(*_train(run, f"train.steps={total}",  # and a profile of one step
                              f"train.profile_steps=({step + 1}, {step + 2})"))
    assert f"resumed from step {step}" in resumed.stdout
    gcs.fs.invalidate_cache()
    assert [p for p in gcs.fs.find(f"{BUCKET}/run/profile") if p.endswith(".xplane.pb")]
    local = tmp_path / "local"
    gcs.cli(*_train(local, f"train.steps={total}"))

    want = _losses((local / "metrics.jsonl").read_text())
    got = _losses(storage.read_text(f"{run}/metrics.jsonl"))
    assert sorted(want) == list(range(1, total + 1))
    # the killed run may have logged steps past `total` before it was killed
    assert {s: loss for s, loss in got.items() if s <= total} == want
    for a, b in zip(jax_leaves(checkpoint.load_for_eval(run)),
                    jax_leaves(checkpoint.load_for_eval(str(local)))):
        np.testing.assert_array_equal(a, b)
    assert (json.loads(storage.read_text(f"{run}/vocab.json"))
            == json.loads((local / "vocab.json").read_text()))

    assert len(storage.listdir(f"{run}/tensorboard")) == 2  # one event file per start
    # TensorBoard (without TensorFlow) reads the bucket itself, through fsspec
    acc = ea.EventAccumulator(f"{run}/tensorboard",
                              size_guidance=ea.STORE_EVERYTHING_SIZE_GUIDANCE).Reload()
    last = [e for e in acc.Scalars("train/loss") if e.step == total]
    assert last and last[-1].value == pytest.approx(want[total], rel=1e-6)

    # export from the bucket into the bucket: the same weights as the local run's export
    gcs.cli("export", "--workdir", run, "--out", f"{run}_export")
    gcs.cli("export", "--workdir", str(local), "--out", str(tmp_path / "local_export"))
    gcs.fs.invalidate_cache()
    from safetensors.numpy import load as load_safetensors

    with storage.open_file(f"{run}_export/model.safetensors") as f:
        remote_weights = load_safetensors(f.read())
    local_weights = load_safetensors((tmp_path / "local_export" / "model.safetensors").read_bytes())
    assert json.loads(storage.read_text(f"{run}_export/export.json"))["step"] == total
    assert sorted(remote_weights) == sorted(local_weights)
    for name, value in local_weights.items():
        np.testing.assert_array_equal(remote_weights[name], value, err_msg=name)

    # the embedding API loads the export straight from the bucket
    script = ("import sys, numpy as np\nfrom strongaudio_jax import hub\n"
              "audio = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 16000)).astype(np.float32)\n"
              "got = hub.get_scene_embeddings(audio, hub.load_model(sys.argv[1]))\n"
              "want = hub.get_scene_embeddings(audio, hub.load_model(sys.argv[2]))\n"
              "assert got.shape[0] == 2 and np.isfinite(got).all()\n"
              "np.testing.assert_array_equal(got, want)\n")
    out = subprocess.run([sys.executable, "-c", script, f"{run}_export", str(tmp_path / "local_export")],
                         env=gcs.subprocess_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"hub.load_model from the bucket:\n{out.stdout}\n{out.stderr[-4000:]}"


def test_tag_job_writes_its_shards_into_the_bucket(gcs, tmp_path):
    """`strongaudio tag` with input.files and output.dir in the bucket: the shard, its .idx,
    the stats and summary.json land there, the same bytes as a local output.dir, and the
    shard counts as finished there (a rerun skips it)."""
    from strongaudio_jax.data import storage
    from tests.test_infer import _make_export

    model = _make_export(tmp_path / "mtc", f"{REPO}/configs/mtc.py:smoke", ["data.clip_seconds=1.0"])
    job = ["tag", "--config", f"{REPO}/configs/tag.py:smoke", f"model.path={model}",
           f"input.files=gs://{BUCKET}/corpus/heldout-*.tfrecord",
           f"compilation_cache={tmp_path / 'cache'}"]
    env = {"STRONGAUDIO_CACHE": str(tmp_path / "staging")}  # where partial shards wait
    remote = f"gs://{BUCKET}/tagged"
    first = gcs.cli(*job, f"output.dir={remote}", env=env)
    assert "12 of 12 clip(s) written" in first.stdout + first.stderr, first.stdout + first.stderr
    gcs.cli(*job, f"output.dir={tmp_path / 'local'}", env=env)
    gcs.fs.invalidate_cache()
    name = "heldout-00000-of-00001.tfrecord"
    for suffix in ("", ".idx"):
        with storage.open_file(f"{remote}/{name}{suffix}") as f:
            assert f.read() == (tmp_path / "local" / f"{name}{suffix}").read_bytes(), suffix
    summary = json.loads(storage.read_text(f"{remote}/summary.json"))
    assert summary["counts"]["written"] == 12 and summary["shards"] == 1
    assert not list((tmp_path / "staging").rglob("*.partial"))  # uploaded, then removed
    from strongaudio_jax.infer import output
    assert output.ShardOutput(remote, name).finished()  # a rerun skips it


def jax_leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]


if __name__ == "__main__":  # the emulator process started by the `gcs` fixture
    _serve(int(sys.argv[1]))
