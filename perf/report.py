"""The perf report: results.json / results.csv, PNG plots, report.md, a self-contained report.html.

``write_report(run, out_dir)`` takes the run record the harness collected (plain dicts, see
``perf.harness``) and writes everything into ``out_dir``. It also works on a partial run (server died
mid-sweep): whatever steps finished are reported and the report says it is partial.

The best variant of each model is the one with the highest throughput at any concurrency whose p99
latency is within the budget, among variants whose manifest says the accuracy gate passed and steps with no
errors. It is chosen on the primary driver's numbers (the first of loadgen-grpc, perf_analyzer,
loadgen-http that has results), from the round medians (``perf.sweep``), never from a step marked
unreliable. Its headline ratios (x PyTorch eager, served / in-process) are printed only with their 95%
interval and never from a disturbed baseline: from the rounds that measured the winner served, in-process and
eager side by side after the sweep (``perf.headline``, paired) when the run has them; else an unpaired (Welch)
interval for a served step against a baseline measured in its own phase (``perf.stability.unpaired_ratio``). The
winner against its runner-up is paired (round i with round i, ``perf.stability.paired_ratio``): the same rounds
interleaved them.
"""

from __future__ import annotations

import base64
import csv
import html
import json
from pathlib import Path

from . import headline as headline_mod

DRIVER_ORDER = ("loadgen-grpc", "perf_analyzer", "loadgen-http")
CSV_FIELDS = (
    "model", "variant", "triton_name", "driver", "concurrency", "batch", "requests", "errors", "window_s",
    "throughput", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "avg_ms", "queue_ms", "compute_input_ms",
    "compute_infer_ms", "compute_output_ms", "avg_batch", "inproc_throughput", "serving_ratio",
    "eager_throughput", "speedup_vs_eager", "achieved_gflops", "peak_gflops", "peak_fraction", "executed_fraction",
    "gate", "aborted", "rounds", "throughput_low", "throughput_high", "p99_low", "p99_high", "remeasured", "unreliable",
)
ROUND_FIELDS = ("rounds", "throughput_rounds", "throughput_ci", "p50_ms_ci", "p95_ms_ci", "p99_ms_ci", "half_width",
                "drift", "remeasured", "first_attempt", "unreliable")


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
                   gate=info.get("gate", "unknown"), **{k: step[k] for k in ROUND_FIELDS if k in step})
        for k, ci in (("throughput", step.get("throughput_ci")), ("p99", step.get("p99_ms_ci"))):
            row[f"{k}_low"], row[f"{k}_high"] = ci if ci else (None, None)
        for k in ("queue_ms", "compute_input_ms", "compute_infer_ms", "compute_output_ms", "avg_batch"):
            row[k] = srv.get(k)
        if row.get("avg_batch") is None and (step.get("server") or {}).get("avg_batch") is not None:
            row["avg_batch"] = step["server"]["avg_batch"]
        inproc_res = run.get("baselines", {}).get(name) or {}
        eager_res = run.get("eager", {}).get(info.get("model", "")) or {}
        inproc, eager = _at(inproc_res.get("rows"), c), _at(eager_res.get("rows"), c)
        tp = step.get("throughput") or 0.0
        row["inproc_throughput"] = inproc
        row["serving_ratio"] = tp / inproc if inproc and tp else None
        row["serving_ratio_ci"] = _ratio_ci(step, _at_row(inproc_res.get("rows"), c))
        row["inproc_caveat"] = inproc_res.get("unreliable")
        row["eager_throughput"] = eager
        row["speedup_vs_eager"] = tp / eager if eager and tp else None
        row["speedup_vs_eager_ci"] = _ratio_ci(step, _at_row(eager_res.get("rows"), c))
        row["eager_caveat"] = eager_res.get("unreliable") or eager_res.get("implausible")
        flops = (run.get("flops", {}).get(info.get("model", "")) or {}).get("flops_per_inference")
        prec, peak = _peak(info.get("precision", "fp32"), peaks)
        row["achieved_gflops"] = tp * flops / 1e9 if flops and tp else None
        row["peak_gflops"] = peak
        row["peak_precision"] = prec
        row["peak_fraction"] = row["achieved_gflops"] / peak if row["achieved_gflops"] and peak else None
        # the model's FLOPs measure what a request is worth; a variant that skips dead rows executes fewer
        skipped = info.get("skipped_ops") or 0
        run_flops = flops - skipped if flops and 0 < skipped < flops else None
        row["executed_gflops"] = tp * run_flops / 1e9 if run_flops and tp else None
        row["executed_fraction"] = row["executed_gflops"] / peak if row["executed_gflops"] and peak else None
        rows.append(row)
    return rows


