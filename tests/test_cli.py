"""Errors a user can cause end as one clear line from `strongaudio`, not a deep traceback."""

import pytest

from strongaudio_jax import cli
from strongaudio_jax.data import audio, schema, tfrecord
from tests.conftest import REPO

CONFIG = f"{REPO}/configs/mtc.py:smoke"


def run(capsys, *argv):
    code = cli.main(list(argv))
    return code, capsys.readouterr().err


def test_missing_corpus_path(capsys, tmp_path):
    code, err = run(capsys, "train", "--config", CONFIG, "--workdir", str(tmp_path),
                    "data.train_files=/nonexistent/train-*.tfrecord")
    assert code == 2
    assert "no TFRecord files match '/nonexistent/train-*.tfrecord'" in err
    assert "Traceback" not in err


def test_unknown_config_key_suggests(capsys, tmp_path):
    code, err = run(capsys, "train", "--config", CONFIG, "--workdir", str(tmp_path),
                    "train.step=5")
    assert code == 2
    assert "has no key 'train.step'" in err and "did you mean train.steps" in err


def test_wrong_value_type(capsys, tmp_path):
    code, err = run(capsys, "train", "--config", CONFIG, "--workdir", str(tmp_path),
                    "train.steps=many")
    assert code == 2 and "train.steps='many': expected a int" in err


def test_unknown_variant_and_missing_file(capsys, tmp_path):
    code, err = run(capsys, "train", "--config", f"{REPO}/configs/mtc.py:huge", "--workdir",
                    str(tmp_path))
    assert code == 2 and "unknown variant 'huge'" in err
    code, err = run(capsys, "train", "--config", "configs/nope.py", "--workdir", str(tmp_path))
    assert code == 2 and "config file 'configs/nope.py' not found" in err


def test_unknown_model_name(capsys, tmp_path, tiny_corpus):
    code, err = run(capsys, "train", "--config", CONFIG, "--workdir", str(tmp_path),
                    f"data.train_files={tiny_corpus}/train-*.tfrecord", "model.name='resnet'")
    assert code == 2 and "unknown model 'resnet'" in err and "'vit'" in err


def test_undecodable_audio_names_the_record(capsys, tmp_path):
    path = tmp_path / "train-00000-of-00001.tfrecord"
    good = audio.encode(__import__("numpy").zeros(16000), 16000)
    with tfrecord.TFRecordWriter(str(path)) as w:
        for i in range(16):
            data = b"this is not a flac file" if i == 5 else good
            w.write(schema.clip_to_example(schema.Clip(
                id=f"c{i}", audio=data, format="flac", sample_rate=16000, tags=["speech"])))
    code, err = run(capsys, "train", "--config", CONFIG, "--workdir", str(tmp_path / "w"),
                    f"data.train_files={path}", "data.batch_size=16", "data.vocab_min_count=1")
    assert code == 2
    assert f"{path} record 5 (clip 'c5'): audio cannot be decoded" in err


def test_wrong_sample_rate_is_refused(capsys, tmp_path):
    path = tmp_path / "train.tfrecord"
    with tfrecord.TFRecordWriter(str(path)) as w:
        for i in range(16):
            w.write(schema.clip_to_example(schema.Clip(
                id=f"c{i}", audio=audio.encode(__import__("numpy").zeros(8000), 8000),
                format="flac", sample_rate=8000, tags=["speech"])))
    code, err = run(capsys, "train", "--config", CONFIG, "--workdir", str(tmp_path / "w"),
                    f"data.train_files={path}", "data.batch_size=16", "data.vocab_min_count=1")
    assert code == 2 and "sample rate 8000 Hz, but the config expects 16000 Hz" in err


@pytest.mark.slow
def test_checkpoint_from_another_model_names_path_and_shapes(capsys, tmp_path, tiny_corpus):
    args = ["train", "--config", CONFIG, "--workdir", str(tmp_path),
            f"data.train_files={tiny_corpus}/train-*.tfrecord", "data.batch_size=8",
            "data.clip_seconds=1.0", "probe.tasks=()", "train.steps=2"]
    assert cli.main(args) == 0
    code, err = run(capsys, *args, "train.steps=4", "model.size='xs'")
    assert code == 2
    assert "does not match this config's model or optimizer" in err
    assert "params/encoder/block0/attn/key/kernel: checkpoint (64, 2, 32), config (128, 4, 32)" in err


@pytest.mark.slow
def test_stats_command_feeds_training(capsys, tmp_path, tiny_corpus):
    import json as _json

    out = tmp_path / "stats.json"
    data = [f"data.train_files={tiny_corpus}/train-*.tfrecord", "data.batch_size=8",
            "data.clip_seconds=1.0"]
    assert cli.main(["stats", "--config", CONFIG, "--out", str(out), *data]) == 0
    saved = _json.load(open(out))
    assert saved["count"] > 1000 and saved["std"] > 0
    assert cli.main(["train", "--config", CONFIG, "--workdir", str(tmp_path / "w"), *data,
                     "probe.tasks=()", "train.steps=2", f"frontend.stats_file={out}"]) == 0
    assert _json.load(open(tmp_path / "w" / "frontend_stats.json")) == saved
    code, err = run(capsys, "train", "--config", CONFIG, "--workdir", str(tmp_path / "x"), *data,
                    "train.steps=2", f"frontend.stats_file={out}", "frontend.preset='kaldi_ast'")
    assert code == 2 and "frontend config" in err
