"""The served sweep of ``tritongen perf``: every variant's concurrency steps in interleaved rounds.

    sweep(run, targets, spec, opts, server=None, log=print)   # fills run["steps"], run["round_steps"]

Round ``r`` measures every variant once -- its drivers x concurrency levels -- in the order
``perf.confirm.rotations`` gives (each variant goes first in turn), so a slow phase of the shared machine
hits every variant alike. Around each variant's block: a quiet check (``perf.stability.quiet_check``), and
with explicit model control the load before and the unload after it (only the model under test holds the
CPU). A round's window is ``measurement_s / rounds``, at least ``MIN_ROUND_WINDOW_S`` (or the whole
``measurement_s`` when that is shorter); each load-generator step warms up until its latency settles.

Per step the rounds combine into the median throughput, p50, p95 and p99 with 95% intervals
(``perf.stability.combine_steps``). A step whose interval is wider than ``perf.stability.MAX_HALF_WIDTH``
of its median, or whose probe moved, is re-measured once (another set of rounds for those steps only,
interleaved the same way); still so, it is marked ``unreliable`` (the report names no winner and prints no
headline from it). ``run["steps"]`` holds the combined steps, kept current after every step so a run that
loses its server reports what finished; ``run["round_steps"]`` every round's own step.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from . import confirm, loadgen, pa_driver, server_stats, stability
from . import inputs as real_inputs_mod
from .client import ServerClient, ServerGone, one_line

MIN_ROUND_WINDOW_S = 2.0  # a round's window is never cut below this (or below measurement_s when shorter)


@dataclass
class SweepOptions:
    url: str
    http_url: str | None
    owned: bool  # the harness started the server: load and unload each model (explicit model control)
    pa: object  # perf_analyzer (generator.serve.tools) or None
    driver: str
    protocols: list[str]
    concurrency: list[int]
    measurement_s: float
    max_requests: int
    warmup_s: float
    warmup_requests: int
    request_timeout_s: float
    pa_measurement_ms: int | None
    run_dir: Path
    rounds: int = 3
    request_rates: list[float] | None = None
    budget_ms: float = 1000.0
    real: tuple = (None, None)
    rates_beyond: int = 4  # open loop: rates past the given ones (1.5x each) while every rate is held
    headline_rounds: int = 0  # >= 2: the winners' headline ratios in paired rounds (perf.headline)
    headline_jobs: dict = field(default_factory=dict)  # their baseline jobs, ("inprocess" | "eager", name) -> job
    headline_window_s: float = 5.0  # each side's window in a headline round (at least the sweep's)

    def window_s(self) -> float:
        return max(self.measurement_s / max(self.rounds, 1), min(self.measurement_s, MIN_ROUND_WINDOW_S))


@dataclass
class _Prepared:
    """A variant's feeds, outputs and driver plan, made once for all rounds."""

    t: object  # perf.harness.Target
    ms: object  # generator.spec.ModelSpec
    outputs: list[str]
    feeds: list[dict]
    batch: int
    input_data: Path | None
    plan: list[str]
    keys: list[tuple] = field(default_factory=list)  # (triton name, driver, concurrency) still to measure
    # the spec batches but the served config does not (OpenVINO on 24.10): perf_analyzer then sends whole tensors
    served_unbatched: bool = False


