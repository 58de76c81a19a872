"""The classification gate's metrics (issue 21): accuracy against labels, agreement where fp32 is sure.

Three regimes, chosen by the verification set (generator/stages/gate_data.py):
- **labelled** (``verify.data`` with labels): top-1 and top-5 accuracy of the variant and of PyTorch fp32 on
  the same samples, each with its Wilson 95% interval (scipy.stats.binomtest); the gate is MLPerf
  Inference's rule, variant accuracy >= ``accuracy_ratio`` x fp32 accuracy (top-1 and top-5);
- **real, unlabelled** (verify.data or held-out calibration samples): top-1 agreement with fp32 on the
  samples where fp32 is confident (its top-1 softmax probability >= ``confidence``), >= ``min_confident_agreement``;
  with fewer than ``min_confident_samples`` confident samples the gate refuses to decide (the variant fails
  with one line saying what data to give) instead of passing on near-ties;
- **random inputs**: neither -- only the output cosine of the verification points gates (a catastrophe check:
  random inputs are far from what a calibrated model saw), and the task dict says so.

Every number is reported whether or not it gates.
"""

from __future__ import annotations

import numpy as np

CONFIDENCE = 0.5  # fp32 top-1 probability above one half: no other class can be as likely
MIN_CONFIDENT_SAMPLES = 32
CATASTROPHE = "random inputs: output cosine only (a catastrophe check; give verify.data for a real gate)"


def wilson(k: int, n: int) -> list[float]:
    """95% Wilson score interval of k successes in n trials ([0, 1] when n is 0)."""
    if n == 0:
        return [0.0, 1.0]
    from scipy.stats import binomtest

    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=0.95, method="wilson")
    return [round(float(ci.low), 4), round(float(ci.high), 4)]


def probabilities(logits: np.ndarray) -> np.ndarray:
    """Softmax per row, unless the rows already are probabilities (non-negative, summing to 1)."""
    x = np.asarray(logits, np.float64)
    if np.all(x >= 0) and np.allclose(x.sum(1), 1.0, atol=1e-3):
        return x
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _topk(x: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-x, axis=1, kind="stable")[:, :k]


def accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> tuple[int, int]:
    """(correct, n): samples whose label is among the top-k."""
    top = _topk(logits, k)
    return int(np.sum(np.any(top == labels[:, None], axis=1))), int(len(labels))


def _acc_entry(correct: int, n: int) -> dict:
    return {"correct": correct, "accuracy": round(correct / n, 4) if n else 0.0, "ci95": wilson(correct, n)}


def classification(ref: np.ndarray, got: np.ndarray, labels: np.ndarray | None, confidence: float) -> dict:
    """Gate numbers for one variant (``got``) vs PyTorch fp32 (``ref``), logits (N, classes)."""
    n = int(ref.shape[0])
    k = min(5, ref.shape[1])
    p = probabilities(ref)
    top_p = np.sort(p, axis=1)[:, ::-1]
    conf = top_p[:, 0] >= confidence
    agree = ref.argmax(1) == got.argmax(1)
    nc, ka = int(conf.sum()), int(agree[conf].sum())
    out = {
        "confidence": confidence,
        "confident": nc,
        "confident_agreement": round(ka / nc, 4) if nc else None,
        "confident_agreement_ci95": wilson(ka, nc),
        "fp32_median_confidence": round(float(np.median(top_p[:, 0])), 4) if n else None,
        "fp32_median_margin": round(float(np.median(top_p[:, 0] - top_p[:, 1])), 4) if n and p.shape[1] > 1 else None,
    }
    if labels is not None:
        acc = {"samples": n}
        for name, kk in (("top1", 1), ("top5", k)):
            acc[name] = {"fp32": _acc_entry(*accuracy(ref, labels, kk)), "variant": _acc_entry(*accuracy(got, labels, kk))}
        out["accuracy"] = acc
    return out


def judge(task: dict, tol, source: str) -> tuple[list[str], str | None]:
    """(failed criteria, undecided reason) of a classification task dict under ``tol``."""
    failed: list[str] = []
    if source == "random":
        task["gate"] = CATASTROPHE
        return failed, None
    acc = task.get("accuracy")
    ratio = tol.accuracy_ratio
    if acc is not None and ratio is not None:
        task["gate"] = f"accuracy >= {ratio} x fp32's on {acc['samples']} labelled samples"
        for name in ("top1", "top5"):
            f, v = acc[name]["fp32"], acc[name]["variant"]
            need = ratio * f["correct"]
            acc[name]["ratio"] = round(v["correct"] / f["correct"], 4) if f["correct"] else None
            if v["correct"] < need - 1e-9:
                failed.append(f"accuracy: {name} {v['accuracy']:.4f} ({v['correct']}/{acc['samples']}) < {ratio} x fp32's "
                              f"{f['accuracy']:.4f} ({f['correct']}/{acc['samples']})")
        return failed, None
    limit = tol.min_confident_agreement
    if limit is None:
        return failed, None
    need = tol.min_confident_samples or MIN_CONFIDENT_SAMPLES
    task["gate"] = (f"top-1 agreement >= {limit} on the samples where fp32's top-1 probability >= "
                    f"{task['confidence']} (at least {need})")
    if task["confident"] < need:
        return failed, (f"gate undecided: fp32 is confident (top-1 probability >= {task['confidence']}) on only "
                        f"{task['confident']} of {task['samples']} {source} samples, {need} needed; give verify.data "
                        "with labels (an image folder with one sub-folder per class index, or an .npz with a "
                        "'labels' array) or more real samples the model is sure of")
    if task["confident_agreement"] < limit:
        failed.append(f"confident agreement: top-1 agreement {task['confident_agreement']:.4f} on the "
                      f"{task['confident']} confident samples < min_confident_agreement {limit}")
    return failed, None


def score(task: dict | None, min_cosine: float) -> float:
    """How well an INT8 attempt did on the gate's own metric (higher is better), to rank failed recipes."""
    if not task:
        return min_cosine
    acc = task.get("accuracy")
    if acc and acc["top1"]["fp32"]["correct"]:
        return acc["top1"]["variant"]["correct"] / acc["top1"]["fp32"]["correct"]
    if task.get("confident_agreement") is not None:
        return task["confident_agreement"]
    return task.get("top1", task.get("mean_cosine", min_cosine)) or 0.0
