"""The FLAC fast path (dr_flac) against soundfile, and how it reports damaged streams."""

import io

import numpy as np
import pytest
import soundfile as sf

from strongaudio_jax.data import audio


def _signal(seconds=3.0, rate=16000, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 440 * t)[:, None] + 0.1 * rng.standard_normal((len(t), channels))
    return np.clip(wave, -1, 1).astype(np.float32)


def _flac(wave, rate=16000, subtype="PCM_16"):
    buf = io.BytesIO()
    sf.write(buf, wave, rate, format="FLAC", subtype=subtype)
    return buf.getvalue()


def _reference(data, n, dtype, crop, rate=16000):
    """What decode_into must return, computed with soundfile alone."""
    wave, file_rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    assert file_rate == rate
    wave = wave.mean(axis=1)
    start = audio._crop_start(crop, len(wave), n)  # noqa: SLF001
    wave = wave[start:start + n]
    out = np.zeros(n, dtype)
    out[:len(wave)] = audio.to_int16(wave) if dtype == np.int16 else wave
    return out, len(wave)


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
@pytest.mark.parametrize("n,crop", [(48000, None), (16000, 0.37), (16000, 0.999), (64000, 0.5)])
def test_fast_path_equals_soundfile(dtype, n, crop, monkeypatch):
    data = _flac(_signal())
    ref, ref_len = _reference(data, n, dtype, crop)

    def no_soundfile(_):
        raise AssertionError("16-bit mono FLAC at the model's rate must not need soundfile")

    monkeypatch.setattr(audio, "_open", no_soundfile)
    out = np.full(n, 7, dtype)
    got = audio.decode_into(data, out, rate=16000, crop=crop)
    assert got == ref_len
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("kind", ["stereo", "pcm_24", "other_rate"])
def test_other_flac_streams_go_through_soundfile(kind):
    """Streams the fast path does not take (several channels, 24-bit, another rate) still decode."""
    if kind == "stereo":
        data, rate = _flac(_signal(channels=2)), 16000
    elif kind == "pcm_24":
        data, rate = _flac(_signal(), subtype="PCM_24"), 16000
    else:
        data, rate = _flac(_signal(rate=22050), rate=22050), 16000
    out = np.zeros(16000, np.float32)
    n = audio.decode_into(data, out, rate=rate, crop=0.25)
    assert n == 16000 and np.abs(out).max() > 0.1
    if kind != "other_rate":
        ref, _ = _reference(data, 16000, np.float32, 0.25)
        np.testing.assert_allclose(out, ref, atol=1e-7)


def test_damaged_flac_is_an_error_never_short_audio():
    data = _flac(_signal(seconds=5.0))
    mid = len(data) // 2
    flipped = data[:mid] + bytes([data[mid] ^ 0x55]) + data[mid + 1:]
    for damaged in (data[:mid], flipped, data[:-100]):
        with pytest.raises(audio.AudioDecodeError, match="damaged audio stream") as e:
            audio.decode_into(damaged, np.zeros(80000, np.int16), rate=16000)
        assert e.value.reason == "undecodable_audio"
    with pytest.raises(audio.AudioDecodeError, match="not a valid FLAC stream"):
        audio.decode_into(b"fLaC" + bytes(60), np.zeros(100, np.int16), rate=16000)
    # A crop that ends before the damage decodes (soundfile behaves the same way).
    out = np.zeros(16000, np.int16)
    assert audio.decode_into(data[:-100], out, rate=16000, crop=0.0) == 16000


def test_without_miniaudio_soundfile_gives_the_same_samples(monkeypatch):
    """Where miniaudio has no wheel (Linux aarch64) and is absent, FLAC goes through soundfile."""
    data = _flac(_signal())
    fast = np.zeros(16000, np.int16)
    audio.decode_into(data, fast, rate=16000, crop=0.6)
    monkeypatch.setattr(audio, "_dr_flac", lambda: None)
    slow = np.zeros(16000, np.int16)
    assert audio.decode_into(data, slow, rate=16000, crop=0.6) == 16000
    np.testing.assert_array_equal(slow, fast)
