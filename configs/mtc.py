r"""MTC pre-training: a ViT over log-mel trained to predict each clip's tags (multi-label BCE).

Variants (the argument after the colon):
  demo   the bundled demo corpus, a micro ViT, ~3 minutes on a 2-core CPU:
           strongaudio train --config configs/mtc.py:demo --workdir /tmp/strongaudio_demo
         Expect the loss (mean binary cross-entropy over the 119 tags) near 0.24 at the first
         log line (step 25; 0.28 at step 1) and near 0.09 at step 800 (the tag-prior entropy is
         0.22), and held-out probe accuracies near domain 0.96, language 0.35, instrument 0.50,
         event 0.77 (printed at the end; measured 2026-12-04 on a 2-core CPU).
  smoke  a few steps on the demo corpus, for tests and CI (seconds):
           strongaudio train --config configs/mtc.py:smoke --workdir /tmp/strongaudio_smoke
  large  ViT-B, 10 s clips, batch 256, for an accelerator; give it a corpus:
           strongaudio train --config configs/mtc.py:large --workdir W \
             data.train_files='CORPUS/train-*.tfrecord' data.eval_files='CORPUS/heldout-*.tfrecord'
  Launch targets: `large` laid out for a TPU slice or a GPU cluster (TARGETS below; the other
  pre-training configs take the same names). Add data.train_files= / data.eval_files= to each:
  v5p-64   32 TPU v5p chips, global batch 1024, mesh data 4 x fsdp 8:
             launch/tpu_pod.sh run NAME --zone ZONE configs/mtc.py:v5p-64 gs://BUCKET/mtc ...
  v5e-256  256 TPU v5e chips, global batch 4096, mesh data 32 x fsdp 8:
             launch/tpu_pod.sh run NAME --zone ZONE configs/mtc.py:v5e-256 gs://BUCKET/mtc ...
  gpu8     one node of 8 GPUs, global batch 512, FSDP over the 8:
             launch/gpu.sh configs/mtc.py:gpu8 /data/runs/mtc ...
  gpu-2x8  two nodes of 8 GPUs under SLURM, global batch 1024, data 2 (across nodes) x fsdp 8:
             launch/slurm.sh --nodes 2 configs/mtc.py:gpu-2x8 /shared/runs/mtc ...
  Check that a TPU target fits before paying for it: strongaudio compile-check --config
  configs/mtc.py:v5p-64 (a CPU host with libtpu). Measured that way (2026-12-04, a busy 2-core
  CPU; 85.9M parameters, 527 classes): v5p-64 peaks at 3.6 GiB of the 95 GiB per chip (149 s
  to compile), v5e-256 at 1.9 GiB of 16 (555 s).

Override any field from the command line as key=value, e.g. `train.steps=50 data.batch_size=16`.
"""

import ml_collections

from strongaudio_jax import assets
from strongaudio_jax.parallel import mesh as mesh_lib

# Launch targets: name -> (global batch, mesh, TPU topology for compile-check or "" for GPUs).
# Sizes of -1 take the remaining devices: v5p-64 has 32 chips, v5e-256 256, gpu-2x8 16 GPUs
# (jax.devices() lists them process by process, so fsdp stays inside a node's NVLink).
TARGETS = {
    "v5p-64": (1024, dict(data=4, fsdp=-1, tensor=1), "v5p-64"),
    "v5e-256": (4096, dict(data=32, fsdp=-1, tensor=1), "v5e-256"),
    "gpu8": (512, dict(data=1, fsdp=-1, tensor=1), ""),
    "gpu-2x8": (1024, dict(data=2, fsdp=-1, tensor=1), ""),
}
VARIANTS = ("demo", "smoke", "large", *TARGETS)


