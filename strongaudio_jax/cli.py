"""`strongaudio` command line: one subcommand per job of the stack."""

from __future__ import annotations

import argparse
import os
import sys


def _user_errors():
    """Errors a user can cause; shown as one clear line instead of a traceback."""
    from strongaudio_jax.config import ConfigError
    from strongaudio_jax.data.audio import AudioDecodeError
    from strongaudio_jax.data.schema import SchemaError
    from strongaudio_jax.data.tfrecord import CorruptRecordError, IndexFileError
    from strongaudio_jax.train.checkpoint import CheckpointMismatchError
    from strongaudio_jax.train.trainer import NonFiniteLossError
    from strongaudio_jax.eval.hear_api import ModelError
    from strongaudio_jax.eval.report import ReportError
    from strongaudio_jax.eval.tasks import TaskError
    from strongaudio_jax.infer.chat import TokenizerError
    from strongaudio_jax.infer.import_hf import ImportHFError
    from strongaudio_jax.curate.cli import CurateError
    from strongaudio_jax.infer.inputs import BadRecord
    return (BadRecord, CurateError, ImportHFError, TokenizerError, ModelError, ReportError, TaskError, ConfigError, AudioDecodeError, SchemaError, CorruptRecordError, NonFiniteLossError,
            CheckpointMismatchError, FileNotFoundError, IndexFileError)


def _bad_data_hint(e: Exception, args) -> str:
    """For a bad record met by a command that reads a config's data: the key that skips it."""
    from strongaudio_jax.data import batcher

    if batcher.bad_reason(e) is None:
        return ""
    if getattr(args, "config", None) and "data.skip_bad" not in str(e):
        return " (data.skip_bad=True skips such records and counts them)"
    return ""


def cmd_train(args) -> int:
    from strongaudio_jax import config as config_lib
    from strongaudio_jax.parallel import distributed
    from strongaudio_jax.train import trainer

    cfg = config_lib.load(args.config, args.overrides)
    distributed.initialize_from_env()
    trainer.train(cfg, args.workdir)
    return 0


def cmd_infer(args) -> int:
    """`strongaudio tag` / `strongaudio caption`: a batch-inference job (infer/jobs.py)."""
    from strongaudio_jax import config as config_lib
    from strongaudio_jax.infer import jobs
    from strongaudio_jax.parallel import distributed

    cfg = config_lib.load(args.config, args.overrides)
    distributed.initialize_from_env()
    jobs.run(cfg, args.command)
    return 0


def cmd_stats(args) -> int:
    """Mean / std of the config's frontend over its training files, for frontend.stats_file."""
    from strongaudio_jax import config as config_lib
    from strongaudio_jax.frontend import stats
    from strongaudio_jax.train import frontend_stats, step

    cfg = config_lib.load(args.config, args.overrides)
    result = frontend_stats.stats_from_config(cfg, step.frontend_config(cfg.frontend), args.per_bin)
    stats.save_stats(args.out, result)
    mean, std = (f"{float(x):.4f}" if not args.per_bin else f"{len(x)} bins"
                 for x in (result["mean"], result["std"]))
    print(f"{result['count']} frames: mean {mean}, std {std} -> {args.out}\n"
          f"use it with: frontend.stats_file={args.out}")
    return 0


def cmd_inspect(args) -> int:
    """Summary of a set of shards, or one record in full (--dump)."""
    from strongaudio_jax.data import inspect_shards, pipeline

    inspect_shards.main(pipeline.expand_paths(args.files), args.top, args.dump, args.json)
    return 0


def cmd_index(args) -> int:
    """Writes `<shard>.idx` beside each plain TFRecord shard (DALI's tfrecord2idx format), so
    every training host indexes it with one small read instead of reading every header."""
    from strongaudio_jax.data import index as index_lib, pipeline, storage, tfrecord

    done = kept = unindexable = 0
    for path in pipeline.expand_paths(args.files):  # (globs never return .idx files)
        if path.endswith(index_lib.ARRAY_RECORD_SUFFIX) or tfrecord.is_gzip(path):
            unindexable += 1  # ArrayRecord indexes itself; GZIP cannot be seeked
            continue
        if not args.force and storage.exists(tfrecord.index_path(path)):
            index_lib.read_sidecar(path)  # an existing index must still match its shard
            kept += 1
            continue
        print(index_lib.write_sidecar(path))
        done += 1
    print(f"{done} index file(s) written, {kept} already there and valid, {unindexable} "
          "ArrayRecord or GZIP file(s) skipped (they need no sidecar)")
    return 0


