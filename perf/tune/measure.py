"""Measuring one configuration: loaded into the server (or as an A/B alias beside others), driven up a
concurrency ladder by the project's load generator, scored under the constraints.

A configuration's score is its best throughput at a level whose p99 is within the budget with no errors
(objective latency: 1000 / the lowest p99). The server's memory for the model is the growth of the server's
whole process group (tritonserver and the python-backend stubs) over the server with nothing loaded.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from generator.spec.tune import TuneSettings

from ..client import ServerClient, ServerGone, one_line  # noqa: F401 (ServerGone re-exported)
from ..proc import group_rss_mb
from .config import apply_candidate, check_candidate, config_text
from .space import Candidate

@dataclass
class Measurement:
    key: str
    candidate: dict
    levels: list = field(default_factory=list)  # [{concurrency, throughput, p99_ms, p50_ms, errors, ...}]
    score: float = 0.0  # best throughput within the constraints (0 when none)
    best_level: int | None = None
    best_p99_ms: float | None = None
    closest_p99_ms: float | None = None  # the lowest p99 seen (for "nothing met the budget")
    memory_mb: float | None = None
    avg_batch: float | None = None
    error: str = ""  # failed to load / rejected by the validator
    seconds: float = 0.0
    load_s: float = 0.0  # of ``seconds``: loading the config into the server



class Bench:
    """Loads candidate configs into one server and measures them with the project's load generator."""

    def __init__(self, url: str, server, spec, window_s: float, warmup_s: float, max_requests: int,
                 max_concurrency: int, settings_for, log):
        self.url, self.server, self.spec, self.log = url, server, spec, log
        self.window_s, self.warmup_s, self.max_requests = window_s, warmup_s, max_requests
        self.max_concurrency = max_concurrency
        self.settings_for = settings_for
        self.client = ServerClient(url)
        self.idle_mb = group_rss_mb(server.pid) if server is not None else None
        self.loaded: str | None = None
        self.alias_root: Path | None = None  # a second model repository of the server (owned servers only)

    def alive(self) -> bool:
        return self.client.live()

    def load(self, name: str, cfg) -> str:
        """Load ``name`` with config ``cfg``; '' when READY, else the server's reason."""
        if self.loaded and self.loaded != name:
            self.client.unload(self.loaded)
        self.loaded = name
        return self._load_with(name, cfg)

    def _load_with(self, name: str, cfg) -> str:
        reason = self.client.load(name, cfg)
        return reason.removeprefix("failed to load: ")

    def levels(self, cand: Candidate, start: int | None = None) -> list[int]:
        """A concurrency ladder: instances (or ``start``, a hint from a measured neighbour), doubling up to
        2 x max_batch_size x instances (Model Analyzer's rule for the top), capped; ``measure_config`` stops
        climbing it early (see there)."""
        inst = cand.instances or 1
        top = min(2 * max(cand.max_batch_size, 1) * inst, self.max_concurrency)
        out, c = [], min(max(inst, start or 0), top)
        while c < top:
            out.append(c)
            c *= 2
        return out + [top]

    def measure(self, cand: Candidate, base_cfg, model_spec, levels: list[int] | None = None,
                start: int | None = None, alias: str | None = None) -> Measurement:
        """Measure ``cand``: loaded as its variant (replacing what was loaded), or, with ``alias``, the alias
        ``load_alias`` already loaded (no reload: alternating A/B rounds then measure only the load)."""
        m = Measurement(key=cand.key(), candidate=asdict(cand))
        cfg = apply_candidate(base_cfg, cand)
        if alias:
            cfg.name = alias
        if not levels:
            rate = self.settings_for(model_spec).objective == "rate"
            levels, ladder = (self.rate_levels(start) if rate else self.levels(cand, start)), True
        else:
            ladder = False
        return self.measure_config(m, alias or cand.variant, cfg, model_spec, levels, ladder=ladder,
                                   preloaded=bool(alias))

    def load_alias(self, alias: str, cand: Candidate, base_cfg, source: Path) -> str:
        """Load ``cand`` as a second model ``alias`` (its own folder in the server's alias repository, the
        variant's version folders linked in), beside the others: the finalists of an A/B re-measurement stay
        loaded together and each round measures only the load. '' when READY, else the server's reason."""
        cfg = apply_candidate(base_cfg, cand)
        cfg.name = alias
        problems = check_candidate(cfg, alias)
        if problems:
            return f"rejected by the validator: {problems[0]}"
        d = self.alias_root / alias
        d.mkdir(parents=True, exist_ok=True)
        for v in source.iterdir():
            if v.is_dir() and v.name.isdigit() and not (d / v.name).exists():
                (d / v.name).symlink_to(v.resolve(), target_is_directory=True)
        (d / "config.pbtxt").write_text(config_text(cfg, "# tritongen tune: A/B alias of " + cand.short()))
        return self._load_with(alias, cfg)

    def unload(self, names) -> None:
        self.client.unload(*names)
        if self.loaded in names:
            self.loaded = None

    def _row(self, name: str, feeds, outputs, batch: int, level: int, settings: TuneSettings) -> dict:
        """One step: closed loop at concurrency ``level``, or (objective ``rate``) open loop at ``level``
        requests/s (``perf.openloop``: Poisson arrivals)."""
        from tritonclient.utils import InferenceServerException

        from perf import loadgen, openloop, server_stats

        rate = settings.objective == "rate"
        before = server_stats.snapshot(self.url, name)
        if rate:
            step = openloop.run_rate("grpc", self.url, name, feeds, outputs, level, batch=batch,
                                     warmup_s=self.warmup_s, measurement_s=self.window_s, timeout_s=60.0)
        else:
            step = loadgen.run_step("grpc", self.url, name, feeds, outputs, level, batch=batch,
                                    warmup_requests=max(4, level), warmup_s=self.warmup_s,
                                    measurement_s=self.window_s, max_requests=self.max_requests, timeout_s=60.0)
        if (step.aborted or step.errors) and not self.alive():
            raise ServerGone(f"tritonserver at {self.url} stopped while measuring {name} at "
                             + (f"{level} requests/s" if rate else f"concurrency {level}"))
        try:
            d = server_stats.delta(before, server_stats.snapshot(self.url, name)).to_dict()
        except InferenceServerException as e:  # the row stands without the server's statistics
            self.log(f"    no server statistics for {name}: {one_line(e, 200)}")
            d = {}
        row = {"concurrency": level, "throughput": step.throughput, "p50_ms": step.p50_ms, "p99_ms": step.p99_ms,
               "requests": step.requests, "errors": step.errors, "window_s": step.window_s,
               "avg_batch": d.get("avg_batch"), "queue_ms": d.get("queue_ms"),
               "compute_infer_ms": d.get("compute_infer_ms")}
        if rate:  # the level is a request rate: held when the server kept up within the budget
            row.update(request_rate=level, held=openloop.held(step, settings.latency_budget_ms or float("inf")))
        return row

    def rate_levels(self, start: int | None = None, top: int = 4096) -> list[int]:
        """Objective ``rate``: request rates doubling from ``start`` (a hint: half a neighbour's best) or 4."""
        out, r = [], max(int(start or 4), 1)
        while r <= top:
            out.append(r)
            r *= 2
        return out

    def measure_config(self, m: Measurement, name: str, cfg, model_spec, levels: list[int],
                       ladder: bool = False, preloaded: bool = False) -> Measurement:
        """Load ``cfg`` as model ``name`` and measure it at each level of ``levels`` (concurrencies; request rates
        for objective ``rate``); a ladder stops early once more load stops paying."""
        from perf import inputs as real_inputs, loadgen

        t0 = time.time()
        problems = check_candidate(cfg, name)
        if problems:
            m.error = f"rejected by the validator: {problems[0]}"
            return m
        t_load = time.time()
        reason = "" if preloaded else self.load(name, cfg)
        m.load_s = time.time() - t_load
        if reason:
            m.error = f"failed to load: {reason}"
            return m
        feeds = real_inputs.variant_feeds(model_spec) or loadgen.samples(model_spec, self.spec.root, n=4, batch=1)
        batch = loadgen.batch_of(feeds[0], model_spec)
        outputs = [o.name for o in model_spec.outputs]
        settings = self.settings_for(model_spec)
        for level in levels:
            m.levels.append(self._row(name, feeds, outputs, batch, level, settings))
            if ladder and len(m.levels) >= 2 and _stop_climbing(m.levels, settings):
                break
        if self.server is not None and self.idle_mb is not None and not preloaded:  # alone in the server
            rss = group_rss_mb(self.server.pid)
            m.memory_mb = None if rss is None else max(rss - self.idle_mb, 0.0)
        score_rows(m, settings)
        m.seconds = time.time() - t0
        return m


