"""`strongaudio import-hf`: a Hugging Face checkpoint directory -> an orbax checkpoint of the
Flax parameters, with the model config and the tokenizer.

Architectures (config.json's model_type; anything else is refused):
  qwen2, qwen3       decoder-only LMs (Qwen2 / Qwen2.5 / Qwen3 dense) -> models/lm QwenLM
  qwen2_audio        Qwen2AudioForConditionalGeneration -> models/alm AudioLM

Reads config.json, checks every tensor's name and shape from the safetensors headers (one
`model.safetensors`, or shards listed in `model.safetensors.index.json`), then converts and
writes the parameters group by group (one transformer layer, or one other module such as the
embedding table: `param_group`), reading one tensor at a time with `safe_open`: host memory is
bounded by about one layer, not the model (a 30B checkpoint does not need 60 GB). Dense kernels are transposed from torch's [out, in] to Flax's [in, out] (and
split into heads where the Flax layer has them); every tensor's shape is checked. Nothing from
the checkpoint directory is executed: JSON, safetensors and the tokenizer files only.

Output directory:
  params/<group>/         one orbax checkpoint per parameter group ('layers_0',
                          'language_model.embed_tokens', ...: the group's subtree), float32,
                          or bfloat16 with dtype='bfloat16'; `load` reads them back into one
                          tree, onto a mesh if given
  lm_config.json          the QwenConfig fields, or the AudioLMConfig ({model_type: qwen2_audio,
                          audio: ..., text: ..., audio_token_id})
  tokenizer.json, tokenizer_config.json (and generation_config.json, preprocessor_config.json
  when present), copied
"""

from __future__ import annotations

import json
import math
import os
import shutil

import jax
import numpy as np

from strongaudio_jax.models.alm import AudioLM, AudioLMConfig
from strongaudio_jax.models.lm import QwenConfig, QwenLM

CONFIG_FILE = "lm_config.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
OPTIONAL_FILES = ("generation_config.json", "preprocessor_config.json")
DTYPES = ("float32", "bfloat16")

# config.json model_type -> (config class with from_hf / from_dict, Flax model class)
ARCHITECTURES = {"qwen2": (QwenConfig, QwenLM), "qwen3": (QwenConfig, QwenLM),
                 "qwen2_audio": (AudioLMConfig, AudioLM)}


class ImportHFError(ValueError):
    """A checkpoint directory this importer cannot convert (named file / tensor in the text)."""


def read_config(src: str):
    """The model config (QwenConfig or AudioLMConfig) of a checkpoint directory's config.json."""
    path = os.path.join(src, "config.json")
    if not os.path.isfile(path):
        raise ImportHFError(f"{path} does not exist; --from must be a Hugging Face model "
                            f"directory (config.json, *.safetensors, tokenizer.json)")
    with open(path) as f:
        hf = json.load(f)
    kind = hf.get("model_type")
    if kind not in ARCHITECTURES:
        raise ImportHFError(f"{path}: model_type {kind!r} (architectures "
                            f"{hf.get('architectures')}) is not supported; this imports "
                            f"{' / '.join(ARCHITECTURES)}")
    try:
        return ARCHITECTURES[kind][0].from_hf(hf, path)
    except ValueError as e:
        raise ImportHFError(str(e)) from None


def make_model(cfg, dtype=None):
    """The Flax model of a config (computation dtype float32 unless given)."""
    model_cls = ARCHITECTURES[cfg.model_type][1]
    return model_cls(cfg) if dtype is None else model_cls(cfg, dtype=dtype)


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


def expected_shapes(cfg) -> dict[tuple[str, ...], tuple[int, ...]]:
    """{Flax parameter path: shape} of the model."""
    model = make_model(cfg)
    abstract = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), *model.dummy_inputs()))
    flat = jax.tree_util.tree_flatten_with_path(abstract["params"])[0]
    out = {}
    for path, leaf in flat:
        keys = tuple(p.key for p in path if hasattr(p, "key"))
        out[keys] = tuple((leaf.value if hasattr(leaf, "value") else leaf).shape)
    return out


