"""The finalists re-measured: the best ``finalists`` configurations, the spec's config (on the variant that did
best at it, and on the spec's primary variant) and Triton's defaults, loaded side by side as aliases and
measured *alternately* in one server for ``rounds`` rounds (``perf.confirm``); each is compared with the
spec's config round by round, and the winner named with its interval."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict

from .. import confirm
from .measure import Bench, Measurement
from .search import ModelTune, Search
from .space import Candidate, default_candidate


@dataclasses.dataclass
class Lineup:
    spec: Candidate  # the spec's settings on the variant that did best at them (the hardest to beat)
    primary: Candidate | None  # the spec's settings on its primary variant, when that is another variant
    all: list[Candidate]


def ranked(s: Search) -> list[tuple[Candidate, Measurement]]:
    return sorted(((c, m) for c, m in s.results.values() if m is not None and not m.error and m.score > 0),
                  key=lambda cm: -cm[1].score)


def no_winner_verdict(s: Search) -> str:
    every = [m for _, m in s.results.values() if m is not None and not m.error]
    closest = min((m for m in every if m.closest_p99_ms is not None), key=lambda m: m.closest_p99_ms, default=None)
    return ("no configuration met the constraints"
            + (f"; the closest reached p99 {closest.closest_p99_ms:.1f} ms ({Candidate(**closest.candidate).short()})"
               if closest else "; none could be measured"))


def lineup(s: Search, targets, keep, spec_cands: dict, scores: dict, primary: str | None, finalists: int) -> Lineup:
    top = [c for c, _ in ranked(s)[:finalists]]
    spec_c = spec_cands[keep[0].name] if keep else spec_cands[top[0].variant]
    default_c = default_candidate(next(t for t in targets if t.name == spec_c.variant), s.bases[spec_c.variant])
    # the configuration the spec serves: its settings on its primary variant, which the format search may beat
    # by more than the settings alone
    screened = {x["variant"] for x in s.res.screened}
    primary_c = dataclasses.replace(spec_cands[primary], label="spec (primary variant)") \
        if primary and primary != spec_c.variant and (scores.get(primary, 0) > 0 or primary not in screened) else None
    out: list[Candidate] = []
    for c in [spec_c, *([primary_c] if primary_c else []), default_c, *top]:
        if c.key() not in {x.key() for x in out}:
            out.append(c)
    for c in out:
        s.res.confirm[c.key()] = {"label": c.label or ("finalist" if c in top else ""), "short": c.short(),
                                  "candidate": asdict(c), "rounds": []}
    return Lineup(spec=spec_c, primary=primary_c, all=out)


def load_aliases(bench: Bench, s: Search, cands: list[Candidate], targets, log) -> dict[str, str]:
    """The lineup loaded once, side by side (the rounds then never reload); {} when that is not possible."""
    alias_of: dict[str, str] = {}
    if bench.alias_root is None:
        return alias_of
    if bench.loaded:
        bench.unload([bench.loaded])
    for i, c in enumerate(cands):
        alias = f"tune{i}__{c.variant}"
        why = bench.load_alias(alias, c, s.bases[c.variant], next(t.dir for t in targets if t.name == c.variant))
        if why:  # e.g. not enough memory for all of them at once: fall back to reloading each time
            log(f"    {alias}: {why}; re-measuring by reloading instead")
            bench.unload(list(alias_of.values()) + [alias])
            return {}
        alias_of[c.key()] = alias
    return alias_of


def run_rounds(bench: Bench, s: Search, cands: list[Candidate], rounds: int, alias_of: dict) -> None:
    """Each round measures every configuration once, in a rotated order; round 1 climbs the ladder of a
    configuration the search did not place, later rounds measure each at its best level."""
    rate = s.settings.objective == "rate"  # each round climbs the rates again, from half its last best
    level_of = {}
    for c in cands:
        m = s.results.get(c.key(), (None, None))[1]
        level_of[c.key()] = [m.best_level] if m is not None and m.best_level else None
    for order in confirm.rotations(cands, rounds):
        for c in order:
            last = level_of[c.key()]
            if rate:
                m = bench.measure(c, s.bases[c.variant], s.model_spec, None, start=max(1, last[0] // 2) if last
                                  else None, alias=alias_of.get(c.key()))
                row = {"concurrency": m.best_level, "throughput": m.score, "p99_ms": m.best_p99_ms}
            else:
                m = bench.measure(c, s.bases[c.variant], s.model_spec, last, alias=alias_of.get(c.key()))
                row = m.levels[0] if len(m.levels) == 1 else next(
                    (x for x in m.levels if x["concurrency"] == m.best_level), m.levels[0] if m.levels else {})
            if (rate or last is None) and m.best_level:
                level_of[c.key()] = [m.best_level]
            s.res.confirm[c.key()]["rounds"].append({
                "concurrency": row.get("concurrency"), "throughput": row.get("throughput") or 0.0,
                "p99_ms": row.get("p99_ms"), "within": m.score > 0, "error": m.error})
    for c in cands:  # memory: the configuration measured alone in the server (search phase)
        m = s.results.get(c.key(), (None, None))[1]
        limit = s.settings.max_memory_mb
        if m is not None and m.memory_mb is not None and limit is not None and m.memory_mb > limit:
            for x in s.res.confirm[c.key()]["rounds"]:
                x["within"] = False


def _throughput(x: dict) -> float:
    return x["throughput"]


def summarise(res: ModelTune, lu: Lineup, objective: str) -> None:
    """Per configuration: mean throughput, median p99, rounds within the constraints, and the round-by-round
    ratio to the spec's config (and to the spec's primary variant) with its 95% interval."""
    spec_rounds = res.confirm[lu.spec.key()]["rounds"]
    for entry in res.confirm.values():
        rs = entry["rounds"]
        tps = [x["throughput"] for x in rs]
        entry["throughput_mean"] = sum(tps) / len(tps) if tps else 0.0
        p99s = sorted(x["p99_ms"] for x in rs if x["p99_ms"] is not None)
        entry["p99_median_ms"] = p99s[len(p99s) // 2] if p99s else None
        entry["within_rounds"] = sum(1 for x in rs if x["within"])
        if objective == "latency":  # ratio > 1 is better: spec p99 / this p99
            ratios = [b["p99_ms"] / a["p99_ms"] for a, b in zip(rs, spec_rounds) if a["p99_ms"] and b["p99_ms"]]
        else:
            ratios = [a["throughput"] / b["throughput"] for a, b in zip(rs, spec_rounds)
                      if b["throughput"] > 0 and a["throughput"] > 0]
        g, lo, hi = confirm.ratio_interval(ratios)
        entry.update(ratio_vs_spec=g, ci_low=lo, ci_high=hi, ratios=ratios)
        if lu.primary is not None:
            got = confirm.paired(rs, res.confirm[lu.primary.key()]["rounds"], _throughput) or (0.0, 0.0, 0.0)
            entry.update(ratio_vs_primary=got[0], primary_ci_low=got[1], primary_ci_high=got[2])


def _spec_broke(spec: dict, rounds: int, settings) -> str:
    """Why the spec's config is out: the rounds it broke the constraints in, and its p99 against the budget."""
    out = f"the spec's config stayed within the constraints in {spec['within_rounds']} of {rounds} rounds"
    budget = getattr(settings, "latency_budget_ms", None)
    if budget is not None and spec.get("p99_median_ms") is not None and spec["p99_median_ms"] > budget:
        out += f" (p99 {spec['p99_median_ms']:.1f} ms over the {budget:g} ms budget)"
    return out


