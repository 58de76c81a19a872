"""The headline, confirmed: the best variant served, the same runtime in-process and PyTorch eager fp32, side by side.

    confirm(run, winners, sw, preps, jobs, rounds, log)  # run["headline"][model]: paired rounds beside each winner
    measure(sw, p, driver, c, jobs, rounds, log)  # one model's paired rounds (also for a step chosen by hand)
    attach(row, entry) -> row                     # the winner's row with the paired ratios in place of the sweep's
    lines(entry) -> [str]                         # the rounds, for the report

The sweep's ratios divide a served step by a baseline measured in its own phase, before the server started (on
``make perf`` half an hour earlier): when the machine runs a few percent faster in one phase than in the other
(another tenant on the host, its clock), the ratio moves by as much between two runs of the same commit. Issue 22's
``make perf-twice`` of 2026-12-06: run B's in-process baseline of openvino-int8 read 19.6, 19.8 and 21.5 img/s in its
three rounds (every baseline of that phase was faster in its third round), and served / in-process read 1.08x
against run A's 1.00x, outside A's interval. Here, after the sweep, each of ``rounds`` rounds measures the three
sides one after another at the winner's concurrency (the served step on the sweep's driver; the same runtime
in-process at batch c and eager fp32 at batch c, each in its own subprocess as in ``perf.baseline``), the order
rotated each round; each ratio is taken within a round, and the headline is the geometric mean of the per-round
ratios with a 95% Student-t interval (``perf.stability.paired_ratio``): a slow phase slows both sides alike.
"""

from __future__ import annotations

from . import baseline as baseline_mod
from . import confirm as confirm_mod
from . import stability

# each side's window in a round: ``SweepOptions.headline_window_s`` (5 s) or the sweep's when longer, and a baseline
# at least MIN_CALLS timed calls after a warm-up of up to SETTLE_S. Session 15's rounds took the sweep's 2 s window:
# eager fp32 at batch 8 (2.1 s a call on 2 cores) was then 2 calls after a 3-call warm-up that could not settle, and
# read 3.41-4.22 img/s across processes.
MIN_CALLS, SETTLE_S = 5, 15.0
SIDES = {"served": "served", "inprocess": "in-process", "eager": "PyTorch eager fp32"}
RATIOS = {"x_eager": ("eager", "speedup_vs_eager"), "served_over_inprocess": ("inprocess", "serving_ratio")}


def confirm(run: dict, winners: dict, sw, preps: list, jobs: dict, rounds: int, log=print) -> None:
    """For each model whose best variant is named in ``winners`` (``perf.report.choose_winners`` on the sweep),
    ``measure`` at its concurrency; the result in ``run["headline"][model]``. ``jobs``: baseline jobs by
    ``("inprocess", triton name)`` and ``("eager", model)`` (``perf.harness.baseline_jobs``; their batches are
    replaced by the concurrency)."""
    by_name = {p.t.name: p for p in preps if not p.t.skipped}
    for model, w in sorted(winners.items()):
        row = w.get("row")
        if not row or row["triton_name"] not in by_name:
            continue
        p = by_name[row["triton_name"]]
        mine = {"inprocess": jobs.get(("inprocess", p.t.name)), "eager": jobs.get(("eager", model))}
        log(f"headline: {p.t.name} at concurrency {row['concurrency']}: served, in-process and eager side by side, "
            f"{rounds} rounds")
        run.setdefault("headline", {})[model] = measure(sw, p, row["driver"], int(row["concurrency"]), mine, rounds, log)