def _dotted(path: tuple[str, ...]) -> str:
    parts = [p.replace("layers_", "layers.") if p.startswith("layers_") else p for p in path]
    parts[-1] = {"kernel": "weight", "embedding": "weight", "scale": "weight",
                 "embed_positions": "embed_positions.weight"}.get(parts[-1], parts[-1])
    return ".".join(parts)


def hf_names(path: tuple[str, ...]) -> tuple[str, ...]:
    """The checkpoint names a Flax parameter may have, the usual one first:
    ('layers_3', 'self_attn', 'q_proj', 'kernel') -> 'model.layers.3.self_attn.q_proj.weight';
    in an AudioLM, ('language_model', 'layers_0', ...) -> 'language_model.model.layers.0...'
    (the Hub's Qwen2-Audio layout) or 'model.language_model.layers.0...' (transformers 5's
    in-memory layout), ('audio_tower', ...) -> 'audio_tower...' or 'model.audio_tower...'."""
    if path[0] == "language_model":
        lm = hf_name(path[1:])
        new = "lm_head.weight" if path[1] == "lm_head" else "model.language_model." + lm[6:]
        return ("language_model." + lm, new)
    if path[0] in ("audio_tower", "multi_modal_projector"):
        return (_dotted(path), "model." + _dotted(path))
    return (hf_name(path),)


def hf_name(path: tuple[str, ...]) -> str:
    """The name of a decoder-only LM's parameter in its checkpoint."""
    name = _dotted(path)
    return name if path[0] == "lm_head" else "model." + name


def _is_conv(path) -> bool:
    return path[-1] == "kernel" and path[-2] in ("conv1", "conv2")


