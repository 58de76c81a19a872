"""The perf report: results.json / results.csv, PNG plots, report.md, a self-contained report.html.

``write_report(run, out_dir)`` takes the run record the harness collected (plain dicts, see
``perf.harness``) and writes everything into ``out_dir``. It also works on a partial run (server died
mid-sweep): whatever steps finished are reported and the report says it is partial.

The best variant of each model is the one with the highest throughput at any concurrency whose p99
latency is within the budget, among variants whose manifest says the accuracy gate passed and steps with no
errors. It is chosen on the primary driver's numbers (the first of loadgen-grpc, perf_analyzer,
loadgen-http that has results).
"""

from __future__ import annotations

import base64
import csv
import html
import json
from pathlib import Path

DRIVER_ORDER = ("loadgen-grpc", "perf_analyzer", "loadgen-http")
CSV_FIELDS = (
    "model", "variant", "triton_name", "driver", "concurrency", "batch", "requests", "errors", "window_s",
    "throughput", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "avg_ms", "queue_ms", "compute_input_ms",
    "compute_infer_ms", "compute_output_ms", "avg_batch", "inproc_throughput", "serving_ratio",
    "eager_throughput", "speedup_vs_eager", "achieved_gflops", "peak_gflops", "peak_fraction", "gate", "aborted",
)


# ----------------------------------------------------------------------------------------- derived numbers


def _server(step: dict) -> dict:
    s = step.get("server") or {}
    return s.get("perf_analyzer") or s


def enrich(run: dict) -> list[dict]:
    """One flat row per step, with in-process / eager / FLOP comparisons at the same concurrency."""
    rows = []
    peaks = (run.get("probe") or {}).get("peak_gflops") or {}
    for step in run.get("steps", []):
        name = step["model"]
        info = run.get("models", {}).get(name, {})
        c = step["concurrency"]
        srv = _server(step)
        row = {k: step.get(k) for k in CSV_FIELDS if k in step}
        row.update(model=info.get("model", name), variant=info.get("variant", ""), triton_name=name,
                   gate=info.get("gate", "unknown"))
        for k in ("queue_ms", "compute_input_ms", "compute_infer_ms", "compute_output_ms", "avg_batch"):
            row[k] = srv.get(k)
        if row.get("avg_batch") is None and (step.get("server") or {}).get("avg_batch") is not None:
            row["avg_batch"] = step["server"]["avg_batch"]
        inproc = _at((run.get("baselines", {}).get(name) or {}).get("rows"), c)
        eager = _at((run.get("eager", {}).get(info.get("model", "")) or {}).get("rows"), c)
        tp = step.get("throughput") or 0.0
        row["inproc_throughput"] = inproc
        row["serving_ratio"] = tp / inproc if inproc and tp else None
        eager_res = run.get("eager", {}).get(info.get("model", "")) or {}
        row["eager_throughput"] = eager
        row["speedup_vs_eager"] = tp / eager if eager and tp else None
        ci = _at_row(eager_res.get("rows"), c).get("throughput_ci")
        row["speedup_vs_eager_ci"] = [tp / ci[1], tp / ci[0]] if ci and tp and ci[0] > 0 and ci[1] != float("inf") \
            else None
        row["eager_caveat"] = eager_res.get("unreliable") or eager_res.get("implausible")
        flops = (run.get("flops", {}).get(info.get("model", "")) or {}).get("flops_per_inference")
        prec, peak = _peak(info.get("precision", "fp32"), peaks)
        row["achieved_gflops"] = tp * flops / 1e9 if flops and tp else None
        row["peak_gflops"] = peak
        row["peak_precision"] = prec
        row["peak_fraction"] = row["achieved_gflops"] / peak if row["achieved_gflops"] and peak else None
        rows.append(row)
    return rows


def _peak(precision: str, peaks: dict):
    want = {"int8": "int8", "bf16": "bf16"}.get(precision, "fp32")
    if want in peaks:
        return want, peaks[want]
    return "fp32", peaks.get("fp32")


