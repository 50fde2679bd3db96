"""Downstream tasks: clips with labels, split into train / valid / test (or k folds).

A task is named on the command line as `KIND:PATH[:OPTION]`, or as a bare directory
(a HEAR task):

  hear:DIR            a task in the HEAR 2021 directory format (task_metadata.json,
                      labelvocabulary.csv, <split>.json, <rate>/<split>/<file>); scene
                      or event (timestamp) tasks
  demo[:DIR][:LABEL]  the demo corpus's probe labels (label/<LABEL> of its records;
                      default DIR: the bundled corpus, default LABEL: domain)
  fsd50k:DIR          FSD50K.{dev,eval}_audio/, FSD50K.ground_truth/{dev,eval,vocabulary}.csv
  vggsound:DIR        vggsound.csv + clips named <youtube id>_<start>.<ext> anywhere below DIR
  voxceleb2:DIR       {dev,test}/{aac,wav}/<speaker>/<video>/<utterance>.<ext> (speaker ID)
  cremad:DIR          AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav (emotion)
  mtat:DIR            annotations_final.csv (tab-separated) + <dir>/<clip>.mp3 (top-50 tags)
  nsynth:DIR          nsynth-{train,valid,test}/examples.json + audio/<note>.wav (instrument
                      family)

Each loader reads only its metadata; audio is read when the clips are embedded. Where a set
has no validation split, a fixed share of its training split (by a hash of the clip name, so
it never changes between runs) becomes one. Splits that must not share a speaker or a
recording (CREMA-D actors, VoxCeleb2 videos) are made that way.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import hashlib
import json
import os
from typing import Sequence

import numpy as np


class TaskError(ValueError):
    """A task that cannot be read as named (missing file, unknown kind...)."""


@dataclasses.dataclass
class Example:
    """One clip: where its audio is (a file, or encoded bytes) and its labels."""
    key: str
    labels: tuple[str, ...]
    path: str | None = None
    data: bytes | None = None
    events: tuple[tuple[str, float, float], ...] = ()  # event tasks: (label, start, end ms)

    def read(self) -> tuple[np.ndarray, int]:
        from strongaudio_jax.data import audio

        if self.data is not None:
            return audio.decode(self.data, self.key)
        if self.path.lower().endswith((".m4a", ".aac", ".mp4")):
            raise TaskError(f"{self.path}: AAC / MP4 audio cannot be decoded here; convert the "
                            "clips to WAV or FLAC first (e.g. ffmpeg -i in.m4a -ac 1 out.wav)")
        with open(self.path, "rb") as f:
            return audio.decode(f.read(), self.path)


@dataclasses.dataclass
class Task:
    """`folds`: (train split names, valid split name, test split name) per evaluation round;
    the reported score is the mean over rounds. `sample_duration`: seconds every clip is
    padded or trimmed to (None: whole clips, embedded one at a time)."""
    name: str
    multilabel: bool
    vocabulary: list[str]
    splits: dict[str, list[Example]]
    folds: list[tuple[tuple[str, ...], str, str]]
    sample_duration: float | None = None
    mode: str = "scene"

    @property
    def metric(self) -> str:
        if self.mode == "event":
            return "onset F1"
        return "mAP" if self.multilabel else "accuracy"

    def targets(self, examples: Sequence[Example]) -> np.ndarray:
        """[N] class indices (multi-class) or [N, K] 0/1 (multi-label)."""
        index = {c: i for i, c in enumerate(self.vocabulary)}
        if self.multilabel:
            y = np.zeros((len(examples), len(self.vocabulary)), np.float32)
            for n, e in enumerate(examples):
                y[n, [index[c] for c in e.labels]] = 1
            return y
        return np.array([index[e.labels[0]] for e in examples], np.int64)


TRAIN_VALID_TEST = [(("train",), "valid", "test")]
KFOLD_MODES = ("new_split_kfold", "new_split_stratified_kfold", "presplit_kfold")


def _kfold(names: Sequence[str]) -> list[tuple[tuple[str, ...], str, str]]:
    """HEAR's k-fold rounds (hear-eval-kit's data_splits_from_folds): over the sorted
    folds, fold i is the test split, fold i+1 the validation split, the rest train."""
    k = len(names)
    if k < 3:
        raise TaskError(f"k-fold evaluation needs at least 3 folds, got {list(names)}")
    return [(tuple(n for j, n in enumerate(names) if j not in (i, (i + 1) % k)),
             names[(i + 1) % k], names[i]) for i in range(k)]


def _hash_share(key: str) -> float:
    """A fixed number in [0, 1) for a clip name."""
    return int(hashlib.md5(key.encode()).hexdigest()[:8], 16) / 16 ** 8


def _carve_valid(train: list[Example], share: float = 0.1) -> tuple[list, list]:
    valid = [e for e in train if _hash_share(e.key) < share]
    return [e for e in train if _hash_share(e.key) >= share], valid


def _need(path: str, what: str) -> str:
    if not os.path.exists(path):
        raise TaskError(f"{path} not found: {what}")
    return path


def _make(name, multilabel, splits, folds=None, sample_duration=None) -> Task:
    """A task whose vocabulary is every label seen in its splits (sorted)."""
    vocab = sorted({c for ex in splits.values() for e in ex for c in e.labels})
    for split, ex in splits.items():
        if not ex:
            raise TaskError(f"task {name}: split {split!r} has no clips")
    return Task(name, multilabel, vocab, splits, folds or TRAIN_VALID_TEST, sample_duration)


# ----------------------------------------------------------------------------- HEAR


def load_hear(root: str, sample_rate: int | None = None) -> Task:
    """A HEAR 2021 task directory. Audio is read from <root>/<sample_rate>/<split>/ when that
    rate is there, else from the first rate folder present (and resampled)."""
    meta = json.load(open(_need(os.path.join(root, "task_metadata.json"),
                                "a HEAR task directory holds task_metadata.json")))
    name = meta.get("task_name", os.path.basename(os.path.normpath(root)))
    mode = meta.get("embedding_type", "scene")
    if mode not in ("scene", "event"):
        raise TaskError(f"HEAR task {name}: embedding_type {mode!r} is not scene or event")
    ptype = meta.get("prediction_type", "multiclass")
    if ptype not in ("multiclass", "multilabel"):
        raise TaskError(f"HEAR task {name}: prediction_type {ptype!r} is not multiclass or "
                        "multilabel")
    with open(_need(os.path.join(root, "labelvocabulary.csv"), "HEAR tasks list their labels "
                    "in labelvocabulary.csv (idx,label)")) as f:
        vocab = [row["label"] for row in sorted(csv.DictReader(f), key=lambda r: int(r["idx"]))]
    split_mode = meta.get("split_mode", "trainvaltest")
    if split_mode in ("trainvaltest", "stratified_trainvaltest"):
        split_names, folds = ["train", "valid", "test"], TRAIN_VALID_TEST
    elif split_mode in KFOLD_MODES:
        split_names = sorted(meta.get("splits") or
                             [f"fold{i:02d}" for i in range(int(meta["nfolds"]))])
        folds = _kfold(split_names)
    else:
        raise TaskError(f"HEAR task {name}: split_mode {split_mode!r} is not one of "
                        f"trainvaltest, stratified_trainvaltest, {', '.join(KFOLD_MODES)}")
    rates = sorted(d for d in os.listdir(root) if d.isdigit() and os.path.isdir(os.path.join(root, d)))
    if not rates:
        raise TaskError(f"HEAR task {name}: no audio folder such as {root}/16000/")
    rate = str(sample_rate) if str(sample_rate) in rates else rates[0]
    splits = {}
    for split in split_names:
        labels = json.load(open(_need(os.path.join(root, f"{split}.json"),
                                      f"the labels of split {split} of HEAR task {name}")))
        splits[split] = [_hear_example(f, ls, os.path.join(root, rate, split, f), mode)
                         for f, ls in sorted(labels.items())]
    task = Task(name, ptype == "multilabel" or mode == "event", vocab, splits, folds,
                meta.get("sample_duration"), mode)
    unknown = {c for ex in splits.values() for e in ex for c in e.labels} - set(vocab)
    if unknown:
        raise TaskError(f"HEAR task {name}: labels {sorted(unknown)[:5]} are not in "
                        "labelvocabulary.csv")
    return task


def _hear_example(fname: str, labels: list, path: str, mode: str) -> Example:
    """Scene: a list of labels. Event: a list of {"label", "start", "end"} (milliseconds)."""
    if mode == "scene":
        return Example(fname, tuple(labels), path=path)
    events = tuple((e["label"], float(e["start"]), float(e["end"])) for e in labels)
    return Example(fname, tuple(sorted({e[0] for e in events})), path=path, events=events)


# ----------------------------------------------------------------------------- demo corpus


def load_demo(corpus: str | None = None, label: str = "domain") -> Task:
    """label/<label> of the demo corpus: train-*.tfrecord (a fifth of it, by clip id, as
    validation: the corpus is small) and heldout-*.tfrecord as test; clips trimmed / padded
    to 3 s."""
    from strongaudio_jax.data import pipeline

    corpus = corpus or os.path.join(os.path.dirname(os.path.dirname(__file__)), "assets",
                                    "demo_corpus")

    def read(pattern):
        out = []
        # a bad record raises naming shard and record (the pipeline's strict policy)
        for clip in pipeline.clips(pipeline.expand_paths(os.path.join(corpus, pattern))):
            if label in clip.labels:
                out.append(Example(clip.id, (clip.labels[label],), data=clip.audio))
        return out

    train, valid = _carve_valid(read("train-*.tfrecord"), share=0.2)
    test = read("heldout-*.tfrecord")
    if not train and not test:
        raise TaskError(f"demo corpus {corpus}: no clip has label/{label}")
    return _make(f"demo-{label}", False, {"train": train, "valid": valid, "test": test},
                 sample_duration=3.0)


# ----------------------------------------------------------------------------- the six sets


def load_fsd50k(root: str) -> Task:
    """FSD50K as downloaded: 200-class multi-label; dev.csv's split column gives train / val."""
    gt = os.path.join(root, "FSD50K.ground_truth")
    splits = {"train": [], "valid": [], "test": []}
    with open(_need(os.path.join(gt, "dev.csv"), "FSD50K needs FSD50K.ground_truth/")) as f:
        for row in csv.DictReader(f):
            e = Example(row["fname"], tuple(row["labels"].split(",")),
                        path=os.path.join(root, "FSD50K.dev_audio", f"{row['fname']}.wav"))
            splits["valid" if row["split"] == "val" else "train"].append(e)
    with open(_need(os.path.join(gt, "eval.csv"), "FSD50K's eval.csv")) as f:
        splits["test"] = [Example(r["fname"], tuple(r["labels"].split(",")),
                                  path=os.path.join(root, "FSD50K.eval_audio", f"{r['fname']}.wav"))
                          for r in csv.DictReader(f)]
    task = _make("fsd50k", True, splits)
    with open(_need(os.path.join(gt, "vocabulary.csv"), "FSD50K's vocabulary.csv")) as f:
        task.vocabulary = [row[1] for row in csv.reader(f)]
    return task


AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".m4a")


def _audio_files(root: str) -> dict[str, str]:
    """stem -> path of every audio file below root."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            stem, ext = os.path.splitext(f)
            if ext.lower() in AUDIO_EXTENSIONS:
                out[stem] = os.path.join(dirpath, f)
    return out


def load_vggsound(root: str) -> Task:
    """VGGSound: vggsound.csv rows (youtube id, start s, label, train|test); clips named
    <id>_<start zero-padded to 6 digits> (or <id>_<start>) anywhere below root. Rows whose
    clip is missing (deleted videos) are left out and counted in the task name's log."""
    files = _audio_files(root)
    splits = {"train": [], "test": []}
    missing = 0
    with open(_need(os.path.join(root, "vggsound.csv"), "VGGSound needs vggsound.csv")) as f:
        for ytid, start, label, split in csv.reader(f):
            stem = next((s for s in (f"{ytid}_{int(start):06d}", f"{ytid}_{int(start)}")
                         if s in files), None)
            if stem is None:
                missing += 1
                continue
            splits[split.strip()].append(Example(stem, (label.strip(),), path=files[stem]))
    if missing:
        print(f"vggsound: {missing} clips of vggsound.csv not found below {root}; left out")
    train, valid = _carve_valid(splits["train"])
    return _make("vggsound", False, {"train": train, "valid": valid, "test": splits["test"]},
                 sample_duration=10.0)


