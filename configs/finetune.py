r"""Fine-tuning an exported encoder on a downstream task (strongaudio_jax/train/finetune.py).

The export and the task are named on the command line (they are recorded in the work dir's
config.json as `export` and `task`):

  default  AST / BEATs-style recipe for a real task on an accelerator: 10 s windows, batch 64,
           AdamW at 1e-4 with layer decay 0.75, mixup 0.5, SpecAugment, EMA:
             strongaudio finetune --from EXPORT --task fsd50k:/data/FSD50K --out W \
               --config configs/finetune.py data.balanced=True
  demo     the demo MTC export (README: strongaudio train --config configs/mtc.py:demo, then
           strongaudio export) on a demo probe task, a couple of minutes on a 2-core CPU; it
           also fits the frozen export's linear probe on the same task for comparison
           (results.json, `frozen_linear_probe`):
             strongaudio finetune --from /tmp/demo_export --task demo:event \
               --out /tmp/ft_event --config configs/finetune.py:demo
           Expect (measured 2026-12-04 on a 2-core CPU, the table in docs/finetune.md): the loss
           from ~1.8 at step 25 to ~0.7 at step 300, test accuracy 0.774 against the frozen
           linear probe's 0.677 on demo:event (instrument 0.500 vs 0.500, language 0.279 vs
           0.302, domain 0.911 vs 0.956).
  smoke    a few steps with a tiny batch, for tests.

Override any field as key=value, e.g. `train.steps=500 optimizer.layer_decay=0.65`.
"""

import ml_collections

from strongaudio_jax.parallel import mesh as mesh_lib

VARIANTS = ("default", "demo", "smoke")


def get_config(arg: str = "default") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.export = ""  # set by --from
    c.task = ""  # set by --task
    c.fold = 0  # k-fold tasks: which round (train folds, valid fold, test fold) to run
    c.baseline_linear = False  # also fit the frozen export's linear probe (results.json)

    c.data = dict(
        clip_seconds=0.0,  # training window; 0: the task's sample_duration, else 10 s
        batch_size=64,  # global, across all hosts
        eval_batch_size=0,  # windows per evaluation batch; 0: batch_size
        balanced=False,  # draw clips with probability 1 / frequency of their rarest class
        threads=2,  # decoding threads of the input pipeline (per host)
    )
    # Fields of the export's `model` block that do not change its parameters, e.g.
    # drop_path=0.1, remat="full", dtype="bfloat16", pos_time="interpolate".
    c.model = dict()
    c.loss = dict(label_smoothing=0.0)
    c.augment = dict(gain_db_min=-6.0, gain_db_max=6.0, mixup_alpha=0.5, mixup_prob=1.0,
                     mixup_labels="convex", time_masks=2, time_mask_width=40, freq_masks=2,
                     freq_mask_width=12)
    c.mesh = dict(data=-1, fsdp=1, tensor=1)
    c.sharding_rules = mesh_lib.default_rules()
    c.train = dict(steps=20_000, log_every=100, checkpoint_every=2000, keep_checkpoints=2,
                   ema_decay=0.999, eval_every=0)
    # train/optimizer.py's fields, plus layer_decay: block i of L learns at
    # layer_decay ** (L - i) of the head's rate (1: no decay).
    c.optimizer = dict(name="adamw", lr=1e-4, schedule="cosine", warmup_steps=1000,
                       end_lr_frac=0.01, weight_decay=0.05, b1=0.9, b2=0.999, clip_norm=1.0,
                       layer_decay=0.75)

    if arg == "default":
        pass
    elif arg == "demo":  # a few hundred demo clips: short schedule, small batch
        c.baseline_linear = True
        c.data.update(batch_size=32)
        c.train.update(steps=300, log_every=25, checkpoint_every=100, ema_decay=0.99)
        c.optimizer.update(lr=5e-4, warmup_steps=30)
        c.augment.update(time_masks=2, time_mask_width=20, freq_masks=2, freq_mask_width=8)
    elif arg == "smoke":
        c.data.update(batch_size=8, threads=1)
        c.train.update(steps=4, log_every=2, checkpoint_every=2, ema_decay=0.5)
        c.optimizer.update(lr=1e-3, warmup_steps=1)
    else:
        raise ValueError(f"unknown variant {arg!r} of configs/finetune.py; use one of "
                         f"{', '.join(VARIANTS)}")
    return c
