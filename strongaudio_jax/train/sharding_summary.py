"""Sharding summaries: each parameter's shape, PartitionSpec and bytes per device on a mesh.

Golden summaries of the main configs (the repository keeps them in tests/golden/) catch a change
that silently replicates a large tensor or shards it differently (tests/test_sharding_golden.py).
After a deliberate change, regenerate them from the repository root and review the diff:

    python -m strongaudio_jax.train.sharding_summary --golden-dir tests/golden --update
"""

from __future__ import annotations

import math
import os
import pathlib

GOLDEN_MESH = dict(data=1, fsdp=4, tensor=2)  # on the tests' 8 virtual CPU devices
GOLDEN = {  # golden file stem -> config file in configs/ (vocabulary: compile_check.num_classes)
    "vit_b_mtc": "vit_b_mtc.py:v5p-64",
    "vit_l_mtc": "vit_l_mtc.py:v5p-64",
    "zipformer_m_mtc": "zipformer_mtc.py:v5p-64",
}


def summarize(cfg, mesh, num_classes: int) -> dict:
    """{"params": {path: {shape, spec, bytes_per_device}}, totals in bytes per device}."""
    import flax.linen as nn
    import jax

    from strongaudio_jax.train import step as step_lib

    program = step_lib.build(cfg, num_classes=num_classes)
    state_sh, _ = program.shardings(mesh)
    state = jax.eval_shape(lambda: nn.meta.unbox(program.init(jax.random.key(0))))

    def per_device(x, sharding) -> int:
        return math.prod(sharding.shard_shape(x.shape)) * x.dtype.itemsize

    params = {}
    for (path, x), sh in zip(jax.tree_util.tree_leaves_with_path(state.params),
                             jax.tree.leaves(state_sh.params)):
        params[jax.tree_util.keystr(path, simple=True, separator="/")] = dict(
            shape=list(x.shape), spec=[list(a) if isinstance(a, tuple) else a for a in sh.spec],
            bytes_per_device=per_device(x, sh))
    total = lambda tree, shs: sum(per_device(x, s) for x, s in
                                  zip(jax.tree.leaves(tree), jax.tree.leaves(shs)))
    return dict(mesh=dict(mesh.shape), num_params=sum(x.size for x in jax.tree.leaves(state.params)),
                param_bytes_per_device=total(state.params, state_sh.params),
                opt_state_bytes_per_device=total(state.opt_state, state_sh.opt_state),
                params=params)


def golden_summary(stem: str, configs_dir: str | os.PathLike, overrides: tuple[str, ...] = ()) -> dict:
    """The summary of GOLDEN[stem] (a config in `configs_dir`) on GOLDEN_MESH, with `overrides`."""
    from strongaudio_jax import config as config_lib
    from strongaudio_jax.parallel import mesh as mesh_lib
    from strongaudio_jax.train import compile_check

    cfg = config_lib.load(str(pathlib.Path(configs_dir) / GOLDEN[stem]),
                          [f"mesh.{k}={v}" for k, v in GOLDEN_MESH.items()] + list(overrides))
    mesh = mesh_lib.make_mesh(GOLDEN_MESH)
    return summarize(cfg, mesh, compile_check.num_classes_of(cfg))


def golden_path(golden_dir: str | os.PathLike, stem: str) -> pathlib.Path:
    return pathlib.Path(golden_dir) / f"sharding_{stem}.json"


def to_json(summary: dict) -> str:
    """JSON with one line per parameter, so a golden file's diff reads parameter by parameter."""
    import json

    head = {k: v for k, v in summary.items() if k != "params"}
    lines = [f"  {json.dumps(name)}: {json.dumps(entry)}" for name, entry in summary["params"].items()]
    return (json.dumps(head, indent=1)[:-2] + ',\n "params": {\n' + ",\n".join(lines) + "\n }\n}\n")


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--golden-dir", required=True, help="folder of sharding_<stem>.json files")
    parser.add_argument("--configs-dir", default="configs", help="folder of the config files")
    parser.add_argument("--update", action="store_true", help="rewrite the golden files")
    args = parser.parse_args(argv)
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               " --xla_force_host_platform_device_count=8")
    os.environ["JAX_PLATFORMS"] = "cpu"
    for stem in GOLDEN:
        text = to_json(golden_summary(stem, args.configs_dir))
        path = golden_path(args.golden_dir, stem)
        if args.update:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
        else:
            print(text)


if __name__ == "__main__":
    main()
