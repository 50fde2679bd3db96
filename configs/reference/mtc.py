r"""MTC as the reference study trained it: AudenAI/Auden examples/uts, configs/train.yaml with
scripts/pretrain_mtc.sh (model.loss=bce, label_2k.json, lr 0.045), on the released UTS
manifests imported with tools/import_lhotse.py.

What this mirrors: a Zipformer-M encoder (models/zipformer.py, size m) on 80-bin Kaldi fbank
(kaldifeat's options there: snip_edges False, dither 0, high_freq -400); SpecAugment as
Lhotse's at 10 s (2 frequency masks of <= 27 bins; its 10 time masks of <= 100 frames are
capped at 15% of the frames, which on 10 s is 2 masks of <= 75); the MTC head with dropout 0.1
before the per-frame linear layer (initialised as torch's nn.Linear), masked mean of the frame logits, BCE summed over classes and
batch; ScaledAdam (lr 0.045, clipping_scale 2) with the Eden schedule (lr_batches 7500,
lr_epochs 3.5 with 10,000 steps per epoch as the released scripts' lr_steps_per_epoch,
warmup 500 from half the lr); model averaging every 200 steps (the averaged parameters are
what evaluation and export use); 300,000 steps; the tags of the UTS vocabulary given.

What still differs:
  * batches: the reference batches whole clips (1-60 s) by duration (Lhotse
    DynamicBucketingSampler, 30 buckets, 800 s per GPU on 4 GPUs in the released script); here
    whole clips too (data.batching='duration_buckets', docs/data.md), but in 13 fixed bucket
    lengths from 2 to 60 s (each a shape XLA compiles once) of up to 3200 s of audio per global
    batch, each clip zero-padded (and masked) to its bucket's length, and the bucket of each
    batch drawn at random (Lhotse fills its buckets dynamically). Clips over 60 s are refused
    (data.long_clips). SpecAugment has no time warp (Lhotse's factor 80).
  * the encoder is this project's Zipformer (docs/models.md says where it simplifies
    icefall's: LayerNorm for BiasNorm, Swish for SwooshL/R, rotary positions) and the fbank is
    normalised by a fixed mean / std (-8 / 4); ScaledAdam gives every parameter the same lr
    (icefall lets modules scale theirs).
  * the UTS vocabulary file is yours to give (data.vocab_file, e.g. label_2k.json from the
    release); without it the training clips' own tags are the vocabulary.

Variants:
  full   the recipe above, for GPUs; give it the imported corpus and the vocabulary:
           strongaudio train --config configs/reference/mtc.py:full --workdir W \
             data.train_files='UTS/train-*.tfrecord' data.vocab_file=label_2k.json
  demo   the same training settings at demo scale on the bundled demo corpus, with the demo's
         encoder (ViT xs on 64-bin log-mel; whole 2-3 s clips in buckets of 2.5 and 3 s,
         64 s of audio per batch, i.e. 25 or 21 clips on one device) so it runs on a CPU and
         compares with configs/mtc.py:demo; the Eden constants scaled to 800 steps
         (lr_batches 200, 100 steps per "epoch", warmup 50), averaging every 20 steps, SpecAugment
         scaled to 2 s and 64 bins (one time mask <= 30 frames, two frequency masks <= 22 bins):
           strongaudio train --config configs/reference/mtc.py:demo --workdir /tmp/ref_mtc
  smoke  a few steps of demo (tests).
"""

from strongaudio_jax import config

VARIANTS = ("full", "demo", "smoke")


def base(arg: str):
    """The reference's training settings (everything but the objectives) for variant `arg`."""
    if arg not in VARIANTS:
        raise ValueError(f"unknown variant {arg!r} of configs/reference; use one of {', '.join(VARIANTS)}")
    c = config.sibling(__file__, "../mtc.py").get_config("smoke" if arg == "smoke" else "demo")
    c.augment.update(gain_db_min=0.0, gain_db_max=0.0, mixup_alpha=0.0)  # the reference has neither
    c.optimizer = dict(name="scaled_adam", lr=0.045, schedule="eden", lr_batches=7500, lr_epochs=3.5,
                       steps_per_epoch=10000, warmup_steps=500, warmup_start=0.5, clipping_scale=2.0,
                       b1=0.9, b2=0.98, weight_decay=0.0, clip_norm=0.0, end_lr_frac=0.0)
    c.train.average_period = 200
    if arg == "full":
        c.frontend = dict(preset="kaldi_fbank80_nosnip", f_max=-400.0, norm_mean=-8.0, norm_std=4.0,
                          stats_file="")
        c.model = dict(name="zipformer", size="m", num_mels=80, dtype="bfloat16", attention="auto",
                       remat="none")
        c.augment.update(time_masks=2, time_mask_width=75, freq_masks=2, freq_mask_width=27)
        c.data.update(clip_seconds=10.0, batch_size=320, workers=8, train_files="", eval_files="",
                      batching="duration_buckets", max_batch_seconds=3200.0, long_clips="error",
                      buckets=(2.0, 4.0, 6.0, 8.0, 10.0, 12.5, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0,
                               60.0))
        c.train.update(steps=300_000, log_every=50, checkpoint_every=4000, eval_every=0)
        c.probe.tasks = ()  # the UTS corpus has no probe labels: evaluate with `strongaudio eval`
    else:  # demo scale: 800 steps (smoke: 12)
        c.optimizer.update(lr_batches=200, steps_per_epoch=100, warmup_steps=50)
        c.train.average_period = 20
        c.augment.update(time_masks=1, time_mask_width=30, freq_masks=2, freq_mask_width=22)
        # whole demo clips (2-3 s) in two buckets, 64 s of audio per batch (the demo's 32 x 2 s);
        # smoke: one 3 s bucket of 16 clips, a single compiled shape
        c.data.update(batching="duration_buckets", long_clips="error",
                      buckets=(3.0,) if arg == "smoke" else (2.5, 3.0),
                      max_batch_seconds=48.0 if arg == "smoke" else 64.0)
    return c


def get_config(arg: str = "demo"):
    c = base(arg)
    c.objectives = dict(mtc=dict(weight=1.0, pooling="mean", label_smoothing=0.0, pos_weight=1.0,
                                 dropout=0.1, reduction="sum", classifier_init="torch"))
    return c
