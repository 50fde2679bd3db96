"""`strongaudio curate coverage`: how a corpus covers the UTS tag space, per domain, and how two
corpora differ.

One streaming pass per corpus keeps only counters (clips and tag document frequencies per
domain), so memory grows with the number of distinct tags, not with the number of clips.
Per domain (and "all"):
  clips, share of clips with at least one tag, mean tags per clip, distinct tags;
  long tail: the share of distinct tags seen on fewer than `tail` clips;
  entropy (bits) of the tag distribution p(t) = df(t) / sum df, its normalised value
  H / log2(distinct tags) (1 = every tag equally often) and the effective number of tags 2^H;
  with a vocabulary (label_K.json): the share of clips with >= 1 vocabulary tag, and the share
  of the vocabulary's tags that occur in the domain.
With two or more corpora, the first two are compared per domain: tags shared and only in one,
Jaccard overlap of the tag sets, Jensen-Shannon divergence (bits, 0..1) of the tag
distributions, and the tags whose share of clips differs most.
Writes coverage.md, coverage.json and PNG plots into the output folder.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
from typing import Mapping, Sequence

import numpy as np

from strongaudio_jax.curate import records
from strongaudio_jax.uts import vocab as vocab_lib

ALL = "all"


@dataclasses.dataclass
class DomainCounts:
    clips: int = 0
    tagged: int = 0
    tag_sum: int = 0
    vocab_covered: int = 0  # clips with >= 1 tag of the vocabulary (when one is given)
    df: collections.Counter = dataclasses.field(default_factory=collections.Counter)


@dataclasses.dataclass
class CorpusCounts:
    name: str
    files: list[str]
    domains: dict[str, DomainCounts]
    damage: records.Damage


def count(name: str, files: Sequence[str], vocab: Sequence[str] | None = None,
          progress: bool = True) -> CorpusCounts:
    """Per-domain tag counters of a corpus, in one streaming pass."""
    vocab_set = set(vocab or ())
    domains: dict[str, DomainCounts] = collections.defaultdict(DomainCounts)
    damage = records.Damage()
    for _, clip in records.clips(files, f"coverage {name}", damage, progress):
        tags = set(clip.tags)
        for dom in (ALL, records.domain(clip)):
            d = domains[dom]
            d.clips += 1
            d.tagged += bool(tags)
            d.tag_sum += len(tags)
            d.vocab_covered += bool(tags & vocab_set)
            d.df.update(tags)
    return CorpusCounts(name, list(files), dict(domains), damage)


def entropy_bits(df: Mapping[str, int]) -> float:
    total = sum(df.values())
    if not total:
        return 0.0
    p = np.array([v for v in df.values() if v > 0], np.float64) / total
    return float(-(p * np.log2(p)).sum())


def js_divergence_bits(a: Mapping[str, int], b: Mapping[str, int]) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) of two tag distributions."""
    tags = sorted(set(a) | set(b))
    if not tags:
        return 0.0
    p = np.array([a.get(t, 0) for t in tags], np.float64)
    q = np.array([b.get(t, 0) for t in tags], np.float64)
    if p.sum() == 0 or q.sum() == 0:
        return 1.0 if p.sum() != q.sum() else 0.0
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(x, y):
        nz = x > 0
        return float((x[nz] * np.log2(x[nz] / y[nz])).sum())

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def domain_stats(d: DomainCounts, tail: int, vocab: Sequence[str] | None, top: int) -> dict:
    distinct = len(d.df)
    h = entropy_bits(d.df)
    out = {
        "clips": d.clips,
        "tagged_fraction": d.tagged / d.clips if d.clips else 0.0,
        "mean_tags": d.tag_sum / d.clips if d.clips else 0.0,
        "distinct_tags": distinct,
        "long_tail_tags": sum(1 for v in d.df.values() if v < tail),
        "long_tail_share": (sum(1 for v in d.df.values() if v < tail) / distinct) if distinct else 0.0,
        "entropy_bits": h,
        "normalised_entropy": h / math.log2(distinct) if distinct > 1 else 0.0,
        "effective_tags": 2.0 ** h if distinct else 0.0,
        "top_tags": [[t, c] for t, c in sorted(d.df.items(), key=lambda x: (-x[1], x[0]))[:top]],
    }
    if vocab is not None:
        vs = set(vocab)
        out["clips_with_vocab_tag"] = d.vocab_covered / d.clips if d.clips else 0.0
        out["vocab_tags_present"] = len(vs & set(d.df))
        out["vocab_share_present"] = out["vocab_tags_present"] / len(vs) if vs else 0.0
        out["tag_occurrences_in_vocab"] = (sum(v for t, v in d.df.items() if t in vs)
                                           / max(1, sum(d.df.values())))
    return out


