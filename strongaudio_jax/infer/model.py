"""A model trained by this stack, loaded for inference: a training --workdir (its latest or a
given checkpoint step, EMA parameters when kept) or an export directory (`strongaudio export`).

Both carry what the model needs beside its weights: config.json (the training config, which
rebuilds the encoder and the objective heads: train/step.py), vocab.json (the tag vocabulary
of the MTC head), text_vocab.txt (the text objectives' WordPiece vocabulary) and the frontend's
statistics (frontend_stats.json, or an export's frontend.json).
"""

from __future__ import annotations

import dataclasses
import json
import os

import flax.linen as nn
import jax
import numpy as np

from strongaudio_jax.config import ConfigError
from strongaudio_jax.data import storage
from strongaudio_jax.parallel import mesh as mesh_lib
from strongaudio_jax.train import export as export_lib, run_config, step as step_lib


@dataclasses.dataclass(eq=False)
class TrainedModel:
    path: str
    kind: str  # "workdir" | "export"
    step: int
    cfg: object  # the training ConfigDict
    program: step_lib.Program
    params: dict  # host numpy arrays {"encoder": ..., "heads": ...}
    vocab: list[str]  # tags of the MTC head (may be empty)
    text_vocab: str  # path of the WordPiece vocabulary ("" when the model reads no text)

    @property
    def objectives(self) -> list[str]:
        return [o.name for o in self.program.objectives]

    def objective(self, name: str):
        for o in self.program.objectives:
            if o.name == name:
                return o
        raise ConfigError(f"model.path={self.path!r} was trained with the objectives "
                          f"{self.objectives}, not {name!r}; give a checkpoint trained with it")

    def describe(self) -> str:
        m = self.cfg.model
        return f"{m.name}-{m.get('size', '')} [{'+'.join(self.objectives)}]"

    def check_bucket(self, samples: int) -> None:
        """A ConfigError when the encoder cannot take `samples` (its position table)."""
        from strongaudio_jax import frontend

        max_frames = getattr(self.program.encoder, "max_frames", None)
        frames = int(frontend.num_frames(samples, self.program.mel_cfg))
        if max_frames and frames > max_frames:
            rate = self.program.mel_cfg.sample_rate
            raise ConfigError(f"buckets.seconds: the largest bucket ({samples / rate:g} s, "
                              f"{frames} frames) is longer than the encoder takes (model.max_frames"
                              f"={max_frames} frames); use buckets of at most "
                              f"{max_frames * self.program.mel_cfg.hop_length / rate:.2f} s "
                              "(longer clips are chunked)")

    def place(self, mesh) -> dict:
        """The parameters on `mesh`, laid out by the training rules (the tensor axis splits
        heads and MLPs where the mesh has one; otherwise they are replicated)."""
        boxed = jax.eval_shape(self.program.init, jax.random.key(0))
        specs = nn.get_partition_spec(boxed).params
        shardings = mesh_lib.state_shardings(specs, nn.meta.unbox(boxed).params, mesh,
                                             self.program.rules)
        return jax.tree.map(lambda x, s: jax.device_put(np.asarray(x), s), self.params, shardings)


def _read_json(path: str):
    with storage.open_file(path, "r") as f:
        return json.load(f)


def load(path: str, step: int = -1) -> TrainedModel:
    """The model of a training work dir or an export directory (step -1: the latest)."""
    if not path:
        raise ConfigError("model.path is empty: give a training --workdir or an export directory")
    if not storage.exists(path):
        raise FileNotFoundError(f"model.path={path!r} does not exist")
    is_export = storage.exists(storage.join(path, "export.json"))
    cfg_path = storage.join(path, run_config.FILE_NAME)
    if not storage.exists(cfg_path):
        raise FileNotFoundError(f"model.path={path!r} has no {run_config.FILE_NAME}: give a "
                                "training --workdir or an export directory")
    cfg = run_config.load(cfg_path).copy_and_resolve_references()
    text_vocab = storage.join(path, "text_vocab.txt")
    text_vocab = text_vocab if storage.exists(text_vocab) else ""
    stats = storage.join(path, "frontend_stats.json")
    with cfg.unlocked():  # the run's own copies: the original paths may be gone
        if text_vocab:
            cfg.text.tokenizer = text_vocab
        if cfg.frontend.get("stats_file"):
            cfg.frontend.stats_file = stats if storage.exists(stats) else ""
    vocab_path = storage.join(path, "vocab.json")
    vocab = ([v for _, v in sorted(_read_json(vocab_path).items(), key=lambda kv: int(kv[0]))]
             if storage.exists(vocab_path) else [])
    if is_export:
        from safetensors.numpy import load as safetensors_load

        info = _read_json(storage.join(path, "export.json"))
        if step not in (-1, info["step"]):
            raise ConfigError(f"model.step={step}: the export {path} holds step {info['step']} only")
        step = int(info["step"])
        with storage.open_file(storage.join(path, "model.safetensors"), "rb") as f:
            params = export_lib.unflatten(safetensors_load(f.read()))
    else:
        params, step, _ = export_lib.read_params(path, None if step == -1 else step)
    program = step_lib.build(cfg, max(len(vocab), 1), vocab or None)
    if is_export:  # the frontend exactly as exported (statistics applied)
        with storage.open_file(storage.join(path, "frontend.json"), "r") as f:
            program = dataclasses.replace(program, mel_cfg=export_lib.frontend_from_json(f.read()))
    params.setdefault("heads", {})
    return TrainedModel(path=os.path.abspath(path) if not storage.is_url(path) else path,
                        kind="export" if is_export else "workdir", step=int(step), cfg=cfg,
                        program=program, params=params, vocab=vocab, text_vocab=text_vocab)


def local_mesh(mesh_cfg, devices: int = 0):
    """The job's mesh over this host's devices, all or the first `devices` (see engine.py:
    hosts run independently)."""
    local = jax.local_devices()
    if devices > len(local):
        raise ConfigError(f"devices={devices}: this host has {len(local)} device(s)")
    return mesh_lib.make_mesh(dict(mesh_cfg), local[:devices] if devices > 0 else local)
