"""The input pipeline: featurizer, host split, mixing, exact resume, formats, remote paths."""

import gzip
import shutil

import numpy as np
import pytest

from strongaudio_jax.data import audio, batcher, index as index_lib, loader, pipeline, schema
from strongaudio_jax.data import tfrecord

SR = 16000


def _caption_length(clip):
    return {"caption_len": np.array([len(clip.caption)], np.int32)}


def clip_id(clip):
    """Extra hook exposing the clip id (16 bytes) so tests can see which records a batch holds."""
    return {"id": np.frombuffer(clip.id.encode().ljust(16)[:16], np.uint8).copy()}


def ids_of(batch) -> list[str]:
    return [bytes(r).decode().strip() for r, v in zip(batch["id"], batch["valid"]) if v]


def write_corpus(path, prefix, n, seconds=0.1, rate=SR, tags=("a",)):
    """n short sine clips named <prefix>-<i>, 16-bit FLAC."""
    with tfrecord.TFRecordWriter(str(path)) as w:
        for i in range(n):
            t = np.arange(int(seconds * rate)) / rate
            wave = 0.2 * np.sin(2 * np.pi * (200 + 10 * i) * t)
            w.write(schema.clip_to_example(schema.Clip(
                id=f"{prefix}-{i}", audio=audio.encode(wave, rate), format="flac",
                sample_rate=rate, caption=f"clip {i}", tags=list(tags))))
    return str(path)


def feat(clip_samples=1600, random_crop=True, extra=clip_id, **kw):
    return pipeline.Featurizer({"a": 0, "b": 1}, SR, clip_samples, random_crop, extra=extra, **kw)


# ---------------------------------------------------------------- featurizer


def test_featurizer_extra_hook_adds_fixed_shape_arrays(tiny_corpus):
    files = pipeline.expand_paths(str(tiny_corpus / "train-*.tfrecord"))
    f = pipeline.Featurizer({}, 16000, 16000, False, extra=_caption_length)
    batch, clips = next(pipeline.eval_batches(files, f, 4))
    assert batch["caption_len"].shape == (4, 1)
    assert batch["caption_len"][:, 0].tolist() == [len(c.caption) for c in clips]


def test_featurizer_extra_hook_may_not_overwrite_a_field(tiny_corpus):
    files = pipeline.expand_paths(str(tiny_corpus / "train-*.tfrecord"))
    f = pipeline.Featurizer({}, 16000, 16000, False,
                            extra=lambda clip: {"tags": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match="tags"):
        next(pipeline.eval_batches(files, f, 4))


def test_int16_batches_are_the_float_decode_times_32768(tmp_path):
    path = write_corpus(tmp_path / "c.tfrecord", "c", 8)
    f = feat(random_crop=False)
    b16 = next(iter(pipeline.train_dataset([path], f, 8, 0, wave_dtype="int16")))
    b32 = next(iter(pipeline.train_dataset([path], f, 8, 0, wave_dtype="float32")))
    assert b16["waveform"].dtype == np.int16 and b32["waveform"].dtype == np.float32
    np.testing.assert_array_equal(b16["waveform"].astype(np.float32) / 32768, b32["waveform"])
    # padding beyond each clip's 1600 samples is zero and the length says where it starts
    f2 = feat(clip_samples=2000, random_crop=False)
    b = next(iter(pipeline.train_dataset([path], f2, 8, 0)))
    assert (b["length"] == 1600).all() and not b["waveform"][:, 1600:].any()


def test_global_batch_turns_int16_into_the_same_floats_on_device():
    import jax

    from strongaudio_jax.parallel import mesh as mesh_lib

    mesh = mesh_lib.make_mesh({"data": -1})
    wave = np.random.default_rng(0).integers(-32768, 32767, (8, 100)).astype(np.int16)
    out = mesh_lib.global_batch({"waveform": wave, "length": np.full(8, 100, np.int32)}, mesh)
    assert out["waveform"].dtype == np.float32
    np.testing.assert_array_equal(np.asarray(out["waveform"]), wave.astype(np.float32) / 32768)
    assert len(out["waveform"].sharding.device_set) == jax.device_count()


def test_stereo_is_downmixed_and_other_rates_resampled_or_refused(tmp_path):
    import soundfile as sf
    import io

    t = np.arange(8000) / 8000
    left, right = 0.5 * np.sin(2 * np.pi * 440 * t), np.zeros_like(t)
    buf = io.BytesIO()
    sf.write(buf, np.stack([left, right], 1), 8000, format="FLAC", subtype="PCM_16")
    rec = schema.clip_to_example(schema.Clip(id="st", audio=buf.getvalue(), format="flac",
                                             sample_rate=8000, tags=["a"]))
    f = feat(clip_samples=16000, random_crop=False, extra=None, resample=True)
    row = f((rec, "x record 0"))
    assert row["length"] == 16000  # 1 s at 8 kHz -> 16000 samples at 16 kHz
    ref = 0.25 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)  # (left + right) / 2
    assert np.abs(row["waveform"][500:-500] - ref[500:-500]).max() < 2e-3
    with pytest.raises(audio.AudioDecodeError, match="8000 Hz, but the config expects 16000"):
        feat(extra=None)((rec, "x record 0"))


