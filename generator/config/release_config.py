"""Config choices that depend on the target Triton release (generator/tables/releases.py), on a rendered context.

``adjust(ctx, runtime, release)`` runs last in render.config_context, for both targets (the embedded twin is
served the same shapes and parameters as production, so our serving tests hit what the release would):

- pytorch backend before 25.11 (``pytorch_interop_abort``): INTER_OP_THREAD_COUNT is not written. The backend
  calls ``at::set_num_interop_threads`` unguarded for every model that sets it; the second call throws and
  aborts tritonserver -- a second model, and also the same model reloaded (model-control API, repository
  polling), so even one model per repository is not safe. Without it libtorch keeps its default inter-op pool,
  which only models that fork (``torch.jit.fork``/``at::launch``) use; INTRA_OP_THREAD_COUNT
  (``at::set_num_threads``, safe to call again) still sets the threads ops use.
- openvino backend with the padding bug (``openvino_padding_bug``, every release so far): with max_batch_size
  > 0 an execution adding up to exactly max_batch_size fails (a stale ``batch_pad_size_``), and with padding off
  every smaller one fails, so no batched config is safe. The model is served without Triton batching:
  max_batch_size 0, the batch dim as -1 in dims, RESHAPE_IO_LAYERS=YES (the IR keeps its dynamic batch dim),
  ENABLE_BATCH_PADDING=NO, no dynamic_batching; each warm-up sample becomes one request of its batch size (a
  batch-N warm-up is otherwise N batch-1 requests run together -- the failing case). The IR then must carry no
  batch layout: auto-complete would turn batching back on (generator/variants/openvino_ir.py).
- openvino, every release (``openvino_missing_param_error_log``): every parameter the backend reads is written,
  "" for unset (the backend skips an empty value and logs nothing), so its log has no error lines of ours.
"""

from __future__ import annotations

from generator.tables.releases import OPENVINO_PARAMETERS, Release

OV_UNSET = {"CPU_EXTENSION_PATH": "", "SKIP_OV_DYNAMIC_BATCHSIZE": "NO", "ENABLE_BATCH_PADDING": "NO",
            "RESHAPE_IO_LAYERS": "NO", "INFERENCE_NUM_THREADS": "", "COMPILATION_NUM_THREADS": "", "HINT_BF16": "",
            "NUM_STREAMS": "", "PERFORMANCE_HINT": ""}


def openvino_unbatched(release: Release, max_batch_size: int) -> bool:
    """Whether an OpenVINO model with ``max_batch_size`` is served unbatched for ``release``."""
    return max_batch_size > 0 and release.has("openvino_padding_bug")


def adjust(ctx: dict, runtime: str | None, release: Release, target: str = "triton") -> dict:
    """Apply the release's workarounds to a config context (in place; returned for chaining). The embedded twin
    also gets ``triton_version`` and ``native_behaviours``: the release it mimics (templates/runner/model.py)."""
    params = ctx["parameters"]
    notes = ctx.setdefault("notes", [])
    if target == "embedded":
        params["triton_version"] = release.name
        params["native_behaviours"] = ",".join(release.behaviours)
    if runtime == "torchscript" and release.has("pytorch_interop_abort") and "INTER_OP_THREAD_COUNT" in params:
        params.pop("INTER_OP_THREAD_COUNT")
        notes.append(f"Triton {release.name}: INTER_OP_THREAD_COUNT not written (its pytorch backend aborts the server "
                     "when a second model, or a reload, sets it; fixed in 25.11)")
    if runtime == "openvino":
        if openvino_unbatched(release, ctx["max_batch_size"]):
            _unbatch(ctx)
            params["RESHAPE_IO_LAYERS"] = "YES"
            params["ENABLE_BATCH_PADDING"] = "NO"
            notes.append(f"Triton {release.name}: openvino served without Triton batching (max_batch_size 0, batch dim "
                         "-1): its backend fails executions that add up to max_batch_size (batch-padding bug)")
        if release.has("openvino_missing_param_error_log"):
            for key in OPENVINO_PARAMETERS:
                params.setdefault(key, OV_UNSET[key])
    return ctx


def _unbatch(ctx: dict) -> None:
    ctx["max_batch_size"] = 0
    ctx["dynamic_batching"] = None
    for t in ctx["inputs"] + ctx["outputs"]:
        t["dims"] = [-1] + list(t["dims"])
        if t.get("format"):  # core's ValidateModelInput: FORMAT_NCHW/NHWC needs exactly 3 dims, the batch dim now counts
            t["format"] = None
            ctx["notes"].append(f"input '{t['name']}': format left out (unbatched: its dims {t['dims']} are 4, "
                                "Triton allows a format on 3 only)")
    warmups = []
    for w in ctx.get("warmup") or []:
        inputs = [{**i, "dims": [w["batch_size"]] + list(i["dims"])} for i in w["inputs"]]
        warmups.append({**w, "batch_size": 1, "inputs": inputs})
    ctx["warmup"] = warmups
