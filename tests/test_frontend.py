"""Frontend parity against features made by the original tools (shared/fixtures/frontend_refs.npz).

Run with `-s` to see the per-clip relative errors (docs/frontend.md quotes the worst per preset).
"""
import dataclasses
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from strongaudio_jax.frontend import PRESETS, get_preset, log_mel, num_frames

SHARED = Path(os.environ.get("STRONGAUDIO_SHARED", Path(__file__).resolve().parents[2] / "shared"))
FIXTURES = SHARED / "fixtures"
if not (FIXTURES / "frontend_refs.npz").exists():
    pytest.skip(f"frontend reference fixtures not found under {FIXTURES} (set STRONGAUDIO_SHARED)",
                allow_module_level=True)
sf = pytest.importorskip("soundfile")

REFS = np.load(FIXTURES / "frontend_refs.npz")
CLIPS = sorted({k.split("/", 1)[1] for k in REFS.files})

# preset -> (reference family, bound on ||ours - ref|| / ||ref|| per clip). The tone+silence clip limits
# mel_db and kaldi_default: the references' own float32 noise far below the peak (see docs/frontend.md).
PARITY = {
    "mel_db": ("ta_mel64_db", 2e-4),
    "mel_power": ("ta_mel64_power", 1e-4),
    "kaldi_ast": ("kaldi_ast", 1e-4),
    "kaldi_default": ("kaldi_beats", 3e-4),
    "kaldi_fbank80": ("knf80_snip", 1e-4),
    "kaldi_fbank80_nosnip": ("knf80_nosnip", 1e-4),
    "whisper80": ("whisper80", 1e-4),
    "whisper128": ("whisper128", 1e-4),
    "panns_mel64": ("panns_mel64_db", 1e-4),
    "panns_mel64_power": ("panns_mel64_power", 1e-4),
}


def _cfg(preset):
    if preset == "panns_mel64_power":
        return dataclasses.replace(get_preset("panns_mel64"), log=None)
    return get_preset(preset)


def _wave(clip, preset=""):
    if preset.startswith("panns"):  # PANNs refs are computed on librosa's 32 kHz resampling, stored alongside
        return REFS[f"panns_resampled32k/{clip}"]
    w, sr = sf.read(FIXTURES / "audio" / f"{clip}.wav", dtype="float32")
    assert sr == 16000
    return w


def _ref(family, clip, n_mels):
    r = REFS[f"{family}/{clip}"]
    return r.T if r.shape[0] == n_mels and r.shape[-1] != n_mels else r  # -> (frames, n_mels)


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("preset", list(PARITY))
def test_parity(preset):
    """All clips in one padded batch with lengths (the train step's path, one compile per preset): each
    clip's valid frames must match its reference. Padding holds a non-zero value that must not leak."""
    family, bound = PARITY[preset]
    cfg = _cfg(preset)
    waves = [_wave(clip, preset) for clip in CLIPS]
    batch = np.full((len(waves), max(map(len, waves))), 0.1, np.float32)
    for i, w in enumerate(waves):
        batch[i, :len(w)] = w
    lengths = np.array([len(w) for w in waves], np.int32)
    feats, mask = jax.jit(lambda w, n: log_mel(w, cfg, n))(jnp.asarray(batch), jnp.asarray(lengths))
    feats, mask = np.asarray(feats), np.asarray(mask)
    errs = {}
    for i, clip in enumerate(CLIPS):
        ref = _ref(family, clip, cfg.n_mels)
        n = num_frames(len(waves[i]), cfg)
        assert n == ref.shape[0] and mask[i].sum() == n and mask[i, :n].all(), (clip, n, ref.shape)
        errs[clip] = _rel(feats[i, :n], ref)
    worst = max(errs, key=errs.get)
    print(f"\n[parity] {preset:22s} vs {family:18s} worst {errs[worst]:.2e} ({worst}); "
          + " ".join(f"{c}={e:.1e}" for c, e in errs.items()))
    assert errs[worst] <= bound, errs


