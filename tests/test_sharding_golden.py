"""Golden sharding summaries: a change that replicates (or re-shards) a parameter fails here.

Regenerate deliberately from the repository root with
`python -m strongaudio_jax.train.sharding_summary --golden-dir tests/golden --update` and review
the diff of tests/golden/.
"""

import json

import pytest

from strongaudio_jax.train import sharding_summary as summary

from conftest import REPO

GOLDEN_DIR = REPO / "tests" / "golden"
CONFIGS = REPO / "configs"


@pytest.mark.parametrize("stem", sorted(summary.GOLDEN))
def test_sharding_matches_golden(stem):
    golden = json.loads(summary.golden_path(GOLDEN_DIR, stem).read_text())
    now = summary.golden_summary(stem, CONFIGS)
    changed = [f"{name}: golden {golden['params'].get(name)} now {entry}"
               for name, entry in now["params"].items() if golden["params"].get(name) != entry]
    changed += [f"{name}: gone (golden {entry})" for name, entry in golden["params"].items()
                if name not in now["params"]]
    assert not changed, (f"sharding of {summary.GOLDEN[stem]} changed ({len(changed)} parameters):\n"
                         + "\n".join(changed[:20]) + "\nif deliberate: python -m "
                         "strongaudio_jax.train.sharding_summary --golden-dir tests/golden --update")
    assert now == golden


@pytest.mark.parametrize("stem", sorted(summary.GOLDEN))
def test_no_large_parameter_is_replicated(stem):
    """FSDP must split every big matrix: 1M+ parameters on every device is a regression."""
    golden = json.loads(summary.golden_path(GOLDEN_DIR, stem).read_text())
    replicated = [name for name, e in golden["params"].items()
                  if not any(e["spec"]) and e["bytes_per_device"] >= 4_000_000]
    assert not replicated, f"{stem}: replicated large parameters {replicated}"