def _ratio_ci(step: dict, base_row: dict) -> list | None:
    """The 95% interval of served / baseline throughput. The baselines are measured in their own phase before
    the server starts, so a served round has no baseline round to pair with: the interval is unpaired (Welch
    on the logs of both sides' rounds, ``perf.stability.unpaired_ratio``) when both have rounds; from the
    baseline's interval alone when the step has a single value; else None."""
    tp, ci = step.get("throughput") or 0.0, base_row.get("throughput_ci")
    if step.get("throughput_rounds") and base_row.get("throughput_rounds"):
        from .stability import unpaired_ratio

        got = unpaired_ratio(step["throughput_rounds"], base_row["throughput_rounds"])
        return [got[1], got[2]] if got else None
    if step.get("rounds") is None and ci and tp and ci[0] > 0 and ci[1] != float("inf"):
        return [tp / ci[1], tp / ci[0]]
    return None


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
            held = (f"at least {best:g} requests/s (every rate tried was held: the limit lies above)"
                    if best and got.get("all_held") else f"{best:g} requests/s" if best else "no rate held")
            out.append(f"{name} ({drv}): " + held
                       + f" (rates tried: {tried}; Poisson arrivals, latency from each request's scheduled arrival)")
    return out


HEADLINES = {  # name in results.json: (row value, its interval, the baseline's caveat, words)
    "x_eager": ("speedup_vs_eager", "speedup_vs_eager_ci", "eager_caveat", "PyTorch eager fp32"),
    "served_over_inprocess": ("serving_ratio", "serving_ratio_ci", "inproc_caveat", "the same runtime in-process"),
}


def headline_ratios(r: dict) -> dict:
    """Each headline ratio of a winner's row: ``{"value", "ci"}`` when it may be printed, ``{"why"}`` when not
    (a disturbed baseline, no interval); absent when there is no baseline to compare with."""
    out = {}
    for name, (key, ci_key, caveat, _) in HEADLINES.items():
        if not r.get(key):
            continue
        if r.get(caveat):
            out[name] = {"why": f"its baseline is not trustworthy ({r[caveat]})"}
        elif not r.get(ci_key):
            out[name] = {"why": "its baseline or the step has fewer than 2 rounds (no interval)"}
        else:
            out[name] = {"value": r[key], "ci": list(r[ci_key])}
    return out


def headline_ratio(r: dict) -> str:
    """The headline "x PyTorch eager" and served / in-process, only with their intervals and never from a
    disturbed baseline."""
    got, parts = headline_ratios(r), []
    x = got.get("x_eager")
    if x and "why" in x:
        parts.append(f"; no ratio to PyTorch eager fp32: {x['why']}")
    elif x:
        src = (f"{r['headline_rounds']} rounds side by side, paired" if r.get("headline_rounds") else
               "both sides' rounds, unpaired" if r.get("throughput_rounds") else "the baseline's rounds")
        parts.append(f", {x['value']:.2f}x PyTorch eager fp32 at the same concurrency (95% interval "
                     f"{x['ci'][0]:.2f}-{x['ci'][1]:.2f}x from {src})")
    s = got.get("served_over_inprocess")
    if s and "why" in s:
        parts.append(f"; no served / in-process ratio: {s['why']}")
    elif s:
        parts.append(f", served / in-process {s['value']:.2f}x (95% interval {s['ci'][0]:.2f}-{s['ci'][1]:.2f}x"
                     + (", paired)" if r.get("headline_rounds") else ")"))
    return "".join(parts)


