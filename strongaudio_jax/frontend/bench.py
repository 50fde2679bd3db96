"""Time every preset under jit on a batch of random audio (after compile); prints one JSON line per preset.

  python -m strongaudio_jax.frontend.bench [--batch 8] [--seconds 10] [--repeat 20]
"""
import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from strongaudio_jax.frontend import PRESETS, log_mel


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--presets", default=",".join(PRESETS))
    args = ap.parse_args()
    for name in args.presets.split(","):
        cfg = PRESETS[name]
        T = int(args.seconds * cfg.sample_rate)
        x = jnp.asarray(np.random.default_rng(0).standard_normal((args.batch, T), np.float32) * 0.1)
        lengths = jnp.full((args.batch,), T, jnp.int32).at[0].set(T // 2)
        fn = jax.jit(lambda w, n, cfg=cfg: log_mel(w, cfg, n))
        t0 = time.perf_counter()
        jax.block_until_ready(fn(x, lengths))
        compile_s = time.perf_counter() - t0
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(x, lengths))
            times.append(time.perf_counter() - t0)
        print(json.dumps(dict(preset=name, device=str(jax.devices()[0].platform), batch=args.batch,
                              seconds=args.seconds, compile_s=round(compile_s, 3),
                              median_ms=round(1e3 * float(np.median(times)), 2),
                              min_ms=round(1e3 * min(times), 2))))


if __name__ == "__main__":
    main()
