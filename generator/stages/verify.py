"""Stage: compare a variant's outputs with PyTorch's on fresh inputs at every verification point.

Metrics per output: max abs error, max relative error, cosine similarity. A point passes when
``|y - ref| <= atol + rtol * |ref|`` everywhere (checked only when atol or rtol is set: INT8 gates leave
both unset) and cosine >= min_cosine. Integer and bool outputs must be exactly equal; a degenerate
reference (every |ref| < 1e-30) is judged on absolute error alone. Each failure names its criterion
(abs/rel, cosine, exact, top-k) with the numbers (``judge``, ``gate_reason``).

Task metrics (when ``verify.task`` is set) over a verification set of ``verify.samples`` inputs (default
64; generator/stages/gate_data.py: verify.data, else the calibration data held out, else random inputs), run in
batches of up to 8. On the first output:
- classification: top-1 agreement with PyTorch (fraction of samples) >= min_top1, and the mean overlap of
  the top-5 sets >= min_top5; and the gate of generator/stages/gate.py (accuracy vs fp32 with labels, agreement where
  fp32 is confident without; ``_task_gate``);
- embedding: the mean per-sample cosine similarity >= min_mean_cosine.
A metric whose threshold is unset is measured and reported but does not gate. PyTorch's outputs on the
verification set are computed once per model and reused by every variant.
"""

from __future__ import annotations

import dataclasses
import weakref
from dataclasses import asdict, dataclass, field

import numpy as np

from generator.errors import UserError, one_line
from generator.loading.inputs import Point, make_inputs, verification_points
from generator.spec import ModelSpec, Tolerance

DEFAULT_TASK_SAMPLES = 64
TASK_BATCH = 8
MIN_TASK_SAMPLES = 32  # below this, one disagreement moves top-1 agreement by more than 3 points


def few_samples_warning(n: int, source: str) -> str:
    return (f"the {source} set has only {n} samples: top-1 agreement moves in steps of {1 / max(n, 1):.3f} and "
            f"says little; give verify.data (an .npz or image folder) with at least {MIN_TASK_SAMPLES} samples")


@dataclass
class Comparison:
    point: str
    output: str
    max_abs: float
    max_rel: float
    cosine: float
    ok: bool


@dataclass
class Verification:
    tolerance: dict
    passed: bool
    max_abs: float = 0.0
    max_rel: float = 0.0
    min_cosine: float = 1.0
    checks: list = field(default_factory=list)
    error: str | None = None
    task: dict | None = None  # task metrics: {task, samples, data, top1, top5, mean_cosine}
    failed: list = field(default_factory=list)  # which gates failed, in words

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def summary(self) -> str:
        if self.error:
            return self.error
        text = f"max|Δ| {self.max_abs:.2e}  rel {self.max_rel:.2e}  cos {self.min_cosine:.6f}"
        if self.task:
            t = self.task
            parts = [f"{k} {t[k]:.4f}" for k in ("top1", "top5", "mean_cosine") if t.get(k) is not None]
            if t.get("accuracy"):
                a = t["accuracy"]["top1"]
                parts.append(f"top-1 accuracy {a['variant']['accuracy']:.4f} vs fp32 {a['fp32']['accuracy']:.4f}")
            elif t.get("confident") is not None and t["data"] != "random":
                ca = t["confident_agreement"]
                parts.append(f"agreement {'-' if ca is None else f'{ca:.4f}'} on {t['confident']} confident")
            text += f"  {t['task']} on {t['samples']} {t['data']} samples: " + "  ".join(parts)
        if self.failed:
            text += "  FAILED: " + " | ".join(self.failed)
        return text


DEGENERATE_REF = 1e-30  # all |ref| below this: cosine and relative error mean nothing
SCALE_FRACTION = 0.1  # the absolute limit is at least rtol x this x max|ref| (the output's scale)
DEGENERATE_ATOL = 1e-6  # the absolute limit for a degenerate reference when the gate sets no atol


