r"""PAR pre-training: the ViT's tokens decoded into the clip's tags in parallel (CapPa-style).

The decoder sees only mask tokens (no causal mask) and predicts the ", "-joined tag
sequence, tokenised with WordPiece (the demo corpus's vocabulary; MiniLM's for large). Everything else as configs/mtc.py.

Variants: demo (bundled corpus, ~3 min on 2 CPU cores), smoke (seconds, tests), large
(ViT-B for an accelerator; set data.train_files / data.eval_files):
  strongaudio train --config configs/par.py:demo --workdir /tmp/strongaudio_par
Expect the loss to fall from ~6.5 (log of the 687-token vocabulary) to ~1.
"""

from strongaudio_jax import assets, config


def base(arg: str):
    """configs/mtc.py's variant `arg`: the data, model, optimizer and probes all share."""
    module = config.sibling(__file__, "mtc.py")
    return module.get_config(arg)


def text(arg: str, max_len: int) -> dict:
    """The WordPiece vocabulary built from the demo corpus captions (687 tokens, shipped in
    the package; tools/build_text_vocab.py), or MiniLM's (30,522) for the large variant."""
    vocab = "minilm" if arg == "large" else assets.demo_corpus("text_vocab.txt")
    return dict(tokenizer=vocab, max_len=max_len)


def get_config(arg: str = "demo"):
    c = base(arg)
    c.objectives = dict(par=dict(weight=1.0, decoder_size="mu" if arg == "smoke" else "xs",
                                 label_smoothing=0.0))
    c.text = text(arg, max_len=32)  # ~10 tags: ~20 pieces with the commas
    return c