def cmd_export(args) -> int:
    """A training checkpoint -> a params-only directory that loads on one CPU (docs/export.md)."""
    from strongaudio_jax import config as config_lib
    from strongaudio_jax.train import export

    cfg = config_lib.load(args.config, args.overrides) if args.config else None
    if args.overrides and not args.config:
        raise config_lib.ConfigError("key=value overrides go with --config (for a work dir "
                                     "without config.json)")
    try:
        info = export.export(args.workdir, args.out, args.step, args.ema, cfg)
    except export.ExportError as e:
        raise config_lib.ConfigError(str(e)) from None
    print(f"exported step {info['step']}: {info['params']} parameters, "
          f"{info['param_count'] / 1e6:.2f}M (encoder {info['encoder_param_count'] / 1e6:.2f}M), "
          f"embeddings of {info['scene_embedding_size']} at {info['sample_rate']} Hz -> {args.out}\n"
          f"use it with: strongaudio_jax.hub.load_model({args.out!r})")
    return 0


def cmd_compile_check(args) -> int:
    """Compiles the config's train step (or an inference job's device program, per bucket)
    for a TPU topology on this (CPU) host; 1 if it does not fit the chips' memory."""
    import jax

    jax.config.update("jax_platforms", "cpu")  # the host runs nothing; libtpu only compiles
    from strongaudio_jax import config as config_lib
    from strongaudio_jax.train import compile_check

    cfg = config_lib.load(args.config, args.overrides)
    try:
        from strongaudio_jax.infer import compile_check as infer_check
        if infer_check.job_of(cfg):  # configs/tag.py, configs/caption.py: the job's programs
            return infer_check.main(cfg, args.topology)
        return compile_check.main(cfg, args.topology, args.num_classes)
    except compile_check.LibtpuMissingError as e:
        print(f"strongaudio compile-check: error: {e}", file=sys.stderr)
        return 2


def cmd_eval(args) -> int:
    """Frozen-embedding evaluation of HEAR modules on downstream tasks (docs/evaluation.md)."""
    from strongaudio_jax.eval import report

    report.run(args.model, args.tasks, args.out, args.protocols, args.plot_task,
               args.batch_size, plots=not args.no_plots)
    print(f"report: {os.path.join(args.out, 'report.md')}")
    return 0


def cmd_finetune(args) -> int:
    """An exported encoder + a head, trained end to end on a task (train/finetune.py)."""
    from strongaudio_jax import config as config_lib
    from strongaudio_jax.parallel import distributed
    from strongaudio_jax.train import finetune

    config = args.config or os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "configs", "finetune.py")
    cfg = config_lib.load(config, args.overrides)
    distributed.initialize_from_env()
    out = finetune.finetune(cfg, args.src, args.task, args.out)
    if "results" in out:
        print(f"results: {os.path.join(args.out, finetune.RESULTS_FILE)}")
    return 0


