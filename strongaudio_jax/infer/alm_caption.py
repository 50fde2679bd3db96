"""Captions from an imported audio-language model (models/alm, `strongaudio import-hf` of a
Qwen2-Audio checkpoint): audio batch in, one string per clip out.

    cap = Captioner("ckpt/qwen2-audio")             # or Captioner(dir, mesh=make_mesh(...))
    texts = cap.caption(waves, lengths)             # waves [B, T] float at 16 kHz

The steps, each usable alone:
- `audio_features`: the Whisper log-mel of the project's frontend (`whisper128` or `whisper80`,
  chosen by the encoder's num_mel_bins), cropped to the encoder's window (30 s for
  Qwen2-Audio) and padded to it with the value Whisper gives to silence, so the encoder always
  sees one shape (one compilation). A clip has lengths // 160 valid frames (transformers'
  feature extractor counts ceil(lengths / 160); its features of the first and last frames differ
  slightly too, since the project's frontend reflects at each clip's own end).
- `generate_with_audio`: prompts holding one audio placeholder token each (or one per clip,
  several clips per prompt) -> the encoder and projector give A_c vectors per clip, each
  placeholder is expanded to its clip's A_c copies, and infer/generate.py decodes with the
  vectors in place of the copies (left padding, KV cache).
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from strongaudio_jax.frontend import get_preset, log_mel
from strongaudio_jax.infer import generate as gen
from strongaudio_jax.models.alm import AudioLM, check_placeholders
from strongaudio_jax.models.lm import QwenLM
from strongaudio_jax.parallel import mesh as mesh_lib

# Qwen2-Audio's captioning prompt (the base model's model card)
DEFAULT_PROMPT = "<|audio_bos|><|AUDIO|><|audio_eos|>Generate the caption in English:"


def frontend_preset(model: AudioLM) -> str:
    bins = model.cfg.audio.num_mel_bins
    if bins not in (80, 128):
        raise ValueError(f"the audio encoder takes {bins} mel bins; the Whisper frontends here "
                         f"give 80 (whisper80) or 128 (whisper128)")
    return f"whisper{bins}"


def audio_features(model: AudioLM, waves, lengths=None) -> tuple[np.ndarray, np.ndarray]:
    """(features [B, max_frames, mel] float32, valid frames [B] int32) of 16 kHz audio."""
    cfg = get_preset(frontend_preset(model))
    waves = np.asarray(waves, np.float32)
    if waves.ndim != 2:
        raise ValueError(f"waves must be [B, T], got shape {waves.shape}")
    if lengths is None:
        lengths = np.full(waves.shape[0], waves.shape[1])
    window = model.cfg.audio.max_frames
    limit = window * cfg.hop_length  # samples the encoder window holds
    waves = waves[:, :limit]
    lengths = np.minimum(np.asarray(lengths), waves.shape[1]).astype(np.int32)
    feats, mask = log_mel(waves, cfg, lengths)
    feats, frames = np.asarray(feats), np.asarray(mask).sum(axis=1).astype(np.int32)
    if (frames < 1).any():
        raise ValueError(f"clip {int(np.argmin(frames))} is shorter than one frame "
                         f"({cfg.hop_length} samples); drop it before captioning")
    feats = feats[:, :window]
    # Whisper pads with digital silence: log10 clamps at the clip's peak - 8, i.e. -10 at most
    # below; in normalised units max(-1.5, peak - 2).
    floor = np.maximum(-1.5, np.where(np.arange(feats.shape[1])[None, :, None]
                                      < frames[:, None, None], feats, -np.inf).max(axis=(1, 2))
                       - 2.0)
    full = np.broadcast_to(floor[:, None, None], (feats.shape[0], window, feats.shape[2])).copy()
    valid = np.arange(feats.shape[1])[None, :] < frames[:, None]
    full[:, :feats.shape[1]] = np.where(valid[..., None], feats, full[:, :feats.shape[1]])
    return full, frames


@functools.lru_cache(maxsize=8)
def _encoder(model: AudioLM, mesh: Mesh | None):
    def encode(params, features, frames):
        return model.apply({"params": params}, features, frames, method=AudioLM.encode_audio)
    return jax.jit(mesh_lib.on_mesh(mesh, encode) if mesh is not None else encode)


def encode_audio(model: AudioLM, params, features, frames, mesh: Mesh | None = None):
    """(audio vectors [B, A, hidden], counts [B] as numpy) of the features."""
    if mesh is not None:
        put = lambda x: jax.device_put(x, mesh_lib.batch_sharding(mesh, np.ndim(x)))
        features, frames = put(np.asarray(features)), put(np.asarray(frames))
    vectors, counts = _encoder(model, mesh)(params, jnp.asarray(features), jnp.asarray(frames))
    return vectors, np.asarray(counts)


def expand_placeholder(prompt: Sequence[int], count: int, audio_token_id: int) -> list[int]:
    """`prompt` with its one audio placeholder token repeated `count` times."""
    at = [i for i, t in enumerate(prompt) if t == audio_token_id]
    if len(at) != 1:
        raise ValueError(f"a prompt must hold exactly one audio placeholder token (id "
                         f"{audio_token_id}); this one holds {len(at)}")
    return expand_placeholders(prompt, [count], audio_token_id)


def expand_placeholders(prompt: Sequence[int], counts: Sequence[int],
                        audio_token_id: int) -> list[int]:
    """`prompt` with its i-th audio placeholder token repeated counts[i] times (one
    placeholder per clip, as Qwen2-Audio's "Audio 1: <|audio_bos|><|AUDIO|><|audio_eos|>
    Audio 2: ..." prompts)."""
    if sum(1 for t in prompt if t == audio_token_id) != len(counts):
        raise ValueError(f"a prompt must hold one audio placeholder token (id {audio_token_id}) "
                         f"per clip: this one holds "
                         f"{sum(1 for t in prompt if t == audio_token_id)} for {len(counts)} "
                         f"clips")
    out: list[int] = []
    counts = iter(counts)
    for t in prompt:
        out.extend([t] * int(next(counts)) if t == audio_token_id else [t])
    return out


def generate_with_audio(model: AudioLM, params, prompts: Sequence[Sequence[int]], features,
                        frames, max_new_tokens: int, *, clips_per_prompt=None,
                        mesh: Mesh | None = None, **kwargs) -> list[list[int]]:
    """New token ids per prompt. By default each prompt holds one audio placeholder token and
    has one clip (features[b]), whose audio vectors replace the placeholder. With
    `clips_per_prompt` (one count per prompt), prompt b holds that many placeholders and takes
    the next that many clips of `features` in order (as transformers' Qwen2-Audio takes the
    clips of a batch). kwargs go to generate.generate (eos_id, pad_id, temperature, top_p,
    seed, row_keys). With `mesh`, params come from generate.shard_params(model, ...) and the
    number of clips divides by the data axes."""
    token = model.cfg.audio_token_id
    if clips_per_prompt is None:
        if len(prompts) != len(features):
            raise ValueError(f"{len(prompts)} prompts for {len(features)} clips; give one per "
                             f"clip (or clips_per_prompt)")
        vectors, counts = encode_audio(model, params, features, frames, mesh)
        expanded = [expand_placeholder(p, c, token) for p, c in zip(prompts, counts)]
        row_counts = counts
    else:
        per = [int(n) for n in clips_per_prompt]
        if len(per) != len(prompts) or sum(per) != len(features):
            raise ValueError(f"clips_per_prompt {per} must give one count per prompt "
                             f"({len(prompts)}) summing to the number of clips "
                             f"({len(features)})")
        clips, counts = encode_audio(model, params, features, frames, mesh)
        bounds = np.cumsum([0] + per)
        rows = [range(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
        expanded = [expand_placeholders(p, counts[r], token) for p, r in zip(prompts, rows)]
        # row b's vectors: its clips' valid vectors one after the other, padded with the first
        width = clips.shape[1]
        index = [np.concatenate([c * width + np.arange(counts[c]) for c in r] + [[0]])[:-1]
                 for r in rows]
        row_counts = np.array([len(i) for i in index])
        longest = max(1, int(row_counts.max(initial=0)))
        index = np.stack([np.pad(i, (0, longest - len(i))) for i in index]).astype(np.int32)
        vectors = jnp.take(clips.reshape(-1, clips.shape[-1]), jnp.asarray(index), axis=0)
    tokens, mask = gen.left_pad(expanded)
    check_placeholders(tokens, mask, row_counts, token)
    return gen.generate(QwenLM(model.cfg.text, model.dtype), params["language_model"], expanded,
                        max_new_tokens, mesh=mesh, embeds=vectors, placeholder_id=token,
                        **kwargs)


class Captioner:
    """An import-hf directory of an audio-language model, ready to caption batches of audio."""

    def __init__(self, directory: str, mesh: Mesh | None = None, dtype=None):
        from strongaudio_jax.infer import chat, import_hf
        cfg = import_hf.load_config(directory)
        if not hasattr(cfg, "audio"):
            raise ValueError(f"{directory} holds a {cfg.model_type} text-only LM; "
                             f"captioning needs an audio-language model (qwen2_audio)")
        self.model, self.params = import_hf.load(directory, dtype, mesh=mesh)
        self.mesh = mesh
        self.tokenizer = chat.ChatTokenizer(directory)
        self.placeholder = self.tokenizer.tokenizer.id_to_token(cfg.audio_token_id)
        if self.placeholder is None:
            raise ValueError(f"{directory}/tokenizer.json has no token of id "
                             f"{cfg.audio_token_id} (config audio_token_id)")
        gen_cfg = _generation_config(directory)
        eos = gen_cfg.get("eos_token_id", self.tokenizer.token_id(self.tokenizer.eos_token))
        self.eos_id = [eos] if isinstance(eos, int) else list(eos or [])
        pad = self.tokenizer.token_id(self.tokenizer.pad_token)
        self.pad_id = pad if pad is not None else 0

    def prompt_ids(self, prompt: str) -> list[int]:
        if prompt.count(self.placeholder) != 1:
            raise ValueError(f"the prompt must hold the audio placeholder {self.placeholder!r} "
                             f"once: {prompt!r}")
        return self.tokenizer.encode(prompt)

    def caption(self, waves, lengths=None, prompt: str = DEFAULT_PROMPT,
                max_new_tokens: int = 256, **sampling) -> list[str]:
        """One caption per clip of `waves` [B, T] (16 kHz; `lengths` valid samples). The prompt
        holds the model's audio placeholder token once (Qwen2-Audio: <|AUDIO|>). `sampling`
        goes to generate.generate (temperature, top_p, seed; row_keys [B, 2], one key per clip,
        for captions that do not depend on the batch)."""
        features, frames = audio_features(self.model, waves, lengths)
        rows = len(features)
        if self.mesh is not None:  # fill the batch up to a multiple of the data axes
            axes = mesh_lib.batch_sharding(self.mesh, 1).spec[0] or ()
            data = int(np.prod([self.mesh.shape[a] for a in
                                ((axes,) if isinstance(axes, str) else axes)]))
            extra = -rows % data
            features = np.concatenate([features, np.repeat(features[-1:], extra, 0)])
            frames = np.concatenate([frames, np.repeat(frames[-1:], extra)])
            if sampling.get("row_keys") is not None:
                keys = np.asarray(sampling["row_keys"])
                sampling["row_keys"] = np.concatenate([keys, np.repeat(keys[-1:], extra, 0)])
        ids = self.prompt_ids(prompt)
        out = generate_with_audio(self.model, self.params, [ids] * len(features), features,
                                  frames, max_new_tokens, mesh=self.mesh, eos_id=self.eos_id,
                                  pad_id=self.pad_id, **sampling)
        return [self.tokenizer.decode(o).strip() for o in out[:rows]]


def _generation_config(directory: str) -> dict:
    import json
    import os
    path = os.path.join(directory, "generation_config.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def caption(captioner: Captioner, waves, lengths=None, **kwargs) -> list[str]:
    """One caption per clip: `captioner.caption(waves, lengths, **kwargs)` (the function the
    captioner job and `strongaudio caption` call)."""
    return captioner.caption(waves, lengths, **kwargs)
