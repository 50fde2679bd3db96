"""Log-mel / Kaldi fbank / Whisper features in JAX, meant to run inside the jitted train step.

One function, `log_mel(waves, cfg, lengths)`, covers the frontends of the models we compare with
(Dasheng/CED, AST, BEATs, Whisper, PANNs, Kaldi ASR fbank). Each named preset in `PRESETS` is checked
against features from the original tools (torchaudio, kaldi-native-fbank, transformers, librosa) in
`tests/test_frontend.py`; the measured errors are in `docs/frontend.md`.

Design choices (why):
- Batches are padded. With `lengths`, every clip is computed as if it were alone at its own length:
  edge padding reflects at the clip's own end, and per-clip statistics (waveform mean, top_db max,
  feature mean) use only valid samples / frames. Frames past a clip's end are masked and filled with
  the value digital silence would get, so a model that forgets the mask sees "silence", not garbage.
- Everything is computed in float32, whatever the input dtype (bf16 audio is fine).
- Framing is reshape + slices (no big gather); the mel filterbank is a constant matrix built in
  float64 numpy; the mel matmul asks for full float32 precision so GPUs/TPUs do not drop to bf16/tf32.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

FLOAT32_EPS = float(np.finfo(np.float32).eps)  # Kaldi's log floor: log(eps) = -15.942


@dataclasses.dataclass(frozen=True)
class MelConfig:
    """Every option of a frontend. Frozen and hashable, so it can be a static jit argument.

    kind='stft': torchaudio / librosa / Whisper style (framing from `center` + `pad_mode`).
    kind='kaldi': Kaldi fbank as in torchaudio.compliance.kaldi.fbank (framing from `snip_edges`,
    per-frame DC removal, pre-emphasis, window, zero-pad to n_fft, mel banks on the Kaldi mel scale).
    """

    kind: str = "stft"                 # 'stft' | 'kaldi'
    sample_rate: int = 16000
    win_length: int = 400              # samples per frame (Kaldi: frame_length in samples)
    hop_length: int = 160
    n_fft: Optional[int] = None        # None: win_length, or next power of two if round_to_power_of_two
    round_to_power_of_two: bool = False
    n_mels: int = 64
    f_min: float = 0.0
    f_max: Optional[float] = None      # None or <= 0: Nyquist + f_max (Kaldi's high_freq convention)
    # 'hann' (periodic, torch/librosa) | 'hanning' (symmetric, Kaldi) | 'povey' | 'hamming' | 'rectangular'
    window: str = "hann"
    # stft framing
    center: bool = True
    pad_mode: str = "reflect"          # 'reflect' (torch/numpy) | 'constant' (zeros, librosa>=0.10 default)
    # kaldi framing and per-frame processing
    snip_edges: bool = True            # False: frames centred at hop/2 + i*hop, edges mirrored Kaldi-style
    remove_dc: bool = False            # subtract each frame's mean (kind='kaldi' only)
    preemphasis: float = 0.0           # x[j] -= c x[j-1] in each frame, x[-1] := x[0] (kind='kaldi' only)
    dither: float = 0.0                # must be 0: features are deterministic
    # waveform scaling before anything else
    input_scale: float = 1.0           # BEATs feeds int16-scale audio: 2**15
    remove_wave_mean: bool = False     # AST: w - w.mean() over the clip's valid samples
    # mel filterbank
    mel_scale: str = "htk"             # 'htk' | 'slaney' (kind='kaldi' always uses 1127 ln(1 + f/700))
    mel_norm: Optional[str] = None     # None | 'slaney' (area normalisation, librosa/Whisper)
    power: float = 2.0                 # 1: magnitude, 2: power
    # log compression
    log: Optional[str] = "db"          # None (linear mel) | 'db' (10 log10) | 'ln' | 'log10'
    amin: float = 1e-10                # floor before the log
    top_db: Optional[float] = None     # clamp each clip to its max - top_db (in the units of `log`)
    drop_last_frame: bool = False      # Whisper drops the last STFT frame
    subtract_mean: bool = False        # Kaldi: minus each bin's mean over the clip's valid frames
    # Final (x - norm_mean) / norm_std (Whisper: -4, 4). A float, or one value per mel bin (a tuple of
    # n_mels floats, e.g. from frontend.stats); lists and arrays are turned into tuples (hashable).
    norm_mean: float | tuple = 0.0
    norm_std: float | tuple = 1.0

    def __post_init__(self):
        if self.kind not in ("stft", "kaldi"):
            raise ValueError(f"kind must be 'stft' or 'kaldi', got {self.kind!r}")
        if self.dither != 0.0:
            raise ValueError("dither must be 0: the frontend in the train step must be deterministic")
        if self.kind == "stft" and (self.remove_dc or self.preemphasis or not self.snip_edges):
            raise ValueError("remove_dc, preemphasis and snip_edges=False are Kaldi options (kind='kaldi')")
        if self.window not in ("hann", "hanning", "povey", "hamming", "rectangular"):
            raise ValueError(f"unknown window {self.window!r}")
        if self.pad_mode not in ("reflect", "constant"):
            raise ValueError(f"unknown pad_mode {self.pad_mode!r}")
        if self.log not in (None, "db", "ln", "log10"):
            raise ValueError(f"unknown log {self.log!r}")
        for name in ("norm_mean", "norm_std"):
            v = getattr(self, name)
            if np.ndim(v) == 0:
                object.__setattr__(self, name, float(v))
            else:
                v = tuple(float(x) for x in np.asarray(v, np.float64).reshape(-1))
                if len(v) != self.n_mels:
                    raise ValueError(f"{name} has {len(v)} values; per-bin statistics need n_mels={self.n_mels}")
                object.__setattr__(self, name, v)
        if self.n_fft is None:
            n = self.win_length
            if self.round_to_power_of_two:
                n = 1 << (n - 1).bit_length()
            object.__setattr__(self, "n_fft", n)
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length {self.win_length} > n_fft {self.n_fft}")

    @property
    def n_freqs(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def frame_length(self) -> int:
        """Samples read per frame: the whole n_fft for stft (window centred in it), win_length for Kaldi."""
        return self.n_fft if self.kind == "stft" else self.win_length

    @property
    def left_pad(self) -> int:
        """Samples before t=0 that frame 0 starts at."""
        if self.kind == "stft":
            return self.n_fft // 2 if self.center else 0
        return 0 if self.snip_edges else self.win_length // 2 - self.hop_length // 2


# ----------------------------------------------------------------------------------------------------
# Presets
# ----------------------------------------------------------------------------------------------------
_MEL64 = dict(kind="stft", sample_rate=16000, n_fft=512, win_length=512, hop_length=160, n_mels=64,
              f_min=0.0, f_max=8000.0, window="hann", center=True, pad_mode="reflect",
              mel_scale="htk", mel_norm=None, power=2.0, amin=1e-10)
_KALDI = dict(kind="kaldi", sample_rate=16000, win_length=400, hop_length=160, round_to_power_of_two=True,
              f_min=20.0, f_max=0.0, snip_edges=True, remove_dc=True, preemphasis=0.97,
              mel_norm=None, power=2.0, log="ln", amin=FLOAT32_EPS)
_WHISPER = dict(kind="stft", sample_rate=16000, n_fft=400, win_length=400, hop_length=160, f_min=0.0,
                f_max=8000.0, window="hann", center=True, pad_mode="reflect", mel_scale="slaney",
                mel_norm="slaney", power=2.0, log="log10", amin=1e-10, top_db=8.0, drop_last_frame=True,
                norm_mean=-4.0, norm_std=4.0)

PRESETS = {
    # Dasheng / CED: torchaudio MelSpectrogram(16k, n_fft 512, hop 160, 64 mels) + AmplitudeToDB(top_db=120),
    # the clamp at max - 120 dB taken per clip.
    "mel_db": MelConfig(**_MEL64, log="db", top_db=120.0),
    # The same mel power spectrogram without the log (torchaudio MelSpectrogram output).
    "mel_power": MelConfig(**_MEL64, log=None),
    # AST: kaldi.fbank(w - w.mean(), htk_compat=True, use_energy=False, window_type='hanning',
    # num_mel_bins=128); htk_compat only moves the energy column, which use_energy=False drops.
    "kaldi_ast": MelConfig(**_KALDI, n_mels=128, window="hanning", remove_wave_mean=True),
    # BEATs: kaldi.fbank(w * 2**15, num_mel_bins=128), all Kaldi defaults (povey window).
    "kaldi_default": MelConfig(**_KALDI, n_mels=128, window="povey", input_scale=2.0 ** 15),
    # Kaldi / k2 / sherpa ASR fbank: 80 bins, float input in [-1, 1], defaults (kaldi-native-fbank).
    "kaldi_fbank80": MelConfig(**_KALDI, n_mels=80, window="povey"),
    "kaldi_fbank80_nosnip": MelConfig(**{**_KALDI, "snip_edges": False}, n_mels=80, window="povey"),
    # Whisper (transformers WhisperFeatureExtractor), without the 30 s padding: frames = T // 160.
    "whisper80": MelConfig(**_WHISPER, n_mels=80),
    "whisper128": MelConfig(**_WHISPER, n_mels=128),
    # PANNs on 32 kHz audio: librosa melspectrogram (constant pad, Slaney) + power_to_db(amin=1e-10).
    "panns_mel64": MelConfig(kind="stft", sample_rate=32000, n_fft=1024, win_length=1024, hop_length=320,
                             n_mels=64, f_min=50.0, f_max=14000.0, window="hann", center=True,
                             pad_mode="constant", mel_scale="slaney", mel_norm="slaney", power=2.0,
                             log="db", amin=1e-10),
}


# The family names used in docs and issues, for the preset that reproduces each.
ALIASES = {"whisper": "whisper80", "slaney": "panns_mel64"}


def get_preset(name: str) -> MelConfig:
    try:
        return PRESETS[ALIASES.get(name, name)]
    except KeyError:
        raise KeyError(f"unknown frontend preset {name!r}; known: {sorted(PRESETS)} "
                       f"(aliases: {ALIASES})") from None


# ----------------------------------------------------------------------------------------------------
# Frame counts (shared by the data pipeline and the models)
# ----------------------------------------------------------------------------------------------------
def num_frames(num_samples, cfg: MelConfig):
    """Frames for `num_samples` samples. Plain integer arithmetic: works on Python ints and jnp int arrays.

    stft + center: 1 + T // hop (torchaudio, librosa); Whisper drops one more.
    stft, no center: 1 + (T - n_fft) // hop.  Kaldi snip_edges: 1 + (T - win) // hop.
    Kaldi without snip_edges: (T + hop // 2) // hop, i.e. round(T / hop). Never negative; 0 for T = 0.
    """
    hop = cfg.hop_length
    if cfg.kind == "stft":
        n = 1 + num_samples // hop if cfg.center else 1 + (num_samples - cfg.n_fft) // hop
        n = n - int(cfg.drop_last_frame)
    elif cfg.snip_edges:
        n = 1 + (num_samples - cfg.win_length) // hop
    else:
        n = (num_samples + hop // 2) // hop
    # Clamp at 0 without max() so it also works on arrays; an empty clip has no frames (not 1 padded one).
    return n * (n > 0) * (num_samples > 0)


# ----------------------------------------------------------------------------------------------------
# Constant tables (numpy float64, cast to float32)
# ----------------------------------------------------------------------------------------------------
def _window(cfg: MelConfig) -> np.ndarray:
    """Window of win_length, centred in frame_length with zeros (torch.stft does this when win < n_fft)."""
    n, i = cfg.win_length, np.arange(cfg.win_length, dtype=np.float64)
    if cfg.window == "hann":          # periodic (torch.hann_window default, librosa, Whisper)
        w = 0.5 - 0.5 * np.cos(2 * np.pi * i / n)
    elif cfg.window in ("hanning", "povey"):  # symmetric (Kaldi); povey = hanning ** 0.85
        w = 0.5 - 0.5 * np.cos(2 * np.pi * i / (n - 1))
        if cfg.window == "povey":
            w = w ** 0.85
    elif cfg.window == "hamming":     # symmetric (Kaldi)
        w = 0.54 - 0.46 * np.cos(2 * np.pi * i / (n - 1))
    else:
        w = np.ones(n)
    left = (cfg.frame_length - n) // 2
    return np.pad(w, (left, cfg.frame_length - n - left))


def _hz_to_mel(f, scale):
    f = np.asarray(f, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + f / 700.0)
    # Slaney (librosa htk=False): linear below 1 kHz, logarithmic above.
    lin = f * 3.0 / 200.0
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) * 27.0 / np.log(6.4), lin)


def _mel_to_hz(m, scale):
    m = np.asarray(m, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    return np.where(m >= 15.0, 1000.0 * np.exp(np.log(6.4) / 27.0 * (m - 15.0)), m * 200.0 / 3.0)


@functools.lru_cache(maxsize=None)
def mel_filterbank(cfg: MelConfig) -> np.ndarray:
    """[n_freqs, n_mels] float32 matrix: power spectrum @ matrix = mel energies."""
    sr, n_mels = cfg.sample_rate, cfg.n_mels
    f_max = cfg.f_max if cfg.f_max is not None else 0.0
    if f_max <= 0.0:
        f_max += sr / 2.0
    if cfg.kind == "kaldi":
        # torchaudio.compliance.kaldi.get_mel_banks: triangles in the mel domain, last (Nyquist) bin unused.
        mel = lambda f: 1127.0 * np.log(1.0 + np.asarray(f, np.float64) / 700.0)
        lo, hi = mel(cfg.f_min), mel(f_max)
        delta = (hi - lo) / (n_mels + 1)
        b = np.arange(n_mels, dtype=np.float64)[:, None]
        left, center, right = lo + b * delta, lo + (b + 1) * delta, lo + (b + 2) * delta
        m = mel(sr / cfg.n_fft * np.arange(cfg.n_fft // 2, dtype=np.float64))[None, :]
        fb = np.maximum(0.0, np.minimum((m - left) / (center - left), (right - m) / (right - center)))
        fb = np.pad(fb, ((0, 0), (0, 1)))
    else:
        # torchaudio melscale_fbanks / librosa.filters.mel: triangles in Hz between mel-spaced points.
        freqs = np.linspace(0.0, sr // 2, cfg.n_freqs)
        pts = _mel_to_hz(np.linspace(_hz_to_mel(cfg.f_min, cfg.mel_scale), _hz_to_mel(f_max, cfg.mel_scale),
                                     n_mels + 2), cfg.mel_scale)
        diff = np.diff(pts)
        slopes = pts[None, :] - freqs[:, None]                     # [n_freqs, n_mels + 2]
        down, up = -slopes[:, :-2] / diff[:-1], slopes[:, 2:] / diff[1:]
        fb = np.maximum(0.0, np.minimum(down, up)).T                # [n_mels, n_freqs]
        if cfg.mel_norm == "slaney":
            fb *= (2.0 / (pts[2:] - pts[:-2]))[:, None]
        elif cfg.mel_norm is not None:
            raise ValueError(f"unknown mel_norm {cfg.mel_norm!r}")
    return np.ascontiguousarray(fb.T, dtype=np.float32)


# ----------------------------------------------------------------------------------------------------
# The frontend
# ----------------------------------------------------------------------------------------------------
def _pad_edges(x, lengths, cfg: MelConfig, n_frames: int):
    """[B, T] -> [B, (n_frames + k - 1) * hop]: the samples the frames read, edges padded per clip.

    The padding mirrors at 0 and at each clip's own end L (not at T), so a padded batch gives the same
    valid frames as each clip alone. k = hop-sized chunks per frame (see `_chunk_frames`).
    """
    B, T = x.shape
    hop, left = cfg.hop_length, cfg.left_pad
    total = (n_frames + -(-cfg.frame_length // hop) - 1) * hop
    if left > 0 or (cfg.kind == "kaldi" and not cfg.snip_edges):
        n = jnp.arange(total) - left                                    # position in the clip
        L = jnp.full((B, 1), T, jnp.int32) if lengths is None else lengths.astype(jnp.int32)[:, None]
        if cfg.kind == "kaldi":              # Kaldi mirror duplicates the edge sample: [.. 1 0 | 0 1 ..]
            idx = jnp.where(n < 0, -n - 1, n)
            idx = jnp.where(idx >= L, 2 * L - 1 - idx, idx)
        elif cfg.pad_mode == "reflect":      # numpy/torch reflect: [.. 2 1 | 0 1 2 ..]
            idx = jnp.where(n < 0, -n, n)
            idx = jnp.where(idx >= L, 2 * (L - 1) - idx, idx)
        else:                                # constant: zeros outside [0, L)
            idx = n + jnp.zeros_like(L)
        idx = jnp.clip(idx, 0, T - 1)        # past the mirror range: only masked frames read these
        x = jnp.take_along_axis(x, idx, axis=1)
        if cfg.kind == "stft" and cfg.pad_mode == "constant":
            x = jnp.where((n >= 0) & (n < L), x, 0.0)
    return x[:, :total] if x.shape[1] >= total else jnp.pad(x, ((0, 0), (0, total - x.shape[1])))


def _chunk_frames(p, n_frames: int, flen: int, hop: int):
    """Padded signal [B, (n_frames + k - 1) * hop] -> frames [B, n_frames, flen], k = ceil(flen / hop).

    Frame f = chunks f .. f+k-1 with the last one cut to length: concatenated slices, no gather
    (TPU-friendly). Cutting the last slice, not the concatenated result, saves a copy (3x on CPU).
    """
    k = -(-flen // hop)
    chunks = p.reshape(p.shape[0], n_frames + k - 1, hop)
    parts = [chunks[:, i:i + n_frames] for i in range(k - 1)]
    last = chunks[:, k - 1:k - 1 + n_frames, :flen - (k - 1) * hop]
    return jnp.concatenate(parts + [last], axis=-1)


def _kaldi_frames(p, n_frames: int, cfg: MelConfig):
    """Kaldi's per-frame DC removal and pre-emphasis, done on the signal instead of on each frame.

    Per frame, with m the frame mean and c the coefficient: y[j] = (x[j] - m) - c (x[j-1] - m)
    = d[j] - (1 - c) m with d = x - c x[-1] computed once on the whole signal; y[0] = (1 - c)(x[0] - m)
    because Kaldi repeats x[0]. m comes from hop-chunk sums. Same numbers as the per-frame recipe, but
    XLA on CPU ran the per-frame version (concat on [B, F, win] then FFT) 2x slower.
    """
    win, hop, c = cfg.win_length, cfg.hop_length, cfg.preemphasis
    d = p - c * jnp.concatenate([p[:, :1], p[:, :-1]], axis=1) if c else p
    fr = _chunk_frames(d, n_frames, win, hop)
    k = -(-win // hop)
    chunks = p.reshape(p.shape[0], n_frames + k - 1, hop)
    if c:
        fr = jnp.where(jnp.arange(win) == 0, (1.0 - c) * chunks[:, :n_frames, :1], fr)
    if cfg.remove_dc:
        sums, part = jnp.sum(chunks, axis=-1), jnp.sum(chunks[..., :win - (k - 1) * hop], axis=-1)
        frame_sum = sum(sums[:, i:i + n_frames] for i in range(k - 1)) + part[:, k - 1:k - 1 + n_frames]
        fr = fr - ((1.0 - c) / win) * frame_sum[..., None]
    return fr


def log_mel(waves, cfg: MelConfig | str, lengths=None, sample_rate: Optional[int] = None):
    """Log-mel features of a padded batch.

    Args:
      waves: [B, T] audio at cfg.sample_rate, any float dtype (computed in float32). T must be > 0.
      cfg: a MelConfig or a preset name (must be static under jit).
      lengths: optional [B] int, valid samples per clip. Each clip's valid frames then equal the clip
        computed alone at its own length. A row of length 0 gets the floor value and an all-False mask.
      sample_rate: optional rate of `waves` in Hz; when given it must equal cfg.sample_rate (the
        frontend never resamples: a mismatch would silently shift every mel bin).
    Returns:
      feats [B, frames, n_mels] float32 with frames = num_frames(T, cfg), and frame_mask [B, frames]
      bool (True = valid). Masked frames hold the value digital silence would get (the feature floor).
    """
    if isinstance(cfg, str):
        cfg = get_preset(cfg)
    if sample_rate is not None and int(sample_rate) != cfg.sample_rate:
        raise ValueError(f"audio is at {sample_rate} Hz but this frontend expects {cfg.sample_rate} Hz; "
                         f"resample the audio to {cfg.sample_rate} Hz (or choose a preset made for "
                         f"{sample_rate} Hz, or set MelConfig.sample_rate)")
    x = jnp.asarray(waves).astype(jnp.float32)
    if x.ndim != 2:
        raise ValueError(f"waves must be [B, T], got shape {x.shape}")
    B, T = x.shape
    if T == 0:
        raise ValueError(f"waves is empty (shape {x.shape}): there are no samples to compute features "
                         f"from; drop empty clips before the frontend or pad them with lengths=0")
    F = num_frames(T, cfg)
    if lengths is None:
        frame_mask = jnp.ones((B, F), bool)
        sample_mask = None
    else:
        lengths = jnp.asarray(lengths)
        frame_mask = jnp.arange(F)[None, :] < num_frames(lengths, cfg)[:, None]
        sample_mask = jnp.arange(T)[None, :] < lengths[:, None]

    if cfg.input_scale != 1.0:
        x = x * cfg.input_scale
    if cfg.remove_wave_mean:
        if sample_mask is None:
            x = x - jnp.mean(x, axis=1, keepdims=True)
        else:
            total = jnp.sum(jnp.where(sample_mask, x, 0.0), axis=1, keepdims=True)
            x = x - total / jnp.maximum(lengths[:, None], 1)

    # Frames (Whisper's dropped last frame is never computed), per-frame Kaldi steps, window, |FFT|^power.
    p = _pad_edges(x, lengths, cfg, F)
    if cfg.kind == "kaldi":
        fr = _kaldi_frames(p, F, cfg)
    else:
        fr = _chunk_frames(p, F, cfg.frame_length, cfg.hop_length)
    fr = fr * jnp.asarray(_window(cfg))
    spec = jnp.abs(jnp.fft.rfft(fr, n=cfg.n_fft, axis=-1))
    spec = spec * spec if cfg.power == 2.0 else spec ** cfg.power
    mel = jnp.matmul(spec, jnp.asarray(mel_filterbank(cfg)), precision=jax.lax.Precision.HIGHEST)

    # Log compression; `floor` is what digital silence gives, used for masked frames.
    if cfg.log is None:
        feats, floor = mel, jnp.zeros((B, 1, 1), jnp.float32)
    else:
        log = {"db": lambda v: 10.0 * jnp.log10(v), "ln": jnp.log, "log10": jnp.log10}[cfg.log]
        feats = log(jnp.maximum(mel, cfg.amin))
        floor = jnp.full((B, 1, 1), log(jnp.float32(cfg.amin)))
    valid = frame_mask[:, :, None]
    if cfg.top_db is not None:
        peak = jnp.max(jnp.where(valid, feats, -jnp.inf), axis=(1, 2), keepdims=True,
                       initial=-jnp.inf)  # initial: no frames at all is fine
        floor = jnp.maximum(floor, peak - cfg.top_db)
        feats = jnp.maximum(feats, peak - cfg.top_db)
    if cfg.subtract_mean:
        count = jnp.maximum(jnp.sum(frame_mask, axis=1), 1)[:, None, None]
        feats = feats - jnp.sum(jnp.where(valid, feats, 0.0), axis=1, keepdims=True) / count
        floor = jnp.zeros_like(floor)
    feats = jnp.where(valid, feats, floor)
    if cfg.norm_mean != 0.0 or cfg.norm_std != 1.0:  # floats or per-bin tuples (broadcast over bins)
        feats = (feats - jnp.asarray(cfg.norm_mean, jnp.float32)) / jnp.asarray(cfg.norm_std, jnp.float32)
    return feats.astype(jnp.float32), frame_mask
