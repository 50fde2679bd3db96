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
