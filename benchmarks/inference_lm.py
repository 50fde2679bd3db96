"""LM inference throughput: prefill and decode tokens/s of infer/generate.py against
transformers `generate`, same random-initialised Qwen2.5-shaped model, same machine, one process.

    python benchmarks/inference_lm.py                       # Qwen2.5-0.5B shape, B=64, bf16 on GPU
    python benchmarks/inference_lm.py --shape small --batch 4 --prompt 64 --new 16   # a CPU run

Prints one JSON object. For each side:
  prefill_tokens_s  B * prompt / (time of one forward over the prompts, logits of the last
                    position only, as generate's first step)
  decode_tokens_s   B * (new - 1) / (time of generate(new tokens) - time of generate(1 token)):
                    the steady decode steps alone (greedy, every row decodes `new` tokens: no end
                    token). ../shared/bench/inference_peer_torch.py divides B * new by
                    generate - a forward instead, which also counts generate's set-up and is
                    unstable for tiny models on a busy machine
and `decode_speedup` = ours / transformers. Compile and warm-up are excluded (one untimed call
of each); each time is the best of --repeats calls (other processes only add time; the peer
script takes the median of 3, the same on an idle machine). Both sides compute in bfloat16 on a
GPU and float32 on a CPU (--dtype overrides); torch uses SDPA attention and its default
threads. The weights are random (throughput does not depend on their values); both models
have the same config.

Imports only JAX, Flax, numpy and the package's models/lm, parallel and infer/generate.py (no
grain, ml_collections, clu, orbax), so it runs on the GPU image; transformers/torch are optional
(`--no-peer`, or skipped with a note when absent).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from strongaudio_jax.infer import generate as gen  # noqa: E402
from strongaudio_jax.models.lm import QwenConfig, QwenLM, init_cache  # noqa: E402

SHAPES = {  # Qwen2.5-0.5B dims; for CPUs a 40M one and the peer script's SMALL=1 dims
    "0.5b": dict(vocab_size=151936, hidden_size=896, intermediate_size=4864,
                 num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                 tie_word_embeddings=True, rope_theta=1000000.0),
    "mini": dict(vocab_size=32000, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                 num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                 rope_theta=1000000.0),
    "small": dict(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                  rope_theta=1000000.0),
}


def best_s(fn, repeats: int) -> float:
    """The shortest of `repeats` timed calls after one untimed call (compile / warm-up): other
    processes on the machine only ever add time."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def rates(args, t_prefill: float, t_one: float, t_generate: float) -> dict:
    decode = t_generate - t_one
    return {"prefill_s": t_prefill, "generate_1_s": t_one, "generate_s": t_generate,
            "prefill_tokens_s": args.batch * args.prompt / t_prefill,
            "decode_tokens_s": args.batch * (args.new - 1) / decode if decode > 0 else None}


def ours(hf: dict, args, dtype: str) -> dict:
    cfg = QwenConfig.from_hf(dict(hf, model_type="qwen2"))
    jdtype = jnp.bfloat16 if dtype == "bfloat16" else jnp.float32
    model = QwenLM(cfg, dtype=jdtype)
    params = jax.jit(lambda: model.init(jax.random.PRNGKey(0), *model.dummy_inputs()))()
    params = jax.tree.map(lambda x: x.astype(jdtype), jax.tree.map(
        lambda x: getattr(x, "value", x), params["params"],
        is_leaf=lambda x: hasattr(x, "value")))
    rng = np.random.default_rng(0)
    prompts = rng.integers(10, cfg.vocab_size - 10, (args.batch, args.prompt)).tolist()
    tokens, mask = gen.left_pad(prompts)
    key_mask = np.concatenate([mask, np.ones((args.batch, args.new), bool)], axis=1)
    prefill, _ = gen._compiled(model, None, 0.0, 1.0, None)
    tokens, mask, key_mask = jnp.asarray(tokens), jnp.asarray(mask), jnp.asarray(key_mask)
    rng_key = jax.random.PRNGKey(0)

    def run_prefill():  # the same jitted prefill generate() runs, on a fresh cache
        cache = init_cache(cfg, args.batch, args.prompt + args.new, jdtype)
        token, cache = prefill(params, tokens, mask, key_mask, cache, rng_key, None)
        jax.block_until_ready((token, cache))

    def run_generate(n):
        out = gen.generate(model, params, prompts, n)
        assert all(len(o) == n for o in out)

    t_prefill = best_s(run_prefill, args.repeats)
    t_one = best_s(lambda: run_generate(1), args.repeats)
    t_generate = best_s(lambda: run_generate(args.new), args.repeats)
    n_params = sum(x.size for x in jax.tree.leaves(params))
    return {"params_M": n_params / 1e6, **rates(args, t_prefill, t_one, t_generate)}


