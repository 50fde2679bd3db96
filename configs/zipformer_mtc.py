r"""MTC pre-training of the Zipformer-style encoder (strongaudio_jax/models/zipformer.py), the
architecture of the reference study's Zipformer-M (65M parameters at size "m"), on 80-bin
Kaldi fbank as in icefall.

Variants (the argument after the colon):
  demo     Zipformer-S (23M parameters) on the bundled demo corpus, the ViT demo's recipe; far
           slower than the ViT demo on a CPU (not timed there; meant for an accelerator):
             strongaudio train --config configs/zipformer_mtc.py:demo --workdir /tmp/zipformer_demo
  smoke    a tiny Zipformer (0.2M), a few steps; 24 steps of it lower the loss on the demo
           corpus in tests/test_models_train.py:
             strongaudio train --config configs/zipformer_mtc.py:smoke --workdir /tmp/zipformer_smoke
  v5p-64   size m, 10 s clips, global batch 1024, FSDP over 32 TPU v5p chips:
             strongaudio compile-check --config configs/zipformer_mtc.py:v5p-64
             launch/tpu_pod.sh run NAME --zone ZONE configs/zipformer_mtc.py:v5p-64 gs://BUCKET/zipformer \
               data.train_files='gs://BUCKET/corpus/train-*.tfrecord' data.vocab_file=label_1.5k.json
  v5e-256  size m, global batch 4096 on 256 TPU v5e chips, mesh data 32 x fsdp 8:
             launch/tpu_pod.sh run NAME --zone ZONE configs/zipformer_mtc.py:v5e-256 gs://BUCKET/zipformer ...
  gpu8     size m on one 8-GPU node, global batch 512 (attention="auto": cuDNN where it can):
             launch/gpu.sh configs/zipformer_mtc.py:gpu8 /data/runs/zipformer data.train_files=...
  gpu-2x8  size m on two 8-GPU nodes under SLURM, global batch 1024, data 2 x fsdp 8:
             launch/slurm.sh --nodes 2 configs/zipformer_mtc.py:gpu-2x8 /shared/runs/zipformer ...
"""

import ml_collections

from strongaudio_jax import config


# Launch targets: name -> (global batch, mesh); -1 takes the remaining devices.
TARGETS = {
    "v5p-64": (1024, dict(data=4, fsdp=-1, tensor=1)),
    "v5e-256": (4096, dict(data=32, fsdp=-1, tensor=1)),
    "gpu8": (512, dict(data=1, fsdp=-1, tensor=1)),
    "gpu-2x8": (1024, dict(data=2, fsdp=-1, tensor=1)),
}


def _demo_config() -> ml_collections.ConfigDict:
    module = config.sibling(__file__, "mtc.py")
    return module.get_config("demo")


def get_config(arg: str = "demo") -> ml_collections.ConfigDict:
    c = _demo_config()
    # Kaldi fbank, 80 bins, as icefall's Zipformer recipes; roughly normalised.
    c.frontend = dict(preset="kaldi_fbank80", norm_mean=-8.0, norm_std=4.0, stats_file="")
    c.augment.update(freq_mask_width=10)
    c.model = dict(name="zipformer", size="s", num_mels=80, dtype="float32", attention="xla",
                   remat="none")
    if arg == "demo":
        pass
    elif arg == "smoke":
        c.model.size = "tiny"
        c.train.update(steps=12, log_every=4, checkpoint_every=6)
        c.data.batch_size = 16
        c.probe.steps = 100
    elif arg in TARGETS:
        batch, mesh = TARGETS[arg]
        c.model.update(size="m", dtype="bfloat16", attention="auto" if arg.startswith("gpu") else "xla")
        c.data.update(clip_seconds=10.0, batch_size=batch, workers=8, train_files="", eval_files="")
        c.mesh = mesh
        c.train.update(steps=200_000, log_every=100, checkpoint_every=2000, eval_every=20_000)
        c.optimizer.update(lr=1e-3, warmup_steps=5000)
    else:
        raise ValueError(f"unknown variant {arg!r} of configs/zipformer_mtc.py; "
                         f"use demo, smoke or one of {', '.join(TARGETS)}")
    tpu = arg in TARGETS and not arg.startswith("gpu")
    c.compile_check = dict(topology=arg if tpu else "", num_classes=527)
    return c
