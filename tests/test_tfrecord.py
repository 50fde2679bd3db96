"""TFRecord / tf.train.Example codec, checked against files real TensorFlow wrote.

Fixtures: shared/fixtures/tfrecord (see its README.md and manifest.json).
"""

import gzip
import hashlib
import io
import json
import pickle
import random
import struct
import zlib

import pytest

from strongaudio_jax.data import example_proto
from strongaudio_jax.data.schema import Clip, SchemaError, clip_to_example, example_to_clip
from strongaudio_jax.data.tfrecord import (
    CorruptRecordError, ReadStats, TFRecordWriter, index_records, is_gzip, read_record_at,
    read_records)


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@pytest.fixture(scope="session")
def fixtures(shared_dir):
    path = shared_dir / "fixtures" / "tfrecord"
    if not (path / "manifest.json").is_file():
        pytest.skip(f"TFRecord fixtures not found: looked for {path / 'manifest.json'}")
    return path


@pytest.fixture(scope="session")
def manifest(fixtures):
    return json.loads((fixtures / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def tf_records(fixtures):
    """The 12 serialised Examples as TF wrote them."""
    return list(read_records(fixtures / "examples.tfrecord"))


# ------------------------------------------------------------------ reading TF's files


@pytest.mark.parametrize("name", ["examples.tfrecord", "examples.tfrecord.gz"])
def test_fixture_records_match_manifest(fixtures, manifest, name):
    records = list(read_records(fixtures / name))
    entries = manifest["records"]
    assert len(records) == len(entries) == 12
    for data, m in zip(records, entries):
        assert len(data) == m["data_length"] == m["example_bytes"]
        assert sha(data) == m["example_sha256"]
        clip = example_to_clip(data, where=f"{name} record {m['index']}")
        assert clip.id == m["id"]
        assert clip.format == m["audio_format"] == "flac"
        assert clip.sample_rate == m["sample_rate"]
        assert clip.num_samples == m["num_samples"]
        assert len(clip.audio) == m["audio_bytes"]
        assert sha(clip.audio) == m["audio_sha256"]
        assert clip.caption == m["caption"]
        assert list(clip.tags) == m["tags"]
        assert list(clip.tag_scores) == m["tag_scores"]
        assert clip.source == m["source"]
        assert clip.summary == "" and clip.labels == {}  # absent in the fixtures


def test_fixture_edge_cases(tf_records):
    caption = example_to_clip(tf_records[1]).caption
    for piece in ("„Heute", "…“", "–", "Grüße", "☀️", "🎧", "日本語"):
        assert piece in caption
    # Record 6: both features present, with an empty BytesList / FloatList.
    raw = example_proto.decode_example(tf_records[6])
    assert raw["tags"] == [] and raw["tags/scores"] == []
    clip = example_to_clip(tf_records[6])
    assert clip.tags == () and clip.tag_scores == ()
    assert example_to_clip(tf_records[7]).num_samples == 4800


def test_flac_decodes_to_source_pcm(tf_records, manifest):
    sf = pytest.importorskip("soundfile")
    for data, m in zip(tf_records, manifest["records"]):
        clip = example_to_clip(data)
        pcm, sr = sf.read(io.BytesIO(clip.audio), dtype="int16")
        assert sr == m["sample_rate"] and len(pcm) == m["num_samples"]
        assert sha(pcm.astype("<i2").tobytes()) == m["pcm_int16_sha256"], m["id"]


def test_index_matches_manifest(fixtures, manifest, tf_records):
    idx = index_records(fixtures / "examples.tfrecord")
    assert idx.shape == (12, 2) and idx.dtype.name == "int64"
    assert idx[:, 0].tolist() == [m["file_offset"] + 12 for m in manifest["records"]]
    assert idx[:, 1].tolist() == [m["data_length"] for m in manifest["records"]]
    with open(fixtures / "examples.tfrecord", "rb") as f:
        for i in (11, 0, 6, 3):  # out of order on purpose
            assert read_record_at(f, *idx[i].tolist()) == tf_records[i]


def test_index_refuses_gzip(fixtures):
    with pytest.raises(ValueError, match="random access needs uncompressed shards"):
        index_records(fixtures / "examples.tfrecord.gz")


def test_reencoded_examples_are_byte_identical(tf_records):
    """Our encoder gives TF's bytes (same protobuf runtime as the one TF used: upb)."""
    from google.protobuf.internal import api_implementation
    kinds = {"audio/sample_rate": example_proto.int64_feature,
             "audio/num_samples": example_proto.int64_feature,
             "tags/scores": example_proto.float_feature}
    for data in tf_records:
        feats = {k: kinds.get(k, example_proto.bytes_feature)(v)
                 for k, v in example_proto.decode_example(data).items()}
        ours = example_proto.encode_example(feats)
        assert example_proto.decode_example(ours) == example_proto.decode_example(data)
        if api_implementation.Type() == "upb":
            assert ours == data


# ------------------------------------------------------------------ damaged files


def test_corrupt_crc_raises_with_location(fixtures, tf_records):
    path = fixtures / "corrupt_crc.tfrecord"
    got = []
    with pytest.raises(CorruptRecordError) as info:
        for r in read_records(path):
            got.append(r)
    assert got == tf_records[:4]
    e = info.value
    assert (e.path, e.index, e.offset, e.truncated) == (str(path), 4, 379072, False)
    msg = str(e)
    assert str(path) in msg
    assert "record 4 at byte offset 379072 is corrupt: data CRC mismatch" in msg
    assert "379084" in msg  # the data offset, which is what TF reports
    assert "skip_corrupt=True" in msg


def test_corrupt_crc_skip(fixtures, tf_records):
    stats = ReadStats()
    got = list(read_records(fixtures / "corrupt_crc.tfrecord", skip_corrupt=True, stats=stats))
    assert got == tf_records[:4] + tf_records[5:]
    assert (stats.records, stats.corrupt, stats.truncated) == (11, 1, 0)
    assert len(stats.bad) == 1 and "record 4" in stats.bad[0]


def test_corrupt_crc_unverified_and_random_access(fixtures, tf_records):
    path = fixtures / "corrupt_crc.tfrecord"
    got = list(read_records(path, verify_crc=False))  # the flipped byte comes through
    assert len(got) == 12 and got[4] != tf_records[4] and got[5:] == tf_records[5:]
    idx = index_records(path)  # headers are intact
    with open(path, "rb") as f:
        assert read_record_at(f, *idx[3].tolist()) == tf_records[3]
        with pytest.raises(CorruptRecordError, match="record 4 at byte offset 379072 .*379084"):
            read_record_at(f, *idx[4].tolist(), path=str(path), index=4)


def test_truncated(fixtures, tf_records):
    path = fixtures / "truncated.tfrecord"
    got = []
    with pytest.raises(CorruptRecordError) as info:
        for r in read_records(path):
            got.append(r)
    assert got == tf_records[:11]
    e = info.value
    assert (e.index, e.offset, e.truncated) == (11, 786267, True)
    assert (f"{path}: record 11 at byte offset 786267 is truncated: expected 19117 data bytes, "
            f"file ends after 9558") in str(e)

    stats = ReadStats()
    assert list(read_records(path, skip_corrupt=True, stats=stats)) == tf_records[:11]
    assert (stats.records, stats.corrupt, stats.truncated) == (11, 0, 1)

    with pytest.raises(CorruptRecordError, match="record 11 at byte offset 786267 is truncated"):
        index_records(path)


def test_truncated_gzip(tmp_path, fixtures, tf_records):
    blob = (fixtures / "examples.tfrecord.gz").read_bytes()
    path = tmp_path / "cut.tfrecord.gz"
    path.write_bytes(blob[: len(blob) // 2])
    got = []
    with pytest.raises(CorruptRecordError, match="decompressed stream is truncated") as info:
        for r in read_records(path):
            got.append(r)
    assert info.value.truncated and got == tf_records[: len(got)]
    stats = ReadStats()
    assert list(read_records(path, skip_corrupt=True, stats=stats)) == got
    assert stats.truncated == 1


def test_error_is_picklable(fixtures):
    with pytest.raises(CorruptRecordError) as info:
        list(read_records(fixtures / "corrupt_crc.tfrecord"))
    e = pickle.loads(pickle.dumps(info.value))
    assert isinstance(e, CorruptRecordError) and str(e) == str(info.value)
    assert (e.index, e.offset, e.next_offset) == (4, 379072, info.value.next_offset)


# ------------------------------------------------------------------ writing


def _sample_records(seed=0):
    rng = random.Random(seed)
    sizes = [0, 1, 11, 12, 100, 4096, 70_000, 3]
    return [rng.randbytes(n) for n in sizes]


@pytest.mark.parametrize("name,compression", [("a.tfrecord", None), ("a.tfrecord", "gzip"),
                                              ("a.tfrecord.gz", None), ("a.tfrecord.gz", "")])
def test_writer_round_trip(tmp_path, name, compression):
    records = _sample_records()
    path = tmp_path / name
    with TFRecordWriter(path, compression=compression) as w:
        for r in records:
            w.write(r)
    gz = compression == "gzip" or (compression is None and name.endswith(".gz"))
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == gz
    assert list(read_records(path, compression=compression)) == records
    if gz or not name.endswith(".gz"):  # a plain file named .gz needs compression=""
        assert is_gzip(path) == gz  # from the suffix or the magic bytes
        assert list(read_records(path)) == records


def test_rewritten_fixture_is_byte_identical(tmp_path, fixtures, tf_records):
    tf_plain = (fixtures / "examples.tfrecord").read_bytes()
    with TFRecordWriter(tmp_path / "ours.tfrecord") as w:
        for r in tf_records:
            w.write(r)
    assert (tmp_path / "ours.tfrecord").read_bytes() == tf_plain

    with TFRecordWriter(tmp_path / "ours.tfrecord.gz") as w:
        for r in tf_records:
            w.write(r)
    ours_gz = (tmp_path / "ours.tfrecord.gz").read_bytes()
    assert gzip.decompress(ours_gz) == tf_plain
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)  # exactly one gzip member, nothing after it
    assert d.decompress(ours_gz) == tf_plain and d.eof and d.unused_data == b""
    assert ours_gz[4:8] == b"\0\0\0\0"  # mtime 0: reproducible
    tf_gz = (fixtures / "examples.tfrecord.gz").read_bytes()
    if ours_gz != tf_gz:  # deflate output may differ across zlib versions; the content may not
        pytest.skip(f"gzip bytes differ from TF's with zlib {zlib.ZLIB_RUNTIME_VERSION} "
                    "(the decompressed content matches)")


def test_plain_file_starting_like_gzip(tmp_path):
    """A first record of length 0x8b1f begins with the gzip magic; it must still read as plain."""
    records = [b"x" * 0x8B1F, b"y"]
    path = tmp_path / "magic.tfrecord"
    with TFRecordWriter(path) as w:
        for r in records:
            w.write(r)
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    assert not is_gzip(path) and list(read_records(path)) == records
    assert index_records(path)[:, 1].tolist() == [0x8B1F, 1]


# ------------------------------------------------------------------ schema


def _clip(**kw):
    base = dict(id="clip-ü-1", audio=bytes(range(256)) * 3, format="flac", sample_rate=48000,
                num_samples=123456, caption="A dog barks – twice 🐕.", summary="Dog barks.",
                tags=("dog", "bark"), tag_scores=(0.75, 0.5), source="unit test",
                caption_model="capt@1", tags_model="tagger@2",
                labels={"domain": "animal", "split": "train"})
    base.update(kw)
    return Clip(**base)


def test_schema_round_trip(tmp_path):
    clips = [_clip(), _clip(id="b", tags=(), tag_scores=(), labels={}, num_samples=-1)]
    for c in clips:
        assert example_to_clip(clip_to_example(c)) == c
    path = tmp_path / "clips.tfrecord"
    with TFRecordWriter(path) as w:
        for c in clips:
            w.write(clip_to_example(c))
    assert [example_to_clip(r) for r in read_records(path)] == clips
    assert clip_to_example(clips[0]) == clip_to_example(_clip())  # deterministic bytes


def test_schema_missing_required_field():
    feats = {"id": example_proto.bytes_feature([b"x"]),
             "audio/encoded": example_proto.bytes_feature([b"RIFF"]),
             "audio/sample_rate": example_proto.int64_feature([16000])}
    msg = r"shard-3 record 7: missing required feature\(s\) \['audio/format'\]"
    with pytest.raises(SchemaError, match=msg):
        example_to_clip(example_proto.encode_example(feats), where="shard-3 record 7")


def test_schema_rejects_random_bytes():
    rng = random.Random(1)
    for n in [0, 1, 5, 30, 200, 2000] * 10:
        with pytest.raises(SchemaError):
            example_to_clip(rng.randbytes(n))


def test_reader_rejects_random_bytes(tmp_path):
    rng = random.Random(2)
    for i in range(20):
        path = tmp_path / f"junk{i}.tfrecord"
        path.write_bytes(rng.randbytes(rng.randrange(1, 5000)))
        with pytest.raises(CorruptRecordError):
            list(read_records(path))


# ------------------------------------------------------------------ flipped bytes: error, never wrong data


def _flip_positions(size, n=50, seed=0):
    rng = random.Random(seed)
    return sorted({*range(12), *range(size - 4, size), *rng.sample(range(size), n)})


def _small_file(path, records):
    with TFRecordWriter(path) as w:
        for r in records:
            w.write(r)
    return path.read_bytes()


@pytest.mark.parametrize("name", ["flip.tfrecord", "flip.tfrecord.gz"])
def test_byte_flips_are_detected(tmp_path, name):
    records = [struct.pack("<I", i) * (i * 7 + 1) for i in range(6)]
    good = _small_file(tmp_path / name, records)
    path = tmp_path / ("bad-" + name)
    rng = random.Random(3)
    for pos in _flip_positions(len(good)):
        bad = bytearray(good)
        bad[pos] ^= rng.randrange(1, 256)
        path.write_bytes(bytes(bad))

        got = []
        try:
            for r in read_records(path):
                got.append(r)
        except CorruptRecordError:
            assert got == records[: len(got)], pos
        else:
            # Only bytes no CRC covers (gzip header fields such as mtime or OS) may flip unnoticed.
            assert name.endswith(".gz") and got == records, pos

        stats = ReadStats()
        got = list(read_records(path, skip_corrupt=True, stats=stats))
        it = iter(records)
        assert all(any(r == s for s in it) for r in got), pos  # an in-order subset of the originals
        assert stats.records == len(got)
        assert got == records or stats.corrupt + stats.truncated >= 1, pos


def test_byte_flips_random_access(tmp_path):
    records = [bytes([i]) * (50 + 13 * i) for i in range(6)]
    good = _small_file(tmp_path / "ra.tfrecord", records)
    path = tmp_path / "ra-bad.tfrecord"
    rng = random.Random(4)
    for pos in _flip_positions(len(good)):
        bad = bytearray(good)
        bad[pos] ^= rng.randrange(1, 256)
        path.write_bytes(bytes(bad))
        with pytest.raises(CorruptRecordError):
            idx = index_records(path)
            with open(path, "rb") as f:
                for i, (off, n) in enumerate(idx.tolist()):
                    assert read_record_at(f, off, n, path=str(path), index=i) == records[i], pos
