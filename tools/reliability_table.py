"""Runs every fault case of docs/reliability.md and writes that page from what happened.

    python tools/reliability_table.py [--out docs/reliability.md] [--only NAME ...]

Each case trains the smoke config (configs/mtc.py:smoke, a 0.13M-parameter ViT) on a tiny
synthetic corpus in a scratch directory, through the `strongaudio train` command line as a
user runs it, and injects one fault: a signal, a kill during an asynchronous save, a NaN loss,
each class of bad data (with data.skip_bad off and on) or a bad config. The table records what
the user sees (exit status and the last line printed) and what is kept in the work dir
(committed checkpoints, half-written ones, bad-data counts in metrics.jsonl). Nothing in the
page is written by hand. 35 minutes with --jobs 2 on 2 CPU cores shared with other work
(2026-12-04); most of it is starting Python and JAX and compiling the step, once per run.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from strongaudio_jax.data import audio, example_proto, schema, tfrecord  # noqa: E402

SR = 16000


# ---------------------------------------------------------------- corpora
def _clip(kind: str, i: int, rng, seconds: float = 0.5) -> schema.Clip:
    n = int(SR * seconds)
    t = np.arange(n) / SR
    wave = (0.3 * np.sin(2 * np.pi * rng.uniform(300, 1200) * t) if kind == "tone"
            else 0.1 * rng.standard_normal(n))
    return schema.Clip(id=f"{kind}-{i:03d}", audio=audio.encode(wave, SR), format="flac",
                       sample_rate=SR, num_samples=n, caption=f"A {kind}.", summary=kind,
                       tags=[kind, "sound"], source="synthetic")


def write_corpus(root: pathlib.Path) -> None:
    """train.tfrecord (32 clips), heldout.tfrecord (8 clips)."""
    rng = np.random.default_rng(0)
    for name, n in (("train", 16), ("heldout", 4)):
        with tfrecord.TFRecordWriter(str(root / f"{name}.tfrecord")) as w:
            for i in range(n):
                for kind in ("tone", "noise"):
                    w.write(schema.clip_to_example(_clip(kind, i, rng)))


def _wav(rate: int, wave=None, subtype="PCM_16") -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    wave = 0.1 * np.sin(np.arange(rate // 2) / 5.0) if wave is None else wave
    sf.write(buf, wave, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def _record(audio_bytes=None, rate=SR, fmt="flac", cid="bad") -> bytes:
    rng = np.random.default_rng(1)
    clip = _clip("tone", 0, rng)
    return schema.clip_to_example(dataclasses.replace(
        clip, id=cid, audio=clip.audio if audio_bytes is None else audio_bytes,
        sample_rate=rate, format=fmt, num_samples=-1))


def bad_shard(path: pathlib.Path, kind: str) -> str:
    """Ten records, the third one bad in the way `kind` says (3 steps of batch 4 draw them
    all)."""
    nan = np.zeros(SR // 2, np.float32)
    nan[100] = np.nan
    f = example_proto
    bad = {
        "not a tf.train.Example": b"\x0a\xff\xff not a protobuf",
        "missing audio field": f.encode_example({"id": f.bytes_feature([b"bad"]),
                                                 "audio/format": f.bytes_feature([b"flac"]),
                                                 "audio/sample_rate": f.int64_feature([SR])}),
        "undecodable audio": _record(b"this is not a flac file"),
        "zero-length audio": _record(_wav(SR, np.zeros(0, np.float32)), fmt="wav"),
        "NaN audio": _record(_wav(SR, nan, "FLOAT"), fmt="wav"),
        "record at 8 kHz": _record(audio.encode(np.zeros(4000), 8000), rate=8000),
        "WAV header 8 kHz, record 16 kHz": _record(_wav(8000), rate=SR, fmt="wav"),
    }.get(kind, _record(cid="victim"))
    rng = np.random.default_rng(2)
    with tfrecord.TFRecordWriter(str(path)) as w:
        for i in range(10):
            w.write(bad if i == 2 else schema.clip_to_example(_clip("tone", i, rng)))
    data = bytearray(path.read_bytes())
    rows = tfrecord.index_records(str(path))
    if kind == "data CRC mismatch":
        data[int(rows[2][0]) + 40] ^= 0xFF
    elif kind == "damaged record header":
        data[int(rows[2][0]) - 12 + 9] ^= 0xFF
    elif kind == "truncated shard":
        data = data[:int(rows[9][0]) + 100]
    elif kind == "0-byte shard":
        data = b""
    path.write_bytes(bytes(data))
    return str(path)


BAD_DATA = ["data CRC mismatch", "damaged record header", "truncated shard", "0-byte shard",
            "not a tf.train.Example", "missing audio field", "undecodable audio",
            "zero-length audio", "NaN audio", "record at 8 kHz",
            "WAV header 8 kHz, record 16 kHz"]


# ---------------------------------------------------------------- running the CLI
def train_args(corpus: pathlib.Path, workdir: pathlib.Path, *extra: str) -> list[str]:
    return ["train", "--config", str(REPO / "configs/mtc.py:smoke"), "--workdir", str(workdir),
            f"data.train_files={corpus}/train.tfrecord",
            f"data.eval_files={corpus}/heldout.tfrecord", "data.batch_size=8",
            "data.clip_seconds=0.5", "data.vocab_min_count=1", "train.steps=16",
            "train.log_every=1", "train.checkpoint_every=4", "probe.tasks=()", *extra]


def env() -> dict:
    return dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO),
                XLA_FLAGS="--xla_force_host_platform_device_count=2")


def popen(args: list[str], log: pathlib.Path, **kw) -> subprocess.Popen:
    with open(log, "w") as f:
        return subprocess.Popen([sys.executable, "-m", "strongaudio_jax.cli", *args],
                                env=env(), stdout=f, stderr=subprocess.STDOUT, **kw)


def run(args: list[str], log: pathlib.Path) -> int:
    proc = popen(args, log)
    return proc.wait(timeout=600)


def wait_for_step(workdir: pathlib.Path, proc: subprocess.Popen, step: int) -> bool:
    metrics = workdir / "metrics.jsonl"
    while proc.poll() is None:
        if metrics.exists() and any(json.loads(line).get("step", 0) >= step
                                    for line in metrics.read_text().splitlines()):
            return True
        time.sleep(0.01)
    return False


# ---------------------------------------------------------------- what is seen and kept
@dataclasses.dataclass
class Row:
    fault: str
    how: str
    rc: int | None
    seen: str
    kept: str


def last_line(log: pathlib.Path) -> str:
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    if any(line.startswith("Traceback") for line in lines):
        return "a Python traceback: " + (lines[-1] if lines else "")
    return lines[-1] if lines else "(nothing)"


def kept(workdir: pathlib.Path) -> str:
    ckpt = workdir / "checkpoints"
    names = sorted(os.listdir(ckpt)) if ckpt.is_dir() else []
    done = sorted(int(n) for n in names if n.isdigit())
    partial = [n for n in names if "tmp" in n]
    parts = [f"checkpoints {done}" if done else "no checkpoint"]
    if partial:
        parts.append(f"half-written: {partial}")
    metrics = workdir / "metrics.jsonl"
    if metrics.exists():
        rows = [json.loads(line) for line in metrics.read_text().splitlines()]
        steps = [r for r in rows if "loss" in r]
        if steps and (steps[-1].get("skipped_records") or steps[-1].get("resampled_records")):
            parts.append(f"skipped_records {steps[-1]['skipped_records']}, resampled_records "
                         f"{steps[-1].get('resampled_records', 0)} (metrics.jsonl)")
    return "; ".join(parts)


SCRATCH = ""  # the scratch dir, left out of the page's paths


def short(text: str, n: int = 260) -> str:
    text = text.replace(SCRATCH + "/", "").replace("|", "\\|").replace("[strongaudio] ", "")
    return text if len(text) <= n else text[:n - 1] + "…"


# ---------------------------------------------------------------- the cases
def signal_case(name, corpus, scratch, signum, group: bool, workers: int) -> Row:
    workdir, log = scratch / name, scratch / f"{name}.log"
    proc = popen(train_args(corpus, workdir, f"data.workers={workers}"), log,
                 start_new_session=True)
    wait_for_step(workdir, proc, 6)
    (os.killpg if group else os.kill)(proc.pid, signum)
    rc = proc.wait(timeout=300)
    seen = last_line(log)
    if rc == 0:
        resume_log = scratch / f"{name}-resume.log"
        rrc = run(train_args(corpus, workdir, f"data.workers={workers}"), resume_log)
        resumed = [line for line in resume_log.read_text().splitlines() if "resumed from" in line]
        seen += f" — rerun: exit {rrc}, {resumed[0].removeprefix('[strongaudio] ') if resumed else 'no resume'}"
    how = (f"{signal.Signals(signum).name} to the {'process group' if group else 'training process'}"
           f" at step 6, data.workers={workers}; then the same command again")
    return Row(name, how, rc, seen, kept(workdir))


def kill_during_save(corpus, scratch) -> Row:
    name = "SIGKILL during an asynchronous save"
    workdir, log = scratch / "killsave", scratch / "killsave.log"
    proc = popen(train_args(corpus, workdir, "train.checkpoint_every=1", "train.steps=400"), log)
    ckpt, seen_partial = workdir / "checkpoints", None
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        names = os.listdir(ckpt) if ckpt.is_dir() else []
        if [n for n in names if "tmp" in n] and len([n for n in names if n.isdigit()]) >= 2:
            proc.send_signal(signal.SIGKILL)
            seen_partial = [n for n in names if "tmp" in n][0]
            break
        time.sleep(0.0005)
    rc = proc.wait(timeout=60)
    before = kept(workdir)
    rlog = scratch / "killsave-resume.log"
    rrc = run(train_args(corpus, workdir, "train.checkpoint_every=1",
                         f"train.steps={_latest(ckpt) + 2}"), rlog)
    resumed = [line for line in rlog.read_text().splitlines() if "resumed from" in line]
    seen = (f"killed while {seen_partial} was being written" if seen_partial else
            "no save was seen in flight (the kill came at another moment)")
    seen += (f" — rerun: exit {rrc}, "
             f"{resumed[0].removeprefix('[strongaudio] ') if resumed else 'no resume'}")
    return Row(name, "SIGKILL while a checkpoint directory is still *.orbax-checkpoint-tmp; "
               "then the same command again", rc, seen,
               f"before the rerun: {before}; after: {kept(workdir)}")


def _latest(ckpt: pathlib.Path) -> int:
    return max([int(n) for n in os.listdir(ckpt) if n.isdigit()] or [0])


def nan_case(corpus, scratch) -> Row:
    workdir, log = scratch / "nan", scratch / "nan.log"
    rc = run(train_args(corpus, workdir, "optimizer.lr=1e30", "train.checkpoint_every=1"), log)
    return Row("NaN loss", "optimizer.lr=1e30, a checkpoint every step", rc, last_line(log),
               kept(workdir))


def data_error_mid_run(corpus, scratch) -> Row:
    """A bad record met after some steps, with a save in flight."""
    data = scratch / "late"
    data.mkdir(exist_ok=True)
    shutil.copy(corpus / "train.tfrecord", data / "a.tfrecord")
    bad_shard(data / "b.tfrecord", "undecodable audio")
    workdir, log = scratch / "late-run", scratch / "late.log"
    args = [a if not a.startswith("data.train_files=") else f"data.train_files={data}/*.tfrecord"
            for a in train_args(corpus, workdir, "train.checkpoint_every=1", "data.workers=2",
                                "train.steps=40")]
    rc = run(args, log)
    return Row("bad record met mid-run", "undecodable audio in a second shard, data.workers=2, "
               "a checkpoint every step", rc, last_line(log), kept(workdir))


def bad_data_case(kind, corpus, scratch, skip: bool) -> Row:
    tag = "skip" if skip else "strict"
    data = scratch / f"bad-{BAD_DATA.index(kind)}-{tag}"
    data.mkdir()
    shard = bad_shard(data / "train.tfrecord", kind)
    workdir, log = data / "run", data / "log"
    args = [a if not a.startswith("data.train_files=") else f"data.train_files={shard}"
            for a in train_args(corpus, workdir, "train.steps=3", "data.batch_size=4",
                                f"data.skip_bad={skip}")]
    if kind == "0-byte shard":  # alone it holds nothing to train on: beside a good one
        args = [a if not a.startswith("data.train_files=") else
                f"data.train_files=['{shard}', '{corpus}/train.tfrecord']" for a in args]
    rc = run(args, log)
    seen = last_line(log)
    if skip:
        skipped = [line.removeprefix("[strongaudio] ") for line in log.read_text().splitlines()
                   if "data.skip_bad" in line or "records skipped" in line]
        seen = skipped[0] if skipped else seen
    how = {"truncated shard": "the last of 10 records cut off (the only training shard)",
           "0-byte shard": "an empty shard beside a good one"}.get(
        kind, "record 2 of 10 in the only training shard")
    return Row(f"{kind} ({'data.skip_bad=True' if skip else 'strict'})",
               how + ", 3 steps of batch 4", rc, seen, kept(workdir))


def config_cases(corpus, scratch) -> list[Row]:
    notjson = scratch / "label_3.json"
    notjson.write_text("tone\nnoise\n")
    cases = [
        ("unknown config key", ["train.stepz=3"]),
        ("wrong value type", ["data.batch_size=eight"]),
        ("no file matches data.train_files", [f"data.train_files={scratch}/nothing-*.tfrecord"]),
        ("data.vocab_file missing", [f"data.vocab_file={scratch}/missing.json"]),
        ("data.vocab_file not JSON", [f"data.vocab_file={notjson}"]),
        ("no tag seen data.vocab_min_count times", ["data.vocab_min_count=1000"]),
        ("batch not divisible by the devices", ["data.batch_size=7"]),
    ]
    rows = []
    for i, (name, extra) in enumerate(cases):
        workdir, log = scratch / f"cfg-{i}", scratch / f"cfg-{i}.log"
        args = train_args(corpus, workdir, "train.steps=2")
        keys = {e.split("=")[0] for e in extra}
        args = [a for a in args if a.split("=")[0] not in keys] + extra
        rc = run(args, log)
        rows.append(Row(name, " ".join(extra), rc, last_line(log), kept(workdir)))
    return rows


# ---------------------------------------------------------------- the page
HEADER = """# Reliability: what each fault does