def compare(a: CorpusCounts, b: CorpusCounts, top: int) -> dict:
    """Per domain present in either corpus: overlap and divergence of the tag sets."""
    out = {}
    for dom in _domain_order(set(a.domains) | set(b.domains)):
        da, db = a.domains.get(dom, DomainCounts()), b.domains.get(dom, DomainCounts())
        sa, sb = set(da.df), set(db.df)
        union = sa | sb
        share = lambda d, t: d.df.get(t, 0) / d.clips if d.clips else 0.0
        diff = sorted(union, key=lambda t: (-abs(share(da, t) - share(db, t)), t))[:top]
        out[dom] = {
            "shared_tags": len(sa & sb), "only_a": len(sa - sb), "only_b": len(sb - sa),
            "jaccard": len(sa & sb) / len(union) if union else 1.0,
            "js_divergence_bits": js_divergence_bits(da.df, db.df),
            "largest_differences": [[t, round(share(da, t), 4), round(share(db, t), 4)]
                                    for t in diff],
        }
    return out


def _domain_order(doms) -> list[str]:
    known = (ALL, *vocab_lib.DOMAINS, "mixture")
    return sorted(doms, key=lambda d: (known.index(d) if d in known else len(known), d))


def report(corpora: Sequence[CorpusCounts], out_dir: str, tail: int = 5,
           vocab: Sequence[str] | None = None, vocab_name: str = "", top: int = 15,
           plots: bool = True) -> dict:
    """Writes coverage.json, coverage.md (and PNGs) into out_dir; returns the JSON object."""
    os.makedirs(out_dir, exist_ok=True)
    result = {
        "params": {"long_tail_below": tail, "vocabulary": vocab_name or None,
                   "vocabulary_size": len(vocab) if vocab is not None else None},
        "corpora": {c.name: {
            "files": len(c.files),
            "damaged_records": c.damage.count, "damage": c.damage.where,
            "domains": {dom: domain_stats(c.domains[dom], tail, vocab, top)
                        for dom in _domain_order(c.domains)}} for c in corpora},
    }
    if len(corpora) >= 2:
        result["comparison"] = {"a": corpora[0].name, "b": corpora[1].name,
                                "domains": compare(corpora[0], corpora[1], top)}
    with open(os.path.join(out_dir, "coverage.json"), "w") as f:
        json.dump(result, f, indent=1)
    images = _plots(corpora, result, out_dir, top) if plots else []
    with open(os.path.join(out_dir, "coverage.md"), "w") as f:
        f.write(_markdown(result, images))
    return result


