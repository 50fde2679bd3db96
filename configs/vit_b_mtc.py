r"""MTC pre-training of ViT-B/16 (AST shape: 128 mels x ~1000 frames, 496 patches) at scale.

The demo recipe of configs/mtc.py with a large encoder, 10 s clips, bf16 compute (float32
master weights), FSDP over the pod and a UTS vocabulary. Point data.* at a real corpus and
data.vocab_file at a released vocabulary (e.g. ../shared/uts/label_1.5k.json).

Variants (the argument after the colon), each with its launch command:
  v5p-64   TPU v5p, 32 chips, global batch 1024 (32 per chip), mesh data 4 x fsdp 8:
             launch/tpu_pod.sh run NAME --zone ZONE configs/vit_b_mtc.py:v5p-64 gs://BUCKET/vit_b \
               data.train_files='gs://BUCKET/corpus/train-*.tfrecord' data.vocab_file=label_1.5k.json
  v5e-256  TPU v5e, 256 chips (16 GiB each), global batch 4096, mesh data 32 x fsdp 8:
             launch/tpu_pod.sh run NAME --zone ZONE configs/vit_b_mtc.py:v5e-256 gs://BUCKET/vit_b ...
  gpu8     one node of 8 GPUs, global batch 1024, FSDP over the 8, cuDNN flash attention:
             launch/gpu.sh configs/vit_b_mtc.py:gpu8 /data/runs/vit_b data.train_files=...
  gpu-2x8  two nodes of 8 GPUs under SLURM, global batch 2048, data 2 (across nodes) x fsdp 8:
             launch/slurm.sh --nodes 2 configs/vit_b_mtc.py:gpu-2x8 /shared/runs/vit_b ...
  gpu1     one GPU, batch 128 (the shape of benchmarks/train_step.py):
             launch/gpu.sh configs/vit_b_mtc.py:gpu1 /data/runs/vit_b data.train_files=...

Check that a variant compiles and fits its chips' HBM before paying for the pod (CPU host,
libtpu installed; prints per-chip memory, exits 1 when it does not fit):
  strongaudio compile-check --config configs/vit_b_mtc.py:v5p-64
Measured that way (docs/sharding.md): v5p-64 19.6 GiB of 95 per chip, v5e-256 9.8 GiB of 16.
A training clip costs ~0.28 TFLOP (3x the forward matmuls and attention at 496 patches).
"""

import ml_collections

from strongaudio_jax import config


SIZE = "b"  # configs/vit_l_mtc.py reuses this file with SIZE = "l"
# name: (global batch, mesh, attention, scan_layers). TPU pods scan over layers (one compiled
# block: minutes less compile time); GPUs unroll them (XLA schedules across layers).
VARIANTS = {
    "v5p-64": (1024, dict(data=4, fsdp=-1, tensor=1), "xla", True),
    "v5e-256": (4096, dict(data=32, fsdp=-1, tensor=1), "xla", True),
    "gpu8": (1024, dict(data=1, fsdp=-1, tensor=1), "cudnn", False),
    "gpu-2x8": (2048, dict(data=2, fsdp=-1, tensor=1), "cudnn", False),
    "gpu1": (128, dict(data=-1, fsdp=1, tensor=1), "cudnn", False),
}


def _demo_config() -> ml_collections.ConfigDict:
    module = config.sibling(__file__, "mtc.py")
    return module.get_config("demo")


def get_config(arg: str = "v5p-64", size: str = SIZE) -> ml_collections.ConfigDict:
    if arg not in VARIANTS:
        raise ValueError(f"unknown variant {arg!r}; use one of {sorted(VARIANTS)}")
    batch, mesh, attention, scan = VARIANTS[arg]
    c = _demo_config()
    c.data.update(clip_seconds=10.0, batch_size=batch, workers=8,
                  train_files="", eval_files="")  # a real corpus: set on the command line
    # AST's frontend: Kaldi fbank, 128 bins, AudioSet mean / std.
    c.frontend = dict(preset="kaldi_ast", norm_mean=-4.27, norm_std=4.57 * 2, stats_file="")
    c.model = dict(name="vit", size=size, patch_time=16, patch_freq=16, max_frames=1024,
                   num_mels=128, dtype="bfloat16", attention=attention, remat="none",
                   scan_layers=scan, drop_path=0.1, layer_scale=0.0)
    c.mesh = mesh
    c.train.update(steps=200_000, log_every=100, checkpoint_every=2000, eval_every=20_000)
    c.optimizer.update(lr=5e-4, warmup_steps=5000, weight_decay=0.05)
    # What compile-check assumes when no vocab_file is set (527: AudioSet-sized vocabulary).
    c.compile_check = dict(topology=arg if not arg.startswith("gpu") else "", num_classes=527)
    return c
