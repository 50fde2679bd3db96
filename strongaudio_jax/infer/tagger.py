"""Tagger labelers for the engine (engine.py describes the interface).

(a) `MTCTagger`: audio -> tags with a checkpoint of this stack's MTC objective. The clip-level
    tag probabilities (sigmoid of the head's logits) are kept for the tags chosen by top-k
    and / or a threshold, highest first, in `tags` / `tags/scores`. Pieces of a chunked clip
    are combined by the maximum probability per tag (a tag heard anywhere in the clip).
(b) `CaptionTagger`: the record's caption -> tags with a UTS extractor (uts/): the rules
    extractor, or (tag.extractor=lm) an LM imported with `strongaudio import-hf`, run by
    uts/lm_tagger.py's LMGenerator on this job's mesh (data-parallel, the model split over the
    `tensor` axis when model.tensor_parallel > 1; prompts in length buckets of fixed shapes;
    sampling keys per record). Scores are empty. Captions whose reply cannot be parsed get no
    tags and are counted under failures by reason ("reply: no JSON object in the reply", ...).
"""

from __future__ import annotations

import json

import jax
import numpy as np

from strongaudio_jax.config import ConfigError
from strongaudio_jax.data import schema
from strongaudio_jax.infer import model as model_lib
from strongaudio_jax.parallel import mesh as mesh_lib


def provenance_text(provenance: dict) -> str:
    """What goes into a record's `caption/model` / `tags/model`: compact, sorted JSON."""
    return json.dumps(provenance, sort_keys=True, separators=(",", ":"))


def probs_fn(program, mtc):
    """The tagger's device program: (params, waveform [B, S], length [B]) -> tag probabilities
    [B, tags] (jitted on the job's mesh; compiled for a TPU topology by infer/compile_check.py)."""
    def probs(params, waveform, length):
        enc = program.encoder.apply({"params": params["encoder"]},
                                    *program.features({"waveform": waveform, "length": length}))
        logits = mtc.module.apply({"params": params["heads"]["mtc"]}, enc, method="logits")
        return jax.nn.sigmoid(logits)
    return probs


class MTCTagger:
    needs_audio = True

    def __init__(self, trained: model_lib.TrainedModel, mesh, batch_per_device: int,
                 top_k: int = 10, threshold: float = 0.0):
        mtc = trained.objective("mtc")
        if not trained.vocab:
            raise ConfigError(f"model.path={trained.path!r} has no vocab.json: the MTC head's "
                              "tags are unknown")
        if top_k <= 0 and threshold <= 0:
            raise ConfigError("tag.top_k <= 0 and tag.threshold <= 0 would keep every tag; set "
                              "one of them")
        self.vocab = np.array(trained.vocab, dtype=object)
        self.top_k, self.threshold = int(top_k), float(threshold)
        self.sample_rate = int(trained.program.mel_cfg.sample_rate)
        self.batch_size = batch_per_device * mesh.size // mesh.shape["tensor"]
        self.name = "tag"
        self.provenance = {"job": "tag", "mode": "audio", "model": trained.describe(),
                           "checkpoint": trained.path, "step": trained.step,
                           "settings": {"top_k": self.top_k, "threshold": self.threshold,
                                        "chunks": "max"}}
        self._text = provenance_text(self.provenance)
        self.check_bucket = trained.check_bucket
        program = trained.program
        params = trained.place(mesh)
        batch_sh = mesh_lib.batch_sharding(mesh, 2, program.rules)
        len_sh = mesh_lib.batch_sharding(mesh, 1, program.rules)
        fn = jax.jit(mesh_lib.on_mesh(mesh, probs_fn(program, mtc), program.rules),
                     in_shardings=(None, batch_sh, len_sh))
        self._probs = lambda w, n: np.asarray(jax.device_get(fn(params, w, n)))
        self._mesh_sh = (batch_sh, len_sh)

    def label_audio(self, waves, lengths, ids) -> list[np.ndarray]:
        w = jax.device_put(waves, self._mesh_sh[0])
        n = jax.device_put(lengths, self._mesh_sh[1])
        return list(self._probs(w, n))

    def combine(self, results):
        return np.max(np.stack(results), axis=0)

    def apply(self, clip: schema.Clip, probs: np.ndarray) -> tuple[schema.Clip, bool]:
        order = np.argsort(-probs, kind="stable")
        if self.top_k > 0:
            order = order[:self.top_k]
        if self.threshold > 0:
            order = order[probs[order] >= self.threshold]
        tags = tuple(str(t) for t in self.vocab[order])
        clip.tags, clip.tag_scores = tags, tuple(float(p) for p in probs[order])
        clip.tags_model = self._text
        return clip, not tags


