"""`strongaudio import-hf`: a Hugging Face Qwen2 / Qwen2.5 / Qwen3 checkpoint directory -> an
orbax checkpoint of the Flax parameters of models/lm, with the model config and the tokenizer.

Reads config.json (model_type qwen2 / qwen3; anything else is refused), then the safetensors
weights (one `model.safetensors`, or shards listed in `model.safetensors.index.json`) one tensor
at a time with `safe_open`, so that only the growing Flax tree is held, never a second copy of
the checkpoint. Dense kernels are transposed from torch's [out, in] to Flax's [in, out] (and
split into heads where the Flax layer has them); every tensor's shape is checked. Nothing from
the checkpoint directory is executed: JSON, safetensors and the tokenizer files only.

Output directory:
  params/                 orbax checkpoint of the parameter tree (float32)
  lm_config.json          the QwenConfig fields
  tokenizer.json, tokenizer_config.json (and generation_config.json when present), copied
"""

from __future__ import annotations

import json
import math
import os
import shutil

import jax
import numpy as np

from strongaudio_jax.models.lm import QwenConfig, QwenLM, init_cache

CONFIG_FILE = "lm_config.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
OPTIONAL_FILES = ("generation_config.json",)


class ImportHFError(ValueError):
    """A checkpoint directory this importer cannot convert (named file / tensor in the text)."""


def read_config(src: str) -> QwenConfig:
    path = os.path.join(src, "config.json")
    if not os.path.isfile(path):
        raise ImportHFError(f"{path} does not exist; --from must be a Hugging Face model "
                            f"directory (config.json, *.safetensors, tokenizer.json)")
    with open(path) as f:
        hf = json.load(f)
    try:
        return QwenConfig.from_hf(hf, path)
    except ValueError as e:
        raise ImportHFError(str(e)) from None


def weight_files(src: str) -> dict[str, str]:
    """{tensor name: safetensors file path} from the index, or from the single file."""
    index = os.path.join(src, "model.safetensors.index.json")
    single = os.path.join(src, "model.safetensors")
    if os.path.isfile(index):
        with open(index) as f:
            weight_map = json.load(f).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ImportHFError(f"{index} has no 'weight_map'")
        out = {}
        for name, file in weight_map.items():
            path = os.path.join(src, file)
            if os.path.basename(file) != file or not os.path.isfile(path):
                raise ImportHFError(f"{index}: shard {file!r} of tensor {name!r} is not a file "
                                    f"in {src}")
            out[name] = path
        return out
    if os.path.isfile(single):
        from safetensors import safe_open
        with safe_open(single, framework="numpy") as f:
            return {name: single for name in f.keys()}
    raise ImportHFError(f"{src} has neither model.safetensors nor model.safetensors.index.json "
                        f"(only safetensors weights are read, never pickled .bin files)")


def expected_shapes(cfg: QwenConfig) -> dict[tuple[str, ...], tuple[int, ...]]:
    """{Flax parameter path: shape} of the model."""
    model = QwenLM(cfg)
    tokens = np.zeros((1, 1), np.int32)
    abstract = jax.eval_shape(lambda: model.init(
        jax.random.PRNGKey(0), tokens, tokens, 0, np.ones((1, 1), bool),
        init_cache(cfg, 1, 1)))
    flat = jax.tree_util.tree_flatten_with_path(abstract["params"])[0]
    out = {}
    for path, leaf in flat:
        keys = tuple(p.key for p in path if hasattr(p, "key"))
        out[keys] = tuple((leaf.value if hasattr(leaf, "value") else leaf).shape)
    return out


def hf_name(path: tuple[str, ...]) -> str:
    """('layers_3', 'self_attn', 'q_proj', 'kernel') -> 'model.layers.3.self_attn.q_proj.weight'."""
    parts = [p.replace("layers_", "layers.") if p.startswith("layers_") else p for p in path]
    parts[-1] = {"kernel": "weight", "embedding": "weight"}.get(parts[-1], parts[-1])
    name = ".".join(parts)
    return name if path[0] == "lm_head" else "model." + name


