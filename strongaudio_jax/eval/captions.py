"""Captioning metrics: BLEU-1..4, ROUGE-L, CIDEr-D, and SPICE / SPIDEr where Java can run it.

The scorers are the COCO caption evaluation code (`pycocoevalcap`, the implementation DCASE
and aac-metrics reproduce): BLEU with the closest reference length, ROUGE-L with beta 1.2,
and its `Cider` scorer, which is CIDEr-D (clipped n-gram counts, Gaussian length penalty
sigma 6, times 10; document frequencies from the references of the evaluated set).
Captions are tokenised in Python the way the COCO evaluation's PTB tokenizer ends up
(lower case, punctuation dropped, clitics split, brackets as -lrb- / -rrb-), since that
tokenizer needs Java; a test checks the two agree where Java is present. SPICE needs Java
and the Stanford CoreNLP models; without them SPICE and SPIDEr are left out and `skipped`
says why.
"""

from __future__ import annotations

import os
import re
import shutil
from typing import Sequence

# The punctuation the COCO evaluation drops after PTB tokenisation (pycocoevalcap); it
# compares before lower-casing, so brackets survive as -lrb- / -rrb- tokens, as there.
_PUNCT = {"''", "'", "``", "`", ".", "?", "!", ",", ":", "-", "--", "...", ";", '"'}
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "{": "-lcb-", "}": "-rcb-", "[": "-lsb-", "]": "-rsb-"}
_TOKEN = re.compile(r"[a-z0-9]+(?:[-'.][a-z0-9]+)*'?|\.\.\.|--|\S")


def tokenize(text: str) -> str:
    """'A dog, barking (loudly).' -> 'a dog barking -lrb- loudly -rrb-': the tokens the COCO
    evaluation's Java PTB tokenizer gives for ordinary captions, without Java."""
    out = []
    for w in _TOKEN.findall(text.lower()):
        if w.endswith("n't") and len(w) > 3:
            out += [w[:-3], "n't"]
        elif "'" in w[1:]:
            head, tail = w.rsplit("'", 1)
            out += [head, "'" + tail] if tail else [head]
        elif w not in _PUNCT:
            out.append(_BRACKETS.get(w, w))
    return " ".join(t for t in out if t)


def spice_unavailable() -> str | None:
    """Why SPICE cannot run here, or None when it can (Java + the CoreNLP models)."""
    if shutil.which("java") is None:
        return "SPICE needs Java (install a JRE, e.g. apt-get install default-jre-headless)"
    try:
        from pycocoevalcap import spice
    except ImportError:
        return "SPICE needs pycocoevalcap (pip install pycocoevalcap)"
    lib = os.path.join(os.path.dirname(spice.__file__), "lib")
    if not any(f.startswith("stanford-corenlp-3.6.0") for f in os.listdir(lib)):
        return (f"SPICE needs the Stanford CoreNLP 3.6.0 models in {lib} (run python -c "
                "'from pycocoevalcap.spice.get_stanford_models import get_stanford_models; "
                "get_stanford_models()' once, online)")
    return None


def caption_metrics(predictions: Sequence[str], references: Sequence[Sequence[str]],
                    spice: bool = True) -> dict:
    """Corpus-level scores of one predicted caption per clip against its reference captions.
    Returns {"BLEU_1".."BLEU_4", "ROUGE_L", "CIDEr-D"[, "SPICE", "SPIDEr"], "skipped": [...]}."""
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge
    except ImportError as e:
        raise ImportError("captioning metrics need pycocoevalcap: pip install "
                          "'strongaudio_jax[eval]'") from e
    if len(predictions) != len(references) or not predictions:
        raise ValueError(f"{len(predictions)} predictions for {len(references)} reference sets: "
                         "give one prediction per clip (and at least one clip)")
    if any(not refs for refs in references):
        raise ValueError("every clip needs at least one reference caption")
    res = {i: [tokenize(p)] for i, p in enumerate(predictions)}
    gts = {i: [tokenize(r) for r in refs] for i, refs in enumerate(references)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    out = {f"BLEU_{n + 1}": float(b) for n, b in enumerate(bleu)}
    out["ROUGE_L"] = float(Rouge().compute_score(gts, res)[0])
    out["CIDEr-D"] = float(Cider().compute_score(gts, res)[0])
    why = spice_unavailable() if spice else "SPICE not requested"
    out["skipped"] = []
    if why is None:
        from pycocoevalcap.spice.spice import Spice

        out["SPICE"] = float(Spice().compute_score(gts, res)[0])
        out["SPIDEr"] = (out["SPICE"] + out["CIDEr-D"]) / 2
    else:
        out["skipped"].append(f"SPICE, SPIDEr: {why}")
    return out
