"""TensorBoard event files written without TensorFlow.

Read back two ways: with the project's TFRecord reader + our Event parser, and (when the
`tensorboard` package is installed; it does not need TensorFlow) with TensorBoard's own
EventAccumulator and its protos, which is what the TensorBoard server does.
"""

import io
import logging
import os
import socket
import struct
import time
import wave
import zlib

import numpy as np
import pytest

from strongaudio_jax.data.tfrecord import read_records
from strongaudio_jax.train import tensorboard as tb

STEPS = [0, 1, 2, 5, 10, 100]


def values_at(step):
    # 0.0 at step 0 checks that a zero scalar is still written (oneof presence).
    return {"train/loss": 0.0 if step == 0 else 1.0 / step, "train/lr": 1e-3 * (step + 1),
            "eval/acc": step / 100.0}


def write_run(logdir):
    with tb.SummaryWriter(logdir) as w:
        for s in STEPS:
            w.scalars(s, values_at(s))
    return w.path


def f32(x):
    return float(np.float32(x))


def tensorboard_or_skip():
    try:
        from tensorboard.backend.event_processing import event_accumulator
    except ImportError as e:
        pytest.skip(f"tensorboard is not installed ({e}); `pip install tensorboard` (no "
                    f"TensorFlow needed) to check the files with TensorBoard's own reader")
    return event_accumulator


def accumulator(logdir):
    ea = tensorboard_or_skip()
    return ea.EventAccumulator(str(logdir), size_guidance=ea.STORE_EVERYTHING_SIZE_GUIDANCE).Reload()


# ------------------------------------------------------------------ our own reader


def test_scalars_read_back_with_project_reader(tmp_path):
    path = write_run(tmp_path)
    name = os.path.basename(path)
    prefix = "events.out.tfevents."
    assert name.startswith(prefix)
    stamp, host = name[len(prefix):].split(".", 1)
    assert abs(int(stamp) - time.time()) < 60 and host == socket.gethostname()
    assert tb.event_files(tmp_path) == [path]

    events = [tb.parse_event(r) for r in read_records(path)]
    assert events[0].WhichOneof("what") == "file_version"
    assert events[0].file_version == "brain.Event:2" and events[0].wall_time > 0
    assert len(events) == 1 + len(STEPS)
    for ev, step in zip(events[1:], STEPS):
        assert ev.step == step and ev.WhichOneof("what") == "summary"
        got = {v.tag: v.simple_value for v in ev.summary.value}
        assert all(v.WhichOneof("value") == "simple_value" for v in ev.summary.value)
        assert got == {k: f32(v) for k, v in values_at(step).items()}
        assert ev.wall_time >= events[0].wall_time


def test_every_call_is_flushed(tmp_path):
    w = tb.SummaryWriter(tmp_path)
    w.scalars(7, {"x": 3.5})
    events = list(tb.read_events(w.path))  # not closed: the data must already be on disk
    assert [e.step for e in events] == [0, 7] and events[1].summary.value[0].simple_value == 3.5
    w.close()
    w.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        w.scalars(8, {"x": 1.0})


def test_writers_in_the_same_second_get_distinct_files(tmp_path):
    a, b = tb.SummaryWriter(tmp_path), tb.SummaryWriter(tmp_path)
    a.scalars(1, {"a": 1.0})
    b.scalars(1, {"b": 2.0})
    a.close(), b.close()
    assert a.path != b.path and all("tfevents" in os.path.basename(p) for p in (a.path, b.path))
    assert [e.summary.value[0].tag for e in list(tb.read_events(a.path))[1:]] == ["a"]
    assert [e.summary.value[0].tag for e in list(tb.read_events(b.path))[1:]] == ["b"]


def test_disabled_writer_touches_nothing(tmp_path):
    logdir = tmp_path / "not_here"
    w = tb.SummaryWriter(logdir, enabled=False)
    w.scalars(1, {"x": 1.0})
    w.text(1, "t", "hi")
    w.hparams({"a": 1})
    w.flush()
    w.close()
    assert w.path is None and not logdir.exists()
    mw = tb.TensorBoardMetricWriter(logdir, enabled=False)
    mw.write_scalars(1, {"x": 1.0})
    mw.write_images(1, {"i": np.zeros((2, 2, 1))})
    mw.close()
    assert not logdir.exists()


