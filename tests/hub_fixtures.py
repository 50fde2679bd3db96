"""A freshly initialised (untrained) encoder wrapped as a `hub.StrongAudioModel`, shared by the
tests of the HEAR API (test_hub.py) and of the curation embedding passes (test_curate_dedup.py)."""

from strongaudio_jax import hub
from tests.conftest import REPO


def tiny_model(batch_size: int = 4, **info):
    """(model, program) of configs/mtc.py:smoke with 128 frames of 10 ms: a chunk is 1.27 s, so
    a few seconds of audio is several chunks. `info` adds to the export info (e.g. a step)."""
    import flax.linen as nn
    import jax

    from strongaudio_jax import config
    from strongaudio_jax.train import export, step

    cfg = config.load(f"{REPO}/configs/mtc.py:smoke", ["model.max_frames=128", "data.batch_size=8",
                                                       "data.clip_seconds=1.0"])
    program = step.build(cfg, 4)
    params = nn.meta.unbox(program.init(jax.random.key(0)).params)["encoder"]
    info = {**export.embedding_sizes(program.encoder, params, program.mel_cfg), **info}
    model = hub.StrongAudioModel(encoder=program.encoder, params=params, mel_cfg=program.mel_cfg,
                                 config=cfg, info=info, batch_size=batch_size)
    return model, program
