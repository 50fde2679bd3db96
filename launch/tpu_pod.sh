#!/usr/bin/env bash
# Train on a Cloud TPU pod slice: copy this checkout to every worker, install it with libtpu,
# and start the same command on all of them (one process per host; jax.distributed finds the
# others from the TPU environment, see strongaudio_jax/parallel/distributed.py).
#   launch/tpu_pod.sh TPU_NAME ZONE CONFIG WORKDIR [key=value ...]
#   launch/tpu_pod.sh my-v5p us-east5-a configs/vit_b_mtc.py:v5p-64 gs://bucket/runs/vit_b \
#     data.train_files='gs://bucket/corpus/train-*.tfrecord' data.vocab_file=gs://bucket/label_1.5k.json
# WORKDIR must be storage every host sees (gs://...): checkpoints are written by all of them.
# First check that the config fits the slice, on any CPU machine:
#   strongaudio compile-check --config configs/vit_b_mtc.py:v5p-64
set -euo pipefail
name=${1:?usage: $0 TPU_NAME ZONE CONFIG WORKDIR [key=value ...]}
zone=${2:?usage: $0 TPU_NAME ZONE CONFIG WORKDIR [key=value ...]}
config=${3:?usage: $0 TPU_NAME ZONE CONFIG WORKDIR [key=value ...]}
workdir=${4:?usage: $0 TPU_NAME ZONE CONFIG WORKDIR [key=value ...]}
shift 4
remote_dir=${REMOTE_DIR:-strongaudio_jax}
tpu=(gcloud compute tpus tpu-vm --zone "$zone")

cd "$(dirname "$0")/.."
"${tpu[@]}" ssh "$name" --worker=all --command "rm -rf $remote_dir && mkdir -p $remote_dir"
git ls-files -z | tar --null -T - -czf /tmp/strongaudio_src.tgz
"${tpu[@]}" scp /tmp/strongaudio_src.tgz "$name:$remote_dir/src.tgz" --worker=all
args=$(printf ' %q' --config "$config" --workdir "$workdir" "$@")
"${tpu[@]}" ssh "$name" --worker=all --command "cd $remote_dir && tar -xzf src.tgz && \
  python3 -m pip install -q -e '.[tpu]' && python3 -m strongaudio_jax.cli train$args 2>&1 | tee -a train.log"
