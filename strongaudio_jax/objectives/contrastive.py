"""Contrastive audio-text pre-training: CLIP InfoNCE (symmetric) or SigLIP sigmoid loss.

Audio side: the encoder's tokens pooled over real tokens (mean, or a learned attention
pooling) -> linear projection -> L2 norm. Text side: the caption summary (`text_ids` /
`text_mask`) through a BERT-style text encoder (from scratch, or initialised from MiniLM,
`text_init="minilm"` with `text.tokenizer="minilm"`) -> mean pooling -> projection -> L2 norm.

Both losses are over the global batch. The similarity matrix is kept sharded by rows
(audio clips) along the mesh's batch axes: each device holds its [B/n, B] block, computed
from its own audio embeddings and the all-gathered text embeddings ([B, D], small); the
row softmax (audio->text) is local, the column softmax (text->audio) and the SigLIP sum
reduce [B] vectors across devices. No device materialises the full [B, B] matrix.
Rows with valid=False are neither positives nor negatives of any pair.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from strongaudio_jax import objectives
from strongaudio_jax.config import ConfigError
from strongaudio_jax.models.base import EncoderOutput, masked_mean
from strongaudio_jax.parallel import mesh as mesh_lib
from strongaudio_jax.models.text import encoder as text_encoder

FIELDS = ("text",)  # the caption summary, tokenised by the input pipeline

DEFAULTS = dict(
    loss="clip",  # "clip" (symmetric InfoNCE, the study's) or "siglip" (sigmoid, per pair)
    embed_dim=256,  # joint audio-text embedding width
    pooling="mean",  # audio pooling: "mean" over real tokens, or "attention" (learned)
    text_size="tiny",  # text encoder shape (strongaudio_jax.models.text.encoder.SIZES)
    text_init="",  # "" (random) or "minilm" (all-MiniLM-L6-v2 weights; size "minilm")
    temperature_init=0.0,  # initial 1/scale; 0: the paper's (CLIP 0.07, SigLIP 0.1)
    bias_init=-10.0,  # SigLIP's learned logit bias (its paper's init)
    max_scale=100.0,  # the logit scale exp(t) is clipped here (CLIP's cap)
)
MASKED = -1e9  # logit of a pair with an invalid row or column: exp() is exactly 0


def similarity(za: jax.Array, zt: jax.Array) -> jax.Array:
    """za @ zt.T with rows kept sharded along the batch axes (see the module docstring)."""
    zt = mesh_lib.constrain(zt, (None, None))  # all-gather the small text embeddings
    return mesh_lib.constrain(za @ zt.T, ("batch", None))


def clip_loss(logits: jax.Array, valid: jax.Array) -> jax.Array:
    """Symmetric InfoNCE: mean over valid pairs (i, i) of the audio->text and text->audio
    cross-entropies, with the other valid rows / columns as negatives."""
    pair = valid[:, None] & valid[None, :]
    logits = jnp.where(pair, logits, MASKED)
    pos = jnp.diagonal(logits)
    a2t = jax.nn.logsumexp(logits, axis=1) - pos
    t2a = jax.nn.logsumexp(logits, axis=0) - pos
    v = valid.astype(jnp.float32)
    return 0.5 * ((a2t + t2a) * v).sum() / jnp.maximum(v.sum(), 1.0)


def siglip_loss(logits: jax.Array, valid: jax.Array) -> jax.Array:
    """Sigmoid loss: -sum over valid pairs of log sigmoid(+-logit) (+ on the diagonal),
    divided by the number of valid rows (SigLIP's normalisation)."""
    n = logits.shape[0]
    sign = 2.0 * jnp.eye(n, dtype=logits.dtype) - 1.0
    pair = valid[:, None] & valid[None, :]
    nll = jnp.where(pair, -jax.nn.log_sigmoid(sign * logits), 0.0)
    return nll.sum() / jnp.maximum(valid.astype(jnp.float32).sum(), 1.0)


def recall_at_1(logits: jax.Array, valid: jax.Array) -> tuple[jax.Array, jax.Array]:
    """In-batch R@1 (audio->text, text->audio) among valid rows and columns."""
    pair = valid[:, None] & valid[None, :]
    logits = jnp.where(pair, logits, -jnp.inf)
    idx = jnp.arange(logits.shape[0])
    v = valid.astype(jnp.float32)
    n = jnp.maximum(v.sum(), 1.0)
    a2t = ((logits.argmax(1) == idx) * v).sum() / n
    t2a = ((logits.argmax(0) == idx) * v).sum() / n
    return a2t, t2a


class TextTower(nn.Module):
    """Text encoder + mean pooling. Its parameters are one tree ("encoder") whose initialiser
    can hand over pretrained weights (MiniLM) instead of random ones."""

    vocab_size: int
    size: str
    max_len: int
    init_from: str = ""  # "" or "minilm"
    dtype: Any = jnp.float32

    def _encoder(self) -> text_encoder.TextEncoder:
        return text_encoder.TextEncoder(vocab_size=self.vocab_size, size=self.size,
                                        max_len=self.max_len, dtype=self.dtype, parent=None)

    def _init(self, rng, ids, mask):
        """Random parameters (boxed with logical axis names), or MiniLM's in those boxes."""
        boxed = self._encoder().init(rng, ids, mask)["params"]
        if self.init_from != "minilm":
            return boxed
        from strongaudio_jax.text import minilm
        loaded = minilm.load_params()
        is_box = lambda x: isinstance(x, nn.Partitioned)
        want = jax.tree.map(lambda b: (b.unbox() if is_box(b) else b).shape, boxed, is_leaf=is_box)
        if want != jax.tree.map(lambda v: v.shape, loaded):
            raise ValueError("MiniLM's converted weights do not fit TextEncoder(size='minilm'); "
                             "the package's model differs from all-MiniLM-L6-v2")
        return jax.tree.map(lambda b, v: b.replace_boxed(jnp.asarray(v)) if is_box(b) else jnp.asarray(v),
                            boxed, loaded, is_leaf=is_box)

    @nn.compact
    def __call__(self, ids: jax.Array, mask: jax.Array) -> jax.Array:
        params = self.param("encoder", self._init, ids, mask)
        tokens = self._encoder().apply({"params": params}, ids, mask)
        return text_encoder.sentence_embedding(tokens, mask, normalize=False)


class Contrastive(nn.Module):
    loss: str
    embed_dim: int
    pooling: str
    text: TextTower
    temperature_init: float
    bias_init: float
    max_scale: float

    def setup(self):
        self.audio_proj = _project(self.embed_dim)
        self.text_proj = _project(self.embed_dim)
        if self.pooling == "attention":
            self.pool_score = nn.Dense(1, kernel_init=nn.with_logical_partitioning(
                nn.initializers.zeros_init(), ("embed", None)))
        paper_t = 0.07 if self.loss == "clip" else 0.1
        self.log_scale = self.param(
            "log_scale", nn.initializers.constant(-math.log(self.temperature_init or paper_t)), ())
        if self.loss == "siglip":
            self.bias = self.param("bias", nn.initializers.constant(self.bias_init), ())

    def embed_audio(self, enc: EncoderOutput) -> jax.Array:
        """L2-normalised clip embeddings [B, embed_dim] (also for retrieval evaluation)."""
        if self.pooling == "attention":
            score = self.pool_score(enc.tokens)[..., 0]
            # MASKED, not -inf: a clip without real tokens pools to zeros, not NaN.
            weights = jax.nn.softmax(jnp.where(enc.mask, score, MASKED), axis=-1)
            pooled = jnp.einsum("bn,bnd->bd", jnp.where(enc.mask, weights, 0.0), enc.tokens)
        else:
            pooled = masked_mean(enc.tokens, enc.mask)
        return _normalize(self.audio_proj(pooled))

    def embed_text(self, ids: jax.Array, mask: jax.Array) -> jax.Array:
        """L2-normalised caption embeddings [B, embed_dim] (also for retrieval evaluation)."""
        return _normalize(self.text_proj(self.text(ids, mask)))

    def __call__(self, enc: EncoderOutput, batch: dict, train: bool) -> tuple[jax.Array, dict]:
        za = self.embed_audio(enc)
        zt = self.embed_text(batch["text_ids"], batch["text_mask"])
        scale = jnp.exp(jnp.minimum(self.log_scale, math.log(self.max_scale)))
        logits = scale * similarity(za, zt)
        valid = batch["valid"]
        metrics = {"scale": scale, "temperature": 1.0 / scale}
        if self.loss == "clip":
            loss = clip_loss(logits, valid)
        else:
            logits = logits + self.bias
            loss = siglip_loss(logits, valid)
            metrics["bias"] = self.bias
        metrics["a2t_r1"], metrics["t2a_r1"] = recall_at_1(logits, valid)
        return loss, metrics


def _project(width: int) -> nn.Dense:
    return nn.Dense(width, kernel_init=nn.with_logical_partitioning(
        nn.initializers.lecun_normal(), ("embed", None)))


def _normalize(x: jax.Array) -> jax.Array:
    return text_encoder.l2_normalize(x)


def build(cfg, ctx: objectives.Context) -> Contrastive:
    o = objectives.options(cfg, DEFAULTS, "contrastive")
    if o["loss"] not in ("clip", "siglip"):
        raise ConfigError(f"objectives.contrastive.loss={o['loss']!r}: use 'clip' or 'siglip'")
    if o["pooling"] not in ("mean", "attention"):
        raise ConfigError(f"objectives.contrastive.pooling={o['pooling']!r}: use 'mean' or 'attention'")
    if o["text_init"] not in ("", "minilm"):
        raise ConfigError(f"objectives.contrastive.text_init={o['text_init']!r}: use '' or 'minilm'")
    tok = ctx.tokenizer
    dtype: Any = getattr(ctx.encoder, "dtype", jnp.float32)
    if o["text_init"] == "minilm":
        from strongaudio_jax.text import minilm
        if tok.vocab_size != minilm.VOCAB_SIZE:
            raise ConfigError(f"objectives.contrastive.text_init='minilm' needs MiniLM's vocabulary "
                              f"(text.tokenizer='minilm'), but the tokenizer has {tok.vocab_size} "
                              f"tokens")
        if ctx.text_len > minilm.MAX_LEN:
            raise ConfigError(f"text.max_len={ctx.text_len} exceeds MiniLM's {minilm.MAX_LEN} positions")
        size, positions = "minilm", minilm.MAX_LEN
    else:
        size, positions = o["text_size"], ctx.text_len
        if size not in text_encoder.SIZES:
            raise ConfigError(f"objectives.contrastive.text_size={size!r} is not one of "
                              f"{sorted(text_encoder.SIZES)}")
    text = TextTower(vocab_size=tok.vocab_size, size=size, max_len=positions,
                     init_from=o["text_init"], dtype=dtype)
    return Contrastive(loss=o["loss"], embed_dim=int(o["embed_dim"]), pooling=o["pooling"],
                       text=text, temperature_init=float(o["temperature_init"]),
                       bias_init=float(o["bias_init"]), max_scale=float(o["max_scale"]))
