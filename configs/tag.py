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
  gpu8 / gpu-2x8 / v5p-64 / v5e-256  a big corpus on an 8-GPU node, two of them, or a pod
         slice (5 and 10 s buckets, 64 clips per device per batch, bad records skipped and
         counted). Every host takes every n-th input shard and labels it on its own chips
         (parallel/distributed.py joins the hosts only to split the shards); the launchers
         start the job on every host (docs/launching.md):
           launch/gpu.sh --job tag configs/tag.py:gpu8 model.path=W input.files='C/*.tfrecord' output.dir=/data/tagged
           launch/slurm.sh --nodes 2 --job tag configs/tag.py:gpu-2x8 model.path=W input.files='C/*.tfrecord' output.dir=/shared/tagged
           launch/tpu_pod.sh run NAME --zone ZONE --job tag configs/tag.py:v5p-64 model.path=gs://B/mtc input.files='gs://B/c/*.tfrecord' output.dir=gs://B/tagged
           launch/tpu_pod.sh run NAME --zone ZONE --job tag configs/tag.py:v5e-256 model.path=gs://B/mtc input.files='gs://B/c/*.tfrecord' output.dir=gs://B/tagged
         The TPU variants compile for their slice on a CPU host first (one host's program per
         bucket; the model of model.path, or without it configs/mtc.py's ViT-B of that target):
           strongaudio compile-check --config configs/tag.py:v5p-64
Override any field as key=value, e.g. `tag.top_k=5 tag.threshold=0.3 buckets.over_long=refuse`.
"""

import ml_collections

from strongaudio_jax import assets

VARIANTS = ("demo", "smoke", "caption-demo", "caption-lm", "gpu8", "gpu-2x8", "v5p-64", "v5e-256")
TARGETS = ("gpu8", "gpu-2x8", "v5p-64", "v5e-256")


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
    c.output = dict(dir="")  # a local folder, or a bucket (gs://...: shards uploaded when whole)
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
    # `strongaudio compile-check` (infer/compile_check.py): the TPU topology, and the training
    # config whose model it compiles when model.path is empty (num_classes: tags, when that
    # config gives no vocabulary)
    c.compile_check = dict(topology="", model_config="", num_classes=0)
    return c


def target(c: ml_collections.ConfigDict, arg: str, train_config: str) -> None:
    """The settings of a launch target (TARGETS) for a big corpus."""
    c.buckets.update(seconds=(5.0, 10.0), batch_per_device=64, window=4096)
    c.input.skip_bad = True  # a million clips: count the odd bad one, do not stop
    if not arg.startswith("gpu"):
        c.compile_check.update(topology=arg, model_config=f"configs/{train_config}:{arg}")


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
    elif arg in TARGETS:
        target(c, arg, "mtc.py")
    else:
        raise ValueError(f"unknown variant {arg!r} of configs/tag.py; use one of {', '.join(VARIANTS)}")
    return c
