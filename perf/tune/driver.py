"""``run_tune``: the targets and settings per model, the server (started here unless ``url``), one
``tune_model`` per model, the report, ``--apply`` and ``tuned.yaml``."""

from __future__ import annotations

import dataclasses
import json
import shlex
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

from generator.errors import UserError
from generator.spec.tune import OBJECTIVES, TUNE_KEYS, TuneSettings, parse_tune

from ..client import ServerGone
from .apply import apply_to_repository, spec_snippet, write_tuned
from .cache import Cache
from .measure import Bench
from .model import tune_model
from .report import write_tune_report
from .search import STRATEGIES, inprocess_ceilings
from .space import Candidate, cores_available


def _devices(model_dir: Path) -> tuple[str, ...]:
    try:
        return tuple(json.loads((model_dir / "manifest.json").read_text()).get("devices") or ("cpu", "gpu"))
    except (OSError, ValueError):
        return ("cpu", "gpu")


def _check_options(strategy: str, objective: str | None, rounds: int, max_configs: int, finalists: int,
                   limits: dict | None = None) -> None:
    for name, v in (limits or {}).items():  # the CLI's own values bypass the spec's typed checks
        if v is not None and not v > 0:
            raise UserError(f"--{name.replace('_', '-')} {v:g}: give a positive number")
    if strategy not in STRATEGIES:
        raise UserError(f"--strategy {strategy}: not one of {', '.join(STRATEGIES)}")
    if objective is not None and objective not in OBJECTIVES:
        raise UserError(f"--objective {objective}: not one of {', '.join(OBJECTIVES)}")
    for name, v in (("--rounds", rounds), ("--max-configs", max_configs), ("--finalists", finalists)):
        if v < 1:
            raise UserError(f"{name} {v}: must be at least 1")


def tune_settings(model_spec, overrides: dict) -> TuneSettings:
    """The model's ``tune:`` section (typed ``model.tune`` where the spec has it), with the CLI's values."""
    typed = getattr(model_spec, "tune", None)  # the typed spec's ModelSpec.tune, where it has one
    if isinstance(typed, TuneSettings):
        s = typed
    elif typed is not None:
        s = TuneSettings(**{k: getattr(typed, k) for k in TUNE_KEYS if hasattr(typed, k)})
    else:
        s = parse_tune(model_spec.raw.get("tune"), f"{model_spec.where}.tune")
    return dataclasses.replace(s, **{k: v for k, v in overrides.items() if v is not None})


def targets_by_model(spec, repo: Path, models, remote: bool, overrides: dict) -> tuple[dict, dict]:
    """{model: [gate-passed targets]} and {model: TuneSettings}; user errors for an empty search."""
    from ..harness import discover

    targets = [t for t in discover(repo, models) if t.gate == "passed"]
    if not remote:  # the embedded server here is CPU-only: GPU-only variants (onnx-fp16, TensorRT) are not searched
        targets = [t for t in targets if "cpu" in _devices(repo / t.name)]
    by_model: dict[str, list] = {}
    for t in targets:
        t.dir = repo / t.name
        by_model.setdefault(t.model, []).append(t)
    settings: dict[str, TuneSettings] = {}
    for name in list(by_model):
        ms = spec.model(name)
        s = tune_settings(ms, overrides)
        if s.objective == "rate" and s.latency_budget_ms is None:
            raise UserError(f"{ms.where}.tune.objective: rate needs a p99 budget; set tune.latency_budget_ms or "
                            "--latency-budget-ms")
        if s.variants is not None:
            by_model[name] = [t for t in by_model[name] if t.variant in s.variants]
        if not by_model[name]:
            raise UserError(f"{ms.where}.tune.variants: no gate-passed variant of '{name}' in {repo} is in the search "
                            "space; list built variants or remove tune.variants")
        settings[name] = s
    if not by_model:
        raise UserError(f"{repo}: no gate-passed variant to tune; build the repository first")
    return by_model, settings


def start_server(repo: Path, out: Path, install, log):
    """The embedded tritonserver, explicit model control, with a second (alias) repository for the A/B rounds."""
    from generator.serve.server import TritonServer

    alias_root = out / "ab-aliases"  # a second repository: the A/B finalists loaded side by side
    if alias_root.exists():
        shutil.rmtree(alias_root)
    alias_root.mkdir()
    server = TritonServer(repo, model_control_mode="explicit", expected_models=[], install=install,
                          log_path=out / "tritonserver.log", extra_args=["--model-repository", str(alias_root),
                                                                         # our configs are complete: no python stub
                                                                         # per load to auto-complete them
                                                                         "--disable-auto-complete-config"])
    log("starting tritonserver (explicit model control)")
    server.start()
    return server, alias_root


