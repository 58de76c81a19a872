"""`tritongen tune` against Triton Model Analyzer, side by side: same model, same server binary, same p99
budget, same machine, one run. A benchmark (``make tune-vs-ma``), not a test.

    python -m perf.tune_vs_ma examples/spec.yaml --repo build/embedded_repository --model small_cnn \
        --latency-budget-ms 50 [--ma-mode quick] [--out perf/results]

1. ``tritongen tune`` on the model (every gate-passed variant): wall time, configurations measured, winner.
2. Model Analyzer 1.58 (installed into its own venv under ``.tools/model-analyzer``: its pins differ from
   ours) profiles the variant our screen ranked best at the spec's settings (the most favourable choice for
   it: Model Analyzer cannot search formats) with ``--triton-launch-mode local``, the same embedded
   tritonserver and perf_analyzer through two wrapper scripts (library paths, ``--backend-directory``,
   loopback addresses), the same ``--latency-budget``. Its input config has ``preferred_batch_size`` and
   ``model_warmup`` removed: Model Analyzer changes ``max_batch_size`` without them, and the server
   refuses such configs (tritongen's search keeps them consistent instead).
3. The spec's config (on the screened variant and on the spec's primary variant), our winner and Model
   Analyzer's best config under the budget are re-measured *alternately* in one server (``--rounds`` rounds,
   rotating order; round 1 climbs the concurrency sweep, later rounds measure each config at its round-1
   best) with the project's load generator; each tool is credited with its config's mean best throughput
   within the budget in that re-measurement, not with its own claim.
The report (``tune-vs-ma-<time>/report.md`` + results.json) has one row per tool: configurations measured,
wall time, its own claimed best, the re-measured throughput and p99, and the ratio to the spec's config with
a 95% interval over the rounds; and the verdict: our winner / Model Analyzer's, round by round, with its
interval (better, worse, or not distinguishable) and the two wall times.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from generator.errors import UserError

MA_VERSION = "1.58.0"


def ensure_model_analyzer(tools: Path, log=print) -> Path:
    """``model-analyzer`` in its own venv (created on first use); returns the executable."""
    venv = tools / "model-analyzer" / "venv"
    exe = venv / "bin" / "model-analyzer"
    if exe.is_file():
        return exe
    log(f"installing triton-model-analyzer=={MA_VERSION} into {venv} (its own venv)")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    r = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"triton-model-analyzer=={MA_VERSION}"],
                       capture_output=True, text=True)
    if r.returncode != 0 or not exe.is_file():
        tail = " ".join((r.stderr or r.stdout).split())[-300:]
        raise UserError(f"cannot install triton-model-analyzer=={MA_VERSION} ({tail}); check the package registry")
    return exe


def write_wrappers(install, pa, folder: Path) -> tuple[Path, Path]:
    """Executables Model Analyzer can launch: our tritonserver (backends, loopback) and perf_analyzer."""
    folder.mkdir(parents=True, exist_ok=True)

    def script(path: Path, env: dict, argv: list[str]) -> Path:
        keep = ("PATH", "LD_LIBRARY_PATH", "PYTHONHOME", "PYTHONPATH")
        lines = ["#!/usr/bin/env bash", "# written by perf/tune_vs_ma.py"]
        lines += [f"export {k}={json.dumps(env[k])}" for k in keep if env.get(k)]
        lines.append("exec " + " ".join(json.dumps(a) for a in argv) + ' "$@"')
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o755)
        return path

    server = script(folder / "tritonserver", install.env,
                    [str(install.binary), "--backend-directory", str(install.backend_dir), "--http-address", "127.0.0.1",
                     "--grpc-address", "127.0.0.1", "--metrics-address", "127.0.0.1"])
    perf = script(folder / "perf_analyzer", pa.env, [str(pa.binary)])
    return server, perf


def prepare_repository(repo: Path, variant: str, dst: Path) -> Path:
    """A repository holding only ``variant``, its config without preferred sizes and warm-up."""
    from generator.config.validate import parse_config
    from perf.tune.config import config_text

    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(repo / variant, dst / variant)
    cfg, problem = parse_config((dst / variant / "config.pbtxt").read_text(), f"{variant}/config.pbtxt")
    if problem:
        raise UserError(problem)
    cfg.dynamic_batching.ClearField("preferred_batch_size")
    cfg.ClearField("model_warmup")
    (dst / variant / "config.pbtxt").write_text(config_text(cfg))
    return dst


def run_model_analyzer(exe: Path, repo: Path, variant: str, server: Path, perf: Path, work: Path, budget_ms: float,
                       mode: str, max_instances: int, max_batch: int, timeout_s: float, stall_s: float = 120.0,
                       log=print) -> dict:
    from generator.serve.server import free_port

    http, grpc, metrics = free_port(), free_port(), free_port()
    export = work / "ma-export"
    out_repo = work / "ma-output-repository"
    for p in (export,):
        shutil.rmtree(p, ignore_errors=True)
        p.mkdir(parents=True)
    argv = [str(exe), "profile", "--model-repository", str(repo), "--profile-models", variant,
            "--triton-launch-mode", "local", "--triton-server-path", str(server), "--perf-analyzer-path", str(perf),
            "--triton-http-endpoint", f"127.0.0.1:{http}", "--triton-grpc-endpoint", f"127.0.0.1:{grpc}",
            "--triton-metrics-url", f"http://127.0.0.1:{metrics}/metrics",
            "--output-model-repository-path", str(out_repo), "--override-output-model-repository",
            "--export-path", str(export), "--checkpoint-directory", str(work / "ma-checkpoints"),
            "--run-config-search-mode", mode, "--latency-budget", str(int(budget_ms)),
            "--run-config-search-max-instance-count", str(max_instances),
            "--run-config-search-max-model-batch-size", str(max_batch),
            "--triton-output-path", str(work / "ma-tritonserver.log")]
    shutil.rmtree(work / "ma-checkpoints", ignore_errors=True)
    log("model-analyzer " + " ".join(argv[1:]))
    from perf.watch import run_watched

    env = dict(os.environ)
    env.pop("PYTHONPATH", None)

    w = run_watched(argv, work / "ma.log", timeout_s=timeout_s, stall_s=stall_s, env=env, cwd=work,
                    name=f"Model Analyzer {MA_VERSION}")
    if w.summary:
        log(w.summary)
    res = {"argv": argv, "wall_s": w.wall_s, "returncode": w.returncode, "log": str(work / "ma.log"),
           "stopped": w.summary, "skipped_profiles": w.skips}
    res.update(parse_model_analyzer(export, out_repo, variant, budget_ms))
    return res


def parse_model_analyzer(export: Path, out_repo: Path, variant: str, budget_ms: float) -> dict:
    """Model Analyzer's own results: configurations measured and its best config within the budget."""
    csvs = sorted(export.rglob("metrics-model-inference.csv"))
    if not csvs:
        return {"configs_measured": 0, "best": None, "error": "no metrics-model-inference.csv was written"}
    with open(csvs[0]) as f:
        rows = list(csv.DictReader(f))

    def col(row, *words):
        for k, v in row.items():
            kl = (k or "").lower()
            if all(w in kl for w in words):
                return v
        return None

    configs = {col(r, "config") for r in rows if col(r, "config")}
    best = None
    for r in rows:
        try:
            tp = float(col(r, "throughput") or 0)
            p99 = float(col(r, "p99") or "inf")
        except ValueError:
            continue
        if p99 <= budget_ms and (best is None or tp > best["throughput"]):
            best = {"config": col(r, "config"), "throughput": tp, "p99_ms": p99,
                    "concurrency": col(r, "concurrency")}
    if best is not None:
        path = out_repo / best["config"] / "config.pbtxt"
        best["config_path"] = str(path) if path.is_file() else None
    return {"configs_measured": len(configs), "rows": len(rows), "best": best, "csv": str(csvs[0])}


