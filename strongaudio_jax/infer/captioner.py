"""Captioner labeler for the engine (engine.py): a checkpoint of this stack's captioning
objective (audio encoder + text decoder) writes each clip's `caption` and `caption/summary`.

The model was trained on the corpus's one-sentence summaries, so its output is a summary:
it fills both fields (the objectives read caption/summary). Pieces of a chunked clip are
captioned one by one and joined in order. Decoding (decoding.py) runs inside one jitted
function per bucket: encoder, prefill, the decoding loop, on the mesh.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from strongaudio_jax.config import ConfigError
from strongaudio_jax.data import schema
from strongaudio_jax.infer import decoding, model as model_lib
from strongaudio_jax.infer.tagger import provenance_text
from strongaudio_jax.models.text import decoder as decoder_lib
from strongaudio_jax.parallel import mesh as mesh_lib


def settings_from_config(decode_cfg) -> decoding.Settings:
    try:
        s = decoding.Settings(**dict(decode_cfg))
    except TypeError as e:
        raise ConfigError(f"decode: {e}; known: "
                          f"{[f.name for f in dataclasses.fields(decoding.Settings)]}") from e
    s.check()
    return s


def decode_length(module, settings: decoding.Settings) -> int:
    """Tokens the captioner decodes: decode.max_len (0: the decoder's), at most the decoder's."""
    max_len = min(settings.max_len or module.max_len, module.max_len)
    if max_len < 2:
        raise ConfigError(f"decode.max_len={settings.max_len}: at least 2 ([CLS] [SEP])")
    if settings.strategy == "parallel" and max_len != module.max_len:
        raise ConfigError("decode.strategy='parallel' predicts the decoder's whole length "
                          f"({module.max_len}); leave decode.max_len at 0")
    return max_len


def caption_fn(program, module, settings: decoding.Settings, toks: decoding.Tokens,
               max_len: int):
    """The captioner's device program: (params, waveform [B, S], length [B], keys [B, 2]) ->
    token ids [B, max_len]: encoder, prefill and the decoding loop in one function (jitted on
    the job's mesh; compiled for a TPU topology by infer/compile_check.py)."""
    decoder = decoder_lib.Decoder(module.vocab_size, module.max_len, module.decoder_size)
    mask_id = module.mask_id

    def caption(params, waveform, length, keys):
        enc = program.encoder.apply({"params": params["encoder"]},
                                    *program.features({"waveform": waveform, "length": length}))
        dec = params["heads"]["captioning"]["decoder"]
        if settings.strategy == "parallel":
            return decoding.parallel_decode(decoder, dec, enc, settings, toks, mask_id, max_len)
        if settings.strategy == "beam":
            return decoding.beam_search(dec, enc.tokens, enc.mask, settings, toks, max_len)
        return decoding.generate(dec, enc.tokens, enc.mask, keys, settings, toks, max_len)
    return caption


class Captioner:
    needs_audio = True

    def __init__(self, trained: model_lib.TrainedModel, mesh, batch_per_device: int,
                 settings: decoding.Settings):
        cap = trained.objective("captioning")
        from strongaudio_jax.data import text_fields
        self.tokenizer = text_fields.tokenizer_from_config(trained.cfg)
        module = cap.module
        max_len = decode_length(module, settings)
        self.settings = settings
        self.sample_rate = int(trained.program.mel_cfg.sample_rate)
        self.batch_size = batch_per_device * mesh.size // mesh.shape["tensor"]
        self.check_bucket = trained.check_bucket
        self.name = "caption"
        used = {"greedy": ("repetition_penalty",),
                "sample": ("repetition_penalty", "temperature", "top_p", "seed"),
                "beam": ("repetition_penalty", "beams", "length_penalty"),
                "parallel": ("refine_steps",)}[settings.strategy]
        self.provenance = {"job": "caption", "model": trained.describe(), "checkpoint": trained.path,
                           "step": trained.step,
                           "settings": {"strategy": settings.strategy, "max_len": max_len,
                                        **({"min_len": settings.min_len} if settings.min_len
                                           else {}),
                                        **{k: getattr(settings, k) for k in used}}}
        self._text = provenance_text(self.provenance)
        program = trained.program
        toks = decoding.Tokens.of(self.tokenizer)
        params = trained.place(mesh)
        batch_sh = mesh_lib.batch_sharding(mesh, 2, program.rules)
        len_sh = mesh_lib.batch_sharding(mesh, 1, program.rules)
        self._sh = (batch_sh, len_sh)
        caption = caption_fn(program, module, settings, toks, max_len)
        fn = jax.jit(mesh_lib.on_mesh(mesh, caption, program.rules),
                     in_shardings=(None, batch_sh, len_sh, batch_sh))
        self._run = lambda w, n, k: np.asarray(jax.device_get(fn(params, w, n, k)))

    def label_audio(self, waves, lengths, ids) -> list[str]:
        keys = decoding.row_keys(self.settings.seed, ids)
        ids_out = self._run(jax.device_put(waves, self._sh[0]),
                            jax.device_put(lengths, self._sh[1]),
                            jax.device_put(keys, self._sh[0]))
        return self.tokenizer.decode(ids_out)

    def combine(self, results: list[str]) -> str:
        return " ".join(r for r in results if r)

    def apply(self, clip: schema.Clip, text: str) -> tuple[schema.Clip, bool]:
        clip.caption = clip.summary = text
        clip.caption_model = self._text
        return clip, not text


class AudioLMCaptioner:
    """Captioner labeler over an imported audio-language model (`strongaudio import-hf` of a
    Qwen2-Audio checkpoint; infer/alm_caption.py): each clip's audio fills the prompt's audio
    placeholder and the model's reply becomes the record's `caption` (a long, free-form
    caption: `caption/summary` is left as it was). Greedy, or sampled (temperature, top_p)
    with one key per record from decode.seed and the clip id (decoding.row_keys), so a sampled
    caption depends on the record alone, not on its batch or the number of devices."""

    needs_audio = True
    name = "caption"

    def __init__(self, directory: str, mesh, batch_per_device: int,
                 settings: decoding.Settings, prompt: str):
        from strongaudio_jax.infer import alm_caption

        if settings.strategy not in ("greedy", "sample"):
            raise ConfigError(f"decode.strategy={settings.strategy!r}: an imported audio-language "
                              "model decodes with decode.strategy='greedy' or 'sample'")
        self.settings = settings
        if settings.repetition_penalty != 1.0 or settings.min_len:
            raise ConfigError("decode.repetition_penalty and decode.min_len are not supported "
                              "for an imported audio-language model; leave them at 1.0 and 0")
        self.max_new_tokens = settings.max_len or 256
        try:
            self.cap = alm_caption.Captioner(directory, mesh=mesh)
        except ValueError as e:
            raise ConfigError(f"model.path={directory!r}: {e}") from e
        self.prompt = prompt or alm_caption.DEFAULT_PROMPT
        self.cap.prompt_ids(self.prompt)  # the placeholder is there once, or a clear error
        self.sample_rate = 16000  # the Whisper frontends' rate
        self.window = self.cap.model.cfg.audio.max_frames * 160  # samples the encoder takes
        self.batch_size = batch_per_device * mesh.size // mesh.shape["tensor"]
        self.provenance = {"job": "caption", "model": "qwen2_audio (import-hf)",
                           "checkpoint": directory, "step": 0,
                           "settings": {"strategy": settings.strategy,
                                        "max_new_tokens": self.max_new_tokens,
                                        "prompt": self.prompt,
                                        **({"temperature": settings.temperature,
                                            "top_p": settings.top_p, "seed": settings.seed}
                                           if settings.strategy == "sample" else {})}}
        self._text = provenance_text(self.provenance)

    def check_bucket(self, samples: int) -> None:
        if samples > self.window:
            raise ConfigError(f"buckets.seconds: the largest bucket ({samples / 16000:g} s) is "
                              f"longer than the audio encoder's window "
                              f"({self.window / 16000:g} s); longer clips are chunked "
                              "(buckets.over_long='chunk') into pieces of the largest bucket")

    def label_audio(self, waves, lengths, ids) -> list[str]:
        sampling = {}
        if self.settings.strategy == "sample":
            sampling = dict(temperature=self.settings.temperature, top_p=self.settings.top_p,
                            row_keys=decoding.row_keys(self.settings.seed, ids))
        return self.cap.caption(waves, lengths, prompt=self.prompt,
                                max_new_tokens=self.max_new_tokens, **sampling)

    def combine(self, results: list[str]) -> str:
        return " ".join(r for r in results if r)

    def apply(self, clip: schema.Clip, text: str) -> tuple[schema.Clip, bool]:
        clip.caption = text
        clip.caption_model = self._text
        return clip, not text
