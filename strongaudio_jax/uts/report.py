"""`strongaudio uts report`: a markdown page with PNG plots on a tagged corpus and its vocabularies.

Plots: tag frequency (rank vs document frequency, log-log), coverage per domain for each K,
top tags per domain, and the overlap between the vocabularies. Needs matplotlib
(`pip install 'strongaudio_jax[report]'`); everything else in `uts` works without it.
"""

from __future__ import annotations

import collections
import os
from typing import Mapping, Sequence

from strongaudio_jax.uts import vocab as vocab_lib


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("strongaudio uts report draws its plots with matplotlib, which is not "
                          "installed: pip install 'strongaudio_jax[report]' (or pip install "
                          "matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def clip_domains(rows: Mapping[str, dict]) -> dict[str, str]:
    """Each clip's domain: its label/domain where the tag file carries one, else from its tags."""
    return {k: (r.get("domain") or vocab_lib.infer_domain(r["tags"])) for k, r in rows.items()}


def write_report(rows: Mapping[str, dict], vocabularies: Mapping[str, Sequence[str]], out_dir: str,
                 top: int = 15) -> str:
    """Writes out_dir/report.md and its PNGs; returns the markdown path."""
    plt = _pyplot()
    os.makedirs(out_dir, exist_ok=True)
    clip_tags = {k: r["tags"] for k, r in rows.items()}
    domains = clip_domains(rows)
    df, n = vocab_lib.document_frequency(clip_tags.values())
    if not n:
        raise ValueError("the tag file has no usable rows (status ok or repaired); "
                         "nothing to report")
    doms = sorted(set(domains.values()), key=lambda d: (d not in vocab_lib.DOMAINS, d))
    names = list(vocabularies)
    cov = {name: vocab_lib.coverage(clip_tags, domains, v) for name, v in vocabularies.items()}

    # 1. tag frequency, log-log
    fig, ax = plt.subplots(figsize=(6, 4))
    counts = sorted(df.values(), reverse=True)
    ax.loglog(range(1, len(counts) + 1), counts, marker=".", linestyle="none")
    for name, v in vocabularies.items():
        ax.axvline(len(v), color="gray", linestyle=":", linewidth=1)
        ax.text(len(v), max(counts), f" {name}", rotation=90, va="top", fontsize=7)
    ax.set(xlabel="tag rank", ylabel="clips with the tag (df)", title=f"Tag frequency ({n} clips)")
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "tag_frequency.png"), dpi=100)
    plt.close(fig)

    # 2. coverage per domain per vocabulary: clips kept, and share of their tags kept
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.2 * len(doms) * max(1, len(names))), 4))
    width = 0.8 / max(1, len(names))
    for ax, key, label in ((axes[0], "fraction", "clips with >= 1 vocabulary tag"),
                           (axes[1], "tag_fraction", "share of the clips' tags in the vocabulary")):
        for j, name in enumerate(names):
            ax.bar([i + j * width for i in range(len(doms))],
                   [cov[name].get(d, {}).get(key, 0.0) for d in doms], width, label=name)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(doms))], doms)
        ax.set(ylim=(0, 1.05), title=label)
        ax.title.set_fontsize(9)
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "coverage.png"), dpi=100)
    plt.close(fig)

    # 3. top tags per domain
    per_dom = {d: collections.Counter() for d in doms}
    for k, tags in clip_tags.items():
        per_dom[domains[k]].update(set(tags))
    fig, axes = plt.subplots(1, len(doms), figsize=(3.2 * len(doms), 0.25 * top + 1.2),
                             squeeze=False)
    for ax, d in zip(axes[0], doms):
        best = per_dom[d].most_common(top)[::-1]
        ax.barh([t for t, _ in best], [c for _, c in best])
        ax.set_title(f"{d} ({sum(1 for x in domains.values() if x == d)} clips)", fontsize=9)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "top_tags.png"), dpi=100)
    plt.close(fig)

    # 4. overlap between vocabularies: |A & B| / |A| (row A)
    sets = {name: set(v) for name, v in vocabularies.items()}
    overlap = [[len(sets[a] & sets[b]) / max(1, len(sets[a])) for b in names] for a in names]
    if names:
        fig, ax = plt.subplots(figsize=(1 + 0.8 * len(names), 0.8 + 0.7 * len(names)))
        im = ax.imshow(overlap, vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(len(names)), names, rotation=45, fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(j, i, f"{overlap[i][j]:.2f}", ha="center", va="center", fontsize=6,
                        color="w")
        ax.set_title("share of row's tags in column", fontsize=8)
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, "overlap.png"), dpi=100)
        plt.close(fig)

    lines = ["# UTS report", "",
             f"{n} tagged clips, {len(df)} distinct tags, "
             f"{sum(len(t) for t in clip_tags.values()) / n:.2f} tags per clip on average.", "",
             "![tag frequency](tag_frequency.png)", "", "## Coverage per domain", "",
             "Share of clips left with at least one tag; in brackets, the share of the clips' tags "
             "the vocabulary keeps and the mean vocabulary tags per clip.", "",
             "| vocabulary | K | " + " | ".join(doms + ["all"]) + " |",
             "|---|---|" + "---|" * (len(doms) + 1)]
    for name in names:
        c = cov[name]
        cells = [f"{c[d]['fraction']:.3f} ({c[d]['tag_fraction']:.2f}, {c[d]['mean_tags']:.1f})"
                 if d in c else "-"
                 for d in doms + ["all"]]
        lines.append(f"| {name} | {len(vocabularies[name])} | " + " | ".join(cells) + " |")
    lines += ["", "![coverage](coverage.png)", "", f"## Top {top} tags per domain", "",
              "![top tags](top_tags.png)", ""]
    for d in doms:
        best = per_dom[d].most_common(top)
        lines.append(f"- **{d}**: " + ", ".join(f"{t} ({c})" for t, c in best))
    if names:
        lines += ["", "## Overlap between vocabularies", "",
                  "Share of the row vocabulary's tags that are also in the column vocabulary.", "",
                  "| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for name, row in zip(names, overlap):
            lines.append(f"| {name} | " + " | ".join(f"{x:.3f}" for x in row) + " |")
        lines += ["", "![overlap](overlap.png)"]
    path = os.path.join(out_dir, "report.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path
