"""Inference throughput: the captioner job's batch call (KV-cache greedy decoding) and the MTC
tagger's, against Hugging Face `generate` on a Whisper encoder-decoder of the same shape.

Both models are random-initialised from configs (throughput does not depend on the weights'
values) and decode exactly `--new` tokens per clip (`decode.min_len` = `max_len` here, and
`min_new_tokens` = `max_new_tokens` there). Ours is timed through `Captioner.label_audio`, the
call the engine makes per batch: waveforms in (log-mel on the device), caption strings out.
The peer gets precomputed log-mel features and returns token ids. The Whisper peer has our
shape: width, heads, MLP width, encoder depth, decoder depth, 64 mel bins, and as many encoder
positions as our encoder has tokens for a clip (its conv front end halves 2x that many frames).
Compile time (first call) is reported apart from steady state (median of --reps calls).

    python benchmarks/inference_jobs.py                       # tiny shapes, seconds on a CPU
    python benchmarks/inference_jobs.py --preset s --batch 64 --new 64    # on an accelerator
Prints one JSON line.

`--decode N` measures the engine's input stage alone instead: N clips of --seconds, 44.1 kHz
mono FLAC files (noise) in a temporary folder, read as audio-folder input, decoded and
resampled to 16 kHz, in the main thread (workers 0) and by each thread count of --workers
(engine._loaded, the job's own code path; read-ahead 128 records); clips/s per count:

    python benchmarks/inference_jobs.py --decode 200 --seconds 10 --workers 2,4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PRESETS = {  # ViT size, decoder size
    "mu": ("mu", "mu"),
    "xs": ("xs", "xs"),
    "s": ("s", "s"),
    "b": ("b", "b"),
}


def _ours(args, res):
    import jax
    import flax.linen as nn
    import numpy as np

    from strongaudio_jax import config
    from strongaudio_jax.infer import captioner, decoding, model as model_lib, tagger
    from strongaudio_jax.models import vit
    from strongaudio_jax.models.text import decoder as decoder_lib
    from strongaudio_jax.train import step as step_lib

    enc_size, dec_size = PRESETS[args.preset]
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frames = int(args.seconds * 100) + 1
    max_frames = -(-frames // 4) * 4
    cfg = config.load(f"{repo}/configs/captioning.py:demo", [
        f"model.size={enc_size}", f"model.max_frames={max_frames}",
        f"data.clip_seconds={args.seconds}", f"objectives.captioning.decoder_size={dec_size}",
        f"text.max_len={args.new + 2}", f"model.dtype={args.dtype}"])
    with cfg.unlocked():
        cfg.objectives.mtc = dict(weight=1.0)
    tags = [f"tag{i}" for i in range(527)]
    program = step_lib.build(cfg, len(tags), tags)
    params = jax.device_get(nn.meta.unbox(jax.jit(program.init)(jax.random.key(0))).params)
    trained = model_lib.TrainedModel(path="random", kind="random", step=0, cfg=cfg,
                                     program=program, params=params, vocab=tags, text_vocab="")
    mesh = model_lib.local_mesh(dict(data=-1, fsdp=1, tensor=1), args.devices)
    devices = mesh.size
    n = int(args.seconds * 16000)
    rng = np.random.default_rng(0)
    waves = (0.1 * rng.standard_normal((args.batch, n))).astype(np.float32)
    lengths = np.full((args.batch,), n, np.int32)
    ids = [f"clip{i}" for i in range(args.batch)]
    s = decoding.Settings(max_len=args.new + 2, min_len=args.new + 2)
    cap = captioner.Captioner(trained, mesh, args.batch // devices, s)
    tok = vit.SIZES[enc_size]
    res.update(ours_devices=devices, ours_platform=jax.devices()[0].platform,
               ours_encoder_tokens=frames // 4, ours_encoder=enc_size, ours_decoder=dec_size,
               ours_vocab=cap.tokenizer.vocab_size,
               ours_params_M=sum(x.size for x in jax.tree.leaves(
                   {"e": params["encoder"], "d": params["heads"]["captioning"]})) / 1e6)
    t = time.perf_counter()
    out = cap.label_audio(waves, lengths, ids)
    res["ours_caption_compile_s"] = time.perf_counter() - t
    assert all(len(x.split()) > 0 for x in out)
    res["ours_caption_clips_s"] = args.batch / _median(lambda: cap.label_audio(waves, lengths, ids),
                                                       args.reps)
    mtc = tagger.MTCTagger(trained, mesh, args.batch // devices, top_k=10)
    t = time.perf_counter()
    mtc.label_audio(waves, lengths, ids)
    res["ours_tag_compile_s"] = time.perf_counter() - t
    res["ours_tag_clips_s"] = args.batch / _median(lambda: mtc.label_audio(waves, lengths, ids),
                                                   args.reps)
    return dict(width=tok[0], enc_depth=tok[1], heads=tok[2], mlp=tok[3],
                dec_depth=decoder_lib.SIZES[dec_size][1], tokens=frames // 4,
                vocab=cap.tokenizer.vocab_size)


def _median(fn, reps):
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def _peer(args, shape, res):
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    dt = torch.bfloat16 if dev == "cuda" and args.dtype == "bfloat16" else torch.float32
    cfg = WhisperConfig(d_model=shape["width"], encoder_layers=shape["enc_depth"],
                        decoder_layers=shape["dec_depth"], encoder_attention_heads=shape["heads"],
                        decoder_attention_heads=shape["heads"], encoder_ffn_dim=shape["mlp"],
                        decoder_ffn_dim=shape["mlp"], num_mel_bins=64,
                        max_source_positions=shape["tokens"],
                        max_target_positions=max(64, args.new + 8), vocab_size=shape["vocab"],
                        pad_token_id=0, bos_token_id=1, eos_token_id=2,
                        decoder_start_token_id=1)
    m = WhisperForConditionalGeneration(cfg).to(dev, dt).eval()
    feats = torch.randn(args.batch, 64, 2 * shape["tokens"], device=dev, dtype=dt)
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)

    def call():
        with torch.inference_mode():
            m.generate(input_features=feats, max_new_tokens=args.new, min_new_tokens=args.new,
                       do_sample=False)
        sync()
    t = time.perf_counter()
    call()
    res["peer_first_call_s"] = time.perf_counter() - t
    res["peer_generate_clips_s"] = args.batch / _median(call, args.reps)
    res["peer_params_M"] = sum(p.numel() for p in m.parameters()) / 1e6
    res["peer"] = f"transformers {__import__('transformers').__version__} generate, torch " \
                  f"{torch.__version__}, {dev}, {dt}"


def _decoding(args, res):
    import concurrent.futures
    import tempfile
    import types

    import numpy as np

    from strongaudio_jax.data import audio
    from strongaudio_jax.infer import engine, inputs

    rng = np.random.default_rng(0)
    rate = 44100
    labeler = types.SimpleNamespace(needs_audio=True, sample_rate=16000)
    with tempfile.TemporaryDirectory() as folder:
        n = int(args.seconds * rate)
        for i in range(args.decode):
            wave = 0.1 * rng.standard_normal((n, 2)).astype(np.float32)
            with open(os.path.join(folder, f"clip{i:05d}.flac"), "wb") as f:
                f.write(audio.encode(wave[:, 0], rate))
        res["input"] = f"{args.decode} x {args.seconds} s FLAC at {rate} Hz -> 16 kHz"
        for workers in [0] + [int(w) for w in args.workers.split(",") if w]:
            shard, = inputs.folder_shards(folder, clips_per_shard=args.decode)
            pool = concurrent.futures.ThreadPoolExecutor(workers) if workers else None
            t = time.perf_counter()
            got = sum(1 for c, w, e in engine._loaded(shard, range(shard.count), labeler, True,
                                                       pool, 128) if e is None)
            res[f"workers_{workers}_clips_s"] = got / (time.perf_counter() - t)
            if pool:
                pool.shutdown()
            print(json.dumps(res, default=str), file=sys.stderr, flush=True)
    res["cpus"] = os.cpu_count()
    res["load_avg_1min"] = os.getloadavg()[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="mu", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--new", type=int, default=16, help="tokens decoded per clip")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--devices", type=int, default=0, help="local devices (0: all)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--decode", type=int, default=0,
                    help="measure audio-folder decoding of this many clips instead")
    ap.add_argument("--workers", default="2,4", help="(--decode) thread counts to compare")
    args = ap.parse_args(argv)
    if args.decode:
        res = {"clip_seconds": args.seconds, "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                   time.gmtime())}
        _decoding(args, res)
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in res.items()}))
        return 0
    res = {"preset": args.preset, "batch": args.batch, "new_tokens": args.new,
           "clip_seconds": args.seconds, "date": time.strftime("%Y-%m-%d")}
    shape = _ours(args, res)
    res["shape"] = shape
    # ours alone first (stderr, flushed): a run killed during the peer still has its figures
    print(json.dumps({"partial": "ours", **res}, default=str), file=sys.stderr, flush=True)
    if not args.no_peer:
        _peer(args, shape, res)
        res["ours_over_peer"] = res["ours_caption_clips_s"] / res["peer_generate_clips_s"]
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in res.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