def cmd_import_hf(args) -> int:
    """A Hugging Face Qwen2 / Qwen2.5 / Qwen3 / Qwen2-Audio directory -> orbax checkpoint +
    config + tokenizer (docs/lm.md)."""
    from strongaudio_jax.infer import import_hf

    cfg = import_hf.import_hf(args.src, args.out, args.dtype)
    text = getattr(cfg, "text", cfg)
    audio = (f", audio encoder {cfg.audio.encoder_layers} layers d_model {cfg.audio.d_model}"
             if hasattr(cfg, "audio") else "")
    print(f"{cfg.model_type}: {text.num_hidden_layers} layers, hidden {text.hidden_size}, "
          f"vocab {text.vocab_size}{audio}, {args.dtype} -> {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="strongaudio", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="pre-train an encoder (then probe it)")
    p.add_argument("--config", required=True, help="configs/<name>.py[:variant]")
    p.add_argument("--workdir", required=True, help="checkpoints, logs; resumes if it has some")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.set_defaults(func=cmd_train)

    for name, what in (("tag", "tag clips (audio -> tags with an MTC checkpoint, or caption -> "
                                "tags with a UTS extractor) into schema-v1 shards"),
                       ("caption", "caption clips with a captioning checkpoint into schema-v1 "
                                    "shards")):
        p = sub.add_parser(name, help=what)
        p.add_argument("--config", required=True, help=f"configs/{name}.py[:variant]")
        p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
        p.set_defaults(func=cmd_infer)

    p = sub.add_parser("stats", help="frontend normalisation statistics of a config's data")
    p.add_argument("--config", required=True, help="configs/<name>.py[:variant]")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--per-bin", action="store_true", help="one mean/std per mel bin")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("inspect", help="summary of TFRecord/ArrayRecord shards; dump one record")
    p.add_argument("files", nargs="+", help="shard paths or glob patterns (local or gs://...)")
    p.add_argument("--top", type=int, default=20, help="how many of the most frequent tags")
    p.add_argument("--dump", metavar="ID_OR_NUMBER", help="print one record (clip id or number)")
    p.add_argument("--json", action="store_true", help="the summary as one JSON object")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("index", help="write <shard>.idx files: hosts then index shards with "
                       "one small read each (important for shards in a bucket)")
    p.add_argument("files", nargs="+", help="shard paths or glob patterns (local or gs://...)")
    p.add_argument("--force", action="store_true", help="rewrite existing index files")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("export", help="a training checkpoint -> params-only directory for "
                       "evaluation (loads on one CPU; hub.load_model, safetensors)")
    p.add_argument("--workdir", required=True, help="the training --workdir (local or gs://)")
    p.add_argument("--out", required=True, help="a new (or empty) directory to write")
    p.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--ema", dest="ema", action="store_true", default=None,
                       help="the EMA parameters (default when the state has them)")
    which.add_argument("--raw", dest="ema", action="store_false", help="the raw parameters")
    p.add_argument("--config", help="only for work dirs without config.json: the training "
                   "config, configs/<name>.py[:variant] (with its overrides)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="overrides of --config")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("compile-check", help="compile the train step (or the tag / caption "
                       "job's program) for a TPU topology on this CPU host; per-chip memory, "
                       "fails if it does not fit")
    p.add_argument("--config", required=True, help="configs/<name>.py[:variant]")
    p.add_argument("--topology", action="append", default=[],
                   help="e.g. v5p-64, v5e-256, v4-128 or v5p:4x4x4 (repeatable; default: the "
                        "config's compile_check.topology)")
    p.add_argument("--num-classes", type=int, help="tag vocabulary size (default: from the config)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.set_defaults(func=cmd_compile_check)

    p = sub.add_parser("eval", help="probe / kNN evaluation of HEAR modules on downstream "
                       "tasks: report.md, results.json, plots")
    p.add_argument("--model", nargs="+", required=True, help="export directory or "
                   "module.name[:path] of a HEAR-API module (several: one comparison table)")
    p.add_argument("--tasks", nargs="+", required=True, help="HEAR task directory, "
                   "demo[:DIR][:LABEL] or KIND:DIR (fsd50k, vggsound, voxceleb2, cremad, mtat, "
                   "nsynth)")
    p.add_argument("--out", required=True, help="folder for report.md, results.json, PNGs")
    p.add_argument("--protocols", nargs="+", default=["linear", "attention", "mlp", "knn"],
                   choices=["linear", "attention", "mlp", "knn"])
    p.add_argument("--plot-task", help="task for the embedding and confusion plots "
                   "(default: the first multi-class task)")
    p.add_argument("--batch-size", type=int, default=16, help="clips per embedding call")
    p.add_argument("--no-plots", action="store_true", help="report.md and results.json only")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("finetune", help="fine-tune an exported encoder on a task (softmax or "
                       "BCE head, layer-wise lr decay, mixup, SpecAugment, EMA); results.json")
    p.add_argument("--from", dest="src", required=True, help="export directory "
                   "(strongaudio export)")
    p.add_argument("--task", required=True, help="HEAR task directory, demo[:DIR][:LABEL] or "
                   "KIND:DIR, as for strongaudio eval")
    p.add_argument("--out", required=True, help="work dir: checkpoints, logs, results.json; "
                   "resumes if it has some")
    p.add_argument("--config", help="configs/finetune.py[:variant] (default: the checkout's "
                   "configs/finetune.py)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("import-hf", help="a Hugging Face Qwen2/Qwen2.5/Qwen3/Qwen2-Audio "
                       "checkpoint directory -> orbax checkpoint, model config and tokenizer "
                       "(docs/lm.md)")
    p.add_argument("--from", dest="src", required=True, help="directory with config.json, "
                   "*.safetensors, tokenizer.json, tokenizer_config.json")
    p.add_argument("--out", required=True, help="a new (or empty) directory to write")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="storage dtype of the parameters (bfloat16: half the disk and memory)")
    p.set_defaults(func=cmd_import_hf)

    from strongaudio_jax.browse import cli as browse_cli  # `strongaudio browse SHARDS...`
    browse_cli.add_parser(sub)

    from strongaudio_jax.uts import cli as uts_cli  # `strongaudio uts tag|build|filter|...`
    uts_cli.add_parser(sub)
    from strongaudio_jax.curate import cli as curate_cli  # `strongaudio curate coverage|...`
    curate_cli.add_parser(sub)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except _user_errors() as e:
        if args.debug or os.environ.get("STRONGAUDIO_DEBUG"):
            raise
        print(f"strongaudio {args.command}: error: {e}{_bad_data_hint(e, args)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"strongaudio {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
