"""The rule framework: the target a rule sees, findings, the registry, parameter checks, the sources cited.

Backend facts (names, default files, parameters and their checks, sources) come from generator/tables/backends.py.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from generator.tables import backends as B
from generator.config.rules.signatures import artifact_signature

# --------------------------------------------------------------------------------------------- sources

CORE = "triton core"
# "<backend prefix>_<role>" from each backend's table entry, plus Triton core's and tritongen's own
SRC = {
    **{f"{b.src_prefix}_{role}": text for b in B.BACKENDS.values() if b.src_prefix for role, text in b.sources.items()},
    "core_batch": f"{CORE} docs/user_guide/model_configuration.md 'Maximum Batch Size': max_batch_size > 0 makes the first dim the batch dim",
    "core_warmup": f"{CORE} model_config.proto ModelWarmup + docs 'Model Warmup': every input, at the declared dtype and dims",
    "core_versions": f"{CORE} docs/user_guide/model_repository.md + model_config.proto ModelVersionPolicy",
    "devices": "tritongen variant manifest 'devices' (where the variant's artifact runs)",
}


# ----------------------------------------------------------------------------------------- the target


def normalize_engine(cfg) -> str:
    """platform/backend -> onnxruntime | openvino | pytorch | tensorrt | python | ensemble | (other)."""
    return B.engine_name(cfg.platform, cfg.backend)


# a tritongen runner's parameters.runtime -> the native backend it stands for
RUNNER_RUNTIMES = {b.runtime: b.name for b in B.BACKENDS.values() if b.runtime and b.twin_keys}
DEFAULT_FILES = {b.name: b.default_file for b in B.BACKENDS.values() if b.default_file}


@dataclass
class Target:
    """One model folder as the rules see it."""

    cfg: object  # model_config_pb2.ModelConfig
    model_dir: Path
    versions: list[int]
    engine: str
    manifest: dict | None = None
    _sig: dict = field(default_factory=dict)
    release: str | None = None  # the target Triton release (generator/config/rules/release_rules.py); None = release-agnostic

    @property
    def name(self) -> str:
        return self.model_dir.name

    @property
    def where(self) -> str:
        return f"{self.name}/config.pbtxt"

    def at(self, path: Path) -> str:
        return f"{self.name}/{path.parent.name}/{path.name}"

    @property
    def params(self) -> dict[str, str]:
        return {k: v.string_value for k, v in self.cfg.parameters.items()}

    @property
    def stands_for(self) -> str:
        """The native backend whose artifact rules apply: the engine, or the runner's runtime."""
        if self.engine == "python":
            return RUNNER_RUNTIMES.get(self.params.get("runtime", ""), "python")
        return self.engine

    def artifact_name(self) -> str | None:
        if self.engine == "python":
            return self.params.get("artifact")
        return self.cfg.default_model_filename or DEFAULT_FILES.get(self.engine)

    def artifacts(self) -> list[Path]:
        name = self.artifact_name()
        if not name:
            return []
        return [p for v in self.versions if (p := self.model_dir / str(v) / name).is_file()]

    def signature(self, path: Path):
        """(signature, None) or (None, why it cannot be read)."""
        if path not in self._sig:
            try:
                self._sig[path] = (artifact_signature(path), None)
            except ImportError as e:
                self._sig[path] = (None, f"cannot check {path.name} here ({e}); install it to check")
            except Exception as e:  # an unreadable artifact is a finding, not a crash
                self._sig[path] = (None, f"cannot read {path.name} ({str(e).splitlines()[0][:150] if str(e) else type(e).__name__})")
        return self._sig[path]

    def instance_kinds(self) -> list[str]:
        from tritonclient.grpc import model_config_pb2 as pb

        return [pb.ModelInstanceGroup.Kind.Name(g.kind) for g in self.cfg.instance_group]


# ------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Finding:
    level: str  # "problem" | "warning"
    text: str  # starts with where: "<model>/config.pbtxt: ..." or "<model>/<version>/<file>: ..."
    source: str | None = None  # a more precise source than the rule's


def problem(text: str, source: str | None = None) -> Finding:
    return Finding("problem", text, SRC[source] if source else None)


def warning(text: str, source: str | None = None) -> Finding:
    return Finding("warning", text, SRC[source] if source else None)