def _interval_words(r: dict, key: str, unit: str) -> str:
    ci = r.get(f"{key}_ci")
    if not ci or ci[1] == float("inf"):
        return ""
    return f" (95% interval {ci[0]:.2f}-{ci[1]:.2f}{unit} over {r.get('rounds')} rounds)"


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
    """``{model: {"row": best row, "why": str} | {"row": None, "why": str, "fastest": row | None}}``; with no best
    named, ``fastest`` is the fastest clean step within the budget (unreliable), which the profile still explains."""
    driver = primary_driver(rows)
    out = {}
    for model in sorted({r["model"] for r in rows}):
        mine = [r for r in rows if r["model"] == model and r["driver"] == driver]
        passed = [r for r in mine if r.get("gate") == "passed"]
        clean = [r for r in passed if not r.get("errors") and not r.get("aborted") and (r.get("throughput") or 0) > 0]
        within_all = [r for r in clean if r.get("p99_ms") is not None and r["p99_ms"] <= budget_ms]
        within = [r for r in within_all if not r.get("unreliable")]
        fastest = max(within_all, key=lambda r: r["throughput"]) if within_all else None
        best = max(within, key=lambda r: r["throughput"]) if within else None
        same = best and fastest.get("unreliable") and fastest["variant"] == best["variant"]
        if best and fastest.get("unreliable") and not same:  # a reliable best slower than another variant's unreliable step is no best
            out[model] = {"row": None, "driver": driver, "fastest": fastest,
                          "why": f"the fastest step within p99 <= {budget_ms:g} ms, {fastest['variant']} at concurrency "
                                 f"{fastest['concurrency']} ({fastest['throughput']:.2f}/s median), is unreliable "
                                 f"because {fastest['unreliable']}; the fastest reliable one, {best['variant']} at "
                                 f"concurrency {best['concurrency']} ({best['throughput']:.2f}/s), cannot be named "
                                 f"best over it: re-run on a quieter machine"}
        elif best:  # with ``same``, the variant is the fastest either way and its reliable step stands for it
            out[model] = {"row": best, "driver": driver, "runner_up": _runner_up(best, within),
                          "why": f"highest throughput with p99 <= {budget_ms:g} ms among {len({r['variant'] for r in passed})} "
                                 f"gate-passed variant(s) ({driver})" + (
                                     f"; its step at concurrency {fastest['concurrency']} measured "
                                     f"{fastest['throughput']:.2f}/s (median) but is unreliable because "
                                     f"{fastest['unreliable']}, so its reliable step at concurrency "
                                     f"{best['concurrency']} stands for it" if same else "")}
        else:
            fast = max(within_all, key=lambda r: r["throughput"]) if within_all else None
            why = ("no variant passed the accuracy gate" if not passed else
                   "no error-free step" if not clean else
                   f"no step met p99 <= {budget_ms:g} ms (fastest p99: {min(r['p99_ms'] for r in clean):.1f} ms)"
                   if not within_all else
                   f"every step within p99 <= {budget_ms:g} ms is unreliable; the fastest measured, "
                   f"{fast['variant']} at concurrency {fast['concurrency']} ({fast['throughput']:.2f}/s), is so "
                   f"because {fast['unreliable']}")
            out[model] = {"row": None, "driver": driver, "why": why, "fastest": fast}
    return out


def _runner_up(best: dict, rows: list[dict]) -> dict | None:
    """The best step of the second-fastest variant and best / it from the rounds (measured in the same rounds,
    interleaved: a paired comparison); None with a single variant."""
    others = [r for r in rows if r["variant"] != best["variant"]]
    if not others:
        return None
    second = max(others, key=lambda r: r["throughput"])
    from .stability import paired_ratio

    got = paired_ratio(best.get("throughput_rounds") or [], second.get("throughput_rounds") or [])
    return {"variant": second["variant"], "concurrency": second["concurrency"], "throughput": second["throughput"],
            "ratio": got[0] if got else best["throughput"] / second["throughput"],
            "ci": [got[1], got[2]] if got else None}


