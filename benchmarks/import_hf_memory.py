"""Peak host memory of `strongaudio import-hf`: writes a random-weight Qwen2-shaped checkpoint
(safetensors, float32) and imports it in a fresh process, then prints one JSON line with the
checkpoint's size and the importing process's peak resident set size (ru_maxrss) and its
resident size just before the import (after importing jax, orbax and the package).

    python benchmarks/import_hf_memory.py /tmp/imp                   # ~540 MB checkpoint
    python benchmarks/import_hf_memory.py /tmp/imp --layers 4        # smaller

The checkpoint is written once into DIR/hf (kept for reruns), each import into a new
DIR/out-<pid>, removed afterwards. PYTHONPATH decides which copy of the package is measured.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

try:
    import strongaudio_jax  # noqa: F401  (the installed copy, or PYTHONPATH's)
except ImportError:  # run from a plain checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def hf_config(layers: int) -> dict:
    return {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "vocab_size": 32000,
            "hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": layers,
            "num_attention_heads": 16, "num_key_value_heads": 4, "rope_theta": 1e6,
            "rms_norm_eps": 1e-6, "tie_word_embeddings": True}


def write(directory: str, layers: int) -> None:
    """Tensor by tensor into one safetensors file per layer (the writer's memory is not
    what is measured, but is kept small too)."""
    import numpy as np
    from safetensors.numpy import save_file
    from strongaudio_jax.infer import import_hf
    from strongaudio_jax.models.lm import QwenConfig
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from lm_fixtures import write_tokenizer
    os.makedirs(directory, exist_ok=True)
    hf = hf_config(layers)
    cfg = QwenConfig.from_hf(hf)
    rng = np.random.default_rng(0)
    groups: dict = {}
    for path, shape in import_hf.expected_shapes(cfg).items():
        # one file per layer (param_group is missing from copies older than the streaming
        # import, which this script measures too)
        groups.setdefault(import_hf.param_group(path) if hasattr(import_hf, "param_group")
                          else path[:1], []).append((path, shape))
    weight_map = {}
    for i, (group, items) in enumerate(groups.items()):
        file = f"model-{i:05d}.safetensors"
        part = {import_hf.hf_name(p): rng.standard_normal(import_hf.hf_shape(p, s),
                                                          dtype=np.float32) for p, s in items}
        save_file(part, os.path.join(directory, file))
        weight_map.update({n: file for n in part})
    with open(os.path.join(directory, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(hf, f)
    write_tokenizer(directory)


def measure(src: str, out: str) -> dict:
    import jax  # noqa: F401
    import orbax.checkpoint  # noqa: F401
    from strongaudio_jax.infer import import_hf
    before = _rss_now()
    import_hf.import_hf(src, out)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"rss_before_import_mb": round(before / 2**20), "peak_rss_mb": round(peak / 2**20),
            "package": os.path.dirname(import_hf.__file__)}


def _rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--_measure", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    src = os.path.join(a.dir, "hf")
    if a._measure:
        out = os.path.join(a.dir, f"out-{os.getpid()}")
        try:
            print(json.dumps(measure(src, out)))
        finally:
            shutil.rmtree(out, ignore_errors=True)
        return
    if not os.path.isfile(os.path.join(src, "config.json")):
        subprocess.run([sys.executable, "-c", f"import sys; sys.argv = ['x']; "
                        f"sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                        f"import import_hf_memory as m; m.write({src!r}, {a.layers})"],
                       check=True)
    size = sum(os.path.getsize(os.path.join(src, f)) for f in os.listdir(src)
               if f.endswith(".safetensors"))
    run = subprocess.run([sys.executable, __file__, a.dir, "--_measure"], check=True,
                         capture_output=True, text=True)
    result = json.loads(run.stdout.strip().splitlines()[-1])
    print(json.dumps({"checkpoint_mb": round(size / 2**20), "layers": a.layers, **result}))


if __name__ == "__main__":
    main()
