"""`strongaudio curate ...`: measure and improve a corpus (docs/curation.md).

  coverage     per-domain UTS tag coverage, long tail, entropy; two corpora side by side
  plant        altered copies (re-encoded, gain-changed, time-shifted) of some clips: the
               labelled check for `dedup`
  dedup        near-duplicates within a corpus and leakage against evaluation sets (faiss over
               embeddings of an exported encoder); a report and a removal list
  consistency  caption-audio agreement from a contrastive export and / or a captioner's
               log p(caption | audio) (--signal); keep the best clips (side index or new
               shards); --swap-fraction measures the filter on swapped captions
  mix          mixture-weight search: short proxy trainings of a config over data.mix (or the
               domains of data.train_files), scored by probes; recommends weights
"""

from __future__ import annotations

import argparse


from strongaudio_jax.curate.records import CurateError  # noqa: F401 (cli._user_errors)


def add_parser(sub) -> None:
    """Registers `curate` and its subcommands on the top-level `strongaudio` parser."""
    p = sub.add_parser("curate", help="data curation: UTS coverage, near-duplicates and "
                       "leakage, caption-audio consistency, mixture search", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    cur = p.add_subparsers(dest="curate_command", required=True)

    q = cur.add_parser("coverage", help="per-domain UTS tag coverage, long tail and entropy of "
                       "one or more corpora (tables + PNG plots)")
    q.add_argument("--corpus", action="append", required=True, metavar="NAME=PATTERN",
                   help="a corpus: its shards as a glob (local or gs://), optionally named; "
                        "repeat for a side-by-side (the first two are compared)")
    q.add_argument("--out-dir", required=True, help="where coverage.md, coverage.json and the "
                   "PNGs go")
    q.add_argument("--tail", type=int, default=5, help="long tail: tags on fewer than this "
                   "many clips (default 5)")
    q.add_argument("--vocab", help="a UTS vocabulary (label_K.json) to measure coverage of")
    q.add_argument("--top", type=int, default=15, help="top tags listed per domain")
    q.add_argument("--no-plots", action="store_true", help="tables only (no matplotlib)")
    q.set_defaults(curate_func=cmd_coverage)

    q = cur.add_parser("plant", help="altered copies of some clips (re-encoded, gain-changed, "
                       "time-shifted) with labels: the check that sets dedup's threshold")
    q.add_argument("--from", dest="src", nargs="+", required=True,
                   help="shards whose clips are copied (globs), e.g. the held-out split")
    q.add_argument("--out-dir", required=True, help="where planted.tfrecord and planted.json go")
    q.add_argument("--num", type=int, default=20, help="clips to copy (each three ways)")
    q.add_argument("--seed", type=int, default=0)
    q.set_defaults(curate_func=cmd_plant)

    q = cur.add_parser("dedup", help="near-duplicates within a corpus and leaks into "
                       "evaluation sets (embeddings + faiss); report and removal list")
    q.add_argument("--model", required=True, help="export directory (strongaudio export)")
    q.add_argument("--corpus", nargs="+", required=True, help="training shards (globs)")
    q.add_argument("--against", nargs="*", default=[], help="evaluation shards (globs) to "
                   "check for leakage")
    q.add_argument("--out-dir", required=True, help="report, pairs.jsonl, remove.txt and the "
                   "embedding cache (a rerun resumes from it)")
    how = q.add_mutually_exclusive_group(required=True)
    how.add_argument("--threshold", type=float, help="score at or above which two clips match "
                     "(alignment score, or cosine with --no-verify)")
    how.add_argument("--labels", help="planted.json from `curate plant`: choose the threshold "
                     "from those copies (their shard must be in --corpus)")
    q.add_argument("--k", type=int, default=5, help="neighbours searched per clip")
    q.add_argument("--index", choices=("auto", "flat", "hnsw"), default="auto",
                   help="faiss index: exact (flat), HNSW, or flat below 50k clips (auto)")
    q.add_argument("--batch-size", type=int, default=16, help="encoder windows per batch")
    q.add_argument("--no-verify", action="store_true", help="score pairs by embedding cosine "
                   "only, without the spectrogram alignment check of each candidate pair")
    q.set_defaults(curate_func=cmd_dedup)

    q = cur.add_parser("consistency", help="caption-audio consistency scores from a "
                       "contrastive and / or a captioning export; filter to a side index or "
                       "new shards")
    q.add_argument("--model", required=True, help="export directory of a contrastive run (with "
                   "--signal logp: of a captioning run)")
    q.add_argument("--signal", choices=("contrastive", "logp", "both"), default="contrastive",
                   help="contrastive: audio-caption cosine; logp: the captioner's "
                   "length-normalised log p(caption | audio); both: the mean of their ranks")
    q.add_argument("--captioner", help="export directory of a captioning run, for --signal "
                   "logp / both (default: --model, e.g. a run with both objectives)")
    q.add_argument("--corpus", nargs="+", required=True, help="shards (globs)")
    q.add_argument("--out-dir", required=True, help="consistency.md/json, scores.jsonl, "
                   "kept.json and the audio-embedding cache (a rerun resumes from it)")
    which = q.add_mutually_exclusive_group()
    which.add_argument("--keep-fraction", type=float, help="keep this top fraction (default 0.9)")
    which.add_argument("--threshold", type=float, help="keep clips scoring at least this")
    q.add_argument("--write-shards", metavar="DIR", help="also write the kept clips as shards")
    q.add_argument("--swap-fraction", type=float, default=0.0, help="labelled check: swap the "
                   "captions of this fraction of clips first and report precision/recall")
    q.add_argument("--seed", type=int, default=0, help="of --swap-fraction")
    q.add_argument("--batch-size", type=int, default=16, help="encoder windows per batch")
    q.set_defaults(curate_func=cmd_consistency)

    q = cur.add_parser("mix", help="mixture-weight search by short proxy trainings scored "
                       "by probes (table, JSON and a PNG)")
    q.add_argument("--config", required=True, help="a training config, e.g. configs/mtc.py:smoke")
    q.add_argument("--out-dir", required=True, help="trials, mix.md/json/png (a rerun resumes)")
    q.add_argument("--trials", type=int, default=6, help="trial 0 equal weights, then seeded "
                   "Dirichlet draws")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--metric", default="mean", help="a score name (e.g. probe/domain_accuracy), or "
                   "'mean' of the probe/ scores")
    q.add_argument("overrides", nargs="*", help="key=value config overrides (e.g. train.steps=50)")
    q.set_defaults(curate_func=cmd_mix)

    p.set_defaults(func=run)


