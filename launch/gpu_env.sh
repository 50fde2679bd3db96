# shellcheck shell=bash
# The XLA and NCCL settings for NVIDIA GPUs, in one place: sourced by launch/gpu.sh and
# launch/slurm.sbatch (after common.sh). Values already in the environment win, and flags
# already in XLA_FLAGS are kept, so any of these can be changed per run.
# Sources: JAX's "GPU performance tips" and NVIDIA JAX-Toolbox's "Tips for High-Performance
# LLMs with JAX and XLA"; every flag here is parsed by the jaxlib in setup.cfg
# (tests/test_launch.py starts JAX with these XLA_FLAGS, which fails on an unknown flag).

gpu_xla_flags=(
  # Let XLA's scheduler move collectives (FSDP's all-gathers and reduce-scatters, the data
  # axis's all-reduce) so that they overlap with compute instead of waiting in line.
  --xla_gpu_enable_latency_hiding_scheduler=true
  # Combine the many small per-parameter collectives of FSDP into few large ones (128 MiB):
  # NCCL reaches its bandwidth only on large messages.
  --xla_gpu_all_gather_combine_threshold_bytes=134217728
  --xla_gpu_reduce_scatter_combine_threshold_bytes=134217728
  --xla_gpu_all_reduce_combine_threshold_bytes=134217728
)
# Command buffers (CUDA graphs) are left at XLA's default: they cut kernel-launch overhead;
# add --xla_gpu_enable_command_buffer= (empty) to XLA_FLAGS to rule them out when debugging.

_flags=${XLA_FLAGS:-}
for _flag in "${gpu_xla_flags[@]}"; do
  [[ " $_flags " == *" ${_flag%%=*}="* ]] || _flags+="${_flags:+ }$_flag"
done
export_env "XLA_FLAGS=$_flags" \
  "XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}" \
  "NCCL_DEBUG=${NCCL_DEBUG:-WARN}"
# XLA_PYTHON_CLIENT_MEM_FRACTION: JAX preallocates 75% of each GPU by default; 90% leaves
#   room for cuDNN / cuBLAS workspaces and NCCL buffers while giving XLA more.
# NCCL_DEBUG=WARN: a failed or hung collective (wrong interface, IB down) names its cause.
unset _flags _flag
