r"""Captioner job: caption unlabelled clips with a captioning checkpoint of this stack (audio
encoder + text decoder, configs/captioning.py), writing schema-v1 shards training reads.

Each record keeps its other fields and gets `caption` and `caption/summary` (the model was
trained on summaries and writes one) and `caption/model`, the provenance (model, checkpoint,
step, decoding settings) as JSON. Output: <output.dir>/<input shard name> + .idx, and
summary.json. A killed job run again with the same command skips finished shards and resumes
a half-done one (byte-identical to an uninterrupted run). Decoding (decode.strategy): greedy,
beam (decode.beams, decode.length_penalty), sample (decode.temperature, decode.top_p; keyed by
clip id and decode.seed) with a KV cache, or parallel (CapPa, decode.refine_steps); a
repetition penalty (decode.repetition_penalty) and decode.max_len.

Variants:
  demo   the demo corpus's held-out shards, captioned by the demo captioning run
         (strongaudio train --config configs/captioning.py:demo --workdir /tmp/strongaudio_cap
         first):
           strongaudio caption --config configs/caption.py:demo
         Writes /tmp/strongaudio_captioned (90 clips); the summary line should read "90 of 90
         clip(s) written ... failures: none". docs/inference.md has measured figures.
  smoke  seconds, for tests; set model.path, input.files, output.dir.
  gpu8 / v5p-64 / v5e-256  a big corpus on an accelerator host / pod slice (5 and 10 s buckets,
         64 clips per device per batch, bad records skipped and counted). One host:
           strongaudio caption --config configs/caption.py:gpu8 model.path=W input.files='C/*.tfrecord' output.dir=/data/captioned
         Several hosts: the same command on each, joined as for training (see configs/tag.py).
Override any field as key=value, e.g. `decode.strategy=beam decode.beams=4`.
"""

from strongaudio_jax import config

VARIANTS = ("demo", "smoke", "gpu8", "v5p-64", "v5e-256")


def get_config(arg: str = "demo"):
    tag = config.sibling(__file__, "tag.py")
    c = tag.base()
    # model.path may also be an imported audio-language model (strongaudio import-hf of a
    # Qwen2-Audio checkpoint): its reply to model.prompt ("" = Qwen2-Audio's captioning prompt,
    # which holds the audio placeholder) becomes the caption; greedy decoding, max_len new tokens
    c.model.prompt = ""
    c.decode = dict(strategy="greedy", max_len=0, min_len=0, temperature=1.0, top_p=1.0, beams=4,
                    length_penalty=1.0, repetition_penalty=1.0, refine_steps=0, seed=0)
    if arg == "demo":
        c.model.path = "/tmp/strongaudio_cap"
        c.input.files = tag.assets.demo_corpus("heldout-*.tfrecord")
        c.output.dir = "/tmp/strongaudio_captioned"
        c.buckets.seconds = (1.0, 2.0, 3.0)  # the demo clips are 2-3 s
    elif arg == "smoke":
        c.buckets.update(seconds=(1.0, 2.0), batch_per_device=2, window=8)
        c.progress = False
    elif arg in ("gpu8", "v5p-64", "v5e-256"):
        c.buckets.update(seconds=(5.0, 10.0), batch_per_device=64, window=4096)
        c.input.skip_bad = True
    else:
        raise ValueError(f"unknown variant {arg!r} of configs/caption.py; use one of "
                         f"{', '.join(VARIANTS)}")
    return c
