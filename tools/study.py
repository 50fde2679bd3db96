r"""The study, small: one encoder trained with each objective, compared with frozen probes.

Trains the same encoder (configs/<objective>.py:demo: ViT xs on 2 s crops, batch 32) with
MTC, PAR, contrastive, captioning, multi-task and masked objectives for the same number of
steps on one corpus, then scores every frozen encoder the same way:
  * probes on the held-out recordings, mean pooling + linear softmax and attention
    pooling, for each `label/<task>`, and the tag mAP of the MTC head: the trainer's own
    evaluators (eval/evaluators.py, embedding on the mesh), not copies of them;
  * audio-text retrieval R@1 / R@10 / mAP@10 (eval/protocols.py) of the caption summaries
    (both directions) on the first
    --retrieval-clips held-out clips, for the objectives that read text: contrastive by
    cosine similarity, captioning and multi-task by the decoder's log p(summary | audio).
The table goes into --out between the study-table markers (the rest of the file is kept).

  python tools/make_demo_corpus.py --out /work/corpus_large --num-clips 3000 --shard-size 128
  python tools/study.py --corpus /work/corpus_large --steps 500 --workdir /tmp/study --out docs/study.md

`--configs configs/reference` runs the same comparison with the reference study's training
settings at demo scale (configs/reference/<objective>.py:demo: ScaledAdam + Eden, MTC with
dropout and summed BCE, captioning of the long caption; objectives mtc, captioning, multitask)
into its own table (`--table reference`).

A work dir that holds finished runs is reused (a run resumes from its checkpoint), so an
interrupted study continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from strongaudio_jax import config  # noqa: E402
from strongaudio_jax.data import pipeline, text_fields  # noqa: E402
from strongaudio_jax.eval import evaluators, protocols  # noqa: E402
from strongaudio_jax.models.base import EncoderOutput  # noqa: E402
from strongaudio_jax.parallel import mesh as mesh_lib  # noqa: E402
from strongaudio_jax.train import log as log_lib, step as step_lib, trainer  # noqa: E402

OBJECTIVES = ("mtc", "par", "contrastive", "captioning", "multitask", "masked")
TASKS = ("domain", "language", "instrument", "event")
BEGIN, END = "<!-- study table: written by tools/study.py -->", "<!-- end of study table -->"


def train(name: str, corpus: str, steps: int, workdir: str, extra: list[str],
          configs: str = "configs"):
    cfg = config.load(f"{REPO}/{configs}/{name}.py:demo", [
        f"data.train_files={corpus}/train-*.tfrecord", f"data.eval_files={corpus}/heldout-*.tfrecord",
        f"train.steps={steps}", f"train.checkpoint_every={steps}", f"train.log_every={max(steps // 10, 1)}",
        f"optimizer.warmup_steps={min(50, steps // 10)}", "probe.tasks=()", *extra])
    t0 = time.perf_counter()
    out = trainer.train(cfg, os.path.join(workdir, name))
    return cfg, out, time.perf_counter() - t0


def evaluate(cfg, out, retrieval_clips: int, workdir: str) -> dict:
    """The run's frozen encoder through the trainer's evaluators (eval/evaluators.py: probes
    with mean and attention pooling, the tag head's mAP), embedded on the run's mesh; retrieval
    for the objectives that read text."""
    vocab = out["vocab"]
    program = step_lib.build(cfg, len(vocab), vocab)
    params = out["state"].params
    heads = {o.name: o for o in program.objectives}
    featurizer = pipeline.featurizer_from_config(
        cfg, vocab, train=True,
        extra=text_fields.from_config(cfg, ("text",)) if text_fields.tokenizer_from_config(cfg)
        else None)
    mesh = mesh_lib.make_mesh(cfg.mesh)
    logger = log_lib.Logger(workdir)  # the probe table and scores go to the run's own logs
    ctx = evaluators.Context(cfg, program, featurizer, mesh,
                             pipeline.expand_paths(cfg.data.train_files), logger)
    shared = dict(clip_seconds=cfg.probe.clip_seconds, batch_size=cfg.probe.batch_size)
    evals = {"probe": dict(type="probe", tasks=TASKS, pooling=("mean", "attention"),
                           l2=cfg.probe.l2, steps=cfg.probe.steps, attention_steps=300,
                           **shared)}
    if "mtc" in heads:
        evals["tags"] = dict(type="tagging", **shared)
    with cfg.unlocked():
        cfg.evals = evals
    scores = {}
    built = evaluators.from_config(ctx)
    for ev in built:
        scores.update(ev.run(params, int(out["state"].step)))
    logger.close()
    results = built[0].results
    result = {"probe": {f"{r.task}/{r.pooling}": r.accuracy for r in results},
              "chance": {r.task: r.chance for r in results if r.pooling == "mean"}}
    if "tags/mAP" in scores:
        result["tag_map"] = scores["tags/mAP"]
        result["tag_map_by_domain"] = {k.removeprefix("tags/mAP_"): v for k, v in scores.items()
                                       if k.startswith("tags/mAP_")}

    if "contrastive" not in heads and "captioning" not in heads:
        return result
    tokens = evaluators.on_mesh(lambda p, b: (*program.tokens(p, b), b["text_ids"], b["text_mask"]),
                                mesh, program.rules)
    (ev_tokens, ev_mask, text_ids, text_mask), _ = evaluators.embed(
        pipeline.expand_paths(cfg.data.eval_files),
        evaluators.eval_featurizer(featurizer, cfg.probe.clip_seconds, cfg.data.sample_rate),
        tokens, params["encoder"], cfg.probe.batch_size, mesh, program.rules, retrieval_clips)
    m = len(ev_tokens)
    enc_of = lambda idx: EncoderOutput(jnp.asarray(ev_tokens[idx]), jnp.asarray(ev_mask[idx]),
                                       (ev_tokens.shape[1], 1))
    if "contrastive" in heads:
        head = heads["contrastive"].module
        p = {"params": params["heads"]["contrastive"]}
        za = head.apply(p, enc_of(slice(0, m)), method="embed_audio")
        zt = head.apply(p, jnp.asarray(text_ids), jnp.asarray(text_mask), method="embed_text")
        sim = np.asarray(za @ zt.T)
    else:
        head, p = heads["captioning"].module, {"params": params["heads"]["captioning"]}
        ids, tmask = jnp.asarray(text_ids), jnp.asarray(text_mask)

        @jax.jit
        def row(tokens, mask):  # log p(every summary | one clip)
            enc = EncoderOutput(jnp.broadcast_to(tokens, (m, *tokens.shape)),
                                jnp.broadcast_to(mask, (m, *mask.shape)), (tokens.shape[0], 1))
            return head.apply(p, enc, ids, tmask, method="log_likelihood")

        sim = np.stack([np.asarray(row(jnp.asarray(ev_tokens[i]), jnp.asarray(ev_mask[i])))
                        for i in range(m)])
    ranked = protocols.retrieval_from_similarity(sim)
    result["retrieval"] = {"clips": m, "a2t": ranked["audio_to_text"],
                           "t2a": ranked["text_to_audio"]}
    return result


def table(rows: dict, steps: int, corpus: str, seconds: dict, configs: str = "configs",
          markers: tuple[str, str] = (BEGIN, END), text_field: str = "summary") -> str:
    f = lambda x: "—" if x is None else f"{x:.3f}"
    head = ["objective", "train s", "final loss"] + [f"{t} mean / att" for t in TASKS] + [
        "A→T R@1 / R@10 / mAP@10", "T→A R@1 / R@10 / mAP@10", "tag mAP"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows.items():
        cells = [name, f"{seconds[name]:.0f}", f"{r['final_loss']:.3f}"]
        for t in TASKS:
            cells.append(f"{f(r['probe'].get(f'{t}/mean'))} / {f(r['probe'].get(f'{t}/attention'))}")
        ret = r.get("retrieval")
        for d in ("a2t", "t2a"):
            cells.append(" / ".join(f"{ret[d][k]:.3f}" for k in ("R@1", "R@10", "mAP@10"))
                         if ret else "—")
        cells.append(f(r.get("tag_map")))
        lines.append("| " + " | ".join(cells) + " |")
    any_row = next(iter(rows.values()))
    chance = ", ".join(f"{t} {any_row['chance'][t]:.3f}" for t in TASKS if t in any_row["chance"])
    ret_clips = next((r["retrieval"]["clips"] for r in rows.values() if r.get("retrieval")), 0)
    by_domain = "; ".join(f"{n}: " + ", ".join(f"{d} {v:.3f}" for d, v in r["tag_map_by_domain"].items())
                          for n, r in rows.items() if r.get("tag_map_by_domain"))
    return "\n".join([
        markers[0],
        f"Configs `{configs}/<objective>.py:demo`. "
        f"Corpus `{corpus}`, {steps} steps per objective, ViT xs on 2 s crops, batch 32; probes on "
        f"3 s held-out clips. Machine: {platform.machine()}, {os.cpu_count()} CPU cores, "
        f"{jax.devices()[0].platform}; measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "", *lines, "",
        f"Chance (majority class of the held-out clips): {chance}. Retrieval: the {text_field} of the "
        f"first {ret_clips} held-out clips (captioning and multi-task rank by log p(text | audio)). "
        f"Tag mAP per domain — {by_domain}.",
        markers[1]])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True, help="folder with train-*.tfrecord and heldout-*.tfrecord")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--out", default=os.path.join(REPO, "docs", "study.md"))
    ap.add_argument("--objectives", default=",".join(OBJECTIVES))
    ap.add_argument("--retrieval-clips", type=int, default=200)
    ap.add_argument("--configs", default="configs",
                    help="folder of the <objective>.py configs (their demo variants), e.g. configs/reference")
    ap.add_argument("--table", default="", help="name of the table in --out (its own markers), "
                    "e.g. reference; empty: the main table")
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every run")
    args = ap.parse_args(argv)
    os.makedirs(args.workdir, exist_ok=True)
    begin, end = BEGIN, END
    if args.table:
        begin = BEGIN.replace("study table", f"study table {args.table}")
        end = END.replace("study table", f"study table {args.table}")
    rows, seconds = {}, {}
    for name in args.objectives.split(","):
        cfg, out, secs = train(name, args.corpus, args.steps, args.workdir, args.overrides,
                               args.configs)
        done = os.path.join(args.workdir, name, "study.json")
        if out["history"]:  # trained now
            seconds[name] = secs
            final = float(np.mean([h["loss"] for h in out["history"][-3:]]))
        elif os.path.exists(done):  # already trained and evaluated: reuse its record
            with open(done) as fh:
                old = json.load(fh)
            seconds[name], final = old["train_seconds"], old["final_loss"]
        else:
            seconds[name], final = float("nan"), float("nan")
        t0 = time.perf_counter()
        rows[name] = {**evaluate(cfg, out, args.retrieval_clips, os.path.join(args.workdir, name)),
                      "final_loss": final}
        rows[name]["eval_seconds"] = time.perf_counter() - t0
        with open(done, "w") as fh:
            json.dump({**rows[name], "train_seconds": seconds[name]}, fh, indent=1, default=float)
        print(f"[study] {name}: trained {seconds[name]:.0f} s, evaluated "
              f"{rows[name]['eval_seconds']:.0f} s: {json.dumps(rows[name], default=float)}", flush=True)
        md = table(rows, args.steps, args.corpus, seconds, args.configs, (begin, end),
                   cfg.text.get("field", "caption"))
        text = open(args.out).read() if os.path.exists(args.out) else "# The study, small\n\n"
        if begin in text and end in text:
            text = text[:text.index(begin)] + md + text[text.index(end) + len(end):]
        else:
            text = text.rstrip("\n") + "\n\n" + md + "\n"
        with open(args.out, "w") as fh:
            fh.write(text)
    print(f"[study] table written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