# ---------------------------------------------------------------- order, epochs, hosts


def test_one_epoch_sees_every_record_once_and_the_next_epoch_reshuffles(tmp_path):
    files = [write_corpus(tmp_path / f"s{i}.tfrecord", f"s{i}", 6) for i in range(4)]
    it = iter(pipeline.train_dataset(files, feat(), 8, seed=3))
    epoch1 = [i for _ in range(3) for i in ids_of(next(it))]
    epoch2 = [i for _ in range(3) for i in ids_of(next(it))]
    everything = sorted(f"s{f}-{i}" for f in range(4) for i in range(6))
    assert sorted(epoch1) == everything and sorted(epoch2) == everything
    assert epoch1 != epoch2 and epoch1 != everything  # shuffled, and differently each epoch


def _fake_index(counts):
    rows = np.concatenate([np.stack([np.full(n, f), np.arange(n), np.zeros(n), np.zeros(n)], 1)
                           for f, n in enumerate(counts)]).astype(np.int64)
    return index_lib.RecordIndex([f"f{i}" for i in range(len(counts))], [], [], rows)


@pytest.mark.parametrize("counts,hosts", [([5, 9, 7, 7, 3, 8, 1, 6], 3), ([4, 4], 2),
                                          ([10, 3], 4), ([7], 2)])
