"""Encoder train-step throughput: samples/s and MFU of a ViT + MTC head + AdamW step.

The same step as ../shared/bench/model_peer_torch.py (the PyTorch peer): ViT over a log-mel
(no frontend), mean-pooled tokens -> 527-way linear head, BCE, AdamW; run both on the same
card in the same call (benchmarks/gpu_run.sh) and compare. MFU uses the peer's analytic count
(3 x forward FLOPs of matmuls + attention) over the matmul rate measured on this device at the
compute dtype (bf16 on GPU, as the peer; float32 on CPU).

    python benchmarks/train_step.py                      # GPU: ViT-B/16, 128 x 1024, batch 128
    python benchmarks/train_step.py --size ti --mels 64 --frames 256 --batch 16   # a CPU size

Prints one JSON line. Needs only jax, flax, optax and this package's models (no grain
or ml-collections), so it runs on a bare accelerator image.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from strongaudio_jax.models import vit  # noqa: E402


def matmul_tflops(dtype, n: int, reps: int) -> float:
    """Measured dense matmul rate of this device at `dtype` (n x n x n): the best of 3 runs of
    `reps` products, so a busy moment on a shared host does not lower the peak."""
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), dtype)
    f = jax.jit(lambda a, b: a @ b)
    for _ in range(3):
        f(a, b).block_until_ready()
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        jax.block_until_ready([f(a, b) for _ in range(reps)])
        best = max(best, reps * 2 * n ** 3 / (time.perf_counter() - t) / 1e12)
    return best


def train_flops_per_sample(depth, width, tokens, patch, classes) -> float:
    """The peer's count: 3 x (matmuls + attention scores/values + patch embed + head)."""
    fwd = depth * (24 * tokens * width ** 2 + 4 * tokens ** 2 * width) + 2 * tokens * patch * width \
        + 2 * width * classes
    return 3 * fwd


class Classifier(nn.Module):
    encoder: nn.Module
    classes: int

    @nn.compact
    def __call__(self, feats, frame_mask):
        enc = self.encoder(feats, frame_mask, train=True)
        return nn.Dense(self.classes, name="head")(enc.clip())