def peer(hf: dict, args, dtype: str) -> dict:
    try:
        import torch
        import transformers
    except ImportError as e:
        return {"skipped": f"transformers / torch not installed ({e})"}
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    tdtype = torch.bfloat16 if dtype == "bfloat16" else torch.float32
    cfg = transformers.Qwen2Config(**hf)
    torch.manual_seed(0)
    m = transformers.Qwen2ForCausalLM(cfg).to(dev, tdtype).eval()
    ids = torch.randint(10, cfg.vocab_size - 10, (args.batch, args.prompt), device=dev)
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)

    def run_prefill():  # as generate's first step: logits of the last position only
        m(input_ids=ids, attention_mask=torch.ones_like(ids), logits_to_keep=1)
        sync()

    def run_generate(n):
        m.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                   min_new_tokens=n, do_sample=False, pad_token_id=0)
        sync()

    with torch.inference_mode():
        t_prefill = best_s(run_prefill, args.repeats)
        t_one = best_s(lambda: run_generate(1), args.repeats)
        t_generate = best_s(lambda: run_generate(args.new), args.repeats)
    return {"device": torch.cuda.get_device_name() if dev == "cuda" else "cpu",
            "torch": torch.__version__, "transformers": transformers.__version__,
            "torch_threads": torch.get_num_threads(),
            "params_M": sum(p.numel() for p in m.parameters()) / 1e6,
            **rates(args, t_prefill, t_one, t_generate)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="0.5b")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--prompt", type=int, default=256, help="prompt tokens per row")
    p.add_argument("--new", type=int, default=64, help="new tokens per row")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto",
                   help="auto: bfloat16 on an accelerator, float32 on a CPU")
    p.add_argument("--no-peer", action="store_true", help="skip transformers generate")
    p.add_argument("--torch-threads", type=int, default=0,
                   help="torch intra-op threads (0: torch's default, one per core)")
    args = p.parse_args(argv)
    if args.new < 2:
        p.error("--new must be at least 2 (decode is timed as generate(new) - generate(1))")
    backend = jax.default_backend()
    dtype = args.dtype if args.dtype != "auto" else ("float32" if backend == "cpu" else "bfloat16")
    hf = SHAPES[args.shape]
    res = {"benchmark": "lm_inference", "date": datetime.datetime.now(datetime.timezone.utc)
           .strftime("%Y-%m-%dT%H:%M:%SZ"), "host": platform.node(), "cpus": os.cpu_count(),
           "jax": jax.__version__, "backend": backend, "device": str(jax.devices()[0]),
           "shape": args.shape, "model": hf, "dtype": dtype, "batch": args.batch,
           "prompt_tokens": args.prompt, "new_tokens": args.new, "repeats": args.repeats}
    res["ours"] = ours(hf, args, dtype)
    # ours alone first (stderr, flushed): a run killed during the peer still has its figures
    print(json.dumps({"partial": "ours", **res}), file=sys.stderr, flush=True)
    if not args.no_peer:
        res["transformers"] = peer(hf, args, dtype)
        for k in ("prefill", "decode"):
            a, b = res["ours"][f"{k}_tokens_s"], res["transformers"].get(f"{k}_tokens_s")
            res[f"{k}_speedup"] = a / b if a and b else None
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
