"""`strongaudio uts ...`: build a Unified Tag System from captions, step by step.

  tag     captions (TFRecords or JSONL) -> tag file (JSONL, resumable)
  build   tag file(s) or tagged TFRecords -> label_K.json + label_K.stats.json for several K
  filter  TFRecords + label_K.json -> rewritten shards and/or a side index (tagless clips dropped)
  bridge  label_K.json -> AudioSet-527 class -> UTS tag mapping, unmapped classes listed
  report  tag file + vocabularies -> report.md with PNG plots
  check   label_K.json -> duplicates and normalisation collisions
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def add_parser(sub) -> None:
    """Registers `uts` and its subcommands on the top-level `strongaudio` parser."""
    p = sub.add_parser("uts", help="Unified Tag System: tag captions, build/filter vocabularies",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    uts = p.add_subparsers(dest="uts_command", required=True)

    def norm_args(q):
        q.add_argument("--synonyms", nargs="*", default=[], metavar="FILE",
                       help="extra synonym tables ('variant canonical' per line), "
                            "applied after the default")

    q = uts.add_parser("tag", help="extract 5-10 tags per caption")
    q.add_argument("--captions", nargs="+", required=True,
                   help="TFRecord shards (globs) or JSONL files with id and caption")
    q.add_argument("--out", required=True, help="tag file (JSONL); an existing one is resumed")
    q.add_argument("--extractor", choices=("rules", "http", "lm"), default="rules",
                   help="rules: lexicon; http: an OpenAI-compatible server; lm: an LM imported "
                        "with `strongaudio import-hf`, run here in JAX")
    q.add_argument("--lexicon", nargs="*", default=[], metavar="FILE",
                   help="(rules) extra lexicon files")
    q.add_argument("--url", help="(http) base URL of an OpenAI-compatible API, "
                                 "e.g. http://host:8000/v1")
    q.add_argument("--model", help="(http) model name the server expects; (lm) the "
                                   "import-hf output directory")
    q.add_argument("--batch-size", type=int, default=32, help="(lm) captions per batch")
    q.add_argument("--max-new-tokens", type=int, default=None,
                   help="(lm) reply length limit (default 128; 512 with --reference)")
    q.add_argument("--tensor-parallel", type=int, default=1,
                   help="(lm) split the model over this many devices (the rest: data parallel)")
    q.add_argument("--concurrency", type=int, default=8, help="(http) requests in flight")
    q.add_argument("--rate", type=float, default=0.0,
                   help="(http) max requests per second (0: no limit)")
    q.add_argument("--timeout", type=float, default=60.0, help="(http) seconds per request")
    q.add_argument("--max-retries", type=int, default=5, help="(http) retries per caption")
    q.add_argument("--skip-bad", action="store_true",
                   help="skip corrupt records of the shards and count them (default: stop, "
                        "naming the record)")
    q.add_argument("--evaluate", action="store_true",
                   help="also print precision/recall against the tags already in the records")
    q.add_argument("--reference", action="store_true",
                   help="(lm) the reference study's method (uts/reference.py): its prompt as "
                        "plain text, temperature 0.3, top-p 0.9, the reply's 'labels' kept "
                        "as written, no normalisation")
    q.add_argument("--seed", type=int, default=0,
                   help="(--reference) seed of the per-clip sampling keys")
    norm_args(q)
    q.set_defaults(uts_func=cmd_tag)

    q = uts.add_parser("build", help="score tags and write nested top-K vocabularies")
    q.add_argument("--tags", nargs="+", required=True,
                   help="tag files from `uts tag` (JSONL) or tagged TFRecord shards (globs)")
    q.add_argument("--k", nargs="+", required=True, help="vocabulary sizes, e.g. 800 1k 1.5k")
    q.add_argument("--out-dir", required=True, help="where label_K.json and label_K.stats.json go")
    q.add_argument("--reference", action="store_true",
                   help="the reference study's counting: tags as written (no normalisation), "
                        "clips whose extraction failed count in N with no tags")
    norm_args(q)
    q.set_defaults(uts_func=cmd_build)

    q = uts.add_parser("filter",
                       help="map clips' tags onto a vocabulary, drop clips left with none")
    q.add_argument("--records", nargs="+", required=True, help="TFRecord shards (globs)")
    q.add_argument("--vocab", required=True, help="label_K.json")
    q.add_argument("--tags", help="tag file from `uts tag` (default: the records' own tags)")
    q.add_argument("--out-dir", help="write rewritten shards here (same file names)")
    q.add_argument("--index", help="write a side index (JSONL: id, tags, indices) here")
    q.add_argument("--audioset-bridge", metavar="JSON",
                   help="records tagged with AudioSet class names: translate them through this "
                        "mapping (from `uts bridge`) first")
    q.add_argument("--skip-bad", action="store_true",
                   help="skip corrupt records and count them (default: stop, naming the record)")
    norm_args(q)
    q.set_defaults(uts_func=cmd_filter)

    q = uts.add_parser("bridge", help="map the AudioSet-527 classes onto a vocabulary")
    q.add_argument("--vocab", required=True, help="label_K.json")
    q.add_argument("--out", required=True, help="JSON mapping to write")
    norm_args(q)
    q.set_defaults(uts_func=cmd_bridge)

    q = uts.add_parser("report", help="markdown report with PNG plots")
    q.add_argument("--tags", nargs="+", required=True, help="tag files from `uts tag`")
    q.add_argument("--vocab", nargs="*", default=[], help="label_K.json files to compare")
    q.add_argument("--out-dir", required=True)
    q.set_defaults(uts_func=cmd_report)

    q = uts.add_parser("check", help="duplicates and normalisation collisions in vocabularies")
    q.add_argument("--vocab", nargs="+", required=True, help="label_K.json files")
    norm_args(q)
    q.set_defaults(uts_func=cmd_check)

    p.set_defaults(func=run)


def run(args) -> int:
    from strongaudio_jax.uts.http_tagger import EndpointError

    try:
        return args.uts_func(args)
    except (ValueError, ImportError, EndpointError, OSError) as e:
        if args.debug or os.environ.get("STRONGAUDIO_DEBUG"):
            raise
        from strongaudio_jax.data import batcher
        hint = (" (--skip-bad skips such records and counts them)"
                if hasattr(args, "skip_bad") and batcher.bad_reason(e) is not None else "")
        print(f"strongaudio uts {args.uts_command}: error: {e}{hint}", file=sys.stderr)
        return 2


def _normalizer(args):
    from strongaudio_jax.uts.normalize import Normalizer
    return Normalizer(args.synonyms)


def cmd_tag(args) -> int:
    from strongaudio_jax.data import pipeline
    from strongaudio_jax.uts import evaluate, reference, tagging

    normalize = _normalizer(args)
    max_new = args.max_new_tokens or (reference.MAX_NEW_TOKENS if args.reference else 128)
    if args.reference:
        from strongaudio_jax.uts.lm_tagger import LMGenerator
        if args.extractor != "lm" or not args.model:
            raise ValueError("--reference samples the reference prompt from an LM: give "
                             "--extractor lm --model DIR (a `strongaudio import-hf` output, "
                             "e.g. of Qwen2.5-7B-Instruct)")
        if args.synonyms:
            raise ValueError("--reference applies no normalisation; drop --synonyms")
        extractor = reference.ReferenceLMTagger(
            LMGenerator(args.model, max_new, args.batch_size, args.tensor_parallel,
                        temperature=reference.TEMPERATURE, top_p=reference.TOP_P,
                        seed=args.seed, chat_template=False),
            batch_size=args.batch_size,
            name=f"reference-lm:{os.path.basename(os.path.normpath(args.model))}")
    elif args.extractor == "rules":
        from strongaudio_jax.uts.rules_tagger import RulesTagger
        extractor = RulesTagger(normalize, args.lexicon)
    elif args.extractor == "lm":
        from strongaudio_jax.uts.lm_tagger import LMGenerator, LMTagger
        if not args.model:
            raise ValueError("--extractor lm needs --model DIR (a `strongaudio import-hf` output)")
        extractor = LMTagger(LMGenerator(args.model, max_new, args.batch_size,
                                         args.tensor_parallel), normalize,
                             batch_size=8 * args.batch_size,  # fills the length buckets
                             name=f"jax-lm:{os.path.basename(os.path.normpath(args.model))}")
    else:
        from strongaudio_jax.uts.http_tagger import HTTPTagger
        if not args.url or not args.model:
            raise ValueError("--extractor http needs --url (e.g. http://localhost:8000/v1) "
                             "and --model")
        extractor = HTTPTagger(args.url, args.model, normalize, concurrency=args.concurrency,
                               rate=args.rate, timeout=args.timeout, max_retries=args.max_retries)
    bad = pipeline.BadData(skip=args.skip_bad)
    items = tagging.read_captions(args.captions, bad)
    if bad.counts:
        print(bad.summary().replace("data.skip_bad", "--skip-bad"))
    stats = tagging.tag_corpus(items, extractor, args.out)
    retries = f", {extractor.retries} retried requests" if getattr(extractor, "retries", 0) else ""
    print(f"{extractor.name}: {stats.line()}{retries} -> {args.out}")
    rows = tagging.read_tag_file(args.out)
    failed = sum(r["status"] == "failed" for r in rows.values())
    if failed:
        how = ("they count in N with no tags, as in the reference" if args.reference else
               "extend the lexicon (--lexicon FILE)" if args.extractor == "rules" else
               "run the same command again to retry them")
        print(f"{failed} clips have no usable tags (status failed in {args.out}; see their "
              f"'problems'): {how}")
    if args.evaluate:
        reference = {it.id: it.tags for it in items if it.tags}
        if not reference:
            raise ValueError("--evaluate: the caption inputs carry no reference tags")
        pred = {k: r["tags"] for k, r in rows.items() if r["status"] in tagging.DONE}
        for name, norm in (("raw", None), ("normalised", normalize)):
            m = evaluate.precision_recall(pred, reference, norm)
            print(f"{name}: precision {m['precision']:.3f} recall {m['recall']:.3f} over "
                  f"{m['clips']} clips; most missed {m['most_missed'][:5]}")
    return 0


def load_clip_tags(paths, normalize) -> tuple[dict, dict, int]:
    """(id -> normalised tags, id -> domain, failed rows skipped) from tag files or TFRecords."""
    from strongaudio_jax.uts import tagging

    clip_tags, domains, failed = {}, {}, 0
    for path in tagging.expand(paths, "tag"):
        if path.endswith((".jsonl", ".json")):
            rows = tagging.read_tag_file(path)
            for k, r in rows.items():
                if r["status"] not in tagging.DONE:
                    failed += 1
                    continue
                clip_tags[k] = normalize.many(r["tags"])
                domains[k] = r.get("domain", "")
        else:
            for it in tagging.read_captions(path):
                clip_tags[it.id] = normalize.many(it.tags)
                domains[it.id] = it.domain
    return clip_tags, domains, failed


def cmd_build(args) -> int:
    from strongaudio_jax.uts import vocab

    ks = [vocab.parse_k(k) for k in args.k]
    if args.reference:
        from strongaudio_jax.uts import reference
        if args.synonyms:
            raise ValueError("--reference applies no normalisation; drop --synonyms")
        clip_tags, domains, failed = reference.load_clip_tags(args.tags)
    else:
        clip_tags, domains, failed = load_clip_tags(args.tags, _normalizer(args))
    for k in clip_tags:
        domains[k] = domains[k] or vocab.infer_domain(clip_tags[k])
    df, n = vocab.document_frequency(clip_tags.values())
    how = "counted in N with no tags" if args.reference else "left out"
    print(f"{n} clips ({failed} failed extractions {how}), {len(df)} distinct tags")
    os.makedirs(args.out_dir, exist_ok=True)
    for k, tags in vocab.top_k(df, n, ks).items():
        path = os.path.join(args.out_dir, vocab.label_file_name(k))
        vocab.write_vocabulary(path, tags)
        stats = vocab.stats_for(tags, df, n, clip_tags, domains)
        stats["failed_extractions_" + ("counted_in_n" if args.reference else "left_out")] = failed
        stats["normalised"] = not args.reference
        with open(path[:-len(".json")] + ".stats.json", "w", encoding="utf-8") as f:
            json.dump(stats, f, indent=1, ensure_ascii=False)
        cov = stats["coverage"]
        print(f"K={k}: {path}; clips covered: " + ", ".join(
            f"{d} {c['covered']}/{c['clips']}" for d, c in sorted(cov.items())))
    return 0


def cmd_filter(args) -> int:
    from strongaudio_jax.data import pipeline
    from strongaudio_jax.uts import filter as filter_lib, tagging, vocab

    bad = pipeline.BadData(skip=args.skip_bad)
    vocab_tags = vocab.read_vocabulary(args.vocab)
    rows = tagging.usable_tags(args.tags) if args.tags else None
    if args.tags and not rows:
        raise ValueError(f"tag file {args.tags!r} has no usable rows")
    provenance = f"uts filter {os.path.basename(args.vocab)}" + (
        f" of {next(iter(rows.values()))['extractor']} tags" if rows else "")
    translate = None
    if args.audioset_bridge:
        from strongaudio_jax.uts import bridge
        with open(args.audioset_bridge, encoding="utf-8") as f:
            translate = bridge.translator(json.load(f))
        provenance += f" via {os.path.basename(args.audioset_bridge)}"
    stats = filter_lib.filter_shards(tagging.expand(args.records, "TFRecord"), vocab_tags,
                                     _normalizer(args), tag_rows=rows, out_dir=args.out_dir,
                                     index_path=args.index, provenance=provenance,
                                     translate=translate, bad=bad)
    if bad.counts:
        print(bad.summary().replace("data.skip_bad", "--skip-bad"))
    print(stats.line() + "".join(f" -> {p}" for p in (args.out_dir, args.index) if p))
    return 0


def cmd_bridge(args) -> int:
    from strongaudio_jax.uts import bridge, vocab

    result = bridge.bridge(vocab.read_vocabulary(args.vocab), _normalizer(args))
    result["vocabulary"] = os.path.abspath(args.vocab)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, ensure_ascii=False)
    c = result["counts"]
    print(f"AudioSet 527 -> {args.vocab}: {c['exact']} exact, {c['stem']} by stem, {c['words']} "
          f"by words, {c['none']} unmapped -> {args.out}")
    if result["unmapped"]:
        print("unmapped: " + "; ".join(result["unmapped"]))
    return 0


def cmd_report(args) -> int:
    from strongaudio_jax.uts import report, tagging, vocab

    rows = {}
    for path in tagging.expand(args.tags, "tag"):
        rows.update(tagging.usable_tags(path))
    vocabs = {}
    for path in args.vocab:
        name = os.path.basename(path)[:-len(".json")] if path.endswith(".json") else path
        vocabs[name.replace("label_", "K=")] = vocab.read_vocabulary(path)
    path = report.write_report(rows, vocabs, args.out_dir)
    print(f"report -> {path}")
    return 0


def cmd_check(args) -> int:
    from strongaudio_jax.uts import vocab

    normalize = _normalizer(args)
    for path in args.vocab:
        r = vocab.check_vocabulary(vocab.read_vocabulary(path), normalize)
        print(f"{path}: {r['size']} entries, {r['distinct']} distinct; duplicates "
              f"{[(t, i, j) for t, i, j in r['duplicates']]}; {len(r['normalisation_collisions'])} "
              f"groups normalise alike (e.g. {r['normalisation_collisions'][:3]}); "
              f"{len(r['not_normalised'])} not in normal form")
    return 0
