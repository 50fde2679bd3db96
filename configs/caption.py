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
  gpu8 / gpu-2x8 / v5p-64 / v5e-256  a big corpus on an 8-GPU node, two of them, or a pod
         slice (5 and 10 s buckets, 64 clips per device per batch, bad records skipped and
         counted); every host captions its share of the shards (see configs/tag.py):
           launch/gpu.sh --job caption configs/caption.py:gpu8 model.path=W input.files='C/*.tfrecord' output.dir=/data/captioned
           launch/slurm.sh --nodes 2 --job caption configs/caption.py:gpu-2x8 model.path=W input.files='C/*.tfrecord' output.dir=/shared/captioned
           launch/tpu_pod.sh run NAME --zone ZONE --job caption configs/caption.py:v5p-64 model.path=gs://B/cap input.files='gs://B/c/*.tfrecord' output.dir=gs://B/captioned
           launch/tpu_pod.sh run NAME --zone ZONE --job caption configs/caption.py:v5e-256 model.path=gs://B/cap input.files='gs://B/c/*.tfrecord' output.dir=gs://B/captioned
         Checked on a CPU host first (the whole decode per bucket, for decode.strategy; the model
         of model.path, or without it configs/captioning.py's of that target):
           strongaudio compile-check --config configs/caption.py:v5p-64
Override any field as key=value, e.g. `decode.strategy=beam decode.beams=4`.
"""

from strongaudio_jax import config

VARIANTS = ("demo", "smoke", "gpu8", "gpu-2x8", "v5p-64", "v5e-256")


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
    elif arg in tag.TARGETS:
        tag.target(c, arg, "captioning.py")
    else:
        raise ValueError(f"unknown variant {arg!r} of configs/caption.py; use one of "
                         f"{', '.join(VARIANTS)}")
    return c