def test_parity_clip_alone():
    """The same parity without lengths (each clip alone, its own shape), on one clip per framing kind."""
    for preset in ("mel_db", "kaldi_default", "kaldi_fbank80_nosnip", "whisper80", "panns_mel64"):
        family, bound = PARITY[preset]
        cfg = _cfg(preset)
        feats, mask = jax.jit(lambda w: log_mel(w, cfg))(jnp.asarray(_wave("speech_en", preset))[None])
        ref = _ref(family, "speech_en", cfg.n_mels)
        assert feats.shape[1:] == ref.shape and bool(mask.all())
        assert _rel(np.asarray(feats[0]), ref) <= bound


@pytest.mark.parametrize("n_mels", [80, 128])
def test_whisper_pad30s(n_mels):
    """Zero-padding the audio to 30 s (Whisper's default) and computing without lengths matches the refs."""
    cfg = get_preset(f"whisper{n_mels}")
    for clip in ("edge_tone_silence", "music_drums_bass", "speech_en"):
        w = np.zeros(480000, np.float32)
        x = _wave(clip)
        w[: len(x)] = x
        feats, _ = log_mel(w[None], cfg)
        ref = _ref(f"whisper{n_mels}_pad30s", clip, n_mels)
        assert feats.shape[1] == ref.shape[0] == 3000
        assert _rel(np.asarray(feats[0]), ref) <= 1e-4


@pytest.mark.parametrize("family", ["kaldi_ast", "kaldi_beats", "knf80_snip", "knf80_nosnip", "ta_mel64_db",
                                    "whisper80", "panns_mel64_db"])
def test_num_frames_matches_references(family):
    preset = {v[0]: k for k, v in PARITY.items()}[family]
    cfg = _cfg(preset)
    for clip in CLIPS:
        T = len(_wave(clip, preset))
        n_ref = _ref(family, clip, cfg.n_mels).shape[0]
        assert num_frames(T, cfg) == n_ref
        assert int(num_frames(jnp.asarray(T, jnp.int32), cfg)) == n_ref  # same formula on arrays
    lengths = jnp.array([0, 1, 399, 400, 4800, 16000], jnp.int32)
    np.testing.assert_array_equal(np.asarray(num_frames(lengths, cfg)),
                                  [num_frames(int(t), cfg) for t in lengths])
    assert num_frames(0, cfg) >= 0


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_variable_length_batch(preset):
    """A padded batch gives, on each clip's valid frames, the features of that clip computed alone."""
    cfg = get_preset(preset)
    sr = cfg.sample_rate
    a = _wave("speech_en", preset)[: int(2.3 * sr)]
    b = _wave("music_drums_bass", preset)[: int(1.37 * sr) + 7]
    T = len(a) + 1234
    batch = np.full((2, T), 0.3, np.float32)  # non-zero padding: it must not leak into valid frames
    batch[0, : len(a)], batch[1, : len(b)] = a, b
    lengths = jnp.array([len(a), len(b)], jnp.int32)
    fn = jax.jit(lambda w, n=None: log_mel(w, cfg, n))
    feats, mask = fn(jnp.asarray(batch), lengths)
    assert feats.shape == (2, num_frames(T, cfg), cfg.n_mels) and feats.dtype == jnp.float32
    for i, x in enumerate((a, b)):
        alone, _ = fn(jnp.asarray(x[None]))
        n = num_frames(len(x), cfg)
        assert int(mask[i].sum()) == n and bool(mask[i, :n].all())
        # Same samples in every valid frame; only float32 rounding may differ between two compiled shapes
        # (weak bins far below a frame's total energy carry ~1e-3 of noise in log units).
        assert _rel(np.asarray(feats[i, :n]), np.asarray(alone[0])) < 1e-5
        np.testing.assert_allclose(np.asarray(feats[i, :n]), np.asarray(alone[0]), rtol=1e-4, atol=2e-3)
        pad = np.asarray(feats[i, n:])
        assert np.all(pad == pad.flat[0]) if pad.size else True  # masked frames hold one constant (the floor)
        if pad.size:
            assert pad.flat[0] <= np.asarray(alone).min() + 1e-6


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_empty_and_tiny_clips(preset):
    """Clips with no (or almost no) valid samples: frames masked, values finite (no NaN from the stats)."""
    cfg = get_preset(preset)
    w = jnp.asarray(np.random.default_rng(0).standard_normal((3, 4000), np.float32))
    feats, mask = jax.jit(lambda w, n: log_mel(w, cfg, n))(w, jnp.array([0, 3, 4000]))
    assert bool(jnp.all(jnp.isfinite(feats)))
    assert not bool(mask[0].any())
    np.testing.assert_array_equal(np.asarray(mask.sum(1)), [num_frames(n, cfg) for n in (0, 3, 4000)])


