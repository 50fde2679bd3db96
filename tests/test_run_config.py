"""<workdir>/config.json: every config file and variant round-trips; a changed resume warns."""

import glob
import os


from strongaudio_jax import config as config_lib
from strongaudio_jax.train import run_config
from tests.conftest import REPO

VARIANTS = ("demo", "smoke", "large", "gpu1", "gpu8", "v5p-64", "v5e-256")


def _all_configs():
    for path in sorted(glob.glob(os.path.join(REPO, "configs", "*.py"))):
        for variant in VARIANTS:
            try:
                yield f"{os.path.basename(path)}:{variant}", config_lib.load(f"{path}:{variant}")
            except config_lib.ConfigError:
                continue  # not a variant of this file


def test_every_config_round_trips(tmp_path):
    seen = 0
    for name, cfg in _all_configs():
        path = str(tmp_path / f"{name}.json")
        run_config.save(cfg, path)
        back = run_config.load(path)
        assert back.to_dict() == cfg.to_dict(), name
        assert run_config.differences(cfg, back) == [], name
        seen += 1
    assert seen >= 28, seen  # every file and its variants


def test_tuples_nested_and_none_survive(tmp_path):
    import ml_collections

    cfg = ml_collections.ConfigDict({"a": (1, (2, 3)), "b": [4, 5], "c": None, "d": {},
                                     "e": {"f": ("x",), "g": 1.5}})
    back = run_config.from_json(run_config.to_json(cfg))
    assert back.a == (1, (2, 3)) and back.b == [4, 5] and back.c is None
    assert back.e.f == ("x",) and back.to_dict() == cfg.to_dict()


def test_resume_with_another_config_warns(tmp_path):
    cfg = config_lib.load(f"{REPO}/configs/mtc.py:smoke")
    messages = []

    class Logger:
        info = messages.append

    run_config.record(cfg, str(tmp_path), Logger)
    assert messages == [] and run_config.load(str(tmp_path / "config.json")).to_dict() == cfg.to_dict()
    run_config.record(cfg, str(tmp_path), Logger)
    assert messages == []
    more = config_lib.load(f"{REPO}/configs/mtc.py:smoke", ["train.steps=50", "probe.tasks=('x',)"])
    run_config.record(more, str(tmp_path), Logger)
    (msg,) = messages
    assert "train.steps: 12 -> 50" in msg and "probe.tasks" in msg and "2 key(s)" in msg
    assert run_config.load(str(tmp_path / "config.json")).train.steps == 50
