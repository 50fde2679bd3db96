r"""Multi-task pre-training, as in the study: L_MTC + lambda * (0.25 L_AR + 0.75 L_PAR).

MTC on the tags plus captioning (of the summary in demo / smoke, of the long caption with
128 tokens and the 6 x 768 decoder in large and the launch targets), whose autoregressive and parallel
decodings both run on every example (captioning mix="sum", parallel_fraction=0.75);
lambda is the captioning weight. Any weights can be set from the command line, e.g.
`objectives.captioning.weight=0.5`. Everything else as configs/mtc.py.

Variants: demo (bundled corpus, ~4 min on 2 CPU cores), smoke (seconds, tests), large
(ViT-B for an accelerator; set data.train_files / data.eval_files):
  strongaudio train --config configs/multitask.py:demo --workdir /tmp/strongaudio_mt
Launch targets (v5p-64, v5e-256, gpu8, gpu-2x8: the large variant laid out as in
configs/mtc.py's TARGETS; add data.train_files= / data.eval_files=):
  launch/tpu_pod.sh run NAME --zone ZONE configs/multitask.py:v5p-64 gs://BUCKET/multitask ...
  launch/tpu_pod.sh run NAME --zone ZONE configs/multitask.py:v5e-256 gs://BUCKET/multitask ...
  launch/gpu.sh configs/multitask.py:gpu8 /data/runs/multitask ...
  launch/slurm.sh --nodes 2 configs/multitask.py:gpu-2x8 /shared/runs/multitask ...
"""

from strongaudio_jax import config


LAMBDA = 0.1  # the captioning loss is ~20x MTC's BCE (per token vs per tag); keeps MTC leading


def get_config(arg: str = "demo"):
    par = config.sibling(__file__, "par.py")
    c = par.base(arg)
    size = par.decoder_size(arg)
    c.objectives = dict(
        mtc=dict(weight=1.0, pooling="mean", label_smoothing=0.0, pos_weight=1.0),
        captioning=dict(weight=LAMBDA, decoder_size=size, label_smoothing=0.1,
                        parallel_fraction=0.75, mix="sum"))
    if arg in ("demo", "smoke"):  # the demo corpus's one-sentence summaries
        c.text = par.text(arg, max_len=24, field="summary")
    else:  # the long caption, as the reference study: up to 128 tokens
        c.text = par.text(arg, max_len=128, field="caption")
    return c
