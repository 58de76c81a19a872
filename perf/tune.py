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
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from generator.errors import UserError

STRATEGIES = ("quick", "brute")
THREAD_KEYS = {  # engine -> the config parameter holding per-instance runtime threads
    "onnxruntime_onnx": "intra_op_thread_count",
    "onnxruntime": "intra_op_thread_count",
    "openvino": "INFERENCE_NUM_THREADS",
    "pytorch_libtorch": "INTRA_OP_THREAD_COUNT",
    "pytorch": "INTRA_OP_THREAD_COUNT",
    "torch_aoti": "INTRA_OP_THREAD_COUNT",  # torch-aoti (the pt2 loader's key)
    "python": "intra_op_threads",
}
DEFAULT_DELAYS = (0, 500, 2000, 10000, 20000, 50000)
CLIMB_SHARE = 0.8  # quick: variants screened under this share of the best are kept for the report, not climbed


# --------------------------------------------------------------------------------------------- settings


from generator.tunespec import OBJECTIVES, TUNE_KEYS, TuneSettings, parse_tune  # noqa: F401 (re-exported)


# --------------------------------------------------------------------------------------------- candidates


@dataclass(frozen=True)
class Candidate:
    """One point of the search space: a served variant and the Triton settings it runs with."""

    variant: str  # Triton model name, e.g. small_cnn__onnx
    instances: int | None  # None: Triton's default instance group
    max_batch_size: int
    preferred: tuple[int, ...]
    queue_delay_us: int | None  # None: no dynamic batching (Triton's default)
    threads: int  # per-instance runtime threads; 0: the runtime's default
    label: str = ""  # "spec", "spec (primary variant)", "triton-default" or ""

    def key(self) -> str:
        d = asdict(self)
        d.pop("label")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def short(self) -> str:
        if self.queue_delay_us is None and self.instances is None:
            return f"{self.variant} [Triton defaults]"
        return (f"{self.variant} inst={self.instances} mbs={self.max_batch_size} pref={list(self.preferred)} "
                f"delay={self.queue_delay_us}us threads={self.threads or 'default'}")


def _pow2_upto(n: int) -> list[int]:
    out, v = [], 1
    while v <= n:
        out.append(v)
        v *= 2
    if n not in out:
        out.append(n)
    return out


