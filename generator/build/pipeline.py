"""The orchestrator: spec -> (load, export, variants, verify, render, validate) -> repository.

Reads top to bottom: for each model, a model key (checkpoint sha256 + spec + tool versions);
for each variant, an artifact cached under ``build/<model>/<variant>/`` with that key, so a
re-run with nothing changed rebuilds nothing and never loads torch. Configs are rendered every
run (cheap), parsed with Triton's schema and checked against the artifact. The repository is
staged and swapped in whole (see repository.py).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from generator.tables import isa
from generator.formats.classes import write_label_files
from generator.build import isolate
from generator.build.quiet import quiet_exporters, quiet_libraries
from generator.errors import UserError, VariantFailed, reraise_if_interrupted
from generator.loading.inputs import Point, call_plan, make_inputs, torch_forward, verification_points
from generator.loading.source import load_module, local_sources, weights_fingerprint
from generator.config.render import cap_to_member, config_context, render, template_for, triton_model_name
from generator.formats.repository import HashCache, Staging, check_output, copy_tree, digest, file_entries, read_json, tool_versions, write_json, write_json_if_changed
from generator.spec import ModelSpec, Spec, VariantSpec
from generator.config.rules import rule_error
from generator.config.validate import check_config, check_model_dir, parse_config
from generator.variants import REGISTRY, BuildContext, Skip, Variant
from generator.stages.export import export_note
from generator.stages.verify import check_references, gate_reason, verify
from generator.serve import standalone_runtime_files

STAMP = "stamp.json"


@dataclass
class VariantResult:
    model: str
    variant: str
    triton_name: str
    status: str  # built | cached | failed | skipped
    reason: str = ""
    verification: dict | None = None
    info: dict = field(default_factory=dict)
    bytes: int = 0
    build_s: float = 0.0
    verify_s: float = 0.0

    @property
    def written(self) -> bool:
        return self.status in ("built", "cached")

    @property
    def max_abs(self) -> float | None:
        return (self.verification or {}).get("max_abs")


@dataclass
class BuildReport:
    output: Path
    results: list[VariantResult]
    changed: bool
    timings: dict = field(default_factory=dict)

    @property
    def failed(self) -> list[VariantResult]:
        return [r for r in self.results if r.status == "failed"]


class Events:
    """What the pipeline tells the outside world (the CLI draws it with rich)."""

    def stage(self, model: str, text: str) -> None: ...

    def log(self, model: str, text: str) -> None: ...

    def done(self, result: VariantResult) -> None: ...


class ModelBuild:
    """Lazy per-model state shared by its variants: module, exported ONNX, references."""

    def __init__(self, spec: Spec, model: ModelSpec, build_dir: Path, events: Events, force: bool,
                 hashes: HashCache | None = None):
        self.spec, self.model, self.events, self.force = spec, model, events, force
        self.hashes = hashes if hashes is not None else HashCache(None)
        self.dir = build_dir / model.name
        self._module = self._plan = None
        self.weights = ""  # the loaded module's weights_fingerprint, recorded with the export
        self._onnx: Path | None = None
        self.export_info: dict = {}  # what export_onnx recorded (exporter, a dim it fixed, a branch a trace froze)
        self._refs: dict[Point, dict] = {}
        self._calibration: list[dict] | None = None
        self.timings: dict[str, float] = {}
        hashes = {}
        for p in model.source.files():
            if not p.is_file():
                field_ = "checkpoint" if p == model.source.checkpoint else model.source.kind
                raise UserError(f"{model.where}.source.{field_}: file '{p}' not found; check the path "
                                "(relative to the spec file)")
            hashes[str(p.name)] = self.hashes.sha256(p)
        self.checkpoint_sha256 = hashes
        self.inputs_sha256 = model_inputs_hashes(spec, model, self.hashes)
        self.key = digest("model", model.artifact_hash(), hashes, self.inputs_sha256, tool_versions())

    def module(self):
        if self._module is None:
            self.events.stage(self.model.name, "loading PyTorch model")
            t = time.perf_counter()
            module = load_module(self.model, self.spec.root)
            self._plan = call_plan(module, self.model)  # inputs by name, checked against forward() up front
            if self._plan.only_kwargs:
                self.events.log(self.model.name, "inputs " + ", ".join(self._plan.only_kwargs) + " match no named "
                                "parameter of forward() and go into its **kwargs: check their spelling")
            self._module = module
            self.timings["load_s"] = time.perf_counter() - t
            self._check_weights(module)
            self._check_forward()
        return self._module

    def _check_weights(self, module) -> None:
        """The weights must be the ones the cached ONNX was exported from (and a spawned variant build's the
        parent's): a factory without a checkpoint that initialises at random gives new weights on every call."""
        self.weights = weights_fingerprint(module)
        st = {} if self.force else read_json(self.dir / "export" / STAMP)  # --force: the ONNX is exported again
        was = st.get("info", {}).get("weights") if st.get("key") == self.key else None
        if was and self.weights and was != self.weights:
            src = self.model.source
            raise UserError(f"{self.model.where}.source: {src.factory or src.kind} gave other weights than when the "
                            "cached ONNX was exported (a factory without a checkpoint, initialised at random?); give a "
                            "checkpoint or seed the factory (torch.manual_seed), then build again with --force")

    def _check_forward(self) -> None:
        """The module must accept the declared inputs and return the declared outputs at every point."""
        refs = {p: self.reference(make_inputs(self.model, p, seed=0), p) for p in verification_points(self.model)}
        for line in check_references(self.model, refs):
            self.events.log(self.model.name, f"warning: {line}")

    def reference(self, feeds: dict, point: Point) -> dict:
        module = self.module()
        return torch_forward(module, self.model, feeds, point, plan=self._plan, root=self.spec.root)

    def onnx(self) -> Path:
        if self._onnx is not None:
            return self._onnx
        from generator.stages.export import export_onnx

        d = self.dir / "export"
        out = d / "model.onnx"
        stamp = d / STAMP
        if not self.force and out.is_file() and (st := read_json(stamp)).get("key") == self.key:
            self._onnx, self.export_info = out, st.get("info", {})
            return out
        module = self.module()
        self.events.stage(self.model.name, "exporting ONNX")
        t = time.perf_counter()
        tmp = self.dir / "export.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        info = export_onnx(module, self.model, tmp / "model.onnx", lambda s: self.events.log(self.model.name, s))
        info["export_s"], info["weights"] = time.perf_counter() - t, self.weights
        self.timings["export_s"] = info["export_s"]
        write_json(tmp / STAMP, {"key": self.key, "info": info})
        shutil.rmtree(d, ignore_errors=True)
        tmp.rename(d)
        self._onnx, self.export_info = out, info
        return out

    def onnx_for(self, info: dict) -> Path:
        """``onnx()`` for one variant: a branch the trace froze goes into the variant's ``info`` (build summary)."""
        out = self.onnx()
        if export_note(self.export_info) == self.export_info.get("traced_branch"):  # not when a fixed dim explains more
            info["traced_branch"] = self.export_info["traced_branch"]
        return out

    def calibration(self) -> list[dict]:
        """Read (or draw) once per model: every INT8 variant calibrates on the same samples."""
        if self._calibration is None:
            from generator.loading.calibration import calibration_samples

            self._calibration = calibration_samples(self.model, self.spec.root,
                                                    lambda s: self.events.log(self.model.name, s))
        return self._calibration


def model_inputs_hashes(spec: Spec, model: ModelSpec, hashes: HashCache) -> dict:
    """What else the artifacts are made from, by content: the factory's source files (and the local modules they
    import from the spec's folder), the calibration data (a file, or every file of a folder), and the preprocessing."""
    root = spec.root
    out: dict = {}
    src = model.source
    if src.kind == "factory":
        mod = src.factory.split(":")[0]
        out["sources"] = {str(p.relative_to(root)): hashes.sha256(p) for p in local_sources(mod, root)}
    data = model.calibration.data
    if data is not None:
        if data.is_file():
            out["calibration"] = hashes.sha256(data)
        elif data.is_dir():
            out["calibration"] = {str(p.relative_to(data)): hashes.sha256(p)
                                  for p in sorted(data.rglob("*")) if p.is_file()}
        out["preprocess"] = model.raw.get("preprocess")  # how calibration/verification samples are made
    for key, path in (("verify_data", model.verify.data), ("verify_labels", model.verify.labels)):  # the gate's set
        if path is not None and path.is_file():
            out[key] = hashes.sha256(path)
        elif path is not None and path.is_dir():
            out[key] = {str(p.relative_to(path)): hashes.sha256(p) for p in sorted(path.rglob("*")) if p.is_file()}
    return out


CONFIG_ONLY_OPTIONS = ("trt_accelerator",)  # change the config, not the artifact


def _variant_key(mb: ModelBuild, variant: Variant, vspec: VariantSpec) -> str:
    options = {k: v for k, v in vspec.options.items() if k not in CONFIG_ONLY_OPTIONS}
    extra = None
    if variant.runtime == "tensorrt":  # profiles follow triton.dynamic_batching (the opt batch)
        from generator.stages.tensorrt import profiles_for

        extra = [p.as_dict() for p in profiles_for(mb.model, vspec)]
    if variant.revision:
        extra = {"revision": variant.revision, "extra": extra}
    return digest("variant", mb.key, variant.key, options, vspec.verify, extra)


def cached_result(mb: ModelBuild, variant: Variant, vspec: VariantSpec) -> VariantResult | None:
    """The verified artifact already built for this key, or None (failed and skipped variants are tried again)."""
    vdir = mb.dir / variant.key
    stamp = {} if mb.force else read_json(vdir / STAMP)
    if stamp.get("key") == _variant_key(mb, variant, vspec) and stamp.get("status") == "built" and (vdir / "artifact").is_dir():
        return VariantResult(**{**stamp["result"], "status": "cached"})
    return None


def build_variant(mb: ModelBuild, variant: Variant, vspec: VariantSpec, keep_failed: bool = False) -> VariantResult:
    model = mb.model
    name = triton_model_name(model.name, variant.key)
    vdir = mb.dir / variant.key
    key = _variant_key(mb, variant, vspec)
    stamp_path = vdir / STAMP
    if (cached := cached_result(mb, variant, vspec)) is not None:
        return cached
    tmp = mb.dir / f"{variant.key}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "artifact").mkdir(parents=True)
    (tmp / "work").mkdir()
    log_lines: list[str] = []

    def log(s: str) -> None:
        log_lines.append(s)
        mb.events.log(model.name, f"{variant.key}: {s}")

    ctx = BuildContext(
        model=model, variant=vspec, artifact_dir=tmp / "artifact", work_dir=tmp / "work",
        base_onnx=lambda: mb.onnx_for(ctx.info), torch_module=mb.module, calibration=mb.calibration, log=log, reference=mb.reference,
    )
    result = VariantResult(model=model.name, variant=variant.key, triton_name=name, status="built")
    mb.events.stage(model.name, f"building {variant.key}")
    t = time.perf_counter()
    try:
        # forward() is checked against the declared outputs when the module is first loaded (by the export,
        # the build or the verification): a variant that skips (no TensorRT here) never loads torch
        with quiet_libraries():
            variant.build(ctx)
        result.build_s = time.perf_counter() - t
        mb.events.stage(model.name, f"verifying {variant.key}")
        t = time.perf_counter()
        run = variant.runner(ctx.artifact_dir, model, vspec.options)
        tol = variant.tolerance_for(model, vspec)
        v = verify(run, mb.reference, model, tol)
        result.verify_s = time.perf_counter() - t
        result.verification = v.to_dict()
        if not v.passed:
            result.status = "failed"
            result.reason = gate_reason(v, ctx.info.get("traced_branch") or export_note(mb.export_info))
            log(result.reason)
    except Skip as e:
        result.status, result.reason = "skipped", str(e)
    except VariantFailed as e:
        result.status, result.reason = "failed", str(e)
    except UserError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except Exception as e:  # anything else a stage raises fails this variant only; the others go on
        import traceback

        reraise_if_interrupted(e)
        first = (str(e).strip().splitlines() or [""])[0][:200]
        result.status = "failed"
        result.reason = f"{variant.key} stage raised {type(e).__name__}: {first}".rstrip(": ")
        result.build_s = result.build_s or time.perf_counter() - t
        log(result.reason)
        log_lines.append("".join(traceback.format_exception(e)))
        shutil.rmtree(tmp / "artifact", ignore_errors=True)  # possibly half-written: never staged
    result.info = ctx.info
    result.bytes = sum(p.stat().st_size for p in (tmp / "artifact").rglob("*") if p.is_file())
    if result.status == "failed" and not keep_failed:
        shutil.rmtree(tmp / "artifact", ignore_errors=True)
    (tmp / "build.log").write_text("\n".join(log_lines) + "\n")
    (tmp / "reproduce.sh").write_text(ctx.reproduce_script or _reproduce(mb, variant, vspec, ctx.reproduce))
    stamp_result = {k: v for k, v in result.__dict__.items()}
    if result.status == "skipped" and _same_skip(stamp_path, key, result):
        shutil.rmtree(tmp, ignore_errors=True)  # tried again, skipped again for the same reason: keep the old
        return result
    write_json(tmp / STAMP, {"key": key, "status": result.status, "result": stamp_result})
    shutil.rmtree(vdir, ignore_errors=True)
    tmp.rename(vdir)
    return result


def _same_skip(stamp_path: Path, key: str, result: VariantResult) -> bool:
    stamp = read_json(stamp_path)
    return stamp.get("key") == key and stamp.get("status") == "skipped" and (stamp.get("result") or {}).get("reason") == result.reason


def _reproduce(mb: ModelBuild, variant: Variant, vspec: VariantSpec, lines: list[str]) -> str:
    spec = mb.spec.path
    body = "\n".join(lines) if lines else "# (no separate command: see the build step in generator/variants/)"
    return (
        "#!/usr/bin/env bash\n"
        f"# Reproduce variant '{variant.key}' of model '{mb.model.name}'.\n"
        "# The whole build, exactly as tritongen ran it:\n"
        f"#   tritongen build {spec} --only {mb.model.name} --force\n"
        "# The equivalent individual steps (inputs from ../export/model.onnx):\n"
        "set -euo pipefail\n"
        f"cd \"$(dirname \"$0\")/work\"\n{body}\n"
    )


def _target_release(name: str | None, target: str):
    """The release the repository targets (generator/tables/releases.py): given, else 24.10 embedded, else the newest."""
    from generator.tables import releases

    try:
        return releases.release(name or (releases.EMBEDDED if target == "embedded" else None))
    except LookupError as e:
        raise UserError(f"--triton-version / triton_version: {e}")


def _verify_on_target(mb: ModelBuild, variant: Variant, vspec: VariantSpec, r: VariantResult, rel) -> None:
    """Verify an ONNX Runtime / OpenVINO variant again with the runtime ``rel`` ships (generator/stages/target_verify.py);
    cached beside the variant's build; a failure there means the variant does not ship for that release."""
    from generator.stages import target_verify as tv
    from generator.config.render import native_parameters

    if r.written and variant.runtime == "torchscript":  # said once, in the log and the manifest: never silently
        r.info = {**r.info, "target_verification": {"release": rel.name, "runtime": "libtorch",
                                                    "unavailable": tv.LIBTORCH_NOTE.format(version=rel.libtorch or "?")}}
        mb.events.log(mb.model.name, f"{variant.key}: target {rel.name}: {r.info['target_verification']['unavailable']}")
    if not r.written or variant.runtime not in tv.RUNTIMES:
        return
    req = rel.pip_requirement(variant.runtime) or f"{variant.runtime}-unknown"
    cache = mb.dir / variant.key / f"target-{req.replace('==', '-')}.json"
    key = _variant_key(mb, variant, vspec)
    stamp = read_json(cache)
    res = stamp.get("result") if stamp.get("key") == key else None
    if res is None:
        mb.events.stage(mb.model.name, f"verifying {variant.key} on Triton {rel.name}'s {variant.runtime}")
        params, level = native_parameters(mb.model, variant, vspec)
        res = tv.verify_on_target(rel, variant.runtime, mb.dir / variant.key / "artifact" / variant.filename, mb.model,
                                  tv.session_settings(variant.runtime, params, level, vspec.options), mb.reference,
                                  variant.tolerance_for(mb.model, vspec))
        if "unavailable" not in res:  # offline now may be online next time
            write_json(cache, {"key": key, "result": res})
    r.info = {**r.info, "target_verification": {"release": rel.name, **res}}
    line = tv.summary_line(res, rel, r.verification)
    mb.events.log(mb.model.name, f"{variant.key}: {line}")
    if res.get("passed") is False:
        r.status, r.reason = "failed", line


def _stage_model_dir(staging: Staging, mb: ModelBuild, variant: Variant, vspec: VariantSpec, result: VariantResult,
                     target: str, templates: Path | None, release: str | None = None) -> None:
    model = mb.model
    ctx = config_context(model, variant, vspec, target=target, spec_name=mb.spec.path.name, release=release)
    for note in ctx.get("notes", []):
        mb.events.log(model.name, note)
    text = render(ctx, template_for(variant, target), templates)
    where = f"{result.triton_name}/config.pbtxt"
    cfg, problem = parse_config(text, where)
    if problem:
        raise UserError(f"{problem} (rendered from template {template_for(variant, target)}; fix the template)")
    problems = check_config(cfg, text, where, result.triton_name)
    mdir = staging.dir / result.triton_name
    vdir_out = mdir / "1"
    copy_tree(mb.dir / variant.key / "artifact", vdir_out)
    if target == "embedded":
        shutil.copy2(_template_file(templates, "runner", "model.py"), vdir_out / "model.py")
        for name, path in standalone_runtime_files().items():  # the runtime layer and the backend table it reads
            shutil.copy2(path, vdir_out / f"tritongen_{name}.py")
    (mdir / "config.pbtxt").write_text(text)
    write_label_files(mdir, model.outputs)
    files = file_entries(vdir_out, mb.hashes)
    checked = digest("validated", text, files)  # the same config over the same bytes: validated once
    if not mb.hashes.is_validated(checked):
        problems += check_model_dir(mdir, release=ctx["release"]).problems
        if rule := rule_error(problems):  # a native backend's rule: the spec's settings (or our artifact) broke it
            raise UserError(rule)
        if not problems:
            mb.hashes.mark_validated(checked)
    if not problems:
        staging.validated.add(result.triton_name)
    if problems:
        raise AssertionError(f"tritongen rendered an invalid config (a bug): {problems[0]}")
    manifest = {
        "model": model.name,
        "variant": variant.key,
        "triton_name": result.triton_name,
        "target": target,
        "triton_version": ctx["release"],  # the release its config was rendered for (generator/tables/releases.py)
        "inputs": [t.name for t in model.inputs],
        "outputs": [t.name for t in model.outputs],  # the artifact's outputs, in order (rule libtorch-output-names)
        "status": result.status if result.status != "cached" else "built",
        "gate": "passed" if result.status in ("built", "cached") else result.status,
        "reason": result.reason,
        # what the artifact computes in: the variant's, unless its build chose another (OpenVINO bf16)
        "precision": result.info.get("compute_precision", variant.precision),
        "devices": list(variant.devices),
        "notes": ctx.get("notes", []),
        "isa": isa.for_manifest(result.info),  # the CPU class the gate was passed on (generator/tables/isa.py)
        "spec": str(mb.spec.path),
        "spec_hash": model.spec_hash(),
        "checkpoint_sha256": mb.checkpoint_sha256,
        "tool_versions": tool_versions(),
        "verification": result.verification,
        "info": result.info,
        "files": files,
    }
    write_json(mdir / "manifest.json", manifest)


def _template_file(templates: Path | None, *parts: str) -> Path:
    """A file of ``--templates DIR`` when it has one, else tritongen's own."""
    from generator.config.render import DEFAULT_TEMPLATES

    own = templates.joinpath(*parts) if templates else None
    return own if own is not None and own.is_file() else DEFAULT_TEMPLATES.joinpath(*parts)


def _ensemble_variant(mb: ModelBuild, written: list[VariantResult]) -> str | None:
    """The variant the ensemble feeds (``preferred_variant``, else ``preprocess.variant``, else the first
    written), or None (logged)."""
    keys = [r.variant for r in written]
    chosen = mb.model.preferred_variant or mb.model.preprocess.variant or (keys[0] if keys else None)
    if chosen not in keys:
        mb.events.log(mb.model.name, f"no ensemble: variant '{chosen}' was not written")
        return None
    return chosen


def _stage_helper_models(staging: Staging, mb: ModelBuild, chosen: str, templates: Path | None, models) -> None:
    """Write the ensemble's own models: ``models`` is [(context, template, runner folder or None, finish)],
    a python-backend runner copied from ``templates/<folder>/model.py`` and ``finish(model_dir)`` for extras."""
    model = mb.model
    member = staging.dir / triton_model_name(model.name, chosen) / "config.pbtxt"  # its rendered max_batch_size
    cfg = parse_config(member.read_text(), member.parent.name)[0] if member.is_file() else None
    cap = None if cfg is None else cfg.max_batch_size
    for ctx, template, runner, finish in models:
        note = cap_to_member(ctx, cap, triton_model_name(model.name, chosen))
        if note:
            mb.events.log(model.name, f"{ctx['name']}: {note}")
        text = render(ctx, template, templates)
        where = f"{ctx['name']}/config.pbtxt"
        cfg, problem = parse_config(text, where)
        if problem:
            raise UserError(f"{problem} (rendered from template {template}; fix the template)")
        mdir = staging.dir / ctx["name"]
        (mdir / "1").mkdir(parents=True, exist_ok=True)
        (mdir / "config.pbtxt").write_text(text)
        if runner:
            shutil.copy2(_template_file(templates, runner, "model.py"), mdir / "1" / "model.py")
        if finish:
            finish(mdir)
        problems = check_config(cfg, text, where, ctx["name"]) + check_model_dir(mdir).problems
        if problems:
            raise AssertionError(f"tritongen rendered an invalid config (a bug): {problems[0]}")
        write_json(mdir / "manifest.json", {"model": model.name, "variant": ctx["variant"], "triton_name": ctx["name"],
                                            "feeds": triton_model_name(model.name, chosen), "status": "built",
                                            "spec_hash": model.spec_hash(), "tool_versions": tool_versions()})


def _stage_ensemble(staging: Staging, mb: ModelBuild, written: list[VariantResult], templates: Path | None,
                    target: str = "triton") -> None:
    """``<model>__preprocess`` (python backend, CPU) and ``<model>__ensemble`` (bytes -> logits). The embedded
    target runs the preprocessing of string images in tritongen's numpy<2 + Pillow stub environment."""
    from generator.config.render import ensemble_context, image_input, preprocess_context

    chosen = _ensemble_variant(mb, written)
    if chosen is None:
        return
    env = None
    if target == "embedded" and image_input(mb.model)["data_type"] == "TYPE_STRING":
        from generator.serve.tools import ensure_stub_env

        env = str(ensure_stub_env())
    name = mb.spec.path.name
    _stage_helper_models(staging, mb, chosen, templates, [
        (preprocess_context(mb.model, name, env), "preprocess.pbtxt.j2", "preprocess", None),
        (ensemble_context(mb.model, chosen, name), "ensemble.pbtxt.j2", None,
         lambda mdir: write_label_files(mdir, mb.model.outputs)),
    ])


def build(spec: Spec, out: Path, build_dir: Path, only: tuple[str, ...] = (), target: str = "triton",
          templates: Path | None = None, force: bool = False, keep_failed: bool = False,
          events: Events | None = None, lock_wait_s: float = 0.0, triton_version: str | None = None) -> BuildReport:
    """``lock_wait_s``: another build holding the output's lock (see repository.OutputLock) is waited for
    this long; 0 fails at once with a UserError."""
    quiet_exporters()
    events = events or Events()
    rel = _target_release(triton_version or spec.triton_version, target)
    if templates is not None and not Path(templates).is_dir():
        raise UserError(f"--templates {templates}: not a folder; pass a folder holding your *.pbtxt.j2 templates")
    models = [spec.model(n) for n in only] if only else list(spec.models)
    for m in models:  # reading the spec loads no tokenizer: what only a loaded one can tell is checked here
        if m.preprocess is not None and hasattr(m.preprocess, "tokenizer"):
            from generator.loading.hf import check_tokenizer

            check_tokenizer(m)
    build_dir = Path(build_dir).resolve()
    out = Path(out).resolve()
    check_output(out, build_dir, spec.root)
    owned = None
    if only:
        owned = {triton_model_name(m.name, v) for m in models for v in (*REGISTRY, "preprocess", "ensemble", "tokenizer")}
    staging = Staging(out, owned, lock_wait_s=lock_wait_s, on_wait=lambda msg: events.log(out.name, msg),
                      cache=build_dir)
    hashes = HashCache(build_dir / "hashes.json")
    results: list[VariantResult] = []
    timings: dict = {}
    try:
        for m in models:
            mb = ModelBuild(spec, m, build_dir, events, force, hashes)
            for vs in m.variants:
                variant = REGISTRY[vs.name]
                r = isolate.build(mb, variant, vs, keep_failed, build_variant, cached_result, VariantResult)
                results.append(r)
                if target == "triton":
                    _verify_on_target(mb, variant, vs, r, rel)
                if r.written or (keep_failed and r.status == "failed" and (mb.dir / vs.name / "artifact").is_dir()):
                    _stage_model_dir(staging, mb, variant, vs, r, target, templates, rel.name)
                events.done(r)
            if m.preprocess is not None and hasattr(m.preprocess, "tokenizer"):  # text (generator/loading/hf.py)
                _stage_text_ensemble(staging, mb, [r for r in results if r.model == m.name and r.written],
                                     templates, target)
            elif m.preprocess is not None:
                _stage_ensemble(staging, mb, [r for r in results if r.model == m.name and r.written], templates, target)
            timings[m.name] = mb.timings
            write_json_if_changed(mb.dir / "manifest.json", {  # a no-op run writes nothing
                "model": m.name, "spec": str(spec.path), "spec_hash": m.spec_hash(),
                "checkpoint_sha256": mb.checkpoint_sha256, "inputs_sha256": mb.inputs_sha256,
                "tool_versions": tool_versions(),
                "variants": [{**r.__dict__, "status": "built" if r.status == "cached" else r.status}
                             for r in results if r.model == m.name],
            })
        hashes.save()
        changed = not staging.unchanged()
        if changed:
            staging.commit()
        else:
            staging.discard()
    except BaseException:
        staging.discard()
        raise
    return BuildReport(output=out, results=results, changed=changed, timings=timings)


def _stage_text_ensemble(staging: Staging, mb: ModelBuild, written: list[VariantResult], templates: Path | None,
                         target: str = "triton") -> None:
    """``<model>__tokenizer`` (python backend, CPU, strings -> token ids) and ``<model>__ensemble``
    (strings -> outputs). The embedded target runs the tokenizer in tritongen's numpy<2 stub environment."""
    from generator.loading.hf import pad_token, write_tokenizer
    from generator.config.render import text_ensemble_context, tokenizer_context

    chosen = _ensemble_variant(mb, written)
    if chosen is None:
        return
    pre = mb.model.preprocess
    env = None
    if target == "embedded":
        from generator.serve.tools import ensure_stub_env

        env = str(ensure_stub_env())
    where = f"{mb.model.where}.preprocess.text.tokenizer"
    name = mb.spec.path.name
    _stage_helper_models(staging, mb, chosen, templates, [
        (tokenizer_context(mb.model, name, target, env, pad_token(pre.tokenizer)), "tokenizer.pbtxt.j2", "tokenizer",
         lambda mdir: write_tokenizer(pre.tokenizer, mdir / "1" / "tokenizer", where)),
        (text_ensemble_context(mb.model, chosen, name), "ensemble.pbtxt.j2", None,
         lambda mdir: write_label_files(mdir, mb.model.outputs)),
    ])