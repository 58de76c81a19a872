"""Variants whose build runs native code that can crash the process (NNCF + OpenVINO's recipe search: SIGSEGV on
timm's hgnetv2_b0 and mobilenetv4_small) are built in a child process. The child runs the ordinary
``build_variant`` against the same cache folder; the parent then reads the stamp it left. A child killed by a
signal fails that variant with one line, and the other variants go on.

The child is started with ``spawn`` (a fresh interpreter: no inherited OpenMP or oneDNN thread pools), reads
the spec from its file and rebuilds only what this variant needs from the cache (the exported ONNX is reused).
A spec not read from a file (``parse_spec`` in memory) is built in-process as before.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

ISOLATED = ("openvino-int8",)  # variants whose build has crashed the process in native code
CRASH_ENV = "TRITONGEN_TEST_CRASH"  # tests: the variant key whose child kills itself with SIGSEGV (fault injection)


class _Quiet:
    """The child's events: its lines go to the variant's build.log; the parent draws the progress."""

    def stage(self, model: str, text: str) -> None: ...

    def log(self, model: str, text: str) -> None: ...

    def done(self, result) -> None: ...


def build(mb, variant, vspec, keep_failed: bool, build_variant, cached_result, result_cls):
    """``build_variant(mb, variant, vspec, keep_failed=...)``, in a child process when the variant is one that
    crashed the process and ``cached_result(mb, variant, vspec)`` has nothing. ``result_cls``: the pipeline's
    VariantResult (this module imports nothing of the pipeline: the caller hands its parts over)."""
    path = getattr(mb.spec, "path", None)
    if variant.key not in ISOLATED or path is None or not Path(path).is_file() or \
            cached_result(mb, variant, vspec) is not None:
        return build_variant(mb, variant, vspec, keep_failed=keep_failed)
    return build_in_child(mb, variant, vspec, keep_failed, build_variant, result_cls)


def _child(spec_path: str, model_name: str, build_dir: str, variant_key: str, vspec_index: int, keep_failed: bool,
           force: bool, error_file: str, model_build_cls, build_variant) -> None:
    import os

    from generator.errors import UserError
    from generator.spec import load_spec
    from generator.variants import REGISTRY

    if os.environ.get(CRASH_ENV) == variant_key:
        os.kill(os.getpid(), signal.SIGSEGV)
    try:
        spec = load_spec(spec_path)
        model = spec.model(model_name)
        mb = model_build_cls(spec, model, Path(build_dir), _Quiet(), force)
        build_variant(mb, REGISTRY[variant_key], model.variants[vspec_index], keep_failed=keep_failed)
    except UserError as e:
        Path(error_file).write_text(json.dumps({"user_error": str(e)}))
        raise SystemExit(1) from None


def build_in_child(mb, variant, vspec, keep_failed: bool, build_variant, result_cls):
    """``build_variant`` in a spawned child; returns the VariantResult the parent reads from the cache stamp."""
    import multiprocessing as mp
    import tempfile

    from generator.config.render import triton_model_name
    from generator.errors import UserError
    from generator.formats.repository import read_json

    index = next(i for i, v in enumerate(mb.model.variants) if v is vspec or v.name == vspec.name)
    with tempfile.TemporaryDirectory(prefix="tritongen-child-") as tmp:
        error_file = str(Path(tmp) / "error.json")
        mb.events.stage(mb.model.name, f"building {variant.key} (in a child process)")
        proc = mp.get_context("spawn").Process(
            target=_child, args=(str(mb.spec.path), mb.model.name, str(mb.dir.parent), variant.key, index, keep_failed,
                                 mb.force, error_file, type(mb), build_variant), daemon=True)
        proc.start()
        try:
            proc.join()
        except BaseException:  # Ctrl-C: the child got it too; do not leave it running
            proc.terminate()
            proc.join(10)
            raise
        code = proc.exitcode
        if Path(error_file).is_file():
            raise UserError(json.loads(Path(error_file).read_text())["user_error"])
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        reason = (f"{variant.key}: the build process died of {name} in native code (NNCF/OpenVINO); the other variants "
                  "go on. Try options {search: false}, or report the model")
        mb.events.log(mb.model.name, reason)
        return result_cls(model=mb.model.name, variant=variant.key,
                          triton_name=triton_model_name(mb.model.name, variant.key), status="failed", reason=reason)
    written = read_json(mb.dir / variant.key / "stamp.json").get("result")  # the child's stamp: every status
    if written is None:  # the child died without one (a bug: its traceback shows): once more, here
        return build_variant(mb, variant, vspec, keep_failed=keep_failed)
    return result_cls(**written)