class _Sweep:
    def __init__(self, run: dict, spec, o: SweepOptions, server, log):
        self.run, self.spec, self.o, self.server, self.log = run, spec, o, server, log
        self.client = ServerClient(o.url)
        self.order: list[tuple] = []  # every key, in the order first measured
        self.raw: dict[tuple, list[dict]] = {}  # the current attempt's rounds per key
        self.first: dict[tuple, dict] = {}  # keys re-measured: their first attempt, combined, and why
        run.setdefault("round_steps", [])

    # ------------------------------------------------------------------------------- the server

    def gone(self, what: str) -> None:
        alive = self.client.live() and (self.server is None or self.server.is_running())
        if not alive:
            raise ServerGone(f"tritonserver at {self.o.url} stopped responding during {what}")

    def load(self, name: str) -> str:
        try:
            return self.client.load(name) if self.o.owned else self.client.ready_or_reason(name)
        except ServerGone:
            return "the server stopped while loading"

    def unload(self, name: str) -> None:
        if self.o.owned:
            self.client.unload(name)

    # ------------------------------------------------------------------------------- one step

    def prepare(self, t) -> _Prepared:
        o = self.o
        ms = self.spec.model(t.model)
        files = real_inputs_mod.feeds_for(o.real[0] / t.name, o.real[1]) if o.real[1] else None  # ensembles
        feeds = files or loadgen.samples(ms, self.spec.root, n=4, batch=1)
        input_data = None
        if o.pa is not None and files:
            input_data = real_inputs_mod.write_input_data(files, o.run_dir / f"{t.name}_input_data.json",
                                                          batched=ms.max_batch_size > 0)
        served_unbatched = ms.max_batch_size > 0 and getattr(t, "max_batch_size", None) == 0
        if o.pa is not None and not files:
            input_data = pa_driver.write_input_data(feeds if served_unbatched else pa_driver.unbatched(feeds, ms),
                                                    o.run_dir / f"{t.name}_input_data.json")
        plan = [f"loadgen-{p}" for p in o.protocols] if o.driver in ("loadgen", "both") else []
        if o.driver in ("perf_analyzer", "both") and o.pa is not None:
            plan.append("perf_analyzer")
        p = _Prepared(t, ms, [x.name for x in ms.outputs], feeds, loadgen.batch_of(feeds[0], ms), input_data, plan,
                      served_unbatched=served_unbatched)
        p.keys = [(t.name, drv, c) for drv in plan for c in o.concurrency]
        return p

    def measure(self, p: _Prepared, drv: str, c: int, r: int, attempt: int, label: str | None = None,
                window: float | None = None) -> dict | None:
        """One step of one round; ``attempt`` 0 with a ``label`` (and its own ``window``): a step measured for
        ``perf.headline``."""
        from tritonclient.utils import InferenceServerException

        o, t, window = self.o, p.t, window or self.o.window_s()
        record = r == 0 and attempt == 1  # the commands that reproduce a step: once, not once a round
        what = f"{t.name} {drv} concurrency {c}"
        self.log(f"measuring {what} ({label or f'round {r + 1}/{o.rounds}'}{', re-measure' if attempt > 1 else ''})")
        try:
            before = server_stats.snapshot(o.url, t.name)
        except InferenceServerException:
            self.gone(what)
            raise
        if drv == "perf_analyzer":
            argvs: list = []
            step = pa_driver.run_step(
                o.pa, t.name, o.url, p.ms, c, o.run_dir / "perf_analyzer" / f"attempt{attempt}_round{r + 1}",
                p.input_data, batch=p.batch, measurement_ms=o.pa_measurement_ms or int(window * 1000),
                timeout_s=max(120.0, 6 * window + 2 * o.request_timeout_s), log=self.log, commands=argvs,
                served_unbatched=p.served_unbatched)
            if record:
                self.run["commands"] += [f"LD_LIBRARY_PATH={o.pa.lib_dir} " + " ".join(shlex.quote(a) for a in argv)
                                         for argv in argvs]
        else:
            proto = drv.split("-", 1)[1]
            url = o.url if proto == "grpc" else o.http_url
            step = loadgen.run_step(proto, url, t.name, p.feeds, p.outputs, c, batch=p.batch,
                                    warmup_requests=o.warmup_requests, warmup_s=o.warmup_s, measurement_s=window,
                                    max_requests=o.max_requests, timeout_s=o.request_timeout_s, settle=True,
                                    whole_cycles=True)
            if record and c == o.concurrency[0]:
                self.run["commands"].append(
                    f"# built-in load generator ({drv}): perf.loadgen.run_step({proto!r}, {url!r}, {t.name!r}, "
                    f"<4 spec samples batch {p.batch}>, concurrency in {o.concurrency}, "
                    f"warmup_requests={o.warmup_requests}, warmup_s={o.warmup_s}, measurement_s={window:g}, "
                    f"max_requests={o.max_requests}, timeout_s={o.request_timeout_s}, settle=True, "
                    f"whole_cycles=True), {o.rounds} interleaved round(s)")
        try:
            delta = server_stats.delta(before, server_stats.snapshot(o.url, t.name)).to_dict()
            step.server = {**step.server, **delta} if drv == "perf_analyzer" else delta
        except InferenceServerException as e:  # the step stands without the server's statistics
            self.run["notes"].append(f"{what} round {r + 1}: no server statistics ({one_line(e, 200)})")
        if step.aborted or step.errors:
            self.gone(what)  # raises when the server died; else the step keeps its errors
        if not (step.requests or step.throughput):
            self.run["notes"].append(f"{what} round {r + 1}: no result ({step.aborted or 'no request completed'})")
            return None
        self.log(f"  {step.throughput:.2f} infer/s, p50 {step.p50_ms or 0:.1f} ms, p99 {step.p99_ms or 0:.1f} ms"
                 f"{', errors ' + str(step.errors) if step.errors else ''}")
        return {**step.to_dict(), "round": r + 1, "attempt": attempt}

    # ------------------------------------------------------------------------------- rounds

    def block(self, p: _Prepared, r: int, attempt: int) -> None:
        """One variant's steps in one round: quiet check, load, the steps, unload, quiet check."""
        t = p.t
        reason = self.load(t.name)
        if reason:
            self.gone(f"loading {t.name}")
            if r == 0 and attempt == 1:
                t.skipped = reason
                self.run["models"][t.name] = t.info()
                self.run["notes"].append(f"{t.name} skipped: {reason}")
                self.log(f"skip {t.name}: {reason}")
            else:
                self.run["notes"].append(f"{t.name} round {r + 1}: not loaded ({reason}); its steps miss the round")
            return
        before = stability.quiet_check(probe_s=0.2)
        got = []
        try:
            for key in p.keys:
                step = self.measure(p, key[1], key[2], r, attempt)
                if step is None:
                    continue
                got.append(step)
                if key not in self.order:
                    self.order.append(key)
                self.raw.setdefault(key, []).append(step)
                self.run["round_steps"].append(step)
                self.combine()
        finally:
            after = stability.quiet_check(probe_s=0.2)
            d = stability.drift(before, after)
            for step in got:
                step["drift"], step["quiet"] = round(d, 4), {"before": before, "after": after}
            self.unload(t.name)
        self.combine()

    def rounds(self, preps: list[_Prepared], attempt: int) -> None:
        for r, order in enumerate(confirm.rotations(preps, self.o.rounds)):
            for p in order:
                if not p.t.skipped and p.keys:
                    self.block(p, r, attempt)

    def combine(self) -> None:
        steps = []
        for key in self.order:
            rounds = self.raw.get(key) or (self.first.get(key) or {}).get("rounds_steps") or []
            if not rounds:
                continue
            c = stability.combine_steps(rounds)
            why = stability.step_unreliable(c)
            if why:
                c["unreliable"] = why
            if key in self.first:
                c["remeasured"] = True
                c["first_attempt"] = {k: v for k, v in self.first[key].items() if k != "rounds_steps"}
            steps.append(c)
        self.run["steps"] = steps

    def flagged(self) -> dict[str, list[tuple]]:
        """Keys whose combined step is unreliable though it had rounds to judge by, per Triton name."""
        out: dict[str, list[tuple]] = {}
        for s in self.run["steps"]:
            if s.get("unreliable") and (s.get("rounds") or 0) >= 2 and not s.get("remeasured"):
                out.setdefault(s["model"], []).append((s["model"], s["driver"], s["concurrency"]))
        return out


