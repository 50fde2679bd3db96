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
    from strongaudio_jax.data.tfrecord import CorruptRecordError
    from strongaudio_jax.train.checkpoint import CheckpointMismatchError
    from strongaudio_jax.train.trainer import NonFiniteLossError
    return (ConfigError, AudioDecodeError, SchemaError, CorruptRecordError, NonFiniteLossError,
            CheckpointMismatchError, FileNotFoundError)


def cmd_train(args) -> int:
    from strongaudio_jax import config as config_lib
    from strongaudio_jax.parallel import distributed
    from strongaudio_jax.train import trainer

    cfg = config_lib.load(args.config, args.overrides)
    distributed.initialize_from_env()
    trainer.train(cfg, args.workdir)
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

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except _user_errors() as e:
        if args.debug or os.environ.get("STRONGAUDIO_DEBUG"):
            raise
        print(f"strongaudio {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"strongaudio {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