def choose(res: ModelTune, lu: Lineup, objective: str, rounds: int, settings=None) -> None:
    """The winner among the configurations within the constraints in most rounds, and the verdict. A verdict
    whose interval excludes 1 is a difference (better or worse); a winner measured below the spec's config
    wins only when the spec's config broke the constraints, and the verdict says so; else the spec's stays."""
    eligible = [(k, e) for k, e in res.confirm.items() if e["within_rounds"] * 2 > rounds]
    if not eligible:
        res.verdict = "no configuration stayed within the constraints in most re-measured rounds"
        res.budget_met = False
        return
    if objective == "latency":
        win_key, win = min(eligible, key=lambda ke: ke[1]["p99_median_ms"] or float("inf"))
    else:
        win_key, win = max(eligible, key=lambda ke: ke[1]["throughput_mean"])
    spec_key, spec = lu.spec.key(), res.confirm[lu.spec.key()]
    spec_ok = spec_key in dict(eligible)
    below = win_key != spec_key and win["ratio_vs_spec"] and win["ratio_vs_spec"] < 1.0
    what = {"latency": "1/p99", "rate": "held request rate"}.get(objective, "throughput")
    interval = f"95% interval {win['ci_low']:.2f}-{win['ci_high']:.2f}x over {rounds} alternating rounds"
    word = confirm.verdict_word(win["ci_low"], win["ci_high"])
    if below and spec_ok:  # no reason to leave the spec's settings for one measured below them
        res.winner = {**spec, "key": spec_key}
        res.verdict = (f"the spec's own configuration stays: the best other one ({win['short']}) measured "
                       f"{win['ratio_vs_spec']:.2f}x its {what} round by round ({interval})")
        return
    res.winner = {**win, "key": win_key}
    if win_key == spec_key:
        res.verdict = "the spec's own configuration is the best measured (no better configuration exists in the space)"
    elif word == "not distinguishable":
        res.verdict = f"{win['ratio_vs_spec']:.2f}x the spec's {what}, but not distinguishable from it ({interval})"
    else:
        res.verdict = f"{win['ratio_vs_spec']:.2f}x the spec's {what}: {word} ({interval})"
    if below and not spec_ok:
        res.verdict += f"; it wins because {_spec_broke(spec, rounds, settings)}"
    if lu.primary is not None and objective == "throughput" and win_key != lu.primary.key():
        res.verdict += (f"; {win.get('ratio_vs_primary', 0):.2f}x the spec's settings on its primary variant "
                        f"{lu.primary.variant} (95% interval {win.get('primary_ci_low', 0):.2f}-"
                        f"{win.get('primary_ci_high', 0):.2f}x)")
    ceil = res.ceilings.get(win["candidate"]["variant"])
    if ceil and objective == "throughput":  # why a small gain may be all there is
        share = win["throughput_mean"] / ceil
        res.verdict += (f"; the winner serves {share:.0%} of its variant's in-process ceiling ({ceil:.1f}/s: the "
                        "runtime alone on every core)" + ("; no configuration can add much on this machine"
                                                          if share >= 0.9 else ""))