def measure(sw, p, driver: str, c: int, jobs: dict, rounds: int, log=print) -> dict:
    """``rounds`` rounds of the served step (``driver``, concurrency ``c``) and each baseline job of ``jobs``
    (``{"inprocess": job | None, "eager": job | None}``) at batch ``c``, the order rotated each round; every
    side's throughput per round and each ratio's paired geometric mean with its 95% interval."""
    window = max(sw.o.window_s(), sw.o.headline_window_s)
    entry = {"triton_name": p.t.name, "variant": p.t.variant, "driver": driver, "concurrency": c,
             "window_s": window, "rounds": [], "errors": []}
    reason = sw.load(p.t.name)
    if reason:
        sw.gone(f"loading {p.t.name}")
        entry["errors"].append(f"not loaded: {reason}")
        return _ratios(entry)
    sides = ["served"] + [k for k in ("inprocess", "eager") if jobs.get(k)]
    before = stability.quiet_check(probe_s=0.2)
    try:
        for r, order in enumerate(confirm_mod.rotations(sides, rounds)):
            got = {"round": r + 1}
            for side in order:
                if side == "served":
                    step = sw.measure(p, driver, c, r, 0, label=f"headline round {r + 1}/{rounds}", window=window)
                    got[side] = step["throughput"] if step and not step.get("errors") else None
                    continue
                log(f"  {SIDES[side]} at batch {c} (headline round {r + 1}/{rounds})")
                res = baseline_mod.run_baseline({**jobs[side], "batches": [c], "measurement_s": window,
                                                 "min_calls": MIN_CALLS, "settle_s": SETTLE_S})
                row = (res.get("rows") or [{}])[0]
                got.setdefault("calls", {})[side] = row.get("iters")
                if "error" in res or not res.get("rows"):
                    entry["errors"].append(f"{SIDES[side]} round {r + 1}: {res.get('error', 'no result')}")
                got[side] = row.get("throughput")
            entry["rounds"].append(got)
    finally:
        entry["quiet"] = {"before": before, "after": stability.quiet_check(probe_s=0.2)}
        sw.unload(p.t.name)
    return _ratios(entry)


def _ratios(entry: dict) -> dict:
    served = [r.get("served") for r in entry["rounds"]]
    for name, (side, _) in RATIOS.items():
        other = [r.get(side) for r in entry["rounds"]]
        if not any(other):
            continue
        got = stability.paired_ratio(served, other)
        n = sum(1 for a, b in zip(served, other) if a and b)
        entry[name] = ({"value": got[0], "ci": [got[1], got[2]], "pairs": n} if got and got[2] != float("inf")
                       else {"why": f"{n} paired round(s) of served and {SIDES[side]}: too few for an interval"})
    return entry


def attach(row: dict | None, entry: dict | None) -> dict | None:
    """The winner's row with the paired ratios (and the in-process / eager throughput of their rounds) in place
    of the sweep's unpaired ones, when ``entry`` confirmed this very step; else ``row`` unchanged."""
    if not row or not entry or (entry.get("triton_name"), entry.get("concurrency")) != (row.get("triton_name"),
                                                                                         row.get("concurrency")):
        return row
    out = dict(row, headline_rounds=len(entry["rounds"]))
    for name, (side, key) in RATIOS.items():
        got = entry.get(name)
        if not got:
            continue
        caveat = "eager_caveat" if side == "eager" else "inproc_caveat"
        if "value" in got:
            out.update({key: got["value"], f"{key}_ci": got["ci"], caveat: None})
        else:
            out.update({f"{key}_ci": None, caveat: got["why"]})
    return out


def lines(entry: dict) -> list[str]:
    """The rounds as a short markdown table and the two ratios, for the report."""
    head = [k for k in SIDES if any(r.get(k) for r in entry["rounds"])]
    out = [f"Side by side at concurrency {entry['concurrency']} ({entry['variant']}, {entry['driver']}; "
           f"{entry['window_s']:g} s windows, each baseline at least {MIN_CALLS} timed calls after its warm-up; the "
           "order rotated each round), throughput per round:\n",
           "| round | " + " | ".join(SIDES[k] + "/s" for k in head) + " |",
           "|---" * (len(head) + 1) + "|"]
    for r in entry["rounds"]:
        out.append(f"| {r['round']} | " + " | ".join("-" if not r.get(k) else f"{r[k]:.2f}" for k in head) + " |")
    out.append("")
    for name, (side, _) in RATIOS.items():
        got = entry.get(name)
        if got and "value" in got:
            out.append(f"- served / {SIDES[side]}: {got['value']:.2f}x (95% interval {got['ci'][0]:.2f}-"
                       f"{got['ci'][1]:.2f}x, {got['pairs']} paired rounds)")
        elif got:
            out.append(f"- served / {SIDES[side]}: no ratio ({got['why']})")
    out += [f"- {e}" for e in entry.get("errors") or []]
    return out + [""]
