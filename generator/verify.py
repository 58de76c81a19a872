"""Stage: compare a variant's outputs with PyTorch's on fresh inputs at every verification point.

Metrics per output: max abs error, max relative error, cosine similarity. A point passes when
``|y - ref| <= atol + rtol * |ref|`` everywhere and cosine >= min_cosine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .inputs import Point, make_inputs, verification_points
from .spec import ModelSpec, Tolerance


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

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def summary(self) -> str:
        if self.error:
            return self.error
        return f"max|Δ| {self.max_abs:.2e}  rel {self.max_rel:.2e}  cos {self.min_cosine:.6f}"


def compare(ref: np.ndarray, got: np.ndarray, tol: Tolerance) -> tuple[float, float, float, bool]:
    if ref.shape != got.shape:
        return float("inf"), float("inf"), 0.0, False
    r = ref.astype(np.float64).ravel()
    g = got.astype(np.float64).ravel()
    if r.size == 0:
        return 0.0, 0.0, 1.0, True
    if not np.all(np.isfinite(g)):
        return float("inf"), float("inf"), 0.0, False
    diff = np.abs(g - r)
    max_abs = float(diff.max())
    max_rel = float((diff / np.maximum(np.abs(r), 1e-6)).max())
    nr, ng = np.linalg.norm(r), np.linalg.norm(g)
    cosine = float(np.dot(r, g) / (nr * ng)) if nr > 0 and ng > 0 else float(nr == ng)
    ok = bool(np.all(diff <= (tol.atol or 0.0) + (tol.rtol or 0.0) * np.abs(r)))
    if tol.min_cosine is not None and cosine < tol.min_cosine:
        ok = False
    return max_abs, max_rel, cosine, ok


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
            result.error = f"runtime error at {point.label}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__}"
            return result
        for t in model.outputs:
            if t.name not in got:
                result.passed = False
                result.error = f"output '{t.name}' missing at {point.label}"
                return result
            max_abs, max_rel, cos, ok = compare(ref[t.name], np.asarray(got[t.name]), tol)
            result.checks.append(asdict(Comparison(point.label, t.name, max_abs, max_rel, cos, ok)))
            result.max_abs = max(result.max_abs, max_abs)
            result.max_rel = max(result.max_rel, max_rel)
            result.min_cosine = min(result.min_cosine, cos)
            result.passed = result.passed and ok
    return result
