"""The HEAR embedding API and the torch wrapper on a freshly initialised encoder (no training):
chunking of long audio, timestamps, the whole-clip scene embedding, one compile per shape."""

import numpy as np
import pytest

from strongaudio_jax import hub
from tests.hub_fixtures import tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model(batch_size=4)


def test_short_clip_is_the_training_embedding(model):
    m, program = model
    audio = np.random.default_rng(0).normal(0, 0.1, (3, 16000)).astype(np.float32)
    scene = hub.get_scene_embeddings(audio, m)
    assert isinstance(scene, np.ndarray) and scene.shape == (3, m.scene_embedding_size)
    want = program.embed(m.params, {"waveform": audio, "length": np.full(3, 16000, np.int32)})
    np.testing.assert_allclose(scene, np.asarray(want), rtol=1e-4, atol=1e-5)


def test_long_audio_is_chunked_with_sane_timestamps(model):
    m, _ = model
    seconds = 5
    rng = np.random.default_rng(1)
    audio = rng.normal(0, 0.1, (2, seconds * 16000)).astype(np.float32)
    assert audio.shape[1] > 3 * m.chunk_samples
    emb, ts = hub.get_timestamp_embeddings(audio, m)
    # 40 ms columns (4 frames of 10 ms) over the whole 5 s, centred at 15 ms, 55 ms, ...
    assert emb.shape == (2, ts.shape[1], m.timestamp_embedding_size) and ts.shape[0] == 2
    assert abs(ts.shape[1] - seconds * 1000 / 40) <= 1, ts.shape
    np.testing.assert_allclose(np.diff(ts[0]), 40.0)
    assert ts[0, 0] == pytest.approx(15.0) and ts[0, -1] < seconds * 1000
    assert np.isfinite(emb).all() and np.abs(emb).sum(-1).min() > 0
    # Columns inside the first chunk, away from its cut, equal the first chunk encoded alone.
    first, _ = hub.get_timestamp_embeddings(audio[:, :m.chunk_samples], m)
    k = m.step_tokens
    np.testing.assert_allclose(emb[:, :k], first[:, :k], rtol=1e-4, atol=1e-5)
    # The scene embedding is the mean over the whole clip: changing only the last second moves it.
    scene = hub.get_scene_embeddings(audio, m)
    np.testing.assert_allclose(scene, emb.mean(1), rtol=1e-5, atol=1e-6)
    changed = audio.copy()
    changed[:, -16000:] = np.sin(np.arange(16000) * 0.3) * 0.5
    moved = hub.get_scene_embeddings(changed, m)
    assert np.abs(moved - scene).max() > 1e-3
    np.testing.assert_allclose(hub.get_timestamp_embeddings(changed, m)[0][:, :k], emb[:, :k],
                               rtol=1e-4, atol=1e-5)


def test_ragged_batches_compile_once(model):
    m, _ = model
    audio = np.random.default_rng(2).normal(0, 0.1, (5, 3 * 16000)).astype(np.float32)
    hub.get_scene_embeddings(audio, m)
    before = m._columns._cache_size()
    hub.get_scene_embeddings(audio[:3], m)  # another number of chunks: same padded batch shape
    assert m._columns._cache_size() == before


def test_torch_in_torch_out_and_encoder_wrapper(model):
    torch = pytest.importorskip("torch")
    from strongaudio_jax.hub_torch import StrongAudioEncoder

    m, _ = model
    audio = torch.randn(2, 50000) * 0.1
    scene = hub.get_scene_embeddings(audio, m)
    emb, ts = hub.get_timestamp_embeddings(audio, m)
    assert isinstance(scene, torch.Tensor) and isinstance(ts, torch.Tensor)
    assert scene.shape == (2, m.scene_embedding_size)
    enc = StrongAudioEncoder(m)
    assert isinstance(enc, torch.nn.Module)
    assert enc.sampling_rate == 16000 and enc.hop_size_in_ms == 40.0
    out = enc(audio)
    assert out.shape == (2, emb.shape[1], enc.output_dim) and out.dtype == torch.float32
    assert abs(out.shape[1] - 50000 / 16000 * 1000 / 40) <= 1
    torch.testing.assert_close(out, emb)


def test_load_model_errors(tmp_path):
    with pytest.raises(ValueError, match="export directory"):
        hub.load_model()
    with pytest.raises(FileNotFoundError, match="no export.json"):
        hub.load_model(str(tmp_path))


def test_frontend_json_round_trips_every_preset_with_per_bin_statistics():
    import dataclasses

    from strongaudio_jax import frontend
    from strongaudio_jax.frontend import logmel
    from strongaudio_jax.train import export

    for name in logmel.PRESETS:
        cfg = frontend.get_preset(name)
        per_bin = dataclasses.replace(cfg, norm_mean=tuple(np.linspace(-30, -10, cfg.n_mels)),
                                      norm_std=tuple(np.linspace(10, 20, cfg.n_mels)))
        for c in (cfg, per_bin):
            assert export.frontend_from_json(export.frontend_to_json(c)) == c, name
