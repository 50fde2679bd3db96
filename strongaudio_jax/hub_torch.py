"""An exported encoder as a PyTorch module, in the X-ARES plug-in convention.

    encoder = StrongAudioEncoder("EXPORT_DIR")   # pip install 'strongaudio_jax[torch]'
    encoder.sampling_rate, encoder.output_dim, encoder.hop_size_in_ms
    encoder(torch.randn(2, 50000))               # -> [2, T', output_dim] float32

The encoder runs in JAX (`strongaudio_jax.hub`): the module holds no torch parameters and
gives no gradients; it is for frozen-encoder evaluation harnesses that expect a torch module.
"""

from __future__ import annotations

import torch

from strongaudio_jax import hub


class StrongAudioEncoder(torch.nn.Module):
    def __init__(self, model: str | hub.StrongAudioModel = ""):
        super().__init__()
        self.model = model if isinstance(model, hub.StrongAudioModel) else hub.load_model(model)
        self.sampling_rate = self.model.sample_rate
        self.output_dim = self.model.timestamp_embedding_size
        self.hop_size_in_ms = 1000.0 * self.model.token_samples / self.model.sample_rate

    @torch.no_grad()
    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """audio [B, T] (or [T]) at `sampling_rate` -> frame embeddings [B, T', output_dim]."""
        if audio.ndim == 1:
            audio = audio[None]
        embeddings, _ = hub.get_timestamp_embeddings(audio.float(), self.model)
        return embeddings.to(audio.device)
