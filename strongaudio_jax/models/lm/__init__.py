"""Decoder-only language models (Qwen2 / Qwen2.5 / Qwen3 dense) in Flax linen."""

from strongaudio_jax.models.lm.qwen import QwenConfig, QwenLM, init_cache, place_embeds

__all__ = ["QwenConfig", "QwenLM", "init_cache", "place_embeds"]
