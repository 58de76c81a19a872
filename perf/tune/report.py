"""The tune run's report: report.md (verdict, A/B table, every measured configuration), a Pareto plot per
model, and results.json."""

from __future__ import annotations

import json
from pathlib import Path

def write_tune_report(run: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = [f"# tritongen tune: {run['run_id']}", "",
             f"Strategy **{run['strategy']}**, objective **{run['objective']}**, p99 budget "
             f"{run['latency_budget_ms'] or '-'} ms; server: {run['server']}; machine: {run['machine']}; "
             f"{run['measured']} configurations measured, {run['reused']} reused from the cache, wall "
             f"{run['seconds']:.0f} s.", ""]
    for mt in run["models"]:
        lines += [f"## {mt['model']}", "", f"**Verdict:** {mt['verdict']}", ""]
        if mt.get("ceilings"):
            lines.append("In-process ceilings (each runtime alone, every core, no server; inf/s): " + ", ".join(
                f"{k} {v:.1f}" if v else f"{k} -" for k, v in sorted(mt["ceilings"].items(), key=lambda kv: -(kv[1] or 0)))
                + ".")
            lines.append("")
        if mt["pruned"]:
            lines.append(f"Pruned (in-process ceiling, then the screen at the spec's settings): {', '.join(mt['pruned'])}.")
            lines.append("")
        lines += ["| configuration | role | rounds | throughput (inf/s, mean) | p99 ms (median) | vs spec | 95% interval |"
                  " vs spec's primary variant |",
                  "|---|---|---|---|---|---|---|---|"]
        for key, e in mt["confirm"].items():
            star = " **winner**" if mt["winner"] and mt["winner"]["key"] == key else ""
            lines.append(f"| {e['short']} | {e['label'] or '-'}{star} | {len(e['rounds'])} | {e['throughput_mean']:.1f} | "
                         f"{e['p99_median_ms'] or float('nan'):.1f} | {e['ratio_vs_spec']:.2f}x | "
                         f"{e['ci_low']:.2f}-{e['ci_high']:.2f}x | "
                         + (f"{e['ratio_vs_primary']:.2f}x ({e['primary_ci_low']:.2f}-{e['primary_ci_high']:.2f})"
                            if e.get("ratio_vs_primary") else "-") + " |")
        lines += ["", "Every configuration measured in the search (score: best throughput within the constraints):", "",
                  "| configuration | score | best c | p99 ms | memory MB | avg batch | note |", "|---|---|---|---|---|---|---|"]
        for m in mt["measured"]:
            lines.append(f"| {m['short']} | {m['score']:.1f} | {m['best_level'] or '-'} | "
                         f"{m['best_p99_ms'] if m['best_p99_ms'] is not None else float('nan'):.1f} | "
                         f"{m['memory_mb'] if m['memory_mb'] is not None else float('nan'):.0f} | "
                         f"{m['avg_batch'] if m['avg_batch'] is not None else float('nan'):.2f} | {m['error'] or ''} |")
        # Pareto plot: throughput vs p99 of every measured level
        pts = [(r["throughput"], r["p99_ms"], m["candidate"]["variant"]) for m in mt["measured"] for r in m["levels"]
               if r["p99_ms"] is not None and r["requests"] > 0]
        if pts:
            fig, ax = plt.subplots(figsize=(7, 4.5))
            for v in sorted({p[2] for p in pts}):
                xs = [p[0] for p in pts if p[2] == v]
                ys = [p[1] for p in pts if p[2] == v]
                ax.scatter(xs, ys, s=14, label=v, alpha=0.7)
            front, best_p99 = [], float("inf")
            for x, y, _ in sorted(pts, key=lambda p: -p[0]):
                if y < best_p99:
                    front.append((x, y))
                    best_p99 = y
            ax.plot(*zip(*sorted(front)), color="k", linewidth=1, label="Pareto frontier")
            if run["latency_budget_ms"]:
                ax.axhline(run["latency_budget_ms"], color="r", linestyle="--", linewidth=1, label="p99 budget")
            ax.set_xlabel("throughput (inferences/s)")
            ax.set_ylabel("p99 latency (ms)")
            ax.set_title(f"{mt['model']}: every measured point")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            fig.tight_layout()
            png = out / f"{mt['model']}_pareto.png"
            fig.savefig(png, dpi=100)
            plt.close(fig)
            lines += ["", f"![pareto]({png.name})"]
        lines.append("")
    lines += ["## Commands", "", "```", *run["commands"], "```", ""]
    (out / "report.md").write_text("\n".join(lines))
    (out / "results.json").write_text(json.dumps(run, indent=1, default=str))
    return out / "report.md"