def check_reference(model: ModelSpec, outputs: dict, point: Point) -> dict:
    """PyTorch's own answer must be usable as the reference (returned unchanged): a NaN anywhere, or no finite
    value at all, would pass every variant that answers the same garbage. Masked outputs keep their -inf."""
    for i, t in enumerate(model.outputs):
        a = np.asarray(outputs.get(t.name)) if t.name in outputs else None
        if a is None or a.dtype.kind not in "fc" or a.size == 0:
            continue
        nan = int(np.isnan(a).sum())
        if nan or not np.isfinite(a).any():
            what = f"{nan} NaN value(s)" if nan else "no finite value (all ±inf)"
            raise UserError(f"{model.where}.outputs[{i}] '{t.name}': PyTorch's own forward() gives {what} of {a.size} "
                            f"at {point.label} on random normal inputs: nothing to verify against; fix the model or its "
                            "checkpoint (weights_only loads keep the saved values, NaN included)")
    return outputs


def check_references(model: ModelSpec, refs: dict) -> list[str]:
    """``check_reference`` at every point ({Point: outputs}), then warnings for what would make the check blind: a
    float output with one value everywhere (all zeros from a dead head, a constant) passes any variant that answers
    the same, right or wrong."""
    for point, outputs in refs.items():
        check_reference(model, outputs, point)
    warnings = []
    for i, t in enumerate(model.outputs):
        arrays = [np.asarray(o[t.name]) for o in refs.values() if t.name in o]
        values = np.concatenate([a.ravel() for a in arrays if a.dtype.kind in "fc"] or [np.zeros(0)])
        values = values[np.isfinite(values)]
        if values.size > 1 and values.min() == values.max():
            warnings.append(f"{model.where}.outputs[{i}] '{t.name}': PyTorch's forward() gives {values[0]:g} "
                            "everywhere on random inputs, at every verified shape: the element-wise check cannot tell "
                            "a right variant from a wrong one there; check it on real inputs with verify: {task, data}")
    return warnings


def compare(ref: np.ndarray, got: np.ndarray, tol: Tolerance) -> tuple[float, float, float, bool]:
    c = judge(ref, got, tol)
    return c["max_abs"], c["max_rel"], c["cosine"], c["ok"]


