r"""Masked prediction (MAE-style) pre-training, the self-supervised baseline: no labels.

75% of each clip's time patches are hidden from the encoder; a light decoder reconstructs
their normalised log-mel values. Everything else as configs/mtc.py (the tag vocabulary is
still read, for nothing but the shared batch layout).

Variants: demo (bundled corpus, ~3 min on 2 CPU cores), smoke (seconds, tests), large
(ViT-B for an accelerator; set data.train_files / data.eval_files):
  strongaudio train --config configs/masked.py:demo --workdir /tmp/strongaudio_mae
Expect the loss (MSE on unit-variance patches) to fall from ~1.0 to ~0.5.
Launch targets (v5p-64, v5e-256, gpu8, gpu-2x8: the large variant laid out as in
configs/mtc.py's TARGETS; add data.train_files= / data.eval_files=):
  launch/tpu_pod.sh run NAME --zone ZONE configs/masked.py:v5p-64 gs://BUCKET/masked ...
  launch/tpu_pod.sh run NAME --zone ZONE configs/masked.py:v5e-256 gs://BUCKET/masked ...
  launch/gpu.sh configs/masked.py:gpu8 /data/runs/masked ...
  launch/slurm.sh --nodes 2 configs/masked.py:gpu-2x8 /shared/runs/masked ...
"""

from strongaudio_jax import config


def get_config(arg: str = "demo"):
    par = config.sibling(__file__, "par.py")
    c = par.base(arg)
    c.objectives = dict(masked=dict(weight=1.0, mask_ratio=0.75, decoder_width=64,
                                    decoder_depth=2, decoder_heads=2))
    c.augment.update(time_masks=0, freq_masks=0)  # the objective masks; SpecAugment would too
    return c