class CaptionTagger:
    """Caption -> tags with a UTS extractor; clips without a caption get no tags."""

    needs_audio = False
    batch_size = 0
    sample_rate = 0

    def __init__(self, extractor, field: str = "caption"):
        if field not in ("caption", "summary"):
            raise ConfigError(f"tag.caption_field={field!r}: use 'caption' or 'summary'")
        self.extractor, self.field = extractor, field
        self.name = "tag"
        self.provenance = {"job": "tag", "mode": "caption", "model": f"uts:{extractor.name}",
                           "settings": {"field": field}}
        self.provenance.update(getattr(extractor, "provenance", {}))
        self.provenance["settings"] = {"field": field,
                                       **getattr(extractor, "provenance", {}).get("settings", {})}
        self._text = provenance_text(self.provenance)

    def label_clips(self, clips):
        from strongaudio_jax.uts.tagging import CaptionItem
        from strongaudio_jax.uts.llm_reply import TagResult

        items = [CaptionItem(c.id, c.caption if self.field == "caption" else c.summary)
                 for c in clips]
        with_text = [it for it in items if it.caption.strip()]
        got = dict(self.extractor.tag_many(with_text)) if with_text else {}
        return [got.get(it.id, TagResult.failed("no caption")) for it in items]

    def apply(self, clip: schema.Clip, result) -> tuple[schema.Clip, bool]:
        tags = tuple(result.tags) if result.status in ("ok", "repaired") else ()
        clip.tags, clip.tag_scores = tags, ()
        clip.tags_model = self._text
        return clip, not tags

    @staticmethod
    def failure(result) -> str | None:
        """The reason a record got no tags ('no caption', 'reply: ...'), or None."""
        if result.status in ("ok", "repaired"):
            return None
        problem = (result.problems or ["failed"])[0]
        problem = problem.split(" (")[0]  # "no 'tags' key (keys: ...)" -> "no 'tags' key"
        return problem if problem == "no caption" else f"reply: {problem}"


def extractor_from_config(tag_cfg, model_cfg=None, mesh=None, batch_per_device: int = 8,
                          window: int = 256):
    """The UTS extractor of `tag.extractor`: 'rules' (lexicon files in tag.lexicon) or 'lm' (the
    import-hf LM at model.path, on `mesh`, batches of batch_per_device x data devices)."""
    from strongaudio_jax.uts.normalize import Normalizer

    normalize = Normalizer(list(tag_cfg.synonyms))
    if tag_cfg.extractor == "rules":
        from strongaudio_jax.uts.rules_tagger import RulesTagger
        return RulesTagger(normalize, list(tag_cfg.lexicon))
    if tag_cfg.extractor == "lm":
        import os

        from strongaudio_jax.infer import import_hf
        from strongaudio_jax.uts import llm_reply
        from strongaudio_jax.uts.lm_tagger import LMGenerator, LMTagger

        path = model_cfg.path if model_cfg is not None else ""
        if not path or not os.path.isfile(os.path.join(path, import_hf.CONFIG_FILE)):
            raise ConfigError(f"tag.extractor=lm needs model.path = a `strongaudio import-hf` "
                              f"output directory (got {path!r})")
        data = mesh.size // mesh.shape["tensor"]
        gen = LMGenerator(path, tag_cfg.max_new_tokens, batch_per_device * data,
                          length_multiple=tag_cfg.length_multiple,
                          temperature=tag_cfg.temperature, top_p=tag_cfg.top_p,
                          seed=tag_cfg.seed, mesh=mesh)
        name = f"jax-lm:{os.path.basename(os.path.normpath(path))}"
        extractor = LMTagger(gen, normalize, batch_size=max(window, 1), name=name)
        extractor.provenance = {
            "model": f"uts:{name}", "checkpoint": os.path.abspath(path), "step": None,
            "prompt": llm_reply.lm_prompt("{caption}"),
            "settings": {**gen.settings, "length_multiple": gen.length_multiple}}
        return extractor
    raise ConfigError(f"tag.extractor={tag_cfg.extractor!r}: this job runs 'rules' or 'lm' (an "
                      "LM imported with `strongaudio import-hf`, model.path=DIR); `strongaudio "
                      "uts tag --extractor http` serves an endpoint")
