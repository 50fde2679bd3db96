"""Loading `configs/<experiment>.py:<variant>` files and `key=value` overrides."""

from __future__ import annotations

import ast
import difflib
import importlib.util
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ml_collections


class ConfigError(ValueError):
    """A config path, variant or override key the user gave is wrong."""


def _flat_keys(cfg, prefix=""):
    import ml_collections

    for k, v in cfg.items():
        if isinstance(v, ml_collections.ConfigDict):
            yield from _flat_keys(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}"


def load_module(path: str):
    """A config file as a module: configs/ is not a package, so configs reach each other by path."""
    name = "_strongaudio_config_" + os.path.splitext(os.path.basename(path))[0]
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def sibling(config_file: str, name: str):
    """The config `name` beside `config_file`, e.g. `sibling(__file__, "mtc.py").get_config(arg)`."""
    return load_module(os.path.join(os.path.dirname(os.path.abspath(config_file)), name))


def load(spec: str, overrides: list[str] = ()) -> ml_collections.ConfigDict:
    """`spec` is 'path/to/config.py[:variant]'; overrides are 'dotted.key=value' strings."""
    import ml_collections  # here, so that models (ConfigError) import without it (GPU benchmark)

    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} not found (expected configs/<name>.py[:variant], "
                          f"relative to {os.getcwd()})")
    module = load_module(path)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path} has no get_config(arg) function")
    try:
        cfg = module.get_config(arg) if arg else module.get_config()
    except ValueError as e:
        raise ConfigError(f"{spec}: {e}") from e
    cfg = ml_collections.ConfigDict(cfg)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not key=value")
        keys = list(_flat_keys(cfg))
        if key not in keys:
            close = difflib.get_close_matches(key, keys, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"config {spec} has no key {key!r}{hint}")
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw  # a bare string such as a path
        parent = cfg
        *head, last = key.split(".")
        for h in head:
            parent = parent[h]
        old = parent[last]
        if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        file_list = (last.endswith("files") and isinstance(old, str)  # a glob, or a list of them
                     and isinstance(value, (tuple, list)) and all(isinstance(v, str) for v in value))
        if file_list:
            value = list(value)
            del parent[last]  # (a ConfigDict field keeps its first type)
        elif old is not None and not isinstance(value, type(old)) and not (
                isinstance(old, (tuple, list)) and isinstance(value, (tuple, list))):
            raise ConfigError(f"{key}={raw!r}: expected a {type(old).__name__}, "
                              f"got {type(value).__name__}")
        parent[last] = value
    cfg.lock()
    return cfg
