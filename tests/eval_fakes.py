"""Helpers for the eval tests: a small deterministic HEAR module and a HEAR task on disk."""

from __future__ import annotations

import json
import os
import textwrap

import numpy as np
import soundfile as sf

# A HEAR 2021 module: log power spectra of 25 ms frames (10 ms hop) through a fixed random
# projection. Deterministic, numpy only; written to a file so it is imported by name.
TOY_MODULE = textwrap.dedent('''
    import numpy as np

    class Model:
        sample_rate = 16000
        scene_embedding_size = 32
        timestamp_embedding_size = 32

        def __init__(self, seed=0):
            self.projection = np.random.default_rng(seed).standard_normal((201, 32)) / 14.0

    def load_model(model_file_path=""):
        return Model(int(model_file_path) if model_file_path else 0)

    def get_timestamp_embeddings(audio, model):
        audio = np.asarray(audio, np.float32)
        n = 1 + max(audio.shape[1] - 400, 0) // 160
        idx = np.arange(400)[None, :] + 160 * np.arange(n)[:, None]
        frames = np.pad(audio, ((0, 0), (0, 400)))[:, idx] * np.hanning(400)
        logspec = np.log(np.abs(np.fft.rfft(frames, axis=-1)) ** 2 + 1e-6)
        emb = (logspec @ model.projection).astype(np.float32)
        ts = np.tile(10.0 * np.arange(n) + 12.5, (audio.shape[0], 1))
        return emb, ts

    def get_scene_embeddings(audio, model):
        return get_timestamp_embeddings(audio, model)[0].mean(1)
''')


def write_toy_module(folder, name="toy_hear") -> str:
    with open(os.path.join(folder, f"{name}.py"), "w") as f:
        f.write(TOY_MODULE)
    return name


def clip(kind: str, rng, seconds: float = 1.0, sr: int = 16000) -> np.ndarray:
    """low tone, high tone or noise: separable by their spectra."""
    t = np.arange(int(seconds * sr)) / sr
    if kind == "low":
        return 0.3 * np.sin(2 * np.pi * rng.uniform(200, 300) * t) + 0.01 * rng.standard_normal(len(t))
    if kind == "high":
        return 0.3 * np.sin(2 * np.pi * rng.uniform(2000, 3000) * t) + 0.01 * rng.standard_normal(len(t))
    return 0.1 * rng.standard_normal(len(t))


def write_wav(path, wave, sr=16000):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, wave.astype(np.float32), sr, subtype="PCM_16")


def write_hear_task(root, name="toy_scene", per_class=(8, 4, 4), multilabel=False,
                    split_mode="trainvaltest", seed=0) -> str:
    """A HEAR scene task in the exact on-disk format: task_metadata.json,
    labelvocabulary.csv, <split>.json and 16000/<split>/<file>.wav."""
    rng = np.random.default_rng(seed)
    kinds = ["low", "high", "noise"]
    splits = (["train", "valid", "test"] if split_mode == "trainvaltest"
              else [f"fold{i:02d}" for i in range(3)])
    counts = per_class if split_mode == "trainvaltest" else (per_class[1],) * 3
    for split, n in zip(splits, counts):
        labels = {}
        for kind in kinds:
            for i in range(n):
                fname = f"{kind}_{split}_{i}.wav"
                wave = clip(kind, rng, rng.uniform(0.8, 1.2))
                tags = [kind]
                if multilabel and kind != "noise":
                    tags.append("tonal")
                write_wav(os.path.join(root, "16000", split, fname), wave)
                labels[fname] = tags
        with open(os.path.join(root, f"{split}.json"), "w") as f:
            json.dump(labels, f)
    vocab = kinds + (["tonal"] if multilabel else [])
    with open(os.path.join(root, "labelvocabulary.csv"), "w") as f:
        f.write("idx,label\n" + "".join(f"{i},{c}\n" for i, c in enumerate(vocab)))
    meta = {"task_name": name, "version": "toy", "embedding_type": "scene",
            "prediction_type": "multilabel" if multilabel else "multiclass",
            "split_mode": split_mode, "sample_duration": 1.0,
            "evaluation": ["mAP"] if multilabel else ["top1_acc"],
            "mode": "full", "sample_rate": 16000}
    if split_mode != "trainvaltest":
        meta["nfolds"], meta["splits"] = 3, splits
    with open(os.path.join(root, "task_metadata.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return str(root)


def write_hear_event_task(root, name="toy_events", clips=(8, 4, 4), seed=0) -> str:
    """A HEAR event task: 2 s of faint noise with one low and one high tone burst each
    (300-500 ms, random onsets); <split>.json holds {"label", "start", "end"} in ms."""
    rng = np.random.default_rng(seed)
    sr = 16000
    for split, n in zip(("train", "valid", "test"), clips):
        labels = {}
        for i in range(n):
            wave = 0.005 * rng.standard_normal(2 * sr)
            events = []
            for kind, start in (("low", rng.uniform(0.0, 0.5)), ("high", rng.uniform(1.0, 1.4))):
                dur = rng.uniform(0.3, 0.5)
                a, b = int(start * sr), int((start + dur) * sr)
                wave[a:b] += clip(kind, rng, (b - a) / sr)[: b - a]
                events.append({"label": kind, "start": 1000 * start, "end": 1000 * (start + dur)})
            fname = f"{split}_{i}.wav"
            write_wav(os.path.join(root, "16000", split, fname), wave)
            labels[fname] = events
        with open(os.path.join(root, f"{split}.json"), "w") as f:
            json.dump(labels, f)
    with open(os.path.join(root, "labelvocabulary.csv"), "w") as f:
        f.write("idx,label\n0,low\n1,high\n")
    with open(os.path.join(root, "task_metadata.json"), "w") as f:
        json.dump({"task_name": name, "embedding_type": "event", "prediction_type": "multilabel",
                   "split_mode": "trainvaltest", "sample_duration": 2.0,
                   "evaluation": ["event_onset_200ms_fms"]}, f)
    return str(root)