def get_config(arg: str = "demo") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.data = dict(
        train_files=assets.demo_corpus("train-*.tfrecord"),
        eval_files=assets.demo_corpus("heldout-*.tfrecord"),
        sample_rate=16000,
        clip_seconds=2.0,  # random 2 s crops of the 2-3 s demo clips
        batch_size=32,  # global, across all hosts
        vocab_file="",  # e.g. a UTS label_1.5k.json; empty: the training clips' own tags
        vocab_min_count=3,  # (own tags only) tags in fewer training clips are not predicted
        verify_crc=True,
        workers=0,  # decoding processes; 0 = in the training process
        # Several corpora mixed by weight (replaces train_files; the vocabulary spans all), e.g.
        # {"speech": {"files": "gs://b/speech-*", "weight": 0.5}, "music": {...}, "sound": {...}}
        mix={},
        resample=False,  # True: clips at another rate are resampled; False: they are bad data
        skip_bad=False,  # True: bad records are masked out and counted in the logs, not fatal
        # "duration_buckets": whole clips batched by length instead of crops (docs/data.md), e.g.
        # data.batching=duration_buckets data.buckets='(2.5, 3.0)' data.max_batch_seconds=64
        batching="crops",
        buckets=(),  # padded clip lengths in seconds, ascending: one compiled step per bucket
        max_batch_seconds=0.0,  # audio per global batch (sets each bucket's batch size)
        long_clips="error",  # a clip over the last bucket: "error", "skip" or "crop" (counted)
    )
    # Rough scaling to ~N(0, 1): -16 / 23 dB are the mel_db mean / std of the reference clips in
    # shared/fixtures; `strongaudio stats` on the demo corpus gives -27.1 / 27.2. The README's
    # figures were measured with -16 / 23.
    # stats_file: a JSON from `strongaudio stats` replaces norm_mean / norm_std (per bin or global).
    c.frontend = dict(preset="mel_db", norm_mean=-16.0, norm_std=23.0, stats_file="")
    # On device, inside the step (strongaudio_jax/frontend/augment.py; 0 / off by default there).
    c.augment = dict(gain_db_min=-6.0, gain_db_max=6.0, mixup_alpha=0.0, mixup_prob=1.0,
                     mixup_labels="convex", time_masks=2, time_mask_width=20, freq_masks=2,
                     freq_mask_width=8)
    # Dasheng-style full-band time patches (64 mels x 4 frames = 40 ms per token).
    c.model = dict(name="vit", size="xs", patch_time=4, patch_freq=64, max_frames=512,
                   num_mels=64, dtype="float32")  # dtype: compute; parameters stay float32
    # Weighted objectives (strongaudio_jax/objectives/): the loss is the weighted sum.
    c.objectives = dict(mtc=dict(weight=1.0, pooling="mean", label_smoothing=0.0, pos_weight=1.0))
    # Text for the objectives that read it (captioning, PAR, contrastive): tokenizer "minilm"
    # (MiniLM's WordPiece vocabulary), a WordPiece vocab.txt or a tokenizer.json (BPE) path;
    # max_len counts the start and end tokens; field: caption | summary | original (the weak
    # captions, one at random); preprocess: "" or "reference" (data/text_fields.py).
    c.text = dict(tokenizer="", max_len=32, field="caption", preprocess="")
    c.mesh = dict(data=-1, fsdp=1, tensor=1)
    # Logical axis -> mesh axes (() = replicated): parallel/mesh.py's table. Try another layout
    # with e.g. sharding_rules.mlp=() or "sharding_rules.embed=('fsdp','tensor')".
    c.sharding_rules = mesh_lib.default_rules()

    c.train = dict(
        steps=800, log_every=25, checkpoint_every=200, keep_checkpoints=2,
        grad_accum=1,  # microbatches per step (saves memory; the optimizer sees the same batch)
        skip_nonfinite=False,  # True: skip (and count) updates with a NaN/Inf loss
        ema_decay=0.0,  # > 0 keeps an EMA of the parameters; probes then use it
        average_period=0,  # > 0: icefall's model average (every N steps) instead; probes use it
        eval_every=0,  # probe every N steps as well as at the end (0: only at the end)
        best_metric="",  # e.g. "probe/domain_accuracy": keep the best state in <workdir>/best
        profile_steps=(0, 0),  # (a, b): jax.profiler trace of steps a+1..b in <workdir>/profile
    )
    c.optimizer = dict(name="adamw", lr=1e-3, schedule="cosine", warmup_steps=50, end_lr_frac=0.02,
                       weight_decay=0.05, b1=0.9, b2=0.98, clip_norm=1.0)

    c.probe = dict(tasks=("domain", "language", "instrument", "event"), batch_size=32,
                   clip_seconds=3.0, l2=1e-3, steps=500,
                   pooling=("mean",))  # add "attention" for an attention-pooling probe too

    if arg == "demo":
        pass
    elif arg == "smoke":
        c.model.size = "mu"
        c.train.steps = 12
        c.train.log_every = 4
        c.train.checkpoint_every = 6
        c.data.batch_size = 16
        c.probe.steps = 100
    elif arg == "large" or arg in TARGETS:  # ViT-B on 10 s clips; point data.* at a corpus
        c.model.update(size="b", max_frames=1024)
        c.model.dtype = "bfloat16"
        c.data.update(clip_seconds=10.0, batch_size=256, workers=8)
        c.train.update(steps=100_000, log_every=100, checkpoint_every=2000, eval_every=10_000)
        c.optimizer.update(lr=5e-4, warmup_steps=2000)
        c.probe.pooling = ("mean", "attention")
        if arg in TARGETS:
            batch, mesh, topology = TARGETS[arg]
            c.data.update(batch_size=batch, train_files="", eval_files="")  # set on the command line
            c.mesh = mesh
            c.compile_check = dict(topology=topology, num_classes=527)  # 527: AudioSet-sized
    else:
        raise ValueError(f"unknown variant {arg!r} of configs/mtc.py; use one of {', '.join(VARIANTS)}")
    return c