def preferred_for(mbs: int) -> tuple[int, ...]:
    """Preferred sizes that follow max_batch_size: half of it and itself (what the batcher aims for)."""
    if mbs <= 1:
        return ()
    return tuple(sorted({max(1, mbs // 2), mbs}))


@dataclass
class Space:
    """The axes of one variant's search space."""

    variant: str
    engine: str
    instances: list[int]
    max_batch_size: list[int]
    queue_delay_us: list[int]
    threads: list[int]
    cores: int

    def ok(self, c: Candidate) -> bool:
        inst = c.instances or 1
        return inst * (c.threads or 1) <= self.cores

    def grid(self) -> list[Candidate]:
        out = []
        for mbs in self.max_batch_size:
            for inst in self.instances:
                for th in self.threads:
                    for d in (self.queue_delay_us if mbs > 0 else [None]):
                        c = Candidate(self.variant, inst, mbs, preferred_for(mbs), d, th)
                        if self.ok(c):
                            out.append(c)
        return out

    def snap(self, c: Candidate) -> Candidate:
        """The nearest grid point to ``c`` (the spec's settings as a climb's start)."""
        def near(v, axis):
            return min(axis, key=lambda a: (abs(a - v), a)) if axis else v

        mbs = near(c.max_batch_size, self.max_batch_size)
        d = None if mbs == 0 else near(c.queue_delay_us or 0, self.queue_delay_us)
        inst = near(c.instances or 1, self.instances)
        th = near(c.threads, self.threads)
        out = Candidate(self.variant, inst, mbs, preferred_for(mbs), d, th)
        while not self.ok(out) and out.threads > min(self.threads):
            out = dataclasses.replace(out, threads=max(t for t in self.threads if t < out.threads))
        while not self.ok(out) and out.instances > min(self.instances):
            out = dataclasses.replace(out, instances=max(i for i in self.instances if i < out.instances))
        return out

    def neighbours(self, c: Candidate) -> list[Candidate]:
        out = []

        def step(axis: list, v, name: str, far: bool = False):
            if v not in axis:
                return
            i = axis.index(v)
            for j in ((i - 2, i - 1, i + 1, i + 2) if far else (i - 1, i + 1)):
                if 0 <= j < len(axis):
                    nv = axis[j]
                    n = dataclasses.replace(c, **{name: nv}, label="")
                    if name == "max_batch_size":
                        n = dataclasses.replace(n, preferred=preferred_for(nv),
                                                queue_delay_us=None if nv == 0 else (c.queue_delay_us or 0))
                    if self.ok(n):
                        out.append(n)

        step(self.instances, c.instances, "instances")
        # instances and threads share the cores: also trade one for the other at the same total (2 x 1 <-> 1 x 2),
        # a move the two single-axis steps cannot make when the machine is already full
        total = (c.instances or 1) * (c.threads or 1)
        if c.instances in self.instances and c.threads:
            i = self.instances.index(c.instances)
            for j in (i - 1, i + 1):
                if 0 <= j < len(self.instances):
                    ni = self.instances[j]
                    fit = [t for t in self.threads if t and ni * t <= total]
                    if fit and max(fit) != c.threads:
                        n = dataclasses.replace(c, instances=ni, threads=max(fit), label="")
                        if self.ok(n) and n not in out:
                            out.append(n)
        # max_batch_size moves two steps too (x4): the best batch is often far from a hand-picked one and one
        # doubling alone rarely clears the noise
        step(self.max_batch_size, c.max_batch_size, "max_batch_size", far=len(self.max_batch_size) > 3)
        if c.max_batch_size > 0:
            step(self.queue_delay_us, c.queue_delay_us, "queue_delay_us")
        step(self.threads, c.threads, "threads")
        return out


def cores_available() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def build_space(target, base_cfg, model_spec, settings: TuneSettings, cores: int) -> Space:
    """The axes for one variant: the spec's settings, the machine's cores and the verified batch range."""
    from generator.validate import engine_of

    engine = engine_of(base_cfg)
    verified_mbs = model_spec.max_batch_size
    if verified_mbs > 0:
        mbs_axis = [m for m in (settings.max_batch_size or _pow2_upto(verified_mbs)) if m <= verified_mbs]
        if not mbs_axis:
            raise UserError(f"{model_spec.where}.tune.max_batch_size: every value exceeds the verified "
                            f"max_batch_size {verified_mbs}; tritongen never serves a batch it did not verify")
    else:
        mbs_axis = [0]
    inst_axis = list(settings.instances or range(1, cores + 1))
    if target.runtime == "tensorrt" or engine in ("tensorrt_plan", "tensorrt"):
        threads_axis = [0]  # TensorRT has no thread setting
    else:
        threads_axis = list(settings.threads or sorted({1, *_pow2_upto(cores)}))
    delays = list(settings.queue_delay_us or DEFAULT_DELAYS)
    return Space(variant=target.name, engine=engine, instances=inst_axis, max_batch_size=mbs_axis,
                 queue_delay_us=delays, threads=threads_axis, cores=cores)


def spec_candidate(target, base_cfg) -> Candidate:
    """The settings the repository was built with, read back from its config."""
    params = {k: v.string_value for k, v in base_cfg.parameters.items()}
    threads = 0
    for key in set(THREAD_KEYS.values()):
        if params.get(key, "").isdigit():
            threads = int(params[key])
            break
    inst = sum(g.count for g in base_cfg.instance_group) or None
    db = base_cfg.dynamic_batching if base_cfg.HasField("dynamic_batching") else None
    return Candidate(
        variant=target.name, instances=inst, max_batch_size=base_cfg.max_batch_size,
        preferred=tuple(db.preferred_batch_size) if db else (),
        queue_delay_us=int(db.max_queue_delay_microseconds) if db else None, threads=threads, label="spec")


def default_candidate(target, base_cfg) -> Candidate:
    """Triton's defaults: no dynamic batching, the server's default instance group, the runtime's threads."""
    return Candidate(variant=target.name, instances=None, max_batch_size=base_cfg.max_batch_size, preferred=(),
                     queue_delay_us=None, threads=0, label="triton-default")


def apply_candidate(base_cfg, c: Candidate):
    """A copy of ``base_cfg`` (a ModelConfig) with the candidate's values; warm-up follows max_batch_size."""
    from tritonclient.grpc import model_config_pb2 as pb

    from generator.validate import engine_of

    cfg = pb.ModelConfig()
    cfg.CopyFrom(base_cfg)
    cfg.max_batch_size = c.max_batch_size
    if c.queue_delay_us is None or c.max_batch_size == 0:
        cfg.ClearField("dynamic_batching")
    else:
        keep_order = cfg.dynamic_batching.preserve_ordering if base_cfg.HasField("dynamic_batching") else False
        cfg.ClearField("dynamic_batching")
        cfg.dynamic_batching.preferred_batch_size.extend([p for p in c.preferred if p <= c.max_batch_size])
        cfg.dynamic_batching.max_queue_delay_microseconds = c.queue_delay_us
        if keep_order:
            cfg.dynamic_batching.preserve_ordering = True
    if c.instances is None:
        cfg.ClearField("instance_group")
    else:
        kind = base_cfg.instance_group[0].kind if base_cfg.instance_group else pb.ModelInstanceGroup.KIND_CPU
        gpus = list(base_cfg.instance_group[0].gpus) if base_cfg.instance_group else []
        profiles = list(base_cfg.instance_group[0].profile) if base_cfg.instance_group else []
        cfg.ClearField("instance_group")
        g = cfg.instance_group.add()
        g.count, g.kind = c.instances, kind
        g.gpus.extend(gpus)
        g.profile.extend(profiles)
    engine = engine_of(base_cfg)
    keys = [k for k in set(THREAD_KEYS.values()) if k in cfg.parameters]
    if not keys and engine in THREAD_KEYS:
        keys = [THREAD_KEYS[engine]]
    for k in keys:
        if c.threads:
            cfg.parameters[k].string_value = str(c.threads)
        elif k in cfg.parameters:
            del cfg.parameters[k]
    # warm-up follows max_batch_size: batch 1 and the largest preferred size, never above the new max
    warm = [w for w in cfg.model_warmup]
    cfg.ClearField("model_warmup")
    seen = set()
    top = max(c.preferred) if c.preferred else 1
    for w in warm:
        b = w.batch_size if c.max_batch_size == 0 or w.batch_size <= c.max_batch_size else top
        b = min(b, max(c.max_batch_size, 1))
        if b in seen:
            continue
        seen.add(b)
        nw = cfg.model_warmup.add()
        nw.CopyFrom(w)
        nw.batch_size = b
        if c.max_batch_size > 0:
            nw.name = f"warmup_batch_{b}"
    return cfg


def config_text(cfg, header: str = "") -> str:
    from google.protobuf import text_format

    return (header + "\n" if header else "") + text_format.MessageToString(cfg)


def check_candidate(cfg, name: str) -> list[str]:
    """Triton's schema and tritongen's validator on a candidate config (text round trip, as the server reads it)."""
    from generator.validate import check_config, parse_config

    text = config_text(cfg)
    parsed, problem = parse_config(text, f"{name}/config.pbtxt")
    if problem:
        return [problem]
    return check_config(parsed, "max_batch_size: x\n" + text, f"{name}/config.pbtxt", name)


# --------------------------------------------------------------------------------------------- measuring


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


class ServerGone(Exception):
    pass


def _group_rss_mb(pid: int) -> float | None:
    """Resident memory of every process in ``pid``'s process group (tritonserver + python stubs)."""
    total = 0
    found = False
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if os.getpgid(int(d.name)) != pid:
                continue
            for line in (d / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    found = True
        except (OSError, ProcessLookupError, ValueError):
            continue
    return total / 1024.0 if found else None


class Bench:
    """Loads candidate configs into one server and measures them with the project's load generator."""

    def __init__(self, url: str, server, spec, window_s: float, warmup_s: float, max_requests: int,
                 max_concurrency: int, settings_for, log):
        self.url, self.server, self.spec, self.log = url, server, spec, log
        self.window_s, self.warmup_s, self.max_requests = window_s, warmup_s, max_requests
        self.max_concurrency = max_concurrency
        self.settings_for = settings_for
        self.idle_mb = _group_rss_mb(server.pid) if server is not None else None
        self.loaded: str | None = None
        self.alias_root: Path | None = None  # a second model repository of the server (owned servers only)

    def _client(self):
        import tritonclient.grpc as grpcclient

        return grpcclient.InferenceServerClient(self.url)

    def alive(self) -> bool:
        try:
            c = self._client()
            try:
                return bool(c.is_server_live(client_timeout=5))
            finally:
                c.close()
        except Exception:
            return False

    def load(self, name: str, cfg) -> str:
        """Load ``name`` with config ``cfg``; '' when READY, else the server's reason."""
        c = self._client()
        try:
            if self.loaded and self.loaded != name:
                try:
                    c.unload_model(self.loaded, client_timeout=60)
                except Exception:
                    pass
            self.loaded = name
            return self._load_with(c, name, cfg)
        finally:
            c.close()

    def _load_with(self, c, name: str, cfg) -> str:
        from google.protobuf import json_format

        try:
            c.load_model(name, config=json_format.MessageToJson(cfg), client_timeout=600)
        except Exception as e:
            if not self.alive():
                raise ServerGone(f"tritonserver at {self.url} stopped while loading {name}")
            return " ".join(str(e).split())[:300]
        return "" if c.is_model_ready(name, client_timeout=10) else "not READY after load"

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
        return self.measure_config(m, alias or cand.variant, cfg, model_spec, levels or self.levels(cand, start),
                                   ladder=not levels, preloaded=bool(alias))

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
        c = self._client()
        try:
            return self._load_with(c, alias, cfg)
        finally:
            c.close()

    def unload(self, names) -> None:
        c = self._client()
        try:
            for n in names:
                try:
                    c.unload_model(n, client_timeout=60)
                except Exception:
                    pass
        finally:
            c.close()
        if self.loaded in names:
            self.loaded = None

    def measure_config(self, m: Measurement, name: str, cfg, model_spec, levels: list[int],
                       ladder: bool = False, preloaded: bool = False) -> Measurement:
        """Load ``cfg`` as model ``name`` and measure it at each concurrency of ``levels`` (a ladder: stop early
        once more concurrency stops paying)."""
        from perf import loadgen, server_stats

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
        feeds = loadgen.samples(model_spec, self.spec.root, n=4, batch=1)
        batch = loadgen.batch_of(feeds[0], model_spec)
        outputs = [o.name for o in model_spec.outputs]
        settings = self.settings_for(model_spec)
        for conc in levels:
            before = server_stats.snapshot(self.url, name)
            step = loadgen.run_step("grpc", self.url, name, feeds, outputs, conc, batch=batch,
                                    warmup_requests=max(4, conc), warmup_s=self.warmup_s,
                                    measurement_s=self.window_s, max_requests=self.max_requests, timeout_s=60.0)
            if step.aborted or (step.errors and not self.alive()):
                if not self.alive():
                    raise ServerGone(f"tritonserver at {self.url} stopped while measuring {name} at concurrency {conc}")
            try:
                d = server_stats.delta(before, server_stats.snapshot(self.url, name)).to_dict()
            except Exception:
                d = {}
            row = {"concurrency": conc, "throughput": step.throughput, "p50_ms": step.p50_ms, "p99_ms": step.p99_ms,
                   "requests": step.requests, "errors": step.errors, "window_s": step.window_s,
                   "avg_batch": d.get("avg_batch"), "queue_ms": d.get("queue_ms"),
                   "compute_infer_ms": d.get("compute_infer_ms")}
            m.levels.append(row)
            if ladder and len(m.levels) >= 2:
                # stop climbing the ladder once more load only queues: p99 past the budget, errors, or
                # throughput up by less than 5% over the best so far
                best = max(r["throughput"] for r in m.levels[:-1])
                over = settings.latency_budget_ms is not None and (row["p99_ms"] or 0) > settings.latency_budget_ms
                if over or row["errors"] or row["throughput"] < 1.05 * best:
                    break
        if self.server is not None and self.idle_mb is not None and not preloaded:  # alone in the server
            rss = _group_rss_mb(self.server.pid)
            m.memory_mb = None if rss is None else max(rss - self.idle_mb, 0.0)
        score_rows(m, settings)
        m.seconds = time.time() - t0
        return m


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
    if settings.objective == "latency":
        best = min(fit, key=lambda r: r["p99_ms"])
        m.score = 1000.0 / best["p99_ms"] if best["p99_ms"] else 0.0  # higher is better: 1/p99
    else:
        best = max(fit, key=lambda r: r["throughput"])
        m.score = best["throughput"]
    m.best_level, m.best_p99_ms = best["concurrency"], best["p99_ms"]
    m.avg_batch = best.get("avg_batch")


# --------------------------------------------------------------------------------------------- cache


class Cache:
    """Measurements by configuration hash, written after every measurement (a killed run resumes)."""

    def __init__(self, path: Path):
        self.path = path
        self.data: dict[str, dict] = {}
        if path.is_file():
            try:
                self.data = json.loads(path.read_text()).get("measurements", {})
            except (OSError, ValueError):
                self.data = {}
        self.reused = 0
        self.measured = 0

    def get(self, key: str) -> Measurement | None:
        d = self.data.get(key)
        return Measurement(**d) if d else None

    def put(self, m: Measurement) -> None:
        self.data[m.key] = asdict(m)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"measurements": self.data}, indent=1, sort_keys=True))
        os.replace(tmp, self.path)


# --------------------------------------------------------------------------------------------- search


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


def _t975(df: int) -> float:
    table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}
    return table.get(df, 1.96 if df > 30 else 2.1)


def ratio_interval(ratios: list[float]) -> tuple[float, float, float]:
    """Geometric mean of per-round ratios and its 95% t interval (on logs)."""
    logs = [math.log(r) for r in ratios if r > 0]
    if not logs:
        return 0.0, 0.0, 0.0
    mean = sum(logs) / len(logs)
    if len(logs) < 2:
        return math.exp(mean), 0.0, float("inf")
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / (len(logs) - 1))
    half = _t975(len(logs) - 1) * sd / math.sqrt(len(logs))
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)