def sweep(run: dict, targets: list, spec, opts: SweepOptions, server=None, log=print) -> None:
    """Measure every target in ``opts.rounds`` interleaved rounds, re-measure the unreliable steps once, confirm
    each best variant's headline ratios in paired rounds (``perf.headline``, ``opts.headline_rounds``), then the
    open-loop rate sweeps (``opts.request_rates``). Raises ``perf.client.ServerGone`` when the server
    died (``run["steps"]`` then holds what finished)."""
    s = _Sweep(run, spec, opts, server, log)
    preps = [s.prepare(t) for t in targets]
    run["meta"]["rounds"] = (f"{opts.rounds} interleaved round(s) of every variant's steps, {opts.window_s():g} s "
                             f"window each; warm-up until the latency settles (cap {opts.warmup_s:g} s)")
    s.rounds(preps, 1)
    flagged = s.flagged() if opts.rounds >= 2 else {}
    if flagged:
        n = sum(len(v) for v in flagged.values())
        log(f"re-measuring {n} step(s) whose rounds disagree or whose probe moved")
        for key in (k for keys in flagged.values() for k in keys):
            first = next(x for x in run["steps"] if (x["model"], x["driver"], x["concurrency"]) == key)
            s.first[key] = {"throughput": first["throughput"], "throughput_ci": first.get("throughput_ci"),
                            "throughput_rounds": first.get("throughput_rounds"), "why": first["unreliable"],
                            "rounds_steps": s.raw.pop(key)}
        again = []
        for p in preps:
            if p.t.name in flagged:
                p.keys = flagged[p.t.name]
                again.append(p)
        s.rounds(again, 2)
        s.combine()
    bad = [x for x in run["steps"] if x.get("unreliable")]
    if bad:
        run["notes"].append(f"{len(bad)} of {len(run['steps'])} served step(s) are unreliable"
                            f"{' after one re-measurement' if flagged else ''}: the report picks no winner and "
                            f"prints no headline from them (reasons in the step table's section)")
    unsettled = [x for x in run["round_steps"] if (x.get("warmup") or {}).get("settled") is False]
    if unsettled:
        run["notes"].append(f"{len(unsettled)} of {len(run['round_steps'])} round step(s) ended their warm-up at "
                            f"the {opts.warmup_s:g} s cap before the latency settled")
    if opts.headline_rounds >= 2 and opts.headline_jobs:
        from . import headline
        from .report import choose_winners, enrich

        winners = choose_winners(enrich(run), float(opts.budget_ms))
        headline.confirm(run, winners, s, preps, opts.headline_jobs, opts.headline_rounds, log)
    if opts.request_rates:
        for p in preps:
            if p.t.skipped or s.load(p.t.name):
                continue
            try:
                _rate_sweeps(run, p, opts, log)
            finally:
                s.unload(p.t.name)


