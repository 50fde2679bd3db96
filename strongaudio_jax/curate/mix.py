"""`strongaudio curate mix`: mixture-weight search by short proxy trainings scored by probes.

The corpora are the config's `data.mix`; when it is empty, the clips of `data.train_files` are
split by domain (`records.domain`) into one shard per domain under `<out_dir>/corpora/`. Trial 0
weighs every corpus equally; the other trials draw weights from a flat Dirichlet with the given
seed, so one command reproduces the whole search. Each trial is a run of the trainer
(`train.trainer.train`) in `<out_dir>/trials/<k>/` with the config's own steps and probes; its
scores are saved to `<out_dir>/trials/<k>.json` when it ends. A rerun skips the trials that have
that file, and a trial killed midway resumes from its last checkpoint (the trainer's own
resume). The recommendation is the trial with the best `metric` (default: the mean of the
final `probe/` scores); `mix.json`, `mix.md` and `mix.png` hold every trial.
"""

from __future__ import annotations

import copy
import json
import os

import numpy as np

from strongaudio_jax.curate import records
from strongaudio_jax.data import schema, tfrecord


def split_by_domain(files: list[str], out_dir: str, progress: bool = True) -> dict[str, str]:
    """{domain: shard path}: the records of `files`, copied byte for byte, one shard per domain
    (written once; a rerun reuses them)."""
    done = os.path.join(out_dir, "corpora.json")
    if os.path.exists(done):
        with open(done) as f:
            return json.load(f)
    os.makedirs(out_dir, exist_ok=True)
    writers, damage = {}, records.Damage()
    try:
        for path in files:
            for _, data in records.shard_records(path, damage):
                try:
                    dom = records.domain(schema.example_to_clip(data))
                except Exception as e:  # noqa: BLE001 - a damaged record is counted, not fatal
                    damage.add(f"{path}: {e}")
                    continue
                if dom not in writers:
                    writers[dom] = tfrecord.TFRecordWriter(os.path.join(out_dir, f"{dom}.tfrecord"))
                writers[dom].write(data)
    finally:
        for w in writers.values():
            w.close()
    out = {d: os.path.join(out_dir, f"{d}.tfrecord") for d in sorted(writers)}
    with open(done, "w") as f:
        json.dump(out, f, indent=1)
    return out


def candidates(names: list[str], trials: int, seed: int) -> list[dict[str, float]]:
    """Trial 0: equal weights; then seeded Dirichlet(1) draws, rounded to 3 decimals."""
    rng = np.random.default_rng(seed)
    out = [{n: round(1 / len(names), 3) for n in names}]
    while len(out) < trials:
        w = np.maximum(rng.dirichlet(np.ones(len(names))), 0.01)  # every corpus kept a little
        w /= w.sum()
        out.append({n: round(float(x), 3) for n, x in zip(names, w)})
    return out


def metric_of(scores: dict, metric: str) -> float:
    if metric == "mean":  # of the probe scores (of every score when there is no probe)
        probes = {k: v for k, v in scores.items() if k.startswith("probe/")} or scores
        vals = [float(v) for v in probes.values() if isinstance(v, (int, float))]
        if not vals:
            raise records.CurateError("the trial's run reported no probe scores: give the config "
                                      "probe.tasks (or evals) for the search to score")
        return float(np.mean(vals))
    if metric not in scores:
        raise records.CurateError(f"--metric {metric!r} is not among the run's scores "
                                  f"{sorted(scores)}; use one of them or 'mean'")
    return float(scores[metric])


def search(cfg, out_dir: str, trials: int, seed: int, metric: str = "mean",
           progress: bool = True) -> dict:
    """Runs (or resumes) the search; writes mix.json, mix.md and mix.png; returns the result."""
    from strongaudio_jax.train import trainer

    corpora = {k: v["files"] for k, v in dict(cfg.data.get("mix") or {}).items()}
    if not corpora:
        corpora = split_by_domain(records.expand(cfg.data.train_files),
                                  os.path.join(out_dir, "corpora"), progress)
    names = sorted(corpora)
    if len(names) < 2:
        raise records.CurateError(f"mixture search needs at least two corpora, found {names}: set "
                                  "data.mix, or give data.train_files clips of several domains")
    rows = []
    for k, weights in enumerate(candidates(names, trials, seed)):
        done = os.path.join(out_dir, "trials", f"{k}.json")
        if not os.path.exists(done):
            run_cfg = copy.deepcopy(cfg)
            with run_cfg.unlocked():
                run_cfg.data.mix = {n: {"files": corpora[n], "weight": w} for n, w in weights.items()}
            result = trainer.train(run_cfg, os.path.join(out_dir, "trials", str(k)))
            row = {"trial": k, "weights": weights,
                   "scores": {s: float(v) for s, v in result["scores"].items()
                              if isinstance(v, (int, float, np.floating))}}
            tmp = done + ".tmp"
            with open(tmp, "w") as f:
                json.dump(row, f, indent=1)
            os.replace(tmp, done)
        with open(done) as f:
            row = json.load(f)
        row["metric"] = metric_of(row["scores"], metric)
        rows.append(row)
    best = max(rows, key=lambda r: r["metric"])
    out = {"corpora": corpora, "trials": rows, "seed": seed, "metric": metric,
           "recommended": best["weights"], "recommended_trial": best["trial"]}
    with open(os.path.join(out_dir, "mix.json"), "w") as f:
        json.dump(out, f, indent=1)
    keys = sorted({s for r in rows for s in r["scores"]})
    lines = ["# Mixture search", "",
             f"{len(rows)} trials (seed {seed}), scored by {metric}; recommended weights (trial "
             f"{best['trial']}): " + ", ".join(f"{n} {w}" for n, w in best["weights"].items()), "",
             "| trial | " + " | ".join(names) + f" | {metric} | " + " | ".join(keys) + " |",
             "|---" * (len(names) + len(keys) + 2) + "|"]
    for r in rows:
        lines.append(f"| {r['trial']} | " + " | ".join(f"{r['weights'][n]:.3f}" for n in names)
                     + f" | {r['metric']:.4f} | "
                     + " | ".join(f"{r['scores'].get(s, float('nan')):.4f}" for s in keys) + " |")
    with open(os.path.join(out_dir, "mix.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    _plot(rows, names, metric, os.path.join(out_dir, "mix.png"))
    return out


def _plot(rows, names, metric, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(5, len(rows) * 0.8), 6), sharex=True)
    x = np.arange(len(rows))
    top.bar(x, [r["metric"] for r in rows], color="tab:blue")
    top.set_ylabel(metric)
    lo = np.zeros(len(rows))
    for n in names:
        w = np.array([r["weights"][n] for r in rows])
        bottom.bar(x, w, bottom=lo, label=n)
        lo += w
    bottom.set_ylabel("mixture weight")
    bottom.set_xticks(x, [str(r["trial"]) for r in rows])
    bottom.set_xlabel("trial")
    bottom.legend(fontsize="small", ncol=len(names))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
