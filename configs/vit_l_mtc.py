r"""MTC pre-training of ViT-L/16 (304M parameters): configs/vit_b_mtc.py with model.size='l'.

Same variants and commands as vit_b_mtc.py (v5p-64, v5e-256, gpu8, gpu1), e.g.
  strongaudio compile-check --config configs/vit_l_mtc.py:v5e-256
  launch/tpu_pod.sh NAME ZONE configs/vit_l_mtc.py:v5p-64 gs://BUCKET/vit_l data.train_files=...
ViT-L at batch 4096 on v5e-256 (16 per chip) fits 16 GiB thanks to FSDP of the parameters and
optimizer state; expect ~3.5x the step time of ViT-B.
"""

import importlib.util
import os


def get_config(arg: str = "v5p-64"):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vit_b_mtc.py")
    spec = importlib.util.spec_from_file_location("_vit_b_mtc_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg, size="l")
