"""Normalisation statistics: valid frames only, streaming == all at once, JSON round trip, mismatch errors."""
import dataclasses
import glob

import jax
import numpy as np
import pytest

from strongaudio_jax.frontend import (compute_stats, get_preset, load_stats, log_mel, num_frames, save_stats,
                                      with_stats)
from strongaudio_jax.train.frontend_stats import stats_from_files

PRESET = "kaldi_fbank80"


def _batches(batch_size, seed=0, n_clips=7, T=8000):
    """Clips of random lengths (some shorter than a frame), padded with a loud constant, last batch
    filled with invalid rows: neither the padding nor those rows may enter the statistics."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, T + 1, n_clips)
    lengths[:2] = (T, 300)
    clips = [rng.standard_normal(n).astype(np.float32) * rng.uniform(0.01, 1.0) for n in lengths]
    out = []
    for start in range(0, n_clips, batch_size):
        part = clips[start:start + batch_size]
        wave = np.full((batch_size, T), 3.0, np.float32)
        length = np.zeros(batch_size, np.int32)
        for i, c in enumerate(part):
            wave[i, :len(c)], length[i] = c, len(c)
        valid = np.arange(batch_size) < len(part)
        length[~valid] = T  # a full-length padding row: would dominate the stats if it leaked in
        out.append(dict(waveform=wave, length=length, valid=valid))
    return clips, out


def _reference(clips, cfg):
    """Every clip alone, float64 numpy over its frames."""
    fn = jax.jit(lambda w: log_mel(w, cfg)[0][0])
    frames = [np.asarray(fn(c[None]), np.float64) for c in clips if num_frames(len(c), cfg)]
    return np.concatenate(frames)


def test_stats_match_numpy_on_valid_frames_only():
    cfg = get_preset(PRESET)
    clips, batches = _batches(batch_size=3)
    ref = _reference(clips, cfg)
    per_bin = compute_stats(batches, cfg, per_bin=True)
    glob_ = compute_stats(batches, PRESET, per_bin=False)
    assert per_bin["count"] == glob_["count"] == ref.shape[0] == sum(num_frames(len(c), cfg) for c in clips)
    np.testing.assert_allclose(per_bin["mean"], ref.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(per_bin["std"], ref.std(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(glob_["mean"], ref.mean(), rtol=1e-5)
    np.testing.assert_allclose(glob_["std"], ref.std(), rtol=1e-5)
    assert per_bin["preset"] == glob_["preset"] == PRESET
    assert len(per_bin["mean"]) == cfg.n_mels and isinstance(glob_["mean"], float)

    # Streaming: other batch sizes give the same numbers; a config's own normalisation is ignored.
    other = compute_stats(_batches(batch_size=2)[1], dataclasses.replace(cfg, norm_mean=5.0, norm_std=2.0),
                          per_bin=True)
    assert other["count"] == per_bin["count"]
    np.testing.assert_allclose(other["mean"], per_bin["mean"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(other["std"], per_bin["std"], rtol=1e-5, atol=1e-5)


def test_chan_merge_is_exact_far_from_zero():
    """Large offset, small spread: the float64 merge keeps the variance (a float32 E[x^2] - E[x]^2 would not)."""
    from strongaudio_jax.frontend.stats import _Moments

    rng = np.random.default_rng(0)
    x = 1e4 + rng.standard_normal((10_000, 3))
    m = _Moments(3)
    for part in np.array_split(x, 37):
        m.add(part)
    m.add(x[:0])
    np.testing.assert_allclose(m.mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(m.m2 / m.n, x.var(0), rtol=1e-9)


def test_save_load_and_apply(tmp_path):
    cfg = get_preset(PRESET)
    clips, batches = _batches(batch_size=4, n_clips=4)
    for per_bin in (True, False):
        stats = compute_stats(batches, cfg, per_bin=per_bin)
        path = tmp_path / f"stats_{per_bin}.json"
        save_stats(path, stats)
        loaded = load_stats(path)
        assert loaded == stats
        norm_cfg = with_stats(PRESET, loaded)
        assert isinstance(norm_cfg.norm_mean, tuple if per_bin else float)
        hash(norm_cfg)  # still a static jit argument
        ref = _reference(clips, norm_cfg)
        axis = 0 if per_bin else None
        np.testing.assert_allclose(ref.mean(axis), 0.0, atol=1e-4)
        np.testing.assert_allclose(ref.std(axis), 1.0, rtol=1e-4)
        # the stats of a normalised config are those of the raw features (no double normalisation)
        again = compute_stats(batches, norm_cfg, per_bin=per_bin)
        np.testing.assert_allclose(again["mean"], stats["mean"], rtol=1e-6)


def test_stats_of_another_frontend_are_refused(tmp_path):
    stats = compute_stats(_batches(batch_size=4, n_clips=3)[1], PRESET, per_bin=True)
    with pytest.raises(ValueError, match="n_mels: stats 80 vs config 128"):
        with_stats("kaldi_default", stats)
    with pytest.raises(ValueError, match="window"):
        with_stats(dataclasses.replace(get_preset(PRESET), window="hamming"), stats)
    (tmp_path / "x.json").write_text('{"mean": 1}')
    with pytest.raises(ValueError, match="not a frontend statistics file"):
        load_stats(tmp_path / "x.json")
    with pytest.raises(ValueError, match="n_mels=64"):
        dataclasses.replace(get_preset("mel_db"), norm_mean=[0.0] * 80)


def test_no_valid_frames_is_an_error():
    batch = dict(waveform=np.zeros((2, 1000), np.float32), length=np.array([0, 100]), valid=np.array([True, True]))
    with pytest.raises(ValueError, match="no valid frames"):
        compute_stats([batch], PRESET, per_bin=False)


def test_stats_from_files(tiny_corpus):
    from strongaudio_jax.data import audio, pipeline, schema, tfrecord

    files = sorted(glob.glob(str(tiny_corpus / "heldout-*.tfrecord")))
    clip_samples = 16000
    # the training featurizer (random crops) is accepted: stats_from_files turns the random crop off
    featurizer = pipeline.Featurizer(vocab={}, sample_rate=16000, clip_samples=clip_samples, random_crop=True)
    stats = stats_from_files(files, featurizer, "mel_db", batch_size=5, per_bin=False)  # 12 clips: padded batch
    cfg = get_preset("mel_db")
    waves = [audio.decode(schema.example_to_clip(r, f).audio)[0][:clip_samples]
             for f in files for r in tfrecord.read_records(f)]
    ref = _reference([np.asarray(w, np.float32) for w in waves], cfg)
    assert stats["count"] == ref.shape[0]
    np.testing.assert_allclose([stats["mean"], stats["std"]], [ref.mean(), ref.std()], rtol=1e-5)
    with pytest.raises(ValueError, match="16000 Hz but the frontend expects 32000 Hz"):
        stats_from_files(files, featurizer, "panns_mel64", batch_size=5, per_bin=False)
