"""The resolved config of a run as `<workdir>/config.json`, so a work dir describes itself.

Written by process 0 when training starts (overrides applied); `load` gives back an equal
ConfigDict. JSON has no tuples, so the file records which sequences were tuples
(`__tuples__`: their dotted keys) and `load` restores them; nothing in the file is executed.
"""

from __future__ import annotations

import json

import ml_collections

from strongaudio_jax.data import storage

FILE_NAME = "config.json"
_TUPLES = "__tuples__"


def flatten(cfg) -> dict:
    """{dotted.key: value} of every leaf (ConfigDicts or plain dicts)."""
    out = {}
    for k, v in cfg.items():
        if isinstance(v, (ml_collections.ConfigDict, dict)) and v:
            out.update({f"{k}.{kk}": vv for kk, vv in flatten(v).items()})
        else:
            out[k] = v.to_dict() if isinstance(v, ml_collections.ConfigDict) else v
    return out


def to_json(cfg: ml_collections.ConfigDict) -> str:
    tuples = sorted(k for k, v in flatten(cfg).items() if isinstance(v, tuple))
    return json.dumps({**json.loads(cfg.to_json()), _TUPLES: tuples}, indent=1, sort_keys=True)


def from_json(text: str) -> ml_collections.ConfigDict:
    table = json.loads(text)
    for key in table.pop(_TUPLES, []):
        *head, last = key.split(".")
        parent = table
        for h in head:
            parent = parent[h]
        parent[last] = _tuples(parent[last])
    return ml_collections.ConfigDict(table)


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def save(cfg: ml_collections.ConfigDict, path: str) -> None:
    with storage.open_file(path, "w") as f:
        f.write(to_json(cfg))


def load(path: str) -> ml_collections.ConfigDict:
    with storage.open_file(path, "r") as f:
        return from_json(f.read())


def differences(old, new) -> list[str]:
    """'key: old -> new' for every leaf that differs (or is only in one of them)."""
    a, b = flatten(old), flatten(new)
    missing = object()
    return [f"{k}: {a.get(k, '(absent)')!r} -> {b.get(k, '(absent)')!r}"
            for k in sorted(set(a) | set(b)) if a.get(k, missing) != b.get(k, missing)]


def record(cfg: ml_collections.ConfigDict, workdir: str, logger) -> None:
    """Saves the run's config in `workdir` (process 0); on a resume whose config differs from
    the saved one, says which keys differ (a warning: more steps, say, may be intended)."""
    import jax

    if jax.process_index() != 0:
        return
    path = storage.join(workdir, FILE_NAME)
    if storage.exists(path):
        try:
            changed = differences(load(path), cfg)
        except (ValueError, KeyError, TypeError) as e:
            changed = [f"(the saved {FILE_NAME} could not be read: {e})"]
        if changed:
            logger.info(f"warning: this run's config differs from the one saved in {path} "
                        f"({len(changed)} key(s)): {'; '.join(changed)}. It is replaced by this "
                        "run's config.")
    save(cfg, path)
