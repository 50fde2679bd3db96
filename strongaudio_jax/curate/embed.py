"""Clip embeddings of an exported encoder over a corpus: batched on the device mesh, cached per
shard, resumable.

Every clip is cut into consecutive windows of the encoder's chunk length (`model.chunk_samples`,
the longest input its position table takes); windows go through the encoder in fixed-shape
batches of `batch_size` rows, padded with their true lengths (masked frames are not pooled),
sharded over all local devices along a 1-D "data" mesh (one compile for the whole pass). A clip's
embedding is the mean of the output columns of all its windows: the HEAR scene embedding
(`hub.get_scene_embeddings`) for clips of one window. `head` (optional) maps the encoder's
(tokens, mask) of each window to a per-window vector instead (e.g. a contrastive audio
projection); windows of one clip are then averaged.

Each shard's result is written to `<cache_dir>/<shard>.<hash>.npz` (ids, embeddings, domain,
source, caption) as soon as it is done: a killed pass resumes at the first shard without one.
The cache records which export made it and refuses to mix models.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from strongaudio_jax import frontend
from strongaudio_jax.curate import records
from strongaudio_jax.data import audio as audio_lib


CLIPS_IN_MEMORY = 256  # decoded clips held at once while embedding a shard
CACHE_FORMAT = 1  # bump when the per-shard .npz fields change


class CacheMismatchError(records.CurateError):
    """The embedding cache folder was written by another model or head."""


@dataclasses.dataclass
class Embeddings:
    ids: list[str]
    vectors: np.ndarray  # [N, D] float32, L2-normalised
    domains: list[str]
    sources: list[str]
    captions: list[str]
    summaries: list[str]  # caption/summary: what the text objectives read
    shards: list[str]  # the shard of each clip

    def __len__(self) -> int:
        return len(self.ids)


class Embedder:
    """Fixed-shape batches of windows through the encoder (and optional head) on a 1-D mesh."""

    def __init__(self, model, batch_size: int = 16, head: Callable | None = None,
                 head_params=None):
        self.model = model
        n = jax.local_device_count()
        self.batch_size = max(n, -(-batch_size // n) * n)  # a multiple of the device count
        self.width = int(model.chunk_samples)
        mesh = jax.make_mesh((n,), ("data",), devices=jax.local_devices())
        self.rows = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
        replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        self.params = jax.device_put(model.params, replicated)
        self.head_params = jax.device_put(head_params, replicated) if head is not None else None
        encoder, mel_cfg = model.encoder, model.mel_cfg

        def window_vectors(params, head_params, waves, lengths):
            enc = encoder.apply({"params": params}, *frontend.log_mel(waves, mel_cfg, lengths))
            if head is None:  # sum and count of the real output columns (mean over frequency)
                cols, mask = enc.frames()
                m = mask.astype(jnp.float32)
                return jnp.einsum("bn,bnd->bd", m, cols), m.sum(1)
            return head(head_params, enc), jnp.ones(waves.shape[0], jnp.float32)

        self._fn = jax.jit(window_vectors, out_shardings=(self.rows, self.rows))

    def fingerprint(self, head_name: str = "") -> dict:
        info = self.model.info
        return {"source_workdir": info.get("source_workdir", ""), "step": info.get("step", -1),
                "params": info.get("params", ""), "model": info.get("model", ""),
                "head": head_name, "window": self.width, "cache_format": CACHE_FORMAT}

    def windows(self, wave: np.ndarray) -> list[np.ndarray]:
        return [wave[s:s + self.width] for s in range(0, max(len(wave), 1), self.width)]

    def embed_waves(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        """[len(waves), D] L2-normalised embeddings of whole clips at the model's rate."""
        pieces, owner = [], []
        for i, w in enumerate(waves):
            for p in self.windows(w):
                pieces.append(p)
                owner.append(i)
        sums, weights = [], []
        for b in range(0, len(pieces), self.batch_size):
            chunk = pieces[b:b + self.batch_size]
            batch = np.zeros((self.batch_size, self.width), np.float32)
            lengths = np.full(self.batch_size, self.width, np.int32)  # padding rows: ignored
            for j, p in enumerate(chunk):
                batch[j, :len(p)] = p
                lengths[j] = len(p)
            s, c = jax.device_get(self._fn(self.params, self.head_params,
                                           jax.device_put(batch, self.rows),
                                           jax.device_put(lengths, self.rows)))
            sums.append(np.asarray(s)[:len(chunk)])
            weights.append(np.asarray(c)[:len(chunk)])
        sums, weights, owner = np.concatenate(sums), np.concatenate(weights), np.array(owner)
        out = np.zeros((len(waves), sums.shape[1]), np.float64)
        np.add.at(out, owner, sums)
        total = np.bincount(owner, weights, minlength=len(waves))
        out /= np.maximum(total, 1e-9)[:, None]
        return normalize(out.astype(np.float32))


def normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def decode(clip, rate: int) -> np.ndarray:
    wave, sr = audio_lib.decode(clip.audio, f"clip {clip.id!r}")
    return audio_lib.resample(wave, sr, rate) if sr != rate else wave


def decode_rows(rows, rate: int, damage) -> list:
    """[(clip, wave)] of the clips that decode; the others' errors go into `damage` (counted)."""
    ok = []
    for clip in rows:
        try:
            ok.append((clip, decode(clip, rate)))
        except audio_lib.AudioDecodeError as e:
            damage.add(str(e))
    return ok


