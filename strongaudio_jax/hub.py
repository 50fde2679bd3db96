"""Embeddings of an exported encoder through the HEAR 2021 API (hearbenchmark.com).

    model = load_model("EXPORT_DIR")        # made by `strongaudio export`
    model.sample_rate, model.scene_embedding_size, model.timestamp_embedding_size
    get_scene_embeddings(audio, model)      # [n_sounds, n_samples] -> [n_sounds, D]
    get_timestamp_embeddings(audio, model)  # -> ([n_sounds, n_timestamps, D], [n_sounds, n_timestamps] ms)

`audio` is a numpy array or a torch tensor (HEAR passes torch) at `model.sample_rate`; the
results are of the same kind. The frontend is the training one (same preset and statistics,
from the export's frontend.json). Audio longer than the encoder's `max_frames` is cut into
chunks that overlap by half; each output frame (token column) is taken from the chunk where it
lies furthest from the edges. The scene embedding is the mean over every frame of the whole
clip, which for a clip of one chunk is the training-time embedding (`Program.embed`). Chunks
go through the encoder in batches of `batch_size`, padded, so one shape compiles once.
"""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np

from strongaudio_jax import frontend
from strongaudio_jax.data import storage

DEFAULT_ZIPFORMER_MAX_FRAMES = 1000  # 10 s chunks: Zipformer has no position table to bound it


