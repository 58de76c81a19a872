"""``tritongen perf --max-isa avx2``: measure as on a CPU without AVX-512, on one that has it.

    CAPS                      # the caps offered, and each one's environment
    capped(isa) -> context    # os.environ with the cap while the harness runs (restored after)
    uncapped_reason(runtime)  # why a runtime's numbers would not be the capped CPU's, or None
    current() -> str | None   # the cap this process runs under (the probe's cache key)
    environment() -> dict     # its variables, for a child whose environment is built elsewhere (the server)

Machines differ (FACTS.md: AVX-512 VNNI in one session, AVX2 in the next), and issue 22 asks what the best
INT8 variant reaches on an AVX2 machine when the one at hand has VNNI. oneDNN dispatches by the ISA it is allowed
(``ONEDNN_MAX_CPU_ISA``: torch's int8 GEMM, ``torch._int_mm``, is oneDNN's ``gemm_api`` and halves under the
AVX2 cap), OpenVINO's CPU plugin caps its own kernels by ``OV_CPU_MAX_ISA`` and needs both set to the same value
(openvinotoolkit/openvino#36980; 2026.4 then runs the ViT's int8 FullyConnected on oneDNN's ``jit_gemm_i8``
and its float parts in f32, no ``avx512`` kernel left in its performance counters), ATen's own kernels
follow ``ATEN_CPU_CAPABILITY``, MKL (torch's fp32 GEMM) ``MKL_ENABLE_INSTRUCTIONS`` and numpy's OpenBLAS
``OPENBLAS_CORETYPE``. Every process the harness starts inherits the cap: the server, the baselines,
the GEMM probe (cached per cap). ONNX Runtime's MLAS chooses its kernels from CPUID and has no such knob, so its
variants are skipped under a cap (their numbers would be this CPU's AVX-512 ones). What stays different from a
real AVX2 machine is the microarchitecture: Zen 4 runs 256-bit instructions at full rate, caches and clocks are its
own, so the share of the (capped) ceiling is the number to read, not the images per second.
"""

from __future__ import annotations

import contextlib
import os

CAPS = {
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "OV_CPU_MAX_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2",
             "MKL_ENABLE_INSTRUCTIONS": "AVX2",  # torch's fp32 GEMM (eager) is MKL's
             "OPENBLAS_CORETYPE": "Haswell"},  # numpy's OpenBLAS (the fp32 probe): its AVX2 kernels
}
_UNCAPPED = {"onnxruntime": "ONNX Runtime's MLAS picks its kernels from CPUID and has no ISA cap: under --max-isa "
                            "its numbers would be this CPU's full-ISA ones"}


def current() -> str | None:
    """The cap this process runs under (``ONEDNN_MAX_CPU_ISA`` lower-cased), or None."""
    v = os.environ.get("ONEDNN_MAX_CPU_ISA")
    return v.lower() if v else None


def environment() -> dict[str, str]:
    """The cap's variables as this process has them (for a child whose environment is built elsewhere)."""
    cap = current()
    return {k: os.environ[k] for k in CAPS.get(cap, {}) if k in os.environ} if cap else {}


def uncapped_reason(runtime: str | None) -> str | None:
    return _UNCAPPED.get(runtime or "") if current() else None


@contextlib.contextmanager
def capped(isa: str | None):
    """``os.environ`` with ``isa``'s cap for the block (None: unchanged); the previous values restored after."""
    if not isa:
        yield {}
        return
    env = CAPS[isa]
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield dict(env)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