def rate_summary(run: dict) -> list[str]:
    """One line per variant and driver of the open-loop sweep (``perf.openloop``): the highest rate held."""
    out = []
    for name, by_driver in sorted((run.get("rate_sweeps") or {}).items()):
        for drv, got in by_driver.items():
            tried = ", ".join(f"{r:g}" for r in got.get("rates", []))
            best = got.get("max_rate")
            out.append(f"{name} ({drv}): " + (f"{best:g} requests/s" if best else "no rate held")
                       + f" (rates tried: {tried}; Poisson arrivals, latency from each request's scheduled arrival)")
    return out


def headline_ratio(r: dict) -> str:
    """The headline "x PyTorch eager", only with its interval and never from a disturbed baseline."""
    if not r.get("speedup_vs_eager"):
        return ""
    if r.get("eager_caveat"):
        return f"; no ratio to PyTorch eager fp32: its baseline is not trustworthy ({r['eager_caveat']})"
    ci = r.get("speedup_vs_eager_ci")
    if not ci:
        return "; no ratio to PyTorch eager fp32: its baseline has no interval (fewer than 2 rounds)"
    return (f", {r['speedup_vs_eager']:.2f}x PyTorch eager fp32 at the same concurrency (95% interval "
            f"{ci[0]:.2f}-{ci[1]:.2f}x from the baseline's rounds)")


def _at_row(rows, c) -> dict:
    for b in rows or []:
        if b.get("concurrency") == c:
            return b
    return {}


def _at(rows, c):
    for r in rows or []:
        if r.get("concurrency") == c:
            return r.get("throughput")
    return None


def primary_driver(rows: list[dict]) -> str | None:
    have = {r["driver"] for r in rows if (r.get("throughput") or 0) > 0}
    return next((d for d in DRIVER_ORDER if d in have), next(iter(sorted(have)), None))


def choose_winners(rows: list[dict], budget_ms: float) -> dict:
    """``{model: {"row": best row, "why": str} | {"row": None, "why": str}}``."""
    driver = primary_driver(rows)
    out = {}
    for model in sorted({r["model"] for r in rows}):
        mine = [r for r in rows if r["model"] == model and r["driver"] == driver]
        passed = [r for r in mine if r.get("gate") == "passed"]
        clean = [r for r in passed if not r.get("errors") and not r.get("aborted") and (r.get("throughput") or 0) > 0]
        within = [r for r in clean if r.get("p99_ms") is not None and r["p99_ms"] <= budget_ms]
        if within:
            best = max(within, key=lambda r: r["throughput"])
            out[model] = {"row": best, "driver": driver,
                          "why": f"highest throughput with p99 <= {budget_ms:g} ms among {len({r['variant'] for r in passed})} "
                                 f"gate-passed variant(s) ({driver})"}
        else:
            why = ("no variant passed the accuracy gate" if not passed else
                   "no error-free step" if not clean else
                   f"no step met p99 <= {budget_ms:g} ms (fastest p99: {min(r['p99_ms'] for r in clean):.1f} ms)")
            out[model] = {"row": None, "driver": driver, "why": why}
    return out


def explain(row: dict) -> str:
    """Where the winner's time goes, in plain words."""
    c, avg = row["concurrency"], row.get("avg_ms")
    q, ci, inf, co = (row.get(k) for k in ("queue_ms", "compute_input_ms", "compute_infer_ms", "compute_output_ms"))
    parts = [f"At concurrency {c} each request took {avg:.1f} ms on average end to end (p99 {row['p99_ms']:.1f} ms)."
             if avg is not None else f"At concurrency {c}:"]
    if inf is not None and avg:
        compute = (ci or 0) + inf + (co or 0)
        outside = max(avg - compute - (q or 0), 0.0)
        parts.append(
            f"Of that, {q or 0:.1f} ms ({100 * (q or 0) / avg:.0f}%) was queueing in the server, waiting for the "
            f"dynamic batcher to fill a batch or for a model instance to come free; {compute:.1f} ms "
            f"({100 * compute / avg:.0f}%) was the model running ({inf:.1f} ms inference, "
            f"{(ci or 0) + (co or 0):.2f} ms copying inputs and outputs in the python backend); the remaining "
            f"{outside:.1f} ms ({100 * outside / avg:.0f}%) was outside the model: client, network, "
            f"(de)serialisation and the python-backend stub handing tensors over.")
    if row.get("avg_batch"):
        parts.append(f"The batcher formed batches of {row['avg_batch']:.2f} requests on average.")
    r = row.get("serving_ratio")
    if r:
        tail = (f"serving overhead {100 * (1 - r):.0f}%" if r < 1 else
                "no measurable serving overhead: the server's instances overlap work the single in-process call "
                "cannot, or the machine's load changed between the two measurements")
        parts.append(f"Served throughput is {r:.2f}x the same runtime run in-process at batch {c} ({tail}).")
    if row.get("peak_fraction"):
        parts.append(f"It achieves {row['achieved_gflops']:.1f} GFLOP/s, {100 * row['peak_fraction']:.0f}% of "
                     f"this machine's {row.get('peak_precision', 'fp32')} GEMM ceiling ({row['peak_gflops']:.0f} GFLOP/s)"
                     + (" -- above 100%: the probe ran under load and underestimates the ceiling; delete "
                        "machine_probe.json and re-run on a quiet machine." if row["peak_fraction"] > 1 else "."))
    return " ".join(parts)


