"""Which instructions this CPU has for INT8 and bf16, and what follows from them.

INT8 speed and even INT8 accuracy depend on the CPU, not only on the model file:
- x86 without VNNI multiplies u8 x s8 with VPMADDUBSW, whose int16 pair sums can saturate (ONNX Runtime's
  quantization docs: use ``reduce_range`` (7-bit weights) or U8U8 there); with VNNI (VPDPBUSD, AVX-512 VNNI or
  AVX-VNNI) products accumulate in int32 directly: no saturation, and about twice the int8 throughput;
- AMX (Sapphire Rapids+) has int8/bf16 tile units: another large step;
- avx512_bf16 makes OpenVINO's bf16 fast.

Read from /proc/cpuinfo flags (Linux); ``openvino_capabilities()`` adds OpenVINO's own report
(OPTIMIZATION_CAPABILITIES). The class ("avx2", "avx512", "avx512-vnni", "avx2-vnni", "amx") is recorded in
every manifest; ``tritongen validate`` / ``perf`` warn when an INT8 artifact verified on one class runs on
another (``mismatch_warnings``).
"""

from __future__ import annotations

import functools
import json
import os
import platform
from pathlib import Path

FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni", "avx512_bf16",
         "amx_tile", "amx_int8", "amx_bf16")
# classes in order of INT8 capability
CLASSES = ("other", "avx2", "avx2-vnni", "avx512", "avx512-vnni", "amx")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as the kernel reports them (empty where /proc/cpuinfo does not exist).
    ``TRITONGEN_CPU_FLAGS`` (space or comma separated) overrides them: under qemu-user emulating another CPU,
    /proc/cpuinfo still describes the host."""
    forced = os.environ.get("TRITONGEN_CPU_FLAGS")
    if forced is not None:
        return frozenset(forced.replace(",", " ").split())
    return frozenset((_cpuinfo_field("flags") or "").split())


def _cpuinfo_field(key: str) -> str | None:
    """The first ``key : value`` of /proc/cpuinfo (the one place tritongen reads it); None without it."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(key) and ":" in line:
            return line.split(":", 1)[1].strip()
    return None


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else what the platform says."""
    return _cpuinfo_field("model name") or platform.processor() or "unknown"


def isa_class(flags: frozenset[str] | set[str] | None = None) -> str:
    """The INT8-relevant class of a CPU with these flags (default: this CPU)."""
    f = cpu_flags() if flags is None else flags
    if "amx_int8" in f:
        return "amx"
    if "avx512f" in f and ("avx512_vnni" in f or "avx_vnni" in f):
        return "avx512-vnni"
    if "avx512f" in f:
        return "avx512"
    if "avx2" in f and "avx_vnni" in f:
        return "avx2-vnni"
    if "avx2" in f:
        return "avx2"
    return "other"


def has_vnni(cls: str) -> bool:
    return cls in ("avx2-vnni", "avx512-vnni", "amx")


def summary(flags: frozenset[str] | set[str] | None = None) -> dict:
    """What the manifest records: the class, the flags that matter, and whether INT8 / bf16 are fast."""
    f = cpu_flags() if flags is None else flags
    cls = isa_class(f)
    return {
        "class": cls,
        "machine": platform.machine(),
        "flags": [x for x in FLAGS if x in f],
        "int8_fast": has_vnni(cls),
        "bf16": "avx512_bf16" in f or "amx_bf16" in f,
    }


def for_manifest(info: dict) -> dict:
    """The ISA an artifact was verified on: what its build recorded (a cached build may come from another
    machine), else this machine's."""
    return info.get("isa") or summary()


def openvino_capabilities() -> list[str]:
    """OpenVINO's own report of the CPU plugin (e.g. FP32, BF16, INT8, BIN, EXPORT_IMPORT); [] without it."""
    try:
        import openvino as ov

        return [str(c) for c in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]
    except Exception:  # openvino missing or its CPU plugin unavailable: nothing to add
        return []


def quantization_defaults(cls: str | None = None, static: bool = True) -> dict:
    """ONNX Runtime INT8 settings for this class. ORT's docs: on x86 without VNNI, U8S8 (VPMADDUBSW) can
    saturate -- use reduce_range (7-bit weights) or U8U8, which cannot. With VNNI/AMX neither is needed.
    Static: U8U8 there, because reduce_range cost more accuracy (EfficientNet-Lite0, real photos: per-sample
    cosine 0.92 with reduce_range vs 0.97 U8U8 vs 0.98 U8S8 on VNNI); reduce_range stays in the recipe search.
    Dynamic (weights only, activations quantized at run time as uint8): reduce_range, as ORT advises."""
    cls = cls or isa_class()
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")
    risky = x86 and not has_vnni(cls)
    if static:
        return {"reduce_range": False, "weight_type": "uint8" if risky else "int8", "activation_type": "uint8"}
    return {"reduce_range": risky, "weight_type": "int8", "activation_type": "uint8"}


def speed_note(precision: str, cls: str | None = None) -> str | None:
    """One line when this CPU lacks what makes ``precision`` fast (None when it has it)."""
    cls = cls or isa_class()
    if precision == "int8" and not has_vnni(cls):
        return (f"this CPU ({cls}) has no VNNI/AMX: INT8 runs on VPMADDUBSW (2 instructions per multiply-add, "
                "saturation-prone; U8U8 avoids it), so expect ~1.5x over fp32 here instead of ~3x on AVX-512 VNNI / AMX CPUs")
    if precision == "bf16" and "avx512_bf16" not in cpu_flags() and "amx_bf16" not in cpu_flags():
        return f"this CPU ({cls}) has no avx512_bf16/AMX: bf16 is emulated and no faster than fp32"
    return None


def mismatch_warnings(repository: Path, cls: str | None = None) -> list[str]:
    """One line per INT8 model in ``repository`` whose manifest says it was verified on another ISA class."""
    cls = cls or isa_class()
    out = []
    for m in sorted(Path(repository).glob("*/manifest.json")):
        try:
            data = json.loads(m.read_text())
        except (OSError, ValueError):
            continue
        line = mismatch_warning(data, cls)
        if line:
            out.append(line)
    return out


def mismatch_warning(manifest: dict, cls: str | None = None) -> str | None:
    if manifest.get("precision") != "int8":
        return None
    cls = cls or isa_class()
    verified = (manifest.get("info", {}).get("isa") or manifest.get("isa") or {}).get("class")
    if not verified or verified == cls:
        return None
    why = ""
    if has_vnni(verified) and not has_vnni(cls):
        why = (" without VNNI, U8S8 kernels can saturate (ORT docs): re-verify here, or rebuild here "
               "(the build then picks reduce_range)")
    elif not has_vnni(verified) and has_vnni(cls):
        why = " this CPU runs INT8 faster than where it was verified; accuracy should hold"
    return (f"{manifest.get('triton_name', manifest.get('model'))}: INT8 verified on a {verified} CPU but this one is "
            f"{cls};{why}")