def tune_model(bench: Bench, cache: Cache, model_spec, targets, settings: TuneSettings, strategy: str,
               max_configs: int, min_gain: float, prune: float, finalists: int, rounds: int, cores: int,
               log, inprocess=None) -> ModelTune:
    t0 = time.time()
    res = ModelTune(model=model_spec.name, settings=asdict(settings))
    bases = {t.name: _base_config(t) for t in targets}
    spaces = {t.name: build_space(t, bases[t.name], model_spec, settings, cores) for t in targets}
    budget_used = [0]

    def measure(c: Candidate, levels=None, start=None) -> Measurement:
        hit = cache.get(c.key()) if levels is None else None
        if hit is not None:  # counts against max_configs too: a resumed run walks the same path
            cache.reused += 1
            budget_used[0] += 1
            score_rows(hit, settings)  # constraints may differ from the cached run's
            return hit
        log(f"  measure {c.short()}")
        m = bench.measure(c, bases[c.variant], model_spec, levels, start=start)
        if levels is None:
            cache.put(m)
            cache.measured += 1
            budget_used[0] += 1
        if m.error:
            log(f"    {m.error}")
        else:
            log(f"    score {m.score:.1f} (best at c={m.best_level}, p99 {m.best_p99_ms or float('nan'):.1f} ms)")
        return m

    def record(m: Measurement, c: Candidate) -> None:
        d = asdict(m)
        d["short"] = c.short()
        res.measured.append(d)

    # 1. screen: in-process ceilings first (quick, server started here), then every surviving variant at the
    # spec's own settings through the server
    spec_cands = {t.name: spec_candidate(t, bases[t.name]) for t in targets}
    scores = {}
    screen = list(targets)
    if strategy == "quick" and inprocess is not None and len(targets) > 1:
        ceil = inprocess(targets, spaces)
        res.ceilings = ceil
        top_ceiling = max((v for v in ceil.values() if v), default=0.0)
        if top_ceiling > 0:
            screen = [t for t in targets if not ceil.get(t.name) or ceil[t.name] >= prune * top_ceiling]
            for t in targets:
                if t not in screen:
                    res.pruned.append(t.name)
                    scores[t.name] = 0.0
                    log(f"  prune {t.name}: in-process ceiling {ceil[t.name]:.1f}/s < {prune:g} x the best "
                        f"{top_ceiling:.1f}/s")
    for t in screen:
        m = measure(spec_cands[t.name])
        record(m, spec_cands[t.name])
        scores[t.name] = m.score
        res.screened.append({"variant": t.name, "score": m.score, "error": m.error})
    best = max(scores.values(), default=0.0)
    if strategy == "quick" and best > 0:
        keep = [t for t in screen if scores[t.name] >= prune * best]
        for t in screen:
            if t not in keep:
                res.pruned.append(t.name)
                log(f"  prune {t.name}: {scores[t.name]:.1f} < {prune:g} x best {best:.1f} at the spec's settings")
    else:
        keep = [t for t in screen if not next(s for s in res.screened if s["variant"] == t.name)["error"]]
    keep.sort(key=lambda t: -scores[t.name])

    # 2. search
    results: dict[str, tuple[Candidate, Measurement]] = {}
    for t in targets:
        c = spec_cands[t.name]
        results[c.key()] = (c, cache.get(c.key()))
    if strategy == "brute":
        grid = [c for t in keep for c in spaces[t.name].grid()]
        for c in grid:
            if budget_used[0] >= max_configs:
                log(f"  stopping: max_configs {max_configs} reached ({len(grid)} in the grid)")
                break
            if c.key() in results:
                continue
            m = measure(c)
            record(m, c)
            results[c.key()] = (c, m)
    else:
        # climb the best variant; another one only when it screened within CLIMB_SHARE of the best (one under
        # it rarely overtakes after tuning, and each climb costs several configurations)
        climb = [t for t in keep if scores[t.name] >= CLIMB_SHARE * best] or keep[:1]
        for t in climb:
            space = spaces[t.name]
            centre = space.snap(spec_cands[t.name])
            if centre.key() not in results:  # the spec's settings moved onto the grid: start near its best level
                sm = results[spec_cands[t.name].key()][1]
                hint = max(1, (sm.best_level or 0) // 2) if sm is not None and settings.objective == "throughput" \
                    else None
                m = measure(centre, start=hint)
                record(m, centre)
                results[centre.key()] = (centre, m)
            cm = results[centre.key()][1]
            while budget_used[0] < max_configs:
                improved = None
                for n in space.neighbours(centre):
                    if budget_used[0] >= max_configs:
                        break
                    if n.key() in results:
                        nm = results[n.key()][1]
                    else:
                        # maximising throughput, a neighbour's best concurrency is near the centre's: its
                        # ladder starts one step below it instead of at its instance count
                        hint = max(1, (cm.best_level or 0) // 2) if settings.objective == "throughput" else None
                        nm = measure(n, start=hint)
                        record(nm, n)
                        results[n.key()] = (n, nm)
                    if nm.score > cm.score * (1 + min_gain) and (improved is None or nm.score > improved[1].score):
                        improved = (n, nm)
                if improved is None:
                    break
                centre, cm = improved
                log(f"  climb -> {centre.short()} ({cm.score:.1f})")

    # 3. finalists re-measured alternately with the spec's config and Triton's defaults
    ranked = sorted(((c, m) for c, m in results.values() if m is not None and not m.error and m.score > 0),
                    key=lambda cm: -cm[1].score)
    if not ranked:
        every = [m for _, m in results.values() if m is not None and not m.error]
        res.budget_met = False
        closest = min((m for m in every if m.closest_p99_ms is not None), key=lambda m: m.closest_p99_ms,
                      default=None)
        res.verdict = ("no configuration met the constraints"
                       + (f"; the closest reached p99 {closest.closest_p99_ms:.1f} ms ({Candidate(**closest.candidate).short()})"
                          if closest else "; none could be measured"))
        res.seconds = time.time() - t0
        return res
    top = [c for c, _ in ranked[:finalists]]
    # the baseline: the spec's own settings on the variant that did best at them (the hardest to beat)
    spec_c = spec_cands[keep[0].name] if keep else spec_cands[ranked[0][0].variant]
    default_c = default_candidate(next(t for t in targets if t.name == spec_c.variant), bases[spec_c.variant])
    # and the configuration the spec serves: its settings on its primary variant (the ensemble's, else the first
    # listed), which the format search may beat by more than the settings alone
    primary = primary_variant(model_spec, targets)
    primary_c = dataclasses.replace(spec_cands[primary], label="spec (primary variant)") \
        if primary and primary != spec_c.variant and (scores.get(primary, 0) > 0 or primary not in
                                                       {x["variant"] for x in res.screened}) else None
    lineup: list[Candidate] = []
    for c in [spec_c, *([primary_c] if primary_c else []), default_c, *top]:
        if c.key() not in {x.key() for x in lineup}:
            lineup.append(c)
    level_of = {}
    for c in lineup:
        m = results.get(c.key(), (None, None))[1]
        level_of[c.key()] = [m.best_level] if m is not None and m.best_level else None
    for c in lineup:
        res.confirm[c.key()] = {"label": c.label or ("finalist" if c in top else ""), "short": c.short(),
                                "candidate": asdict(c), "rounds": []}
    log(f"  re-measuring {len(lineup)} configurations alternately, {rounds} rounds")
    alias_of: dict[str, str] = {}
    if bench.alias_root is not None:  # load the lineup once, side by side; the rounds then never reload
        if bench.loaded:
            bench.unload([bench.loaded])
        for i, c in enumerate(lineup):
            alias = f"tune{i}__{c.variant}"
            why = bench.load_alias(alias, c, bases[c.variant], next(t.dir for t in targets if t.name == c.variant))
            if why:  # e.g. not enough memory for all of them at once: fall back to reloading each time
                log(f"    {alias}: {why}; re-measuring by reloading instead")
                bench.unload(list(alias_of.values()) + [alias])
                alias_of = {}
                break
            alias_of[c.key()] = alias
    for r in range(rounds):
        order = lineup[r % len(lineup):] + lineup[:r % len(lineup)]
        for c in order:
            m = bench.measure(c, bases[c.variant], model_spec, level_of[c.key()], alias=alias_of.get(c.key()))
            if level_of[c.key()] is None and m.best_level:
                level_of[c.key()] = [m.best_level]
            row = m.levels[0] if len(m.levels) == 1 else next(
                (x for x in m.levels if x["concurrency"] == m.best_level), m.levels[0] if m.levels else {})
            res.confirm[c.key()]["rounds"].append({
                "concurrency": row.get("concurrency"), "throughput": row.get("throughput") or 0.0,
                "p99_ms": row.get("p99_ms"), "within": m.score > 0, "error": m.error})
    if alias_of:
        bench.unload(list(alias_of.values()))
    for c in lineup:  # memory: the configuration measured alone in the server (search phase)
        m = results.get(c.key(), (None, None))[1]
        if m is not None and m.memory_mb is not None and settings.max_memory_mb is not None \
                and m.memory_mb > settings.max_memory_mb:
            for x in res.confirm[c.key()]["rounds"]:
                x["within"] = False
    spec_rounds = res.confirm[spec_c.key()]["rounds"]
    for key, entry in res.confirm.items():
        rs = entry["rounds"]
        tps = [x["throughput"] for x in rs]
        entry["throughput_mean"] = sum(tps) / len(tps) if tps else 0.0
        p99s = sorted(x["p99_ms"] for x in rs if x["p99_ms"] is not None)
        entry["p99_median_ms"] = p99s[len(p99s) // 2] if p99s else None
        entry["within_rounds"] = sum(1 for x in rs if x["within"])
        if settings.objective == "latency":  # ratio > 1 is better: spec p99 / this p99
            ratios = [b["p99_ms"] / a["p99_ms"] for a, b in zip(rs, spec_rounds) if a["p99_ms"] and b["p99_ms"]]
        else:
            ratios = [a["throughput"] / b["throughput"] for a, b in zip(rs, spec_rounds)
                      if b["throughput"] > 0 and a["throughput"] > 0]
        g, lo, hi = ratio_interval(ratios)
        entry.update(ratio_vs_spec=g, ci_low=lo, ci_high=hi, ratios=ratios)
        if primary_c is not None:
            prs = res.confirm[primary_c.key()]["rounds"]
            pr = [a["throughput"] / b["throughput"] for a, b in zip(rs, prs) if b["throughput"] > 0 and a["throughput"] > 0]
            g, lo, hi = ratio_interval(pr)
            entry.update(ratio_vs_primary=g, primary_ci_low=lo, primary_ci_high=hi)
    eligible = [(k, e) for k, e in res.confirm.items() if e["within_rounds"] * 2 > rounds]
    if not eligible:
        res.verdict = "no configuration stayed within the constraints in most re-measured rounds"
        res.budget_met = False
        res.seconds = time.time() - t0
        return res
    if settings.objective == "latency":
        win_key, win = min(eligible, key=lambda ke: ke[1]["p99_median_ms"] or float("inf"))
    else:
        win_key, win = max(eligible, key=lambda ke: ke[1]["throughput_mean"])
    res.winner = {**win, "key": win_key}
    what = "1/p99" if settings.objective == "latency" else "throughput"
    if win_key == spec_c.key():
        res.verdict = "the spec's own configuration is the best measured (no better configuration exists in the space)"
    elif win["ci_low"] > 1.0:
        res.verdict = (f"{win['ratio_vs_spec']:.2f}x the spec's {what} (95% interval {win['ci_low']:.2f}-"
                       f"{win['ci_high']:.2f}x over {rounds} alternating rounds)")
    else:
        res.verdict = (f"{win['ratio_vs_spec']:.2f}x the spec's {what}, but not distinguishable from it "
                       f"(95% interval {win['ci_low']:.2f}-{win['ci_high']:.2f}x over {rounds} alternating rounds)")
    if primary_c is not None and settings.objective == "throughput" and win_key != primary_c.key():
        res.verdict += (f"; {win.get('ratio_vs_primary', 0):.2f}x the spec's settings on its primary variant "
                        f"{primary_c.variant} (95% interval {win.get('primary_ci_low', 0):.2f}-"
                        f"{win.get('primary_ci_high', 0):.2f}x)")
    ceil = res.ceilings.get(win["candidate"]["variant"])
    if ceil and settings.objective == "throughput":  # why a small gain may be all there is
        share = win["throughput_mean"] / ceil
        res.verdict += (f"; the winner serves {share:.0%} of its variant's in-process ceiling ({ceil:.1f}/s: the "
                        "runtime alone on every core)" + ("; no configuration can add much on this machine"
                                                          if share >= 0.9 else ""))
    res.seconds = time.time() - t0
    return res


def inprocess_ceilings(spec_path: Path, model_spec, targets, spaces: dict, cores: int, log) -> dict:
    """Each variant's in-process throughput ceiling: its runtime alone, without the server, on one session with
    all ``cores`` threads at batch min(largest max_batch_size searched, 8) (``perf.baseline``: the served
    config's session settings, a fresh interpreter per variant). No served configuration of a variant beats
    its runtime run directly, so a variant whose ceiling is under ``prune`` x the best one's is dropped before
    the server sees it. ``None`` for a variant that cannot run in-process (TensorRT, a failed session)."""
    from .baseline import run_baseline

    out = {}
    for t in targets:
        if t.runtime not in ("onnxruntime", "torchscript", "openvino", "aoti") or t.artifact is None:
            out[t.name] = None
            continue
        mbs = max(spaces[t.name].max_batch_size)
        b = min(mbs, 8) if mbs > 0 else 1
        job = {"spec": str(spec_path), "model": model_spec.name, "kind": t.runtime, "artifact": str(t.artifact),
               "total_threads": cores, "batches": [b], "measurement_s": 0.5, "max_iters": 20}
        t0 = time.time()
        got = run_baseline(job, timeout_s=300)
        rows = got.get("rows") or []
        out[t.name] = rows[0]["throughput"] if rows else None
        log(f"  in-process ceiling {t.name}: " + (f"{out[t.name]:.1f}/s at batch {b}, {cores} threads"
                                                    if rows else f"not measured ({got.get('error', '?')})")
            + f" [{time.time() - t0:.1f} s]")
    return out


def _devices(model_dir: Path) -> tuple[str, ...]:
    try:
        return tuple(json.loads((model_dir / "manifest.json").read_text()).get("devices") or ("cpu", "gpu"))
    except (OSError, ValueError):
        return ("cpu", "gpu")


def primary_variant(model_spec, targets) -> str | None:
    """The Triton name of the variant the spec serves: the ensemble's, else the first listed that was built."""
    names = {t.variant: t.name for t in targets}
    pre = getattr(model_spec.preprocess, "variant", None) if model_spec.preprocess is not None else None
    for key in ([pre] if pre else []) + [v.name for v in model_spec.variants]:
        if key in names:
            return names[key]
    return None


def _base_config(target):
    from generator.validate import parse_config

    p = target.dir / "config.pbtxt"
    cfg, problem = parse_config(p.read_text(), f"{target.name}/config.pbtxt")
    if problem:
        raise UserError(problem)
    return cfg


# --------------------------------------------------------------------------------------------- apply


def apply_to_repository(repo: Path, cand: Candidate, log=print) -> str:
    """Write ``cand`` into ``repo/<variant>/config.pbtxt`` (schema + validator first; atomic; idempotent).

    Returns 'written', 'unchanged' or raises UserError."""
    from generator.validate import check_model_dir, parse_config

    mdir = Path(repo) / cand.variant
    path = mdir / "config.pbtxt"
    if not path.is_file():
        raise UserError(f"--apply: {path} not found; build the repository first")
    old = path.read_text()
    base, problem = parse_config(old, f"{cand.variant}/config.pbtxt")
    if problem:
        raise UserError(problem)
    cfg = apply_candidate(base, dataclasses.replace(cand, label=""))
    head = [ln for ln in old.splitlines() if ln.startswith("#") and "tritongen tune" not in ln]
    header = "\n".join(head + [f"# Settings chosen by tritongen tune: {cand.short()}"])
    text = config_text(cfg, header)
    if text == old:
        return "unchanged"
    problems = check_candidate(cfg, cand.variant)
    if problems:
        raise UserError(f"--apply: the tuned config would be invalid: {problems[0]}")
    tmp = path.with_suffix(".pbtxt.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    rep = check_model_dir(mdir)
    if rep.problems:
        path.write_text(old)
        raise UserError(f"--apply: {rep.problems[0]} (the old config was restored)")
    log(f"applied to {path}")
    return "written"


def spec_snippet(model: str, variant_key: str, cand: Candidate) -> dict:
    triton = {"intra_op_threads": cand.threads}
    if cand.instances is not None:
        triton["instance_group"] = [{"count": cand.instances, "kind": "KIND_CPU"}]
    if cand.queue_delay_us is not None:
        triton["dynamic_batching"] = {"preferred_batch_size": list(cand.preferred),
                                      "max_queue_delay_microseconds": cand.queue_delay_us}
    else:
        triton["dynamic_batching"] = False
    return {"name": model, "max_batch_size": cand.max_batch_size, "preferred_variant": variant_key, "triton": triton}


# --------------------------------------------------------------------------------------------- report


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


# --------------------------------------------------------------------------------------------- driver


def run_tune(spec_path: Path, repo: Path, url: str | None = None, models: list[str] | None = None,
             strategy: str = "quick", objective: str | None = None, latency_budget_ms: float | None = None,
             min_throughput: float | None = None, max_memory_mb: float | None = None, max_configs: int = 16,
             window_s: float = 1.5, warmup_s: float = 0.5, max_requests: int = 1500, rounds: int = 3,
             finalists: int = 2, min_gain: float = 0.05, prune: float = 0.5, max_concurrency: int = 64,
             cores: int | None = None, out: Path | None = None, apply: bool = False,
             apply_to: tuple[Path, ...] = (), install=None, log=print) -> Path:
    """Tune every model (or ``models``) of the spec on ``repo``; returns the run folder."""
    from generator.spec import load_spec

    from .harness import discover

    if strategy not in STRATEGIES:
        raise UserError(f"--strategy {strategy}: not one of {', '.join(STRATEGIES)}")
    if objective is not None and objective not in OBJECTIVES:
        raise UserError(f"--objective {objective}: not one of {', '.join(OBJECTIVES)}")
    for name, v in (("--rounds", rounds), ("--max-configs", max_configs), ("--finalists", finalists)):
        if v < 1:
            raise UserError(f"{name} {v}: must be at least 1")
    t_start = time.time()
    spec_path = Path(spec_path).resolve()
    spec = load_spec(spec_path)
    repo = Path(repo).resolve()
    targets = [t for t in discover(repo, models) if t.gate == "passed"]
    if url is None:  # the embedded server here is CPU-only: GPU-only variants (onnx-fp16, TensorRT) are not searched
        targets = [t for t in targets if "cpu" in _devices(repo / t.name)]
    by_model: dict[str, list] = {}
    for t in targets:
        t.dir = repo / t.name
        by_model.setdefault(t.model, []).append(t)
    settings: dict[str, TuneSettings] = {}
    for name in list(by_model):
        ms = spec.model(name)
        s = parse_tune(ms.raw.get("tune"), f"{ms.where}.tune")
        over = {k: v for k, v in (("objective", objective), ("latency_budget_ms", latency_budget_ms),
                                  ("min_throughput", min_throughput), ("max_memory_mb", max_memory_mb)) if v is not None}
        s = dataclasses.replace(s, **over)
        if s.variants is not None:
            by_model[name] = [t for t in by_model[name] if t.variant in s.variants]
        if not by_model[name]:
            raise UserError(f"{ms.where}.tune.variants: no gate-passed variant of '{name}' in {repo} is in the search "
                            "space; list built variants or remove tune.variants")
        settings[name] = s
    if not by_model:
        raise UserError(f"{repo}: no gate-passed variant to tune; build the repository first")
    cores = cores or cores_available()
    out = Path(out) if out else Path("perf/results") / f"tune-{'-'.join(sorted(by_model))}"
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    cache = Cache(out / "cache.json")
    server = None
    owned = url is None
    if owned:
        from generator.server import TritonServer

        alias_root = out / "ab-aliases"  # a second repository: the A/B finalists loaded side by side
        if alias_root.exists():
            shutil.rmtree(alias_root)
        alias_root.mkdir()
        server = TritonServer(repo, model_control_mode="explicit", expected_models=[], install=install,
                              log_path=out / "tritonserver.log", extra_args=["--model-repository", str(alias_root),
                                          # our configs are complete: no python stub per load to auto-complete them
                                          "--disable-auto-complete-config"])
        log("starting tritonserver (explicit model control)")
        server.start()
        url = server.urls.grpc
    from . import probe

    run = {"run_id": time.strftime("%Y%m%d-%H%M%S"), "strategy": strategy,
           "objective": next(iter(settings.values())).objective,
           "latency_budget_ms": next(iter(settings.values())).latency_budget_ms,
           "server": "embedded tritonserver (started here)" if owned else url,
           "machine": f"{probe.cpu_name()}, {cores} cores", "models": [], "commands": [],
           "measured": 0, "reused": 0, "seconds": 0.0}
    prog = Path(sys.argv[0]).name
    if prog == "tritongen":
        run["commands"].append(" ".join(shlex.quote(a) for a in ["tritongen", *sys.argv[1:]]))
    bench = Bench(url, server, spec, window_s, warmup_s, max_requests, max_concurrency, lambda m: settings[m.name], log)
    if owned:
        bench.alias_root = alias_root

    def inprocess(model_name):  # in-process ceilings are this machine's: not for a remote server
        if not owned:
            return None
        return lambda targets_m, spaces: inprocess_ceilings(spec_path, spec.model(model_name), targets_m, spaces,
                                                            cores, log)
    snippets = []
    try:
        for name, targets_m in by_model.items():
            log(f"tuning {name}: {', '.join(t.name for t in targets_m)}")
            mt = tune_model(bench, cache, spec.model(name), targets_m, settings[name], strategy, max_configs,
                            min_gain, prune, finalists, rounds, cores, log, inprocess=inprocess(name))
            run["models"].append(asdict(mt))
            log(f"{name}: {mt.verdict}")
            if mt.winner:
                cand = Candidate(**mt.winner["candidate"])
                variant_key = next(t.variant for t in targets_m if t.name == cand.variant)
                snippets.append(spec_snippet(name, variant_key, cand))
                if apply:
                    for r in (repo, *apply_to):
                        st = apply_to_repository(Path(r), cand, log)
                        run.setdefault("applied", []).append({"repository": str(r), "variant": cand.variant, "result": st})
    except ServerGone as e:
        run["error"] = str(e)
        raise UserError(f"{e}; {cache.measured} new measurement(s) are kept in {cache.path}; run the same command "
                        "again to resume where it stopped") from None
    finally:
        if server is not None:
            server.stop()
            shutil.rmtree(alias_root, ignore_errors=True)
        run["measured"], run["reused"] = cache.measured, cache.reused
        run["seconds"] = time.time() - t_start
        if run["models"]:
            write_tune_report(run, out)
    if snippets:
        import yaml

        (out / "tuned.yaml").write_text("# tritongen tune: paste these values into your spec's models\n"
                                        + yaml.safe_dump({"models": snippets}, sort_keys=False))
    log(f"report: {out / 'report.md'}")
    return out
