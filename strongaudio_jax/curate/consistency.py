"""`strongaudio curate consistency`: how well each clip's caption fits its audio, scored by a
contrastive checkpoint of this stack, and a filter on that score.

The score of a clip is the cosine between its audio embedding and its caption-summary
embedding, both from the contrastive head of an export (`strongaudio export` of a run with the
contrastive objective, configs/contrastive.py): audio through the encoder and the head's audio
projection (clips longer than the encoder's window: the mean over windows), text through the
head's text tower with the run's tokenizer (`text_vocab.txt` of the export). This is the
GLAP-style filter used for ACAVCaps. --signal logp scores each clip instead by a captioning
export's length-normalised log p(caption | audio) (curate/logp.py; --captioner, default --model);
--signal both by the mean of the two scores' ranks, each scaled to [0, 1] (scores.jsonl then has
each signal's score beside the combined one). The filter keeps the top fraction
(--keep-fraction) or the clips scoring at least --threshold, and writes a side index
(kept.json: kept and removed ids) and, with --write-shards, new shards holding only the kept
clips (same file names). The report shows what was removed per domain and per source, with
the lowest-scoring examples.

--swap-fraction F is the labelled check: before scoring, the caption summaries of a seeded
random F of the clips are rotated among themselves (each gets another clip's), and the report
gives the filter's precision and recall at finding them, and the average precision of the
score as a ranking.
"""

from __future__ import annotations

import collections
import json
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from strongaudio_jax.curate import records
from strongaudio_jax.curate import embed as embed_lib
from strongaudio_jax.curate.embed import Embedder, Embeddings, embed_corpus


class NotContrastiveError(records.CurateError):
    """The export has no contrastive head."""


def load_head(export_dir: str):
    """(hub model, contrastive module, its params, tokenizer, max_len) of an export."""
    from strongaudio_jax.data import text_fields

    model, cfg, head, params = embed_lib.load_head(
        export_dir, "contrastive", "export a run of configs/contrastive.py (or one with "
        "objectives.contrastive)", NotContrastiveError)
    return model, head, params, text_fields.tokenizer_from_config(cfg), text_fields.text_length(cfg)


def audio_embedder(model, head, params, batch_size: int) -> Embedder:
    return Embedder(model, batch_size, head=lambda p, enc: head.apply({"params": p}, enc,
                                                                       method="embed_audio"),
                    head_params=params)


def text_embeddings(head, params, tokenizer, max_len: int, texts: Sequence[str],
                    batch_size: int = 64) -> np.ndarray:
    fn = jax.jit(lambda p, ids, mask: head.apply({"params": p}, ids, mask, method="embed_text"))
    out = []
    for b in range(0, len(texts), batch_size):
        chunk = list(texts[b:b + batch_size])
        ids, mask = tokenizer.encode(chunk + [""] * (batch_size - len(chunk)), max_len)
        out.append(np.asarray(fn(params, jnp.asarray(ids), jnp.asarray(mask)))[:len(chunk)])
    return np.concatenate(out) if out else np.zeros((0, 1), np.float32)


def swap_captions(emb: Embeddings, fraction: float, seed: int) -> list[int]:
    """Rotates the summaries (and captions) of a seeded random `fraction` of the clips among
    themselves; returns the indices of clips whose summary changed."""
    rng = np.random.default_rng(seed)
    n = int(round(fraction * len(emb)))
    if n < 2:
        return []
    chosen = rng.choice(len(emb), n, replace=False)
    order = np.roll(chosen, 1)  # each chosen clip gets the next one's text
    sums, caps = list(emb.summaries), list(emb.captions)
    for dst, src in zip(chosen, order):
        emb.summaries[dst], emb.captions[dst] = sums[src], caps[src]
    return sorted(int(i) for i in chosen if emb.summaries[i] != sums[i])


def average_precision(scores_bad: np.ndarray, is_bad: np.ndarray) -> float:
    """AP of ranking clips by ascending score (lowest = most likely mismatched)."""
    order = np.argsort(scores_bad, kind="stable")
    hits = is_bad[order].astype(float)
    if not hits.sum():
        return float("nan")
    prec = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((prec * hits).sum() / hits.sum())


def select(scores: np.ndarray, keep_fraction: float | None, threshold: float | None) -> tuple[np.ndarray, float]:
    """(kept mask, threshold used)."""
    if threshold is None:
        n_keep = int(round((keep_fraction if keep_fraction is not None else 0.9) * len(scores)))
        if n_keep >= len(scores):
            return np.ones(len(scores), bool), float("-inf")
        threshold = float(np.sort(scores)[::-1][n_keep - 1]) if n_keep else float("inf")
    return scores >= threshold, float(threshold)


