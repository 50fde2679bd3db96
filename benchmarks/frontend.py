"""Frontend throughput: 10 s clips per second for each preset, our JAX frontend vs librosa and torchaudio.

    python benchmarks/frontend.py [--batch 8] [--seconds 10] [--repeats 10] [--presets mel_db,whisper80]

Prints one JSON object: per preset, clips/s (batch / median time of one batch after compile / warm-up,
best of `--rounds` interleaved rounds) for each implementation, with its relative error against ours on the same clips (a check that the
peer computes the same features, not a parity test). The peers are optional: without librosa or
torch/torchaudio installed they are skipped with a note. torch without torchaudio falls back to
torch.stft + a mel matmul ("torch" peer); Kaldi fbank then has no peer.

How each side runs (the way people use them): JAX jit on the padded batch with lengths (all cores);
torchaudio MelSpectrogram / torch.stft on the batch, kaldi.fbank clip by clip (torch's intra-op
threads); librosa clip by clip (numpy FFT, one core).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from strongaudio_jax.frontend import PRESETS, log_mel, mel_filterbank  # noqa: E402

DEFAULT_PRESETS = ["mel_db", "mel_power", "kaldi_ast", "kaldi_default", "kaldi_fbank80", "kaldi_fbank80_nosnip",
                   "whisper80", "whisper128", "panns_mel64"]


def make_clips(batch: int, seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """Deterministic audio-like clips: a few drifting tones, bursts of noise, silence gaps."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    out = np.empty((batch, n), np.float32)
    for b in range(batch):
        x = sum(rng.uniform(0.05, 0.3) * np.sin(2 * np.pi * rng.uniform(80, 4000) * t * (1 + 0.01 * t))
                for _ in range(4))
        env = (np.sin(2 * np.pi * rng.uniform(0.2, 2) * t) > -0.5).astype(np.float64)
        out[b] = (x * env + 0.02 * rng.standard_normal(n)).astype(np.float32)
    return out


def median_s(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# ----------------------------------------------------------------------------------------------------
# Peers: each returns (function clips [B, T] -> features [B, frames, mels] numpy, what it runs), or
# raises NotImplementedError with the reason.
# ----------------------------------------------------------------------------------------------------
def librosa_peer(name: str, cfg):
    import librosa

    if cfg.kind == "kaldi":
        raise NotImplementedError("librosa has no Kaldi fbank")
    sr, n_fft, hop = cfg.sample_rate, cfg.n_fft, cfg.hop_length

    if name.startswith("whisper"):  # transformers' numpy recipe with librosa's STFT and mel filters
        fb = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=cfg.n_mels, fmin=0.0, fmax=8000.0, htk=False,
                                 norm="slaney")

        def one(x):
            spec = np.abs(librosa.stft(x, n_fft=n_fft, hop_length=hop, window="hann", center=True,
                                       pad_mode="reflect")[:, :-1]) ** 2
            logs = np.log10(np.maximum(fb @ spec, 1e-10))
            return ((np.maximum(logs, logs.max() - 8.0) + 4.0) / 4.0).T
        impl = "librosa.stft + librosa mel filters (Whisper recipe), clip by clip"
    else:
        htk = cfg.mel_scale == "htk"

        def one(x):
            mel = librosa.feature.melspectrogram(
                y=x, sr=sr, n_fft=n_fft, hop_length=hop, win_length=cfg.win_length, window="hann",
                center=True, pad_mode=cfg.pad_mode, power=2.0, n_mels=cfg.n_mels, fmin=cfg.f_min,
                fmax=cfg.f_max, htk=htk, norm=cfg.mel_norm)
            if cfg.log == "db":
                mel = librosa.power_to_db(mel, ref=1.0, amin=cfg.amin, top_db=cfg.top_db)
            return mel.T
        impl = "librosa.feature.melspectrogram" + (" + power_to_db" if cfg.log == "db" else "") + ", clip by clip"

    return (lambda clips: np.stack([one(x) for x in clips])), impl