@dataclasses.dataclass(eq=False)
class StrongAudioModel:
    """An exported encoder: parameters, the training frontend and the chunking geometry."""

    encoder: object  # flax module
    params: dict  # the encoder's parameters
    mel_cfg: frontend.MelConfig
    config: object  # the training ConfigDict
    info: dict  # export.json
    batch_size: int = 16

    def __post_init__(self):
        self.sample_rate = int(self.mel_cfg.sample_rate)
        self.scene_embedding_size = int(self.info["scene_embedding_size"])
        self.timestamp_embedding_size = int(self.info["timestamp_embedding_size"])
        # Frames per output column: ViT's patch_time; Zipformer's output runs at 1/4 the frame rate.
        self.frames_per_token = int(getattr(self.encoder, "patch_time", 4))
        max_frames = int(getattr(self.encoder, "max_frames", DEFAULT_ZIPFORMER_MAX_FRAMES))
        self.chunk_tokens = max_frames // self.frames_per_token
        self.token_samples = self.frames_per_token * self.mel_cfg.hop_length
        # The longest chunk whose frames fit max_frames, in whole tokens.
        chunk = self.chunk_tokens * self.token_samples
        while int(frontend.num_frames(chunk, self.mel_cfg)) > max_frames:
            chunk -= self.mel_cfg.hop_length
        self.chunk_samples = chunk
        self.step_tokens = max(1, self.chunk_tokens // 2)  # chunks overlap by half
        self._columns = jax.jit(self._columns_fn)

    def _columns_fn(self, params, waves, lengths):
        """Per token column: embeddings [B, N, D] (mean over frequency) and mask [B, N]."""
        enc = self.encoder.apply({"params": params}, *frontend.log_mel(waves, self.mel_cfg, lengths))
        return enc.frames()

    def frame_centre_ms(self, k: np.ndarray) -> np.ndarray:
        """Centre of frame k (from the start of its chunk) in milliseconds."""
        c = self.mel_cfg
        if c.kind == "stft" and c.center:
            centre = k * c.hop_length
        elif c.kind == "kaldi" and not c.snip_edges:
            centre = k * c.hop_length + c.hop_length / 2
        else:
            centre = k * c.hop_length + c.win_length / 2
        return 1000.0 * centre / c.sample_rate

    def column_timestamps_ms(self, n: int) -> np.ndarray:
        """Centre of output columns 0..n-1 (the centre of their first and last frame), in ms."""
        first = np.arange(n) * self.frames_per_token
        return (self.frame_centre_ms(first) + self.frame_centre_ms(first + self.frames_per_token - 1)) / 2

    def embed(self, audio: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per sound: frame embeddings [N_i, D] and their timestamps [N_i] in ms."""
        audio = np.asarray(audio, np.float32)
        if audio.ndim != 2:
            raise ValueError(f"audio must be [n_sounds, n_samples] at {self.sample_rate} Hz, got "
                             f"shape {audio.shape}")
        n_sounds, n = audio.shape
        if n_sounds == 0 or n == 0:
            raise ValueError(f"audio of shape {audio.shape} holds no samples")
        width = min(n, self.chunk_samples)  # short sounds: one chunk of their own length
        starts = list(range(0, max(n - width, 0) + 1, self.step_tokens * self.token_samples))
        if starts[-1] + width < n:
            starts.append(starts[-1] + self.step_tokens * self.token_samples)
        waves, lengths = [], []
        for s in range(n_sounds):
            for start in starts:
                piece = audio[s, start:start + width]
                lengths.append(len(piece))
                waves.append(np.pad(piece, (0, width - len(piece))))
        cols, masks = [], []
        for b in range(0, len(waves), self.batch_size):
            w, l = np.stack(waves[b:b + self.batch_size]), np.array(lengths[b:b + self.batch_size])
            real = len(w)
            pad = self.batch_size - real  # a fixed batch shape: ragged batches do not recompile
            w = np.concatenate([w, np.zeros((pad, width), np.float32)])
            l = np.concatenate([l, np.full(pad, width)]).astype(np.int32)
            c, m = jax.device_get(self._columns(self.params, w, l))
            cols.append(np.asarray(c)[:real])
            masks.append(np.asarray(m)[:real])
        cols = np.concatenate(cols).reshape(n_sounds, len(starts), *cols[0].shape[1:])
        masks = np.concatenate(masks).reshape(n_sounds, len(starts), -1)
        return self._stitch(cols, masks, starts)

    def _stitch(self, cols, masks, starts):
        """Each global column from the chunk where it is furthest from a cut (the clip's own
        start and end are not cuts)."""
        offsets = np.array(starts) // self.token_samples  # global index of each chunk's column 0
        far = np.iinfo(np.int32).max
        embeddings, stamps = [], []
        for s in range(cols.shape[0]):
            out, best = {}, {}
            for i, off in enumerate(offsets):
                j = np.flatnonzero(masks[s, i])
                if not len(j):
                    continue
                left = j if i > 0 else np.full_like(j, far)
                right = j.max() - j if i < len(offsets) - 1 else np.full_like(j, far)
                for col, margin in zip(off + j, np.minimum(left, right)):
                    if margin > best.get(col, -1):
                        out[col], best[col] = cols[s, i, col - off], margin
            total = max(out) + 1 if out else 0
            if sorted(out) != list(range(total)):
                raise AssertionError(f"chunks left columns uncovered: {sorted(set(range(total)) - set(out))}")
            embeddings.append(np.stack([out[c] for c in range(total)]) if total
                              else np.zeros((0, cols.shape[-1]), np.float32))
            stamps.append(self.column_timestamps_ms(total))
        return embeddings, stamps


def load_model(model_file_path: str = "") -> StrongAudioModel:
    """The encoder of an export directory (`strongaudio export --out DIR`), on this host's
    default device (one CPU is enough)."""
    from safetensors.numpy import load as safetensors_load

    from strongaudio_jax import registry
    from strongaudio_jax.train import export as export_lib, run_config

    path = model_file_path
    if not path:
        raise ValueError("load_model needs the path of an export directory (made by "
                         "`strongaudio export --workdir W --out DIR`)")
    info_path = storage.join(path, "export.json")
    if not storage.exists(info_path):
        raise FileNotFoundError(f"{path} is not an export directory (no export.json); make one "
                                "with `strongaudio export --workdir W --out DIR`")
    with storage.open_file(info_path, "r") as f:
        info = json.load(f)
    if info.get("format_version") != export_lib.FORMAT_VERSION:
        raise ValueError(f"{path}: export format {info.get('format_version')}, this version of "
                         f"strongaudio_jax reads {export_lib.FORMAT_VERSION}")
    cfg = run_config.load(storage.join(path, run_config.FILE_NAME))
    with storage.open_file(storage.join(path, "frontend.json"), "r") as f:
        mel_cfg = export_lib.frontend_from_json(f.read())
    with storage.open_file(storage.join(path, "model.safetensors"), "rb") as f:
        flat = safetensors_load(f.read())
    params = export_lib.unflatten({k: v for k, v in flat.items() if k.startswith("encoder/")})
    encoder = registry.resolve("models", cfg.model.name).build(
        {k: v for k, v in cfg.model.items() if k != "name"})
    params = jax.tree.map(jnp.asarray, params["encoder"])
    return StrongAudioModel(encoder=encoder, params=params, mel_cfg=mel_cfg, config=cfg, info=info)


def _to_numpy(audio):
    if type(audio).__module__.startswith("torch"):
        return audio.detach().cpu().numpy(), True
    return np.asarray(audio), False


def _like(x: np.ndarray, torch_out: bool):
    if torch_out:
        import torch
        return torch.from_numpy(np.ascontiguousarray(x))
    return x


def get_timestamp_embeddings(audio, model: StrongAudioModel):
    """(embeddings [n_sounds, n_timestamps, D], timestamps [n_sounds, n_timestamps] in ms:
    the centre of each output frame)."""
    wave, is_torch = _to_numpy(audio)
    embeddings, stamps = model.embed(wave)
    n = max((len(e) for e in embeddings), default=0)  # every sound has the same length in HEAR
    emb = np.stack([np.pad(e, ((0, n - len(e)), (0, 0))) for e in embeddings])
    ts = np.stack([model.column_timestamps_ms(n) for _ in embeddings]).astype(np.float32)
    return _like(emb, is_torch), _like(ts, is_torch)


def get_scene_embeddings(audio, model: StrongAudioModel):
    """[n_sounds, D]: the mean of the frame embeddings over the whole clip."""
    wave, is_torch = _to_numpy(audio)
    embeddings, _ = model.embed(wave)
    d = model.scene_embedding_size
    scene = np.stack([e.mean(0) if len(e) else np.zeros(d, np.float32) for e in embeddings])
    return _like(scene.astype(np.float32), is_torch)
