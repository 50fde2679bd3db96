"""compile-check: the ViT-B / ViT-L MTC train steps compile for TPU v5p and v5e topologies on
this CPU host (libtpu compile-only devices) and report per-device memory.

CI compiles the configs' real step on the smallest slices, one clip per chip, to keep the
time down; `strongaudio compile-check --config configs/vit_b_mtc.py:v5p-64` checks a full pod
(figures in docs/sharding.md).
"""

import pytest

from strongaudio_jax import config as config_lib
from strongaudio_jax.config import ConfigError
from strongaudio_jax.train import compile_check

from conftest import REPO

needs_libtpu = pytest.mark.skipif(
    not compile_check.libtpu_available(),
    reason="libtpu is not installed (pip install -e '.[tpu]', or TPU_LIBRARY_PATH=.../libtpu.so)")


@pytest.mark.slow
@needs_libtpu
@pytest.mark.parametrize("config", ["vit_b_mtc", "vit_l_mtc"])
@pytest.mark.parametrize("topology, chips", [("v5p-8", 4), ("v5e-8", 8)])
def test_train_step_compiles_for_tpu_topology(config, topology, chips):
    cfg = config_lib.load(f"{REPO}/configs/{config}.py:v5p-64",
                          ["mesh.data=1", f"data.batch_size={chips}"])  # FSDP over the slice
    report = compile_check.compile_for(cfg, topology, num_classes=527)
    print(report.table())
    assert report.devices == chips and report.mesh["fsdp"] == chips
    assert report.device_kind.startswith("TPU v5")
    # FSDP: each chip holds 1/chips of the float32 parameters and both Adam moments.
    state_bytes = 3 * 4 * report.params
    assert state_bytes / chips <= report.arguments < 1.2 * state_bytes / chips
    assert report.aliased > 0.9 * report.arguments  # the step updates its state in place
    assert 0 < report.temporaries and report.fits


def test_verdict_compares_peak_with_hbm():
    gib = compile_check.GIB
    report = compile_check.Report(topology="v5e-256", device_kind="TPU v5 lite", devices=256,
                                  mesh={}, params=1, arguments=4 * gib, outputs=4 * gib,
                                  aliased=4 * gib, temporaries=12 * gib, code=gib // 2,
                                  hbm=16 * gib, compile_s=1.0)
    assert report.peak == 16.5 * gib and not report.fits
    assert "DOES NOT FIT: 103% of HBM" in report.table()


def test_unknown_topology_and_missing_vocabulary_are_clear_errors():
    with pytest.raises(ConfigError, match="unknown TPU topology 'v9-8'.*v5p-64"):
        compile_check.topology_devices("v9-8")
    cfg = config_lib.load(f"{REPO}/configs/vit_b_mtc.py:v5p-64", ["compile_check.num_classes=0"])
    with pytest.raises(ConfigError, match="data.vocab_file.*--num-classes"):
        compile_check.num_classes_of(cfg)


@needs_libtpu
def test_a_step_that_does_not_fit_fails_the_check(capsys):
    cfg = config_lib.load(f"{REPO}/configs/vit_b_mtc.py:v5p-64",
                          ["mesh.data=1", "data.batch_size=2048"])  # 256 clips per v5e chip
    assert compile_check.main(cfg, ["v5e-8"]) == 1
    out = capsys.readouterr().out
    assert "DOES NOT FIT" in out and "HBM" in out


def test_cli_without_a_topology_says_what_to_set(capsys):
    from strongaudio_jax import cli

    assert cli.main(["compile-check", "--config", f"{REPO}/configs/zipformer_mtc.py:demo"]) == 2
    err = capsys.readouterr().err
    assert "no topology: pass --topology (e.g. v5p-64) or set compile_check.topology" in err
