"""The perf harness: serve (or reach) a model repository, sweep concurrency per variant, compare, report.

    run_perf(url=None, repo=Path("/tmp/embedded_repo"), spec_path=Path("examples/spec.yaml"),
             concurrency=[1, 2, 4, 8], latency_budget_ms=2000) -> Path  # perf/results/<run-id>/

Order of work (each step a plain function, in this file or its own module):
1. ``discover``: the repository's variant models and their manifests (accuracy gate, precision, runtime).
2. Baselines, before any server runs: PyTorch eager fp32 per model and the same runtime in-process per
   variant, each in its own subprocess (``perf.baseline``); the GEMM ceiling (``perf.probe``, cached per
   machine) and FLOPs per inference from the ONNX graph.
3. The server: ``url`` given -> that running Triton, nothing started; else ``generator.serve.server.TritonServer``
   on ``repo`` in explicit model-control mode, loading one model at a time (a model that fails to load is
   skipped with the server's reason, and only the model under test holds the CPU).
4. ``perf.sweep``: in ``rounds`` interleaved rounds (variant order rotated), for each model, each driver,
   each concurrency: server statistics before, one bounded step, statistics after; per step the median and
   95% interval of the rounds, the unreliable steps re-measured once. A step that ends with the server gone
   stops the sweep: the finished steps are written and a ``UserError`` says what happened.
5. ``perf.report.write_report``: results.json/csv, plots, report.md/html, commands.txt; the best
   gate-passed variant under the p99 budget per model, from reliable steps only.
6. After the sweep, the server gone: that best variant's per-operator profile (``perf.opprofile``, own
   subprocess, at its concurrency as the batch): "Where the time goes" in the report.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from generator.tables import backends
from generator.errors import UserError

from . import baseline as baseline_mod
from . import inputs as real_inputs_mod
from . import isa, pa_driver, probe
from . import sweep as sweep_mod
from .client import ServerClient, ServerGone
from .report import write_report

DRIVERS = ("loadgen", "perf_analyzer", "both")
PROTOCOLS = ("grpc", "http", "both")
SKIP_VARIANTS = ("preprocess", "ensemble")


@dataclass
class Target:
    """One served variant model of the repository."""

    name: str  # Triton model name, e.g. vit_b16__onnx
    model: str  # the spec's model name
    variant: str
    gate: str  # passed | failed | skipped | unknown
    precision: str
    runtime: str | None  # onnxruntime | torchscript | openvino | tensorrt | None
    artifact: Path | None
    params: dict = field(default_factory=dict)
    skipped: str = ""
    max_batch_size: int | None = None  # the served config's (a release workaround may serve a batched spec unbatched)
    skipped_ops: int = 0  # per sample: the work the build removed as dead rows (manifest info.dead_rows)

    def info(self) -> dict:
        return {"model": self.model, "variant": self.variant, "gate": self.gate, "precision": self.precision,
                "runtime": self.runtime, "artifact": str(self.artifact) if self.artifact else None,
                "skipped": self.skipped, "skipped_ops": self.skipped_ops}


# ------------------------------------------------------------------------------------------- discovery


def _dead_row_ops(manifest: dict) -> int:
    """The MatMul/attention work per sample the build pruned as dead rows (generator/variants/ov_rows.py)."""
    d = (manifest.get("info") or {}).get("dead_rows") or {}
    return max(0, int(d.get("matmul_ops_before", 0)) - int(d.get("matmul_ops_after", 0)))


def _config(model_dir: Path):
    from generator.config.validate import parse_config

    text = (model_dir / "config.pbtxt").read_text()
    cfg, problem = parse_config(text, f"{model_dir.name}/config.pbtxt")
    if problem:
        raise UserError(problem)
    return cfg


def _runtime_and_artifact(model_dir: Path, cfg, params: dict) -> tuple[str | None, Path | None]:
    runtime = params.get("runtime")
    if not runtime:
        runtime = backends.runtime_for(cfg.platform, cfg.backend)
    versions = sorted((p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    if not versions:
        return runtime, None
    vdir = versions[-1]
    name = params.get("artifact") or cfg.default_model_filename
    if name and (vdir / name).exists():
        return runtime, vdir / name
    for suffix in (".onnx", ".pt", ".xml", ".plan", ".pt2"):
        hits = sorted(vdir.glob(f"*{suffix}"))
        if hits:
            return runtime, hits[0]
    return runtime, None


def discover(repo: Path, wanted: list[str] | None = None, real=None) -> list[Target]:
    """Variant models in ``repo`` (those with a tritongen manifest), filtered by triton or spec model name."""
    repo = Path(repo)
    if not repo.is_dir():
        raise UserError(f"--repo {repo}: not a folder; build a model repository first (tritongen build)")
    out = []
    for d in sorted(p for p in repo.iterdir() if (p / "config.pbtxt").is_file()):
        mpath = d / "manifest.json"
        if not mpath.is_file():
            continue
        man = json.loads(mpath.read_text())
        if man.get("variant") in SKIP_VARIANTS and not real_inputs_mod.wants(man.get("variant"), d, real):
            continue  # ensembles are measured with real inputs only (perf/inputs.py)
        if wanted and d.name not in wanted and man.get("model") not in wanted:
            continue
        cfg = _config(d)
        params = {k: v.string_value for k, v in cfg.parameters.items()}
        runtime, artifact = _runtime_and_artifact(d, cfg, params)
        out.append(Target(name=d.name, model=man.get("model", d.name), variant=man.get("variant", ""),
                          gate=man.get("gate", "unknown"), precision=man.get("precision", "fp32"),
                          runtime=runtime, artifact=artifact, params=params, max_batch_size=cfg.max_batch_size,
                          skipped_ops=_dead_row_ops(man)))
    if wanted:
        missing = [w for w in wanted if not any(w in (t.name, t.model) for t in out)]
        if missing:
            have = sorted(d.name for d in repo.iterdir() if (d / "manifest.json").is_file() and d.name not in wanted)
            raise UserError(f"--models {missing[0]}: no such variant or model in {repo}; "
                            f"have: {', '.join(have) or 'none'}")
    if not out:
        raise UserError(f"{repo} holds no tritongen variant models (no */manifest.json); build it with tritongen build")
    return out


# ------------------------------------------------------------------------------------------- baselines


def _threads(t: Target) -> int:
    v = t.params.get("intra_op_threads") or t.params.get("intra_op_thread_count") or "0"
    try:
        return int(v)
    except ValueError:
        return 0


def baseline_jobs(targets: list[Target], spec_path: Path, concurrency: list[int], measurement_s: float,
                  max_iters: int) -> tuple[dict, dict]:
    """(eager jobs by spec model, in-process jobs by triton name)."""
    common = {"spec": str(spec_path), "batches": list(concurrency), "measurement_s": measurement_s, "max_iters": max_iters}
    eager = {t.model: {**common, "model": t.model, "kind": "eager", "threads": 0} for t in targets}
    inproc = {}
    for t in targets:
        if t.runtime in ("onnxruntime", "torchscript", "openvino", "aoti") and t.artifact is not None and not t.skipped:
            job = {**common, "model": t.model, "kind": t.runtime, "artifact": str(t.artifact), "threads": _threads(t)}
            if t.params.get("ort_graph_optimization_level"):
                job["ort_level"] = t.params["ort_graph_optimization_level"].lower()
            if t.params.get("openvino_inference_precision"):
                job["ov_precision"] = t.params["openvino_inference_precision"]
            inproc[t.name] = job
    return eager, inproc


def _headline_jobs(targets: list[Target], spec_path: Path, concurrency: list[int], measurement_s: float) -> dict:
    """The baseline jobs ``perf.headline`` repeats beside the served winner: ``("eager", model)`` and
    ``("inprocess", triton name)``."""
    eager, inproc = baseline_jobs(targets, spec_path, concurrency, min(measurement_s, 10.0), 50)
    return {**{("eager", m): j for m, j in eager.items()}, **{("inprocess", n): j for n, j in inproc.items()}}


def model_flops(targets: list[Target], spec) -> dict:
    """FLOPs per inference (batch 1, opt dims) per spec model, from an fp32 ONNX artifact when there is one."""
    out = {}
    for model in sorted({t.model for t in targets}):
        onnx_files = [t for t in targets if t.model == model and t.artifact and t.artifact.suffix == ".onnx"]
        onnx_files.sort(key=lambda t: (t.precision != "fp32", t.variant))
        if not onnx_files:
            out[model] = {"note": "no ONNX artifact to count FLOPs from"}
            continue
        try:
            ms = spec.model(model)
        except UserError:
            continue
        import onnx

        src = onnx_files[0].artifact
        graph_inputs = [i.name for i in onnx.load(str(src), load_external_data=False).graph.input]
        opt = ms.dims_at("opt")
        shapes = {}
        for pos, t in enumerate(ms.inputs):
            name = t.name if t.name in graph_inputs else graph_inputs[pos]
            shapes[name] = ([1] if ms.max_batch_size > 0 else []) + list(t.concrete(opt))
        try:
            got = probe.count_flops(src, shapes)
        except Exception as e:  # shape inference can fail on exotic graphs: report, don't abort
            out[model] = {"note": f"FLOP count failed: {type(e).__name__}: {str(e)[:150]}"}
            continue
        out[model] = {"flops_per_inference": got["flops"], "by_op": got["by_op"], "source": str(src),
                      "uncounted_nodes": len(got["uncounted"])}
    return out


def run_baselines(run: dict, targets: list[Target], spec_path: Path, concurrency: list[int], measurement_s: float,
                  rounds: int, log) -> None:
    """Every baseline job ``rounds`` times, interleaved (each round runs every job once, the order rotated),
    with a quiet check (load average + a fixed probe) before and after the phase; per job the median of the
    rounds with its 95% interval (``perf.stability``). A job whose rounds spread too far, or a phase in which
    the probe moved, is re-measured once (its jobs only, ``rounds`` more interleaved rounds, a quiet check of
    their own; the first attempt kept under ``first_attempt``) and, still so, marked ``unreliable`` (the report
    then prints no headline ratio from it); an eager baseline whose throughput grows with batch size more than
    eager on a CPU can is flagged ``implausible``."""
    eager_jobs, inproc_jobs = baseline_jobs(targets, spec_path, concurrency, measurement_s, 50)
    todo = [("baselines", name, job, f"in-process baseline {name} ({job['kind']}, threads "
             f"{job['threads'] or 'default'})") for name, job in inproc_jobs.items()]
    todo += [("eager", model, job, f"PyTorch eager fp32 baseline {model}") for model, job in eager_jobs.items()]
    for _, _, job, _ in todo:
        run["commands"].append(baseline_mod.command_line(job))
    judged = _baseline_pass(todo, rounds, log, "")
    run["quiet"] = {"baselines": judged["quiet"]}
    again = [item for item in todo if _doubtful(judged[item[:2]])] if rounds >= 2 else []
    if again:
        log(f"re-measuring {len(again)} unreliable baseline(s): " + ", ".join(w for *_, w in again))
        second = _baseline_pass(again, rounds, log, ", again")
        run["quiet"]["baselines_again"] = second["quiet"]
        for item in again:
            first = judged[item[:2]]
            judged[item[:2]] = {**second[item[:2]], "remeasured": True,
                                "first_attempt": {k: first[k] for k in ("rows", "rounds", "unreliable", "implausible") if k in first}}
    for kind, name, job, what in todo:
        res = run[kind][name] = judged[(kind, name)]
        if "error" in res:
            run["notes"].append(f"{what} failed: {res['error']}")
            continue
        if res.get("twin_settings"):
            run["notes"].append(baseline_mod.twin_note(name, res))
        if res.get("remeasured"):
            run["notes"].append(f"{what} was re-measured ({_doubtful(res['first_attempt'])}): "
                                + (f"still doubtful: {_doubtful(res)}" if _doubtful(res) else "reliable now"))
        else:
            if res.get("unreliable"):
                run["notes"].append(f"{what} is unreliable: {res['unreliable']}")
            if res.get("implausible"):
                run["notes"].append(f"{what}: {res['implausible']}")


def _doubtful(res: dict) -> str | None:
    """Why a combined baseline is not to be trusted (unreliable and/or implausible), or None."""
    return "; ".join(res[k] for k in ("unreliable", "implausible") if res.get(k)) or None


def _baseline_pass(todo: list[tuple], rounds: int, log, again: str) -> dict:
    """One interleaved pass over ``todo`` between two quiet checks: ``{(kind, name): combined result with
    "unreliable" / "implausible" set where so, ..., "quiet": {"before", "after"}}``."""
    from . import confirm, stability

    before = stability.quiet_check()
    got: dict[tuple, list] = {}
    for r, order in enumerate(confirm.rotations(todo, rounds)):
        for kind, name, job, what in order:
            log(f"{what} (round {r + 1}/{rounds}{again})")
            got.setdefault((kind, name), []).append(baseline_mod.run_baseline(job))
    after = stability.quiet_check()
    out: dict = {"quiet": {"before": before, "after": after}}
    for kind, name, _, _ in todo:
        res = out[(kind, name)] = stability.combine_rounds(got[(kind, name)])
        if "error" in res:
            continue
        why = stability.unreliable_reason(res, before, after)
        odd = stability.batching_plausible(res["rows"], "eager") if kind == "eager" else None
        if why:
            res["unreliable"] = why
        if odd:
            res["implausible"] = odd
    return out


# ------------------------------------------------------------------------------------------- the sweep


def _new_run(run_id, url, repo, spec_path, models, targets, concurrency, latency_budget_ms, driver, protocol,
             measurement_s, max_requests, warmup_s, warmup_requests) -> dict:
    """The run record: what was asked, on which machine, and the command that reproduces it."""
    prog = Path(sys.argv[0]).name
    invoked = {"harness.py": [sys.executable, "-m", "perf.harness"], "tritongen": ["tritongen"]}.get(prog)
    commands = [" ".join(shlex.quote(a) for a in [*invoked, *sys.argv[1:]]) if invoked else
                f"run_perf(url={url!r}, repo={str(repo)!r}, spec_path={str(spec_path)!r}, models={models!r}, "
                f"concurrency={concurrency}, latency_budget_ms={latency_budget_ms}, driver={driver!r}, "
                f"protocol={protocol!r}, measurement_s={measurement_s}, max_requests={max_requests})"]
    return {
        "run_id": run_id, "latency_budget_ms": latency_budget_ms, "steps": [], "baselines": {}, "eager": {},
        "models": {t.name: t.info() for t in targets}, "commands": commands, "notes": [], "partial": False,
        "meta": {"repository": str(repo), "spec": str(spec_path), "server": url or "embedded tritonserver (started here)",
                 "driver": driver, "protocol": protocol, "concurrency": ",".join(map(str, concurrency)),
                 "window": f"{measurement_s:g} s or {max_requests} requests, after {warmup_s:g} s / {warmup_requests} warm-up requests",
                 "machine": f"{probe.cpu_name()}, {os.cpu_count()} cores, {platform.platform()}",
                 "load_average_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
                 **({"isa_cap": f"{isa.current()}: " + " ".join(f"{k}={v}" for k, v in isa.environment().items())
                     + " for every process started (perf.isa); ONNX Runtime variants skipped"} if isa.current() else {})},
    }


@contextlib.contextmanager
def _quiet_check(run: dict, phase: str):
    """A quiet check (load average + the fixed probe) before and after ``phase``; a note when the probe moved."""
    from . import stability

    before = stability.quiet_check()
    yield
    after = stability.quiet_check()
    run.setdefault("quiet", {})[phase] = {"before": before, "after": after}
    d = stability.drift(before, after)
    if d > stability.MAX_DRIFT or d < 1 / stability.MAX_DRIFT:
        run["notes"].append(f"the {phase} may be disturbed: the fixed probe moved {d:.2f}x during it")


def _perf_analyzer(run: dict, driver: str, url: str, log):
    """The server's version into the record, and perf_analyzer when the driver wants it (None: not used)."""
    version = ServerClient(url).version()
    run["meta"]["server_version"] = version
    if driver not in ("perf_analyzer", "both"):
        return None
    pa = pa_driver.ensure(log)
    if pa is None:
        run["notes"].append("perf_analyzer could not be installed: perf_analyzer steps skipped")
        return None
    warn = pa_driver.version_check(pa, version)
    if warn:
        run["notes"].append(warn)
        log(f"warning: {warn}")
    return pa


