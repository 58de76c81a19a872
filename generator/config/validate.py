"""Check configs with Triton's own schema, then the semantics the schema cannot see.

``tritongen validate DIR`` runs the same checks as the build on any repository, hand-written
ones too. Each problem is one line: ``<model>/config.pbtxt[:line:col]: what is wrong; the fix``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from generator.tables import backends, dtypes
from generator.formats.pbtxt import parse_config  # noqa: F401 (validate.parse_config: the public name)


@dataclass
class ModelReport:
    name: str
    config: object | None = None  # model_config_pb2.ModelConfig
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems




def engine_of(cfg) -> str:
    if cfg.platform == "ensemble":
        return "ensemble"
    return cfg.backend or cfg.platform


def check_config(cfg, text: str, where: str, dir_name: str | None = None) -> list[str]:
    """Semantic checks on a parsed config."""
    from tritonclient.grpc import model_config_pb2 as pb

    p: list[str] = []
    if dir_name is not None and cfg.name and cfg.name != dir_name:
        p.append(f"{where}: name \"{cfg.name}\" differs from its folder '{dir_name}'; make them equal")
    if not cfg.platform and not cfg.backend:
        p.append(f"{where}: neither platform nor backend is set; add one (e.g. platform: \"onnxruntime_onnx\")")
    p += _engine_names(cfg, where)
    if not re.search(r"^\s*max_batch_size\s*:", text, re.M):
        p.append(f"{where}: max_batch_size is not written; write it explicitly (0 disables batching)")
    mbs = cfg.max_batch_size
    if mbs < 0:
        p.append(f"{where}: max_batch_size {mbs} is negative; use 0 or more")
    if cfg.HasField("dynamic_batching"):
        if mbs == 0:
            p.append(f"{where}: dynamic_batching needs max_batch_size > 0; raise max_batch_size or remove dynamic_batching")
        for s in cfg.dynamic_batching.preferred_batch_size:
            if s <= 0:
                p.append(f"{where}: dynamic_batching.preferred_batch_size {s} must be positive")
            elif mbs > 0 and s > mbs:
                p.append(f"{where}: dynamic_batching.preferred_batch_size {s} > max_batch_size {mbs}; "
                         "lower it or raise max_batch_size")
    if engine_of(cfg) != "ensemble" and not cfg.input:
        p.append(f"{where}: no input declared; declare the model's inputs")
    if not cfg.output:
        p.append(f"{where}: no output declared; declare the model's outputs")
    names = [t.name for t in cfg.input] + [t.name for t in cfg.output]
    for n in sorted({n for n in names if names.count(n) > 1}):
        p.append(f"{where}: tensor name '{n}' is declared twice")
    for kind, tensors in (("input", cfg.input), ("output", cfg.output)):
        for t in tensors:
            if t.data_type == pb.TYPE_INVALID:
                p.append(f"{where}: {kind} '{t.name}' has no data_type; set one (e.g. TYPE_FP32)")
            if not t.dims and not t.HasField("reshape"):
                p.append(f"{where}: {kind} '{t.name}' has no dims; give its shape without the batch dim")
            for d in t.dims:
                if d == 0 or d < -1:
                    p.append(f"{where}: {kind} '{t.name}' dim {d} is invalid; use -1 (dynamic) or a positive size")
    inputs = {t.name: t for t in cfg.input}
    for w in cfg.model_warmup:
        if mbs > 0 and w.batch_size > mbs:
            p.append(f"{where}: model_warmup '{w.name}' batch_size {w.batch_size} > max_batch_size {mbs}; lower it")
        if w.batch_size < 1:
            p.append(f"{where}: model_warmup '{w.name}' batch_size must be >= 1")
        for key, v in w.inputs.items():
            if key not in inputs:
                p.append(f"{where}: model_warmup '{w.name}' names input '{key}' which is not declared")
            elif any(d < 0 for d in v.dims):
                p.append(f"{where}: model_warmup '{w.name}' input '{key}' has dynamic dims {list(v.dims)}; give sizes")
            elif v.data_type != inputs[key].data_type:
                p.append(f"{where}: model_warmup '{w.name}' input '{key}' data_type differs from the input's")
    for g in cfg.instance_group:
        if g.count < 0:
            p.append(f"{where}: instance_group count {g.count} is negative")
    return p


def _engine_names(cfg, where: str) -> list[str]:
    """An unknown platform (Triton's are a closed set) and a backend name one edit from a known one (a custom
    backend is any other name: its library in the backend directory)."""
    import difflib

    from generator.tables import backends as B

    known = sorted({n for b in B.BACKENDS.values() for n in b.config_names} | set(B.OTHER_TRITON_BACKENDS))
    p = []
    if cfg.platform and not cfg.backend and cfg.platform not in B.TRITON_PLATFORMS:
        near = difflib.get_close_matches(cfg.platform, B.TRITON_PLATFORMS, n=1, cutoff=0.5)
        p.append(f"{where}: platform \"{cfg.platform}\" is not one Triton knows "
                 f"({'did you mean ' + repr(near[0]) + '? ' if near else ''}platforms: {', '.join(B.TRITON_PLATFORMS)})")
    if cfg.backend and cfg.backend not in known:
        b = cfg.backend.lower()
        near = [k for k in known if len(b) >= 3 and (b in k or k in b)] or \
            difflib.get_close_matches(b, known, n=1, cutoff=0.8)
        if near:
            p.append(f"{where}: backend \"{cfg.backend}\" is not a backend Triton ships; did you mean \"{near[0]}\"? "
                     f"(a custom backend needs libtriton_{cfg.backend}.so in the server's backend directory)")
    return p


def _dtype_name(v: int) -> str:
    from tritonclient.grpc import model_config_pb2 as pb

    return pb.DataType.Name(v)


def check_model_dir(model_dir: Path, repo_models: dict[str, object] | None = None, release: str | None = None) -> ModelReport:
    """Parse and check one model folder, including its artifact when tritongen knows the format."""
    rep = ModelReport(name=model_dir.name)
    cfg_path = model_dir / "config.pbtxt"
    where = f"{model_dir.name}/config.pbtxt"
    if cfg_path.is_dir():
        rep.problems.append(f"{where}: is a folder; config.pbtxt must be the model's config file")
        return rep
    if not cfg_path.is_file():
        rep.problems.append(f"{model_dir.name}: no config.pbtxt; write one (tritongen always does)")
        return rep
    try:
        text = cfg_path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        rep.problems.append(f"{where}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); Triton reads "
                            "the config as UTF-8 protobuf text: save it as UTF-8")
        return rep
    except OSError as e:
        rep.problems.append(f"{where}: cannot read it ({e.strerror or type(e).__name__}); check its permissions")
        return rep
    cfg, problem = parse_config(text, where)
    if problem:
        rep.problems.append(problem)
        return rep
    rep.config = cfg
    rep.problems += check_config(cfg, text, where, model_dir.name)
    versions = sorted(int(d.name) for d in model_dir.iterdir() if d.is_dir() and d.name.isdigit())
    engine = engine_of(cfg)
    if not versions:
        rep.problems.append(f"{model_dir.name}: no version folder (e.g. 1/); put the model file in {model_dir.name}/1/")
        return rep
    if engine == "ensemble":
        return rep
    from generator.formats.repository import validated_by_build

    # the build that wrote this repository checked these very files (config + artifacts): do not re-read graphs
    trusted = validated_by_build(model_dir) and _built_for(model_dir, release)
    rules_problems, rules_warnings = ([], []) if trusted else backend_rule_findings(cfg, model_dir, versions, release)
    rep.warnings += rules_warnings
    fname = cfg.default_model_filename or backends.default_file(engine)
    for v in versions:
        vdir = model_dir / str(v)
        if fname and not (vdir / fname).is_file():
            rep.problems.append(f"{model_dir.name}/{v}: {fname} is missing; the {engine} backend loads that file")
        elif engine == "python" and "artifact" in cfg.parameters:
            a = cfg.parameters["artifact"].string_value
            if not (vdir / a).is_file():
                rep.problems.append(f"{model_dir.name}/{v}: runner artifact {a} is missing; rebuild the variant")
    rep.problems += [p for p in rules_problems if p not in rep.problems]
    return rep


def _built_for(model_dir: Path, release: str | None) -> bool:
    """Whether the build that wrote ``model_dir`` targeted ``release`` (None: any)."""
    if release is None:
        return True
    from generator.config import rules as backend_rules
    from generator.tables import releases

    return (backend_rules.read_manifest(model_dir) or {}).get("triton_version") == releases.normalize(release)


def backend_rule_findings(cfg, model_dir: Path, versions: list[int], release: str | None = None) -> tuple[list[str], list[str]]:
    """The native backends' rules (generator/config/rules/) on one model folder."""
    from generator.config import rules as backend_rules  # noqa: F401  (registers every rule, the release-aware ones included)

    target = backend_rules.Target(cfg=cfg, model_dir=model_dir, versions=versions,
                                  engine=backend_rules.normalize_engine(cfg),
                                  manifest=backend_rules.read_manifest(model_dir), release=release)
    return backend_rules.run_rules(target)