def runner_up_words(ru: dict | None) -> str:
    if not ru:
        return ""
    if not ru.get("ci"):
        return f" Runner-up: {ru['variant']} at concurrency {ru['concurrency']} ({ru['throughput']:.2f}/s)."
    lo, hi = ru["ci"]
    verdict = ("distinguishably faster" if lo > 1 else
               "not distinguishable from it on these rounds (the interval includes 1)")
    return (f" Runner-up: {ru['variant']} at concurrency {ru['concurrency']} ({ru['throughput']:.2f}/s); the winner "
            f"is {ru['ratio']:.2f}x it (95% interval {lo:.2f}-{hi:.2f}x, paired rounds): {verdict}.")


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
    r = row.get("serving_ratio") if not row.get("inproc_caveat") and row.get("serving_ratio_ci") else None
    if r:
        tail = (f"serving overhead {100 * (1 - r):.0f}%" if r < 1 else
                "no measurable serving overhead: the server's instances overlap work the single in-process call "
                "cannot, or the machine's load changed between the two measurements")
        if r < 1 and c > 1 and row.get("avg_batch") is not None and row["avg_batch"] < 1.05:
            tail = (f"{100 * (1 - r):.0f}% below it; the server ran each request alone (batches of "
                    f"{row['avg_batch']:.2f}) where the in-process call ran {c} at once, so the gap is batching the "
                    "server did not do as much as serving overhead")
        lo, hi = row["serving_ratio_ci"]
        parts.append(f"Served throughput is {r:.2f}x (95% interval {lo:.2f}-{hi:.2f}x) the same runtime run "
                     f"in-process at batch {c} ({tail}).")
    if row.get("peak_fraction"):
        parts.append(f"It achieves {row['achieved_gflops']:.1f} GFLOP/s, {100 * row['peak_fraction']:.0f}% of "
                     f"this machine's {row.get('peak_precision', 'fp32')} GEMM ceiling ({row['peak_gflops']:.0f} GFLOP/s)"
                     + (" -- above 100%: the probe ran under load and underestimates the ceiling; delete "
                        "machine_probe.json and re-run on a quiet machine." if row["peak_fraction"] > 1 else "."))
        if row.get("executed_fraction"):
            parts.append(f"That counts the model's FLOPs per request; this variant skips dead rows (work no output "
                         f"reads) and executes {row['executed_gflops']:.1f} GFLOP/s, "
                         f"{100 * row['executed_fraction']:.0f}% of the ceiling.")
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
            pts = sorted((r["concurrency"], r["throughput"], r.get("throughput_ci")) for r in mine
                         if (r["variant"], r["driver"]) == key)
            err = [[max(t - ci[0], 0) if ci and ci[1] != float("inf") else 0 for _, t, ci in pts],
                   [max(ci[1] - t, 0) if ci and ci[1] != float("inf") else 0 for _, t, ci in pts]]
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=err, marker="o", capsize=3,
                        label=f"{key[0]} served ({key[1]})")
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
    if isinstance(v, (list, tuple)) and len(v) == 2:
        return "-" if v[1] == float("inf") else f"{v[0]:.{nd}f}-{v[1]:.{nd}f}"
    if isinstance(v, bool):
        return "yes" if v else "no"
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
    ("throughput_ci", "infer/s 95%"), ("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"), ("p99_ms", "p99 ms"),
    ("p99_ms_ci", "p99 95%"), ("rounds", "rounds"), ("reliable", "reliable"), ("queue_ms", "queue ms"), ("compute_infer_ms", "infer ms"),
    ("avg_batch", "avg batch"), ("inproc_throughput", "in-process/s"), ("serving_ratio", "served/in-proc"),
    ("speedup_vs_eager", "x eager"), ("peak_fraction", "of peak"), ("executed_fraction", "executed of peak"),
    ("errors", "errors"),
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
                f"{r['throughput']:.2f} inferences/s{_interval_words(r, 'throughput', '')}, p99 {r['p99_ms']:.1f} ms"
                f"{_interval_words(r, 'p99_ms', ' ms')}{sp}; {win['why']}.{runner_up_words(win.get('runner_up'))}")
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


def _winner_record(w: dict) -> dict:
    """What results.json keeps of a model's winner (``perf.compare_runs`` reads it)."""
    r = w["row"] or {}
    keys = ("triton_name", "variant", "concurrency", "throughput", "throughput_ci", "p99_ms", "p99_ms_ci", "rounds",
            "speedup_vs_eager", "speedup_vs_eager_ci", "serving_ratio", "serving_ratio_ci")
    return {**{k: r.get(k) for k in keys}, "driver": w.get("driver"), "headline": headline_ratios(r) if r else {},
            "runner_up": w.get("runner_up"), "why": w["why"]}


