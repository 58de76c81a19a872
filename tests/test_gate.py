"""The classification gate (issue 21) on a tiny 3-class model whose outputs are known exactly: labelled
accuracy against fp32 (MLPerf's ratio, with intervals), confident agreement without labels (and refusing to
decide on too few confident samples), the random-input catastrophe check, and a verification set kept apart
from the calibration samples."""

from __future__ import annotations

import numpy as np
import pytest

from generator.stages import gate
from generator.errors import UserError
from generator.spec import Tolerance, load_spec
from generator.variants import REGISTRY
from generator.stages.verify import verify
from specs import linear_model, write_spec

INT8_REAL = Tolerance(min_cosine=0.0, task="classification", accuracy_ratio=0.99, min_confident_agreement=0.97,
                      confidence=0.5, min_confident_samples=32)


def _model(workdir, **over):
    return load_spec(write_spec(workdir, {"models": [linear_model(**over)]})).models[0]


def _reference(feeds, point):
    x = feeds["x"].astype(np.float64)
    return {"y": np.stack([x.sum(1), x[:, 0], -x[:, 1]], 1).astype(np.float32)}


def _exact(feeds):
    return _reference(feeds, None)


def _swapped(feeds):  # classes 0 and 1 exchanged: wrong wherever one of them wins
    return {"y": _reference(feeds, None)["y"][:, [1, 0, 2]]}


def _data(n, scale, seed=0):
    return (np.random.default_rng(seed).standard_normal((n, 4)) * scale).astype(np.float32)


def _labels_of(x):
    return _reference({"x": x}, None)["y"].argmax(1)


def test_labelled_gate_is_accuracy_against_fp32_with_intervals(workdir):
    x = _data(64, 1.0)
    labels = _labels_of(x)
    labels[:6] = (labels[:6] + 1) % 3  # fp32 is wrong on 6 of 64: its accuracy is 58/64
    np.savez(workdir / "val.npz", x=x, labels=labels)
    m = _model(workdir, verify={"task": "classification", "data": "val.npz"})
    tol = m.verify.over(INT8_REAL)
    v = verify(_exact, _reference, m, tol)
    acc = v.task["accuracy"]
    assert v.passed and acc["samples"] == 64 and acc["top1"]["fp32"]["correct"] == 58
    assert acc["top1"]["variant"] == acc["top1"]["fp32"] and acc["top1"]["ratio"] == 1.0
    lo, hi = acc["top1"]["fp32"]["ci95"]
    assert lo < 58 / 64 < hi and hi - lo > 0.1  # Wilson interval of 58/64
    assert "labelled" in v.task["gate"]
    v = verify(_swapped, _reference, m, tol)
    assert not v.passed and v.failed[0].startswith("accuracy: top1")
    assert v.task["accuracy"]["top1"]["variant"]["correct"] < 0.99 * 58


def test_accuracy_ratio_is_configurable(workdir):
    x = _data(40, 1.0)
    np.savez(workdir / "val.npz", x=x, labels=_labels_of(x))

    def one_wrong(feeds):
        y = _reference(feeds, None)["y"].copy()
        if feeds["x"][0, 0] == x[0, 0]:
            y[0] = y[0][[1, 2, 0]] if y[0].argmax() != 1 else y[0][[1, 0, 2]]
        return {"y": y}

    m = _model(workdir, verify={"task": "classification", "data": "val.npz", "samples": 40})
    assert not verify(one_wrong, _reference, m, m.verify.over(INT8_REAL)).passed  # 39/40 < 0.99 x 40/40
    m = _model(workdir, verify={"task": "classification", "data": "val.npz", "samples": 40, "accuracy_ratio": 0.95})
    v = verify(one_wrong, _reference, m, m.verify.over(INT8_REAL))
    assert v.passed and v.task["accuracy"]["top1"]["variant"]["correct"] == 39