SIGNALS = ("contrastive", "logp", "both")
DESCRIBE = {"contrastive": "cosine of audio and caption-summary embeddings",
            "logp": "captioner's length-normalised log p(text | audio)",
            "both": "mean of the rank-normalised contrastive and logp scores"}


def run(export_dir: str, files: Sequence[str], out_dir: str, keep_fraction: float | None = None,
        threshold: float | None = None, swap_fraction: float = 0.0, seed: int = 0,
        batch_size: int = 16, write_shards: str | None = None, examples: int = 10,
        progress: bool = True, signal: str = "contrastive", captioner: str | None = None) -> dict:
    """`signal`: contrastive (the export's contrastive head), logp (the captioner's
    length-normalised log p, curate/logp.py; `captioner` is its export, default `export_dir`)
    or both (the mean of the two scores' ranks, each scaled to [0, 1])."""
    from strongaudio_jax.curate import logp as logp_lib

    if signal not in SIGNALS:
        raise records.CurateError(f"--signal {signal!r}: use one of {', '.join(SIGNALS)}")
    if signal != "contrastive":  # load first: a wrong export fails before any pass
        cap_model, module, cap_params, fields = logp_lib.load_captioner(captioner or export_dir)
    if signal != "logp":
        model, head, params, tokenizer, max_len = load_head(export_dir)
        embedder = audio_embedder(model, head, params, batch_size)
        emb = embed_corpus(embedder, files, os.path.join(out_dir, "audio_embeddings"),
                           "consistency: audio", head_name="contrastive.embed_audio",
                           progress=progress)
    else:
        emb = logp_lib.corpus_meta(files, "consistency: clips", progress)
    swapped = swap_captions(emb, swap_fraction, seed) if swap_fraction else []
    signals = {}
    if signal != "logp":
        zt = text_embeddings(head, params, tokenizer, max_len, emb.summaries)
        signals["contrastive"] = (emb.vectors * zt).sum(1) if len(emb) else np.zeros(0)
    if signal != "contrastive":
        scorer = logp_lib.LogpScorer(cap_model, module, cap_params, fields, batch_size)
        lp = logp_lib.score_corpus(scorer, files, emb, logp_lib.texts_of(emb, fields.source),
                                   os.path.join(out_dir, "logp_scores"), progress=progress)
        ok = ~np.isnan(lp)  # clips whose audio does not decode have no score
        if not ok.all():
            emb, swapped, signals = _subset(emb, ok, swapped, signals)
        signals["logp"] = lp[ok]
    if signal == "both":
        scores = (logp_lib.rank_normalise(signals["contrastive"])
                  + logp_lib.rank_normalise(signals["logp"])) / 2
    else:
        scores = signals[signal]
    kept, used = select(scores, keep_fraction, threshold)
    result = _report(emb, scores, kept, used, swapped, out_dir, examples,
                     {"export": export_dir, "files": len(files), "keep_fraction": keep_fraction,
                      "threshold": threshold, "swap_fraction": swap_fraction, "seed": seed,
                      "signal": signal, "captioner": (captioner or export_dir)
                      if signal != "contrastive" else None},
                     signals)
    if write_shards:
        result["shards_written"] = _write_shards(files, {emb.ids[i] for i in np.flatnonzero(kept)},
                                                 write_shards, progress)
    return result


def _subset(emb: Embeddings, ok: np.ndarray, swapped: list[int], signals: dict):
    """The clips where `ok`, with the swapped indices and the signals renumbered."""
    keep = np.flatnonzero(ok)
    pick = lambda xs: [xs[i] for i in keep]  # noqa: E731
    new = Embeddings(pick(emb.ids), emb.vectors[keep], pick(emb.domains), pick(emb.sources),
                     pick(emb.captions), pick(emb.summaries), pick(emb.shards))
    renumber = {int(old): new_i for new_i, old in enumerate(keep)}
    return (new, [renumber[i] for i in swapped if i in renumber],
            {k: v[keep] for k, v in signals.items()})


