"""TensorBoard event files without TensorFlow.

An event file is a TFRecord file (written with `strongaudio_jax.data.tfrecord.TFRecordWriter`)
whose records are serialised `Event` protos; the first one carries `file_version:
"brain.Event:2"`. The message classes are built at import time from a hand-written descriptor
that mirrors tensorflow/core/util/event.proto, tensorflow/core/framework/summary.proto,
histogram.proto, tensor.proto and tensor_shape.proto (field numbers and wire types checked
against the copies TensorBoard ships), in a private DescriptorPool under a private package
name, as `strongaudio_jax.data.example_proto` does. Only the fields we write are declared;
unknown fields in files written by others are kept by protobuf and ignored.

What is written, and how TensorBoard shows it:
  scalars     Summary.Value.simple_value (float32)      -> Scalars dashboard
  text        DT_STRING tensor, plugin "text"           -> Text dashboard (markdown)
  histograms  Summary.Value.histo (HistogramProto)      -> Histograms / Distributions
  images      Summary.Value.image (PNG, encoded here)   -> Images dashboard
  audio       Summary.Value.audio (16-bit PCM WAV)      -> Audio dashboard
  hparams     a markdown table under the text tag "hparams" (not the HParams dashboard)
  summaries   any numeric/string array as a TensorProto with caller-supplied metadata

`SummaryWriter` is the small direct API; `TensorBoardMetricWriter` implements clu's
`MetricWriter` so it composes with clu's `MultiWriter`, `AsyncMultiWriter` and `LoggingWriter`.

clu 0.0.12's `clu/metric_writers/__init__.py` imports its TF summary writer, so without
TensorFlow *any* `import clu.metric_writers.<x>` fails. When (and only when) that import fails
because `tensorflow` is missing, importing this module registers the package
`clu.metric_writers` without running its `__init__`; its TF-free submodules (interface,
multi_writer, async_writer, logging_writer) then import normally and the usual names
(`MetricWriter`, `MultiWriter`, `AsyncMultiWriter`, `AsyncWriter`, `ensure_flushes`,
`LoggingWriter`) resolve lazily on the package. `clu.metric_writers.SummaryWriter` raises an
ImportError that points here. With TensorFlow installed nothing is patched.

Paths are local (plain `open`); only process 0 should write: pass `enabled=jax.process_index()
== 0` (a disabled writer creates no directory or file and ignores every call).
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import logging
import os
import socket
import struct
import sys
import threading
import time
import wave
import zlib
from typing import Any, Iterator, Mapping, Optional

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from strongaudio_jax.data.tfrecord import TFRecordWriter, read_records

_log = logging.getLogger(__name__)

FILE_VERSION = "brain.Event:2"
HPARAMS_TAG = "hparams"
DEFAULT_HISTOGRAM_BUCKETS = 30  # tf.summary.histogram's default

# --------------------------------------------------------------------------- messages

_PACKAGE = "strongaudio_jax.tfevent"
_F = descriptor_pb2.FieldDescriptorProto
_OPT, _REP = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
_DOUBLE, _FLOAT, _INT64, _INT32 = _F.TYPE_DOUBLE, _F.TYPE_FLOAT, _F.TYPE_INT64, _F.TYPE_INT32
_STRING, _BYTES, _MSG, _BOOL = _F.TYPE_STRING, _F.TYPE_BYTES, _F.TYPE_MESSAGE, _F.TYPE_BOOL
_UINT32, _UINT64 = _F.TYPE_UINT32, _F.TYPE_UINT64


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    # proto3 as in TF. Enum fields (TensorProto.dtype, SummaryMetadata.data_class) are declared
    # int32: same varint on the wire, no enum descriptors needed.
    fd = descriptor_pb2.FileDescriptorProto(
        name="strongaudio_jax/tfevent.proto", package=_PACKAGE, syntax="proto3")

    def add(container, name, fields, oneofs=()):
        """fields: (name, number, type, label, type_name, oneof_index or None, packed)."""
        m = container.add(name=name)
        for oneof in oneofs:
            m.oneof_decl.add(name=oneof)
        for fname, number, ftype, label, type_name, oneof, packed in fields:
            f = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = f".{_PACKAGE}.{type_name}"
            if oneof is not None:
                f.oneof_index = oneof
            if packed:
                f.options.packed = True
        return m

    def fields(*specs):  # (name, number, type[, label, type_name, oneof, packed])
        return [tuple(s) + (_OPT, None, None, False)[len(s) - 3:] for s in specs]

    # tensorflow/core/framework/tensor_shape.proto
    shape = add(fd.message_type, "TensorShapeProto", fields(
        ("dim", 2, _MSG, _REP, "TensorShapeProto.Dim"),
        ("unknown_rank", 3, _BOOL)))
    add(shape.nested_type, "Dim", fields(("size", 1, _INT64), ("name", 2, _STRING)))
    # tensorflow/core/framework/tensor.proto (the commonly used subset)
    add(fd.message_type, "TensorProto", fields(
        ("dtype", 1, _INT32),
        ("tensor_shape", 2, _MSG, _OPT, "TensorShapeProto"),
        ("version_number", 3, _INT32),
        ("tensor_content", 4, _BYTES),
        ("half_val", 13, _INT32, _REP, None, None, True),
        ("float_val", 5, _FLOAT, _REP, None, None, True),
        ("double_val", 6, _DOUBLE, _REP, None, None, True),
        ("int_val", 7, _INT32, _REP, None, None, True),
        ("string_val", 8, _BYTES, _REP),
        ("int64_val", 10, _INT64, _REP, None, None, True),
        ("bool_val", 11, _BOOL, _REP, None, None, True),
        ("uint32_val", 16, _UINT32, _REP, None, None, True),
        ("uint64_val", 17, _UINT64, _REP, None, None, True)))
    # tensorflow/core/framework/histogram.proto
    add(fd.message_type, "HistogramProto", fields(
        ("min", 1, _DOUBLE), ("max", 2, _DOUBLE), ("num", 3, _DOUBLE), ("sum", 4, _DOUBLE),
        ("sum_squares", 5, _DOUBLE),
        ("bucket_limit", 6, _DOUBLE, _REP, None, None, True),
        ("bucket", 7, _DOUBLE, _REP, None, None, True)))
    # tensorflow/core/framework/summary.proto
    metadata = add(fd.message_type, "SummaryMetadata", fields(
        ("plugin_data", 1, _MSG, _OPT, "SummaryMetadata.PluginData"),
        ("display_name", 2, _STRING),
        ("summary_description", 3, _STRING),
        ("data_class", 4, _INT32)))
    add(metadata.nested_type, "PluginData", fields(("plugin_name", 1, _STRING),
                                                   ("content", 2, _BYTES)))
    summary = add(fd.message_type, "Summary", fields(("value", 1, _MSG, _REP, "Summary.Value")))
    add(summary.nested_type, "Image", fields(
        ("height", 1, _INT32), ("width", 2, _INT32), ("colorspace", 3, _INT32),
        ("encoded_image_string", 4, _BYTES)))
    add(summary.nested_type, "Audio", fields(
        ("sample_rate", 1, _FLOAT), ("num_channels", 2, _INT64), ("length_frames", 3, _INT64),
        ("encoded_audio_string", 4, _BYTES), ("content_type", 5, _STRING)))
    # The oneof matters: it gives simple_value explicit presence, so a 0.0 is still written.
    add(summary.nested_type, "Value", fields(
        ("node_name", 7, _STRING),
        ("tag", 1, _STRING),
        ("metadata", 9, _MSG, _OPT, "SummaryMetadata"),
        ("simple_value", 2, _FLOAT, _OPT, None, 0),
        ("obsolete_old_style_histogram", 3, _BYTES, _OPT, None, 0),
        ("image", 4, _MSG, _OPT, "Summary.Image", 0),
        ("histo", 5, _MSG, _OPT, "HistogramProto", 0),
        ("audio", 6, _MSG, _OPT, "Summary.Audio", 0),
        ("tensor", 8, _MSG, _OPT, "TensorProto", 0)), oneofs=("value",))
    # tensorflow/core/util/event.proto (graph_def, log_message, session_log, run metadata,
    # meta_graph_def and source_metadata are not declared; readers keep them as unknown fields)
    add(fd.message_type, "Event", fields(
        ("wall_time", 1, _DOUBLE),
        ("step", 2, _INT64),
        ("file_version", 3, _STRING, _OPT, None, 0),
        ("summary", 5, _MSG, _OPT, "Summary", 0)), oneofs=("what",))
    return fd


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file_descriptor())


def _cls(name):
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{_PACKAGE}.{name}"))


Event = _cls("Event")
Summary = _cls("Summary")
SummaryMetadata = _cls("SummaryMetadata")
HistogramProto = _cls("HistogramProto")
TensorProto = _cls("TensorProto")

# tensorflow/core/framework/types.proto DataType values
_DT = {"float32": 1, "float64": 2, "int32": 3, "uint8": 4, "int16": 5, "int8": 6, "complex64": 8,
       "int64": 9, "bool": 10, "bfloat16": 14, "uint16": 17, "complex128": 18, "float16": 19,
       "uint32": 22, "uint64": 23}
DT_STRING = 7
_DATA_CLASS_TENSOR = 2  # summary.proto DataClass


def parse_event(data: bytes) -> Event:
    """One event-file record -> `Event` (raises protobuf's DecodeError on malformed data)."""
    return Event.FromString(data)


def read_events(path) -> Iterator[Event]:
    """Every `Event` in one event file, in order (TFRecord CRCs verified)."""
    for record in read_records(path):
        yield parse_event(record)


def event_files(logdir) -> list[str]:
    """The event files in `logdir` (not recursive), oldest name first."""
    logdir = os.fspath(logdir)
    return sorted(os.path.join(logdir, n) for n in os.listdir(logdir) if "tfevents" in n)


# --------------------------------------------------------------------------- encoders


def _as_array(value) -> np.ndarray:
    return np.asarray(value)  # jax arrays: one device->host copy


def _scalar(tag: str, value) -> float:
    a = _as_array(value)
    if a.size != 1:
        raise ValueError(f"scalar {tag!r} must have exactly one element, got shape {a.shape}")
    return float(a.reshape(()).astype(np.float64))  # also bfloat16, bool and int


def text_tensor(text: str) -> TensorProto:
    """A scalar DT_STRING tensor (what tf.summary.text writes)."""
    t = TensorProto(dtype=DT_STRING)
    t.tensor_shape.SetInParent()
    t.string_val.append(text.encode("utf-8"))
    return t


def text_metadata() -> SummaryMetadata:
    m = SummaryMetadata(data_class=_DATA_CLASS_TENSOR)
    m.plugin_data.plugin_name = "text"  # content: TextPluginData(version=0) serialises to b""
    return m


def make_tensor(value) -> TensorProto:
    """A TensorProto from an array: numbers as little-endian `tensor_content`, strings as
    `string_val` (str is UTF-8 encoded). bfloat16 is written as float32, since TensorBoard
    cannot decode DT_BFLOAT16."""
    a = _as_array(value)
    if a.dtype.name == "bfloat16":
        a = a.astype(np.float32)
    t = TensorProto()
    for d in a.shape:
        t.tensor_shape.dim.add(size=int(d))
    t.tensor_shape.SetInParent()
    if a.dtype.kind in "USO":
        t.dtype = DT_STRING
        items = a.reshape(-1).tolist()
        if not all(isinstance(v, (str, bytes)) for v in items):
            raise TypeError("an object array must hold only str or bytes")
        t.string_val.extend(v.encode("utf-8") if isinstance(v, str) else v for v in items)
        return t
    if a.dtype.name not in _DT:
        raise TypeError(f"no TensorFlow dtype for numpy dtype {a.dtype}")
    t.dtype = _DT[a.dtype.name]
    t.tensor_content = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<"), copy=False) \
        .tobytes()
    return t


def _metadata(md) -> Optional[SummaryMetadata]:
    """SummaryMetadata from ours, any protobuf SummaryMetadata (e.g. TensorBoard's) or bytes."""
    if md is None or isinstance(md, SummaryMetadata):
        return md
    data = md if isinstance(md, (bytes, bytearray)) else md.SerializeToString()
    return SummaryMetadata.FromString(bytes(data))


def histogram_proto(values, num_buckets: Optional[int] = None) -> HistogramProto:
    """Equal-width buckets over [min, max] of the finite values (NaN and inf are dropped).

    `bucket_limit[i]` is the right edge of `bucket[i]`, the legacy TF layout TensorBoard reads.
    """
    a = _as_array(values).reshape(-1)
    a = a.astype(np.float64)
    a = a[np.isfinite(a)]
    h = HistogramProto()
    if a.size == 0:
        return h
    counts, edges = np.histogram(a, bins=int(num_buckets or DEFAULT_HISTOGRAM_BUCKETS))
    h.min, h.max, h.num = float(a.min()), float(a.max()), float(a.size)
    h.sum, h.sum_squares = float(a.sum()), float(np.dot(a, a))
    h.bucket_limit.extend(edges[1:].tolist())
    h.bucket.extend(counts.astype(np.float64).tolist())
    return h


def _to_uint8(a: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] (clipped) -> 0..255; uint8 kept; other ints/bools clipped."""
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if a.dtype.kind == "f" or a.dtype.name == "bfloat16":
        return np.round(np.clip(a.astype(np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
    if a.dtype.kind in "iu":
        return np.clip(a, 0, 255).astype(np.uint8)
    raise TypeError(f"cannot make an image from dtype {a.dtype}")


_PNG_COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (gray, gray+a, rgb, rgba)


def encode_png(image) -> bytes:
    """[H, W] or [H, W, C] (C in 1..4) image -> 8-bit PNG bytes (stdlib zlib only)."""
    a = _to_uint8(_as_array(image))
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in _PNG_COLOR_TYPE:
        raise ValueError(f"image must be [H, W] or [H, W, C] with C in 1..4, got {a.shape}")
    h, w, c = a.shape
    rows = np.concatenate([np.zeros((h, 1), np.uint8), a.reshape(h, w * c)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, _PNG_COLOR_TYPE[c], 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b""))


def encode_wav(audio, sample_rate: int) -> bytes:
    """[T, C] float audio in [-1, 1] (clipped) -> 16-bit PCM WAV bytes."""
    a = _as_array(audio)
    if a.ndim != 2:
        raise ValueError(f"audio clip must be [T, C], got shape {a.shape}")
    pcm = np.round(np.clip(a.astype(np.float32), -1.0, 1.0) * 32767.0).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(a.shape[1])
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def _sample_tags(tag: str, n: int) -> list[str]:
    return [tag] if n == 1 else [f"{tag}/{i}" for i in range(n)]


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) or callable(getattr(v, "items", None)):  # e.g. ConfigDict
            out.update(_flatten(dict(v.items()), key + "."))
        else:
            out[key] = v
    return out


def hparams_markdown(hparams: Mapping[str, Any]) -> str:
    """Nested mappings flattened to dotted keys, sorted, as a two-column markdown table."""
    def cell(v) -> str:
        return str(v).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
    rows = [f"| {cell(k)} | {cell(v)} |" for k, v in sorted(_flatten(hparams).items())]
    return "\n".join(["| name | value |", "|---|---|", *rows])


# --------------------------------------------------------------------------- writer


class SummaryWriter:
    """Appends events to `<logdir>/events.out.tfevents.<int(time)>.<hostname>[.n]`.

    Each write call becomes one `Event` (all its values share the step and wall time) and is
    flushed to the OS before the call returns, so TensorBoard sees it at once and a crash loses
    nothing already written. Thread-safe. enabled=False: a no-op writer (for processes != 0).
    A suffix `.1`, `.2`, ... is added when another writer made a file of the same name.
    """

    def __init__(self, logdir, *, enabled: bool = True, filename_suffix: str = ""):
        self.logdir = os.fspath(logdir)
        self.enabled = bool(enabled)
        self.path: Optional[str] = None
        self._writer: Optional[TFRecordWriter] = None
        self._lock = threading.Lock()
        self._closed = False
        if not self.enabled:
            return
        os.makedirs(self.logdir, exist_ok=True)
        base = os.path.join(
            self.logdir, f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}")
        path, n = base + filename_suffix, 0
        while True:
            try:  # 'x' claims the name atomically; TFRecordWriter then reopens it for writing
                with open(path, "xb"):
                    break
            except FileExistsError:
                n += 1
                path = f"{base}.{n}{filename_suffix}"
        self.path = path
        self._writer = TFRecordWriter(path, compression="")
        self._write_events([Event(wall_time=time.time(), file_version=FILE_VERSION)])

    # -- core

    def _write_events(self, events) -> None:
        if not self.enabled:
            return
        records = [e.SerializeToString() for e in events]
        with self._lock:
            if self._closed:
                raise ValueError(f"SummaryWriter for {self.logdir} is closed")
            for r in records:
                self._writer.write(r)
            # TFRecordWriter has no public flush; its file object is the only buffer.
            self._writer.flush()

    def write_values(self, step: int, values) -> None:
        """Writes `Summary.Value`s (ours) as one event at `step`."""
        if not self.enabled:
            return
        event = Event(wall_time=time.time(), step=int(step))
        event.summary.value.extend(values)
        self._write_events([event])

    def _value(self, tag: str, **kw):
        return Summary.Value(tag=str(tag), **kw)

    # -- public API

    def scalars(self, step: int, values: Mapping[str, Any]) -> None:
        """One float32 `simple_value` per tag (Python numbers, numpy or jax scalars)."""
        if not self.enabled:
            return
        self.write_values(step, [self._value(t, simple_value=_scalar(t, v))
                                 for t, v in values.items()])

    def scalar(self, step: int, tag: str, value) -> None:
        self.scalars(step, {tag: value})

    def text(self, step: int, tag: str, text: str) -> None:
        """Markdown text for TensorBoard's Text dashboard."""
        self.texts(step, {tag: text})

    def texts(self, step: int, texts: Mapping[str, str]) -> None:
        if not self.enabled:
            return
        self.write_values(step, [self._value(t, tensor=text_tensor(str(s)),
                                             metadata=text_metadata())
                                 for t, s in texts.items()])

    def histograms(self, step: int, arrays: Mapping[str, Any],
                   num_buckets: Optional[Mapping[str, int]] = None) -> None:
        if not self.enabled:
            return
        nb = num_buckets or {}
        self.write_values(step, [self._value(t, histo=histogram_proto(a, nb.get(t)))
                                 for t, a in arrays.items()])

    def images(self, step: int, images: Mapping[str, Any]) -> None:
        """[H, W, C] or [N, H, W, C] (C in 1..4); float in [0, 1] or uint8. N > 1 images are
        written under `<tag>/0` ... `<tag>/<N-1>`."""
        if not self.enabled:
            return
        values = []
        for tag, batch in images.items():
            a = _as_array(batch)
            if a.ndim == 3:
                a = a[None]
            if a.ndim != 4:
                raise ValueError(f"image {tag!r} must be [H, W, C] or [N, H, W, C], got {a.shape}")
            for t, img in zip(_sample_tags(tag, a.shape[0]), a):
                image = Summary.Image(height=img.shape[0], width=img.shape[1],
                                      colorspace=img.shape[2], encoded_image_string=encode_png(img))
                values.append(self._value(t, image=image))
        self.write_values(step, values)

    def audios(self, step: int, audios: Mapping[str, Any], *, sample_rate: int) -> None:
        """[N, T, C] float audio in [-1, 1], as 16-bit WAV; N > 1 clips under `<tag>/<i>`."""
        if not self.enabled:
            return
        values = []
        for tag, batch in audios.items():
            a = _as_array(batch)
            if a.ndim != 3:
                raise ValueError(f"audio {tag!r} must be [N, T, C], got shape {a.shape}")
            for t, clip in zip(_sample_tags(tag, a.shape[0]), a):
                audio = Summary.Audio(sample_rate=float(sample_rate), num_channels=clip.shape[1],
                                      length_frames=clip.shape[0], content_type="audio/wav",
                                      encoded_audio_string=encode_wav(clip, sample_rate))
                values.append(self._value(t, audio=audio))
        self.write_values(step, values)

    def tensors(self, step: int, tensors: Mapping[str, Any],
                metadata: Optional[Mapping[str, Any]] = None) -> None:
        """Arbitrary tensors; metadata[tag] is a SummaryMetadata (ours, TensorBoard's, or its
        serialised bytes) naming the plugin that reads it."""
        if not self.enabled:
            return
        md = metadata or {}
        values = []
        for tag, a in tensors.items():
            v = self._value(tag, tensor=make_tensor(a))
            m = _metadata(md.get(tag))
            if m is not None:
                v.metadata.CopyFrom(m)
            values.append(v)
        self.write_values(step, values)

    def hparams(self, hparams: Mapping[str, Any], step: int = 0) -> None:
        """Hyper-parameters as a markdown table under the text tag 'hparams'."""
        self.text(step, HPARAMS_TAG, hparams_markdown(hparams))

    def flush(self) -> None:
        """Every write call already flushes; kept for the MetricWriter contract."""
        with self._lock:
            if self._writer is not None and not self._closed:
                self._writer.flush()

    def close(self) -> None:
        """Idempotent; writing after close raises ValueError."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._writer is not None:
                self._writer.close()

    def __enter__(self) -> "SummaryWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- clu


def _tensorflow_missing(e: BaseException) -> bool:
    return isinstance(e, ModuleNotFoundError) and (e.name or "").split(".")[0] == "tensorflow"


_CLU_EXPORTS = {"MetricWriter": "interface", "MultiWriter": "multi_writer",
                "AsyncWriter": "async_writer", "AsyncMultiWriter": "async_writer",
                "ensure_flushes": "async_writer", "LoggingWriter": "logging_writer"}
_CLU_NEEDS_TF = ("SummaryWriter", "create_default_writer", "write_values")


def _clu_getattr(name: str):
    pkg = "clu.metric_writers"
    if name in _CLU_EXPORTS:
        return getattr(importlib.import_module(f"{pkg}.{_CLU_EXPORTS[name]}"), name)
    if f"{pkg}.{name}" in sys.modules:
        return sys.modules[f"{pkg}.{name}"]
    if name in _CLU_NEEDS_TF:
        raise ImportError(
            f"{pkg}.{name} needs TensorFlow, which is not installed. Use "
            f"strongaudio_jax.train.tensorboard.TensorBoardMetricWriter"
            f"{' / create_default_writer' if name == 'create_default_writer' else ''} instead.")
    raise AttributeError(f"module {pkg!r} has no attribute {name!r}")


def _import_clu_interface():
    """clu.metric_writers.interface, registering a TF-free package first if TF is missing."""
    try:
        importlib.import_module("clu.metric_writers")
    except ImportError as e:
        if not _tensorflow_missing(e):
            raise
        import clu
        spec = importlib.util.find_spec("clu.metric_writers")
        pkg = importlib.util.module_from_spec(spec)  # sets __path__, does not run __init__
        pkg.__getattr__ = _clu_getattr
        pkg.__doc__ = ("clu.metric_writers registered by strongaudio_jax.train.tensorboard "
                       "without its __init__ (TensorFlow is not installed).")
        sys.modules[spec.name] = pkg
        clu.metric_writers = pkg
    return importlib.import_module("clu.metric_writers.interface")


_interface = _import_clu_interface()


class TensorBoardMetricWriter(_interface.MetricWriter):
    """clu `MetricWriter` over `SummaryWriter`; combine with clu's MultiWriter/AsyncMultiWriter.

    Videos are not supported: write_videos logs one warning and writes nothing (clu's own TF
    writer does the same). Hyper-parameters go to the Text dashboard as a table, not to the
    HParams dashboard.
    """

    def __init__(self, logdir, *, enabled: bool = True):
        super().__init__()
        self.writer = SummaryWriter(logdir, enabled=enabled)
        self._warned_videos = False

    def write_summaries(self, step: int, values: Mapping[str, Any],
                        metadata: Optional[Mapping[str, Any]] = None):
        self.writer.tensors(step, values, metadata)

    def write_scalars(self, step: int, scalars: Mapping[str, Any]):
        self.writer.scalars(step, scalars)

    def write_images(self, step: int, images: Mapping[str, Any]):
        self.writer.images(step, images)

    def write_videos(self, step: int, videos: Mapping[str, Any]):
        if videos and not self._warned_videos:
            self._warned_videos = True
            _log.warning("TensorBoardMetricWriter does not write videos; skipped %s (further "
                         "videos are skipped silently).", sorted(videos))

    def write_audios(self, step: int, audios: Mapping[str, Any], *, sample_rate: int):
        self.writer.audios(step, audios, sample_rate=sample_rate)

    def write_texts(self, step: int, texts: Mapping[str, str]):
        self.writer.texts(step, texts)

    def write_histograms(self, step: int, arrays: Mapping[str, Any],
                         num_buckets: Optional[Mapping[str, int]] = None):
        self.writer.histograms(step, arrays, num_buckets)

    def write_hparams(self, hparams: Mapping[str, Any]):
        self.writer.hparams(hparams)

    def flush(self):
        self.writer.flush()

    def close(self):
        self.writer.close()


def create_default_writer(logdir, *, enabled: bool = True, asynchronous: bool = True,
                          collection: Optional[str] = None):
    """clu's create_default_writer without TF: LoggingWriter plus, when enabled, TensorBoard.

    Pass enabled=jax.process_index() == 0. asynchronous=True wraps them in clu's
    AsyncMultiWriter (writes happen on a background thread; call flush() before reading).
    """
    from clu.metric_writers import async_writer, logging_writer, multi_writer
    writers = [logging_writer.LoggingWriter(collection)]
    if enabled:
        writers.append(TensorBoardMetricWriter(logdir))
    if asynchronous:
        return async_writer.AsyncMultiWriter(writers)
    return multi_writer.MultiWriter(writers)
