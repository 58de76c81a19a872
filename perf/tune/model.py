"""One model's tune: screen its variants, search, re-measure the finalists alternately, name the winner."""

from __future__ import annotations

import time
from dataclasses import asdict

from generator.spec.tune import TuneSettings

from . import finals
from .cache import Cache
from .config import base_config
from .measure import Bench
from .search import ModelTune, Search, brute, prune_by_ceiling, primary_variant, quick, screen
from .space import build_space, spec_candidate


def tune_model(bench: Bench, cache: Cache, model_spec, targets, settings: TuneSettings, strategy: str,
               max_configs: int, min_gain: float, prune: float, finalists: int, rounds: int, cores: int,
               log, inprocess=None) -> ModelTune:
    t0 = time.time()
    res = ModelTune(model=model_spec.name, settings=asdict(settings))
    bases = {t.name: base_config(t) for t in targets}
    spaces = {t.name: build_space(t, bases[t.name], model_spec, settings, cores) for t in targets}
    s = Search(bench, cache, model_spec, bases, settings, res, max_configs, log)

    # 1. screen: in-process ceilings first (quick, server started here), then every surviving variant at the
    # spec's own settings through the server
    spec_cands = {t.name: spec_candidate(t, bases[t.name]) for t in targets}
    scores: dict[str, float] = {}
    survivors = list(targets)
    if strategy == "quick" and inprocess is not None and len(targets) > 1:
        survivors = prune_by_ceiling(res, targets, inprocess(targets, spaces), prune, scores, log)
    keep = screen(s, survivors, spec_cands, strategy, prune, scores, spaces)

    # 2. search
    if strategy == "brute":
        brute(s, keep, spaces)
    else:
        quick(s, keep, spaces, spec_cands, scores, min_gain)

    # 3. finalists re-measured alternately with the spec's config and Triton's defaults
    if not finals.ranked(s):
        res.budget_met = False
        res.verdict = finals.no_winner_verdict(s)
        res.seconds = time.time() - t0
        return res
    lu = finals.lineup(s, targets, keep, spec_cands, scores, primary_variant(model_spec, targets), finalists)
    log(f"  re-measuring {len(lu.all)} configurations alternately, {rounds} rounds")
    alias_of = finals.load_aliases(bench, s, lu.all, targets, log)
    finals.run_rounds(bench, s, lu.all, rounds, alias_of)
    if alias_of:
        bench.unload(list(alias_of.values()))
    finals.summarise(res, lu, settings.objective)
    finals.choose(res, lu, settings.objective, rounds, settings)
    res.seconds = time.time() - t0
    return res
