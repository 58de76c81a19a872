"""Do two perf runs agree?  ``python -m perf.compare_runs RUN_A RUN_B`` (run folders or their results.json).

    compare(run_a, run_b) -> {"variants": [...], "models": [...], "problems": [...], "notes": [...]}
    render(result, name_a, name_b) -> str                  # the tables and the verdict line
    main([RUN_A, RUN_B]) -> 0 agree | 1 disagree | 2 a run cannot be read

Per variant: each run's best concurrency for it (the highest round median with p99 within the run's budget
and no errors, on the run's primary driver, reliable steps first), and at each of those concurrencies the two
runs' steps there, whose 95% intervals must overlap. A step's throughput depends on its concurrency, so a
variant is always compared at the same concurrency in both runs; a pair where one run's step is unreliable is
"not comparable" (a note, not a disagreement). Per model: whether the best variant (``winners`` in
results.json) is the same (or tied: each run's runner-up is the other's best, not distinguishable from it), and
whether each headline ratio (x PyTorch eager, served / in-process) of run B lies within run A's 95% interval
and run A's within run B's. The runs agree when every comparable pair overlaps, the best variants match and
every headline ratio lies within the other run's interval.

The machine itself can change speed between two runs (another tenant on the host, its clock): the quiet check's
fixed GEMM probe, read before and after each run's sweep, measures that. When every probe read of one run is
faster than every read of the other (``machine_drift``), a pair whose intervals do not overlap is compared once
more with run B's interval scaled by the probe's ratio; a pair that overlaps then is a note that names the
drift, not a disagreement. The headline ratios need no such step: both sides of each are measured side by side in
the same rounds (``perf.headline``), or at least in one run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .report import primary_driver

INF = float("inf")
HEADLINE_WORDS = {"x_eager": "x PyTorch eager", "served_over_inprocess": "served / in-process"}


class RunUnreadable(Exception):
    pass


def load(path: str | Path) -> dict:
    p = Path(path)
    f = p / "results.json" if p.is_dir() else p
    if not f.is_file():
        raise RunUnreadable(f"{path}: no results.json there; give a run folder of tritongen perf "
                            f"(perf/results/<run-id>) or its results.json")
    try:
        run = json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise RunUnreadable(f"{f}: not JSON ({e.msg} at line {e.lineno}); re-run tritongen perf") from None
    if "rows" not in run or "winners" not in run:
        raise RunUnreadable(f"{f}: no rows/winners: not a results.json written by tritongen perf")
    run["_name"] = str(path)
    return run


def best_steps(run: dict) -> dict[str, dict]:
    """Per Triton model name: its best step (highest throughput, p99 within the budget, no errors, primary
    driver; reliable steps before unreliable ones; over-budget steps only when nothing is within it)."""
    rows = run.get("rows") or []
    driver = primary_driver(rows)
    budget = float(run.get("latency_budget_ms") or INF)
    out = {}
    for name in sorted({r["triton_name"] for r in rows}):
        mine = [r for r in rows if r["triton_name"] == name and r["driver"] == driver and not r.get("errors")
                and (r.get("throughput") or 0) > 0]
        within = [r for r in mine if r.get("p99_ms") is not None and r["p99_ms"] <= budget]
        pool = [r for r in within if not r.get("unreliable")] or within or mine
        if pool:
            best = dict(max(pool, key=lambda r: r["throughput"]))
            best["_over_budget"] = not within
            out[name] = best
    return out


def _ci(v) -> tuple[float, float] | None:
    if not v or len(v) != 2 or v[1] is None or v[1] == INF or str(v[1]) == "inf":
        return None
    return float(v[0]), float(v[1])


def overlap(a, b) -> bool | None:
    a, b = _ci(a), _ci(b)
    if a is None or b is None:
        return None
    return a[0] <= b[1] and b[0] <= a[1]


def within(value, ci) -> bool | None:
    ci = _ci(ci)
    if value is None or ci is None:
        return None
    return ci[0] <= value <= ci[1]


def steps_at(run: dict, name: str) -> dict[int, dict]:
    """A Triton model's steps on the run's primary driver, by concurrency."""
    rows = run.get("rows") or []
    driver = primary_driver(rows)
    return {r["concurrency"]: r for r in rows if r["triton_name"] == name and r["driver"] == driver}


def _usable(r: dict | None) -> str | None:
    """Why a step cannot stand in a comparison (absent, errors, unreliable, no interval), or None."""
    if not r:
        return "not measured"
    if r.get("errors") or not (r.get("throughput") or 0) > 0:
        return "errors" if r.get("errors") else "no throughput"
    if r.get("unreliable"):
        return "unreliable"
    if _ci(r.get("throughput_ci")) is None:
        return "no interval"
    return None


def _sweep_probes(run: dict, key: str = "probe_ms") -> list[float]:
    got = ((run.get("quiet") or {}).get("sweep") or {})
    return [float(got[k][key]) for k in ("before", "after") if (got.get(k) or {}).get(key)]


def machine_drift(a: dict, b: dict) -> dict | None:
    """How much faster the machine ran run B's sweep than run A's, by the quiet check's fixed probe (read before
    and after each sweep): ``{"factor", "a_ms", "b_ms", "separated"}``; factor > 1: B's machine was faster.
    ``separated``: every read of one run is faster than every read of the other, so the drift is the machine's and
    not the probe's own noise. None when a run has no probe reads (an older results.json)."""
    pa, pb = _sweep_probes(a), _sweep_probes(b)
    if not pa or not pb:
        return None
    factor = (sum(pa) / len(pa)) / (sum(pb) / len(pb))
    return {"factor": factor, "a_ms": pa, "b_ms": pb, "separated": max(pb) < min(pa) or max(pa) < min(pb),
            "a_memory_ms": _sweep_probes(a, "memory_ms"), "b_memory_ms": _sweep_probes(b, "memory_ms")}