def test_scalar_inputs(tmp_path):
    jnp = pytest.importorskip("jax.numpy")
    with tb.SummaryWriter(tmp_path) as w:
        w.scalars(np.int64(3), {"np": np.float64(0.25), "jax": jnp.float32(0.5),
                                "bf16": jnp.asarray(0.75, jnp.bfloat16), "int": 2, "arr1": [4.0],
                                "nan": float("nan")})
        with pytest.raises(ValueError, match="exactly one element"):
            w.scalars(4, {"vec": np.zeros(3)})
    ev = list(tb.read_events(w.path))[1]
    got = {v.tag: v.simple_value for v in ev.summary.value}
    assert ev.step == 3 and np.isnan(got.pop("nan"))
    assert got == {"np": 0.25, "jax": 0.5, "bf16": 0.75, "int": 2.0, "arr1": 4.0}


def test_text_histogram_image_audio_tensor_encodings(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.normal(size=1000)
    img = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    clip = np.clip(rng.normal(scale=0.3, size=(2, 400, 2)), -1, 1).astype(np.float32)
    with tb.SummaryWriter(tmp_path) as w:
        w.text(1, "notes", "héllo **markdown**")
        w.histograms(2, {"w": np.append(data, [np.nan, np.inf]), "empty": np.zeros(0)},
                     num_buckets={"w": 10})
        w.images(3, {"rgb": img, "gray_batch": np.linspace(0, 1, 2 * 4 * 3).reshape(2, 4, 3, 1)})
        w.audios(4, {"clip": clip}, sample_rate=16000)
        w.tensors(5, {"t": np.arange(6, dtype=np.int32).reshape(2, 3)})
    by_step = {e.step: e for e in list(tb.read_events(w.path))[1:]}

    (text,) = by_step[1].summary.value
    assert text.metadata.plugin_data.plugin_name == "text"
    assert text.tensor.dtype == tb.DT_STRING and len(text.tensor.tensor_shape.dim) == 0
    assert text.tensor.string_val[0].decode() == "héllo **markdown**"

    h = {v.tag: v.histo for v in by_step[2].summary.value}
    assert h["w"].num == 1000 and len(h["w"].bucket) == len(h["w"].bucket_limit) == 10
    assert sum(h["w"].bucket) == 1000 and h["w"].bucket_limit[-1] == pytest.approx(data.max())
    assert (h["w"].min, h["w"].max) == (data.min(), data.max())
    assert h["w"].sum == pytest.approx(data.sum()) and h["w"].sum_squares == pytest.approx(
        (data ** 2).sum())
    assert h["empty"].num == 0 and len(h["empty"].bucket) == 0

    images = {v.tag: v.image for v in by_step[3].summary.value}
    assert sorted(images) == ["gray_batch/0", "gray_batch/1", "rgb"]
    assert (images["rgb"].height, images["rgb"].width, images["rgb"].colorspace) == (5, 7, 3)
    np.testing.assert_array_equal(decode_png(images["rgb"].encoded_image_string), img)
    gray = decode_png(images["gray_batch/1"].encoded_image_string)
    np.testing.assert_array_equal(
        gray, np.round(np.linspace(0, 1, 24)[12:].reshape(4, 3, 1) * 255).astype(np.uint8))

    audio = {v.tag: v.audio for v in by_step[4].summary.value}
    assert sorted(audio) == ["clip/0", "clip/1"]
    a = audio["clip/1"]
    assert (a.sample_rate, a.num_channels, a.length_frames, a.content_type) == (
        16000, 2, 400, "audio/wav")
    with wave.open(io.BytesIO(a.encoded_audio_string)) as wf:
        assert (wf.getnchannels(), wf.getsampwidth(), wf.getframerate()) == (2, 2, 16000)
        pcm = np.frombuffer(wf.readframes(wf.getnframes()), "<i2").reshape(-1, 2)
    np.testing.assert_allclose(pcm / 32767.0, clip[1], atol=1 / 32767)

    (t,) = by_step[5].summary.value
    assert t.tensor.dtype == 3 and [d.size for d in t.tensor.tensor_shape.dim] == [2, 3]
    np.testing.assert_array_equal(np.frombuffer(t.tensor.tensor_content, "<i4"), np.arange(6))


def decode_png(data: bytes) -> np.ndarray:
    """Enough of a PNG decoder for what encode_png writes (8-bit, filter type 0)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        (n,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body, crc = data[pos + 8:pos + 8 + n], data[pos + 8 + n:pos + 12 + n]
        assert struct.unpack(">I", crc)[0] == zlib.crc32(kind + body) & 0xFFFFFFFF
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, color = ihdr[:4]
    c = {0: 1, 4: 2, 2: 3, 6: 4}[color]
    assert depth == 8
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + w * c)
    assert (rows[:, 0] == 0).all()
    return rows[:, 1:].reshape(h, w, c)


def test_hparams_markdown():
    md = tb.hparams_markdown({"optim": {"lr": 1e-3, "name": "adam|w"}, "depth": 12})
    assert md.splitlines() == ["| name | value |", "|---|---|", "| depth | 12 |",
                               "| optim.lr | 0.001 |", "| optim.name | adam\\|w |"]


def test_writing_1000_scalar_events_is_fast(tmp_path):
    w = tb.SummaryWriter(tmp_path)
    t0 = time.perf_counter()
    for step in range(1000):
        w.scalars(step, {"loss": 1.0 / (step + 1)})
    w.close()
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.5, f"1000 scalar events took {elapsed:.3f} s"
    assert sum(1 for _ in read_records(w.path)) == 1001


# ------------------------------------------------------------------ clu MetricWriter


def test_metric_writer_in_clu_multiwriter(tmp_path, caplog):
    from clu.metric_writers import interface, multi_writer, logging_writer
    tbw = tb.TensorBoardMetricWriter(tmp_path)
    assert isinstance(tbw, interface.MetricWriter)
    w = multi_writer.MultiWriter([logging_writer.LoggingWriter(), tbw])
    w.write_hparams({"lr": 0.1, "model": {"depth": 4}})
    for s in (1, 2, 3):
        w.write_scalars(s, {"loss": float(s)})
    w.write_texts(3, {"sample": "text"})
    w.write_histograms(3, {"w": np.arange(10.0)}, num_buckets={"w": 5})
    w.write_images(3, {"img": np.zeros((1, 2, 2, 3), np.float32)})
    w.write_audios(3, {"snd": np.zeros((1, 8, 1))}, sample_rate=8000)
    w.write_summaries(3, {"raw": np.ones(2, np.float32)})
    with caplog.at_level(logging.WARNING, logger=tb.__name__):
        w.write_videos(3, {"vid": np.zeros((1, 2, 2, 2, 3))})
        w.write_videos(4, {"vid": np.zeros((1, 2, 2, 2, 3))})
    assert sum("does not write videos" in r.getMessage() for r in caplog.records) == 1
    w.close()

    events = list(tb.read_events(tbw.writer.path))
    tags = [(e.step, v.tag) for e in events[1:] for v in e.summary.value]
    assert tags == [(0, "hparams"), (1, "loss"), (2, "loss"), (3, "loss"), (3, "sample"),
                    (3, "w"), (3, "img"), (3, "snd"), (3, "raw")]
    table = events[1].summary.value[0].tensor.string_val[0].decode()
    assert "| lr | 0.1 |" in table and "| model.depth | 4 |" in table


def test_create_default_writer_async(tmp_path):
    w = tb.create_default_writer(tmp_path, enabled=True, asynchronous=True)
    w.write_scalars(1, {"a": 1.0})
    w.flush()
    w.close()
    (path,) = tb.event_files(tmp_path)
    assert [(e.step, e.summary.value[0].simple_value) for e in list(tb.read_events(path))[1:]] == [
        (1, 1.0)]
    w = tb.create_default_writer(tmp_path / "off", enabled=False, asynchronous=False)
    w.write_scalars(1, {"a": 1.0})
    w.close()
    assert not (tmp_path / "off").exists()


def test_clu_tf_summary_writer_points_here():
    import clu.metric_writers as mw
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="TensorBoardMetricWriter"):
            mw.SummaryWriter
    assert mw.MultiWriter and mw.AsyncMultiWriter and mw.LoggingWriter and mw.MetricWriter


# ------------------------------------------------------------------ real TensorBoard


def test_wire_format_matches_tensorboard_protos(tmp_path):
    tensorboard_or_skip()
    from tensorboard.compat.proto import event_pb2, summary_pb2
    path = write_run(tmp_path)
    ours = list(read_records(path))
    theirs = [event_pb2.Event.FromString(r) for r in ours]
    assert theirs[0].file_version == "brain.Event:2"
    for rec, ev in zip(ours, theirs):
        assert ev.SerializeToString() == rec  # same field numbers and wire types, byte for byte
    # and the other way: a TensorBoard-built event parses into ours field for field
    ref = event_pb2.Event(wall_time=1.5, step=9, summary=summary_pb2.Summary(value=[
        summary_pb2.Summary.Value(tag="x", simple_value=0.0),
        summary_pb2.Summary.Value(tag="h", histo=summary_pb2.HistogramProto(
            min=0, max=2, num=3, sum=3, sum_squares=5, bucket_limit=[1, 2], bucket=[1, 2]))]))
    mine = tb.parse_event(ref.SerializeToString())
    assert mine.SerializeToString() == ref.SerializeToString()
    assert (mine.step, mine.summary.value[0].WhichOneof("value")) == (9, "simple_value")
    assert list(mine.summary.value[1].histo.bucket) == [1, 2]


def test_tensorboard_event_accumulator_reads_scalars(tmp_path):
    write_run(tmp_path)
    acc = accumulator(tmp_path)
    assert acc.file_version == 2.0
    assert sorted(acc.Tags()["scalars"]) == ["eval/acc", "train/loss", "train/lr"]
    for tag in ("train/loss", "train/lr", "eval/acc"):
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        assert got == [(s, f32(values_at(s)[tag])) for s in STEPS]


def test_tensorboard_reads_every_kind(tmp_path):
    tensorboard_or_skip()
    from tensorboard.backend.event_processing import plugin_event_accumulator as pea
    from tensorboard.util import tensor_util
    mw = tb.TensorBoardMetricWriter(tmp_path)
    mw.write_scalars(1, {"loss": 0.5})
    mw.write_texts(1, {"note": "**bold**"})
    mw.write_hparams({"lr": 0.01})
    mw.write_histograms(1, {"w": np.arange(100.0)})
    mw.write_images(1, {"img": np.ones((4, 4, 3), np.float32)})
    mw.write_audios(1, {"snd": np.zeros((1, 160, 1))}, sample_rate=16000)
    mw.close()

    acc = accumulator(tmp_path)
    assert [e.value for e in acc.Scalars("loss")] == [0.5]
    note = acc.Tensors("note")[0]
    assert tensor_util.make_ndarray(note.tensor_proto).item() == b"**bold**"
    assert acc.SummaryMetadata("note").plugin_data.plugin_name == "text"
    assert b"| lr | 0.01 |" in tensor_util.make_ndarray(acc.Tensors("hparams")[0].tensor_proto).item()
    assert acc.Histograms("w")[0].histogram_value.num == 100
    assert (acc.Images("img")[0].width, acc.Images("img")[0].height) == (4, 4)
    assert acc.Audio("snd")[0].length_frames == 160

    # The TensorBoard server's path: legacy values migrated to plugin tensors.
    pacc = pea.EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    pacc.Reload()
    plugins = {p: sorted(pacc.PluginTagToContent(p))
               for p in ("scalars", "text", "histograms", "images", "audio")}
    assert plugins == {"scalars": ["loss"], "text": ["hparams", "note"], "histograms": ["w"],
                       "images": ["img"], "audio": ["snd"]}
    assert tensor_util.make_ndarray(pacc.Tensors("loss")[0].tensor_proto).item() == 0.5


def test_tensorboard_decodes_our_tensors():
    tensorboard_or_skip()
    from tensorboard.compat.proto import tensor_pb2
    from tensorboard.util import tensor_util
    jnp = pytest.importorskip("jax.numpy")
    cases = [np.arange(6, dtype=np.float32).reshape(2, 3), np.array(2.5), np.int64([1, -2]),
             np.uint8([0, 255]), np.float16([0.5]), np.array([True, False]),
             np.array(["a", "bé"]), jnp.asarray([1.5, 2.0], jnp.bfloat16)]
    for a in cases:
        proto = tensor_pb2.TensorProto.FromString(tb.make_tensor(a).SerializeToString())
        got = tensor_util.make_ndarray(proto)
        want = np.asarray(a)
        if want.dtype.kind == "U":
            want = np.char.encode(want, "utf-8").astype(object)
        elif want.dtype.name == "bfloat16":
            want = want.astype(np.float32)
        assert got.shape == want.shape and got.dtype == want.dtype, a
        np.testing.assert_array_equal(got, want)
    with pytest.raises(TypeError, match="str or bytes"):
        tb.make_tensor(np.array([1, "a"], dtype=object))