def test_image_folder_with_class_subfolders_and_labels_file(workdir):
    from PIL import Image

    from generator.stages.gate_data import verification_set
    from specs import cnn_model

    rng = np.random.default_rng(0)
    for cls, names in (("3_cat", ["b.png", "a.png"]), ("7", ["c.png"])):
        (workdir / "val" / cls).mkdir(parents=True)
        for n in names:
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(workdir / "val" / cls / n)
    over = {"inputs": [{"name": "images", "dtype": "float32", "shape": [3, 16, 16]}],
            "preprocess": {"image": {"size": [16, 16]}}, "verify": {"task": "classification", "data": "val"}}
    m = load_spec(write_spec(workdir, {"models": [cnn_model(**over)]})).models[0]
    vs = verification_set(m, 8, data=m.verify.data)
    assert vs.source == "verify.data" and len(vs.samples) == 3 and vs.labels.tolist() == [3, 3, 7]
    from generator.loading.preprocess import preprocess_image

    want = preprocess_image((workdir / "val" / "3_cat" / "a.png").read_bytes(), (16, 16))
    np.testing.assert_array_equal(vs.samples[0]["images"][0], want)  # sorted: 3_cat/a.png first
    (workdir / "labels.txt").write_text("1\n2\n9\n")
    vs = verification_set(m, 8, data=m.verify.data, labels_file=workdir / "labels.txt")
    assert vs.labels.tolist() == [1, 2, 9]
    (workdir / "val" / "dog").mkdir()
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(workdir / "val" / "dog" / "d.png")
    with pytest.raises(UserError, match=r"verify\.data: sub-folder 'dog' does not start with a class index") as e:
        verification_set(m, 8, data=m.verify.data)
    assert "\n" not in str(e.value)


def test_label_outside_the_classes_is_a_one_line_error(workdir):
    np.savez(workdir / "val.npz", x=_data(4, 1.0), labels=np.array([0, 1, 2, 3]))
    m = _model(workdir, verify={"task": "classification", "data": "val.npz"})
    with pytest.raises(UserError, match=r"models\[0\]\.verify\.data: label 3 is outside the 3 classes"):
        verify(_exact, _reference, m, m.verify.over(INT8_REAL))


def test_without_labels_agreement_counts_only_where_fp32_is_confident(workdir):
    # 40 confident samples (large logits) and 40 near-ties (tiny logits) on which the variant is wrong
    x = np.concatenate([_data(40, 10.0, seed=1), _data(40, 1e-3, seed=2)])
    np.savez(workdir / "val.npz", x=x)
    m = _model(workdir, verify={"task": "classification", "data": "val.npz", "samples": 80})

    def wrong_on_ties(feeds):
        y = _reference(feeds, None)["y"]
        return {"y": np.where(np.abs(feeds["x"]).max(1, keepdims=True) < 0.1, y[:, [1, 2, 0]], y)}

    v = verify(wrong_on_ties, _reference, m, m.verify.over(INT8_REAL))
    t = v.task
    assert v.passed and t["confident"] >= 32 and t["confident"] <= 40 and t["confident_agreement"] == 1.0
    assert t["top1"] < 0.6  # plain agreement would have failed on the near-ties
    assert "accuracy" not in t and "where fp32's top-1 probability >= 0.5" in t["gate"]
    v = verify(_swapped, _reference, m, m.verify.over(INT8_REAL))
    assert not v.passed and "confident agreement" in v.failed[0]


def test_too_few_confident_samples_the_gate_refuses_to_decide(workdir):
    np.savez(workdir / "val.npz", x=_data(64, 1e-3))  # every sample a near-tie
    m = _model(workdir, verify={"task": "classification", "data": "val.npz"})
    v = verify(_exact, _reference, m, m.verify.over(INT8_REAL))
    assert not v.passed and v.task["confident"] == 0
    assert v.error.startswith("gate undecided:") and "give verify.data with labels" in v.error
    assert "\n" not in v.error
    m = _model(workdir, verify={"task": "classification", "data": "val.npz", "confidence": 0.3})
    assert verify(_exact, _reference, m, m.verify.over(INT8_REAL)).passed  # 1/3 + a bit: all confident


def test_random_inputs_are_only_the_catastrophe_check(workdir):
    m = _model(workdir, verify={"task": "classification"})
    tol = REGISTRY["onnx-int8"].tolerance_for(m, m.variants[0])
    assert tol.min_cosine == 0.98 and tol.min_confident_agreement is None and tol.accuracy_ratio is None
    v = verify(_swapped, _reference, m, tol)  # a wrong head: the output cosine catches it, not the task
    assert not v.passed and v.failed and all("cosine" in f for f in v.failed)
    assert v.task["data"] == "random" and v.task["gate"] == gate.CATASTROPHE
    assert verify(_exact, _reference, m, tol).passed


def test_a_sample_answered_with_zeros_scores_cosine_zero_not_one(workdir):
    """The per-sample cosine of a variant that answers all zeros where PyTorch does not is 0 (it was 1: a zero
    norm counted as a perfect match), and the embedding gate fails it."""
    m = _model(workdir, verify={"task": "embedding", "min_mean_cosine": 0.9})

    def half_dead(feeds):
        y = _reference(feeds, None)["y"]
        y[::2] = 0.0
        return {"y": y}

    tol = m.verify.over(Tolerance(min_cosine=0.0))
    v = verify(half_dead, _reference, m, tol)
    assert v.task["mean_cosine"] == pytest.approx(0.5, abs=0.07)  # half the samples 1, half 0
    assert not v.passed and any("mean cosine" in f for f in v.failed)