def compare_variant(a: dict, b: dict, name: str, ra: dict | None, rb: dict | None, drift: dict | None = None) -> dict:
    """One variant of both runs, compared at the same concurrency: at each run's best concurrency for it, the
    two runs' steps there (a step's throughput depends on its concurrency, so A at c=1 against B at c=4 says
    nothing about the runs). A pair where one step is unreliable or has no interval is not comparable, which
    is no disagreement; the variant disagrees when a comparable pair's intervals do not overlap."""
    at_a, at_b = steps_at(a, name), steps_at(b, name)
    pairs, seen = [], set()
    for c in [r["concurrency"] for r in (ra, rb) if r]:
        if c in seen:
            continue
        seen.add(c)
        sa, sb = at_a.get(c), at_b.get(c)
        why = [f"{why} in run {w}" for w, why in (("A", _usable(sa)), ("B", _usable(sb))) if why]
        pair = {"concurrency": c, "a": sa, "b": sb, "why": "; ".join(why) or None,
                "overlap": None if why else overlap(sa["throughput_ci"], sb["throughput_ci"])}
        if pair["overlap"] is False and drift and drift["separated"]:
            scaled = [x / drift["factor"] for x in _ci(sb["throughput_ci"])]
            pair["overlap_after_drift"] = overlap(sa["throughput_ci"], scaled)
        pairs.append(pair)
    comparable = [p for p in pairs if p["why"] is None]
    ov = all(p["overlap"] or p.get("overlap_after_drift") for p in comparable) if comparable else None
    return {"triton_name": name, "a": ra, "b": rb, "pairs": pairs, "overlap": ov}


