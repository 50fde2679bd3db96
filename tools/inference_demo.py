"""The inference jobs end to end on the bundled demo corpus (docs/inference.md has the results).

  1. train a small captioner (configs/captioning.py:demo) and an MTC tagger (configs/mtc.py:demo)
     on the training shards;
  2. strip captions, summaries and tags from the held-out shards;
  3. `caption` them, then `tag` the captioned shards (audio -> tags), and score both against
     the original labels: caption BLEU-4 / CIDEr-D (against the original summary, which the
     captioner was trained on) and tag mAP (the tagger's probabilities over its vocabulary);
  4. train MTC again on the held-out shards, once with their original tags and once with the
     re-labelled ones (same vocabulary, steps and seed), and evaluate both on the training
     shards' original tags (tag mAP of the head), to see how the re-labelled corpus trains.

    python tools/inference_demo.py --out /tmp/strongaudio_inference_demo [--steps 800]

Finished stages are kept on a rerun (each job resumes; a training run with its checkpoint is
not repeated). Prints one JSON object with every number and writes it to <out>/results.json.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def _train(spec: str, workdir: str, overrides: list[str]) -> dict:
    from strongaudio_jax import config
    from strongaudio_jax.train import trainer

    done = os.path.join(workdir, "scores.json")
    if os.path.exists(done):
        with open(done) as f:
            return json.load(f)
    t0 = time.perf_counter()
    out = trainer.train(config.load(os.path.join(REPO, spec), overrides), workdir)
    if "stopped_at" in out:  # SIGTERM: saved, to be resumed by running this again
        raise SystemExit(f"{workdir}: stopped at step {out['stopped_at']}; run again to resume")
    scores = {k: float(v) for k, v in out.get("scores", {}).items()}
    scores["train_seconds"] = round(time.perf_counter() - t0, 1)
    scores["final_loss"] = out["history"][-1]["loss"] if out["history"] else None
    with open(done, "w") as f:
        json.dump(scores, f, indent=1)
    return scores


def _strip(src: list[str], out_dir: str) -> list[str]:
    from strongaudio_jax.data import index, schema, tfrecord

    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for path in src:
        dst = os.path.join(out_dir, os.path.basename(path))
        if not os.path.exists(dst):
            with tfrecord.TFRecordWriter(dst + ".tmp") as w:
                for rec in tfrecord.read_records(path):
                    c = schema.example_to_clip(rec)
                    c.caption = c.summary = c.caption_model = c.tags_model = ""
                    c.tags, c.tag_scores = (), ()
                    w.write(schema.clip_to_example(c))
            os.replace(dst + ".tmp", dst)
            index.write_sidecar(dst)
        paths.append(dst)
    return paths


def _clips(pattern: str) -> dict:
    from strongaudio_jax.data import schema, tfrecord

    return {c.id: c for p in sorted(glob.glob(pattern)) if not p.endswith(".idx")
            for c in map(schema.example_to_clip, tfrecord.read_records(p))}


def _job(kind: str, overrides: list[str]) -> dict:
    from strongaudio_jax import config
    from strongaudio_jax.infer import jobs

    t0 = time.perf_counter()
    summary = jobs.run(config.load(os.path.join(REPO, f"configs/{kind}.py:demo"), overrides), kind)
    summary["wall_seconds"] = round(time.perf_counter() - t0, 1)
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=800, help="training steps of every run")
    args = ap.parse_args(argv)
    import numpy as np

    from strongaudio_jax import assets
    from strongaudio_jax.eval import captions, metrics

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    steps = f"train.steps={args.steps}"
    res = {"steps": args.steps}

    # 1. A captioner and a tagger trained on the training shards.
    res["train_mtc"] = _train("configs/mtc.py:demo", f"{out}/mtc", [steps, "probe.tasks=()"])
    res["train_captioner"] = _train("configs/captioning.py:demo", f"{out}/cap",
                                    [steps, "probe.tasks=()"])

    # 2. Held-out shards without captions or tags.
    heldout = sorted(glob.glob(assets.demo_corpus("heldout-*.tfrecord")))
    _strip(heldout, f"{out}/stripped")
    original = _clips(assets.demo_corpus("heldout-*.tfrecord"))

    # 3. Caption, then tag the captioned shards; score against the original labels.
    res["caption_job"] = _job("caption", [f"model.path={out}/cap",
                                          f"input.files={out}/stripped/*.tfrecord",
                                          f"output.dir={out}/captioned"])
    res["tag_job"] = _job("tag", [f"model.path={out}/mtc", f"input.files={out}/captioned/*.tfrecord",
                                  f"output.dir={out}/relabelled"])
    # Every tag's probability (top_k=0, any probability) for the mAP.
    res["score_job"] = _job("tag", [f"model.path={out}/mtc", "tag.top_k=0", "tag.threshold=1e-9",
                                    f"input.files={out}/stripped/*.tfrecord",
                                    f"output.dir={out}/scored"])
    captioned = _clips(f"{out}/captioned/*.tfrecord")
    ids = sorted(original)
    res["caption_metrics"] = {k: v for k, v in captions.caption_metrics(
        [captioned[i].caption for i in ids], [[original[i].summary] for i in ids],
        spice=False).items() if k != "skipped"}
    res["caption_examples"] = [{"id": i, "original": original[i].summary,
                                "generated": captioned[i].caption} for i in ids[:5]]
    with open(f"{out}/mtc/vocab.json") as f:
        vocab = [v for _, v in sorted(json.load(f).items(), key=lambda kv: int(kv[0]))]
    col = {t: j for j, t in enumerate(vocab)}
    scored = _clips(f"{out}/scored/*.tfrecord")
    scores = np.zeros((len(ids), len(vocab)), np.float32)
    truth = np.zeros_like(scores)
    for r, i in enumerate(ids):
        for t, s in zip(scored[i].tags, scored[i].tag_scores):
            scores[r, col[t]] = s
        for t in original[i].tags:
            if t in col:
                truth[r, col[t]] = 1
    res["tag_mAP_heldout"] = metrics.mean_average_precision(scores, truth)
    relabelled = _clips(f"{out}/relabelled/*.tfrecord")
    hits = sum(len(set(relabelled[i].tags) & set(original[i].tags)) for i in ids)
    res["relabelled_tags"] = {
        "per_clip": round(float(np.mean([len(relabelled[i].tags) for i in ids])), 2),
        "original_per_clip": round(float(np.mean([len(original[i].tags) for i in ids])), 2),
        "precision": round(hits / max(1, sum(len(relabelled[i].tags) for i in ids)), 4),
        "recall": round(hits / max(1, sum(len(original[i].tags) for i in ids)), 4)}

    # 4. MTC trained on the held-out shards: original vs re-labelled tags, same vocabulary.
    common = [steps, f"data.vocab_file={out}/mtc/vocab.json", "probe.tasks=()",
              f"data.eval_files={assets.demo_corpus('train-*.tfrecord')}"]
    res["retrain_original"] = _train("configs/mtc.py:demo", f"{out}/retrain_original", [
        f"data.train_files={assets.demo_corpus('heldout-*.tfrecord')}", *common])
    res["retrain_relabelled"] = _train("configs/mtc.py:demo", f"{out}/retrain_relabelled", [
        f"data.train_files={out}/relabelled/*.tfrecord", *common])
    with open(f"{out}/results.json", "w") as f:
        json.dump(res, f, indent=1, default=float)
    print(json.dumps(res, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
