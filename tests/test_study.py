"""tools/study.py, small: two objectives for 2 steps on the tiny corpus, scored through the
trainer's evaluators; the table lands between its markers and the rest of the file is kept."""

import importlib.util
import json

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow  # two short training runs


def test_study_trains_scores_and_writes_the_table(tiny_corpus, tmp_path):
    spec = importlib.util.spec_from_file_location("study", REPO / "tools" / "study.py")
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    out = tmp_path / "study.md"
    out.write_text("# Study\n\nkept text\n")
    assert study.main(["--corpus", str(tiny_corpus), "--steps", "2", "--workdir",
                       str(tmp_path / "runs"), "--out", str(out), "--objectives",
                       "mtc,contrastive", "--retrieval-clips", "8", "data.batch_size=8",
                       "data.clip_seconds=1.0", "model.max_frames=128", "probe.clip_seconds=1.0",
                       "probe.batch_size=8", "probe.steps=30", "data.vocab_min_count=1"]) == 0
    text = out.read_text()
    assert text.startswith("# Study\n\nkept text\n") and study.BEGIN in text and study.END in text
    rows = {line.split("|")[1].strip(): line for line in text.splitlines()
            if line.startswith("| mtc") or line.startswith("| contrastive")}
    assert set(rows) == {"mtc", "contrastive"}
    for name in rows:
        record = json.load(open(tmp_path / "runs" / name / "study.json"))
        # The tiny corpus labels only `domain` (3 classes): both poolings are scored.
        assert set(record["probe"]) == {"domain/mean", "domain/attention"}
        assert all(0.0 <= v <= 1.0 for v in record["probe"].values())
        assert record["chance"] == {"domain": pytest.approx(1 / 3)}
    assert 0.0 < json.load(open(tmp_path / "runs" / "mtc" / "study.json"))["tag_map"] <= 1.0
    retrieval = json.load(open(tmp_path / "runs" / "contrastive" / "study.json"))["retrieval"]
    assert retrieval["clips"] == 8 and 0.0 <= retrieval["a2t"]["R@1"] <= 1.0