def test_int8_defaults_are_mlperf_ratio_and_confident_agreement(workdir):
    np.savez(workdir / "cal.npz", x=_data(40, 1.0))
    m = _model(workdir, calibration={"data": "cal.npz"}, verify={"task": "classification"})
    for key in ("onnx-int8", "onnx-int8-dynamic", "openvino-int8"):
        tol = REGISTRY[key].tolerance_for(m, m.variants[0])
        assert (tol.accuracy_ratio, tol.min_confident_agreement, tol.confidence, tol.min_confident_samples) == \
            (0.99, 0.97, 0.5, 32)
        assert tol.min_top1 is None and tol.min_top5 is None


def test_calibration_only_is_split_disjoint_unless_reuse_is_asked(workdir):
    x = _data(40, 10.0)
    np.savez(workdir / "cal.npz", x=x)
    m = _model(workdir, calibration={"data": "cal.npz", "samples": 8}, verify={"task": "classification"})
    v = verify(_exact, _reference, m, m.verify.over(Tolerance(min_cosine=0.0)))
    assert v.task["data"] == "calibration-held-out" and v.task["samples"] == 32  # samples 8..39
    from generator.stages.gate_data import verification_set

    held = verification_set(m, 64)
    assert np.array_equal(held.samples[0]["x"][0], x[8])
    reused = verification_set(m, 64, reuse_calibration=True)
    assert reused.source == "calibration-reused" and np.array_equal(reused.samples[0]["x"][0], x[0])
    m = _model(workdir, calibration={"data": "cal.npz", "samples": 40}, verify={"task": "classification"})
    v = verify(_exact, _reference, m, m.verify.over(INT8_REAL))
    assert not v.passed and v.task["samples"] == 0
    assert v.error.startswith("gate undecided:") and "calibration uses them all" in v.error


def test_verify_data_never_reuses_calibration_samples(workdir):
    x = _data(40, 10.0)
    np.savez(workdir / "cal.npz", x=x[:10])
    np.savez(workdir / "val.npz", x=x[5:], labels=_labels_of(x[5:]))  # 5 samples in both
    m = _model(workdir, calibration={"data": "cal.npz"}, verify={"task": "classification", "data": "val.npz"})
    v = verify(_exact, _reference, m, m.verify.over(INT8_REAL))
    assert v.task["samples"] == 30 and "5 of verify.data's samples are also calibration samples" in v.task["notes"][0]
    assert v.task["accuracy"]["samples"] == 30
    m = _model(workdir, calibration={"data": "cal.npz"},
               verify={"task": "classification", "data": "val.npz", "reuse_calibration": True})
    assert verify(_exact, _reference, m, m.verify.over(INT8_REAL)).task["samples"] == 35


@pytest.mark.parametrize("verify_, message", [
    ({"accuracy_ratio": 1.5}, r"verify\.accuracy_ratio: 1\.5 is above 1"),
    ({"accuracy_ratio": 0}, r"verify\.accuracy_ratio: must be above 0"),
    ({"min_confident_samples": 0}, r"verify\.min_confident_samples: must be >= 1"),
    ({"reuse_calibration": "yes"}, r"verify\.reuse_calibration: expected true or false"),
    ({"confidence": -1}, r"verify\.confidence: expected a finite non-negative number"),
    ({"atol": float("nan")}, r"verify\.atol: expected a finite non-negative number, got nan"),  # would pass all
    ({"rtol": "nan"}, r"verify\.rtol: expected a finite non-negative number"),
])
def test_gate_keys_are_checked(workdir, verify_, message):
    with pytest.raises(UserError, match=message):
        _model(workdir, verify=verify_)


def test_wilson_interval_and_softmax():
    lo, hi = gate.wilson(58, 64)
    assert 0.80 < lo < 58 / 64 < hi < 0.96
    assert gate.wilson(0, 0) == [0.0, 1.0]
    p = gate.probabilities(np.array([[0.0, 0.0, np.log(2.0)]]))
    np.testing.assert_allclose(p, [[0.25, 0.25, 0.5]])
    probs = np.array([[0.2, 0.8]])
    np.testing.assert_array_equal(gate.probabilities(probs), probs)  # already probabilities: kept