def load_head(export_dir: str, objective: str, hint: str, error=records.CurateError):
    """(hub model, resolved config, `objective`'s head module, its params) of an export; an
    export without that objective raises `error` with `hint` (what to export instead)."""
    from safetensors.numpy import load as safetensors_load

    from strongaudio_jax import hub
    from strongaudio_jax.data import storage
    from strongaudio_jax.train import export as export_lib, step as step_lib

    model = hub.load_model(export_dir)
    cfg = model.config
    if objective not in cfg.objectives:
        raise error(f"{export_dir} was trained with objectives {sorted(cfg.objectives)}, not "
                    f"{objective}; {hint}")
    cfg = cfg.copy_and_resolve_references()
    local_vocab = storage.join(export_dir, "text_vocab.txt")
    if storage.exists(local_vocab) and cfg.text.tokenizer != "minilm":
        with cfg.unlocked():
            cfg.text.tokenizer = local_vocab
    with storage.open_file(storage.join(export_dir, "vocab.json"), "r") as f:
        tags = json.load(f)
    vocab = [tags[str(i)] for i in range(len(tags))]
    program = step_lib.build(cfg, len(vocab), vocab)
    module = {o.name: o for o in program.objectives}[objective].module
    with storage.open_file(storage.join(export_dir, "model.safetensors"), "rb") as f:
        flat = safetensors_load(f.read())
    prefix = f"heads/{objective}/"
    params = export_lib.unflatten({k: v for k, v in flat.items()
                                   if k.startswith(prefix)})["heads"][objective]
    return model, cfg, module, jax.tree.map(jnp.asarray, params)


def embed_corpus(embedder: Embedder, files: Sequence[str], cache_dir: str, desc: str,
                 head_name: str = "", progress: bool = True) -> Embeddings:
    """Embeddings of every clip of `files`, computed shard by shard into `cache_dir` (shards
    already there are read back, not recomputed)."""
    from tqdm.auto import tqdm

    os.makedirs(cache_dir, exist_ok=True)
    want = embedder.fingerprint(head_name)
    stamp = os.path.join(cache_dir, "model.json")
    if os.path.exists(stamp):
        with open(stamp) as f:
            have = json.load(f)
        if have != want:
            raise CacheMismatchError(f"{cache_dir} holds embeddings of another model or head "
                                     f"({have}, this run: {want}); use a new --out-dir or delete it")
    else:
        with open(stamp, "w") as f:
            json.dump(want, f, indent=1)
    rate = embedder.model.sample_rate
    parts = []
    damage = records.Damage()
    bar = tqdm(total=len(files), unit="shard", desc=desc, disable=not progress, leave=False)
    for path in files:
        out = os.path.join(cache_dir, records.shard_key(path) + ".npz")
        if not os.path.exists(out):
            _embed_shard(embedder, path, out, rate, damage)
        with np.load(out, allow_pickle=True) as z:  # our own cache file, written just above
            parts.append((path, list(z["ids"]), z["vectors"], list(z["domains"]),
                          list(z["sources"]), list(z["captions"]), list(z["summaries"])))
        bar.update(1)
        bar.set_postfix(clips=sum(len(p[1]) for p in parts), damaged=damage.count)
    bar.close()
    dims = {p[2].shape[1] for p in parts if len(p[1])}
    vectors = (np.concatenate([p[2] for p in parts if len(p[1])]) if dims
               else np.zeros((0, 1), np.float32))
    return Embeddings(
        ids=[i for p in parts for i in p[1]], vectors=vectors.astype(np.float32),
        domains=[d for p in parts for d in p[3]], sources=[s for p in parts for s in p[4]],
        captions=[c for p in parts for c in p[5]], summaries=[c for p in parts for c in p[6]],
        shards=[p[0] for p in parts for _ in p[1]])


FIELDS = ("ids", "vectors", "domains", "sources", "captions", "summaries")


def _save(path: str, **arrays) -> None:
    tmp = path + f".tmp{os.getpid()}.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)  # complete or absent: a kill never leaves half a file


def _embed_shard(embedder: Embedder, path: str, out: str, rate: int, damage) -> None:
    """Embeds one shard into `out`, in blocks of CLIPS_IN_MEMORY parsed clips. Each block is
    saved as `<out>.b<size>-<k>.npz` when done, so a pass killed inside a shard resumes at its
    first missing block (blocks already there are not decoded again); the blocks are merged
    into `out` and removed when the shard is complete."""
    size = CLIPS_IN_MEMORY
    block_file = lambda k: f"{out[:-4]}.b{size}-{k}.npz"  # noqa: E731
    blocks, rows, k = [], [], 0

    def finish(k, rows):
        name = block_file(k)
        if not os.path.exists(name):
            ok = decode_rows(rows, rate, damage)
            vec = embedder.embed_waves([w for _, w in ok]) if ok else np.zeros((0, 1), np.float32)
            meta = [(c.id, records.domain(c), c.source, c.caption, c.summary) for c, _ in ok]
            _save(name, vectors=vec, **{f: np.array([m[i] for m in meta], dtype=object)
                                        for i, f in enumerate(FIELDS[:1] + FIELDS[2:])})
        blocks.append(name)

    for clip in records.shard_clips(path, damage):
        rows.append(clip)
        if len(rows) == size:  # bounded memory, whatever the shard size
            finish(k, rows)
            rows, k = [], k + 1
    if rows or not blocks:
        finish(k, rows)
    parts = {f: [] for f in FIELDS}
    for name in blocks:
        with np.load(name, allow_pickle=True) as z:  # our own cache files
            for f in FIELDS:
                if len(z["ids"]):
                    parts[f].append(z[f])
    joined = {f: (np.concatenate(v) if v else np.zeros((0, 1), np.float32) if f == "vectors"
                  else np.array([], dtype=object)) for f, v in parts.items()}
    _save(out, **joined)
    for name in blocks:
        os.remove(name)

