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
  > 1 an execution adding up to exactly max_batch_size after a padded one fails (a stale ``batch_pad_size_``), and
  with padding off every smaller one fails, so no config that batches is safe. The model is served at
  max_batch_size 1: every execution is one request of batch 1 = max_batch_size, so the backend never pads (the pad
  stays 0 from its constructor) and compiles the IR at batch 1 (``ov::set_batch``). No dynamic_batching,
  ENABLE_BATCH_PADDING=NO, warm-ups of batch 1; the dims and the input ``format`` stay as a batching model's, so
  Triton's clients (image_client.py, perf_analyzer without --shape, Model Analyzer) take it like any other. The IR
  carries a batch ('N') layout on every port (generator/variants/openvino_ir.py), as the backend's auto-complete
  wants for max_batch_size > 0. (Until this round: max_batch_size 0 with dims [-1, ...], which image_client.py
  refuses: 4 dims without a batch dimension, and no format allowed.)
- openvino, every release (``openvino_missing_param_error_log``): every parameter the backend reads is written,
  "" for unset (the backend skips an empty value and logs nothing), so its log has no error lines of ours.
"""

from __future__ import annotations

from generator.tables.releases import OPENVINO_PARAMETERS, Release

OV_UNSET = {"CPU_EXTENSION_PATH": "", "SKIP_OV_DYNAMIC_BATCHSIZE": "NO", "ENABLE_BATCH_PADDING": "NO",
            "RESHAPE_IO_LAYERS": "NO", "INFERENCE_NUM_THREADS": "", "COMPILATION_NUM_THREADS": "", "HINT_BF16": "",
            "NUM_STREAMS": "", "PERFORMANCE_HINT": ""}


def openvino_batch_one(release: Release, max_batch_size: int) -> bool:
    """Whether an OpenVINO model with ``max_batch_size`` is served at max_batch_size 1 for ``release``."""
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
        if openvino_batch_one(release, ctx["max_batch_size"]):
            was = ctx["max_batch_size"]
            cap_max_batch(ctx, 1)
            params["ENABLE_BATCH_PADDING"] = "NO"
            notes.append(f"Triton {release.name}: openvino served at max_batch_size 1 (spec: {was}), no Triton batching: "
                         "its backend fails an execution adding up to max_batch_size after a padded one (batch-padding "
                         "bug); one request of batch 1 never pads")
        if release.has("openvino_missing_param_error_log"):
            for key in OPENVINO_PARAMETERS:
                params.setdefault(key, OV_UNSET[key])
    return ctx


def cap_max_batch(ctx: dict, cap: int) -> None:
    """Lower a context's max_batch_size to ``cap``: preferred batch sizes and warm-ups above it go, and at 1 the
    dynamic batcher (nothing to batch). Also an ensemble's, to its member's (render.cap_to_member)."""
    ctx["max_batch_size"] = cap
    db = ctx.get("dynamic_batching")
    if db:
        kept = [b for b in db.get("preferred_batch_size") or [] if b <= cap]
        ctx["dynamic_batching"] = None if cap == 1 else {**db, "preferred_batch_size": kept}
    ctx["warmup"] = [w for w in ctx.get("warmup") or [] if w["batch_size"] <= cap]
