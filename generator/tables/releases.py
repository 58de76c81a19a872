"""Triton releases a repository can target: the runtimes each ships and the native-backend behaviours that differ.

Pure data and lookups (imports nothing from the rest of tritongen). Every rendering and validation choice that
depends on the target release reads :func:`release` / :func:`behaves`; the README's "Target releases" table is
:func:`table_rows`. A runtime version we could not read from a public source is ``None`` (verification then says
so in one line instead of guessing).

Choose the target with ``tritongen build --triton-version R`` / ``tritongen validate --triton-version R`` or the
spec's top-level ``triton_version: R``; default :data:`NEWEST`; the embedded tritonserver 2.51 and
``--target embedded`` are 24.10 (:data:`EMBEDDED`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Behaviour:
    """One native-backend behaviour that matters to a generated repository, with where it comes from."""

    key: str
    summary: str
    source: str


BEHAVIOURS: dict[str, Behaviour] = {b.key: b for b in (
    Behaviour(
        "pytorch_interop_abort",
        "pytorch backend calls at::set_num_interop_threads for every model that sets INTER_OP_THREAD_COUNT; the "
        "second call (a second model, or the same model reloaded) throws c10::Error uncaught: tritonserver aborts",
        "pytorch_backend src/libtorch.cc ModelState::ParseParameters before r25.11 (unguarded call); r25.11 "
        "'Protect thread setting call' wraps it in std::call_once + try/catch; measured on 24.10 (rc -6)"),
    Behaviour(
        "openvino_padding_bug",
        "openvino backend computes batch_pad_size_ inside its per-request loop and never resets it: an execution "
        "whose requests add up to exactly max_batch_size keeps a stale pad and cuts the output short, failing its "
        "last request (warm-up batch N = N requests of batch 1: the model fails to load)",
        "openvino_backend src/openvino.cc ModelInstanceState::ProcessRequests / ValidateOutputBatchSize "
        "(r24.10 .. main); measured on 24.10: 'expected batch size of at least 8 in model output, got 7'"),
    Behaviour(
        "openvino_fixed_batch",
        "with max_batch_size > 0 the IR is reshaped to max_batch_size (ov::set_batch) and every other total batch "
        "is refused unless ENABLE_BATCH_PADDING=YES",
        "openvino_backend src/openvino.cc ValidateInputs (ov::set_batch) and ProcessRequests"),
    Behaviour(
        "openvino_autocomplete_batch",
        "auto-complete reads the IR layouts: without a batch ('N') layout on every input and output and "
        "max_batch_size > 0 it warns 'model layout ... does not support batching'; with one and max_batch_size 0 it "
        "turns batching on (max_batch_size := default-max-batch-size)",
        "openvino_backend src/openvino.cc ModelState::AutoCompleteBatching"),
    Behaviour(
        "openvino_missing_param_error_log",
        "every optional parameter left out of the config is logged at error level ('error when reading "
        "parameters'); an empty string value means unset and is not logged",
        "openvino_backend src/openvino.cc ParseParameter / ParseBoolParameter / LoadCpuExtensions: "
        "LOG_IF_ERROR(ReadParameter(...)) and `if (!value.empty())`"),
    Behaviour(
        "pytorch_output_order",
        "outputs are matched by <name>__<index> when every output name has that form, else by config order: a "
        "renamed or reordered output silently serves another tensor",
        "pytorch_backend src/libtorch.cc GetNamingConvention / ValidateOutputs"),
)}

OPENVINO_PARAMETERS = ("CPU_EXTENSION_PATH", "SKIP_OV_DYNAMIC_BATCHSIZE", "ENABLE_BATCH_PADDING", "RESHAPE_IO_LAYERS",
                       "INFERENCE_NUM_THREADS", "COMPILATION_NUM_THREADS", "HINT_BF16", "NUM_STREAMS", "PERFORMANCE_HINT")
"""Every key openvino_backend (r24.10) reads with ReadParameter; a missing one is an error-level log line."""


@dataclass(frozen=True)
class Release:
    name: str  # NGC tag, e.g. "24.10"
    tritonserver: str | None
    onnxruntime: str | None
    openvino: str | None
    libtorch: str | None
    tensorrt: str | None
    behaviours: tuple[str, ...]  # keys of BEHAVIOURS that hold in this release
    sources: dict[str, str] = field(default_factory=dict)  # runtime -> where its version comes from

    def has(self, behaviour: str) -> bool:
        if behaviour not in BEHAVIOURS:
            raise KeyError(behaviour)
        return behaviour in self.behaviours

    def pip_requirement(self, runtime: str) -> str | None:
        """``onnxruntime==1.19.2`` / ``openvino==2024.4.0`` for the registry, or None when unknown."""
        version = {"onnxruntime": self.onnxruntime, "openvino": self.openvino}.get(runtime)
        return f"{runtime}=={version}" if version else None


_OV_ALWAYS = ("openvino_padding_bug", "openvino_fixed_batch", "openvino_autocomplete_batch",
              "openvino_missing_param_error_log", "pytorch_output_order")

RELEASES: dict[str, Release] = {r.name: r for r in (
    Release("24.10", "2.51.0", onnxruntime="1.19.2", openvino="2024.4.0", libtorch="2.5", tensorrt="10.5.0.18",
            behaviours=("pytorch_interop_abort",) + _OV_ALWAYS,
            sources={"onnxruntime": "server build.py TRITON_VERSION_MAP r24.10 (ORT 1.19.2); measured in the 24.10 image",
                     "openvino": "server build.py TRITON_VERSION_MAP r24.10 (standalone OpenVINO 2024.4.0); measured",
                     "libtorch": "NGC PyTorch 24.10 base (torch 2.5); measured: TorchScript from torch 2.13 loads",
                     "tensorrt": "Triton 24.10 release notes (TensorRT 10.5.0.18)"}),
    Release("25.11", None, onnxruntime=None, openvino=None, libtorch=None, tensorrt=None,
            behaviours=_OV_ALWAYS,
            sources={"runtimes": "not in the public sources read here (server build.py at r25.11 is not stored)",
                     "pytorch_interop_abort": "fixed in pytorch_backend r25.11 ('Protect thread setting call')",
                     "openvino_padding_bug": "openvino_backend main still computes the pad in the request loop"}),
)}

NEWEST = "25.11"
EMBEDDED = "24.10"  # tritonserver 2.51 inside nvidia-pytriton 0.7.0 (the embedded server)


def normalize(name: str | None) -> str:
    """'24.10', 'r24.10', '24.10-py3' -> '24.10'."""
    r = re.sub(r"-py3$", "", re.sub(r"^r", "", str(name).strip()))
    return r


def release(name: str | None = None) -> Release:
    """The table entry for ``name`` (None: :data:`NEWEST`). Raises LookupError naming the known releases."""
    r = normalize(name) if name is not None else NEWEST
    if r not in RELEASES:
        raise LookupError(f"Triton release '{name}' is not in tritongen's release table; known: {', '.join(RELEASES)}")
    return RELEASES[r]


def behaves(name: str | None, behaviour: str) -> bool:
    return release(name).has(behaviour)


def table_rows() -> list[tuple[str, ...]]:
    """(release, tritonserver, ONNX Runtime, OpenVINO, libtorch, TensorRT, behaviours) for the README."""
    return [(r.name, r.tritonserver or "?", r.onnxruntime or "?", r.openvino or "?", r.libtorch or "?", r.tensorrt or "?",
             ", ".join(r.behaviours)) for r in RELEASES.values()]
