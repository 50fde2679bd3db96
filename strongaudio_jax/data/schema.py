"""Schema v1 of a clip record: the one place that knows feature names and types.

A record is one `tf.train.Example` holding one clip. Everything else in the project goes
through `Clip`, `clip_to_example` and `example_to_clip`, so the on-disk layout can grow
(additively, with `SCHEMA_VERSION` bumped) without touching readers elsewhere.

Feature names (all optional on read except the four marked *):
  id*                 bytes   clip id, unique within a corpus
  audio/encoded*      bytes   FLAC, WAV or OGG file bytes
  audio/format*       bytes   'flac' | 'wav' | 'ogg'
  audio/sample_rate*  int64
  audio/num_samples   int64   decoded length in samples (per channel)
  caption             bytes   UTF-8, long descriptive caption
  caption/summary     bytes   UTF-8, one-sentence summary (text objectives may read it)
  caption/original    bytes[] UTF-8, the source datasets' own (weak) captions, e.g. the UTS
                              release's original_caption; written only when there are some
  tags                bytes[] UTS tag strings (not ids: ids depend on the chosen K)
  tags/scores         float[] one per tag
  source              bytes   where the audio came from
  caption/model       bytes   provenance: captioner model + checkpoint id
  tags/model          bytes   provenance: tagger model + checkpoint id
  schema/version      int64
  label/<name>        bytes   ground-truth labels for probes (e.g. label/domain); free-form
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

from strongaudio_jax.data import example_proto

SCHEMA_VERSION = 1
AUDIO_FORMATS = ("flac", "wav", "ogg")
LABEL_PREFIX = "label/"
REQUIRED = ("id", "audio/encoded", "audio/format", "audio/sample_rate")


class SchemaError(ValueError):
    """A record does not follow schema v1 (names the record and the field)."""


@dataclasses.dataclass
class Clip:
    id: str
    audio: bytes
    format: str
    sample_rate: int
    num_samples: int = -1  # -1: unknown (absent in the record)
    caption: str = ""
    summary: str = ""
    original_captions: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    tag_scores: tuple[float, ...] = ()
    source: str = ""
    caption_model: str = ""
    tags_model: str = ""
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.tags = tuple(self.tags)
        self.original_captions = tuple(self.original_captions)
        self.tag_scores = tuple(float(s) for s in self.tag_scores)
        if self.format not in AUDIO_FORMATS:
            raise SchemaError(f"clip {self.id!r}: audio format {self.format!r} is not one of {AUDIO_FORMATS}")
        if self.tag_scores and len(self.tag_scores) != len(self.tags):
            raise SchemaError(
                f"clip {self.id!r}: {len(self.tags)} tags but {len(self.tag_scores)} tag scores")


def clip_to_example(clip: Clip) -> bytes:
    """Serialises a clip as a `tf.train.Example` (bytes)."""
    f = example_proto
    features = {
        "schema/version": f.int64_feature([SCHEMA_VERSION]),
        "id": f.bytes_feature([clip.id.encode()]),
        "audio/encoded": f.bytes_feature([clip.audio]),
        "audio/format": f.bytes_feature([clip.format.encode()]),
        "audio/sample_rate": f.int64_feature([clip.sample_rate]),
        "audio/num_samples": f.int64_feature([clip.num_samples]),
        "caption": f.bytes_feature([clip.caption.encode()]),
        "caption/summary": f.bytes_feature([clip.summary.encode()]),
        "tags": f.bytes_feature([t.encode() for t in clip.tags]),
        "tags/scores": f.float_feature(list(clip.tag_scores) or [1.0] * len(clip.tags)),
        "source": f.bytes_feature([clip.source.encode()]),
        "caption/model": f.bytes_feature([clip.caption_model.encode()]),
        "tags/model": f.bytes_feature([clip.tags_model.encode()]),
    }
    if clip.original_captions:  # absent otherwise: records without them stay as they were
        features["caption/original"] = f.bytes_feature([t.encode() for t in clip.original_captions])
    for name, value in clip.labels.items():
        features[LABEL_PREFIX + name] = f.bytes_feature([value.encode()])
    return f.encode_example(features)


def example_to_clip(data: bytes, where: str = "record") -> Clip:
    """Parses a serialised Example into a Clip; `where` names the record in errors."""
    try:
        feats = example_proto.decode_example(data)
    except Exception as e:  # malformed protobuf
        raise SchemaError(f"{where}: not a tf.train.Example ({e})") from e
    missing = [k for k in REQUIRED if k not in feats or len(feats[k]) != 1]
    if missing:
        raise SchemaError(f"{where}: missing required feature(s) {missing}; "
                          f"present: {sorted(feats)}")

    def text(name: str) -> str:
        v = feats.get(name)
        return v[0].decode("utf-8") if v else ""

    num = feats.get("audio/num_samples")
    try:
        return Clip(
            id=text("id"),
            audio=feats["audio/encoded"][0],
            format=text("audio/format").lower(),
            sample_rate=int(feats["audio/sample_rate"][0]),
            num_samples=int(num[0]) if num else -1,
            caption=text("caption"),
            summary=text("caption/summary"),
            original_captions=[t.decode("utf-8") for t in feats.get("caption/original", [])],
            tags=[t.decode("utf-8") for t in feats.get("tags", [])],
            tag_scores=list(feats.get("tags/scores", [])),
            source=text("source"),
            caption_model=text("caption/model"),
            tags_model=text("tags/model"),
            labels={k[len(LABEL_PREFIX):]: v[0].decode("utf-8")
                    for k, v in feats.items() if k.startswith(LABEL_PREFIX) and v},
        )
    except (SchemaError, UnicodeDecodeError, TypeError) as e:
        raise SchemaError(f"{where}: {e}") from e


def example_to_training_fields(data: bytes, where: str = "record") -> tuple[str, bytes, int, tuple]:
    """(id, audio bytes, sample rate, tags) of a serialised Example: the training hot path,
    which skips building Python lists of every feature. Same checks and errors as
    `example_to_clip` for the fields it reads."""
    ex = example_proto.Example()
    try:
        ex.ParseFromString(data)
    except Exception as e:  # malformed protobuf
        raise SchemaError(f"{where}: not a tf.train.Example ({e})") from e
    fmap = ex.features.feature
    missing = [k for k in REQUIRED if k not in fmap or len(_values(fmap[k])) != 1]
    if missing:
        raise SchemaError(f"{where}: missing required feature(s) {missing}; "
                          f"present: {sorted(fmap)}")
    try:
        cid = fmap["id"].bytes_list.value[0].decode("utf-8")
        fmt = fmap["audio/format"].bytes_list.value[0].decode("utf-8").lower()
        tags = tuple(t.decode("utf-8") for t in fmap["tags"].bytes_list.value) if "tags" in fmap else ()
    except UnicodeDecodeError as e:
        raise SchemaError(f"{where}: {e}") from e
    if fmt not in AUDIO_FORMATS:
        raise SchemaError(f"{where}: clip {cid!r}: audio format {fmt!r} is not one of {AUDIO_FORMATS}")
    rate = fmap["audio/sample_rate"].int64_list.value
    audio = fmap["audio/encoded"].bytes_list.value
    if not rate or not audio:
        raise SchemaError(f"{where}: clip {cid!r}: audio/sample_rate must be int64 and "
                          "audio/encoded bytes")
    return cid, audio[0], int(rate[0]), tags


def _values(feature) -> list:
    kind = feature.WhichOneof("kind")
    return getattr(feature, kind).value if kind else []
