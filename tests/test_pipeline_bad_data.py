"""Bad data: a clear error naming file, record and reason, or (skip_bad) a masked row, counted."""

import io
import json

import numpy as np
import pytest
import soundfile as sf

from strongaudio_jax.data import audio, example_proto, pipeline, schema, tfrecord
from tests.conftest import REPO
from tests.test_pipeline import clip_id, feat

SR = 16000


def _flac(seconds=0.1, rate=SR):
    return audio.encode(0.1 * np.sin(np.arange(int(seconds * rate)) / 5.0), rate)


def _record(cid, data=None, rate=SR, fmt="flac"):
    return schema.clip_to_example(schema.Clip(id=cid, audio=_flac() if data is None else data,
                                              format=fmt, sample_rate=rate, tags=["a"]))


def _nan_wav():
    buf = io.BytesIO()
    wave = np.zeros(1600, np.float32)
    wave[100] = np.nan
    sf.write(buf, wave, SR, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def _empty_wav():
    buf = io.BytesIO()
    sf.write(buf, np.zeros(0, np.float32), SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _no_audio_field():
    f = example_proto
    return f.encode_example({"id": f.bytes_feature([b"bad"]), "audio/format": f.bytes_feature([b"flac"]),
                             "audio/sample_rate": f.int64_feature([SR])})


BAD = {  # reason key -> (record bytes, words the error must contain)
    "bad_record": (b"\x0a\xff\xff not a protobuf", "not a tf.train.Example"),
    "missing_field": (_no_audio_field(), "missing required feature(s) ['audio/encoded']"),
    "undecodable_audio": (_record("bad", b"this is not a flac file"), "audio cannot be decoded"),
    "zero_length_audio": (_record("bad", _empty_wav(), fmt="wav"), "audio has zero samples"),
    "non_finite_audio": (_record("bad", _nan_wav(), fmt="wav"), "NaN or Inf"),
    "sample_rate": (_record("bad", _flac(rate=8000), rate=8000), "sample rate 8000 Hz"),
}
REASON_KEY = {"missing_field": "bad_record"}  # missing fields are counted as bad records


def _shard(path, bad_record, at=2, good=4):
    with tfrecord.TFRecordWriter(str(path)) as w:
        for i in range(good + 1):
            w.write(bad_record if i == at else _record(f"good-{i}"))
    return str(path)


def _corrupt_crc_shard(path):
    _shard(path, _record("victim"))
    data = bytearray(open(path, "rb").read())
    offset = tfrecord.index_records(str(path))[2][0]
    data[offset + 40] ^= 0xFF  # a byte inside record 2's data: its data CRC fails
    open(path, "wb").write(bytes(data))
    return str(path)


CASES = [*BAD, "corrupt_record"]


def _make(case, tmp_path):
    if case == "corrupt_record":
        return _corrupt_crc_shard(tmp_path / "bad.tfrecord"), "data CRC mismatch"
    record, words = BAD[case]
    return _shard(tmp_path / "bad.tfrecord", record), words


@pytest.mark.parametrize("extra", [clip_id, None], ids=["whole clip", "training fields only"])
@pytest.mark.parametrize("case", CASES)
def test_bad_record_is_a_clear_error(case, extra, tmp_path):
    path, words = _make(case, tmp_path)
    it = iter(pipeline.train_dataset([path], feat(extra=extra), 5, seed=0))
    with pytest.raises((tfrecord.CorruptRecordError, schema.SchemaError,
                        audio.AudioDecodeError)) as e:
        next(it)
    assert f"{path}: record 2" in str(e.value) or f"{path} record 2" in str(e.value)
    assert words in str(e.value)


@pytest.mark.parametrize("case", CASES)
def test_bad_record_is_skipped_and_counted(case, tmp_path):
    path, words = _make(case, tmp_path)
    it = iter(pipeline.train_dataset([path], feat(), 5, seed=0, skip_bad=True))
    batch = next(it)
    assert batch["valid"].sum() == 4 and sorted(bytes(r).decode().strip() for r, v in
                                                 zip(batch["id"], batch["valid"]) if v) == \
        [f"good-{i}" for i in (0, 1, 3, 4)]
    bad_row = int(np.flatnonzero(~batch["valid"])[0])
    assert batch["length"][bad_row] == 0 and not batch["waveform"][bad_row].any()
    assert it.bad_counts() == {REASON_KEY.get(case, case): 1}
    assert words in it.bad_messages[0] and "record 2" in it.bad_messages[0]
    assert it.get_state()["bad"] == {REASON_KEY.get(case, case): 1}  # survives a resume


def test_errors_cross_worker_processes_intact(tmp_path):
    path, words = _make("undecodable_audio", tmp_path)
    it = iter(pipeline.train_dataset([path], feat(), 5, seed=0, workers=2))
    with pytest.raises(audio.AudioDecodeError, match=f"{path} record 2.*audio cannot be decoded"):
        next(it)
    it.close()
    it = iter(pipeline.train_dataset([path], feat(), 5, seed=0, workers=2, skip_bad=True))
    assert next(it)["valid"].sum() == 4 and it.bad_counts() == {"undecodable_audio": 1}
    it.close()


def test_truncated_file_errors_or_keeps_the_records_before_the_damage(tmp_path):
    path = _shard(tmp_path / "t.tfrecord", _record("x"))
    data = open(path, "rb").read()
    open(path, "wb").write(data[:-100])  # the last record is cut off
    with pytest.raises(tfrecord.CorruptRecordError, match="record 4 .* truncated"):
        pipeline.train_dataset([path], feat(), 4, seed=0)
    ds = pipeline.train_dataset([path], feat(), 4, seed=0, skip_bad=True)
    (damage,) = pipeline.damaged_at_indexing(ds)
    assert "record 4" in damage and path in damage
    assert next(iter(ds))["valid"].all()


def test_skipped_records_appear_in_the_training_logs(tmp_path, tiny_corpus, capsys):
    from strongaudio_jax import config
    from strongaudio_jax.train import trainer

    path = _shard(tmp_path / "train.tfrecord", BAD["undecodable_audio"][0], good=15)
    cfg = config.load(f"{REPO}/configs/mtc.py:smoke", [
        f"data.train_files={path}", f"data.eval_files={tiny_corpus}/heldout-*.tfrecord",
        "data.batch_size=8", "data.clip_seconds=0.1", "data.vocab_min_count=1",
        "train.steps=4", "train.log_every=2", "probe.tasks=()"])
    with cfg.unlocked():  # works whether or not this checkout's config lists data.skip_bad yet
        cfg.data.skip_bad = True
    trainer.train(cfg, str(tmp_path / "w"))
    records = [json.loads(line) for line in open(tmp_path / "w" / "metrics.jsonl")
               if '"skipped_records"' in line]
    assert records and records[-1]["skipped_records"] >= 1
    out = capsys.readouterr().out
    assert "records skipped (data.skip_bad) or resampled (data.resample) so far " \
        "{'undecodable_audio': " in out, out
    assert f"{path} record 2 (clip 'bad'): audio cannot be decoded" in out
