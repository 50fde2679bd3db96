"""Audio bytes <-> float32 waveforms (soundfile: FLAC, WAV, OGG)."""

from __future__ import annotations

import functools
import io
import os
import threading
import warnings

import numpy as np
import soundfile as sf


class AudioDecodeError(ValueError):
    """Audio bytes that cannot be decoded or are unusable; the message names the clip.

    `reason` is a short key for counting skipped clips: undecodable_audio, zero_length_audio,
    non_finite_audio, sample_rate.
    """

    def __init__(self, message: str, reason: str = "undecodable_audio"):
        super().__init__(message)
        self.reason = reason

    def __reduce__(self):  # picklable across worker processes, reason included
        return AudioDecodeError, (str(self), self.reason)


def decode(data: bytes, where: str = "clip") -> tuple[np.ndarray, int]:
    """Decodes to a mono float32 waveform in [-1, 1] (channels averaged) and its rate."""
    try:
        wave, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises several types for bad bytes
        raise AudioDecodeError(f"{where}: audio cannot be decoded ({e})") from e
    wave = wave.mean(axis=1) if wave.shape[1] > 1 else wave[:, 0]
    if wave.size == 0:
        raise AudioDecodeError(f"{where}: audio has zero samples", "zero_length_audio")
    if not np.isfinite(wave).all():
        raise AudioDecodeError(f"{where}: audio contains NaN or Inf samples", "non_finite_audio")
    return wave, int(rate)


def encode(wave: np.ndarray, rate: int, fmt: str = "flac") -> bytes:
    """Encodes a float waveform (clipped to [-1, 1]) as 16-bit FLAC/WAV or Vorbis OGG."""
    buf = io.BytesIO()
    subtype = {"flac": "PCM_16", "wav": "PCM_16", "ogg": "VORBIS"}[fmt]
    sf.write(buf, np.clip(wave, -1.0, 1.0), rate, format=fmt.upper(), subtype=subtype)
    return buf.getvalue()


def resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    """High-quality resampling (soxr, 'HQ'), float32 in and out."""
    import soxr

    return soxr.resample(wave, rate, target, quality="HQ").astype(np.float32, copy=False)


def to_int16(wave: np.ndarray) -> np.ndarray:
    """float [-1, 1] -> int16 with the scale soundfile uses (x * 32768, clipped): int16 / 32768
    gives the float back exactly for 16-bit sources."""
    return np.clip(np.round(wave * 32768.0), -32768, 32767).astype(np.int16)


def decode_into(data: bytes, out: np.ndarray, *, where: str = "clip", rate: int,
                crop: float | None = None, resample_ok: bool = True,
                resampled: list | None = None) -> int:
    """Decodes audio into `out` (1-D, int16 or float32, zero-padded) and returns the number of
    valid samples: mono (channels averaged), at `rate` (resampled when the file's differs), a
    crop of `len(out)` samples starting at fraction `crop` in [0, 1) of the possible starts
    (None: from the start). resample_ok=False: audio whose own header gives another rate is
    bad data (AudioDecodeError, reason sample_rate) rather than resampled silently; a
    `resampled` list gets the file's rate appended whenever the audio was resampled.

    The common case (mono integer PCM at `rate`, e.g. 16-bit FLAC) decodes straight into `out`,
    reading only the cropped frames: no intermediate arrays. Anything else (several channels,
    float samples, another rate) decodes to float32 first and is checked for NaN/Inf.
    """
    n = len(out)
    if out.dtype in (np.int16, np.float32) and data[:4] == b"fLaC" and _dr_flac():
        got = _decode_flac_into(data, out, where=where, rate=rate, crop=crop)
        if got is not None:
            return got
    try:
        f = _open(data)
    except Exception as e:  # soundfile raises several types for bad bytes
        raise AudioDecodeError(f"{where}: audio cannot be decoded ({e})") from e
    with f:
        if f.frames <= 0:
            raise AudioDecodeError(f"{where}: audio has zero samples", "zero_length_audio")
        direct = (f.channels == 1 and f.samplerate == rate
                  and f.subtype not in ("FLOAT", "DOUBLE", "VORBIS", "OPUS"))
        if direct:
            take = min(n, f.frames)
            start = _crop_start(crop, f.frames, n)
            try:
                if start:
                    f.seek(start)
                got = f.read(take, dtype=out.dtype.name, out=out[:take])
            except Exception as e:
                raise AudioDecodeError(f"{where}: audio cannot be decoded ({e})") from e
            got = len(got)
            if got < take:
                raise AudioDecodeError(f"{where}: audio stream ends after {start + got} of "
                                       f"{f.frames} samples (damaged)")
            out[take:] = 0
            return take
        try:
            wave = f.read(dtype="float32", always_2d=True)
        except Exception as e:
            raise AudioDecodeError(f"{where}: audio cannot be decoded ({e})") from e
        file_rate = f.samplerate
    wave = wave.mean(axis=1) if wave.shape[1] > 1 else wave[:, 0]
    if wave.size == 0:
        raise AudioDecodeError(f"{where}: audio has zero samples", "zero_length_audio")
    if not np.isfinite(wave).all():
        raise AudioDecodeError(f"{where}: audio contains NaN or Inf samples", "non_finite_audio")
    if file_rate != rate:
        if not resample_ok:
            raise AudioDecodeError(
                f"{where}: the audio itself is at {file_rate} Hz (its header), not the {rate} Hz "
                "expected (the record's audio/sample_rate and data.sample_rate); re-create the "
                "record, or set data.resample=True to resample while reading (counted as "
                "resampled)", "sample_rate")
        wave = resample(wave, file_rate, rate)
        if resampled is not None:
            resampled.append(file_rate)
    start = _crop_start(crop, len(wave), n)
    wave = wave[start:start + n]
    out[:len(wave)] = to_int16(wave) if out.dtype == np.int16 else wave
    out[len(wave):] = 0
    return len(wave)