def _rate_sweeps(run: dict, p: _Prepared, o: SweepOptions, log) -> None:
    """Open loop (Poisson arrivals) at increasing rates per driver of the plan: the highest rate held under
    the p99 budget (``perf.openloop``); perf_analyzer with ``--request-rate-range``."""
    from . import openloop

    t, rates, budget_ms = p.t, sorted(o.request_rates), o.budget_ms
    for drv in p.plan:
        if drv == "perf_analyzer":
            def one(r: float):
                step = pa_driver.run_step(o.pa, t.name, o.url, p.ms, 0, o.run_dir / "perf_analyzer", p.input_data,
                                          batch=p.batch, measurement_ms=int(o.measurement_s * 1000), log=log,
                                          request_rate=r, served_unbatched=p.served_unbatched)
                step.request_rate = step.request_rate or r
                # perf_analyzer reports what it served: held when it kept up within the budget
                ok = not (step.aborted or step.p99_ms is None or step.p99_ms > budget_ms
                          or step.throughput < openloop.HELD_SHARE * r * p.batch)
                return step.to_dict(), ok

            got = {**openloop.climb(rates, one, o.rates_beyond), "budget_ms": budget_ms}
        else:
            proto = drv.split("-", 1)[1]
            got = openloop.rate_sweep(proto, o.url if proto == "grpc" else o.http_url, t.name, p.feeds, p.outputs,
                                      rates, budget_ms, batch=p.batch, log=log, measurement_s=o.measurement_s,
                                      beyond=o.rates_beyond)
        run.setdefault("rate_sweeps", {}).setdefault(t.name, {})[drv] = got
        log(f"  {t.name} {drv}: highest Poisson rate held under p99 {budget_ms:g} ms: "
            + (f"{got['max_rate']:g} req/s" + (" (every rate tried held: its limit is higher)" if got.get("all_held")
                                                else "") if got["max_rate"]
               else "none of " + ", ".join(f"{r:g}" for r in rates)))