def judge(ref: np.ndarray, got: np.ndarray, tol: Tolerance) -> dict:
    """One output at one point: {max_abs, max_rel, cosine, ok, why}; ``why`` names each failed criterion
    with its numbers (empty when ok).

    - shapes must be equal (outputs with ``-1`` dims are checked here: rank and every size);
    - integer and bool outputs must be exactly equal (or agree on ``min_int_agreement`` of their values);
    - a degenerate reference (every |ref| < 1e-30, e.g. denormals) is judged on absolute error alone:
      max|Δ| <= atol (1e-6 when the gate sets none);
    - else abs/rel (``|Δ| <= atol + rtol·|ref|`` everywhere, when atol or rtol is set) and cosine >= min_cosine.
    """
    out = {"max_abs": float("inf"), "max_rel": float("inf"), "cosine": 0.0, "ok": False, "why": ""}
    if ref.shape != got.shape:
        out["why"] = f"shape {list(got.shape)} but PyTorch gives {list(ref.shape)}"
        return out
    r = ref.astype(np.float64).ravel()
    g = got.astype(np.float64).ravel()
    if r.size == 0:
        return {**out, "max_abs": 0.0, "max_rel": 0.0, "cosine": 1.0, "ok": True}
    if not np.all(np.isfinite(g)) and not np.array_equal(np.isfinite(g), np.isfinite(r)):
        out["why"] = f"{int(np.sum(~np.isfinite(g)))} non-finite value(s) where PyTorch's are finite"
        return out
    diff = np.abs(g - r)
    diff = np.where(np.isnan(diff), 0.0, diff)  # inf/nan where PyTorch has the same non-finite value
    max_abs = float(diff.max())
    max_rel = float((diff / np.maximum(np.abs(r), 1e-6)).max())
    nr, ng = np.linalg.norm(r), np.linalg.norm(g)
    cosine = float(np.dot(r, g) / (nr * ng)) if nr > 0 and ng > 0 and np.isfinite(nr * ng) else float(nr == ng)
    out.update(max_abs=max_abs, max_rel=max_rel, cosine=cosine)
    why = []
    exact = ref.dtype.kind in "biu" or got.dtype.kind in "biu"
    ref_max = float(np.max(np.abs(r[np.isfinite(r)]))) if np.any(np.isfinite(r)) else 0.0
    if exact:
        wrong = int(np.sum(g != r))
        need = tol.min_int_agreement if tol.min_int_agreement is not None else 1.0
        if wrong and need >= 1.0:
            why.append(f"exact ({ref.dtype.name} output): {wrong} of {r.size} values differ (max|Δ| {max_abs:.3g}); "
                       "indices picked from floats (argmax, top-k) may move in a lossy variant: verify.min_int_agreement")
        elif 1.0 - wrong / r.size < need:
            why.append(f"agreement ({ref.dtype.name} output): {1.0 - wrong / r.size:.4f} of values equal PyTorch's "
                       f"< min_int_agreement {need:g} ({wrong} of {r.size} differ, max|Δ| {max_abs:.3g})")
    elif ref_max < DEGENERATE_REF:
        limit = tol.atol if tol.atol is not None else DEGENERATE_ATOL
        if max_abs > limit:
            why.append(f"abs (degenerate reference: max|ref| {ref_max:.1e} < {DEGENERATE_REF:.0e}, judged on absolute "
                       f"error alone): max|Δ| {max_abs:.2e} > {limit:g}")
    else:
        if tol.atol is not None or tol.rtol is not None:
            a, rt = tol.atol or 0.0, tol.rtol or 0.0
            # float rounding grows with the magnitudes a value is summed from, not with the value: an element near
            # zero in a large output is held to the output's scale (rtol/10 of max|ref|), never tighter than atol
            floor = rt * SCALE_FRACTION * ref_max
            a_eff = max(a, floor)
            over = diff - (a_eff + rt * np.abs(r))
            if np.any(over > 0):
                k = int(np.argmax(over))
                scale = f" (rtol/{1 / SCALE_FRACTION:g}·max|ref| {ref_max:.2e})" if floor > a else ""
                why.append(f"abs/rel: {int(np.sum(over > 0))} of {r.size} values over atol {a_eff:g}{scale} + rtol "
                           f"{rt:g}·|ref| (worst |Δ| {diff[k]:.2e} at |ref| {abs(r[k]):.2e}; max|Δ| {max_abs:.2e}, "
                           f"max rel {max_rel:.2e})")
        if tol.min_cosine is not None and cosine < tol.min_cosine:
            why.append(f"cosine {cosine:.6f} < min_cosine {tol.min_cosine}")
    out["ok"] = not why
    out["why"] = "; ".join(why)
    return out


def verify(run, reference, model: ModelSpec, tol: Tolerance, points: list[Point] | None = None,
           seed: int = 1234) -> Verification:
    """``run`` and ``reference`` map feeds -> {output: ndarray}. Fresh inputs, one seed per point."""
    result = Verification(tolerance=asdict(tol), passed=True)
    for k, point in enumerate(points or verification_points(model)):
        feeds = make_inputs(model, point, seed=seed + k)
        ref = reference(feeds, point)
        try:
            got = run(feeds)
        except Exception as e:
            result.passed = False
            result.error = f"runtime error at {point.label}: {one_line(e)}"
            return result
        for t in model.outputs:
            if t.name not in got:
                result.passed = False
                result.error = f"output '{t.name}' missing at {point.label}"
                return result
            c = judge(ref[t.name], np.asarray(got[t.name]), tol)
            max_abs, max_rel, cos, ok = c["max_abs"], c["max_rel"], c["cosine"], c["ok"]
            result.checks.append(asdict(Comparison(point.label, t.name, max_abs, max_rel, cos, ok)))
            result.max_abs = max(result.max_abs, max_abs)
            result.max_rel = max(result.max_rel, max_rel)
            result.min_cosine = min(result.min_cosine, cos)
            result.passed = result.passed and ok
            if not ok:
                result.failed.append(f"{t.name} at {point.label}: {c['why']}")
    if tol.task in ("classification", "embedding"):
        try:
            result.task = task_metrics(run, reference, model, tol)
        except UserError:  # a bad verify.data / calibration.data file: the user's to fix, not the variant's
            raise
        except Exception as e:
            result.passed = False
            result.error = f"runtime error on the {tol.task} verification set: {one_line(e)}"
            return result
        for metric, limit in (("top1", tol.min_top1), ("top5", tol.min_top5), ("mean_cosine", tol.min_mean_cosine)):
            value = result.task.get(metric)
            if value is not None and limit is not None and value < limit:
                result.passed = False
                result.failed.append(f"{_METRIC_WORDS[metric]} {value:.4f} < min_{metric} {limit}")
        _task_gate(result, tol)
    return result


