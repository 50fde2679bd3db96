r"""Captioning pre-training: an encoder-decoder writing each clip's caption.

Each example is decoded autoregressively (teacher forcing) or in parallel (mask-token
inputs, CapPa), drawn with probability parallel_fraction; label smoothing 0.1; WordPiece
vocabulary (the demo corpus's; MiniLM's for large). demo / smoke write the demo corpus's
one-sentence summaries (text.field=summary, 24 tokens) with an xs / mu decoder; large and
the launch targets write the long caption (text.field=caption, 128 tokens) with the
reference study's 6-layer, 768-wide decoder (decoder_size b). Everything else as configs/mtc.py.

Variants: demo (bundled corpus, ~3 min on 2 CPU cores), smoke (seconds, tests), large
(ViT-B for an accelerator; set data.train_files / data.eval_files):
  strongaudio train --config configs/captioning.py:demo --workdir /tmp/strongaudio_cap
Expect the loss to fall from ~10 to ~3 (label smoothing keeps it above ~1.5).
Launch targets (v5p-64, v5e-256, gpu8, gpu-2x8: the large variant laid out as in
configs/mtc.py's TARGETS; add data.train_files= / data.eval_files=):
  launch/tpu_pod.sh run NAME --zone ZONE configs/captioning.py:v5p-64 gs://BUCKET/captioning ...
  launch/tpu_pod.sh run NAME --zone ZONE configs/captioning.py:v5e-256 gs://BUCKET/captioning ...
  launch/gpu.sh configs/captioning.py:gpu8 /data/runs/captioning ...
  launch/slurm.sh --nodes 2 configs/captioning.py:gpu-2x8 /shared/runs/captioning ...
"""

from strongaudio_jax import config


def get_config(arg: str = "demo"):
    par = config.sibling(__file__, "par.py")
    c = par.base(arg)
    c.objectives = dict(captioning=dict(weight=1.0, decoder_size=par.decoder_size(arg),
                                        label_smoothing=0.1, parallel_fraction=0.75, mix="sample"))
    if arg in ("demo", "smoke"):  # the demo corpus's one-sentence summaries: ~8-16 pieces
        c.text = par.text(arg, max_len=24, field="summary")
    else:  # the long caption, as the reference study: up to 128 tokens
        c.text = par.text(arg, max_len=128, field="caption")
    return c