def _run_record(strategy: str, settings: dict, owned: bool, url: str, cores: int) -> dict:
    from .. import probe

    first = next(iter(settings.values()))
    run = {"run_id": time.strftime("%Y%m%d-%H%M%S"), "strategy": strategy, "objective": first.objective,
           "latency_budget_ms": first.latency_budget_ms,
           "server": "embedded tritonserver (started here)" if owned else url,
           "machine": f"{probe.cpu_name()}, {cores} cores", "models": [], "commands": [],
           "measured": 0, "reused": 0, "seconds": 0.0}
    if Path(sys.argv[0]).name == "tritongen":
        run["commands"].append(" ".join(shlex.quote(a) for a in ["tritongen", *sys.argv[1:]]))
    return run


def run_tune(spec_path: Path, repo: Path, url: str | None = None, models: list[str] | None = None,
             strategy: str = "quick", objective: str | None = None, latency_budget_ms: float | None = None,
             min_throughput: float | None = None, max_memory_mb: float | None = None, max_configs: int = 16,
             window_s: float = 1.5, warmup_s: float = 0.5, max_requests: int = 1500, rounds: int = 3,
             finalists: int = 2, min_gain: float = 0.05, prune: float = 0.5, max_concurrency: int = 64,
             cores: int | None = None, out: Path | None = None, apply: bool = False,
             apply_to: tuple[Path, ...] = (), install=None, log=print) -> Path:
    """Tune every model (or ``models``) of the spec on ``repo``; returns the run folder."""
    from generator.spec import load_spec

    _check_options(strategy, objective, rounds, max_configs, finalists,
                   {"latency_budget_ms": latency_budget_ms, "min_throughput": min_throughput, "max_memory_mb": max_memory_mb})
    t_start = time.time()
    spec_path = Path(spec_path).resolve()
    spec = load_spec(spec_path)
    repo = Path(repo).resolve()
    overrides = {"objective": objective, "latency_budget_ms": latency_budget_ms, "min_throughput": min_throughput,
                 "max_memory_mb": max_memory_mb}
    by_model, settings = targets_by_model(spec, repo, models, url is not None, overrides)
    cores = cores or cores_available()
    out = (Path(out) if out else Path("perf/results") / f"tune-{'-'.join(sorted(by_model))}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    cache = Cache(out / "cache.json")
    owned = url is None
    server = alias_root = None
    if owned:
        server, alias_root = start_server(repo, out, install, log)
        url = server.urls.grpc
    run = _run_record(strategy, settings, owned, url, cores)
    bench = Bench(url, server, spec, window_s, warmup_s, max_requests, max_concurrency, lambda m: settings[m.name], log)
    bench.alias_root = alias_root

    def inprocess(model_name):  # in-process ceilings are this machine's: not for a remote server
        if not owned:
            return None
        return lambda targets_m, spaces: inprocess_ceilings(spec_path, spec.model(model_name), targets_m, spaces,
                                                            cores, log, cache=cache)
    snippets = []
    try:
        for name, targets_m in by_model.items():
            log(f"tuning {name}: {', '.join(t.name for t in targets_m)}")
            mt = tune_model(bench, cache, spec.model(name), targets_m, settings[name], strategy, max_configs,
                            min_gain, prune, finalists, rounds, cores, log, inprocess=inprocess(name))
            run["models"].append(asdict(mt))
            log(f"{name}: {mt.verdict}")
            if mt.winner:
                cand = Candidate(**mt.winner["candidate"])
                variant_key = next(t.variant for t in targets_m if t.name == cand.variant)
                snippets.append(spec_snippet(spec.model(name), variant_key, cand))
                if apply:
                    for r in (repo, *apply_to):
                        st = apply_to_repository(Path(r), cand, log)
                        run.setdefault("applied", []).append({"repository": str(r), "variant": cand.variant, "result": st})
    except ServerGone as e:
        run["error"] = str(e)
        raise UserError(f"{e}; {cache.measured} new measurement(s) are kept in {cache.path}; run the same command "
                        "again to resume where it stopped") from None
    finally:
        if server is not None:
            server.stop()
            shutil.rmtree(alias_root, ignore_errors=True)
        run["measured"], run["reused"] = cache.measured, cache.reused
        run["seconds"] = time.time() - t_start
        if run["models"]:
            write_tune_report(run, out)
    if snippets:
        write_tuned(out, spec_path, snippets)
    log(f"report: {out / 'report.md'}")
    return out
