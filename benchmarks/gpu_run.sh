#!/usr/bin/env bash
# One device call on a lent GPU: our ViT-B/16 train step and the PyTorch peer's, same card,
# same call (docs/performance.md explains how to read them). Writes JSON lines to OUT_DIR.
#   benchmarks/gpu_run.sh [OUT_DIR]          (default: $OUT, else /tmp/train_step_bench)
# The peer is ../shared/bench/model_peer_torch.py (PEER=path to override).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-/tmp/train_step_bench}}
mkdir -p "$out"
py=${PYTHON:-python}
peer=${PEER:-../shared/bench/model_peer_torch.py}
[ -f "$peer" ] || peer=shared/bench/model_peer_torch.py
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9} HF_HUB_OFFLINE=1

{ date -u +%FT%TZ; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; } \
  | tee "$out/card.txt"
# Ours at the peer's shape (ViT-B/16, 128 mels x 1024 frames, batch 128, 527 classes, bf16,
# AdamW): cuDNN flash attention (the default on GPU), then XLA's attention for comparison.
for attention in cudnn xla; do
  timeout 240 "$py" benchmarks/train_step.py --attention "$attention" | tee -a "$out/ours.jsonl"
done
# The same step reading waveforms, with the AST log-mel (kaldi_ast, 128 x 1024) inside the jitted
# step as the trainer runs it; also prints the frontend's own time and its share of the step.
timeout 240 "$py" benchmarks/train_step.py --frontend kaldi_ast | tee -a "$out/ours.jsonl"
# The peer: torch eager and torch.compile, after ours (separate processes, sequential).
timeout 420 "$py" "$peer" | tee "$out/peer.jsonl"
