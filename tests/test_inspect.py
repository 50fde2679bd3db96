"""`strongaudio inspect`: summary of shards (counts, hours, rates, captions, tags, damage) and one record."""

import json

from strongaudio_jax import cli
from strongaudio_jax.data import audio, inspect_shards, schema, tfrecord

import numpy as np


def _corpus(tmp_path):
    path = tmp_path / "c.tfrecord"
    with tfrecord.TFRecordWriter(str(path)) as w:
        for i in range(4):
            rate = 16000 if i < 3 else 8000
            w.write(schema.clip_to_example(schema.Clip(
                id=f"c{i}", audio=audio.encode(np.zeros(rate // 2), rate), format="flac",
                sample_rate=rate, num_samples=rate // 2, caption=" ".join(["w"] * (i + 1)),
                tags=["dog", "bark"] if i % 2 else ["dog"])))
    data = bytearray(path.read_bytes())
    offset = tfrecord.index_records(str(path))[3][0]
    data[offset + 30] ^= 1  # record 3 fails its CRC
    path.write_bytes(bytes(data))
    return str(path)


def test_summary_counts_everything_and_names_damage(tmp_path):
    s = inspect_shards.summarize([_corpus(tmp_path)], top=1)
    assert s["records"] == 3 and s["bad_records"] == 1 and "record 3" in s["problems"][0]
    assert s["hours"] == round(1.5 / 3600, 4) and s["sample_rates"] == {16000: 3}
    assert s["caption_words"]["min"] == 1 and s["caption_words"]["max"] == 3
    assert s["top_tags"] == [("dog", 3)] and s["distinct_tags"] == 2


def test_summary_of_the_tensorflow_fixtures(shared_dir):
    folder = shared_dir / "fixtures" / "tfrecord"
    manifest = json.loads((folder / "manifest.json").read_text())
    s = inspect_shards.summarize([str(folder / "examples.tfrecord"), str(folder / "examples.tfrecord.gz")])
    records = manifest["records"]
    assert s["records"] == 2 * len(records) and s["bad_records"] == 0
    assert s["distinct_tags"] == len({t for r in records for t in r["tags"]})


def test_cli_summary_and_dump(tmp_path, capsys):
    path = _corpus(tmp_path)
    assert cli.main(["inspect", path, "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("3 records in 1 file(s)") and "bad records (corrupt, truncated or unparseable): 1" in out
    assert cli.main(["inspect", path, "--dump", "c1"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["id"] == "c1" and rec["record"] == 1 and rec["tags"] == ["dog", "bark"]
    assert cli.main(["inspect", path, "--dump", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == "c2"
    assert cli.main(["inspect", path, "--dump", "nope"]) == 2
    assert "no record with id or number 'nope'" in capsys.readouterr().err
