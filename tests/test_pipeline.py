"""The Grain input pipeline: featurizer, sharding, mixing, resume, bad-data policy."""

import numpy as np
import pytest

from strongaudio_jax.data import pipeline


def _caption_length(clip):
    return {"caption_len": np.array([len(clip.caption)], np.int32)}


def test_featurizer_extra_hook_adds_fixed_shape_arrays(tiny_corpus):
    files = pipeline.expand_paths(str(tiny_corpus / "train-*.tfrecord"))
    feat = pipeline.Featurizer({}, 16000, 16000, False, extra=_caption_length)
    batch, clips = next(pipeline.eval_batches(files, feat, 4))
    assert batch["caption_len"].shape == (4, 1)
    assert batch["caption_len"][:, 0].tolist() == [len(c.caption) for c in clips]


def test_featurizer_extra_hook_may_not_overwrite_a_field(tiny_corpus):
    files = pipeline.expand_paths(str(tiny_corpus / "train-*.tfrecord"))
    feat = pipeline.Featurizer({}, 16000, 16000, False,
                               extra=lambda clip: {"tags": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match="tags"):
        next(pipeline.eval_batches(files, feat, 4))