@pytest.mark.parametrize("preset", ["mel_db", "kaldi_ast", "whisper80"])
def test_jit_bf16_input(preset):
    cfg = get_preset(preset)
    w = np.stack([_wave("speech_en")[:48000], _wave("music_piano")[:48000]])
    f32, _ = jax.jit(lambda x: log_mel(x, cfg))(jnp.asarray(w))
    bf16, m = jax.jit(lambda x: log_mel(x, cfg))(jnp.asarray(w, jnp.bfloat16))
    assert bf16.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(bf16)))
    err = _rel(np.asarray(bf16), np.asarray(f32))
    print(f"\n[bf16] {preset}: relative error of bf16 input vs float32 input {err:.2e}")
    # bf16 keeps 8 bits of mantissa: ~0.4% per sample; loud bins move little, near-floor bins more.
    assert _rel(np.asarray(bf16), np.asarray(f32)) < 0.05


def test_preset_by_name_and_errors():
    w = jnp.zeros((1, 16000))
    f1, _ = log_mel(w, "mel_db")
    f2, _ = log_mel(w, get_preset("mel_db"))
    np.testing.assert_array_equal(np.asarray(f1), np.asarray(f2))
    with pytest.raises(KeyError):
        get_preset("nope")
    with pytest.raises(ValueError):
        dataclasses.replace(get_preset("kaldi_default"), dither=1.0)


def test_wrong_sample_rate_is_a_clear_error():
    w = jnp.zeros((1, 32000))
    with pytest.raises(ValueError, match="audio is at 32000 Hz but this frontend expects 16000 Hz; resample"):
        log_mel(w, "mel_db", sample_rate=32000)
    with pytest.raises(ValueError, match="16000 Hz but this frontend expects 32000 Hz"):
        jax.jit(lambda x: log_mel(x, "panns_mel64", sample_rate=16000))(w)  # raised while tracing
    feats, _ = log_mel(w, "panns_mel64", sample_rate=32000)  # matching rate: fine
    assert feats.shape == (1, 101, 64)


@pytest.mark.parametrize("preset", ["mel_db", "kaldi_ast", "whisper80"])
def test_empty_waveform(preset):
    """T == 0 is an error at trace time; rows of length 0 (even all of them) give floor values, no mask."""
    with pytest.raises(ValueError, match="waves is empty"):
        jax.jit(lambda x: log_mel(x, preset))(jnp.zeros((2, 0)))
    feats, mask = jax.jit(lambda x, n: log_mel(x, preset, n))(jnp.ones((2, 4000)), jnp.zeros(2, jnp.int32))
    assert not bool(mask.any()) and bool(jnp.isfinite(feats).all())
    assert bool((feats == feats[0, 0, 0]).all())  # one constant: the floor


def test_per_bin_normalisation_config():
    cfg = dataclasses.replace(get_preset("mel_db"), norm_mean=np.arange(64.0), norm_std=[2.0] * 64)
    assert isinstance(cfg.norm_mean, tuple) and len(cfg.norm_std) == 64
    hash(cfg)
    w = jnp.asarray(np.random.default_rng(0).standard_normal((1, 8000), np.float32))
    raw, _ = log_mel(w, "mel_db")
    feats, _ = log_mel(w, cfg)
    np.testing.assert_allclose(np.asarray(feats), (np.asarray(raw) - np.arange(64.0)) / 2.0, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="n_mels=64"):
        dataclasses.replace(cfg, norm_std=(1.0, 2.0))


def test_family_aliases_name_presets():
    from strongaudio_jax.frontend import logmel
    assert logmel.get_preset("whisper") is logmel.PRESETS["whisper80"]
    assert logmel.get_preset("slaney") is logmel.PRESETS["panns_mel64"]
    with pytest.raises(KeyError, match="unknown frontend preset 'nope'"):
        logmel.get_preset("nope")