def _task_gate(result: Verification, tol: Tolerance) -> None:
    """The classification gate of generator/stages/gate.py (accuracy with labels, confident agreement without); an
    empty verification set with a task threshold set is undecided."""
    from generator.stages import gate

    task = result.task
    wanted = any(x is not None for x in (tol.min_top1, tol.min_top5, tol.min_mean_cosine, tol.accuracy_ratio,
                                         tol.min_confident_agreement))
    if task["samples"] == 0:
        if wanted and task["data"] != "random":
            result.passed = False
            result.error = "gate undecided: " + "; ".join(task.get("notes") or ["no verification samples"])
        return
    if tol.task != "classification":
        return
    failed, undecided = gate.judge(task, tol, task["data"])
    if undecided:
        result.passed = False
        result.error = undecided
    elif failed:
        result.passed = False
        result.failed.extend(failed)


_METRIC_WORDS = {"top1": "top-k: top1 agreement", "top5": "top-k: top5 overlap", "mean_cosine": "mean cosine"}


def gate_reason(v: Verification, export_note: str = "") -> str:
    """Why a variant failed its gate, in one line: each failed criterion with its numbers. ``export_note``: what
    the export or trace left behind (dynamo fixed a dynamic dim; forward() branched on a tensor's value), named as
    the likely cause of a runtime error or of wrong numbers."""
    cause = f" (likely cause: {export_note})" if export_note else ""
    if v.error:
        return f"gate not reached: {v.error}{cause if v.error.startswith('runtime error') else ''}"
    if not v.failed:
        return f"gate failed ({v.summary}){cause}"
    more = f" (+{len(v.failed) - 3} more)" if len(v.failed) > 3 else ""
    return "gate failed: " + " | ".join(v.failed[:3]) + more + cause


# --------------------------------------------------------------------------- task metrics

_REFERENCES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def task_set(model: ModelSpec, n: int, seed: int = 4321, data=None, tol: Tolerance | None = None):
    """``n`` verification samples (batch 1 each) and where they came from (generator/stages/gate_data.py)."""
    vs = _verification_set(model, n, data, tol, seed)
    return vs.samples, vs.source


def _verification_set(model: ModelSpec, n: int, data, tol: Tolerance | None, seed: int = 4321):
    from generator.stages.gate_data import verification_set

    return verification_set(model, n, data=data, labels_file=getattr(tol, "labels", None),
                            reuse_calibration=bool(getattr(tol, "reuse_calibration", False)), seed=seed)


def _batches(model: ModelSpec, samples: list[dict]) -> list[tuple[dict, Point]]:
    """Consecutive samples of equal shapes concatenated into batches of up to TASK_BATCH."""
    if model.max_batch_size <= 0:
        return [(s, Point(0, ())) for s in samples]
    size = max(1, min(TASK_BATCH, model.max_batch_size))
    out, group = [], []

    def flush():
        if group:
            feeds = {k: np.concatenate([g[k] for g in group]) for k in group[0]}
            dims = {}
            for t in model.inputs:
                for d, v in zip(t.shape, feeds[t.name].shape[1:]):
                    if isinstance(d, str):
                        dims[d] = v
            out.append((feeds, Point(len(group), tuple(sorted(dims.items())))))
            group.clear()

    for s in samples:
        if group and (len(group) == size or any(s[k].shape != group[0][k].shape for k in s)):
            flush()
        group.append(s)
    flush()
    return out