Generated by `python tools/reliability_table.py` ({when}, {machine}); do not edit by hand,
rerun it. Paths are relative to the script's scratch directory. Every row is one run of `strongaudio train` on the smoke config
(`configs/mtc.py:smoke`) over a tiny synthetic corpus, with one fault injected. "Exit" is the
command's exit status (0: done or stopped cleanly and resumable; 2: a handled error, one line
on stderr; 1 or a signal number: a crash); "What the user sees" is the last line printed (or
the line that reports skipped data); "What is kept" lists the committed checkpoints in the
work dir, any half-written one, and the bad-data counts of `metrics.jsonl`.

The rules behind the rows: a stop signal (to the training process or its whole process group,
with or without decoding workers) finishes the step, saves it and exits 0, and the same command
resumes exactly (tests/test_preemption*.py); every error exit first waits for the checkpoint
being written, so the step it names is committed; bad data is an error naming file, record and
reason, or with `data.skip_bad=True` is skipped and counted by reason (skipped_records in
metrics.jsonl; damage found while indexing a shard counts one record per damaged stretch, and
the records after a damaged header are found again); audio at another rate than the config's is
bad data unless `data.resample=True` (then counted as resampled_records).

| Fault | How it was made | Exit | What the user sees | What is kept |
|---|---|---|---|---|
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "reliability.md"))
    parser.add_argument("--only", nargs="*", help="substrings of fault names to run (the page "
                        "then holds only those rows)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    args = parser.parse_args(argv)
    global SCRATCH
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="strongaudio_reliability_"))
    SCRATCH = str(scratch)
    corpus = scratch / "corpus"
    corpus.mkdir()
    write_corpus(corpus)
    cases = [
        ("SIGTERM to the training process",
         lambda: signal_case("SIGTERM to the training process", corpus, scratch,
                             signal.SIGTERM, False, 0)),
        ("SIGTERM to the process group",
         lambda: signal_case("SIGTERM to the process group", corpus, scratch,
                             signal.SIGTERM, True, 2)),
        ("Ctrl-C",
         lambda: signal_case("Ctrl-C (SIGINT to the process group)", corpus, scratch,
                             signal.SIGINT, True, 2)),
        ("SIGKILL during an asynchronous save", lambda: kill_during_save(corpus, scratch)),
        ("NaN loss", lambda: nan_case(corpus, scratch)),
        ("bad record met mid-run", lambda: data_error_mid_run(corpus, scratch)),
        *[(f"{kind} ({mode})", (lambda k=kind, s=skip: bad_data_case(k, corpus, scratch, s)))
          for kind in BAD_DATA for skip, mode in ((False, "strict"), (True, "skip"))],
        ("config", lambda: config_cases(corpus, scratch)),
    ]
    t0 = time.time()

    def one(named):
        name, case = named
        print(f"[{time.time() - t0:5.0f} s] {name}", flush=True)
        out = case()
        return out if isinstance(out, list) else [out]

    from concurrent.futures import ThreadPoolExecutor
    chosen = [c for c in cases if not args.only or any(o in c[0] for o in args.only)]
    with ThreadPoolExecutor(args.jobs) as pool:  # the runs are processes: threads suffice
        rows: list[Row] = [r for out in pool.map(one, chosen) for r in out]
    import platform
    text = HEADER.format(when=time.strftime("%Y-%m-%d", time.gmtime()),
                         machine=f"{os.cpu_count()} CPU cores, {platform.machine()}, "
                                 f"{time.time() - t0:.0f} s")
    text += "".join(f"| {short(r.fault, 80)} | {short(r.how, 160)} | "
                    f"{'-' if r.rc is None else r.rc} | {short(r.seen)} | {short(r.kept, 200)} |\n"
                    for r in rows)
    pathlib.Path(args.out).write_text(text)
    print(f"{len(rows)} rows -> {args.out}")
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