def compare(a: dict, b: dict) -> dict:
    problems: list[str] = []
    notes: list[str] = []
    sa, sb = best_steps(a), best_steps(b)
    drift = machine_drift(a, b)
    variants = []
    for name in sorted(set(sa) | set(sb)):
        ra, rb = sa.get(name), sb.get(name)
        v = compare_variant(a, b, name, ra, rb, drift)
        variants.append(v)
        if not ra or not rb:
            problems.append(f"{name} was measured in run {'B' if not ra else 'A'} only")
            continue
        for p in v["pairs"]:
            if p["why"]:
                notes.append(f"{name} at c={p['concurrency']}: not comparable ({p['why']})")
            elif not p["overlap"] and p.get("overlap_after_drift"):
                notes.append(f"{name} at c={p['concurrency']}: overlap once run B is scaled to run A's machine speed "
                             f"(A {_fmt_ci(p['a'])}, B {_fmt_ci(p['b'])}; {_drift_words(drift)})")
            elif not p["overlap"]:
                problems.append(f"{name}: the throughput intervals at c={p['concurrency']} do not overlap "
                                f"(A {_fmt_ci(p['a'])}, B {_fmt_ci(p['b'])}"
                                + (f"; not even scaled by the machine's drift, {_drift_words(drift)})"
                                   if "overlap_after_drift" in p else ")"))
    models = []
    for model in sorted(set(a["winners"]) | set(b["winners"])):
        wa, wb = a["winners"].get(model) or {}, b["winners"].get(model) or {}
        same = wa.get("triton_name") == wb.get("triton_name")
        tied = not same and tie(wa, wb)
        entry = {"model": model, "best_a": wa.get("triton_name"), "best_b": wb.get("triton_name"), "same": same,
                 "tied": tied, "ratios": []}
        if not same and not tied:
            problems.append(f"{model}: the best variant differs (A {wa.get('triton_name') or 'none: ' + str(wa.get('why'))}, "
                            f"B {wb.get('triton_name') or 'none: ' + str(wb.get('why'))})")
        ha, hb = wa.get("headline") or {}, wb.get("headline") or {}
        for key in [k for k in HEADLINE_WORDS if k in ha or k in hb]:
            xa, xb = ha.get(key) or {}, hb.get(key) or {}
            words = f"{model} {HEADLINE_WORDS[key]}"
            r = {"name": key, "a": xa, "b": xb, "b_in_a": within(xb.get("value"), xa.get("ci")),
                 "a_in_b": within(xa.get("value"), xb.get("ci"))}
            entry["ratios"].append(r)
            if "value" not in xa or "value" not in xb:
                if "value" in xa or "value" in xb:
                    which = "A" if "value" not in xa else "B"
                    problems.append(f"{words}: run {which} prints no headline ratio "
                                    f"({(xa if which == 'A' else xb).get('why', 'no winner')})")
            elif not (r["b_in_a"] and r["a_in_b"]):
                problems.append(f"{words}: {xb['value']:.2f}x (B) {'within' if r['b_in_a'] else 'outside'} A's "
                                f"{_fmt_pair(xa['ci'])}x, {xa['value']:.2f}x (A) {'within' if r['a_in_b'] else 'outside'} "
                                f"B's {_fmt_pair(xb['ci'])}x")
        models.append(entry)
    return {"variants": variants, "models": models, "problems": problems, "notes": notes, "drift": drift}


def _drift_words(drift: dict | None) -> str:
    if not drift:
        return "no probe reads"
    f = drift["factor"]
    fmt = ", ".join
    words = (f"the fixed probe ran {f:.2f}x {'faster' if f >= 1 else 'slower'} in run B: "
             f"A {fmt(f'{x:.4f}' for x in drift['a_ms'])} ms, B {fmt(f'{x:.4f}' for x in drift['b_ms'])} ms"
             + ("" if drift["separated"] else "; within the probe's own noise, not used"))
    ma, mb = drift.get("a_memory_ms"), drift.get("b_memory_ms")
    if ma and mb:  # recorded beside it, not used: perf.stability.memory_probe_ms
        g = (sum(ma) / len(ma)) / (sum(mb) / len(mb))
        words += (f"; the memory probe (a 64 MiB copy) ran {g:.2f}x {'faster' if g >= 1 else 'slower'} in run B: "
                  f"A {fmt(f'{x:.2f}' for x in ma)} ms, B {fmt(f'{x:.2f}' for x in mb)} ms (shown, not used)")
    return words


def tie(wa: dict, wb: dict) -> bool:
    """Two runs named different best variants, but each run's runner-up is the other's best and not
    distinguishable from its own best (the paired 95% interval of best / runner-up includes 1): a tie both runs
    measured, which a coin decides, not a disagreement."""
    ra, rb = wa.get("runner_up") or {}, wb.get("runner_up") or {}
    if not (wa.get("variant") and wb.get("variant") and _ci(ra.get("ci")) and _ci(rb.get("ci"))):
        return False
    return (ra.get("variant") == wb["variant"] and rb.get("variant") == wa["variant"]
            and _ci(ra["ci"])[0] <= 1.0 and _ci(rb["ci"])[0] <= 1.0)


