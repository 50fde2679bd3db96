"""Model FLOPs utilisation: the matmul FLOPs of one train step over the chips' peak.

The count walks the step's jaxpr rather than asking XLA (`cost_analysis`): XLA counts the body
of a loop once, so with `model.scan_layers` (what the pod configs use) it reported the FLOPs of
one layer instead of all of them. Here a scan body counts `length` times. As in MaxText and
PaLM's MFU, only matrix products count (dot_general, convolutions: the frontend's, the
encoder's, the heads', the backward pass's), and activation recomputation does not: the step
is traced with the encoder's `remat` off (`Program.model_flops`). Fused attention kernels
(`model.attention` = cudnn or pallas) are opaque calls and are not counted, which makes MFU
read low by their share; the default `xla` attention is counted.

Peaks are dense bf16 matmul rates from the vendors' data sheets; an unknown device (a CPU)
gets no MFU, only achieved TFLOP/s.
"""

from __future__ import annotations

import math

import jax

PEAK_BF16_TFLOPS = {  # per device (one GPU, one TPU chip)
    "NVIDIA H100": 989.0, "NVIDIA H200": 989.0, "NVIDIA A100": 312.0, "NVIDIA B200": 2250.0,
    "TPU v4": 275.0, "TPU v5 lite": 197.0, "TPU v5e": 197.0, "TPU v5p": 459.0, "TPU v6 lite": 918.0,
}


def peak_tflops(device: jax.Device) -> float | None:
    kind = device.device_kind
    for name, peak in PEAK_BF16_TFLOPS.items():
        if kind.startswith(name):
            return peak
    return None


def matmul_flops(jaxpr) -> float:
    """FLOPs of the matrix products a (closed) jaxpr executes, for the whole global batch;
    scan bodies count `length` times, other nested jaxprs (jit, remat, custom_vjp, cond
    branches: the largest) once."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            total += _dot_flops(eqn)
        elif name == "conv_general_dilated":
            total += _conv_flops(eqn)
        elif name == "cond":
            total += max(matmul_flops(b) for b in eqn.params["branches"])
        else:
            inner = sum(matmul_flops(j) for j in _sub_jaxprs(eqn.params))
            total += inner * (eqn.params["length"] if name == "scan" else 1)
    return total


def _sub_jaxprs(params: dict):
    for v in params.values():
        for x in (v if isinstance(v, (tuple, list)) else (v,)):
            if hasattr(x, "eqns") or hasattr(getattr(x, "jaxpr", None), "eqns"):
                yield x


def _dot_flops(eqn) -> float:
    lhs, rhs = (v.aval.shape for v in eqn.invars)
    (_, rhs_contract), (_, rhs_batch) = eqn.params["dimension_numbers"]
    rhs_free = [d for i, d in enumerate(rhs) if i not in rhs_contract and i not in rhs_batch]
    return 2.0 * math.prod(lhs) * math.prod(rhs_free)  # lhs holds batch x free x contracted


def _conv_flops(eqn) -> float:
    out = eqn.outvars[0].aval.shape
    rhs = eqn.invars[1].aval.shape
    out_features = rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
    return 2.0 * math.prod(out) * math.prod(rhs) / out_features  # each output: in/groups x window
