r"""Tagger job: label unlabelled clips with UTS tags, writing schema-v1 shards training reads.

Two modes (tag.mode):
  audio    audio -> tags with a checkpoint of this stack's MTC objective (a training --workdir
           or a `strongaudio export` directory): top-k and / or threshold over the head's
           sigmoid probabilities, the probabilities kept in tags/scores.
  caption  caption -> tags with a UTS extractor (uts/; 'rules'), reading each record's caption.
Every record keeps its other fields; `tags/model` holds the provenance (model, checkpoint,
step, settings) as JSON. Output: <output.dir>/<input shard name> + .idx, and summary.json.
A killed job run again with the same command skips finished shards and resumes a half-done
one (byte-identical to an uninterrupted run).

Variants:
  demo   the demo corpus's held-out shards, tagged by the MTC model of the demo training run
         (strongaudio train --config configs/mtc.py:demo --workdir /tmp/strongaudio_demo first):
           strongaudio tag --config configs/tag.py:demo
         Writes /tmp/strongaudio_tagged (90 clips); the summary line should read "90 of 90
         clip(s) written ... failures: none". docs/inference.md has measured figures.
  caption-demo  caption -> tags with the rules extractor on the demo held-out shards:
           strongaudio tag --config configs/tag.py:caption-demo
  caption-lm  caption -> tags with a language model imported by `strongaudio import-hf` (e.g.
         Qwen2.5-0.5B-Instruct), run inside this engine on the mesh (greedy; replies parsed
         as the UTS extractors' JSON; unparseable replies counted by reason):
           strongaudio tag --config configs/tag.py:caption-lm model.path=/data/qwen_lm input.files='C/*.tfrecord' output.dir=/data/tagged_lm
         Add model.tensor_parallel=N to split the model over N devices (the rest: data parallel).
  smoke  seconds, for tests: small buckets and batches; set model.path, input.files, output.dir.
  gpu8 / v5p-64 / v5e-256  a big corpus on an accelerator host / pod slice (5 and 10 s buckets,
         64 clips per device per batch, bad records skipped and counted). One host:
           strongaudio tag --config configs/tag.py:gpu8 model.path=W input.files='C/*.tfrecord' output.dir=/data/tagged
         Several hosts: the same command on each, joined as for training
         (parallel/distributed.py: JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID,
         `srun` under SLURM, STRONGAUDIO_DISTRIBUTED=1 on a TPU pod); every host takes every
         n-th input shard and runs on its own chips.
Override any field as key=value, e.g. `tag.top_k=5 tag.threshold=0.3 buckets.over_long=refuse`.
"""

import ml_collections

from strongaudio_jax import assets

VARIANTS = ("demo", "smoke", "caption-demo", "caption-lm", "gpu8", "v5p-64", "v5e-256")


def base() -> ml_collections.ConfigDict:
    """The blocks both inference jobs share (configs/caption.py uses them too)."""
    c = ml_collections.ConfigDict()
    c.model = dict(path="", step=-1)  # a training --workdir or an export dir; step -1: latest
    c.input = dict(
        files="",  # schema-v1 shards: glob(s), comma-separated (local or gs://)
        audio_folder="",  # or a folder of audio files ...
        manifest="",  # ... with an optional CSV/JSONL of path,caption,... (import_folder.py's)
        clips_per_shard=1000,  # (audio_folder) clips per output shard
        verify_crc=True,
        skip_bad=False,  # True: corrupt records / undecodable audio are skipped and counted
        resample=True,  # clips at another rate are resampled to the model's
        decode_workers=4,  # threads reading + decoding + resampling audio (0: the main thread)
        read_ahead=0,  # records decoded ahead of the labeling (0: buckets.window)
    )
    c.output = dict(dir="")  # a local or mounted folder
    c.buckets = dict(
        seconds=(1.0, 2.0, 4.0),  # padded lengths: one compiled program per bucket
        over_long="chunk",  # "chunk": pieces of the largest bucket, combined; "refuse": counted
        batch_per_device=8,  # rows per device per batch (the batch is this x data devices)
        window=256,  # records read, labelled and written (made durable) at a time
    )
    c.mesh = dict(data=-1, fsdp=1, tensor=1)  # over this host's devices ...
    c.devices = 0  # ... all of them (0), or the first N
    c.compilation_cache = ""  # JAX persistent cache folder; "" = $STRONGAUDIO_CACHE/jax_compilation
    c.progress = True  # a progress bar on stderr
    return c


def get_config(arg: str = "demo") -> ml_collections.ConfigDict:
    c = base()
    c.tag = dict(
        mode="audio",  # "audio" (MTC checkpoint) | "caption" (UTS extractor)
        top_k=10,  # keep at most this many tags (0: no limit) ...
        threshold=0.0,  # ... with probability >= this (0: no threshold)
        extractor="rules",  # (caption) the UTS extractor
        caption_field="caption",  # (caption) "caption" or "summary"
        lexicon=(),  # (caption, rules) extra lexicon files
        synonyms=(),  # (caption) extra synonym tables
        max_new_tokens=128,  # (caption, lm) reply length limit in tokens
        temperature=0.0,  # (caption, lm) 0: greedy; > 0: sampling, one key per record id
        top_p=1.0,  # (caption, lm) nucleus when sampling
        seed=0,  # (caption, lm) sampling keys: fold_in(PRNGKey(seed), crc32(record id))
        length_multiple=64,  # (caption, lm) prompt lengths padded to multiples of this
    )
    c.model.tensor_parallel = 1  # (caption, lm) split the LM over this many devices
    if arg in ("demo", "caption-demo"):
        c.model.path = "/tmp/strongaudio_demo"
        c.input.files = assets.demo_corpus("heldout-*.tfrecord")
        c.output.dir = "/tmp/strongaudio_tagged"
        c.buckets.seconds = (1.0, 2.0, 3.0)  # the demo clips are 2-3 s
        if arg == "caption-demo":
            c.tag.mode = "caption"
            c.model.path = ""
            c.output.dir = "/tmp/strongaudio_tagged_from_captions"
    elif arg == "caption-lm":
        c.tag.update(mode="caption", extractor="lm")
        c.buckets.update(batch_per_device=16, window=1024)
        c.input.skip_bad = True
    elif arg == "smoke":
        c.buckets.update(seconds=(1.0, 2.0), batch_per_device=2, window=8)
        c.progress = False
    elif arg in ("gpu8", "v5p-64", "v5e-256"):
        c.buckets.update(seconds=(5.0, 10.0), batch_per_device=64, window=4096)
        c.input.skip_bad = True  # a million clips: count the odd bad one, do not stop
    else:
        raise ValueError(f"unknown variant {arg!r} of configs/tag.py; use one of {', '.join(VARIANTS)}")
    return c
