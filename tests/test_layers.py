"""Layers point down: no module of the package imports from a layer above its own.

From the bottom up (a module may import its own layer and the layers below it):

  0  config.py, registry.py  what everything may raise or look up: ConfigError, config loading,
                             the plugin registry (it imports models / objectives by name at run
                             time, not by an import statement)
  1  text/, assets/          the WordPiece tokenizer and the names of tokenised text in a batch,
                             MiniLM's weight files (numpy only); the bundled demo corpus
  2  data/                   the host side: shards, decoding, the input pipeline (tokenising a
                             caption is host work, hence text/ below it). Its decoding workers
                             import no JAX, and nothing in it needs the device side
  3  frontend/, parallel/    log-mel and augmentation on device; the mesh and sharding rules
  4  models/                 audio encoders; text encoder / decoder (models/text/); decoder-only
                             LMs (models/lm/)
  5  objectives/             losses and heads over the models
  6  train/, eval/, infer/,  the jobs: training (step, trainer, compile-check, sharding summary,
     uts/, hub.py,           the frontend-statistics pass, export), evaluation, LM generation and
     hub_torch.py            the Hugging Face LM import (infer/), and corpus tagging /
                             vocabulary building (reads and writes shards, may run models); the
                             HEAR embedding API over an export (rebuilds the model with train/step);
     browse/                 the corpus browser (reads shards, draws spectrograms with frontend/);
     curate/                 corpus curation: coverage, near-duplicates, caption-audio consistency
  7  cli.py                  the `strongaudio` command, on top of everything

Every `import` counts, including those inside functions (a lazy import is still a dependency).
A new top-level module or package must be given a layer here.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "strongaudio_jax"
LAYERS = [
    {"config", "registry", "__init__"},
    {"text", "assets"},
    {"data"},
    {"frontend", "parallel"},
    {"models"},
    {"objectives"},
    {"train", "eval", "infer", "uts", "hub", "hub_torch", "browse", "curate"},
    {"cli"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _component(module: str) -> str | None:
    """'strongaudio_jax.data.pipeline' -> 'data'; None outside the package or for the package
    itself."""
    parts = module.split(".")
    if parts[0] != "strongaudio_jax" or len(parts) < 2:
        return None
    return parts[1]


def imported_components(source: str, module: str) -> list[tuple[int, str]]:
    """(line, top-level component of strongaudio_jax) of every import in `source`, the module
    named `module` (dotted)."""
    package = module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from its own package upwards
                anchor = package[:len(package) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from strongaudio_jax import data` imports the component named after `import`
            targets = ([f"{base}.{a.name}" for a in node.names] if base == "strongaudio_jax"
                       else [base])
        else:
            continue
        found += [(node.lineno, c) for t in targets if (c := _component(t))]
    return found


def _modules():
    """(path, dotted name, component) of every module; a package's __init__ keeps its name
    ('strongaudio_jax.data.__init__') so relative imports resolve from the package."""
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        yield path, ".".join(parts), parts[1]


def upward_imports(source: str, module: str, own: str) -> list[str]:
    return [f"{module}:{line} imports {target} (layer {RANK[target]}) from {own} (layer "
            f"{RANK[own]})" for line, target in imported_components(source, module)
            if target in RANK and RANK[target] > RANK[own]]


def test_every_top_level_module_has_a_layer():
    tops = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
            if (p.suffix == ".py") or (p.is_dir() and (p / "__init__.py").exists())}
    missing = sorted(tops - set(RANK))
    assert not missing, f"give {missing} a layer in tests/test_layers.py (and its docstring)"


def test_no_module_imports_a_layer_above_its_own():
    bad = []
    for path, module, own in _modules():
        bad += upward_imports(path.read_text(), module, own)
    assert not bad, "upward imports:\n" + "\n".join(bad)


@pytest.mark.parametrize("source, module, own, expected", [
    ("from strongaudio_jax.train import step", "strongaudio_jax.models.vit", "models", ["train"]),
    ("def f():\n    from strongaudio_jax.frontend import log_mel", "strongaudio_jax.data.pipeline",
     "data", ["frontend"]),  # a lazy import counts
    ("from strongaudio_jax.objectives import par", "strongaudio_jax.data.text_fields",
     "data", ["objectives"]),
    ("from strongaudio_jax.data import text_fields", "strongaudio_jax.objectives.par",
     "objectives", []),  # the device side may read the data side's names
    ("from strongaudio_jax import objectives as o", "strongaudio_jax.models.base", "models",
     ["objectives"]),
    ("from ..train import step", "strongaudio_jax.parallel.mesh", "parallel", ["train"]),
    ("import strongaudio_jax.cli", "strongaudio_jax.data.pipeline", "data", ["cli"]),
    ("from strongaudio_jax.models.base import EncoderOutput", "strongaudio_jax.objectives.mtc",
     "objectives", []),  # downwards is fine
    ("from strongaudio_jax.frontend import log_mel", "strongaudio_jax.parallel.mesh", "parallel",
     []),  # the same layer is fine
])
def test_checker_sees_upward_imports(source, module, own, expected):
    found = upward_imports(source, module, own)
    assert [line.split(" imports ")[1].split(" ")[0] for line in found] == expected