def run(args) -> int:
    return args.curate_func(args)


def cmd_coverage(args) -> int:
    from strongaudio_jax.curate import coverage, records
    from strongaudio_jax.uts import vocab as vocab_lib

    if args.tail < 1:
        raise CurateError(f"--tail {args.tail}: give a number of clips >= 1")
    named = [coverage.parse_corpus(c) for c in args.corpus]
    names = [n for n, _ in named]
    if len(set(names)) != len(names):
        raise CurateError(f"corpus names {names} repeat; name them: --corpus A=PATTERN "
                          "--corpus B=PATTERN")
    vocab = vocab_lib.read_vocabulary(args.vocab) if args.vocab else None
    counted = [coverage.count(name, records.expand(pattern), vocab) for name, pattern in named]
    result = coverage.report(counted, args.out_dir, args.tail, vocab, args.vocab or "",
                             args.top, plots=not args.no_plots)
    for name, c in result["corpora"].items():
        a = c["domains"][coverage.ALL]
        print(f"{name}: {a['clips']} clips, {a['distinct_tags']} distinct tags, long-tail share "
              f"{a['long_tail_share']:.3f}, entropy {a['entropy_bits']:.2f} bits"
              + (f", {c['damaged_records']} damaged record(s) skipped" if c["damaged_records"] else ""))
    print(f"report: {args.out_dir}/coverage.md")
    return 0


def cmd_plant(args) -> int:
    from strongaudio_jax.curate import dedup, records

    if args.num < 1:
        raise CurateError(f"--num {args.num}: give a number of clips >= 1")
    r = dedup.plant(records.expand(args.src), args.out_dir, args.num, args.seed)
    print(f"{len(r['copies'])} copies of {args.num} clips -> {args.out_dir}/planted.tfrecord, "
          f"labels in {args.out_dir}/planted.json")
    return 0


