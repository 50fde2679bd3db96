r"""MTC pre-training of ViT-L/16 (303M parameters): configs/vit_b_mtc.py with model.size='l'.

Same variants as vit_b_mtc.py, launched the same way:
  v5p-64   launch/tpu_pod.sh run NAME --zone ZONE configs/vit_l_mtc.py:v5p-64 gs://BUCKET/vit_l \
             data.train_files=...
  v5e-256  launch/tpu_pod.sh run NAME --zone ZONE configs/vit_l_mtc.py:v5e-256 gs://BUCKET/vit_l ...
  gpu8     launch/gpu.sh configs/vit_l_mtc.py:gpu8 /data/runs/vit_l data.train_files=...
  gpu-2x8  launch/slurm.sh --nodes 2 configs/vit_l_mtc.py:gpu-2x8 /shared/runs/vit_l ...
  gpu1     launch/gpu.sh configs/vit_l_mtc.py:gpu1 /data/runs/vit_l data.train_files=...
  strongaudio compile-check --config configs/vit_l_mtc.py:v5e-256
Per-chip memory from compile-check (docs/sharding.md): v5p-64, batch 1024, no remat: 50.7 GiB
of 95. v5e-256, batch 4096 (16 per chip): 25 GiB of temporaries without remat, more than the
16 GiB chip, so that variant recomputes each block in the backward pass (remat "full":
2.1 GiB).
"""

from strongaudio_jax import config


def get_config(arg: str = "v5p-64"):
    module = config.sibling(__file__, "vit_b_mtc.py")
    c = module.get_config(arg, size="l")
    if arg == "v5e-256":
        c.model.remat = "full"
    return c