def test_hosts_get_disjoint_shares_that_cover_every_record(counts, hosts):
    idx = _fake_index(counts)
    shares = [pipeline.host_rows(idx, h, hosts) for h in range(hosts)]
    assert sorted(np.concatenate(shares).tolist()) == list(range(sum(counts)))
    files = [set(idx.rows[s, 0].tolist()) for s in shares]
    if len(counts) >= hosts:  # whole files: no file is read by two hosts; loads balanced
        assert all(not (files[a] & files[b]) for a in range(hosts) for b in range(a + 1, hosts))
        sizes = [len(s) for s in shares]
        assert max(sizes) - min(sizes) <= max(counts)
    else:  # fewer files than hosts: every host reads every file, every k-th record
        assert all(len(s) >= sum(counts) // hosts for s in shares)


def test_more_hosts_than_records_is_a_clear_error():
    with pytest.raises(ValueError, match="leaves no records for process 2 of 3"):
        pipeline.host_rows(_fake_index([2]), 2, 3, "speech")


# ---------------------------------------------------------------- mixing


def _spec(sizes, weights, batch=64):
    corpora = [batcher.Corpus(f"c{i}", _fake_index([n]), np.arange(n)) for i, n in enumerate(sizes)]
    w = np.asarray(weights, float)
    return batcher.BatchSpec(corpora, w / w.sum(), 0, batch, feat())


def test_mixing_weights_are_honoured_within_statistical_tolerance():
    spec = _spec([50, 20, 300], [0.6, 0.3, 0.1])
    draws, seen = [0, 0, 0], np.zeros(3)
    for b in range(200):
        which, k, draws = spec.plan(b, draws)
        seen += np.bincount(which, minlength=3)
    frac = seen / seen.sum()  # 12,800 draws: one standard deviation is <= 0.0044
    np.testing.assert_allclose(frac, [0.6, 0.3, 0.1], atol=0.02)
    assert draws == seen.astype(int).tolist()


def test_mixed_batches_draw_each_corpus_in_its_own_epochs(tmp_path):
    speech = write_corpus(tmp_path / "speech.tfrecord", "speech", 12)
    music = write_corpus(tmp_path / "music.tfrecord", "music", 4)
    ds = pipeline.train_dataset({"speech": ([speech], 3.0), "music": ([music], 1.0)}, feat(), 16,
                                seed=1)
    it = iter(ds)
    got = [i for _ in range(8) for i in ids_of(next(it))]
    n_music = sum(i.startswith("music") for i in got)
    assert 16 < n_music < 48  # expected 32 of 128
    first_music = [i for i in got if i.startswith("music")][:4]
    assert sorted(first_music) == [f"music-{i}" for i in range(4)]  # a whole epoch of music first
    assert it.get_state()["draws"] == [128 - n_music, n_music]


# ---------------------------------------------------------------- state and resume


@pytest.mark.parametrize("workers", [0, 2])
def test_restored_iterator_gives_the_identical_next_batch(tmp_path, workers):
    files = [write_corpus(tmp_path / f"s{i}.tfrecord", f"s{i}", 5) for i in range(3)]
    ds = pipeline.train_dataset({"x": (files[:2], 1.0), "y": (files[2:], 1.0)}, feat(), 4, seed=5,
                                workers=workers)
    it = iter(ds)
    for _ in range(3):
        next(it)
    state = it.get_state()
    expected = [{k: v.copy() for k, v in next(it).items()} for _ in range(2)]
    it.close()

    again = iter(pipeline.train_dataset({"x": (files[:2], 1.0), "y": (files[2:], 1.0)}, feat(),
                                        4, seed=5, workers=workers))
    again.set_state(state)
    for want in expected:
        got = next(again)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    again.close()


def test_workers_do_not_change_the_stream(tmp_path):
    files = [write_corpus(tmp_path / f"s{i}.tfrecord", f"s{i}", 6) for i in range(2)]
    streams = []
    for workers in (0, 2):
        it = iter(pipeline.train_dataset(files, feat(), 4, seed=2, workers=workers))
        streams.append([{k: v.copy() for k, v in next(it).items()} for _ in range(4)])
        it.close()
    for a, b in zip(*streams):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize("workers", [0, 2])
def test_tags_outside_the_vocabulary_are_counted_and_survive_a_restore(tmp_path, workers):
    """feat()'s vocabulary is {a, b}: every record of this corpus has two tags it lacks."""
    path = write_corpus(tmp_path / "c.tfrecord", "c", 6, tags=("a", "zebra", "zither"))
    it = iter(pipeline.train_dataset([path], feat(), 4, seed=0, workers=workers))
    batch = next(it)
    np.testing.assert_array_equal(batch["tags"][:, 0], 1)  # "a" still trains
    next(it)
    outside = it.outside_vocab()
    assert (outside.occurrences, outside.records) == (2 * 8, 8)
    assert outside.examples == ("zebra", "zither")
    state = it.get_state()
    it.close()
    again = iter(pipeline.train_dataset([path], feat(), 4, seed=0, workers=workers))
    again.set_state(state)
    next(again)
    assert (again.outside_vocab().occurrences, again.outside_vocab().records) == (2 * 12, 12)
    again.close()


def test_state_from_another_host_count_or_stream_is_refused(tmp_path):
    path = write_corpus(tmp_path / "c.tfrecord", "c", 8)
    it = iter(pipeline.train_dataset([path], feat(), 4, seed=0))
    next(it)
    state = it.get_state()
    with pytest.raises(loader.DataStateError, match="written by a run with 2 process"):
        it.set_state({**state, "process_count": 2})
    other = iter(pipeline.train_dataset([path], feat(), 4, seed=1))
    with pytest.raises(loader.DataStateError, match="another data stream"):
        other.set_state(state)


# ---------------------------------------------------------------- formats and storage


def test_gzip_and_array_record_shards_give_the_same_records(tmp_path):
    plain = write_corpus(tmp_path / "c.tfrecord", "c", 6)
    gz = str(tmp_path / "c2.tfrecord.gz")
    with open(plain, "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    from array_record.python import array_record_module

    ar = str(tmp_path / "c3.array_record")
    w = array_record_module.ArrayRecordWriter(ar, "group_size:1")
    for rec in tfrecord.read_records(plain):
        w.write(rec)
    w.close()
    cache = str(tmp_path / "cache")
    sources = [index_lib.RecordReader(index_lib.build_index([p], cache_dir=cache))
               for p in (plain, gz, ar)]
    for i in range(6):
        assert sources[0].read(i) == sources[1].read(i) == sources[2].read(i)
    assert sources[1].where(2) == f"{gz} record 2"
    assert pipeline.tag_vocabulary([gz, ar]) == ["a"]


def test_shards_in_an_fsspec_filesystem_are_read_through_the_same_layer(tmp_path):
    fsspec = pytest.importorskip("fsspec")
    local = [write_corpus(tmp_path / f"s{i}.tfrecord", f"s{i}", 4) for i in range(2)]
    fs = fsspec.filesystem("memory")
    for p in local:
        with open(p, "rb") as src:
            fs.pipe(f"/bucket/corpus/{p.rsplit('/', 1)[1]}", src.read())
    files = pipeline.expand_paths("memory://bucket/corpus/*.tfrecord")
    assert files == ["memory://bucket/corpus/s0.tfrecord", "memory://bucket/corpus/s1.tfrecord"]
    it = iter(pipeline.train_dataset(files, feat(), 8, seed=0))
    assert sorted(ids_of(next(it))) == sorted(f"s{f}-{i}" for f in range(2) for i in range(4))
    assert pipeline.tag_vocabulary(files) == ["a"]