# ----------------------------------------------------------------------------------------- plots



def _save(plt, fig, ax, xlabel: str, ylabel: str, title: str, path: Path) -> Path:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

def plot(rows: list[dict], run: dict, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for model in sorted({r["model"] for r in rows}):
        mine = [r for r in rows if r["model"] == model and (r.get("throughput") or 0) > 0]
        if not mine:
            continue
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for key in sorted({(r["variant"], r["driver"]) for r in mine}):
            pts = sorted((r["concurrency"], r["throughput"]) for r in mine if (r["variant"], r["driver"]) == key)
            ax.plot(*zip(*pts), marker="o", label=f"{key[0]} served ({key[1]})")
        for name, info in run.get("models", {}).items():
            if info.get("model") != model:
                continue
            base = (run.get("baselines", {}).get(name) or {}).get("rows") or []
            if base:
                ax.plot([b["concurrency"] for b in base], [b["throughput"] for b in base], linestyle="--", marker="x",
                        label=f"{info.get('variant')} in-process (batch = c)")
        eager = (run.get("eager", {}).get(model) or {}).get("rows") or []
        if eager:
            ax.plot([b["concurrency"] for b in eager], [b["throughput"] for b in eager], linestyle=":", color="k",
                    marker="s", label="PyTorch eager fp32 (batch = c)")
        paths.append(_save(plt, fig, ax, "concurrency (requests in flight)", "throughput (inferences/s)",
                           f"{model}: throughput vs concurrency", out_dir / f"{model}_throughput.png"))

        fig, ax = plt.subplots(figsize=(7, 4.5))
        for key in sorted({(r["variant"], r["driver"]) for r in mine}):
            pts = sorted((r["throughput"], r["p99_ms"]) for r in mine
                         if (r["variant"], r["driver"]) == key and r.get("p99_ms") is not None)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=f"{key[0]} ({key[1]})")
        budget = run.get("latency_budget_ms")
        if budget:
            ax.axhline(budget, color="r", linestyle="--", linewidth=1, label=f"p99 budget {budget:g} ms")
        paths.append(_save(plt, fig, ax, "throughput (inferences/s)", "p99 latency (ms)",
                           f"{model}: p99 latency vs throughput", out_dir / f"{model}_latency.png"))
    return paths


# ----------------------------------------------------------------------------------------- writers


def _fmt(v, nd=2) -> str:
    if v is None or v == "":
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def _table(rows: list[dict], cols: list[tuple[str, str]]) -> list[list[str]]:
    return [[label for _, label in cols]] + [[_fmt(r.get(k)) for k, _ in cols] for r in rows]


def _md_table(t: list[list[str]]) -> str:
    lines = ["| " + " | ".join(t[0]) + " |", "|" + "---|" * len(t[0])]
    lines += ["| " + " | ".join(r) + " |" for r in t[1:]]
    return "\n".join(lines)


