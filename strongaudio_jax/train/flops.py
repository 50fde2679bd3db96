"""Model FLOPs utilisation: XLA's FLOP count of the compiled step over the chip's peak.

The count comes from the compiled program (`cost_analysis`, per device), so it includes the
frontend, attention and the optimizer. Peaks are dense bf16 matmul rates from the vendors'
data sheets; an unknown device (a CPU) gets no MFU, only achieved TFLOP/s.
"""

from __future__ import annotations

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


def step_flops(compiled) -> float | None:
    """FLOPs of one call of a compiled function, per device (None if XLA gives no count)."""
    costs = compiled.cost_analysis()
    if isinstance(costs, (list, tuple)):
        costs = costs[0] if costs else {}
    flops = (costs or {}).get("flops")
    return float(flops) if flops and flops > 0 else None