def _stop_climbing(rows: list[dict], settings: TuneSettings) -> bool:
    """Stop climbing once more load only queues: p99 past the budget, errors, or throughput up by less than 5%
    over the best so far; for objective ``rate``, at the first rate not held."""
    row = rows[-1]
    if settings.objective == "rate":
        return not row.get("held")
    best = max(r["throughput"] for r in rows[:-1])
    over = settings.latency_budget_ms is not None and (row["p99_ms"] or 0) > settings.latency_budget_ms
    return bool(over or row["errors"] or row["throughput"] < 1.05 * best)


def score_rows(m: Measurement, settings: TuneSettings) -> None:
    """The measurement's score under the settings' constraints and objective."""
    ok_rows = [r for r in m.levels if r["requests"] > 0 and not r["errors"] and r["p99_ms"] is not None]
    if ok_rows:
        m.closest_p99_ms = min(r["p99_ms"] for r in ok_rows)
    if settings.max_memory_mb is not None and m.memory_mb is not None and m.memory_mb > settings.max_memory_mb:
        m.score, m.best_level = 0.0, None
        return
    fit = [r for r in ok_rows
           if (settings.latency_budget_ms is None or r["p99_ms"] <= settings.latency_budget_ms)
           and (settings.min_throughput is None or r["throughput"] >= settings.min_throughput)]
    if not fit:
        m.score, m.best_level = 0.0, None
        return
    if settings.objective == "rate":  # the highest Poisson rate held under the budget (requests/s)
        fit = [r for r in fit if r.get("held")]
        if not fit:
            m.score, m.best_level = 0.0, None
            return
        best = max(fit, key=lambda r: r["request_rate"])
        m.score = float(best["request_rate"])
    elif settings.objective == "latency":
        best = min(fit, key=lambda r: r["p99_ms"])
        m.score = 1000.0 / best["p99_ms"] if best["p99_ms"] else 0.0  # higher is better: 1/p99
    else:
        best = max(fit, key=lambda r: r["throughput"])
        m.score = best["throughput"]
    m.best_level, m.best_p99_ms = best["concurrency"], best["p99_ms"]
    m.avg_batch = best.get("avg_batch")