def check_ensemble(rep: ModelReport, configs: dict[str, object]) -> None:
    cfg = rep.config
    where = f"{rep.name}/config.pbtxt"
    if cfg is None or engine_of(cfg) != "ensemble":
        return
    steps = cfg.ensemble_scheduling.step
    if not steps:
        rep.problems.append(f"{where}: ensemble_scheduling has no step; add the models to run")
    produced = {t.name for t in cfg.input}
    for i, s in enumerate(steps):
        sub = configs.get(s.model_name)
        if sub is None:
            rep.problems.append(f"{where}: step {i} names model '{s.model_name}', which is not in the repository")
            continue
        sub_in = {t.name for t in sub.input}
        sub_out = {t.name for t in sub.output}
        for k, v in s.input_map.items():
            if k not in sub_in:
                rep.problems.append(f"{where}: step {i} input_map key '{k}' is not an input of '{s.model_name}'")
            if v not in produced:
                rep.problems.append(f"{where}: step {i} reads '{v}', which no earlier step or ensemble input produces")
        for k, v in s.output_map.items():
            if k not in sub_out:
                rep.problems.append(f"{where}: step {i} output_map key '{k}' is not an output of '{s.model_name}'")
            produced.add(v)
    for t in cfg.output:
        if t.name not in produced:
            rep.problems.append(f"{where}: ensemble output '{t.name}' is produced by no step")