def load_voxceleb2(root: str) -> Task:
    """Speaker identification over the speakers of VoxCeleb2 with at least three videos:
    per speaker, the last video (sorted by id) is test, the one before valid, the rest train."""
    by_speaker: dict[str, dict[str, list[str]]] = {}
    for part in ("dev", "test"):
        for codec in ("aac", "wav"):
            for path in sorted(glob.glob(os.path.join(root, part, codec, "*", "*", "*"))):
                speaker, video = path.split(os.sep)[-3:-1]
                if path.lower().endswith(AUDIO_EXTENSIONS):
                    by_speaker.setdefault(speaker, {}).setdefault(video, []).append(path)
    if not by_speaker:
        raise TaskError(f"{root}: no VoxCeleb2 audio under {{dev,test}}/{{aac,wav}}/<speaker>/"
                        "<video>/")
    splits = {"train": [], "valid": [], "test": []}
    for speaker, videos in sorted(by_speaker.items()):
        names = sorted(videos)
        if len(names) < 3:
            continue
        for i, video in enumerate(names):
            split = "test" if i == len(names) - 1 else "valid" if i == len(names) - 2 else "train"
            splits[split] += [Example(os.path.relpath(p, root), (speaker,), path=p)
                              for p in videos[video]]
    return _make("voxceleb2", False, splits, sample_duration=8.0)


