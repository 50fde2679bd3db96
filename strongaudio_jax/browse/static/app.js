// strongaudio browse: a page over the JSON API of server.py. Plain JS, no libraries.
// Views follow the URL hash: #/?<query> (clips), #/clip/C/ROW, #/tags, #/tag/C/TAG.
"use strict";

const view = document.getElementById("view");
const form = document.getElementById("filters");
const corpusSelect = document.getElementById("corpus");
let corpora = [];

// el("a", {href: "#"}, "text", child, ...): text always goes in as text, never as HTML.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

async function api(url) {
  const r = await fetch(url);
  const body = await r.json().catch(() => ({error: r.statusText}));
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function showError(e) {
  view.replaceChildren(el("p", {class: "error", id: "error"}, String(e.message || e)));
}

function corpusIndex() { return Number(corpusSelect.value || 0); }

function tagChip(c, tag, score) {
  return el("a", {class: "tag", href: `#/tag/${c}/${encodeURIComponent(tag)}`}, tag,
            score === undefined ? null : el("small", {}, " " + Number(score).toFixed(2)));
}

function fmtSeconds(s) { return s === null || s === undefined ? "?" : `${s.toFixed(1)} s`; }

// ---- search -------------------------------------------------------------------------------
function fillForm(params) {
  for (const input of form.querySelectorAll("input, select")) {
    input.value = params.get(input.name) || "";
  }
}

function formQuery() {
  const params = new URLSearchParams();
  for (const input of form.querySelectorAll("input, select")) {
    if (input.value.trim()) params.set(input.name, input.value.trim());
  }
  return params;
}

form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const params = formQuery();
  params.set("corpus", corpusIndex());
  location.hash = "#/?" + params.toString();
});

async function setCorpus(c) {
  if (String(c) === corpusSelect.value) return;
  corpusSelect.value = c;
  await loadCorpus();
}

async function showSearch(params) {
  if (params.has("corpus")) await setCorpus(params.get("corpus"));
  fillForm(params);
  params.set("corpus", corpusIndex());
  const page = await api("/api/search?" + params.toString());
  const c = corpusIndex();
  const list = el("div", {id: "results"}, page.results.map((r) =>
    el("div", {class: "result", "data-id": r.id},
      el("a", {href: `#/clip/${c}/${r.row}`, class: "clip-link"}, r.id),
      el("span", {class: "meta"}, ` ${fmtSeconds(r.duration)} · ${r.domain || "no domain"} · ${r.source || "no source"}`,
         Object.entries(r.scores).map(([k, v]) => ` · ${k} ${v.toFixed(3)}`)),
      el("div", {class: "summary"}, r.summary || r.snippet),
      r.summary && r.snippet ? el("div", {class: "meta snippet"}, r.snippet + (r.snippet.length >= 240 ? " …" : "")) : null,
      el("div", {}, r.tags.map(([t, s]) => tagChip(c, t, s))))));
  const go = (p) => { params.set("page", p); location.hash = "#/?" + params.toString(); };
  const pager = el("div", {class: "pager"},
    el("button", {id: "prev", onclick: () => go(page.page - 1), ...(page.page > 0 ? {} : {disabled: ""})}, "previous"),
    el("span", {id: "count"}, `${page.total} clips · page ${page.page + 1} of ${page.pages} · ${page.ms} ms`),
    el("button", {id: "next", onclick: () => go(page.page + 1), ...(page.page + 1 < page.pages ? {} : {disabled: ""})}, "next"));
  view.replaceChildren(pager, list);
}

// ---- one clip, side by side with the same id in the other corpora -------------------------
function clipColumn(d, shared) {
  const c = d.corpus;
  const spec = el("img", {class: "spec", alt: "log-mel spectrogram", src: `/spectrogram/${c}/${d.row}.png`});
  const specNote = el("div", {class: "meta"});
  spec.addEventListener("error", async () => {
    const r = await fetch(spec.src);
    specNote.replaceChildren(el("span", {class: "error"}, (await r.json().catch(() => ({}))).error || "no spectrogram"));
  });
  const player = el("audio", {controls: "", preload: "metadata", src: `/audio/${c}/${d.row}.wav`});
  const rows = [
    ["corpus", d.corpus_name], ["record", d.record], ["source", d.source || "—"], ["domain", d.domain || "—"],
    ["audio", `${d.format}, ${d.sample_rate} Hz, ${fmtSeconds(d.duration)}, ${d.audio_bytes} bytes`],
    ["caption by", d.caption_model || "—"], ["tags by", d.tags_model || "—"],
    ...Object.entries(d.labels).map(([k, v]) => ["label/" + k, v]),
    ...Object.entries(d.scores).map(([k, v]) => ["score " + k, v]),
  ];
  return el("div", {class: "column", "data-corpus": c},
    el("h3", {}, d.corpus_name),
    player, spec, specNote,
    el("h4", {}, "summary"), el("p", {class: "summary"}, d.summary || "—"),
    el("h4", {}, "caption"), el("p", {class: "caption"}, d.caption || "—"),
    el("h4", {}, "tags"),
    el("table", {class: "tags"}, d.tags.map(([t, s]) => el("tr", shared.has(t) ? {} : {class: "only", title: "not in every corpus shown"},
      el("td", {}, tagChip(c, t)), el("td", {class: "n"}, s.toFixed(3))))),
    el("h4", {}, "provenance"),
    el("table", {class: "provenance"}, rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v)))));
}

