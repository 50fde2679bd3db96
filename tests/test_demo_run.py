"""The README's main job, shortened: `strongaudio train` on the bundled demo corpus."""

import json

from strongaudio_jax import assets, cli
from tests.conftest import REPO


def test_smoke_variant_on_bundled_corpus(tmp_path, capsys):
    assert cli.main(["train", "--config", f"{REPO}/configs/mtc.py:smoke",
                     "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "step     12/12" in out and "linear probe" in out
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    probes = {r["probe"]: r for r in records if "probe" in r}
    assert set(probes) == {"domain", "language", "instrument", "event"}
    corpus = json.load(open(assets.demo_corpus("corpus.json")))
    for task, r in probes.items():
        assert r["num_eval"] == sum(corpus["counts"]["heldout"][task].values())
        assert 0.0 <= r["accuracy"] <= 1.0
    assert (tmp_path / "checkpoints" / "12").is_dir()
    assert len(json.load(open(tmp_path / "vocab.json"))) > 50