def hf_shape(path: tuple[str, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """The torch shape of a Flax parameter: Dense kernels are [out, in], Conv1d kernels
    [out, in, width] (Flax: [width, in, out]), biases flat."""
    if _is_conv(path):
        return tuple(reversed(shape))
    if path[-1] == "kernel":
        n_in = 2 if path[-2] in ("o_proj", "out_proj") else 1
        return (math.prod(shape[n_in:]), math.prod(shape[:n_in]))
    if path[-1] == "bias":
        return (math.prod(shape),)
    return shape


def to_flax(path: tuple[str, ...], w: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A torch-layout tensor as the Flax parameter at `path`."""
    if _is_conv(path):
        return w.transpose(2, 1, 0)
    return w.T.reshape(shape) if path[-1] == "kernel" else w.reshape(shape)


def param_group(path: tuple[str, ...]) -> tuple[str, ...]:
    """The group a Flax parameter is written (and read) with: a whole transformer layer
    (('layers_3',), ('audio_tower', 'layers_0')), else the module holding the parameter
    (('embed_tokens',), ('audio_tower', 'conv1')). A group is at most one layer, or one
    embedding table: that bounds the host memory of an import."""
    for i, key in enumerate(path[:-1]):
        if key.startswith("layers_"):
            return path[:i + 1]
    return path[:-1]


def param_groups(cfg) -> list[tuple[str, ...]]:
    """The parameter groups of the model, in tree order."""
    return list(dict.fromkeys(param_group(path) for path in expected_shapes(cfg)))


def _group_dir(params_dir: str, group: tuple[str, ...]) -> str:
    return os.path.join(params_dir, ".".join(group) or "root")


def _put(tree: dict, prefix: tuple[str, ...], subtree: dict) -> None:
    for key in prefix:
        tree = tree.setdefault(key, {})
    tree.update(subtree)


def _plan(src: str, cfg) -> dict[tuple[str, ...], tuple[str, str, tuple[int, ...]]]:
    """{Flax parameter path: (safetensors file, tensor name, Flax shape)}: every name and shape
    checked against the config from the safetensors headers (no tensor is read), and no
    checkpoint tensor left without a place."""
    from safetensors import safe_open
    files = weight_files(src)
    plan = {}
    for path, shape in expected_shapes(cfg).items():
        names = hf_names(path)
        name = next((n for n in names if n in files), None)
        if name is None:
            raise ImportHFError(f"{src}: tensor {names[0]!r} (for {'/'.join(path)}) is missing "
                                f"from the safetensors files")
        plan[path] = (files[name], name, shape)
    for file in sorted({file for file, _, _ in plan.values()}):
        with safe_open(file, framework="numpy") as f:
            for path, (_, name, shape) in plan.items():
                if plan[path][0] != file:
                    continue
                found, torch_shape = tuple(f.get_slice(name).get_shape()), hf_shape(path, shape)
                if found != torch_shape:
                    raise ImportHFError(f"{file}: tensor {name!r} has shape {list(found)}, the "
                                        f"config.json model needs {list(torch_shape)}")
    used = {name for _, name, _ in plan.values()}
    text = getattr(cfg, "text", cfg)
    tied = {"lm_head.weight", "language_model.lm_head.weight"}
    ignorable = lambda n: n.endswith("rotary_emb.inv_freq") or (
        n in tied and text.tie_word_embeddings)
    extra = sorted(n for n in files if n not in used and not ignorable(n))
    if extra:
        raise ImportHFError(f"{files[extra[0]]}: tensor {extra[0]!r} (and {len(extra) - 1} more) "
                            f"has no place in a {cfg.model_type} model of this config.json")
    return plan


def _check_dtype(dtype: str):
    if dtype not in DTYPES:
        raise ImportHFError(f"dtype {dtype!r}: choose one of {DTYPES}")
    return np.float32 if dtype == "float32" else jax.numpy.bfloat16


def _read(handles: dict, file: str, name: str) -> np.ndarray:
    """One tensor as float32 numpy. numpy reads it with one copy; bfloat16 (which numpy lacks)
    goes through a jax array."""
    from safetensors import safe_open
    if file not in handles:
        handles[file] = safe_open(file, framework="numpy")
    if handles[file].get_slice(name).get_dtype() != "BF16":
        return handles[file].get_tensor(name).astype(np.float32, copy=False)
    if (file, "flax") not in handles:
        handles[(file, "flax")] = safe_open(file, framework="flax")
    return np.asarray(handles[(file, "flax")].get_tensor(name), dtype=np.float32)


def convert_groups(src: str, cfg=None, dtype: str = "float32"):
    """Yields (group, subtree) of the Flax parameters group by group (see param_group), each
    subtree nested dicts of numpy arrays of `dtype` below the group's path. All names and
    shapes are checked before the first tensor is read; a group's tensors are read one at a
    time, and its files are closed (unmapped) before the next group."""
    cfg = cfg or read_config(src)
    store = _check_dtype(dtype)
    plan = _plan(src, cfg)
    groups: dict = {}
    for path in plan:
        groups.setdefault(param_group(path), []).append(path)
    for group, paths in groups.items():
        subtree: dict = {}
        handles: dict = {}
        for path in paths:
            file, name, shape = plan[path]
            w = _read(handles, file, name)
            _put(subtree, path[len(group):-1],
                 {path[-1]: np.ascontiguousarray(to_flax(path, w, shape).astype(store, copy=False))})
            del w
        handles.clear()
        yield group, subtree


def convert(src: str, cfg=None, dtype: str = "float32") -> dict:
    """The whole Flax parameter tree (nested dicts of numpy arrays of `dtype`) of a checkpoint
    directory, in host memory (import_hf writes group by group instead)."""
    params: dict = {}
    for group, subtree in convert_groups(src, cfg, dtype):
        _put(params, group, subtree)
    return params


def _check_preprocessor(src: str, cfg) -> None:
    """An audio model's preprocessor_config.json (when present) must describe the features the
    encoder takes: Whisper log-mel with num_mel_bins bins at 16 kHz."""
    path = os.path.join(src, "preprocessor_config.json")
    if not hasattr(cfg, "audio") or not os.path.isfile(path):
        return
    with open(path) as f:
        pre = json.load(f)
    bins, rate = pre.get("feature_size"), pre.get("sampling_rate")
    if bins is not None and int(bins) != cfg.audio.num_mel_bins:
        raise ImportHFError(f"{path}: feature_size {bins} differs from config.json's "
                            f"audio_config.num_mel_bins {cfg.audio.num_mel_bins}")
    if rate is not None and int(rate) != 16000:
        raise ImportHFError(f"{path}: sampling_rate {rate}; the Whisper frontends here are 16 kHz")


def import_hf(src: str, out: str, dtype: str = "float32"):
    """Converts the checkpoint directory `src` into `out` (new or empty), parameters stored as
    `dtype` (float32 or bfloat16); returns the config."""
    cfg = read_config(src)
    _check_preprocessor(src, cfg)
    for name in TOKENIZER_FILES:
        if not os.path.isfile(os.path.join(src, name)):
            raise ImportHFError(f"{os.path.join(src, name)} does not exist; the tokenizer is "
                                f"needed beside the weights")
    if os.path.exists(out) and os.listdir(out):
        raise ImportHFError(f"{out} is not empty; give a new directory as --out")
    import orbax.checkpoint as ocp
    params_dir = os.path.join(os.path.abspath(out), "params")
    ckptr = ocp.StandardCheckpointer()
    for group, subtree in convert_groups(src, cfg, dtype):  # checks everything first
        os.makedirs(params_dir, exist_ok=True)
        ckptr.save(_group_dir(params_dir, group), subtree)
        ckptr.wait_until_finished()
        del subtree
    with open(os.path.join(out, CONFIG_FILE), "w") as f:
        json.dump(cfg.to_dict(), f, indent=1)
    for name in TOKENIZER_FILES + OPTIONAL_FILES:
        if os.path.isfile(os.path.join(src, name)):
            shutil.copyfile(os.path.join(src, name), os.path.join(out, name))
    return cfg


def _like(tree, like):
    """The part of nested dicts `tree` that has the keys of `like` (a group's subtree)."""
    return {k: _like(tree[k], v) for k, v in like.items()} if isinstance(like, dict) else tree


def load_config(directory: str):
    """The model config (QwenConfig or AudioLMConfig) of an `import-hf` output directory."""
    path = os.path.join(directory, CONFIG_FILE)
    if not os.path.isfile(path):
        raise ImportHFError(f"{path} does not exist; is {directory} an import-hf output?")
    with open(path) as f:
        d = json.load(f)
    if d.get("model_type") not in ARCHITECTURES:
        raise ImportHFError(f"{path}: model_type {d.get('model_type')!r} is not one of "
                            f"{sorted(ARCHITECTURES)}")
    return ARCHITECTURES[d["model_type"]][0].from_dict(d)


def load(directory: str, dtype=None, mesh=None, rules=None):
    """(model, params) of an `import-hf` output directory: a QwenLM or an AudioLM (computing in
    `dtype`, float32 by default; parameters as stored). Without `mesh` the parameters are host
    numpy arrays; with one, each is read straight into its shards on the mesh (by the logical-axis
    rules, as generate.shard_params places them), never whole on one host device."""
    import orbax.checkpoint as ocp
    cfg = load_config(directory)
    model = make_model(cfg, dtype)
    params_dir = os.path.join(os.path.abspath(directory), "params")
    shardings = None
    if mesh is not None:
        from strongaudio_jax.infer.generate import param_shardings
        shardings = param_shardings(model, mesh, rules)
    params: dict = {}
    for group in param_groups(cfg):
        ckpt = _group_dir(params_dir, group)
        if not os.path.isdir(ckpt):
            raise ImportHFError(f"{ckpt} does not exist: {directory} is not a complete import-hf "
                                f"output of this version; import the model again")
        tree = ocp.StandardCheckpointer().metadata(ckpt).item_metadata.tree
        if shardings is None:
            as_numpy = ocp.RestoreArgs(restore_type=np.ndarray)
            restore_args = jax.tree.map(lambda _: as_numpy, tree)
        else:
            sub = shardings
            for key in group:
                sub = sub[key]
            restore_args = jax.tree.map(lambda s: ocp.ArrayRestoreArgs(sharding=s),
                                        _like(sub, tree))
        _put(params, group, ocp.PyTreeCheckpointer().restore(ckpt, args=ocp.args.PyTreeRestore(
            item=tree, restore_args=restore_args)))
    return model, params
