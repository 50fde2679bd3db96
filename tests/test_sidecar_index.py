"""Sidecar `<shard>.idx` files (DALI's tfrecord2idx format): indexing a shard with one small
read, written by the importers and `strongaudio index`, refused when stale."""

import numpy as np
import pytest

from strongaudio_jax import cli
from strongaudio_jax.data import index as index_lib, pipeline, tfrecord
from tests.test_pipeline import write_corpus


def test_sidecar_is_dali_format_and_gives_the_scanned_index(tmp_path, monkeypatch):
    path = write_corpus(tmp_path / "a.tfrecord", "a", 5)
    scanned = index_lib.build_index([path])
    assert cli.main(["index", str(tmp_path / "*.tfrecord")]) == 0
    lines = (tmp_path / "a.tfrecord.idx").read_text().splitlines()
    offsets = [int(line.split()[0]) for line in lines]
    sizes = [int(line.split()[1]) for line in lines]
    assert offsets[0] == 0 and sum(sizes) == (tmp_path / "a.tfrecord").stat().st_size
    assert offsets[1:] == list(np.cumsum(sizes)[:-1])  # '<record offset> <record size>'

    def no_scan(*a, **k):
        raise AssertionError("a shard with a sidecar index must not be scanned")

    monkeypatch.setattr(index_lib.tfrecord, "index_records", no_scan)
    from_sidecar = index_lib.build_index([path])
    np.testing.assert_array_equal(from_sidecar.rows, scanned.rows)
    assert from_sidecar.scanned == [] and scanned.scanned == [path]
    # globs and directories do not pick the sidecars up as shards
    assert pipeline.expand_paths(str(tmp_path / "*.tfrecord*")) == [path]
    assert pipeline.expand_paths(str(tmp_path)) == [path]
    assert (index_lib.RecordReader(from_sidecar).read(4)
            == index_lib.RecordReader(scanned).read(4))


def test_gzip_shards_are_skipped_by_the_index_command(tmp_path, capsys):
    with tfrecord.TFRecordWriter(str(tmp_path / "a.tfrecord.gz")) as w:
        w.write(b"record")
    assert cli.main(["index", str(tmp_path)]) == 0
    assert "1 ArrayRecord or GZIP file(s) skipped" in capsys.readouterr().out
    assert not (tmp_path / "a.tfrecord.gz.idx").exists()
    assert index_lib.build_index([str(tmp_path / "a.tfrecord.gz")],
                                 cache_dir=str(tmp_path / "cache")).scanned == []


def test_stale_sidecar_is_a_clear_error(tmp_path, capsys):
    path = write_corpus(tmp_path / "a.tfrecord", "a", 5)
    index_lib.write_sidecar(path)
    write_corpus(tmp_path / "a.tfrecord", "a", 6)  # the shard was rewritten, the index not
    with pytest.raises(ValueError, match=r"a.tfrecord.idx does not describe .*stale.*strongaudio index"):
        index_lib.build_index([path])
    assert cli.main(["index", path]) == 2  # an existing index is checked, not trusted
    assert "stale" in capsys.readouterr().err
    assert cli.main(["index", "--force", path]) == 0
    assert len(index_lib.build_index([path])) == 6


def test_importers_write_the_sidecar_from_the_writer(tmp_path):
    from strongaudio_jax.data import importers

    src = write_corpus(tmp_path / "src.tfrecord", "s", 3)
    from strongaudio_jax.data import schema

    items = []
    for i, data in enumerate(tfrecord.read_records(src)):
        clip = schema.example_to_clip(data)
        items.append(importers.Item(where=f"clip {i}", load=lambda c=clip: c))
    importers.write_shards(items, str(tmp_path / "out"), clips_per_shard=2, progress=False)
    shards = pipeline.expand_paths(str(tmp_path / "out"))
    assert len(shards) == 2
    for shard in shards:
        np.testing.assert_array_equal(index_lib.read_sidecar(shard), tfrecord.index_records(shard))
    # An import stopped between a shard and its index: resuming writes the index only.
    import os
    os.remove(shards[0] + ".idx")
    before = os.stat(shards[0]).st_mtime_ns
    out = importers.write_shards(items, str(tmp_path / "out"), clips_per_shard=2, progress=False)
    assert out["already_complete"] == 2 and os.stat(shards[0]).st_mtime_ns == before
    np.testing.assert_array_equal(index_lib.read_sidecar(shards[0]),
                                  tfrecord.index_records(shards[0]))


def test_a_sidecar_in_a_bucket_spares_reading_the_shard(tmp_path):
    fsspec = pytest.importorskip("fsspec")
    path = write_corpus(tmp_path / "a.tfrecord", "a", 4)
    index_lib.write_sidecar(path)
    fs = fsspec.filesystem("memory")
    for name in ("a.tfrecord", "a.tfrecord.idx"):
        fs.pipe(f"/sidecar-test/{name}", (tmp_path / name).read_bytes())
    monkey = pytest.MonkeyPatch()
    monkey.setattr(index_lib.tfrecord, "index_records",
                   lambda *a, **k: pytest.fail("the shard's headers were read"))
    try:
        remote = index_lib.build_index(["memory://sidecar-test/a.tfrecord"])
    finally:
        monkey.undo()
    np.testing.assert_array_equal(remote.rows[:, 2:], index_lib.build_index([path]).rows[:, 2:])
    assert index_lib.RecordReader(remote).read(3) == index_lib.RecordReader(
        index_lib.build_index([path])).read(3)


def test_remote_shards_without_a_sidecar_are_named(tmp_path):
    fsspec = pytest.importorskip("fsspec")
    from tests.test_pipeline import feat

    path = write_corpus(tmp_path / "a.tfrecord", "a", 8)
    fsspec.filesystem("memory").pipe("/scan-test/a.tfrecord", open(path, "rb").read())
    ds = pipeline.train_dataset(["memory://scan-test/a.tfrecord"], feat(), 4, seed=0)
    assert pipeline.remote_shards_scanned(ds) == ["memory://scan-test/a.tfrecord"]
    index_lib.write_sidecar("memory://scan-test/a.tfrecord")
    ds = pipeline.train_dataset(["memory://scan-test/a.tfrecord"], feat(), 4, seed=0)
    assert pipeline.remote_shards_scanned(ds) == []
    local = pipeline.train_dataset([path], feat(), 4, seed=0)  # local scans are cheap: not named
    assert pipeline.remote_shards_scanned(local) == []