def check_plan_provenance(rep: ModelReport, model_dir: Path, triton_release: str, target_cc: str | None) -> None:
    """Warn when a TensorRT plan was built with another TensorRT or GPU than the target server's."""
    import json

    from generator.tables.trt_release import check_provenance

    cfg = rep.config
    if cfg is None or backends.by_config_name(engine_of(cfg)) is not backends.TENSORRT:
        return
    manifest = model_dir / "manifest.json"
    prov = None
    if manifest.is_file():
        try:
            prov = (json.loads(manifest.read_text()).get("info") or {}).get("tensorrt")
        except ValueError:
            prov = None
    if not prov:
        rep.warnings.append(f"{rep.name}: no TensorRT provenance (manifest.json info.tensorrt); cannot check that the "
                            f"plan matches tritonserver {triton_release}; rebuild it with tritongen")
        return
    rep.warnings += [f"{rep.name}: {w}" for w in check_provenance(prov, triton_release, target_cc)]


def validate_repository(repo: Path, triton_release: str | None = None, target_cc: str | None = None) -> list[ModelReport]:
    from generator.errors import UserError

    repo = Path(repo)
    if not repo.is_dir():
        raise UserError(f"{repo}: not a folder; pass a Triton model repository")
    import re

    if target_cc is not None and not re.fullmatch(r"\d{1,2}\.\d", str(target_cc).strip()):
        raise UserError(f"--compute-capability {target_cc}: give it as major.minor, e.g. 8.6 or 9.0")
    rules_release = None
    if triton_release:
        from generator.tables import releases

        name = releases.normalize(triton_release)
        if name not in releases.RELEASES and not _trt_known(name):
            raise UserError(f"--triton-version {triton_release}: not a release tritongen knows; known: "
                            f"{', '.join(sorted(set(releases.RELEASES) | _trt_releases()))}")
        rules_release = name if name in releases.RELEASES else None  # TensorRT table only: provenance checks only
    reports = [check_model_dir(d, release=rules_release) for d in sorted(repo.iterdir())
               if d.is_dir() and not d.name.startswith(".")]
    if not reports:
        raise UserError(f"{repo}: holds no model folder; build one with `tritongen build SPEC -o {repo}`")
    configs = {r.name: r.config for r in reports if r.config is not None}
    for r in reports:
        check_ensemble(r, configs)
        if triton_release and _trt_known(triton_release):
            check_plan_provenance(r, repo / r.name, triton_release, target_cc)
            if r.config is not None and r.config.platform == "torch_aoti":  # torch-aoti: release-aware
                from generator.config.rules.aoti_rules import release_problem

                if why := release_problem(triton_release):
                    r.problems.append(f"{r.name}/config.pbtxt: {why} [aoti-release: core src/constants.h]")
    return reports


def _trt_releases() -> set[str]:
    from generator.tables.trt_release import TRITON_TRT

    return set(TRITON_TRT)


def _trt_known(release: str) -> bool:
    from generator.tables.trt_release import _release

    return _release(release) in _trt_releases()