async function showClip(c, row) {
  await setCorpus(c);
  const first = await api(`/api/clip/${c}/${row}`);
  const others = await Promise.all(first.same_id.map((o) =>
    api(`/api/clip/${o.corpus}/${o.row}`).catch((e) => ({error: e.message, name: o.name}))));
  const found = [first, ...others].filter((d) => !d.error);
  // Tags every corpus gives this clip; the others are marked (side-by-side view).
  const shared = new Set(first.tags.map(([t]) => t).filter((t) => found.every((d) => d.tags.some(([u]) => u === t))));
  const columns = [first, ...others].map((d) => d.error
    ? el("div", {}, el("h3", {}, d.name), el("p", {class: "error"}, d.error)) : clipColumn(d, shared));
  view.replaceChildren(el("h2", {id: "clip-id"}, first.id), el("div", {class: "side"}, columns));
}

// ---- tags ---------------------------------------------------------------------------------
async function showTags(c) {
  const d = await api(`/api/tags?corpus=${c}`);
  view.replaceChildren(
    el("p", {}, `${d.tags.length} distinct tags over ${d.clips} clips (df: clips with the tag)`),
    el("table", {id: "tags"}, el("tr", {}, el("th", {}, "tag"), el("th", {}, "df"), el("th", {}, "share")),
      d.tags.map(([t, df]) => el("tr", {}, el("td", {}, tagChip(c, t)), el("td", {class: "n"}, df),
                                  el("td", {class: "n"}, (100 * df / d.clips).toFixed(2) + " %")))));
}

async function showTag(c, tag) {
  await setCorpus(c);
  const d = await api(`/api/tag/${c}/${encodeURIComponent(tag)}`);
  const examples = await api(`/api/search?corpus=${c}&tag=${encodeURIComponent(tag)}&per_page=10`);
  view.replaceChildren(
    el("h2", {}, tag),
    el("p", {id: "tag-df"}, `document frequency ${d.df} of ${d.clips} clips (${(100 * d.share).toFixed(2)} %), ` +
       `rank ${d.rank}, idf ${d.idf.toFixed(3)}, mean score ${d.mean_score === null ? "—" : d.mean_score.toFixed(3)}`),
    el("h4", {}, "occurs most with"), el("div", {id: "co-occurring"}, d.co_occurring.map(([t, n]) => [tagChip(c, t), ` ${n} `])),
    el("h4", {}, `example clips`),
    el("div", {}, examples.results.map((r) => el("div", {class: "result"},
      el("a", {href: `#/clip/${c}/${r.row}`}, r.id), " ", el("span", {class: "summary"}, r.summary || r.snippet)))),
    el("p", {}, el("a", {href: `#/?corpus=${c}&tag=${encodeURIComponent(tag)}`}, `all ${d.df} clips with this tag`)));
}

function showDamaged() {
  const c = corpora[corpusIndex()];
  view.replaceChildren(el("h2", {}, `damaged records in ${c.name}`),
    el("p", {}, `${c.damaged} records cannot be shown (the first 50 of each kind are listed); the other clips are served as usual.`),
    el("ul", {id: "problems"}, c.problems.map((p) => el("li", {}, p))));
}

// ---- start --------------------------------------------------------------------------------
async function route() {
  const hash = location.hash.slice(1) || "/";
  const [path, qs] = hash.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  try {
    if (parts[0] === "clip") await showClip(Number(parts[1]), Number(parts[2]));
    else if (parts[0] === "tags") await showTags(corpusIndex());
    else if (parts[0] === "damaged") showDamaged();
    else if (parts[0] === "tag") await showTag(Number(parts[1]), parts.slice(2).join("/"));
    else await showSearch(new URLSearchParams(qs || ""));
  } catch (e) {
    showError(e);
  }
}

async function loadCorpus() {
  const c = corpora[corpusIndex()];
  const fill = (select, values, label) => select.replaceChildren(
    el("option", {value: ""}, label), ...values.map((v) => el("option", {value: v, title: v}, v.length > 70 ? v.slice(0, 69) + "…" : v)));
  fill(document.getElementById("domain"), c.domains, "any domain");
  fill(document.getElementById("source"), c.sources, "any source");
  document.getElementById("sort").replaceChildren(el("option", {value: ""}, "corpus order"),
    ...c.numeric.flatMap((n) => [el("option", {value: n}, `${n} ↑`), el("option", {value: "-" + n}, `${n} ↓`)]));
  document.getElementById("scorefilters").replaceChildren(...c.scores.map((s) =>
    el("label", {}, `${s} ≥ `, el("input", {name: "min." + s, class: "num"}))));
  const tags = await api(`/api/tags?corpus=${corpusIndex()}`);
  document.getElementById("taglist").replaceChildren(...tags.tags.slice(0, 2000).map(([t]) => el("option", {value: t})));
  document.getElementById("status").replaceChildren(`${c.clips} clips in ${c.files} files`,
    c.damaged ? el("a", {href: "#/damaged", id: "damaged-link"}, ` · ${c.damaged} damaged records`) : "");
}

corpusSelect.addEventListener("change", async () => {
  await loadCorpus();
  location.hash = `#/?corpus=${corpusIndex()}`;
});

(async () => {
  try {
    corpora = await api("/api/corpora");
  } catch (e) {
    showError(e);
    return;
  }
  corpusSelect.replaceChildren(...corpora.map((c, i) => el("option", {value: i}, c.name)));
  await loadCorpus();
  window.addEventListener("hashchange", route);
  await route();
})();
