#!/usr/bin/env bash
# UTS on a demo corpus, end to end: tag the training captions offline, build nested vocabularies
# for several K, rewrite the training shards with each vocabulary, train MTC on each K and probe.
# The results for the 3000-clip demo corpus are in docs/uts.md.
#
#   python tools/make_demo_corpus.py --out /work/corpus_large --num-clips 3000 --shard-size 128
#   tools/uts_demo_study.sh /work/corpus_large /work/uts_large "25 50 100" 300 "0 1"
# (corpus, output folder, K values, train steps per run, seeds). Finished runs are kept on a rerun.
set -euo pipefail
CORPUS=${1:?corpus folder}; OUT=${2:?output folder}; KS=${3:-"25 50 100"}; STEPS=${4:-300}; SEEDS=${5:-"0 1"}
PY=${PYTHON:-python}
SYN=strongaudio_jax/uts/data/demo_corpus_synonyms.tsv  # the demo generator's interchangeable words
cd "$(dirname "$0")/.."
mkdir -p "$OUT"

$PY -m strongaudio_jax.cli uts tag --captions "$CORPUS/train-*.tfrecord" --out "$OUT/train_tags.jsonl" \
    --synonyms $SYN --evaluate
$PY -m strongaudio_jax.cli uts build --tags "$OUT/train_tags.jsonl" --k $KS --out-dir "$OUT/vocab" --synonyms $SYN
$PY -m strongaudio_jax.cli uts bridge --vocab "$OUT/vocab/label_${KS##* }.json" --out "$OUT/audioset_bridge.json" \
    --synonyms $SYN > "$OUT/audioset_bridge.txt"
head -1 "$OUT/audioset_bridge.txt"
$PY -m strongaudio_jax.cli uts report --tags "$OUT/train_tags.jsonl" --vocab $(for k in $KS; do echo "$OUT/vocab/label_$k.json"; done) \
    --out-dir "$OUT/report"

train() {  # workdir, then config overrides; a finished run (probe results present) is kept
  local wd=$1; shift
  if grep -qs '"probe"' "$wd/metrics.jsonl"; then echo "(already done: $wd)"; return; fi
  rm -rf "$wd"
  local t0=$SECONDS
  $PY -m strongaudio_jax.cli train --config configs/mtc.py:demo --workdir "$wd" train.steps=$STEPS \
      train.checkpoint_every=$STEPS "data.eval_files=$CORPUS/heldout-*.tfrecord" "$@" 2>&1 | tail -8
  echo "wall $((SECONDS - t0)) s"
}

for K in $KS; do
  [ -d "$OUT/train_K$K" ] || $PY -m strongaudio_jax.cli uts filter --records "$CORPUS/train-*.tfrecord" \
      --vocab "$OUT/vocab/label_$K.json" --tags "$OUT/train_tags.jsonl" --out-dir "$OUT/train_K$K" --synonyms $SYN
done
for SEED in $SEEDS; do
  for K in $KS; do
    echo "== K=$K seed=$SEED"
    train "$OUT/run_K${K}_seed$SEED" seed=$SEED "data.train_files=$OUT/train_K$K/train-*.tfrecord" \
        "data.vocab_file=$OUT/vocab/label_$K.json"
  done
  echo "== baseline: the corpus's own (generator) tags, seed=$SEED"
  train "$OUT/run_own_tags_seed$SEED" seed=$SEED "data.train_files=$CORPUS/train-*.tfrecord"
done

# One table of probe accuracies, mean over seeds (and each seed's value).
$PY - "$OUT" <<'PYEOF'
import collections, glob, json, os, sys
runs = collections.defaultdict(dict)
for path in sorted(glob.glob(os.path.join(sys.argv[1], "run_*_seed*/metrics.jsonl"))):
    name, seed = os.path.basename(os.path.dirname(path)).rsplit("_seed", 1)
    for line in open(path):
        row = json.loads(line)
        if "probe" in row:
            runs[name].setdefault(row["task"], {})[seed] = row["accuracy"]
tasks = ("domain", "language", "instrument", "event")
print("| run | " + " | ".join(tasks) + " |\n|---|" + "---|" * len(tasks))
for name, acc in sorted(runs.items(), key=lambda kv: (not kv[0].startswith("run_K"), len(kv[0]), kv[0])):
    cells = []
    for t in tasks:
        vals = [acc.get(t, {})[s] for s in sorted(acc.get(t, {}))]
        cells.append(f"{sum(vals) / len(vals):.3f} ({' / '.join(f'{v:.3f}' for v in vals)})" if vals else "-")
    print(f"| {name[4:]} | " + " | ".join(cells) + " |")
PYEOF