@dataclass(frozen=True)
class Rule:
    id: str
    backends: tuple[str, ...]  # the config backends it concerns ("*" = all)
    source: str
    check: Callable[[Target], Iterable[Finding]]
    summary: str


RULES: list[Rule] = []


def rule(rule_id: str, backends: tuple[str, ...], source: str, summary: str):
    def register(fn):
        RULES.append(Rule(rule_id, backends, SRC[source], fn, summary))
        return fn

    return register


def run_rules(target: Target) -> tuple[list[str], list[str]]:
    """(problems, warnings) as one-line messages."""
    problems, warnings = [], []
    for r in RULES:
        if "*" not in r.backends and target.engine not in r.backends and target.stands_for not in r.backends:
            continue
        for f in r.check(target):
            line = f"{f.text} [{r.id}: {f.source or r.source}]"
            (problems if f.level == "problem" else warnings).append(line)
    return problems, warnings


def is_rule_message(text: str) -> bool:
    return bool(re.search(r" \[[a-z0-9-]+: [^\]]+\]$", text))


def rule_error(problems: list[str]) -> str | None:
    """The line a build stops on when a native backend's rule is broken, or None. A finding on the config.pbtxt
    comes from the spec's triton settings; one on a file of the version folder is about the artifact tritongen
    built, which the user did not write: it names what to change and that it may be tritongen's bug."""
    found = next((p for p in problems if is_rule_message(p)), None)
    if found is None:
        return None
    if re.match(r"[^/\s]+/config\.pbtxt: ", found):
        return f"{found} (from the spec's triton settings; fix them)"
    return (f"{found} (on the artifact tritongen built for the spec: change the setting the rule names, or report it "
            "as a tritongen bug with build/<model>/<variant>/build.log)")


# ------------------------------------------------------------------------------------------- parameters

# The parameters each native backend reads (names are case-sensitive: the backends look them up exactly).
BACKEND_PARAMETERS: dict[str, dict[str, Callable[[str], str | None]]] = {
    b.name: dict(b.parameters) for b in B.BACKENDS.values() if b.parameters}


def _or_unset(check):
    # openvino_backend ParseParameter skips an empty value: "" is "unset" (and keeps the missing-key error log away)
    return lambda v: None if v == "" else check(v)


BACKEND_PARAMETERS["openvino"] = {k: _or_unset(f) for k, f in BACKEND_PARAMETERS["openvino"].items()}
PARAM_SOURCE = {name: f"{B.get(name).src_prefix}_params" for name in BACKEND_PARAMETERS}
TRT_EA_PARAMETERS = B.ORT_TRT_ACCELERATOR_PARAMETERS
GPU_ACCELERATORS = B.ORT_GPU_ACCELERATORS
CPU_ACCELERATORS = B.ORT_CPU_ACCELERATORS


def check_parameter(backend: str, key: str, value: str) -> str | None:
    """Why ``key: value`` is wrong for ``backend``'s config parameters, or None (also used by the spec).
    An unknown key that looks like a known one (case, a typo) is wrong: the backend silently drops the setting."""
    known = BACKEND_PARAMETERS.get(backend)
    if known is None:
        return None
    if key not in known:
        close = [k for k in known if k.lower() == key.lower()] or difflib.get_close_matches(key, list(known), n=1, cutoff=0.8)
        if close:
            return (f"parameter '{key}' is not read by the {backend} backend (names are case-sensitive; it is silently "
                    f"ignored); did you mean {close[0]}?")
        return None
    why = known[key](str(value))
    return f"parameter {key}: {why}" if why else None


def unknown_parameter(backend: str, key: str) -> str | None:
    """A parameter the backend does not read and that resembles none it does (metadata, or a mistake)."""
    known = BACKEND_PARAMETERS.get(backend)
    if known is None or key in known or check_parameter(backend, key, ""):
        return None
    return f"parameter '{key}' is not read by the {backend} backend (kept as metadata; it configures nothing)"


def _dtype_name(v: int) -> str:
    from tritonclient.grpc import model_config_pb2 as pb

    return pb.DataType.Name(v)


def read_manifest(model_dir: Path) -> dict | None:
    p = model_dir / "manifest.json"
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except ValueError:
        return None


def rule_table() -> list[tuple[str, str, str, str]]:
    """(rule id, backends, check function, source) for the README."""
    return [(r.id, ", ".join(r.backends).replace("*", "all"), r.check.__name__, r.source) for r in RULES]