def remeasure(repo: Path, spec, model_spec, configs: dict, budget_ms: float, rounds: int,
              levels: list[int], window_s: float, install, work: Path, log=print) -> dict:
    """Each named config ``{name: (variant, ModelConfig)}`` measured alternately in ONE server (the order
    rotates each round): round 1 climbs ``levels``, later rounds measure each config at the concurrency where
    it did best in round 1. Per config: the rounds' best throughput within budget, their mean and median p99."""
    from generator.serve.server import TritonServer
    from generator.spec.tune import TuneSettings
    from perf import confirm
    from perf.tune.measure import Bench, Measurement

    settings = TuneSettings(latency_budget_ms=budget_ms)
    server = TritonServer(repo, model_control_mode="explicit", expected_models=[], install=install,
                          log_path=work / "remeasure-tritonserver.log", extra_args=["--disable-auto-complete-config"])
    server.start()
    out = {k: {"rounds": [], "variant": v} for k, (v, _) in configs.items()}
    best_level: dict[str, int | None] = {}
    try:
        bench = Bench(server.urls.grpc, server, spec, window_s, 1.0, 100_000, max(levels), lambda m: settings, log)
        names = list(configs)
        for r, order in enumerate(confirm.rotations(names, rounds)):
            for k in order:
                variant, cfg = configs[k]
                cfg.name = variant
                lv = [best_level[k]] if best_level.get(k) else levels
                m = bench.measure_config(Measurement(key=k, candidate={}), variant, cfg, model_spec, lv)
                if r == 0:
                    best_level[k] = m.best_level
                out[k]["rounds"].append({"score": m.score, "best_level": m.best_level, "p99_ms": m.best_p99_ms,
                                         "error": m.error})
                log(f"  round {r + 1} {k}: {m.score:.1f} inf/s within budget (c={m.best_level}) {m.error}")
    finally:
        server.stop()
    for k, v in out.items():
        scores = [x["score"] for x in v["rounds"]]
        v["mean"] = sum(scores) / len(scores) if scores else 0.0
        p99 = sorted(x["p99_ms"] for x in v["rounds"] if x["p99_ms"] is not None)
        v["p99_median_ms"] = p99[len(p99) // 2] if p99 else None
    return out


def paired(remeasured: dict, a: str, b: str) -> tuple[float, float, float] | None:
    """``a`` / ``b`` throughput, round by round (alternating rounds of one server): geometric mean, 95% interval."""
    from perf import confirm

    if a not in remeasured or b not in remeasured:
        return None
    return confirm.paired(remeasured[a]["rounds"], remeasured[b]["rounds"], lambda x: x["score"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("spec", type=Path)
    ap.add_argument("--repo", type=Path, default=Path("build/embedded_repository"))
    ap.add_argument("--model", required=True, help="the spec's model name")
    ap.add_argument("--latency-budget-ms", type=float, required=True)
    ap.add_argument("--ma-mode", choices=["quick", "brute"], default="quick")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--window-s", type=float, default=2.0, help="re-measurement windows (both tools' winners)")
    ap.add_argument("--max-configs", type=int, default=16)
    ap.add_argument("--ma-timeout-s", type=float, default=3600)
    ap.add_argument("--ma-stall-s", type=float, default=120,
                    help="stop Model Analyzer (and the server it started) after this long without a new measurement "
                         "while it only repeats 'Existing measurement found ... Skipping profile'")
    ap.add_argument("--out", type=Path, default=Path("perf/results"))
    a = ap.parse_args(argv)
    try:
        run(a)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def run(a) -> Path:
    from generator.spec import load_spec
    from generator.serve.tools import ensure_perf_analyzer, ensure_tritonserver, tools_dir
    from perf import confirm
    from perf.harness import discover
    from perf.tune import Candidate, apply_candidate, base_config, primary_variant, run_tune

    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as pb

    spec = load_spec(a.spec)
    ms = spec.model(a.model)
    repo = a.repo.resolve()
    work = (a.out / f"tune-vs-ma-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    work.mkdir(parents=True)
    install, pa = ensure_tritonserver(), ensure_perf_analyzer()
    if pa is None:
        raise UserError("perf_analyzer could not be installed; Model Analyzer needs it")
    exe = ensure_model_analyzer(tools_dir())
    load0 = os.getloadavg()

    # 1. ours
    t0 = time.time()
    tune_dir = run_tune(a.spec, repo, models=[a.model], latency_budget_ms=a.latency_budget_ms, max_configs=a.max_configs,
                        out=work / "tune", install=install)  # tritongen tune's own defaults, as a user runs it
    ours_wall = time.time() - t0
    res = json.loads((tune_dir / "results.json").read_text())
    mt = res["models"][0]
    screened = sorted((s for s in mt["screened"] if not s["error"]), key=lambda s: -s["score"])
    if not screened:
        raise UserError(f"no variant of {a.model} could be measured; see {tune_dir / 'report.md'}")
    variant = screened[0]["variant"]
    winner = Candidate(**mt["winner"]["candidate"]) if mt["winner"] else None

    # 2. Model Analyzer on the best-screened variant
    server_w, pa_w = write_wrappers(install, pa, work / "wrappers")
    ma_repo = prepare_repository(repo, variant, work / "ma-input-repository")
    ma = run_model_analyzer(exe, ma_repo, variant, server_w, pa_w, work, a.latency_budget_ms, a.ma_mode,
                            max_instances=os.cpu_count() or 2, max_batch=max(ms.max_batch_size, 1),
                            timeout_s=a.ma_timeout_s, stall_s=a.ma_stall_s)

    # 3. alternate re-measurement in one server
    targets = {t.name: t for t in discover(repo, [a.model])}
    for t in targets.values():
        t.dir = repo / t.name
    base = base_config(targets[variant])
    configs = {"spec": base}
    primary = primary_variant(ms, list(targets.values()))
    if primary and primary != variant:
        configs["spec (primary variant)"] = base_config(targets[primary])
    if winner is not None:
        configs["tritongen tune"] = apply_candidate(base_config(targets[winner.variant]), winner)
    if ma.get("best") and ma["best"].get("config_path"):
        cfg = pb.ModelConfig()
        text_format.Parse(Path(ma["best"]["config_path"]).read_text(), cfg)
        configs["Model Analyzer"] = cfg
    levels = sorted({1, 2, 4, 8, 16, 32})
    # every config on its own model folder (the winner may be another variant), all in one server, alternating
    named = {}
    for k, cfg in configs.items():
        v = winner.variant if k == "tritongen tune" and winner is not None else primary if k.startswith("spec (") else variant
        named[k] = (v, cfg)
    remeasured = remeasure(repo, spec, ms, named, a.latency_budget_ms, a.rounds, levels, a.window_s, install, work)
    rows, keys = tool_rows(a, res, mt, ma, remeasured, ours_wall, variant, primary)
    ours_vs_ma = paired(remeasured, "tritongen tune", "Model Analyzer")
    if ours_vs_ma:
        g, lo, hi = ours_vs_ma
        word = confirm.verdict_word(lo, hi)
        verdict = (f"tritongen tune's winner / Model Analyzer's, round by round: {g:.2f}x (95% interval {lo:.2f}-"
                   f"{hi:.2f}x over {a.rounds} alternating rounds): {word}; wall time {ours_wall:.0f} s vs "
                   f"{ma['wall_s']:.0f} s ({ours_wall / ma['wall_s']:.2f}x).")
    else:
        verdict = "Model Analyzer named no configuration to compare with."
    summary = {"model": a.model, "variant_given_to_ma": variant, "budget_ms": a.latency_budget_ms, "rows": rows,
               "verdict": verdict, "ours_vs_ma": ours_vs_ma,
               "remeasured": remeasured, "ma": {k: v for k, v in ma.items() if k != "argv"}, "ma_argv": ma["argv"],
               "rounds": a.rounds, "levels": levels, "load_average_start": load0, "load_average_end": os.getloadavg()}
    (work / "results.json").write_text(json.dumps(summary, indent=1, default=str))

    write_report(work, a, summary, keys)
    return work


def tool_rows(a, res: dict, mt: dict, ma: dict, remeasured: dict, ours_wall: float, variant: str,
              primary: str | None) -> tuple[list[dict], dict]:
    """One row per tool (ours, Model Analyzer, the spec's config on both variants), each with its ratio to
    the spec's config round by round; and the row label -> re-measured config name."""
    spec_mean = remeasured["spec"]["mean"] or float("nan")
    rows = [
        {"tool": "tritongen tune", "configs_measured": res["measured"] + res["reused"], "wall_s": ours_wall,
         "claimed": (mt["winner"] or {}).get("throughput_mean"), "config": (mt["winner"] or {}).get("short"),
         "remeasured": remeasured.get("tritongen tune", {}).get("mean"),
         "p99_ms": remeasured.get("tritongen tune", {}).get("p99_median_ms")},
        {"tool": f"Model Analyzer {MA_VERSION} ({a.ma_mode})", "configs_measured": ma.get("configs_measured"),
         "wall_s": ma["wall_s"], "claimed": (ma.get("best") or {}).get("throughput"),
         "config": (ma.get("best") or {}).get("config"), "remeasured": remeasured.get("Model Analyzer", {}).get("mean"),
         "p99_ms": remeasured.get("Model Analyzer", {}).get("p99_median_ms")},
        {"tool": "spec's config", "configs_measured": None, "wall_s": None, "claimed": None, "config": variant,
         "remeasured": spec_mean, "p99_ms": remeasured["spec"]["p99_median_ms"]},
    ]
    if "spec (primary variant)" in remeasured:
        p = remeasured["spec (primary variant)"]
        rows.append({"tool": "spec's config on its primary variant", "configs_measured": None, "wall_s": None,
                     "claimed": None, "config": primary, "remeasured": p["mean"], "p99_ms": p["p99_median_ms"]})
    keys = {"tritongen tune": "tritongen tune", f"Model Analyzer {MA_VERSION} ({a.ma_mode})": "Model Analyzer",
            "spec's config": "spec", "spec's config on its primary variant": "spec (primary variant)"}
    for r in rows:
        r["vs_spec"] = paired(remeasured, keys[r["tool"]], "spec")
    return rows, keys


def write_report(work: Path, a, summary: dict, keys: dict) -> Path:
    """``work/report.md``: one row per tool, the verdict, and Model Analyzer's end (stopped, failed)."""
    variant, verdict, rows, levels = summary["variant_given_to_ma"], summary["verdict"], summary["rows"], summary["levels"]
    remeasured, ma, load0 = summary["remeasured"], summary["ma"], summary["load_average_start"]

    def f(v, nd=1):
        return "-" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))

    lines = [f"# tritongen tune vs Model Analyzer: {a.model}, p99 budget {a.latency_budget_ms:g} ms", "",
             f"Same embedded tritonserver binary, same perf_analyzer, same machine, one run. Model Analyzer profiled "
             f"`{variant}` (our screen's best variant at the spec's settings); its input config had preferred sizes "
             "and warm-up removed so that its max_batch_size changes load. Re-measured alternately in one server, "
             f"{a.rounds} rounds (round 1 climbs concurrency {levels}, later rounds measure each config at its "
             f"round-1 best), {a.window_s:g} s windows; load average {load0[0]:.2f} at start.", "",
             f"**{verdict}**", "",
             "| tool | configs measured | wall s | its own claim (inf/s) | re-measured best within budget (inf/s, mean; "
             "0 in a round over budget) | rounds within budget | p99 ms | vs spec (95% interval, rounds both within) "
             "| config |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        vs = "-" if not r["vs_spec"] else f"{r['vs_spec'][0]:.2f}x ({r['vs_spec'][1]:.2f}-{r['vs_spec'][2]:.2f})"
        rr = remeasured.get(keys[r["tool"]], {}).get("rounds", [])
        within = f"{sum(1 for x in rr if x['score'] > 0)}/{len(rr)}"
        lines.append(f"| {r['tool']} | {f(r['configs_measured'])} | {f(r['wall_s'], 0)} | {f(r['claimed'])} | "
                     f"{f(r['remeasured'])} | {within} | {f(r['p99_ms'])} | {vs} | {r['config']} |")
    if ma.get("stopped"):
        lines += ["", f"**{ma['stopped']}** (log: {ma['log']})"]
    elif ma.get("error") or ma.get("returncode") not in (0,):
        lines += ["", f"Model Analyzer: return code {ma.get('returncode')}; {ma.get('error', '')} (log: {ma['log']})"]
    (work / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return work / "report.md"


if __name__ == "__main__":
    sys.exit(main())
