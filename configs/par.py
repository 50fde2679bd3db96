r"""PAR pre-training: the ViT's tokens decoded into the clip's tags in parallel (CapPa-style).

The decoder sees only mask tokens (no causal mask) and predicts the ", "-joined tag
sequence, tokenised with WordPiece (the demo corpus's vocabulary; MiniLM's for large). The
decoder is xs (2 x 128) in demo, mu in smoke, b (6 x 768, the reference study's) in large and
the launch targets. Everything else as configs/mtc.py.

Variants: demo (bundled corpus, ~3 min on 2 CPU cores), smoke (seconds, tests), large
(ViT-B for an accelerator; set data.train_files / data.eval_files):
  strongaudio train --config configs/par.py:demo --workdir /tmp/strongaudio_par
Expect the loss to fall from ~6.5 (log of the 687-token vocabulary) to ~1.
Launch targets (v5p-64, v5e-256, gpu8, gpu-2x8: the large variant laid out as in
configs/mtc.py's TARGETS; add data.train_files= / data.eval_files=):
  launch/tpu_pod.sh run NAME --zone ZONE configs/par.py:v5p-64 gs://BUCKET/par ...
  launch/tpu_pod.sh run NAME --zone ZONE configs/par.py:v5e-256 gs://BUCKET/par ...
  launch/gpu.sh configs/par.py:gpu8 /data/runs/par ...
  launch/slurm.sh --nodes 2 configs/par.py:gpu-2x8 /shared/runs/par ...
"""

from strongaudio_jax import assets, config


def base(arg: str):
    """configs/mtc.py's variant `arg`: the data, model, optimizer and probes all share."""
    module = config.sibling(__file__, "mtc.py")
    return module.get_config(arg)


def text(arg: str, max_len: int, field: str = "caption") -> dict:
    """The WordPiece vocabulary built from the demo corpus captions (687 tokens, shipped in
    the package; tools/build_text_vocab.py), or MiniLM's (30,522) for large and the targets.
    `field` is the clip text the "text" field reads (data/text_fields.py)."""
    vocab = assets.demo_corpus("text_vocab.txt") if arg in ("demo", "smoke") else "minilm"
    return dict(tokenizer=vocab, max_len=max_len, field=field, preprocess="")


def decoder_size(arg: str) -> str:
    """The text decoder of each variant (models/text/decoder.py SIZES; docs/models.md): mu
    for smoke, xs (2 x 128) for demo, b (6 layers x 768, the reference study's) for large
    and the launch targets. Any variant takes objectives.<name>.decoder_size=... too."""
    return {"smoke": "mu", "demo": "xs"}.get(arg, "b")


def get_config(arg: str = "demo"):
    c = base(arg)
    c.objectives = dict(par=dict(weight=1.0, decoder_size=decoder_size(arg), label_smoothing=0.0))
    c.text = text(arg, max_len=32)  # ~10 tags: ~20 pieces with the commas
    return c
