"""One bad-data policy for every pass over the records (vocabulary, statistics, evaluation,
training): strict gives the record's error naming file, record number and reason, and the
config key to change; data.skip_bad skips and counts by reason, damage found while indexing
included. No silent change of audio: a header/record rate mismatch is bad data unless
data.resample=True, then counted."""

import io
import json

import numpy as np
import pytest
import soundfile as sf

from strongaudio_jax import config
from strongaudio_jax.data import audio, pipeline, schema, tfrecord
from strongaudio_jax.data.featurize import Featurizer
from tests.conftest import REPO
from tests.test_pipeline_bad_data import BAD, SR, _record, _shard

ERRORS = (tfrecord.CorruptRecordError, schema.SchemaError, audio.AudioDecodeError)


def _feat(**kw):
    return Featurizer({"a": 0}, SR, 1600, False, **kw)


def _damaged_header_shard(path, good=6, at=2):
    """A shard whose record `at` has a damaged length header: nothing after it can be
    located from the header chain."""
    _shard(path, _record("victim"), at=at, good=good)
    data = bytearray(path.read_bytes())
    offset = int(tfrecord.index_records(str(path))[at][0]) - 12
    data[offset + 9] ^= 0xFF  # the header's length CRC
    path.write_bytes(bytes(data))
    return str(path)


@pytest.mark.parametrize("case", ["bad_record", "missing_field", "corrupt_record"])
def test_vocabulary_pass_strict_names_record_or_skips_and_counts(case, tmp_path):
    from tests.test_pipeline_bad_data import _make, REASON_KEY
    path, words = _make(case, tmp_path)
    with pytest.raises(ERRORS) as e:
        pipeline.tag_vocabulary([path])
    assert f"{path}: record 2" in str(e.value) or f"{path} record 2" in str(e.value)
    assert words in str(e.value) and "skip_corrupt=True. " not in str(e.value)
    bad = pipeline.BadData(skip=True)
    assert pipeline.tag_vocabulary([path], bad=bad) == ["a"]
    assert bad.counts == {REASON_KEY.get(case, case): 1}
    assert "record 2" in bad.messages[0]


def test_damaged_header_is_stepped_over_and_counted(tmp_path):
    path = _damaged_header_shard(tmp_path / "h.tfrecord")
    with pytest.raises(tfrecord.CorruptRecordError, match="record 2 .*set data.skip_bad=True"):
        pipeline.tag_vocabulary([path])
    with pytest.raises(tfrecord.CorruptRecordError, match="record 2 .*set data.skip_bad=True"):
        pipeline.train_dataset([path], _feat(), 4, seed=0)
    bad = pipeline.BadData(skip=True)
    got = [where for _, where in pipeline.records([path], bad=bad)]
    # the records after the damage are found again, numbered as they are in the file
    assert got == [f"{path} record {i}" for i in (0, 1, 3, 4, 5, 6)]
    assert bad.counts == {"corrupt_record": 1}
    ds = pipeline.train_dataset([path], _feat(), 6, seed=0, skip_bad=True)
    (damage,) = pipeline.damaged_at_indexing(ds)
    assert "record 2" in damage and "data.skip_bad" not in damage  # (it is already set)
    it = iter(ds)
    assert next(it)["valid"].all()
    assert it.bad_counts() == {"corrupt_record": 1}  # -> skipped_records in metrics.jsonl


def test_truncation_is_counted(tmp_path):
    path = _shard(tmp_path / "t.tfrecord", _record("x"))
    data = open(path, "rb").read()
    open(path, "wb").write(data[:-100])  # the last record is cut off
    bad = pipeline.BadData(skip=True)
    assert len(list(pipeline.records([path], bad=bad))) == 4
    assert bad.counts == {"truncated_record": 1}


def test_empty_shard_is_an_error_or_skipped_and_counted(tmp_path):
    good = _shard(tmp_path / "good.tfrecord", _record("g"))
    empty = tmp_path / "empty.tfrecord"
    empty.write_bytes(b"")
    with pytest.raises(tfrecord.CorruptRecordError, match=f"{empty}.*empty \\(0 bytes"):
        pipeline.tag_vocabulary([str(empty)])
    with pytest.raises(tfrecord.CorruptRecordError, match="empty"):
        pipeline.train_dataset([good, str(empty)], _feat(), 4, seed=0)
    bad = pipeline.BadData(skip=True)
    assert pipeline.tag_vocabulary([good, str(empty)], bad=bad) == ["a"]
    assert bad.counts == {"empty_file": 1}
    it = iter(pipeline.train_dataset([good, str(empty)], _feat(), 4, seed=0, skip_bad=True))
    next(it)
    assert it.bad_counts() == {"empty_file": 1}


