"""The second caption-audio consistency signal: the captioning model's length-normalised
log p(caption | audio), teacher-forced.

The export is one of a run with the captioning objective (configs/captioning.py, or any run with
objectives.captioning). A clip's text is the field that objective trained on (the config's
text.field: the summary for the demo configs, the long caption for large), tokenised with the
run's tokenizer (`text_vocab.txt` of the export) and text.preprocess, exactly as in training:
[CLS] pieces [SEP], text.max_len tokens. The decoder reads the tokens before each position
(autoregressive mode, causal self-attention) and the encoder output of the audio; the score is
the mean over the predicted tokens (pieces and [SEP]) of log softmax(logits)[true token]:
log p(text | audio) / (number of tokens), without label smoothing. Clips longer than the
encoder's window are cut into windows as for the embeddings (curate/embed.py); their score is
the mean over windows.

Windows go through encoder and decoder in fixed-shape batches sharded over all local devices
(a 1-D "data" mesh, one compile for the pass). Scores are cached per shard in
`<cache_dir>/<shard>.<hash of the shard's texts>.npz`, so a killed pass resumes at the first
shard without one, and a rerun with other texts (another swap seed) scores only what changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from strongaudio_jax import frontend
from strongaudio_jax.curate import records
from strongaudio_jax.curate import embed as embed_lib
from strongaudio_jax.curate.embed import (CLIPS_IN_MEMORY, CacheMismatchError, Embeddings,
                                          decode_rows)
from strongaudio_jax.models.text import decoder as decoder_lib


class NotCaptioningError(records.CurateError):
    """The export has no captioning head."""


def load_captioner(export_dir: str):
    """(hub model, captioning module, its params, text fields) of an export."""
    from strongaudio_jax.data import text_fields

    model, cfg, module, params = embed_lib.load_head(
        export_dir, "captioning", "for --signal logp export a run of configs/captioning.py (or "
        "one with objectives.captioning) and pass it as --captioner", NotCaptioningError)
    fields = text_fields.from_config(cfg, ("text",))
    if fields.source == "original":
        raise records.CurateError(f"{export_dir} was trained on text.field='original' (several "
                                  "captions per clip); the logp signal scores one text per clip: "
                                  "use a captioner trained on 'caption' or 'summary'")
    return model, module, params, fields


class LogpScorer:
    """Length-normalised teacher-forced log p(text | audio) of whole clips, in fixed-shape
    batches of windows on a 1-D mesh of the local devices."""

    def __init__(self, model, module, params, fields, batch_size: int = 16):
        self.model, self.fields = model, fields
        self.tokenizer, self.max_len = fields.tokenizer, fields.max_len
        n = jax.local_device_count()
        self.batch_size = max(n, -(-batch_size // n) * n)  # a multiple of the device count
        self.width = int(model.chunk_samples)
        # Auto axes: the decoder's embedding gathers from replicated tables with sharded ids.
        mesh = jax.make_mesh((n,), ("data",), (jax.sharding.AxisType.Auto,),
                             devices=jax.local_devices())
        self.rows = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
        replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        self.params = jax.device_put(model.params, replicated)
        self.head_params = jax.device_put(params, replicated)
        encoder, mel_cfg, mask_id = model.encoder, model.mel_cfg, module.mask_id

        def window_logp(params, head_params, waves, lengths, ids, mask):
            enc = encoder.apply({"params": params}, *frontend.log_mel(waves, mel_cfg, lengths))
            total = module.apply({"params": head_params}, enc, ids, mask, method="log_likelihood")
            _, _, weights = decoder_lib.teacher_forcing(ids, mask, mask_id,
                                                        jnp.zeros(ids.shape[:1], bool))
            return total / jnp.maximum(weights.sum(-1), 1)

        self._fn = jax.jit(window_logp, out_shardings=self.rows)

    def fingerprint(self) -> dict:
        info = self.model.info
        return {"source_workdir": info.get("source_workdir", ""), "step": info.get("step", -1),
                "params": info.get("params", ""), "model": info.get("model", ""),
                "head": "captioning.log_likelihood/len", "window": self.width,
                "text": [self.fields.source, self.fields.preprocess, self.max_len]}

    def prepare(self, text: str) -> str:
        """The raw clip text as the objective saw it (text.preprocess)."""
        from strongaudio_jax.data import text_fields
        if self.fields.preprocess == "reference":
            return text_fields.reference_preprocess(text)
        return text

    def score_waves(self, waves: Sequence[np.ndarray], texts: Sequence[str]) -> np.ndarray:
        """[len(waves)] length-normalised log p(texts[i] | waves[i]) (mean over windows)."""
        if not len(waves):
            return np.zeros(0, np.float32)
        ids, mask = self.tokenizer.encode([self.prepare(t) for t in texts], self.max_len)
        ids, mask = np.asarray(ids, np.int32), np.asarray(mask, bool)
        pieces, owner = [], []
        for i, w in enumerate(waves):
            for s in range(0, max(len(w), 1), self.width):
                pieces.append(w[s:s + self.width])
                owner.append(i)
        out = []
        for b in range(0, len(pieces), self.batch_size):
            chunk, rows = pieces[b:b + self.batch_size], owner[b:b + self.batch_size]
            batch = np.zeros((self.batch_size, self.width), np.float32)
            lengths = np.full(self.batch_size, self.width, np.int32)  # padding rows: ignored
            for j, p in enumerate(chunk):
                batch[j, :len(p)] = p
                lengths[j] = len(p)
            take = np.array(rows + [rows[0]] * (self.batch_size - len(rows)))
            put = lambda x: jax.device_put(x, self.rows)  # noqa: E731
            got = self._fn(self.params, self.head_params, put(batch), put(lengths),
                           put(ids[take]), put(mask[take]))
            out.append(np.asarray(jax.device_get(got))[:len(chunk)])
        per_window, owner = np.concatenate(out), np.array(owner)
        total = np.bincount(owner, per_window.astype(np.float64), minlength=len(waves))
        return (total / np.bincount(owner, minlength=len(waves))).astype(np.float32)


def corpus_meta(files: Sequence[str], desc: str, progress: bool = True) -> Embeddings:
    """Ids, domains, sources and texts of every parseable clip (no audio decoded; no vectors)."""
    ids, domains, sources, captions, summaries, shards = [], [], [], [], [], []
    for path, clip in records.clips(files, desc, progress=progress):
        ids.append(clip.id)
        domains.append(records.domain(clip))
        sources.append(clip.source)
        captions.append(clip.caption)
        summaries.append(clip.summary)
        shards.append(path)
    return Embeddings(ids, np.zeros((len(ids), 0), np.float32), domains, sources, captions,
                      summaries, shards)


def texts_of(emb: Embeddings, source: str) -> list[str]:
    """The text each clip is scored against: its summary or caption (text.field)."""
    return list(emb.summaries if source == "summary" else emb.captions)


def score_corpus(scorer: LogpScorer, files: Sequence[str], emb: Embeddings, texts: Sequence[str],
                 cache_dir: str, desc: str = "consistency: logp",
                 progress: bool = True) -> np.ndarray:
    """Scores of the clips of `emb` (each against texts[i]; NaN where the audio does not
    decode), shard by shard, cached in `cache_dir` (a rerun reads shards back)."""
    from tqdm.auto import tqdm

    os.makedirs(cache_dir, exist_ok=True)
    want = scorer.fingerprint()
    stamp = os.path.join(cache_dir, "model.json")
    if os.path.exists(stamp):
        with open(stamp) as f:
            have = json.load(f)
        if have != want:
            raise CacheMismatchError(f"{cache_dir} holds scores of another captioner ({have}, "
                                     f"this run: {want}); use a new --out-dir or delete it")
    else:
        with open(stamp, "w") as f:
            json.dump(want, f, indent=1)
    rate = scorer.model.sample_rate
    damage = records.Damage()
    found: dict[str, float] = {}
    bar = tqdm(total=len(files), unit="shard", desc=desc, disable=not progress, leave=False)
    for path in files:
        # The shard's ids and texts key its cache file: other texts (a swap), another file.
        mine = {emb.ids[i]: texts[i] for i in range(len(emb)) if emb.shards[i] == path}
        digest = hashlib.sha1(json.dumps(sorted(mine.items())).encode()).hexdigest()[:12]
        out = os.path.join(cache_dir, f"{records.shard_key(path)}.{digest}.npz")
        if not os.path.exists(out):
            _score_shard(scorer, path, mine, out, rate, damage)
        with np.load(out, allow_pickle=True) as z:  # our own cache file, written just above
            found.update(zip(list(z["ids"]), z["scores"].tolist()))
        bar.update(1)
        bar.set_postfix(clips=len(found), damaged=damage.count)
    bar.close()
    return np.array([found.get(i, np.nan) for i in emb.ids], np.float64)


def _score_shard(scorer, path, texts, out, rate, damage) -> None:
    ids, vals, rows = [], [], []

    def flush():
        ok = decode_rows(rows, rate, damage)
        ids.extend(c.id for c, _ in ok)
        vals.append(scorer.score_waves([w for _, w in ok], [texts[c.id] for c, _ in ok]))
        rows.clear()

    for clip in records.shard_clips(path, damage):
        if clip.id in texts:
            rows.append(clip)
        if len(rows) == CLIPS_IN_MEMORY:  # bounded memory, whatever the shard size
            flush()
    flush()
    tmp = out + f".tmp{os.getpid()}.npz"
    np.savez(tmp, ids=np.array(ids, dtype=object), scores=np.concatenate(vals).astype(np.float32))
    os.replace(tmp, out)  # complete or absent: a kill never leaves half a file


def rank_normalise(scores: np.ndarray) -> np.ndarray:
    """Each score's rank scaled to [0, 1] (ties share their mean rank); 0.5 for one clip."""
    n = len(scores)
    if n < 2:
        return np.full(n, 0.5)
    ranks = np.empty(n)
    ranks[np.argsort(scores, kind="stable")] = np.arange(n)
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = np.bincount(inverse, ranks)[inverse] / counts[inverse]
    return ranks / (n - 1)
