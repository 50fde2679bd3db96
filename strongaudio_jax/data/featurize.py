"""One record -> model inputs (waveform crop, valid length, multi-hot tags, extras).

Kept free of JAX and Grain: decoding worker processes import only this, numpy and soundfile.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

import numpy as np

from strongaudio_jax.data import audio, schema


@dataclasses.dataclass(frozen=True)
class Featurizer:
    """Record bytes -> model inputs: waveform crop, its valid length, multi-hot tags.

    resample: a clip at another rate than `sample_rate` is resampled (True) or is bad data
    (False: an error, or skipped and counted with skip_bad).
    `extra` (optional) maps the parsed clip to more fixed-shape numpy arrays (e.g. tokenised
    caption text for text objectives); they are merged into each row under their own keys.
    It must be picklable (a module-level function or a dataclass) to run in worker processes.
    """

    vocab: Mapping[str, int]
    sample_rate: int
    clip_samples: int
    random_crop: bool
    extra: Callable[[schema.Clip], dict[str, np.ndarray]] | None = None
    resample: bool = False

    def fill(self, data: bytes, where: str, crop: float | None, wave_out: np.ndarray,
             tags_out: np.ndarray) -> tuple[int, schema.Clip | None, list[str], bool]:
        """Decodes one record into preallocated rows (waveform int16 or float32, tags);
        returns (valid samples, the parsed clip when `extra` needs it, else None, the record's
        tags that are not in the vocabulary: untrained, so the pipeline counts them, whether
        the audio was resampled: counted too). `crop` in [0, 1) places a random crop (ignored
        unless random_crop). A clip whose record or audio header gives another rate than
        `sample_rate` is bad data unless `resample`."""
        if self.extra is not None:  # the objectives' text needs the whole clip
            clip = schema.example_to_clip(data, where)
            cid, encoded, rate, tags = clip.id, clip.audio, clip.sample_rate, clip.tags
        else:
            clip = None
            cid, encoded, rate, tags = schema.example_to_training_fields(data, where)
        where = f"{where} (clip {cid!r})"
        if rate != self.sample_rate and not self.resample:
            raise audio.AudioDecodeError(
                f"{where}: sample rate {rate} Hz, but the config expects "
                f"{self.sample_rate} Hz (data.sample_rate); resample the corpus or set "
                "data.resample=True to resample while reading", "sample_rate")
        resampled: list[int] = []
        length = audio.decode_into(encoded, wave_out, where=where, rate=self.sample_rate,
                                   crop=crop if self.random_crop else None,
                                   resample_ok=self.resample, resampled=resampled)
        tags_out[:] = 0
        outside = []
        for t in tags:
            i = self.vocab.get(t)
            if i is None:
                outside.append(t)
            else:
                tags_out[i] = 1.0
        return length, clip, outside, bool(resampled)

    def extras(self, clip: schema.Clip | None, draw: tuple[int, ...] | None = None
               ) -> dict[str, np.ndarray]:
        """`extra(clip)`; an extra with `takes_draw` also gets `draw` (seed, batch, row: the
        seed of its random choices, e.g. one of several captions)."""
        if self.extra is None or clip is None:
            return {}
        if getattr(self.extra, "takes_draw", False):
            more = self.extra(clip, draw=draw)
        else:
            more = self.extra(clip)
        clash = set(more) & {"waveform", "length", "tags", "valid"}
        if clash:
            raise ValueError(f"Featurizer.extra returned keys {sorted(clash)} that the "
                             f"featurizer already fills; rename them")
        return {k: np.asarray(v) for k, v in more.items()}

    def __call__(self, record: tuple[bytes, str], rng: np.random.Generator | None = None) -> dict:
        """One float32 row (evaluation paths); `rng` draws the crop when random_crop."""
        data, where = record
        wave = np.zeros(self.clip_samples, np.float32)
        tags = np.zeros(len(self.vocab), np.float32)
        crop = float(rng.random()) if rng is not None and self.random_crop else None
        length, clip, _, _ = self.fill(data, where, crop, wave, tags)
        return {"waveform": wave, "length": np.int32(length), "tags": tags, "valid": np.True_,
                **self.extras(clip)}