def _unreliable_section(md: list, body: list, rows: list[dict]) -> None:
    bad = [r for r in rows if r.get("unreliable")]
    if not bad:
        return
    md.append("### Unreliable steps (no winner or headline is taken from them)\n")
    body.append("<h3>Unreliable steps (no winner or headline is taken from them)</h3><ul>")
    for r in bad:
        again = " after one re-measurement" if r.get("remeasured") else ""
        ln = f"{r['variant']} {r['driver']} c={r['concurrency']}{again}: {r['unreliable']}"
        md.append(f"- {ln}")
        body.append(f"<li>{html.escape(ln)}</li>")
    md.append("")
    body.append("</ul>")


def write_report(run: dict, out_dir: Path) -> dict:
    """Write every report file into ``out_dir``; returns ``{"winners": ..., "files": [...]}``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = enrich(run)
    for r in rows:
        r["reliable"] = None if r.get("rounds") is None else not r.get("unreliable")
    budget = float(run.get("latency_budget_ms") or float("inf"))
    winners = choose_winners(rows, budget)
    confirmed = run.get("headline") or {}
    for m, w in winners.items():  # the headline ratios from the paired rounds beside the winner (perf.headline)
        w["row"] = headline_mod.attach(w["row"], confirmed.get(m))
    run = {**run, "rows": rows, "winners": {m: _winner_record(w) for m, w in winners.items()}}
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
    for m, entry in sorted(confirmed.items()):
        got = headline_mod.lines(entry)
        md += [f"### {m}: the headline, side by side\n", *got]
        body += [f"<h3>{html.escape(m)}: the headline, side by side</h3><pre>{html.escape(chr(10).join(got))}</pre>"]
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
        _unreliable_section(md, body, mine)
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
gRPC aio or HTTP aio, and/or perf_analyzer), after a warm-up that lasts until the latency settles, inside a
measurement window capped in both requests and seconds. Every step runs in interleaved rounds (each round measures
every variant once, the variants' order rotated between rounds, a quiet probe before and after each variant's
block); a step's numbers are the medians of its rounds with a 95% Student-t interval. A step whose interval is wider
than +-15% of its median, or whose probe moved more than 1.25x, is re-measured once and then marked unreliable: no
winner and no headline ratio is taken from it. Ratios to the baselines pair round i with round i. Inputs are generated from the spec (declared shapes, dtypes, integer ranges, named dims at opt) or read
from the spec's calibration .npz. Server-side queue and compute times and the average batch formed come from Triton's
statistics extension, read before and after each step.

In-process: the same runtime and artifact without the server, in its own subprocess, in the session the served
config describes (generator.serve.runtimes; the Notes say which native-backend settings it and the twin reproduced), with
the intra-op threads of all served instances together (instances x threads each). "Concurrency c" in-process means one call at batch c: that is what Triton's dynamic batcher
can at best make of c outstanding batch-1 requests, so served / in-process is the share of the runtime's capacity the
server delivers (transport, python-backend stub, queueing and smaller-than-c batches are the loss). PyTorch eager fp32
of the original checkpoint is measured the same way. Speed-up vs eager compares served throughput with eager at
batch c. The best variant's headline ratios come from rounds after the sweep that measure it served, in-process and
eager one after another (order rotated), each ratio taken within a round: a phase in which the machine ran faster
moves both sides of a ratio alike.

Ceiling: a square GEMM probe (n=2048, all cores) per precision; achieved FLOP/s counts only MatMul/Gemm/Conv in the
ONNX graph (2 FLOPs per multiply-add) at the spec's opt dims. Client and server share this machine's cores, so the
client's own CPU time is part of the served number.

Where the time goes: after the sweep, the best variant's (with none named: the fastest step's) served session in-process at its concurrency as the batch,
with the runtime's own profiler (ONNX Runtime's trace, OpenVINO's PERF_COUNT), warm-up runs discarded; per op class the
time, the FLOPs of its executed nodes (their shapes, or the ONNX graph's) and the GFLOP/s as a share of the GEMM
probe's ceiling of the class's precision (perf.opprofile).
"""