def _reference_outputs(reference, model: ModelSpec, n: int, data=None, tol: Tolerance | None = None):
    """(batches, PyTorch outputs, verification set), computed once per reference owner (one per model build)."""
    key = (model.name, n, str(model.calibration.data), model.calibration.samples, str(data),
           str(getattr(tol, "labels", None)), bool(getattr(tol, "reuse_calibration", False)))
    owner = getattr(reference, "__self__", reference)
    try:
        store = _REFERENCES.setdefault(owner, {})
    except TypeError:
        store = {}
    if key not in store:
        vs = _verification_set(model, n, data, tol)
        batches = _batches(model, vs.samples)
        store[key] = (batches, [reference(feeds, point) for feeds, point in batches], vs)
    return store[key]


def task_metrics(run, reference, model: ModelSpec, tol: Tolerance) -> dict:
    n = tol.samples or DEFAULT_TASK_SAMPLES
    batches, refs, vs = _reference_outputs(reference, model, n, getattr(tol, "data", None), tol)
    source = vs.source
    name = model.outputs[0].name
    if not batches:
        return {"task": tol.task, "samples": 0, "data": source, "output": name, "notes": vs.notes}
    ref = np.concatenate([r[name].reshape(len(r[name]) if p.batch else 1, -1) for (_, p), r in zip(batches, refs)])
    got = np.concatenate([np.asarray(run(feeds)[name]).reshape(len(ref_b[name]) if p.batch else 1, -1)
                          for (feeds, p), ref_b in zip(batches, refs)]).astype(np.float64)
    ref = ref.astype(np.float64)
    out = {"task": tol.task, "samples": int(ref.shape[0]), "data": source, "output": name}
    if vs.notes:
        out["notes"] = vs.notes
    if out["samples"] < MIN_TASK_SAMPLES:
        out["warning"] = few_samples_warning(out["samples"], source)
    if tol.task == "classification":
        from generator.stages import gate

        k = min(5, ref.shape[1])
        out["top1"] = float(np.mean(ref.argmax(1) == got.argmax(1)))
        top_r = np.argsort(-ref, axis=1)[:, :k]
        top_g = np.argsort(-got, axis=1)[:, :k]
        out["top5"] = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(top_r, top_g)]))
        out.update(gate.classification(ref, got, vs.labels, tol.confidence if tol.confidence is not None
                                       else gate.CONFIDENCE))
    # per-sample cosine for classification too: unlike top-1 agreement, near-tied logits do not make it noise
    num = np.sum(ref * got, axis=1)
    nr, ng = np.linalg.norm(ref, axis=1), np.linalg.norm(got, axis=1)
    den = nr * ng  # a sample where one side is all zeros scores 0 (both: 1), not a perfect 1
    cos = np.where(den > 0, num / np.where(den > 0, den, 1.0), (nr == ng).astype(np.float64))
    out["mean_cosine"] = float(np.mean(cos))
    return out


def gate_metrics(v: Verification) -> dict:
    """The numbers a gate was judged on, rounded for manifests and logs (INT8 recipe attempts)."""
    m = {"min_cosine": round(v.min_cosine, 6)}
    for k in ("top1", "top5", "mean_cosine", "confident", "confident_agreement"):
        if v.task and v.task.get(k) is not None:
            m[k] = round(v.task[k], 4)
    acc = (v.task or {}).get("accuracy")
    if acc:
        m["samples"] = acc["samples"]
        for k in ("top1", "top5"):
            m[f"fp32_{k}_accuracy"] = acc[k]["fp32"]["accuracy"]
            m[f"{k}_accuracy"] = acc[k]["variant"]["accuracy"]
    return m