def _wav(rate):
    buf = io.BytesIO()
    sf.write(buf, 0.1 * np.sin(np.arange(rate // 5) / 5.0), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_header_rate_mismatch_is_bad_data_unless_resampling(tmp_path):
    # The record says 16 kHz (what the config reads), the WAV itself is at 8 kHz.
    path = _shard(tmp_path / "r.tfrecord", _record("liar", _wav(8000), rate=SR, fmt="wav"))
    with pytest.raises(audio.AudioDecodeError, match="record 2 .*8000 Hz .*data.resample=True"):
        next(iter(pipeline.train_dataset([path], _feat(), 5, seed=0)))
    it = iter(pipeline.train_dataset([path], _feat(), 5, seed=0, skip_bad=True))
    assert next(it)["valid"].sum() == 4 and it.bad_counts() == {"sample_rate": 1}
    it = iter(pipeline.train_dataset([path], _feat(resample=True), 5, seed=0))
    assert next(it)["valid"].all() and it.bad_counts() == {"resampled": 1}
    bad = pipeline.BadData(skip=True)
    assert sum(len(c) for _, c in pipeline.eval_batches([path], _feat(), 2, bad=bad)) == 4
    assert bad.counts == {"sample_rate": 1}


def test_statistics_pass_honours_skip_bad(tmp_path):
    from strongaudio_jax.train import frontend_stats

    path = _shard(tmp_path / "s.tfrecord", BAD["undecodable_audio"][0])
    overrides = [f"data.train_files={path}", "data.clip_seconds=0.1", "data.batch_size=2"]
    cfg = config.load(f"{REPO}/configs/mtc.py:smoke", overrides)
    from strongaudio_jax.train import step
    with pytest.raises(audio.AudioDecodeError, match="record 2"):
        frontend_stats.stats_from_config(cfg, step.frontend_config(cfg.frontend), False)
    cfg = config.load(f"{REPO}/configs/mtc.py:smoke", overrides + ["data.skip_bad=True"])
    result = frontend_stats.stats_from_config(cfg, step.frontend_config(cfg.frontend), False)
    assert result["count"] > 0


def test_vocabulary_file_that_is_not_json_names_the_file(tmp_path):
    bad = tmp_path / "label_3.json"
    bad.write_text("tone\nnoise\n")
    with pytest.raises(ValueError, match=f"{bad} is not a JSON vocabulary file"):
        pipeline.load_vocabulary(str(bad))


def test_train_files_list_on_the_command_line(tmp_path):
    cfg = config.load(f"{REPO}/configs/mtc.py:smoke",
                      ['data.train_files=["/a/*.tfrecord", "/b/x.tfrecord"]'])
    assert list(cfg.data.train_files) == ["/a/*.tfrecord", "/b/x.tfrecord"]
    with pytest.raises(config.ConfigError, match="expected a int, got list"):
        config.load(f"{REPO}/configs/mtc.py:smoke", ["data.batch_size=[8]"])
    json.dumps(cfg.to_dict())  # (config.json)


def test_inspect_counts_a_damaged_header_and_reads_on(tmp_path):
    from strongaudio_jax.data import inspect_shards

    path = _damaged_header_shard(tmp_path / "h.tfrecord")
    s = inspect_shards.summarize([path])
    assert s["records"] == 6 and s["bad_records"] == 1 and "record 2" in s["problems"][0]


def test_uts_tools_name_a_bad_record_or_skip_and_count_it(tmp_path, capsys):
    """`strongaudio uts tag` and `uts filter` read shards under the same policy: a bad record
    stops the command naming it (and the flag that skips it), --skip-bad counts it."""
    from strongaudio_jax import cli
    from tests.test_pipeline_bad_data import _corrupt_crc_shard

    path = _corrupt_crc_shard(tmp_path / "bad.tfrecord")  # record 2 of good-0..good-4
    tags = tmp_path / "tags.jsonl"
    assert cli.main(["uts", "tag", "--captions", path, "--out", str(tags)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: record 2" in err and "--skip-bad" in err and not tags.exists()
    assert cli.main(["uts", "tag", "--captions", path, "--out", str(tags), "--skip-bad"]) == 0
    assert "skipped 1 bad record(s) {'corrupt_record': 1}" in capsys.readouterr().out
    assert sorted(json.loads(line)["id"] for line in tags.read_text().splitlines()) == [
        f"good-{i}" for i in (0, 1, 3, 4)]

    vocab = tmp_path / "label_1.json"
    vocab.write_text(json.dumps({"0": "a"}))
    index = tmp_path / "index.jsonl"
    assert cli.main(["uts", "filter", "--records", path, "--vocab", str(vocab),
                     "--index", str(index)]) == 2
    assert f"{path}: record 2" in capsys.readouterr().err
    assert cli.main(["uts", "filter", "--records", path, "--vocab", str(vocab),
                     "--index", str(index), "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert "{'corrupt_record': 1}" in out and "4 clips: kept 4" in out


def test_text_vocab_and_demo_task_name_a_bad_record_or_skip_and_count_it(tmp_path, capsys):
    """tools/build_text_vocab.py and eval's demo task read shards under the pipeline's policy."""
    import importlib.util

    from strongaudio_jax.eval import tasks
    from tests.test_pipeline_bad_data import _corrupt_crc_shard

    spec = importlib.util.spec_from_file_location("btv", REPO / "tools" / "build_text_vocab.py")
    btv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(btv)
    path = _corrupt_crc_shard(tmp_path / "train-0.tfrecord")  # record 2 of good-0..good-4
    out = tmp_path / "vocab.txt"
    args = ["--files", str(path), "--out", str(out), "--min-count", "1"]
    assert btv.main(args) == 1
    err = capsys.readouterr().err
    assert f"{path}: record 2" in err and "--skip-bad" in err and not out.exists()
    assert btv.main(args + ["--skip-bad"]) == 0
    assert "skipped 1 bad record(s) {'corrupt_record': 1}" in capsys.readouterr().out
    assert out.exists()

    with pytest.raises(tfrecord.CorruptRecordError, match=r"train-0\.tfrecord: record 2"):
        tasks.load_demo(str(tmp_path))