def load_cremad(root: str) -> Task:
    """CREMA-D emotion (6 classes), speaker-independent: actors sorted by id, the first 70 %
    train, the next 10 % valid, the last 20 % test."""
    paths = sorted(glob.glob(os.path.join(_need(os.path.join(root, "AudioWAV"),
                                                "CREMA-D needs AudioWAV/"), "*.wav")))
    by_actor: dict[str, list[Example]] = {}
    for p in paths:
        parts = os.path.basename(p)[:-4].split("_")
        if len(parts) != 4:
            continue
        by_actor.setdefault(parts[0], []).append(Example(os.path.basename(p), (parts[2],), path=p))
    actors = sorted(by_actor)
    a, b = round(0.7 * len(actors)), round(0.8 * len(actors))
    pick = lambda names: [e for n in names for e in by_actor[n]]
    return _make("cremad", False, {"train": pick(actors[:a]), "valid": pick(actors[a:b]),
                                   "test": pick(actors[b:])}, sample_duration=5.0)


def load_mtat(root: str, top: int = 50) -> Task:
    """MagnaTagATune, the usual top-50 tags and split by folder: 0-b train, c valid, d-f test."""
    with open(_need(os.path.join(root, "annotations_final.csv"),
                    "MagnaTagATune needs annotations_final.csv")) as f:
        rows = list(csv.reader(f, delimiter="\t"))
    header, rows = rows[0], rows[1:]
    tags = header[1:-1]
    counts = np.array([[int(v) for v in r[1:-1]] for r in rows]).sum(0) if rows else []
    keep = [tags[i] for i in np.argsort(-np.asarray(counts), kind="stable")[:top]]
    splits = {"train": [], "valid": [], "test": []}
    for r in rows:
        rel = r[-1]
        labels = tuple(t for t, v in zip(tags, r[1:-1]) if v == "1" and t in keep)
        if not labels:
            continue  # clips without any top-50 tag are the usual exclusion
        folder = rel.split("/")[0]
        split = "valid" if folder == "c" else "test" if folder in "def" else "train"
        splits[split].append(Example(rel, labels, path=os.path.join(root, rel)))
    task = _make("mtat", True, splits, sample_duration=29.0)
    task.vocabulary = sorted(keep)
    return task


def load_nsynth(root: str) -> Task:
    """NSynth instrument family (11 classes) on its own train / valid / test."""
    splits = {}
    for split in ("train", "valid", "test"):
        d = os.path.join(root, f"nsynth-{split}")
        meta = json.load(open(_need(os.path.join(d, "examples.json"),
                                    f"NSynth needs nsynth-{split}/examples.json")))
        splits[split] = [Example(k, (v["instrument_family_str"],),
                                 path=os.path.join(d, "audio", f"{k}.wav"))
                         for k, v in sorted(meta.items())]
    return _make("nsynth", False, splits, sample_duration=4.0)


LOADERS = {"hear": load_hear, "fsd50k": load_fsd50k, "vggsound": load_vggsound,
           "voxceleb2": load_voxceleb2, "cremad": load_cremad, "mtat": load_mtat,
           "nsynth": load_nsynth}


def load(spec: str, sample_rate: int | None = None) -> Task:
    """A task from its command-line name (see the module docstring)."""
    if spec == "demo" or spec.startswith("demo:"):
        parts = spec.split(":")[1:]
        corpus = next((p for p in parts if p and os.path.isdir(p)), None)
        label = next((p for p in parts if p and not os.path.isdir(p)), "domain")
        return load_demo(corpus, label)
    if os.path.isdir(spec):
        return load_hear(spec, sample_rate)
    kind, _, path = spec.partition(":")
    if kind not in LOADERS or not path:
        raise TaskError(f"task {spec!r}: name a HEAR task directory, demo[:DIR][:LABEL] or "
                        f"KIND:DIR with KIND one of {sorted(LOADERS)}")
    if not os.path.isdir(path):
        raise TaskError(f"task {spec!r}: {path} is not a directory")
    return load_hear(path, sample_rate) if kind == "hear" else LOADERS[kind](path)
