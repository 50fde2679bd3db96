"""`strongaudio eval`: HEAR modules x downstream tasks x protocols -> report.md, results.json, PNGs.

For every model and task: each clip is embedded whole (padded / trimmed to the task's
sample_duration; the HEAR module chunks long audio itself) with the module's timestamp
embeddings; their mean over time is the clip's mean-pooled embedding, and the frames feed
the attention probe. Each protocol (eval/protocols.py) is fit on the task's training split,
selected on its validation split and scored on its test split (k-fold tasks: the mean over
folds).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from typing import Sequence

import numpy as np

from strongaudio_jax.eval import events as events_lib, hear_api, protocols, tasks as tasks_lib


class ReportError(ValueError):
    """Something the report cannot do as asked (a missing plotting library...)."""


def _clip_audio(example: tasks_lib.Example, rate: int, samples: int | None) -> np.ndarray:
    from strongaudio_jax.data import audio

    wave, sr = example.read()
    if sr != rate:
        wave = audio.resample(wave, sr, rate)
    if samples is not None:
        wave = np.pad(wave[:samples], (0, max(samples - len(wave), 0)))
    return wave.astype(np.float32)


def _embed(model: hear_api.HearModel, task: tasks_lib.Task, examples, batch_size: int,
           desc: str):
    """(frame embeddings [T, D], timestamps ms [T]) of each clip, in order."""
    from tqdm.auto import tqdm

    rate = model.sample_rate
    samples = None if task.sample_duration is None else int(round(task.sample_duration * rate))
    bs = batch_size if samples is not None else 1  # whole clips of differing lengths
    for start in tqdm(range(0, len(examples), bs), desc=desc, unit="batch", leave=False,
                      disable=None):
        batch = np.stack([_clip_audio(e, rate, samples) for e in examples[start:start + bs]])
        emb, ts = model.timestamp_embeddings(batch)
        yield from zip(emb, ts)


def embed_split(model: hear_api.HearModel, task: tasks_lib.Task, examples, batch_size: int,
                tokens: bool, desc: str) -> protocols.Split:
    """Mean-pooled embeddings (and, when `tokens`, the padded frame embeddings + mask)."""
    frames = [emb for emb, _ in _embed(model, task, examples, batch_size, desc)]
    split = protocols.Split(np.stack([f.mean(0) for f in frames]), task.targets(examples))
    if tokens:
        t = max(f.shape[0] for f in frames)
        split.tokens = np.zeros((len(frames), t, frames[0].shape[1]), np.float32)
        split.mask = np.zeros((len(frames), t), bool)
        for i, f in enumerate(frames):
            split.tokens[i, :len(f)], split.mask[i, :len(f)] = f, True
    return split


def embed_events(model: hear_api.HearModel, task: tasks_lib.Task, examples, batch_size: int,
                 desc: str) -> events_lib.EventSplit:
    """Every frame of every clip with the classes active at its timestamp."""
    index = {c: k for k, c in enumerate(task.vocabulary)}
    xs, ys, clips, times, refs = [], [], [], [], []
    for i, (e, (emb, ts)) in enumerate(zip(examples, _embed(model, task, examples, batch_size,
                                                           desc))):
        evs = [(index[label], start, end) for label, start, end in e.events]
        xs.append(emb), times.append(np.asarray(ts, np.float64)), clips.append(np.full(len(ts), i))
        ys.append(events_lib.frame_targets(times[-1], evs, len(task.vocabulary)))
        refs += [(i, k, start, end) for k, start, end in evs]
    return events_lib.EventSplit(np.concatenate(xs), np.concatenate(ys), np.concatenate(clips),
                                 np.concatenate(times), refs)


def evaluate_event_task(model, task, names, batch_size):
    """Frame-level `linear` / `mlp` probes scored by onset F-measure (eval/events.py)."""
    embedded = {s: embed_events(model, task, ex, batch_size, f"{model.name} {task.name} {s}")
                for s, ex in task.splits.items()}
    out = {}
    for name in [n for n in names if n in events_lib.EVENT_PROTOCOLS]:
        tests, valids, chosen = [], [], []
        for train_names, valid_name, test_name in task.folds:
            train = embedded[train_names[0]] if len(train_names) == 1 else _concat_events(
                [embedded[s] for s in train_names])
            o = events_lib.event_probe(name, train, embedded[valid_name], embedded[test_name],
                                       len(task.vocabulary))
            tests.append(o.test), valids.append(o.valid), chosen.append(o.chosen)
        out[name] = {"test": float(np.mean(tests)), "valid": float(np.mean(valids)),
                     "folds": tests, "chosen": chosen}
    return out


def _concat_events(splits):
    offset, refs, clips = 0, [], []
    for s in splits:
        clips.append(s.clip + offset)
        refs += [(c + offset, *rest) for c, *rest in s.events]
        offset += int(s.clip.max()) + 1 if len(s.clip) else 0
    return events_lib.EventSplit(np.concatenate([s.x for s in splits]),
                                 np.concatenate([s.y for s in splits]), np.concatenate(clips),
                                 np.concatenate([s.time for s in splits]), refs)


def evaluate_task(model: hear_api.HearModel, task: tasks_lib.Task, names: Sequence[str],
                  batch_size: int = 16) -> tuple[dict, dict]:
    """{protocol: {"test", "valid", "folds", "chosen"}} and what the plots need (the last
    fold's test split and each protocol's test scores)."""
    need_tokens = "attention" in names
    embedded = {s: embed_split(model, task, ex, batch_size, need_tokens,
                               f"{model.name} {task.name} {s}")
                for s, ex in task.splits.items()}
    out, plot = {}, {}
    for name in names:
        tests, valids, chosen = [], [], []
        for train_names, valid_name, test_name in task.folds:
            train = _concat([embedded[s] for s in train_names])
            o = protocols.PROBES[name](train, embedded[valid_name], embedded[test_name],
                                       len(task.vocabulary), task.multilabel)
            tests.append(o.test), valids.append(o.valid), chosen.append(o.chosen)
            plot[name] = o.scores
        out[name] = {"test": float(np.mean(tests)), "valid": float(np.mean(valids)),
                     "folds": tests, "chosen": chosen}
    plot["test"] = embedded[task.folds[-1][2]]
    return out, plot


def _concat(splits: Sequence[protocols.Split]) -> protocols.Split:
    if len(splits) == 1:
        return splits[0]
    cat = lambda xs: None if xs[0] is None else np.concatenate(xs)
    tokens = None
    if splits[0].tokens is not None:  # pad frames to the longest split
        t = max(s.tokens.shape[1] for s in splits)
        pad = lambda a: np.pad(a, [(0, 0), (0, t - a.shape[1])] + [(0, 0)] * (a.ndim - 2))
        tokens = np.concatenate([pad(s.tokens) for s in splits])
        mask = np.concatenate([pad(s.mask) for s in splits])
    split = protocols.Split(cat([s.x for s in splits]), cat([s.y for s in splits]))
    if tokens is not None:
        split.tokens, split.mask = tokens, mask
    return split


# ----------------------------------------------------------------------------- outputs


def _table(results: dict) -> list[str]:
    models = results["models"]
    lines = ["| task | metric | protocol | " + " | ".join(models) + " |",
             "|---|---|---|" + "---:|" * len(models)]
    for task, info in results["tasks"].items():
        for proto in results["protocols"]:
            cells = []
            for m in models:
                r = results["scores"][m].get(task, {}).get(proto)
                cells.append("—" if r is None else f"{r['test']:.3f}")
            lines.append(f"| {task} | {info['metric']} | {proto} | " + " | ".join(cells) + " |")
    return lines


def write_markdown(results: dict, plots: list[str], path: str) -> None:
    lines = ["# Evaluation report", "",
             f"{results['date']}, {results['machine']}. Models: "
             + ", ".join(f"`{m}`" for m in results["models"]) + ". Protocols: "
             + ", ".join(results["protocols"]) + " (fit on each task's training split, "
             "hyper-parameters chosen on its validation split, scored on its test split; "
             "k-fold tasks: mean over folds).", "", *_table(results), "", "## Tasks", ""]
    for task, info in results["tasks"].items():
        clips = ", ".join(f"{s} {n}" for s, n in info["clips"].items())
        kind = ("events (frame probes, onset F-measure, 200 ms collar)" if info["mode"] == "event"
                else "multi-label (mAP)" if info["multilabel"] else "multi-class (accuracy)")
        base = ("predicting no event scores 0" if info["mode"] == "event"
                else f"majority-class baseline {info['chance']:.3f}")
        lines.append(f"- **{task}**: {info['num_classes']} classes, {kind}, "
                     f"{len(info['folds'])} fold(s); clips: {clips}; {base}.")
    if plots:
        lines += ["", "## Plots", ""] + [f"![{os.path.splitext(p)[0]}]({p})" for p in plots]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def _chance(task: tasks_lib.Task, test: protocols.Split) -> float:
    """Accuracy of always answering the most frequent training class; for multi-label, the
    mAP of a constant score (each class's positive rate)."""
    train_y = task.targets([e for s in task.folds[-1][0] for e in task.splits[s]])
    if task.multilabel:
        return protocols.mean_average_precision(test.y, np.tile(train_y.mean(0), (len(test), 1)))
    return float((test.y == np.bincount(train_y).argmax()).mean())


def write_plots(results: dict, plot_data: dict, plot_task: str | None, out: str) -> list[str]:
    """scores.png, pooling.png, embedding_<task>.png, confusion_<task>.png (file names)."""
    try:
        import matplotlib
    except ImportError as e:
        raise ReportError("the plots need matplotlib: pip install 'strongaudio_jax[eval]', or "
                          "pass --no-plots") from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models, task_names = results["models"], list(results["tasks"])
    written = []

    # per-task bars: one panel per task, protocols on x, one bar per model
    fig, axes = plt.subplots(1, len(task_names), figsize=(3.2 * len(task_names) + 1, 3.6),
                             squeeze=False)
    width = 0.8 / len(models)
    for ax, task in zip(axes[0], task_names):
        protos = results["protocols"]
        for i, m in enumerate(models):
            vals = [results["scores"][m][task].get(p, {}).get("test", np.nan) for p in protos]
            ax.bar(np.arange(len(protos)) + i * width, vals, width, label=m)
        ax.axhline(results["tasks"][task]["chance"], color="k", ls=":", lw=1)
        ax.set_xticks(np.arange(len(protos)) + width * (len(models) - 1) / 2, protos)
        ax.set_title(f"{task} ({results['tasks'][task]['metric']})", fontsize=10)
        ax.set_ylim(0, 1)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=min(len(models), 4))
    fig.suptitle("Test score per task and protocol (dotted: majority-class baseline)",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(os.path.join(out, "scores.png"), dpi=110)
    plt.close(fig)
    written.append("scores.png")

    if {"linear", "attention"} <= set(results["protocols"]):
        fig, ax = plt.subplots(figsize=(1.2 * len(task_names) * len(models) + 5, 3.6))
        x = np.arange(len(task_names))
        width = 0.8 / (2 * len(models))
        for i, m in enumerate(models):
            for j, p in enumerate(("linear", "attention")):
                vals = [results["scores"][m][t].get(p, {}).get("test", np.nan)
                        for t in task_names]
                ax.bar(x + (2 * i + j) * width, vals, width,
                       label=f"{m}: {'mean' if p == 'linear' else 'attention'} pooling",
                       hatch="//" if j else None, color=f"C{i}", alpha=0.6 if j else 1.0)
        ax.set_xticks(x + width * (2 * len(models) - 1) / 2, task_names)
        ax.set_ylim(0, 1)
        ax.set_ylabel("test score")
        ax.set_title("Mean pooling + linear vs attention pooling", fontsize=10)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
        fig.tight_layout()
        fig.savefig(os.path.join(out, "pooling.png"), dpi=110)
        plt.close(fig)
        written.append("pooling.png")

    task = plot_task or next((t for t in plot_data if not results["tasks"][t]["multilabel"]),
                             next(iter(plot_data), None))
    if task in plot_data:
        data, vocab = plot_data[task]["plot"], plot_data[task]["vocabulary"]
        test = data["test"]
        from sklearn.decomposition import PCA

        xy = PCA(n_components=2).fit_transform(test.x) if len(test) > 2 else test.x[:, :2]
        cls = test.y.argmax(1) if test.y.ndim == 2 else test.y
        fig, ax = plt.subplots(figsize=(5.5, 4.5))
        for c in np.unique(cls):
            ax.scatter(xy[cls == c, 0], xy[cls == c, 1], s=12, label=vocab[c])
        ax.set_title(f"{task}: test clips of {results['models'][0]}, PCA of the mean-pooled "
                     "embeddings", fontsize=9)
        if len(np.unique(cls)) <= 12:
            ax.legend(fontsize=7, markerscale=1.5)
        fig.tight_layout()
        name = f"embedding_{task}.png"
        fig.savefig(os.path.join(out, name), dpi=110)
        plt.close(fig)
        written.append(name)

        proto = next((p for p in ("linear", "mlp", "knn", "attention") if p in data), None)
        if proto and test.y.ndim == 1:
            from sklearn.metrics import ConfusionMatrixDisplay, confusion_matrix

            k = len(vocab)
            cm = confusion_matrix(test.y, data[proto].argmax(1), labels=np.arange(k))
            fig, ax = plt.subplots(figsize=(min(3.5 + 0.45 * k, 16), min(3.2 + 0.45 * k, 15)))
            ConfusionMatrixDisplay(cm, display_labels=vocab).plot(
                ax=ax, colorbar=False, xticks_rotation=45, include_values=k <= 20)
            ax.set_title(f"{task}: {proto} probe on {results['models'][0]} (test)", fontsize=9)
            fig.tight_layout()
            name = f"confusion_{task}.png"
            fig.savefig(os.path.join(out, name), dpi=110)
            plt.close(fig)
            written.append(name)
    return written


def run(model_specs: Sequence[str], task_specs: Sequence[str], out: str,
        protocol_names: Sequence[str] = protocols.PROTOCOLS, plot_task: str | None = None,
        batch_size: int = 16, plots: bool = True) -> dict:
    """Evaluates every model on every task; writes results.json, report.md and the plots."""
    unknown = set(protocol_names) - set(protocols.PROBES)
    if unknown:
        raise ReportError(f"unknown protocol(s) {sorted(unknown)}: choose from "
                         f"{list(protocols.PROBES)}")
    os.makedirs(out, exist_ok=True)
    models = [hear_api.load(m) for m in model_specs]
    results = {"models": [m.name for m in models], "protocols": list(protocol_names),
               "tasks": {}, "scores": {m.name: {} for m in models},
               "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores"}
    plot_data = {}
    for spec in task_specs:
        task = tasks_lib.load(spec, models[0].sample_rate)
        for i, model in enumerate(models):
            if task.mode == "event":
                scores, plot = evaluate_event_task(model, task, protocol_names, batch_size), None
            else:
                scores, plot = evaluate_task(model, task, protocol_names, batch_size)
            results["scores"][model.name][task.name] = scores
            if i == 0:
                if plot is not None:
                    plot_data[task.name] = {"plot": plot, "vocabulary": task.vocabulary}
                results["tasks"][task.name] = {
                    "spec": spec, "mode": task.mode, "metric": task.metric,
                    "multilabel": task.multilabel,
                    "num_classes": len(task.vocabulary), "folds": task.folds,
                    "clips": {s: len(e) for s, e in task.splits.items()},
                    "chance": 0.0 if plot is None else _chance(task, plot["test"])}
            print(f"[eval] {model.name} on {task.name}: " + ", ".join(
                f"{p} {r['test']:.3f}" for p, r in scores.items()), flush=True)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    names = write_plots(results, plot_data, plot_task, out) if plots else []
    write_markdown(results, names, os.path.join(out, "report.md"))
    return results