def _markdown(r: dict, images: list[str]) -> str:
    p = r["params"]
    lines = ["# UTS coverage", "",
             f"Long tail: tags on fewer than {p['long_tail_below']} clips. Entropy in bits of the "
             "tag distribution; normalised entropy = H / log2(distinct tags); effective tags = 2^H."]
    if p["vocabulary"]:
        lines.append(f"Vocabulary: `{p['vocabulary']}` ({p['vocabulary_size']} tags).")
    lines.append("")
    vocab_cols = (["clips with a vocab tag", "tag occurrences in vocab", "vocab tags present"]
                  if p["vocabulary"] else [])
    head = ["corpus", "domain", "clips", "tagged", "tags/clip", "distinct tags",
            "long-tail share", "entropy (bits)", "norm. entropy", "effective tags", *vocab_cols]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, c in r["corpora"].items():
        for dom, s in c["domains"].items():
            row = [name, dom, str(s["clips"]), f"{s['tagged_fraction']:.3f}", f"{s['mean_tags']:.2f}",
                   str(s["distinct_tags"]), f"{s['long_tail_share']:.3f}", f"{s['entropy_bits']:.2f}",
                   f"{s['normalised_entropy']:.3f}", f"{s['effective_tags']:.1f}"]
            if p["vocabulary"]:
                row += [f"{s['clips_with_vocab_tag']:.3f}", f"{s['tag_occurrences_in_vocab']:.3f}",
                        f"{s['vocab_tags_present']} ({s['vocab_share_present']:.3f})"]
            lines.append("| " + " | ".join(row) + " |")
    for name, c in r["corpora"].items():
        if c["damaged_records"]:
            lines.append(f"\n{name}: {c['damaged_records']} damaged record(s) skipped "
                         f"(listed in coverage.json).")
    if "comparison" in r:
        cmp_ = r["comparison"]
        a, b = cmp_["a"], cmp_["b"]
        lines += ["", f"## {a} vs {b}", "",
                  f"| domain | shared tags | only in {a} | only in {b} | Jaccard | JS divergence (bits) "
                  f"| largest differences (share of clips {a} / {b}) |", "|---|---|---|---|---|---|---|"]
        for dom, s in cmp_["domains"].items():
            diffs = ", ".join(f"{t} {x:.2f}/{y:.2f}" for t, x, y in s["largest_differences"][:5])
            lines.append(f"| {dom} | {s['shared_tags']} | {s['only_a']} | {s['only_b']} | "
                         f"{s['jaccard']:.3f} | {s['js_divergence_bits']:.3f} | {diffs} |")
    if images:
        lines += ["", "## Plots", ""] + [f"![{os.path.splitext(i)[0]}]({i})" for i in images]
    return "\n".join(lines) + "\n"


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("strongaudio curate draws its plots with matplotlib, which is not "
                          "installed: pip install 'strongaudio_jax[curate]' (or pass --no-plots)"
                          ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _plots(corpora: Sequence[CorpusCounts], r: dict, out_dir: str, top: int) -> list[str]:
    plt = _pyplot()
    names = [c.name for c in corpora]
    written = []

    # 1. rank-frequency of the whole corpus, log-log
    fig, ax = plt.subplots(figsize=(6, 4))
    for c in corpora:
        counts = sorted(c.domains[ALL].df.values(), reverse=True) if ALL in c.domains else []
        if counts:
            ax.loglog(range(1, len(counts) + 1), counts, marker=".", linestyle="-", label=c.name)
    tail = r["params"]["long_tail_below"]
    ax.axhline(tail, color="gray", linestyle=":", linewidth=1)
    ax.text(1, tail, f" long tail (< {tail} clips)", va="bottom", fontsize=7, color="gray")
    ax.set(xlabel="tag rank", ylabel="clips with the tag", title="Tag frequency")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "tag_frequency.png"), dpi=100)
    plt.close(fig)
    written.append("tag_frequency.png")

    # 2. per-domain statistics, one panel each, grouped bars per corpus
    doms = _domain_order({d for c in r["corpora"].values() for d in c["domains"]})
    panels = [("clips", "clips"), ("distinct_tags", "distinct tags"),
              ("long_tail_share", f"long-tail share (< {tail} clips)"),
              ("normalised_entropy", "normalised entropy"), ("mean_tags", "tags per clip")]
    if r["params"]["vocabulary"]:
        panels.append(("clips_with_vocab_tag", "clips with a vocabulary tag"))
    cols = 3
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    width = 0.8 / len(names)
    for ax, (key, title) in zip(axes.flat, panels):
        for j, name in enumerate(names):
            vals = [r["corpora"][name]["domains"].get(d, {}).get(key, 0.0) for d in doms]
            ax.bar([i + j * width for i in range(len(doms))], vals, width, label=name)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(doms))], doms, fontsize=8)
        ax.set_title(title, fontsize=9)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "domains.png"), dpi=100)
    plt.close(fig)
    written.append("domains.png")

    # 3. top tags of each domain (ranked in the first corpus): share of the domain's clips
    doms_tags = [d for d in doms if d != ALL and d in corpora[0].domains]
    if doms_tags:
        k = min(top, 12)
        fig, axes = plt.subplots(1, len(doms_tags), figsize=(3.2 * len(doms_tags), 0.3 * k + 1.5),
                                 squeeze=False)
        height = 0.8 / len(names)
        for ax, dom in zip(axes[0], doms_tags):
            first = corpora[0].domains[dom]
            tags = [t for t, _ in sorted(first.df.items(), key=lambda x: (-x[1], x[0]))[:k]]
            for j, c in enumerate(corpora):
                d = c.domains.get(dom, DomainCounts())
                ax.barh([i + j * height for i in range(len(tags))],
                        [d.df.get(t, 0) / d.clips if d.clips else 0 for t in tags], height,
                        label=c.name)
            ax.set_yticks([i + 0.4 - height / 2 for i in range(len(tags))], tags, fontsize=7)
            ax.invert_yaxis()
            ax.set(xlim=(0, 1))
            ax.set_title(f"{dom}: share of clips", fontsize=9)
        axes[0][0].legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, "top_tags.png"), dpi=100)
        plt.close(fig)
        written.append("top_tags.png")
    return written


def parse_corpus(text: str) -> tuple[str, str]:
    """'NAME=PATTERN' or a bare pattern (named after its folder)."""
    if "=" in text and not text.split("=", 1)[0].startswith(("gs:", "s3:", "/")):
        name, pattern = text.split("=", 1)
        return name, pattern
    return os.path.basename(os.path.dirname(text.rstrip("/"))) or text, text
