"""``tritongen tune``: search format x precision x Triton settings through a real server; keep what survives noise.

    run_tune(spec_path, repo, url=None, models=None, strategy="quick", ...) -> TuneResult

What is searched, per model of the spec (all of them, or ``--models``):
- the variant: every ``<model>__<variant>`` folder of the repository whose accuracy gate passed (format x
  precision: onnx, onnx-int8, openvino, torchscript, ...);
- ``instance_group`` count, ``max_batch_size`` (powers of two, never above what the build verified, so
  never beyond a TensorRT profile), preferred batch sizes (derived: the new max, and half of it),
  ``max_queue_delay_microseconds``, and runtime threads per instance (ONNX Runtime intra-op threads,
  OpenVINO INFERENCE_NUM_THREADS, LibTorch INTRA_OP_THREAD_COUNT, the twin's ``intra_op_threads``) --
  with instances x threads never above the server's cores.
The spec's ``tune:`` section narrows or widens each axis (see ``TuneSettings``); CLI options win.

How a configuration is measured: the base config.pbtxt of the variant is parsed with Triton's schema,
the candidate's values are applied (warm-up and preferred sizes follow ``max_batch_size``, so every
candidate stays loadable), the result is checked with tritongen's validator, then loaded into the server
with a config override (``load_model(name, config=...)``, explicit model control: only the model under
test holds the CPU) and driven by the project's load generator (``perf.loadgen``) up a concurrency ladder
(instances, doubling to 2 x max_batch_size x instances: Model Analyzer's ceiling), stopping once more load
stops paying. A
configuration's score is its best throughput at a level whose p99 is within the budget with no errors.
The server's memory for the model is the growth of the server's whole process group (tritonserver and
the python-backend stubs) over the server with nothing loaded.

Strategies:
- ``quick``: (0) in-process ceilings (``inprocess_ceilings``: each runtime alone, all cores; a server started
  here only): variants whose ceiling is under ``prune`` x the best ceiling never reach the server;
  (1) screen: every surviving variant at the spec's own settings; variants under ``prune`` x the best
  score are dropped (a variant that cannot reach half the best at the user's own settings rarely wins
  after tuning, and each costs a full climb); (2) a hill climb per surviving variant from the spec's
  settings: all one-step neighbours on each axis are measured, the best one becomes the new centre when it
  beats the centre by more than ``min_gain``; it stops when no neighbour does, or at ``max_configs``;
- ``brute``: the whole grid, in a fixed order, up to ``max_configs``.
Then the finalists (best ``finalists`` configs) and the spec's config and Triton's defaults are loaded
side by side as aliases (``Bench.load_alias``: a second model repository of the server started here, each
alias a config.pbtxt with the variant's version folders linked in) and re-measured *alternately* in one server for ``rounds`` rounds (the order rotates each round), and each
is compared with the spec's config round by round: the mean of the per-round log throughput ratios with
a 95% t interval. A winner whose interval includes 1 is reported as not distinguishable from the spec.

Every measurement is stored at once in ``<run dir>/cache.json`` keyed by the configuration's hash:
a killed run, re-run with the same ``--out``, measures only what is missing. ``--apply`` writes the
winner's values into the variant's config.pbtxt (and into ``--apply-to`` repositories, e.g. the native
one built from the same spec), through the schema + validator, atomically and idempotently; the
matching ``triton:`` spec snippet is written to ``tuned.yaml`` so the next ``tritongen build`` keeps it.

Layout (one job per module): ``space`` (candidates, axes, grid, neighbours), ``config`` (a candidate applied to a
config.pbtxt, checked), ``measure`` (the server bench, scoring), ``cache``, ``search`` (screen, climb, brute,
in-process ceilings), ``finals`` (the A/B re-measurement and the verdict; intervals in ``perf.confirm``),
``model`` (one model's tune), ``report``, ``apply`` (``--apply``, tuned.yaml), ``driver`` (``run_tune``).
"""

from generator.spec.tune import OBJECTIVES, TUNE_KEYS, TuneSettings, parse_tune  # noqa: F401

from ..client import ServerGone  # noqa: F401
from ..confirm import ratio_interval  # noqa: F401
from .apply import apply_to_repository, merge_snippets, spec_snippet, write_tuned  # noqa: F401
from .cache import Cache  # noqa: F401
from .config import apply_candidate, base_config, check_candidate, config_text  # noqa: F401
from .driver import run_tune  # noqa: F401
from .finals import Lineup  # noqa: F401
from .measure import Bench, Measurement, score_rows  # noqa: F401
from .model import tune_model  # noqa: F401
from .report import write_tune_report  # noqa: F401
from .search import CLIMB_SHARE, STRATEGIES, ModelTune, inprocess_ceilings, primary_variant  # noqa: F401
from .space import (DEFAULT_DELAYS, THREAD_KEYS, Candidate, Space, build_space, cores_available,  # noqa: F401
                    default_candidate, preferred_for, spec_candidate)

_base_config = base_config  # the old private name (tests, perf.tune_vs_ma before the split)