def run_perf(
    url: str | None,
    repo: Path,
    spec_path: Path,
    models: list[str] | None = None,
    concurrency: list[int] = (1, 2, 4, 8),
    latency_budget_ms: float = 1000.0,
    out_root: Path = Path("perf/results"),
    driver: str = "loadgen",
    measurement_s: float = 10.0,
    max_requests: int = 2000,
    *,
    protocol: str = "grpc",
    http_url: str | None = None,
    warmup_s: float = 3.0,
    warmup_requests: int = 4,
    request_timeout_s: float = 60.0,
    baselines: bool = True,
    rounds: int = 3,
    baseline_rounds: int | None = None,
    request_rates: list[float] | None = None,
    rates_beyond: int = 4,
    headline_rounds: int | None = None,
    max_isa: str | None = None,
    gemm_probe: bool = True,
    op_profile: bool = True,
    pa_measurement_ms: int | None = None,
    run_id: str | None = None,
    install=None,
    log=print,
    real_inputs=None,
) -> Path:
    """Sweep every variant of ``repo`` and write a report; returns the run folder ``out_root/<run-id>``.

    ``url``: gRPC ``host:port`` of a running Triton (nothing is started), or None to serve ``repo`` with the
    embedded tritonserver. ``driver``: loadgen | perf_analyzer | both; ``protocol`` (load generator):
    grpc | http | both (``http_url`` is needed with ``url``). Each step's window ends at ``max_requests``
    requests or ``measurement_s`` seconds; served steps run in ``rounds`` interleaved rounds of
    ``measurement_s / rounds`` each (``perf.sweep``), baselines in ``baseline_rounds`` (default: ``rounds``),
    each best variant's headline ratios in ``headline_rounds`` paired rounds (``perf.headline``; default
    ``max(rounds, 5)`` with 2 or more rounds, 0: the sweep's unpaired ratios).
    ``max_isa`` (``perf.isa.CAPS``, e.g. "avx2"): every process started runs with that ISA cap (server,
    baselines, probe); ONNX Runtime's variants are skipped then (no cap reaches MLAS). Raises ``UserError`` (after
    writing the partial report) when the server dies mid-sweep.
    """
    if max_isa is not None:
        params = dict(locals())
        if max_isa not in isa.CAPS:
            raise UserError(f"--max-isa {max_isa}: not one of {', '.join(isa.CAPS)}")
        with isa.capped(max_isa):
            return run_perf(**{**params, "max_isa": None})
    t_start = time.time()
    if driver not in DRIVERS:
        raise UserError(f"--driver {driver}: not one of {', '.join(DRIVERS)}")
    if protocol not in PROTOCOLS:
        raise UserError(f"--protocol {protocol}: not one of {', '.join(PROTOCOLS)}")
    if headline_rounds is None:
        headline_rounds = max(int(rounds), 5) if int(rounds) >= 2 else 0
    if int(rounds) < 1:
        raise UserError(f"--rounds {rounds}: give 1 or more (3 or more for 95% intervals worth printing)")
    if not latency_budget_ms > 0:
        raise UserError(f"--latency-budget-ms {latency_budget_ms:g}: give the p99 budget in ms, above 0")
    concurrency = sorted({int(c) for c in concurrency})
    if not concurrency or concurrency[0] < 1:
        raise UserError("--concurrency: give positive integers, e.g. 1,2,4,8")
    protocols = ["grpc", "http"] if protocol == "both" else [protocol]
    if url and "http" in protocols and not http_url:
        raise UserError("--protocol http with --url: also give --http-url (the server's HTTP host:port)")
    from generator.spec import load_spec

    spec_path = Path(spec_path).resolve()
    spec = load_spec(spec_path)
    repo = Path(repo).resolve()
    targets = discover(repo, models, real_inputs)
    missing = set()
    for t in targets:
        t.skipped = t.skipped or isa.uncapped_reason(t.runtime)
        try:
            spec.model(t.model)
        except UserError:
            t.skipped = f"model '{t.model}' is not in {spec_path.name}"
            missing.add(t.model)
    if targets and missing == {t.model for t in targets}:
        have = ", ".join(sorted(missing))
        raise UserError(f"{spec_path.name}: none of {repo.name}'s models ({have}) is in it; give the spec the "
                        "repository was built from")
    run_id = run_id or time.strftime("%Y%m%d-%H%M%S")
    run_dir = Path(out_root).resolve() / run_id
    run_dir.mkdir(parents=True, exist_ok=False)
    run = _new_run(run_id, url, repo, spec_path, models, targets, concurrency, latency_budget_ms, driver, protocol,
                   measurement_s, max_requests, warmup_s, warmup_requests)
    commands = run["commands"]

    def save(final: bool = False) -> None:
        run["meta"]["elapsed_s"] = round(time.time() - t_start, 1)
        run["meta"]["load_average_at_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        write_report(run, run_dir)

    # 2. baselines and the ceiling, before any server competes for the CPU
    active = [t for t in targets if not t.skipped]
    if baselines:
        run_baselines(run, active, spec_path, concurrency, min(measurement_s, 10.0), baseline_rounds or rounds, log)
    if gemm_probe:
        log("GEMM probe (cached per machine)")
        cap = isa.current()
        run["probe"] = probe.machine_peak(Path(out_root).resolve() / f"machine_probe{'-' + cap if cap else ''}.json")
        wanted = {t.model for t in active}  # FLOPs from any variant's ONNX graph, measured here or not
        run["flops"] = model_flops([t for t in discover(repo, None, real_inputs) if t.model in wanted], spec)

    # 3. the server
    server = None
    owned = url is None
    if owned:
        from generator.serve.server import TritonServer

        server = TritonServer(repo, model_control_mode="explicit", expected_models=[], install=install,
                              log_path=run_dir / "tritonserver.log", env=isa.environment())
        log("starting tritonserver (explicit model control)")
        server.start()
        url, http_url = server.urls.grpc, server.urls.http
        commands.append(" ".join(shlex.quote(a) for a in server.command))
        run["meta"]["server"] = f"embedded tritonserver at grpc {url} / http {http_url}"
    try:
        pa = _perf_analyzer(run, driver, url, log)
        opts = sweep_mod.SweepOptions(url, http_url, owned, pa, driver, protocols, concurrency, measurement_s,
                                      max_requests, warmup_s, warmup_requests, request_timeout_s, pa_measurement_ms,
                                      run_dir, rounds=rounds, request_rates=request_rates,
                                      budget_ms=latency_budget_ms, real=(repo, real_inputs),
                                      rates_beyond=rates_beyond, headline_rounds=int(headline_rounds),
                                      headline_window_s=min(sweep_mod.SweepOptions.headline_window_s, measurement_s),
                                      headline_jobs=_headline_jobs(active, spec_path, concurrency, measurement_s)
                                      if baselines else {})
        with _quiet_check(run, "sweep"):
            sweep_mod.sweep(run, active, spec, opts, server, log)
    except ServerGone as e:
        run["partial"] = True
        run["error"] = str(e)
        save()
        raise UserError(f"{e}; the {len(run['steps'])} finished step(s) are in {run_dir}") from None
    finally:
        if server is not None:
            server.stop()
    if op_profile:  # 6. where the best variant's time goes, once the server is gone (perf.opprofile)
        run["opprofile"] = _where_time_goes(run, active, spec_path, run_dir, latency_budget_ms, log)
    save(final=True)
    log(f"report: {run_dir / 'report.md'}")
    return run_dir


def _where_time_goes(run: dict, targets: list[Target], spec_path: Path, run_dir: Path, budget_ms: float, log) -> dict:
    """The best variant of each model (as the report chooses it; with none named, the fastest step within the budget)
    profiled per operator at its concurrency."""
    from . import opprofile
    from .report import choose_winners, enrich

    by_name, best = {t.name: t for t in targets}, {}
    for model, w in choose_winners(enrich(run), float(budget_ms)).items():
        row = w["row"] or w.get("fastest")  # no best named (unreliable rounds): the fastest step still shows where
        if row and row["triton_name"] in by_name:
            t = by_name[row["triton_name"]]
            best[model] = (t.name, t.runtime, t.artifact, max(1, int(row["concurrency"])))
    got = opprofile.for_winners(best, spec_path, (run.get("probe") or {}).get("peak_gflops") or {}, run_dir, log)
    run["commands"] += [p["command"] for p in got.values() if p.get("command")]
    return got


# ------------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m perf.harness", description=__doc__.split("\n")[0])
    p.add_argument("--repo", required=True, type=Path, help="the model repository (tritongen build -o)")
    p.add_argument("--spec", required=True, type=Path, help="the spec the repository was built from")
    p.add_argument("--url", default=None, help="gRPC host:port of a running Triton; default: serve --repo here")
    p.add_argument("--http-url", default=None, help="HTTP host:port of that Triton (for --protocol http)")
    p.add_argument("--models", default=None, help="comma-separated Triton or spec model names (default: all)")
    p.add_argument("--concurrency", default="1,2,4,8")
    p.add_argument("--latency-budget-ms", type=float, default=1000.0)
    p.add_argument("--driver", choices=DRIVERS, default="loadgen")
    p.add_argument("--protocol", choices=PROTOCOLS, default="grpc")
    p.add_argument("--measurement-s", type=float, default=10.0)
    p.add_argument("--max-requests", type=int, default=2000)
    p.add_argument("--warmup-s", type=float, default=3.0)
    p.add_argument("--out-root", type=Path, default=Path("perf/results"))
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every step (and baseline)")
    p.add_argument("--run-id", default=None, help="the run folder's name under --out-root (default: a timestamp)")
    p.add_argument("--no-baselines", action="store_true")
    p.add_argument("--request-rates", default="", help="open loop: Poisson request rates to sweep, e.g. 5,10,20,40")
    p.add_argument("--rates-beyond", type=int, default=4,
                   help="open loop: while every rate is held, up to this many more rates (1.5x each)")
    p.add_argument("--headline-rounds", type=int, default=None,
                   help="paired rounds of the winner served / in-process / eager (default max(rounds, 5); 0: off)")
    p.add_argument("--max-isa", choices=sorted(isa.CAPS), default=None,
                   help="measure as on a CPU with at most this ISA (perf.isa; ONNX Runtime variants skipped)")
    a = p.parse_args(argv)
    try:
        conc = [int(x) for x in a.concurrency.split(",") if x.strip()]
    except ValueError:
        print(f"error: --concurrency {a.concurrency}: give integers like 1,2,4,8", file=sys.stderr)
        return 1
    try:
        run_dir = run_perf(a.url, a.repo, a.spec, [m for m in (a.models or "").split(",") if m] or None, conc,
                           a.latency_budget_ms, a.out_root, a.driver, a.measurement_s, a.max_requests,
                           protocol=a.protocol, http_url=a.http_url, warmup_s=a.warmup_s, baselines=not a.no_baselines,
                           rounds=a.rounds, run_id=a.run_id,
                           request_rates=[float(r) for r in a.request_rates.split(",") if r.strip()] or None,
                           rates_beyond=a.rates_beyond, headline_rounds=a.headline_rounds,
                           max_isa=a.max_isa)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
