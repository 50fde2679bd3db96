"""What the config names and builds: plugins resolved by module name (registry), the featurizer
and the text fields built on the data side from the config."""

import sys
import types

import pytest

from strongaudio_jax import config, registry
from strongaudio_jax.config import ConfigError
from strongaudio_jax.data import pipeline, text_fields
from tests.conftest import REPO


def test_known_plugins_are_the_modules_with_build():
    assert registry.known("models") == ["vit", "zipformer"]
    assert {"mtc", "par", "captioning", "contrastive", "masked"} <= set(registry.known("objectives"))
    assert registry.resolve("models", "vit").build  # a module with `build`


@pytest.mark.parametrize("kind, name", [("models", "base"),  # a helper: no build
                                        ("models", "text"),  # a subpackage
                                        ("models", "resnet"),  # no such module
                                        ("objectives", "../models/vit")])
def test_a_name_that_is_no_plugin_is_a_config_error_listing_the_known(kind, name):
    with pytest.raises(ConfigError, match=r"unknown (model|objective) .*known: \[.*'(vit|mtc)'"):
        registry.resolve(kind, name)


def test_adding_a_plugin_is_adding_a_module(monkeypatch):
    module = types.ModuleType("strongaudio_jax.models.tiny_test_encoder")
    module.build = lambda cfg: ("built", dict(cfg))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    assert registry.resolve("models", "tiny_test_encoder").build({"size": 1}) == ("built", {"size": 1})


def _cfg(*overrides):
    return config.load(f"{REPO}/configs/captioning.py:smoke",
                       ["data.sample_rate=16000", "data.clip_seconds=0.5", *overrides])


def test_featurizer_from_config():
    cfg = _cfg("data.resample=True")
    f = pipeline.featurizer_from_config(cfg, ["dog", "bark", "dog"])  # a tag listed twice
    assert (f.sample_rate, f.clip_samples, f.random_crop, f.resample) == (16000, 8000, True, True)
    assert f.vocab == {"dog": 0, "bark": 1}  # the first output of a repeated tag
    ev = pipeline.featurizer_from_config(cfg, {"a": 3}, train=False, clip_seconds=3.0)
    assert (ev.random_crop, ev.clip_samples, dict(ev.vocab), ev.extra) == (False, 48000, {"a": 3}, None)


def test_text_fields_from_config():
    cfg = _cfg("text.max_len=12")
    assert text_fields.from_config(cfg, ()) is None  # no objective reads text
    extra = text_fields.from_config(cfg, ("text", "tags"))
    clip = types.SimpleNamespace(summary="A dog barks.", tags=("dog", "bark"))
    out = extra(clip)
    assert set(out) == {"text_ids", "text_mask", "tag_ids", "tag_mask"}
    for key, text in (("text", "A dog barks."), ("tag", "dog, bark")):
        ids, mask = extra.tokenizer.encode([text], 12)
        assert (out[f"{key}_ids"] == ids[0]).all() and (out[f"{key}_mask"] == mask[0]).all()
        assert out[f"{key}_ids"].shape == (12,) and out[f"{key}_mask"].sum() > 3
    with pytest.raises(ConfigError, match="set text.tokenizer"):
        text_fields.from_config(_cfg("text.tokenizer=''"), ("text",))