def main() -> None:
    gpu = jax.devices()[0].platform == "gpu"
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", default="b" if gpu else "ti", choices=sorted(vit.SIZES))
    p.add_argument("--mels", type=int, default=128 if gpu else 64)
    p.add_argument("--frames", type=int, default=1024 if gpu else 256)
    p.add_argument("--patch", default="16x16", help="time x frequency, e.g. 16x16 or 4x64")
    p.add_argument("--batch", type=int, default=128 if gpu else 16)
    p.add_argument("--classes", type=int, default=527)
    p.add_argument("--steps", type=int, default=30 if gpu else 5)
    p.add_argument("--dtype", default="bfloat16" if gpu else "float32")
    p.add_argument("--attention", default="cudnn" if gpu else "xla", choices=vit.ATTENTION)
    p.add_argument("--remat", default="none", choices=sorted(vit.REMAT))
    p.add_argument("--scan", action="store_true", help="scan over layers")
    p.add_argument("--frontend", default="", help="a frontend preset (e.g. kaldi_ast): the step "
                   "then reads waveforms and computes the log-mel inside the jitted step, as the "
                   "trainer does; the frontend alone is also timed (frontend_ms, frontend_share)")
    args = p.parse_args()

    pt, pf = (int(x) for x in args.patch.split("x"))
    encoder = vit.build(dict(size=args.size, patch_time=pt, patch_freq=pf, max_frames=args.frames,
                             num_mels=args.mels, dtype=args.dtype, attention=args.attention,
                             remat=args.remat, scan_layers=args.scan))
    model = Classifier(encoder, args.classes)
    feats = jax.random.normal(jax.random.key(0), (args.batch, args.frames, args.mels))
    frame_mask = jnp.ones((args.batch, args.frames), bool)
    features = None
    if args.frontend:  # waveforms in; the log-mel is part of the step (frontend/logmel.py)
        from strongaudio_jax.frontend import logmel
        mel_cfg = logmel.get_preset(args.frontend)
        if mel_cfg.n_mels != args.mels:
            p.error(f"--frontend {args.frontend} has {mel_cfg.n_mels} mels; pass --mels {mel_cfg.n_mels}")
        hop = mel_cfg.hop_length  # the fewest samples that give exactly --frames frames
        samples = next(t for t in range(max(1, (args.frames - 2) * hop), (args.frames + 4) * hop)
                       if logmel.num_frames(t, mel_cfg) == args.frames)
        wave = 0.1 * jax.random.normal(jax.random.key(3), (args.batch, samples))
        lengths = jnp.full((args.batch,), samples, jnp.int32)
        features = lambda w, n: logmel.log_mel(w, mel_cfg, n)
    labels = (jax.random.uniform(jax.random.key(1), (args.batch, args.classes)) > 0.95).astype(jnp.float32)
    params = nn.meta.unbox(jax.jit(model.init)(jax.random.key(2), feats, frame_mask))["params"]
    tx = optax.adamw(1e-4, weight_decay=0.01)  # torch.optim.AdamW's defaults, as the peer
    state = (params, tx.init(params))

    def step(state, feats, frame_mask, labels):
        params, opt_state = state
        if features is not None:  # (waveform, lengths) in place of (features, mask)
            feats, frame_mask = features(feats, frame_mask)
        loss_fn = lambda p: optax.sigmoid_binary_cross_entropy(
            model.apply({"params": p}, feats, frame_mask).astype(jnp.float32), labels).mean()
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    step = jax.jit(step, donate_argnums=0)
    frontend_ms = None
    if features is not None:
        front = jax.jit(features)
        jax.block_until_ready(front(wave, lengths))
        t = time.perf_counter()
        for _ in range(args.steps):
            out = front(wave, lengths)
        jax.block_until_ready(out)
        frontend_ms = 1e3 * (time.perf_counter() - t) / args.steps
        feats, frame_mask = wave, lengths
    t0 = time.perf_counter()
    state, loss = step(state, feats, frame_mask, labels)
    loss.block_until_ready()
    compile_s = time.perf_counter() - t0
    for _ in range(2):
        state, loss = step(state, feats, frame_mask, labels)
    loss.block_until_ready()
    t = time.perf_counter()
    for _ in range(args.steps):
        state, loss = step(state, feats, frame_mask, labels)
    loss.block_until_ready()
    seconds = time.perf_counter() - t

    width, depth, _, _ = vit.SIZES[args.size]
    tokens = (args.frames // pt) * (args.mels // pf)
    sps = args.steps * args.batch / seconds
    peak = matmul_tflops(jnp.dtype(args.dtype), 8192 if gpu else 2048, 20 if gpu else 5)
    flops = train_flops_per_sample(depth, width, tokens, pt * pf, args.classes)
    print(json.dumps({
        "device": jax.devices()[0].device_kind, "jax": jax.__version__, "model": f"vit-{args.size}",
        "patch": args.patch, "tokens": tokens, "batch": args.batch, "dtype": args.dtype,
        "attention": args.attention, "remat": args.remat, "scan": args.scan,
        "frontend": args.frontend or None,
        "params_m": round(sum(x.size for x in jax.tree.leaves(params)) / 1e6, 2),
        "compile_s": round(compile_s, 1), "step_ms": round(1e3 * seconds / args.steps, 2),
        "samples_s": round(sps, 1), "matmul_tflops": round(peak, 2),
        "mfu": round(sps * flops / 1e12 / peak, 4), "loss": float(loss),
        **({"frontend_ms": round(frontend_ms, 3),
            "frontend_share": round(frontend_ms / (1e3 * seconds / args.steps), 4)}
           if frontend_ms is not None else {})}))


if __name__ == "__main__":
    main()
