import os
import pathlib
import sys

# Every test sees 8 CPU devices so sharding is always exercised; set before jax starts.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
# Lets `pytest` import the package from a plain checkout (no `pip install -e .` needed).
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@pytest.fixture(scope="session")
def shared_dir() -> pathlib.Path:
    """The shared data folder (fixtures, audio): $STRONGAUDIO_SHARED, else the checkout's sibling `shared/`."""
    env = os.environ.get("STRONGAUDIO_SHARED")
    path = pathlib.Path(env) if env else pathlib.Path(__file__).resolve().parents[2] / "shared"
    if not path.is_dir():
        how = "$STRONGAUDIO_SHARED" if env else "the sibling of the repo (set STRONGAUDIO_SHARED to override)"
        pytest.skip(f"shared data folder not found: looked in {path} ({how})")
    return path


def pytest_report_header(config):
    return f"jax {jax.__version__}: {jax.device_count()} {jax.devices()[0].platform} devices"


def _synthetic_clip(kind: str, i: int, rng):
    """A 1-2 s synthetic clip whose class is audible: tone, noise or click train."""
    import numpy as np

    from strongaudio_jax.data import audio, schema

    sr = 16000
    n = int(sr * rng.uniform(1.0, 2.0))
    t = np.arange(n) / sr
    if kind == "tone":
        wave = 0.3 * np.sin(2 * np.pi * rng.uniform(300, 1200) * t)
        tags = ["tone", "sine", "music"]
    elif kind == "noise":
        wave = 0.1 * rng.standard_normal(n)
        tags = ["noise", "hiss", "static"]
    else:
        wave = np.zeros(n)
        wave[:: int(sr / rng.uniform(4, 12))] = 0.9
        tags = ["click", "rhythm", "percussive"]
    return schema.Clip(id=f"{kind}-{i:03d}", audio=audio.encode(wave, sr), format="flac",
                       sample_rate=sr, num_samples=n, caption=f"A {kind}.",
                       summary=f"A {kind}.", tags=tags, source="synthetic",
                       labels={"domain": kind, "recording": f"{kind}-{i:03d}"})


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> pathlib.Path:
    """36 training + 12 held-out synthetic clips of three audible classes, schema v1."""
    import numpy as np

    from strongaudio_jax.data import schema, tfrecord

    root = tmp_path_factory.mktemp("tiny_corpus")
    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("heldout", 4)):
        with tfrecord.TFRecordWriter(str(root / f"{split}-00000-of-00001.tfrecord")) as w:
            for i in range(count):
                for kind in ("tone", "noise", "click"):
                    w.write(schema.clip_to_example(_synthetic_clip(kind, i, rng)))
    return root


@pytest.fixture
def tiny_config(tiny_corpus):
    """The smoke config pointed at the tiny corpus, small enough for a test."""
    from strongaudio_jax import config

    return lambda *overrides: config.load(f"{REPO}/configs/mtc.py:smoke", [
        f"data.train_files={tiny_corpus}/train-*.tfrecord",
        f"data.eval_files={tiny_corpus}/heldout-*.tfrecord",
        "data.batch_size=8", "data.clip_seconds=1.0", "data.vocab_min_count=1",
        "probe.tasks=('domain',)", "augment.time_masks=0", "augment.freq_masks=0", *overrides])