def cmd_dedup(args) -> int:
    import json
    import os

    from strongaudio_jax import hub
    from strongaudio_jax.curate import dedup, embed, records

    labels = None
    if args.labels:
        with open(args.labels) as f:
            labels = json.load(f)
    files = records.expand(args.corpus)
    ref_files = records.expand(args.against) if args.against else []
    embedder = embed.Embedder(hub.load_model(args.model), args.batch_size)
    cache = os.path.join(args.out_dir, "embeddings")
    emb = embed.embed_corpus(embedder, files, cache, "dedup: corpus")
    ref = embed.embed_corpus(embedder, ref_files, cache, "dedup: evaluation") if ref_files else None
    dedup.centre(emb, ref)
    within = dedup.within_pairs(emb, args.k, args.index)
    against = dedup.against_pairs(emb, ref, args.k, args.index) if ref is not None else []
    score = None
    if not args.no_verify:  # candidates from the embeddings, scored by spectrogram alignment
        from strongaudio_jax.curate import verify

        need = ({emb.ids[i] for i, _, _ in within + against} | {emb.ids[j] for _, j, _ in within}
                | {ref.ids[j] for _, j, _ in against})
        if labels is not None:
            need |= {c[k] for c in labels["copies"] for k in ("id", "original")}
        specs = verify.spectra(files + ref_files, need)
        within = verify.rescore(within, emb.ids, emb.ids, specs)
        against = verify.rescore(against, emb.ids, ref.ids, specs) if ref is not None else []
        score = lambda a, b: verify.align_score(specs[a], specs[b])  # noqa: E731
    calibration = None
    threshold = args.threshold
    if labels is not None:
        calibration = dedup.calibrate(emb, ref, labels, within, against, score)
        threshold = calibration["threshold"]
    s = dedup.report(emb, ref, within, against, threshold, args.out_dir, calibration, labels)
    print(f"threshold {threshold:.4f}: {s['duplicate_pairs']} duplicate pair(s), "
          f"{s['leak_pairs']} leak(s)"
          + (f", planted copies found {s['planted_found']}/{s['planted_total']}" if labels else "")
          + f"; {s['remove']} clip(s) in {args.out_dir}/remove.txt; report {args.out_dir}/dedup.md")
    return 0


def cmd_consistency(args) -> int:
    from strongaudio_jax.curate import consistency, records

    if args.keep_fraction is not None and not 0 < args.keep_fraction <= 1:
        raise CurateError(f"--keep-fraction {args.keep_fraction}: give a fraction in (0, 1]")
    if not 0 <= args.swap_fraction < 1:
        raise CurateError(f"--swap-fraction {args.swap_fraction}: give a fraction in [0, 1)")
    r = consistency.run(args.model, records.expand(args.corpus), args.out_dir,
                        args.keep_fraction, args.threshold, args.swap_fraction, args.seed,
                        args.batch_size, args.write_shards, signal=args.signal,
                        captioner=args.captioner)
    print(f"threshold {r['threshold']:.4f}: kept {r['kept']} of {r['clips']} clips "
          f"({args.out_dir}/kept.json)"
          + (f", {r['shards_written']} records written to {args.write_shards}" if args.write_shards else ""))
    if "swap_check" in r:
        s = r["swap_check"]
        print(f"swapped captions: {s['swapped']}; precision {s['precision']:.3f}, recall "
              f"{s['recall']:.3f}, average precision {s['average_precision']:.3f}")
    print(f"report: {args.out_dir}/consistency.md")
    return 0



def cmd_mix(args) -> int:
    from strongaudio_jax import config as config_lib
    from strongaudio_jax.curate import mix

    if args.trials < 1:
        raise CurateError(f"--trials {args.trials}: give a number >= 1")
    r = mix.search(config_lib.load(args.config, args.overrides), args.out_dir, args.trials,
                   args.seed, args.metric)
    best = r["trials"][r["recommended_trial"]]
    print(f"recommended weights (trial {best['trial']}, {args.metric} {best['metric']:.4f}): "
          + ", ".join(f"{n} {w}" for n, w in r["recommended"].items())
          + f"; table {args.out_dir}/mix.md, plot {args.out_dir}/mix.png")
    return 0