def hf_shape(path: tuple[str, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """The torch shape of a Flax parameter: Dense kernels are [out, in], biases flat."""
    if path[-1] == "kernel":
        n_in = 2 if path[-2] == "o_proj" else 1
        return (math.prod(shape[n_in:]), math.prod(shape[:n_in]))
    if path[-1] == "bias":
        return (math.prod(shape),)
    return shape


def _tensor(handles: dict, file: str, name: str) -> np.ndarray:
    from safetensors import safe_open
    if file not in handles:
        handles[file] = safe_open(file, framework="flax")  # jax arrays: bfloat16 included
    return np.asarray(handles[file].get_tensor(name), dtype=np.float32)


def convert(src: str, cfg: QwenConfig | None = None) -> dict:
    """The Flax parameter tree (nested dicts of float32 numpy arrays) of a checkpoint dir."""
    cfg = cfg or read_config(src)
    files = weight_files(src)
    params: dict = {}
    used = set()
    handles: dict = {}
    for path, shape in expected_shapes(cfg).items():
        name = hf_name(path)
        if name not in files:
            raise ImportHFError(f"{src}: tensor {name!r} (for {'/'.join(path)}) is missing from "
                                f"the safetensors files")
        torch_shape = hf_shape(path, shape)
        w = _tensor(handles, files[name], name)
        if w.shape != torch_shape:
            raise ImportHFError(f"{files[name]}: tensor {name!r} has shape {list(w.shape)}, "
                                f"the config.json model needs {list(torch_shape)}")
        w = w.T.reshape(shape) if path[-1] == "kernel" else w.reshape(shape)
        node = params
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = np.ascontiguousarray(w)
        used.add(name)
    handles.clear()
    ignorable = lambda n: n.endswith("rotary_emb.inv_freq") or (
        n == "lm_head.weight" and cfg.tie_word_embeddings)
    extra = sorted(n for n in files if n not in used and not ignorable(n))
    if extra:
        raise ImportHFError(f"{files[extra[0]]}: tensor {extra[0]!r} (and {len(extra) - 1} more) "
                            f"has no place in a {cfg.model_type} model of this config.json")
    return params


def import_hf(src: str, out: str) -> QwenConfig:
    """Converts the checkpoint directory `src` into `out` (new or empty); returns the config."""
    cfg = read_config(src)
    for name in TOKENIZER_FILES:
        if not os.path.isfile(os.path.join(src, name)):
            raise ImportHFError(f"{os.path.join(src, name)} does not exist; the tokenizer is "
                                f"needed beside the weights")
    if os.path.exists(out) and os.listdir(out):
        raise ImportHFError(f"{out} is not empty; give a new directory as --out")
    params = convert(src, cfg)
    import orbax.checkpoint as ocp
    os.makedirs(out, exist_ok=True)
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(os.path.join(os.path.abspath(out), "params"), params)
    ckptr.wait_until_finished()
    with open(os.path.join(out, CONFIG_FILE), "w") as f:
        json.dump(cfg.to_dict(), f, indent=1)
    for name in TOKENIZER_FILES + OPTIONAL_FILES:
        if os.path.isfile(os.path.join(src, name)):
            shutil.copyfile(os.path.join(src, name), os.path.join(out, name))
    return cfg


def load(directory: str) -> tuple[QwenLM, dict]:
    """(model, params as host numpy arrays) of an `import-hf` output directory."""
    import orbax.checkpoint as ocp
    path = os.path.join(directory, CONFIG_FILE)
    if not os.path.isfile(path):
        raise ImportHFError(f"{path} does not exist; is {directory} an import-hf output?")
    with open(path) as f:
        cfg = QwenConfig.from_dict(json.load(f))
    ckpt = os.path.join(os.path.abspath(directory), "params")
    tree = ocp.StandardCheckpointer().metadata(ckpt).item_metadata.tree
    as_numpy = ocp.RestoreArgs(restore_type=np.ndarray)
    params = ocp.PyTreeCheckpointer().restore(ckpt, args=ocp.args.PyTreeRestore(
        item=tree, restore_args=jax.tree.map(lambda _: as_numpy, tree)))
    return QwenLM(cfg), params
