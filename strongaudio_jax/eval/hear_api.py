"""Any model that implements the HEAR 2021 API, loaded by name, embedding numpy audio.

`--model` is either an export directory of this project (read by `strongaudio_jax.hub`) or
`module.name[:path]`: a Python module with `load_model([path])`, `get_timestamp_embeddings`
and `get_scene_embeddings` (a HEAR baseline, another project's module, a test's module).
Modules built on PyTorch get torch tensors when they refuse numpy arrays.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
from typing import Any

import numpy as np


class ModelError(ValueError):
    """A --model that cannot be loaded as a HEAR module."""


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


@dataclasses.dataclass
class HearModel:
    name: str
    module: Any
    model: Any
    torch: bool = False  # the module wants torch tensors

    @property
    def sample_rate(self) -> int:
        return int(self.model.sample_rate)

    def _call(self, fn, audio: np.ndarray):
        if not self.torch:
            try:
                return fn(audio, self.model)
            except (TypeError, AttributeError):
                if importlib.util.find_spec("torch") is None:
                    raise  # not a torch module: its own error
                self.torch = True  # a torch module refusing numpy: retry with a tensor
        import torch

        with torch.no_grad():
            return fn(torch.from_numpy(audio), self.model)

    def timestamp_embeddings(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """audio [n, samples] float32 at sample_rate -> ([n, T, D], timestamps ms [n, T])."""
        emb, ts = self._call(self.module.get_timestamp_embeddings, np.asarray(audio, np.float32))
        return _numpy(emb).astype(np.float32), _numpy(ts)

    def scene_embeddings(self, audio: np.ndarray) -> np.ndarray:
        return _numpy(self._call(self.module.get_scene_embeddings,
                                 np.asarray(audio, np.float32))).astype(np.float32)


def load(spec: str) -> HearModel:
    """An export directory (-> strongaudio_jax.hub) or `module.name[:path]`."""
    if os.path.isdir(spec):
        module_name, path, name = "strongaudio_jax.hub", spec, os.path.basename(
            os.path.normpath(spec))
    else:
        module_name, _, path = spec.partition(":")
        name = spec
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ModelError(f"--model {spec}: neither an export directory nor an importable "
                         f"module ({e})") from e
    missing = [f for f in ("load_model", "get_timestamp_embeddings", "get_scene_embeddings")
               if not hasattr(module, f)]
    if missing:
        raise ModelError(f"--model {spec}: module {module_name} lacks the HEAR function(s) "
                         f"{missing}")
    model = module.load_model(path) if path else module.load_model()
    if not hasattr(model, "sample_rate"):
        raise ModelError(f"--model {spec}: the loaded model has no sample_rate attribute")
    return HearModel(name, module, model)
