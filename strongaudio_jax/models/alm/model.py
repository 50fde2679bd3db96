"""An audio-language model of the Qwen2-Audio kind: audio encoder -> projector -> decoder LM.

    features [B, F, mel] --audio_tower--> [B, A, d_audio] --multi_modal_projector--> [B, A, hidden]
    prompt tokens with A_b copies of the audio placeholder token per row
        --language_model (QwenLM, the audio vectors in place of the placeholders' embeddings)-->
        logits

The three parts are named as in Hugging Face (`audio_tower`, `multi_modal_projector`,
`language_model`), each built from its own config, so another model of this kind is a new
entry, not a rewrite: the audio encoder is looked up by `kind` in `ENCODERS` (an Omni-style
encoder is another module there), the LM is models/lm's QwenLM (a mixture-of-experts LM would be
another LM class chosen by its model_type), and the projector is one Dense layer (Qwen2-Audio;
a two-layer MLP projector is another small module).

Each row of a batch carries one audio clip, and its prompt holds exactly `output_lengths(frames)`
placeholder tokens (`audio_token_id`), in the order the vectors are placed.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from strongaudio_jax.models.alm.whisper_encoder import WhisperEncoder, WhisperEncoderConfig
from strongaudio_jax.models.lm.qwen import QwenConfig, QwenLM, init_cache, place_embeds

# encoder kind -> (config class, module class)
ENCODERS = {"whisper": (WhisperEncoderConfig, WhisperEncoder)}


@dataclasses.dataclass(frozen=True)
class AudioLMConfig:
    audio: Any  # an encoder config of ENCODERS (WhisperEncoderConfig)
    text: QwenConfig
    audio_token_id: int
    model_type: str = "qwen2_audio"

    def to_dict(self) -> dict:
        return {"model_type": self.model_type, "audio_token_id": self.audio_token_id,
                "audio": self.audio.to_dict(), "text": self.text.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping) -> "AudioLMConfig":
        kind = d["audio"].get("kind", "whisper")
        return cls(audio=ENCODERS[kind][0].from_dict(d["audio"]),
                   text=QwenConfig.from_dict(d["text"]), audio_token_id=int(d["audio_token_id"]),
                   model_type=d.get("model_type", "qwen2_audio"))

    # transformers' Qwen2Config defaults for a text_config that leaves fields out (the
    # Qwen2-Audio-7B config.json lists only the fields that differ from them)
    TEXT_DEFAULTS = {"model_type": "qwen2", "vocab_size": 151936, "hidden_size": 4096,
                     "intermediate_size": 22016, "num_hidden_layers": 32,
                     "num_attention_heads": 32, "rope_theta": 10000.0, "rms_norm_eps": 1e-6,
                     "tie_word_embeddings": False}

    @classmethod
    def from_hf(cls, hf: Mapping, source: str = "config.json") -> "AudioLMConfig":
        """From a transformers Qwen2AudioForConditionalGeneration config.json dict."""
        if hf.get("model_type") != "qwen2_audio":
            raise ValueError(f"{source}: model_type {hf.get('model_type')!r} is not an "
                             f"audio-language model this package implements (qwen2_audio)")
        text = {**cls.TEXT_DEFAULTS, **{k: v for k, v in (hf.get("text_config") or {}).items()
                                        if v is not None}}
        if text.get("use_mrope"):
            raise ValueError(f"{source}: text_config.use_mrope=true (multimodal rotary "
                             f"positions) is not implemented")
        audio = dict(hf.get("audio_config") or {})
        if audio.get("model_type", "qwen2_audio_encoder") != "qwen2_audio_encoder":
            raise ValueError(f"{source}: audio_config.model_type {audio.get('model_type')!r} is "
                             f"not implemented; only the Whisper-style qwen2_audio_encoder")
        token = hf.get("audio_token_index", hf.get("audio_token_id", 151646))
        return cls(audio=WhisperEncoderConfig.from_hf(audio, source),
                   text=QwenConfig.from_hf(text, source + " (text_config)"),
                   audio_token_id=int(token))


class Projector(nn.Module):
    """Qwen2-Audio's multi_modal_projector: one Dense layer from the encoder to the LM width."""

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.features, name="linear", dtype=self.dtype,
                        kernel_init=nn.with_logical_partitioning(nn.initializers.normal(0.02),
                                                                 (None, "embed")),
                        bias_init=nn.with_logical_partitioning(nn.initializers.zeros,
                                                               ("embed",)))(x)


class AudioLM(nn.Module):
    """`__call__`: the full forward (logits of a prompt with its audio); `encode_audio`: the
    audio vectors in the LM's width; `language_model`: the LM (prefill / decode steps)."""

    cfg: AudioLMConfig
    dtype: Any = jnp.float32

    def setup(self):
        encoder = ENCODERS[self.cfg.audio.kind][1]
        self.audio_tower = encoder(self.cfg.audio, self.dtype)
        self.multi_modal_projector = Projector(self.cfg.text.hidden_size, self.dtype)
        self.language_model = QwenLM(self.cfg.text, self.dtype)

    def encode_audio(self, features, lengths):
        """(features [B, F, mel], valid frames [B]) -> (vectors [B, A, hidden], counts [B])."""
        x, counts = self.audio_tower(features, lengths)
        return self.multi_modal_projector(x), counts

    def __call__(self, tokens, positions, start, key_mask, cache, features, lengths):
        """Logits of left-padded prompts whose placeholder tokens take the audio vectors."""
        audio, _ = self.encode_audio(features, lengths)
        mask = jax.lax.dynamic_slice_in_dim(key_mask, start, tokens.shape[1], axis=1)
        embeds, mask = place_embeds(tokens, mask, audio, self.cfg.audio_token_id)
        return self.language_model(tokens, positions, start, key_mask, cache, embeds, mask)

    def dummy_inputs(self):
        """Arguments of `init` for a batch of one (shapes only matter)."""
        a = self.cfg.audio
        tokens = jnp.zeros((1, 1), jnp.int32)
        return (tokens, tokens, 0, jnp.ones((1, 1), bool), init_cache(self.cfg.text, 1, 1),
                jnp.zeros((1, 4, a.num_mel_bins), jnp.float32), jnp.full((1,), 4, jnp.int32))


def check_placeholders(tokens: np.ndarray, mask: np.ndarray, counts, audio_token_id: int):
    """Refuses prompts whose number of placeholder tokens differs from their audio's vectors."""
    have = ((np.asarray(tokens) == audio_token_id) & np.asarray(mask)).sum(axis=1)
    counts = np.asarray(counts)
    bad = np.nonzero(have != counts)[0]
    if bad.size:
        r = int(bad[0])
        raise ValueError(f"prompt {r} holds {int(have[r])} audio placeholder tokens (id "
                         f"{audio_token_id}) but its audio gives {int(counts[r])} vectors; "
                         f"expand the placeholder to output_lengths(frames) copies")
