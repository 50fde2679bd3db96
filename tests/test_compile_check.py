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


# ---------------------------------------------------------------------------- inference jobs

INFER_SMALL = ["buckets.seconds=(0.5, 1.0)", "buckets.batch_per_device=1", "decode.max_len=4"]


@needs_libtpu
@pytest.mark.parametrize("job", ["tag", "caption"])
@pytest.mark.parametrize("target", ["v5p-64", "v5e-256"])
def test_inference_job_compiles_for_its_tpu_target(job, target, capsys):
    """Each TPU variant of configs/{tag,caption}.py compiles its job's device program for one
    host of its slice (the mesh over that host's 4 chips), once per bucket. To keep it small:
    short buckets, one clip per chip, and the smoke models (configs/mtc.py:smoke,
    configs/captioning.py:smoke) in place of the targets' ViT-B ones, which compile in 5-20 s
    per bucket here (`strongaudio compile-check --config configs/tag.py:v5p-64` checks those;
    figures in docs/launching.md; the test below compiles tag.py:v5e-256's own model)."""
    from strongaudio_jax import cli

    train = "captioning" if job == "caption" else "mtc"
    overrides = [*INFER_SMALL, f"compile_check.model_config=configs/{train}.py:smoke",
                 "compile_check.num_classes=9"]
    if job == "tag":
        overrides.remove("decode.max_len=4")
    assert cli.main(["compile-check", "--config", f"{REPO}/configs/{job}.py:{target}",
                     *overrides]) == 0
    out = capsys.readouterr().out
    kind = "TPU v5 lite" if target == "v5e-256" else "TPU v5"
    program = "tagger forward" if job == "tag" else "captioner decode (greedy, 4 tokens)"
    for seconds in ("0.5", "1"):
        assert (f"topology {target} (one host), {program}, bucket {seconds} s x 4 clips: "
                f"4 x {kind}, mesh {{'data': 4, 'fsdp': 1, 'tensor': 1}}") in out, out
    assert out.count("fits: ") == 2


@needs_libtpu
def test_inference_job_that_does_not_fit_fails_the_check(capsys):
    from strongaudio_jax.infer import compile_check as infer_check

    cfg = config_lib.load(f"{REPO}/configs/tag.py:v5e-256",
                          ["buckets.seconds=(10.0,)", "buckets.batch_per_device=16384"])
    assert infer_check.main(cfg, []) == 1
    out = capsys.readouterr().out
    assert "DOES NOT FIT" in out and "lower buckets.batch_per_device" in out


def test_inference_compile_check_names_what_is_missing(tmp_path):
    from strongaudio_jax.infer import compile_check as infer_check

    cfg = config_lib.load(f"{REPO}/configs/tag.py:smoke", [])
    assert infer_check.job_of(cfg) == "tag" and infer_check.job_of(
        config_lib.load(f"{REPO}/configs/mtc.py:smoke", [])) is None
    with pytest.raises(ConfigError, match="no topology"):
        infer_check.main(cfg, [])
    with pytest.raises(ConfigError, match="no model: set model.path .* or compile_check.model_config"):
        infer_check.model_config(cfg)
    cfg = config_lib.load(f"{REPO}/configs/tag.py:smoke", [f"model.path={tmp_path}"])
    with pytest.raises(ConfigError, match="has no config.json"):
        infer_check.model_config(cfg)
