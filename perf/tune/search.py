"""The search strategies: screen the variants, then climb (``quick``) or walk the grid (``brute``).

- ``quick``: (0) in-process ceilings (``inprocess_ceilings``: each runtime alone, all cores; a server started
  here only): variants whose ceiling is under ``prune`` x the best ceiling never reach the server;
  (1) screen: every surviving variant at the spec's own settings; variants under ``prune`` x the best
  score are dropped; (2) a hill climb per surviving variant from the spec's settings: all one-step
  neighbours on each axis are measured, the best one becomes the new centre when it beats the centre by
  more than ``min_gain``; it stops when no neighbour does, or at ``max_configs``;
- ``brute``: the whole grid, in a fixed order, up to ``max_configs``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from generator.spec.tune import TuneSettings

from .cache import Cache
from .measure import Bench, Measurement, score_rows
from .space import Candidate, Space, preferred_for

STRATEGIES = ("quick", "brute")
CLIMB_SHARE = 0.8  # quick: variants screened under this share of the best are kept for the report, not climbed


@dataclass
class ModelTune:
    model: str
    settings: dict
    screened: list = field(default_factory=list)  # [{variant, score, error}]
    pruned: list = field(default_factory=list)
    ceilings: dict = field(default_factory=dict)  # variant -> in-process throughput ceiling (inf/s), quick only
    measured: list = field(default_factory=list)  # Measurement dicts, in search order
    confirm: dict = field(default_factory=dict)  # key -> {label, short, rounds: [...], ratio, ci, ...}
    winner: dict | None = None
    verdict: str = ""
    budget_met: bool = True
    seconds: float = 0.0


class Search:
    """One model's search state: measurements by key (cache first), the configuration budget, the record."""

    def __init__(self, bench: Bench, cache: Cache, model_spec, bases: dict, settings: TuneSettings,
                 res: ModelTune, max_configs: int, log):
        self.bench, self.cache, self.model_spec, self.bases = bench, cache, model_spec, bases
        self.settings, self.res, self.max_configs, self.log = settings, res, max_configs, log
        self.used = 0
        self.start: dict[str, Candidate] = {}  # variant -> where its screen did best
        self.results: dict[str, tuple[Candidate, Measurement | None]] = {}

    @property
    def exhausted(self) -> bool:
        return self.used >= self.max_configs

    def measure(self, c: Candidate, start: int | None = None) -> Measurement:
        """``c`` from the cache or measured now; recorded in the search's results and the report."""
        hit = self.cache.get(c.key())
        if hit is not None:  # counts against max_configs too: a resumed run walks the same path
            self.cache.reused += 1
            self.used += 1
            score_rows(hit, self.settings)  # constraints may differ from the cached run's
            m = hit
        else:
            self.log(f"  measure {c.short()}")
            m = self.bench.measure(c, self.bases[c.variant], self.model_spec, None, start=start)
            self.cache.put(m)
            self.cache.measured += 1
            self.used += 1
            if m.error:
                self.log(f"    {m.error}")
            else:
                self.log(f"    score {m.score:.1f} (best at c={m.best_level}, p99 "
                         f"{m.best_p99_ms or float('nan'):.1f} ms)")
        self.res.measured.append({**asdict(m), "short": c.short()})
        self.results[c.key()] = (c, m)
        return m

    def hint(self, m: Measurement | None) -> int | None:
        """Maximising throughput (or the held rate), a neighbour's best level is near the centre's: its ladder
        starts one step below it instead of at its instance count (or the lowest rate)."""
        if m is None or self.settings.objective not in ("throughput", "rate"):
            return None
        return max(1, (m.best_level or 0) // 2)


def prune_by_ceiling(res: ModelTune, targets, ceil: dict, prune: float, scores: dict, log) -> list:
    """The targets whose in-process ceiling is within ``prune`` x the best one's (unknown ceilings stay)."""
    res.ceilings = ceil
    top = max((v for v in ceil.values() if v), default=0.0)
    if top <= 0:
        return list(targets)
    keep = [t for t in targets if not ceil.get(t.name) or ceil[t.name] >= prune * top]
    for t in targets:
        if t not in keep:
            res.pruned.append(t.name)
            scores[t.name] = 0.0
            log(f"  prune {t.name}: in-process ceiling {ceil[t.name]:.1f}/s < {prune:g} x the best {top:.1f}/s")
    return keep


SMALL_MBS_RUNTIMES = ("openvino",)  # pad every batch to max_batch_size (backend_rules "ov_batch"): screen small too


def screen_candidates(target, space: Space, spec_c: Candidate) -> list[Candidate]:
    """Where to screen a variant: the spec's settings, and for a runtime that pads every batch to
    max_batch_size (OpenVINO) also the smallest max_batch_size of its axis, so that it is not pruned for the
    padding of the spec's batch size."""
    out = [spec_c]
    small = min((m for m in space.max_batch_size if m > 0), default=0)
    if target.runtime in SMALL_MBS_RUNTIMES and 0 < small < spec_c.max_batch_size:
        out.append(space.snap(dataclasses.replace(spec_c, max_batch_size=small, preferred=preferred_for(small),
                                                  label="")))
    return out


def screen(s: Search, targets, spec_cands: dict, strategy: str, prune: float, scores: dict,
           spaces: dict[str, Space] | None = None) -> list:
    """Every target at the settings that suit it (``screen_candidates``); returns the ones kept (best first).
    ``quick`` drops a variant under ``prune`` x the best score (a variant that cannot reach half the best at
    the user's own settings rarely wins after tuning, and each costs a full climb). ``s.start[name]`` is the
    candidate each kept variant screened best at (its climb's start)."""
    for t in targets:
        cands = screen_candidates(t, spaces[t.name], spec_cands[t.name]) if spaces else [spec_cands[t.name]]
        ms = [(c, s.measure(c)) for c in cands]
        best_c, m = max(ms, key=lambda cm: cm[1].score)
        s.start[t.name] = best_c
        scores[t.name] = m.score
        s.res.screened.append({"variant": t.name, "score": m.score, "error": ms[0][1].error if not m.score else "",
                               "at": best_c.short()})
    best = max(scores.values(), default=0.0)
    if strategy == "quick" and best > 0:
        keep = [t for t in targets if scores[t.name] >= prune * best]
        for t in targets:
            if t not in keep:
                s.res.pruned.append(t.name)
                s.log(f"  prune {t.name}: {scores[t.name]:.1f} < {prune:g} x best {best:.1f} at "
                      f"{s.start[t.name].short()}")
    else:
        errors = {x["variant"]: x["error"] for x in s.res.screened}
        keep = [t for t in targets if not errors[t.name]]
    keep.sort(key=lambda t: -scores[t.name])
    return keep


def brute(s: Search, keep, spaces: dict[str, Space]) -> None:
    grid = [c for t in keep for c in spaces[t.name].grid()]
    for c in grid:
        if s.exhausted:
            s.log(f"  stopping: max_configs {s.max_configs} reached ({len(grid)} in the grid)")
            break
        if c.key() not in s.results:
            s.measure(c)


def climb(s: Search, space: Space, start_c: Candidate, min_gain: float) -> None:
    """Hill climb from where the screen did best (the spec's settings) snapped onto the grid."""
    centre = space.snap(start_c)
    if centre.key() not in s.results:  # the start moved onto the grid: start near its best level
        s.measure(centre, start=s.hint(s.results[start_c.key()][1]))
    cm = s.results[centre.key()][1]
    while not s.exhausted:
        improved = None
        for n in space.neighbours(centre):
            if s.exhausted:
                break
            nm = s.results[n.key()][1] if n.key() in s.results else s.measure(n, start=s.hint(cm))
            if nm.score > cm.score * (1 + min_gain) and (improved is None or nm.score > improved[1].score):
                improved = (n, nm)
        if improved is None:
            break
        centre, cm = improved
        s.log(f"  climb -> {centre.short()} ({cm.score:.1f})")


def quick(s: Search, keep, spaces: dict[str, Space], spec_cands: dict, scores: dict, min_gain: float) -> None:
    """Climb the best variant; another one only when it screened within CLIMB_SHARE of the best (one under it
    rarely overtakes after tuning, and each climb costs several configurations)."""
    best = max(scores.values(), default=0.0)
    for t in [t for t in keep if scores[t.name] >= CLIMB_SHARE * best] or keep[:1]:
        climb(s, spaces[t.name], s.start.get(t.name, spec_cands[t.name]), min_gain)


def inprocess_ceilings(spec_path: Path, model_spec, targets, spaces: dict, cores: int, log, cache=None) -> dict:
    """Each variant's in-process throughput ceiling: its runtime alone, without the server, on one session with
    all ``cores`` threads at batch min(largest max_batch_size searched, 8) (``perf.baseline``: the served
    config's session settings, a fresh interpreter per variant). No served configuration of a variant beats
    its runtime run directly, so a variant whose ceiling is under ``prune`` x the best one's is dropped before
    the server sees it. ``None`` for a variant that cannot run in-process (TensorRT, a failed session). With a
    ``cache`` (``perf.tune.cache.Cache``), a ceiling an earlier run in the same folder measured for the same
    artifact bytes, threads and batch is reused: a resumed run prunes exactly as the first did."""
    from ..baseline import run_baseline

    out = {}
    for t in targets:
        if t.runtime not in ("onnxruntime", "torchscript", "openvino") or t.artifact is None:
            out[t.name] = None
            continue
        mbs = max(spaces[t.name].max_batch_size)
        b = min(mbs, 8) if mbs > 0 else 1
        job = {"spec": str(spec_path), "model": model_spec.name, "kind": t.runtime, "artifact": str(t.artifact),
               "total_threads": cores, "batches": [b], "measurement_s": 0.5, "max_iters": 20}
        key = _ceiling_key(t, cores, b)
        known, value = cache.ceiling(key) if cache is not None else (False, None)
        if known:
            out[t.name] = value
            log(f"  in-process ceiling {t.name}: " + (f"{value:.1f}/s" if value else "not measured")
                + f" at batch {b}, {cores} threads (measured by an earlier run in this folder)")
            continue
        t0 = time.time()
        got = run_baseline(job, timeout_s=300)
        rows = got.get("rows") or []
        out[t.name] = rows[0]["throughput"] if rows else None
        log(f"  in-process ceiling {t.name}: " + (f"{out[t.name]:.1f}/s at batch {b}, {cores} threads"
                                                    if rows else f"not measured ({got.get('error', '?')})")
            + f" [{time.time() - t0:.1f} s]")
        if cache is not None:
            cache.put_ceiling(key, out[t.name])
    return out


def _ceiling_key(t, cores: int, batch: int) -> str:
    """A variant's model folder as it is on disk (``dir_identity``: config and files), threads, batch."""
    from generator.formats.repository import dir_identity

    art = Path(t.artifact)
    ident = dir_identity(art.parent.parent) if art.exists() else "missing"
    return f"{t.name}|{art}|{ident}|threads={cores}|batch={batch}"


def primary_variant(model_spec, targets) -> str | None:
    """The Triton name of the variant the spec serves: the model's ``preferred_variant``, else the ensemble's,
    else the first listed that was built."""
    names = {t.variant: t.name for t in targets}
    preferred = getattr(model_spec, "preferred_variant", None)
    pre = getattr(model_spec.preprocess, "variant", None) if model_spec.preprocess is not None else None
    for key in [k for k in (preferred, pre) if k] + [v.name for v in model_spec.variants]:
        if key in names:
            return names[key]
    return None
