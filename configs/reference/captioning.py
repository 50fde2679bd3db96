r"""Captioning as the reference study trained it: AudenAI/Auden examples/uts,
configs/train_caption.yaml with scripts/pretrain_caption.sh, on the released UTS manifests
imported with tools/import_lhotse.py.

What this mirrors: everything in configs/reference/mtc.py but the objective (Zipformer-M on
80-bin fbank, SpecAugment, ScaledAdam 0.045 with Eden, averaging every 200 steps); the text is
the long caption (text.field=caption), lower-cased with punctuation stripped
(text.preprocess=reference), BART-base's BPE (text.tokenizer = your copy of facebook/bart-base's
tokenizer.json), up to 128 tokens plus the start and end tokens (text.max_len=130); a 6-layer,
768-wide decoder (decoder_size b); label smoothing 0.1; every example autoregressive
(parallel_fraction 0.0, the released config's parallel_decoding_prob).

What still differs: as configs/reference/mtc.py (fixed duration buckets drawn at random
rather than Lhotse's dynamic ones, the encoder's simplifications), and the decoder's details
(docs/models.md: 12 heads for 8, pre-LN for post-LN, learned positions for sinusoidal, no
dropout). Whole clips are trained on, so the caption describes all the audio the encoder sees.

Variants (as configs/reference/mtc.py):
  full   strongaudio train --config configs/reference/captioning.py:full --workdir W \
           data.train_files='UTS/train-*.tfrecord' text.tokenizer=/models/bart-base/tokenizer.json
  demo   the demo corpus's long captions (~50 words), its WordPiece vocabulary, an xs decoder,
         the reference's text handling and training settings at demo scale; on a CPU:
           strongaudio train --config configs/reference/captioning.py:demo --workdir /tmp/ref_cap
  smoke  a few steps (tests).
"""

from strongaudio_jax import config


def text(arg: str) -> dict:
    """The reference's text: the long caption, preprocessed, 128 tokens; BART's BPE (full:
    text.tokenizer=<tokenizer.json>, yours to give) or the demo corpus's WordPiece vocabulary."""
    par = config.sibling(__file__, "../par.py")
    t = par.text("demo" if arg == "full" else arg, max_len=130, field="caption")
    t.update(preprocess="reference", tokenizer="" if arg == "full" else t["tokenizer"])
    return t


def get_config(arg: str = "demo"):
    c = config.sibling(__file__, "mtc.py").base(arg)
    size = {"full": "b", "demo": "xs", "smoke": "mu"}[arg]
    c.objectives = dict(captioning=dict(weight=1.0, decoder_size=size, label_smoothing=0.1,
                                        parallel_fraction=0.0, mix="sample"))
    c.text = text(arg)
    return c