def _decode_flac_into(data: bytes, out: np.ndarray, *, where: str, rate: int,
                      crop: float | None) -> int | None:
    """The common case, 16-bit mono FLAC at `rate`, decoded by dr_flac (through miniaudio)
    straight into `out`, reading only the cropped frames. dr_flac decodes these clips in about
    60 % of libsndfile's time with bit-identical samples (libsndfile spends a third of its time
    converting samples). None when the stream is not that case (soundfile handles it)."""
    lib, ffi = _dr_flac()
    src = ffi.from_buffer(data)  # dr_flac reads from it until close: keep it referenced
    flac = lib.ma_dr_flac_open_memory(src, len(src), ffi.NULL)
    if flac == ffi.NULL:
        raise AudioDecodeError(f"{where}: audio cannot be decoded (not a valid FLAC stream)")
    try:
        frames = int(flac.totalPCMFrameCount)
        if (flac.channels != 1 or flac.sampleRate != rate or flac.bitsPerSample != 16
                or frames == 0):  # frames 0: length unknown in the header; soundfile decides
            return None
        n = len(out)
        take = min(n, frames)
        start = _crop_start(crop, frames, n)
        if start and not lib.ma_dr_flac_seek_to_pcm_frame(flac, start):
            raise AudioDecodeError(f"{where}: audio cannot be decoded (seek to frame {start} "
                                   f"of {frames} failed: damaged stream)")
        dest = out if out.dtype == np.int16 else _scratch(take)
        got = int(lib.ma_dr_flac_read_pcm_frames_s16(flac, take, ffi.from_buffer("short[]", dest)))
    finally:
        lib.ma_dr_flac_close(flac)
    if got < take:  # dr_flac drops a frame that fails its CRC and stops at a truncation
        raise AudioDecodeError(f"{where}: damaged audio stream (truncated, or a frame fails "
                               f"its CRC): {got} of the {take} samples from sample {start} "
                               f"decoded, of {frames} in all")
    if dest is not out:
        np.multiply(dest[:take], np.float32(1 / 32768), out=out[:take])  # soundfile's scale
    out[take:] = 0
    return take


@functools.cache
def _dr_flac():
    """(lib, ffi) of miniaudio's dr_flac; None where miniaudio has no wheel (Linux aarch64, as
    of 1.71) and is not installed: soundfile then decodes every clip, to the same samples,
    about 1.7x slower. Imported on first use: only decoding processes pay for it."""
    try:
        import miniaudio
    except ImportError:
        warnings.warn("miniaudio is not installed, so FLAC is decoded by libsndfile (the same "
                      "samples, ~1.7x slower); `pip install miniaudio` where a wheel exists",
                      stacklevel=3)
        return None
    return miniaudio.lib, miniaudio.ffi


def _scratch(n: int) -> np.ndarray:
    buf = getattr(_local, "scratch", None)
    if buf is None or len(buf) < n:
        buf = _local.scratch = np.empty(n, np.int16)
    return buf[:n]


def _crop_start(crop: float | None, have: int, want: int) -> int:
    return int(crop * (have - want + 1)) if crop is not None and have > want else 0


_local = threading.local()


def _open(data: bytes) -> sf.SoundFile:
    """A SoundFile over `data`. On Linux the bytes go into a reused in-memory file (memfd) that
    libsndfile reads directly: about 7% faster than a BytesIO, which libsndfile reads through
    ~100 Python callbacks per clip. One scratch file per thread."""
    fd = getattr(_local, "fd", None)
    if fd is None:
        if not hasattr(os, "memfd_create"):
            return sf.SoundFile(io.BytesIO(data))
        fd = _local.fd = os.memfd_create("strongaudio-decode", os.MFD_CLOEXEC)
    os.ftruncate(fd, len(data))
    os.pwrite(fd, data, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    return sf.SoundFile(fd, closefd=False)
