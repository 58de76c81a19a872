"""Which TensorRT each Triton release carries, and whether a built plan can be served by a release: pure (no
TensorRT, no Polygraphy), so validation reads it without importing the builder (generator/stages/tensorrt.py)."""

from __future__ import annotations

import re
from typing import Any, Mapping

from generator.errors import UserError


def tensorrt_container(triton_release: str) -> str:
    """The NGC TensorRT image with the same TensorRT as ``tritonserver:<release>-py3``."""
    return f"nvcr.io/nvidia/tensorrt:{_release(triton_release)}-py3"


# --------------------------------------------------------------------------- Triton <-> TensorRT

# TensorRT in the standard nvcr.io/nvidia/tritonserver:<release>-py3 images (the -trtllm-python-py3
# images carry other TensorRT versions and are not covered). The nvcr.io/nvidia/tensorrt:<release>-py3
# image of the same release carries the same TensorRT. Sources: NVIDIA Deep Learning Frameworks
# Support Matrix and the Triton release notes ("Contents of the Triton Inference Server container",
# https://docs.nvidia.com/deeplearning/triton-inference-server/release-notes/); 24.02-24.04 = 8.6.3
# per triton-inference-server/server#6959 (maintainer: "Triton base image includes ... TensorRT
# version 8.6.3"); TensorRT 10 from 24.05 per NVIDIA/TensorRT#3796. Checks compare major.minor.
TRITON_TRT: dict[str, str] = {
    "24.01": "8.6.1.6",
    "24.02": "8.6.3",
    "24.03": "8.6.3",
    "24.04": "8.6.3",
    "24.05": "10.0.1.6",
    "24.06": "10.1.0.27",
    "24.07": "10.2.0.19",
    "24.08": "10.3.0.26",
    "24.09": "10.4.0.26",
    "24.10": "10.5.0.18",
    "24.11": "10.6.0.26",
    "24.12": "10.7.0.23",
    "25.01": "10.8.0.43",
    "25.02": "10.8.0.43",
    "25.03": "10.9.0.34",
    "25.04": "10.9.0.34",
    "25.05": "10.10.0.31",
    "25.06": "10.11.0.33",
    "25.07": "10.11.0.33",
    "25.08": "10.13.2.6",
    "25.09": "10.13.3.9",
    "25.10": "10.13.3.9",
}


def _release(release: str) -> str:
    r = str(release).strip()
    r = re.sub(r"^r", "", r)
    r = re.sub(r"-py3$", "", r)
    return r


def trt_version_for_triton(release: str, where: str = "triton_release") -> str:
    """TensorRT bundled with ``tritonserver:<release>-py3`` (accepts '24.10', 'r24.10', '24.10-py3')."""
    r = _release(release)
    if r not in TRITON_TRT:
        raise UserError(
            f"{where}: Triton release '{release}' is not in tritongen's TensorRT table; "
            f"known: {', '.join(TRITON_TRT)}"
        )
    return TRITON_TRT[r]


def _major_minor(version: str) -> tuple[int, ...]:
    nums = re.findall(r"\d+", str(version))
    return tuple(int(x) for x in nums[:2])


def check_provenance(manifest_trt: Mapping[str, Any], triton_release: str, target_cc: str | None = None) -> list[str]:
    """Warnings (empty list when fine) for serving a plan, given its build provenance.

    TensorRT plans load only in the TensorRT version that built them (major.minor compared here)
    and on the GPU architecture they were built for (compute capability).
    """
    warnings = []
    server = trt_version_for_triton(triton_release)
    built = manifest_trt.get("tensorrt_version")
    r = _release(triton_release)
    if not built:
        warnings.append(
            f"plan has no recorded TensorRT version; tritonserver:{r}-py3 needs a plan built with TensorRT {server}"
        )
    elif _major_minor(built) != _major_minor(server):
        warnings.append(
            f"plan built with TensorRT {built} but tritonserver:{r}-py3 bundles TensorRT {server}; "
            f"it will not load: rebuild it in {tensorrt_container(r)} (see the variant's reproduce.sh)"
        )
    cc = manifest_trt.get("compute_capability")
    if target_cc is not None:
        if not cc:
            warnings.append(f"plan has no recorded compute capability; the target GPU is {target_cc}")
        elif str(cc) != str(target_cc):
            warnings.append(
                f"plan built on compute capability {cc} ({manifest_trt.get('gpu', 'unknown GPU')}) but the target "
                f"GPU is {target_cc}; TensorRT plans are specific to the GPU architecture: rebuild on the target"
            )
    return warnings
