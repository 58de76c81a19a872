"""The search space of ``tritongen tune``: a candidate (one variant at one set of Triton settings), the axes of
one variant's space, its grid and one-step neighbours, and the two fixed points every search compares with
(the spec's own settings, Triton's defaults)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import asdict, dataclass

from generator.tables import backends
from generator.errors import UserError
from generator.spec.tune import TuneSettings

THREAD_KEYS = backends.thread_keys()  # engine -> the config parameter holding per-instance runtime threads
DEFAULT_DELAYS = (0, 500, 2000, 10000, 20000, 50000)
CLIMB_SHARE = 0.8  # quick: variants screened under this share of the best are kept for the report, not climbed


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
    from generator.config.validate import engine_of

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