def _report(emb, scores, kept, threshold, swapped, out_dir, examples, params,
            signals: dict | None = None) -> dict:
    signals = signals or {}
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "scores.jsonl"), "w") as f:
        for i, cid in enumerate(emb.ids):
            row = {"id": cid, "score": round(float(scores[i]), 5), "kept": bool(kept[i]),
                   "domain": emb.domains[i], "summary": emb.summaries[i]}
            if len(signals) > 1 or params.get("signal", "contrastive") == "logp":
                row.update({k: round(float(v[i]), 5) for k, v in signals.items()})
            f.write(json.dumps(row) + "\n")
    with open(os.path.join(out_dir, "kept.json"), "w") as f:
        json.dump({"threshold": threshold, "kept": [emb.ids[i] for i in np.flatnonzero(kept)],
                   "removed": [emb.ids[i] for i in np.flatnonzero(~kept)]}, f, indent=0)

    def table(keys):
        groups = collections.defaultdict(list)
        for i, k in enumerate(keys):
            groups[k].append(i)
        return {k: {"clips": len(v), "removed": int((~kept[v]).sum()),
                    "removed_share": float((~kept[v]).mean()), "mean_score": float(scores[v].mean())}
                for k, v in sorted(groups.items(), key=lambda x: -len(x[1]))}

    result = {"params": params, "clips": len(emb), "threshold": threshold,
              "kept": int(kept.sum()), "removed": int((~kept).sum()),
              "by_domain": table(emb.domains),
              "by_source": table([records.source_group(s) for s in emb.sources])}
    if swapped:
        bad = np.zeros(len(emb), bool)
        bad[swapped] = True
        flagged = ~kept
        tp = int((flagged & bad).sum())
        result["swap_check"] = {
            "swapped": int(bad.sum()), "flagged": int(flagged.sum()), "true_positives": tp,
            "precision": tp / max(1, int(flagged.sum())), "recall": tp / int(bad.sum()),
            "average_precision": average_precision(scores, bad),
            "mean_score_swapped": float(scores[bad].mean()),
            "mean_score_intact": float(scores[~bad].mean())}
        if len(signals) > 1:  # each signal alone, ranked
            result["swap_check"]["average_precision_by_signal"] = {
                k: average_precision(v, bad) for k, v in signals.items()}
    low = np.argsort(scores, kind="stable")[:examples]
    result["lowest"] = [{"id": emb.ids[i], "score": float(scores[i]), "domain": emb.domains[i],
                         "summary": emb.summaries[i], "swapped": int(i) in set(swapped)} for i in low]
    with open(os.path.join(out_dir, "consistency.json"), "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(out_dir, "consistency.md"), "w") as f:
        f.write(_markdown(result))
    return result


def _markdown(r: dict) -> str:
    lines = ["# Caption-audio consistency", "",
             f"{r['clips']} clips scored; threshold {r['threshold']:.4f} "
             f"({DESCRIBE[r['params'].get('signal', 'contrastive')]}); kept {r['kept']}, "
             f"removed {r['removed']}.", ""]
    if "swap_check" in r:
        s = r["swap_check"]
        lines += [f"Labelled check: {s['swapped']} clips had their caption summary swapped "
                  f"(fraction {r['params']['swap_fraction']}, seed {r['params']['seed']}). The filter "
                  f"removed {s['flagged']}: precision {s['precision']:.3f}, recall {s['recall']:.3f}; "
                  f"average precision of the score {s['average_precision']:.3f}; mean score swapped "
                  f"{s['mean_score_swapped']:.3f} vs intact {s['mean_score_intact']:.3f}."
                  + "".join(f" Average precision of {k} alone: {v:.3f}." for k, v in
                            s.get("average_precision_by_signal", {}).items()), ""]
    for name, key in (("domain", "by_domain"), ("source", "by_source")):
        lines += [f"## Removed per {name}", "", f"| {name} | clips | removed | share | mean score |",
                  "|---|---|---|---|---|"]
        lines += [f"| {k} | {v['clips']} | {v['removed']} | {v['removed_share']:.3f} | "
                  f"{v['mean_score']:.3f} |" for k, v in r[key].items()]
        lines.append("")
    lines += ["## Lowest-scoring clips", "", "| clip | domain | score | caption summary |"
              + (" swapped |" if "swap_check" in r else ""),
              "|---|---|---|---|" + ("---|" if "swap_check" in r else "")]
    for e in r["lowest"]:
        lines.append(f"| {e['id']} | {e['domain']} | {e['score']:.3f} | {e['summary']} |"
                     + ((" yes |" if e["swapped"] else " |") if "swap_check" in r else ""))
    return "\n".join(lines) + "\n"


def _write_shards(files: Sequence[str], keep: set[str], out_dir: str, progress: bool) -> int:
    """Copies the kept clips' records, shard by shard, under the same file names."""
    from strongaudio_jax.data import schema, tfrecord

    os.makedirs(out_dir, exist_ok=True)
    damage = records.Damage()
    written = 0
    for path in files:
        name = os.path.basename(path).removesuffix(".gz")
        if name.endswith(".array_record"):
            name = name.removesuffix(".array_record") + ".tfrecord"
        target = os.path.join(out_dir, name)
        if os.path.abspath(target) == os.path.abspath(path):
            raise records.CurateError(f"--write-shards {out_dir} would overwrite the input {path}")
        tmp = target + f".tmp{os.getpid()}"
        with tfrecord.TFRecordWriter(tmp, compression="") as w:
            for i, data in records.shard_records(path, damage):
                try:
                    cid = schema.example_to_clip(data, f"{path} record {i}").id
                except schema.SchemaError:
                    continue
                if cid in keep:
                    w.write(data)
                    written += 1
        os.replace(tmp, target)
    return written
