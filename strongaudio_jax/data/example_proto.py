"""`tf.train.Example` encoding and decoding without TensorFlow.

The message classes are built at import time from a hand-written descriptor that mirrors
tensorflow/core/example/{feature,example}.proto, so the wire format is TF's and we only
depend on the `protobuf` runtime. They live in a private DescriptorPool under a private
package name, so importing TensorFlow in the same process cannot clash with them.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_PACKAGE = "strongaudio_jax.tfexample"

_F = descriptor_pb2.FieldDescriptorProto


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    fd = descriptor_pb2.FileDescriptorProto(
        name="strongaudio_jax/tfexample.proto", package=_PACKAGE, syntax="proto3")

    def message(name, *fields):
        m = fd.message_type.add(name=name)
        for fname, number, ftype, label, type_name, packed in fields:
            f = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = f".{_PACKAGE}.{type_name}"
            if packed:
                f.options.packed = True
        return m

    rep, opt = _F.LABEL_REPEATED, _F.LABEL_OPTIONAL
    message("BytesList", ("value", 1, _F.TYPE_BYTES, rep, None, False))
    message("FloatList", ("value", 1, _F.TYPE_FLOAT, rep, None, True))
    message("Int64List", ("value", 1, _F.TYPE_INT64, rep, None, True))
    feature = message(
        "Feature",
        ("bytes_list", 1, _F.TYPE_MESSAGE, opt, "BytesList", False),
        ("float_list", 2, _F.TYPE_MESSAGE, opt, "FloatList", False),
        ("int64_list", 3, _F.TYPE_MESSAGE, opt, "Int64List", False),
    )
    feature.oneof_decl.add(name="kind")
    for f in feature.field:
        f.oneof_index = 0
    # map<string, Feature> feature = 1;  is sugar for a repeated nested MapEntry message.
    features = message(
        "Features", ("feature", 1, _F.TYPE_MESSAGE, rep, "Features.FeatureEntry", False))
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=_F.TYPE_STRING, label=opt)
    entry.field.add(name="value", number=2, type=_F.TYPE_MESSAGE, label=opt,
                    type_name=f".{_PACKAGE}.Feature")
    message("Example", ("features", 1, _F.TYPE_MESSAGE, opt, "Features", False))
    return fd


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file_descriptor())


def _cls(name):
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{_PACKAGE}.{name}"))


Feature = _cls("Feature")
Features = _cls("Features")
Example = _cls("Example")


def bytes_feature(values: list[bytes]) -> Feature:
    """A BytesList feature; built eagerly so a wrong value type fails at the call site."""
    f = Feature()
    f.bytes_list.value.extend(values)
    return f


def int64_feature(values: list[int]) -> Feature:
    f = Feature()
    f.int64_list.value.extend(values)
    return f


def float_feature(values: list[float]) -> Feature:
    """Values are stored as float32, as in TF."""
    f = Feature()
    f.float_list.value.extend(values)
    return f


def encode_example(features: dict[str, Feature]) -> bytes:
    """Deterministic so that the same clip always gives the same record bytes (and CRC)."""
    ex = Example()
    fmap = ex.features.feature
    for name, feat in features.items():
        fmap[name].CopyFrom(feat)
    return ex.SerializeToString(deterministic=True)


def decode_example(data: bytes) -> dict[str, list]:
    """Plain Python lists, so callers never touch protobuf types.

    A feature whose kind is unset decodes as an empty list (TF treats it the same way).
    Raises `google.protobuf.message.DecodeError` on malformed input.
    """
    ex = Example()
    ex.ParseFromString(data)
    out = {}
    for name, feat in ex.features.feature.items():
        kind = feat.WhichOneof("kind")
        out[name] = list(getattr(feat, kind).value) if kind else []
    return out