def _html_table(t: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in t[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in t[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STEP_COLS = [
    ("variant", "variant"), ("driver", "driver"), ("concurrency", "c"), ("throughput", "infer/s"),
    ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"), ("queue_ms", "queue ms"), ("compute_infer_ms", "infer ms"),
    ("avg_batch", "avg batch"), ("inproc_throughput", "in-process/s"), ("serving_ratio", "served/in-proc"),
    ("speedup_vs_eager", "x eager"), ("peak_fraction", "of peak"), ("errors", "errors"),
]


def _best_section(md: list, body: list, winners: dict, budget: float) -> None:
    """The best variant per model (p99 within the budget), its headline ratio and where its time goes."""
    md.append(f"## Best variant (p99 <= {budget:g} ms)\n")
    body.append(f"<h2>Best variant (p99 &le; {budget:g} ms)</h2>")
    for model, win in winners.items():
        r = win["row"]
        if r is None:
            line = f"**{model}**: no winner: {win['why']}."
            md.append(line + "\n")
            body.append(f"<p>{html.escape(line.replace('**', ''))}</p>")
            continue
        sp = headline_ratio(r)
        line = (f"**{model}**: `{r['variant']}` (Triton model `{r['triton_name']}`) at concurrency {r['concurrency']}: "
                f"{r['throughput']:.2f} inferences/s, p99 {r['p99_ms']:.1f} ms{sp}; {win['why']}.")
        md += [line + "\n", explain(r) + "\n"]
        body += [f"<p>{html.escape(line.replace('**', '').replace('`', ''))}</p>", f"<p>{html.escape(explain(r))}</p>"]



def _opprofile_section(md: list, body: list, profs: dict) -> None:
    """Where the best variant's time goes, per op class and node (``perf.opprofile``), when the run has it."""
    if not profs:
        return
    from .opprofile import headline, markdown, tables

    md.append("## Where the time goes\n")
    body.append("<h2>Where the time goes</h2>")
    for model, p in sorted(profs.items()):
        md.append(markdown(p, f"{model} (`{p.get('triton_name')}`)"))
        body.append(f"<p><b>{html.escape(model)} ({html.escape(str(p.get('triton_name')))})</b>: "
                    f"{html.escape(headline(p))}</p>")
        body += [_html_table(t) for t in (tables(p) if p.get("classes") else ())]
        body += [f"<p>{html.escape(n)}</p>" for n in p.get("notes", [])]


def write_report(run: dict, out_dir: Path) -> dict:
    """Write every report file into ``out_dir``; returns ``{"winners": ..., "files": [...]}``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = enrich(run)
    budget = float(run.get("latency_budget_ms") or float("inf"))
    winners = choose_winners(rows, budget)
    run = {**run, "rows": rows, "winners": {m: {"triton_name": w["row"]["triton_name"] if w["row"] else None,
                                                "variant": w["row"]["variant"] if w["row"] else None,
                                                "concurrency": w["row"]["concurrency"] if w["row"] else None,
                                                "throughput": w["row"]["throughput"] if w["row"] else None,
                                                "speedup_vs_eager": w["row"]["speedup_vs_eager"] if w["row"] else None,
                                                "why": w["why"]} for m, w in winners.items()}}
    (out_dir / "results.json").write_text(json.dumps(run, indent=2, default=str) + "\n")
    with open(out_dir / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k) for k in CSV_FIELDS})
    cmds = run.get("commands") or []
    (out_dir / "commands.txt").write_text("\n".join(cmds) + ("\n" if cmds else ""))
    images = plot(rows, run, out_dir)

    md, body = [], []
    title = f"tritongen perf report {run.get('run_id', '')}"
    md.append(f"# {title}\n")
    body.append(f"<h1>{html.escape(title)}</h1>")
    meta = run.get("meta", {})
    if run.get("partial"):
        note = f"**PARTIAL RUN**: {run.get('error', 'stopped early')}. Only the steps that finished are shown."
        md.append(note + "\n")
        body.append(f"<p class='bad'>{html.escape(note.replace('**', ''))}</p>")
    facts = [f"- {k}: {v}" for k, v in meta.items()]
    md.append("\n".join(facts) + "\n")
    body.append("<ul>" + "".join(f"<li>{html.escape(f[2:])}</li>" for f in facts) + "</ul>")

    _best_section(md, body, winners, budget)
    _opprofile_section(md, body, run.get("opprofile") or {})
    rate_lines = rate_summary(run)
    if rate_lines:
        md.append(f"## Open loop: the highest Poisson request rate held (p99 <= {budget:g} ms)\n")
        body.append(f"<h2>Open loop: the highest Poisson request rate held (p99 &le; {budget:g} ms)</h2><ul>")
        md += [f"- {ln}" for ln in rate_lines] + [""]
        body += [f"<li>{html.escape(ln)}</li>" for ln in rate_lines] + ["</ul>"]

    skipped = {n: i for n, i in run.get("models", {}).items() if i.get("skipped")}
    if skipped:
        md.append("## Skipped\n")
        body.append("<h2>Skipped</h2><ul>")
        for n, i in skipped.items():
            md.append(f"- `{n}`: {i['skipped']}")
            body.append(f"<li>{html.escape(n)}: {html.escape(i['skipped'])}</li>")
        md.append("")
        body.append("</ul>")

    for model in sorted({r["model"] for r in rows}):
        mine = sorted((r for r in rows if r["model"] == model), key=lambda r: (r["variant"], r["driver"], r["concurrency"]))
        t = _table(mine, STEP_COLS)
        md += [f"## {model}\n", _md_table(t) + "\n"]
        body += [f"<h2>{html.escape(model)}</h2>", _html_table(t)]
        for p in images:
            if p.name.startswith(model + "_"):
                md.append(f"![{p.stem}]({p.name})\n")
                b64 = base64.b64encode(p.read_bytes()).decode()
                body.append(f"<p><img alt='{html.escape(p.stem)}' src='data:image/png;base64,{b64}'></p>")

    notes = run.get("notes") or []
    if notes:
        md.append("## Notes\n")
        md += [f"- {n}" for n in notes] + [""]
        body.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    method = METHOD.strip()
    md += ["## Method\n", method + "\n", "Exact commands: `commands.txt`. Raw data: `results.json`, `results.csv`.\n"]
    body += ["<h2>Method</h2>", "".join(f"<p>{html.escape(p)}</p>" for p in method.split("\n\n"))]
    if cmds:
        body.append("<h2>Commands</h2><pre>" + html.escape("\n".join(cmds)) + "</pre>")

    (out_dir / "report.md").write_text("\n".join(md))
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;font-size:12px}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}.bad{color:#b00;font-weight:bold}"
             "pre{white-space:pre-wrap;font-size:11px;background:#f6f6f6;padding:1em}")
    (out_dir / "report.html").write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")
    files = ["results.json", "results.csv", "commands.txt", "report.md", "report.html"] + [p.name for p in images]
    return {"winners": run["winners"], "files": files}


METHOD = """
Served numbers: closed-loop clients keep `c` batch-1 requests in flight (the built-in tritonclient load generator,
gRPC aio or HTTP aio, and/or perf_analyzer), after a warm-up, inside a measurement window capped in both requests
and seconds. Inputs are generated from the spec (declared shapes, dtypes, integer ranges, named dims at opt) or read
from the spec's calibration .npz. Server-side queue and compute times and the average batch formed come from Triton's
statistics extension, read before and after each step.

In-process: the same runtime and artifact without the server, in its own subprocess, in the session the served
config describes (generator.serve.runtimes; the Notes say which native-backend settings it and the twin reproduced), with
the intra-op threads of all served instances together (instances x threads each). "Concurrency c" in-process means one call at batch c: that is what Triton's dynamic batcher
can at best make of c outstanding batch-1 requests, so served / in-process is the share of the runtime's capacity the
server delivers (transport, python-backend stub, queueing and smaller-than-c batches are the loss). PyTorch eager fp32
of the original checkpoint is measured the same way. Speed-up vs eager compares served throughput with eager at
batch c.

Ceiling: a square GEMM probe (n=2048, all cores) per precision; achieved FLOP/s counts only MatMul/Gemm/Conv in the
ONNX graph (2 FLOPs per multiply-add) at the spec's opt dims. Client and server share this machine's cores, so the
client's own CPU time is part of the served number.

Where the time goes: after the sweep, the best variant's served session in-process at its concurrency as the batch,
with the runtime's own profiler (ONNX Runtime's trace, OpenVINO's PERF_COUNT), warm-up runs discarded; per op class the
time, the FLOPs of its executed nodes (their shapes, or the ONNX graph's) and the GFLOP/s as a share of the GEMM
probe's ceiling of the class's precision (perf.opprofile).
"""
