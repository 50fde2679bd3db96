#!/usr/bin/env bash
# UTS on a demo corpus, end to end: tag the training captions offline, build nested vocabularies
# for several K, rewrite the training shards with each vocabulary, train MTC on each K and probe.
# The results for the 3000-clip demo corpus are in docs/uts.md.
#
#   python tools/make_demo_corpus.py --out /work/corpus_large --num-clips 3000 --shard-size 128
#   tools/uts_demo_study.sh /work/corpus_large /work/uts_large "25 50 100" 300
set -euo pipefail
CORPUS=${1:?corpus folder}; OUT=${2:?output folder}; KS=${3:-"25 50 100"}; STEPS=${4:-300}
PY=${PYTHON:-python}
SYN=strongaudio_jax/uts/data/demo_corpus_synonyms.tsv  # the demo generator's interchangeable words
cd "$(dirname "$0")/.."
mkdir -p "$OUT"

$PY -m strongaudio_jax.cli uts tag --captions "$CORPUS/train-*.tfrecord" --out "$OUT/train_tags.jsonl" \
    --synonyms $SYN --evaluate
$PY -m strongaudio_jax.cli uts build --tags "$OUT/train_tags.jsonl" --k $KS --out-dir "$OUT/vocab" --synonyms $SYN
$PY -m strongaudio_jax.cli uts bridge --vocab "$OUT/vocab/label_${KS##* }.json" --out "$OUT/audioset_bridge.json" \
    --synonyms $SYN | head -1
$PY -m strongaudio_jax.cli uts report --tags "$OUT/train_tags.jsonl" --vocab $(for k in $KS; do echo "$OUT/vocab/label_$k.json"; done) \
    --out-dir "$OUT/report"

train() {  # workdir, then config overrides
  local wd=$1; shift
  rm -rf "$wd"
  $PY -m strongaudio_jax.cli train --config configs/mtc.py:demo --workdir "$wd" train.steps=$STEPS \
      train.checkpoint_every=$STEPS "data.eval_files=$CORPUS/heldout-*.tfrecord" "$@" 2>&1 | tail -8
}

for K in $KS; do
  $PY -m strongaudio_jax.cli uts filter --records "$CORPUS/train-*.tfrecord" --vocab "$OUT/vocab/label_$K.json" \
      --tags "$OUT/train_tags.jsonl" --out-dir "$OUT/train_K$K" --synonyms $SYN
  echo "== K=$K"
  train "$OUT/run_K$K" "data.train_files=$OUT/train_K$K/train-*.tfrecord" "data.vocab_file=$OUT/vocab/label_$K.json"
done
echo "== baseline: the corpus's own (generator) tags"
train "$OUT/run_own_tags" "data.train_files=$CORPUS/train-*.tfrecord"