def _fmt_pair(ci) -> str:
    c = _ci(ci)
    return f"{c[0]:.2f}-{c[1]:.2f}" if c else "-"


def _fmt_ci(r: dict | None) -> str:
    if not r:
        return "-"
    return f"{r['throughput']:.2f} [{_fmt_pair(r.get('throughput_ci'))}]"


def _cell(r: dict | None) -> str:
    if not r:
        return "not measured"
    flags = ("*" if r.get("unreliable") else "") + ("!" if r.get("_over_budget") else "")
    return f"{_fmt_ci(r)} @c={r['concurrency']}{flags}"


def render(res: dict, name_a: str = "A", name_b: str = "B") -> str:
    lines = [f"run A: {name_a}", f"run B: {name_b}", ""]
    table = [("variant", "A infer/s [95%] @best c", "B infer/s [95%] @best c", "same concurrency, A vs B")]
    for v in res["variants"]:
        same = "; ".join(f"c={p['concurrency']}: " + (f"not comparable ({p['why']})" if p["why"] else
                                                        f"{_fmt_ci(p['a'])} vs {_fmt_ci(p['b'])} "
                                                        + ("overlap" if p["overlap"] else "overlap after the machine's drift"
                                                           if p.get("overlap_after_drift") else "DO NOT OVERLAP"))
                         for p in v.get("pairs") or []) or "n/a"
        table.append((v["triton_name"], _cell(v["a"]), _cell(v["b"]), same))
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for i, row in enumerate(table):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("(* a step marked unreliable in its run; ! no step within the p99 budget)")
    lines.append(f"machine: {_drift_words(res.get('drift'))}")
    lines.append("")
    for m in res["models"]:
        verdict = ("same" if m["same"] else "tied (in both runs the other's best is the runner-up, not "
                   "distinguishable from the best: the paired 95% interval includes 1)" if m.get("tied") else "DIFFERENT")
        lines.append(f"{m['model']}: best variant A {m['best_a'] or 'none'}, B {m['best_b'] or 'none'}: {verdict}")
        for r in m["ratios"]:
            def side(x):
                return f"{x['value']:.2f}x [{_fmt_pair(x['ci'])}]" if "value" in x else f"not printed ({x.get('why', 'no winner')})"

            verdict = ("B within A's interval: " + {True: "yes", False: "NO", None: "n/a"}[r["b_in_a"]] +
                       ", A within B's: " + {True: "yes", False: "NO", None: "n/a"}[r["a_in_b"]])
            lines.append(f"  {HEADLINE_WORDS[r['name']]}: A {side(r['a'])}, B {side(r['b'])}; {verdict}")
    lines.append("")
    p = res["problems"]
    n = sum("not comparable" in x for x in res.get("notes") or [])
    d = sum("scaled to run A's machine speed" in x for x in res.get("notes") or [])
    lines.append("agree: every variant's intervals overlap at the same concurrency, the same best variant (or a tie "
                 "both runs measured), the headline ratios within each other's intervals"
                 + (f" ({n} step pair(s) not comparable: a step unreliable in one run)" if n else "")
                 + (f" ({d} pair(s) overlap once scaled by the machine's drift, "
                    f"{res['drift']['factor']:.2f}x by the fixed probe)" if d else "") if not p else
                 f"disagree: {p[0]}" + (f" (and {len(p) - 1} more)" if len(p) > 1 else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m perf.compare_runs", description=__doc__.split("\n")[0])
    ap.add_argument("run_a", help="a run folder of tritongen perf (perf/results/<run-id>) or its results.json")
    ap.add_argument("run_b")
    a = ap.parse_args(argv)
    try:
        run_a, run_b = load(a.run_a), load(a.run_b)
    except RunUnreadable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    res = compare(run_a, run_b)
    print(render(res, a.run_a, a.run_b))
    return 1 if res["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
