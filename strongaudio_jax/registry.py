"""Plugins chosen by name in the config: the audio encoder (`model.name`) and the objectives
(the keys of `objectives`).

A plugin of kind `models` or `objectives` named N is the module `strongaudio_jax.<kind>.N` with
a module-level `build`; adding a model or an objective is adding such a module. Helper modules
beside them have no `build` (models/base.py), and subpackages are not plugins (models/text/,
the text architectures that objectives build themselves).
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from strongaudio_jax.config import ConfigError

KINDS = {"models": "model", "objectives": "objective"}  # package -> what the config calls one


def known(kind: str) -> list[str]:
    """Names of the plugins of `kind` (imports each candidate module to look for `build`)."""
    package = importlib.import_module(f"strongaudio_jax.{_check_kind(kind)}")
    names = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.ispkg or info.name.startswith("_"):
            continue
        if hasattr(importlib.import_module(f"{package.__name__}.{info.name}"), "build"):
            names.append(info.name)
    return sorted(names)


def resolve(kind: str, name: str) -> ModuleType:
    """The plugin module `strongaudio_jax.<kind>.<name>`; a ConfigError listing the known
    plugins when there is none of that name."""
    module_name = f"strongaudio_jax.{_check_kind(kind)}.{name}"
    module = None
    if isinstance(name, str) and name.isidentifier() and not name.startswith("_"):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name != module_name:  # the plugin exists but needs something missing
                raise
    if module is None or hasattr(module, "__path__") or not hasattr(module, "build"):
        raise ConfigError(f"unknown {KINDS[kind]} {name!r} in the config; known: {known(kind)}")
    return module


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"plugin kind {kind!r} is not one of {sorted(KINDS)}")
    return kind