def torch_peer(name: str, cfg):
    """torchaudio where installed, else torch.stft + a mel matmul (same definitions)."""
    import torch
    try:
        import torchaudio
    except Exception:  # not installed, or installed without a loadable extension for this torch
        torchaudio = None

    if cfg.kind == "kaldi":
        if torchaudio is None:
            raise NotImplementedError("Kaldi fbank needs torchaudio (not installed)")
        kw = dict(num_mel_bins=cfg.n_mels, dither=0.0, sample_frequency=cfg.sample_rate,
                  snip_edges=cfg.snip_edges)
        if name == "kaldi_ast":
            kw.update(htk_compat=True, use_energy=False, window_type="hanning")
        fbank = torchaudio.compliance.kaldi.fbank

        def run(clips):
            out = []
            for x in torch.from_numpy(clips):
                if cfg.remove_wave_mean:
                    x = x - x.mean()
                out.append(fbank(x[None] * cfg.input_scale, **kw))
            return torch.stack(out).numpy()
        return run, "torchaudio.compliance.kaldi.fbank, clip by clip"

    window = torch.hann_window(cfg.win_length)
    fb = torch.from_numpy(mel_filterbank(cfg))  # [freqs, mels], same numbers as torchaudio's melscale_fbanks

    if name.startswith("whisper"):  # openai-whisper's log_mel_spectrogram
        def run(clips):
            x = torch.from_numpy(clips)
            stft = torch.stft(x, cfg.n_fft, cfg.hop_length, window=window, return_complex=True)
            mel = torch.matmul(stft[..., :-1].abs().transpose(1, 2) ** 2, fb)
            logs = torch.clamp(mel, min=1e-10).log10()
            logs = torch.maximum(logs, logs.amax(dim=(1, 2), keepdim=True) - 8.0)
            return ((logs + 4.0) / 4.0).numpy()
        return run, "torch.stft + mel matmul (openai-whisper's recipe)"

    if torchaudio is not None:
        mel_tf = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, win_length=cfg.win_length, hop_length=cfg.hop_length,
            f_min=cfg.f_min, f_max=cfg.f_max, n_mels=cfg.n_mels, power=2.0, center=True, pad_mode=cfg.pad_mode,
            norm=cfg.mel_norm, mel_scale=cfg.mel_scale)
        to_db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=cfg.top_db)

        def run(clips):
            mel = mel_tf(torch.from_numpy(clips))                            # [B, mels, frames]
            if cfg.log == "db":
                mel = to_db(mel[:, None])[:, 0]  # 4-d input: top_db clamp per clip, not per batch
            return mel.transpose(1, 2).numpy()
        return run, "torchaudio.transforms.MelSpectrogram" + (" + AmplitudeToDB" if cfg.log == "db" else "")

    def run(clips):  # torch only
        x = torch.from_numpy(clips)
        if cfg.pad_mode == "constant":
            x = torch.nn.functional.pad(x, (cfg.n_fft // 2, cfg.n_fft // 2))
        stft = torch.stft(x, cfg.n_fft, cfg.hop_length, cfg.win_length, window=window, return_complex=True,
                          center=cfg.pad_mode != "constant", pad_mode="reflect")
        mel = torch.matmul(stft.abs().transpose(1, 2) ** 2, fb)
        if cfg.log == "db":
            mel = 10.0 * torch.clamp(mel, min=cfg.amin).log10()
            if cfg.top_db is not None:
                mel = torch.maximum(mel, mel.amax(dim=(1, 2), keepdim=True) - cfg.top_db)
        return mel.numpy()
    return run, "torch.stft + mel matmul (torchaudio not installed)"


def versions() -> dict:
    out = {"python": platform.python_version(), "jax": jax.__version__, "numpy": np.__version__}
    for mod in ("jaxlib", "librosa", "scipy", "torch", "torchaudio"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception as e:  # missing or broken: say which
            out[mod] = None if isinstance(e, ImportError) else f"unusable: {type(e).__name__}"
    return out


def machine() -> dict:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    out = {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
           "jax_devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}"}
    try:
        import torch
        out["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=10, help="timed batches per round (median)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best is reported")
    ap.add_argument("--pause", type=float, default=0.5, help="seconds of sleep before each timing block")
    ap.add_argument("--presets", default=",".join(DEFAULT_PRESETS))
    args = ap.parse_args()

    result = {"benchmark": "frontend", "command": "python " + " ".join(sys.argv),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": machine(), "versions": versions(), "batch": args.batch, "seconds": args.seconds,
              "repeats": args.repeats, "rounds": args.rounds,
              "unit": "clips_per_s = batch / median seconds per batch, best round", "presets": {}}
    for name in args.presets.split(","):
        cfg = PRESETS[name]
        clips = make_clips(args.batch, args.seconds, cfg.sample_rate)
        x = jnp.asarray(clips)
        lengths = jnp.full((args.batch,), clips.shape[1], jnp.int32)
        fn = jax.jit(lambda w, n, cfg=cfg: log_mel(w, cfg, n))
        t0 = time.perf_counter()
        ours = np.asarray(jax.block_until_ready(fn(x, lengths))[0])
        row = {"jax": {"impl": "strongaudio_jax log_mel, jit, batch with lengths",
                       "compile_s": round(time.perf_counter() - t0, 2)}}
        runs = {"jax": lambda: jax.block_until_ready(fn(x, lengths))}
        for peer, make in (("librosa", librosa_peer), ("torch", torch_peer)):
            try:
                run, impl = make(name, cfg)
            except ImportError as e:
                row[peer] = {"skipped": f"not installed ({e.name})"}
                continue
            except NotImplementedError as e:
                row[peer] = {"skipped": str(e)}
                continue
            feats = run(clips)  # also the warm-up
            row[peer] = {"impl": impl, "rel_err_vs_jax": float(f"{rel_err(ours, feats):.2e}")
                         if feats.shape == ours.shape else f"shape {feats.shape} vs ours {ours.shape}"}
            runs[peer] = lambda run=run: run(clips)
        # Rounds interleave the implementations, so background load hits them alike; the best round
        # of each is reported (the machine is shared; its other jobs only ever slow a round down).
        medians = {k: [] for k in runs}
        for _ in range(args.rounds):
            for k, run in runs.items():
                time.sleep(args.pause)  # lets the previous library's spinning worker threads go idle
                medians[k].append(median_s(run, args.repeats))
        for k, ms in medians.items():
            row[k].update(clips_per_s=round(args.batch / min(ms), 1), median_ms=round(1e3 * min(ms), 2),
                          round_medians_ms=[round(1e3 * m, 1) for m in ms])
        result["presets"][name] = row
        print(f"{name}: " + ", ".join(f"{k} {v.get('clips_per_s', v.get('skipped'))}" for k, v in row.items()),
              file=sys.stderr, flush=True)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
