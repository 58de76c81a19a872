"""No traceback for a user's problem (issue 14 item 5): errors in the user's factory, imports and forward()
are one line naming the model, the callable, the exception and the user's file:line; a spec that is not
UTF-8 is one line; a variant stage that raises something unexpected fails that variant only (exit 3), with
the traceback in its build.log."""

from __future__ import annotations

import subprocess
import sys

import pytest

from generator.errors import UserError
from generator.build.pipeline import build
from generator.spec import load_spec
from specs import linear_model, write_spec

NET = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        if x.shape[-1] != 4:
            raise ValueError("wants 4 features")  # line 14
        return self.fc(x)


class Lambdas(Net):
    def forward(self, x):
        double = lambda t: t * 2  # noqa: E731 -- TorchScript cannot script a lambda
        return double(self.fc(x))
'''

FACTORIES = '''
def late_import():
    from mynet_TAG import Net  # a sibling module, imported inside the function

    return Net()


def explodes():
    raise RuntimeError("no weights for you")  # line 9


def lambdas():
    from mynet_TAG import Lambdas

    return Lambdas()
'''


def _tag(workdir) -> str:  # module names unique per test: Python caches imported modules by name
    return "".join(c if c.isalnum() else "_" for c in workdir.name)


def _write(workdir, model):
    (workdir / f"mynet_{_tag(workdir)}.py").write_text(NET)
    (workdir / f"factories_{_tag(workdir)}.py").write_text(FACTORIES.replace("TAG", _tag(workdir)))
    model["source"]["factory"] = model["source"]["factory"].replace("TAG", _tag(workdir))
    return write_spec(workdir, {"models": [model]})


def _model(factory, **over):
    return linear_model(name="m", source={"factory": f"factories_TAG:{factory}"}, **over)


def _error(workdir, model) -> str:
    spec = load_spec(_write(workdir, model))
    with pytest.raises(UserError) as e:
        build(spec, workdir / "model_repository", workdir / "build")
    assert "\n" not in str(e.value)
    return str(e.value)


@pytest.mark.slow
def test_factory_imports_a_sibling_module_inside_the_function(workdir):
    spec = load_spec(_write(workdir, _model("late_import")))
    assert build(spec, workdir / "model_repository", workdir / "build").results[0].status == "built"


def test_factory_that_raises_names_model_callable_exception_and_line(workdir):
    msg = _error(workdir, _model("explodes"))
    t = _tag(workdir)
    assert msg.startswith(f"models[0].source.factory: model 'm': factories_{t}:explodes raised RuntimeError: "
                          f"no weights for you (at factories_{t}.py:9)"), msg


def test_forward_that_raises_names_the_users_line(workdir):
    msg = _error(workdir, _model("late_import", inputs=[{"name": "x", "dtype": "float32", "shape": [5]}]))
    assert "forward() failed on the declared inputs (x[1, 5]:float32): ValueError: wants 4 features " \
           f"(at mynet_{_tag(workdir)}.py:14)" in msg, msg


def test_spec_that_is_not_utf8_is_one_line(workdir):
    p = workdir / "spec.yaml"
    p.write_bytes(b"models:\n  - name: caf\xe9\n")
    r = subprocess.run([sys.executable, "-m", "generator.cli", "build", str(p), "-o", str(workdir / "out")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr + r.stdout
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "spec.yaml:2: not UTF-8 text (byte 0xe9 at offset 21)" in lines[0], r.stderr


@pytest.mark.slow
def test_a_variant_stage_that_raises_fails_that_variant_only(workdir):
    p = _write(workdir, _model("lambdas", variants=["onnx", {"name": "torchscript", "options": {"method": "script"}}]))
    r = subprocess.run([sys.executable, "-m", "generator.cli", "build", str(p), "-o", str(workdir / "out"),
                        "--build-dir", str(workdir / "build")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert (workdir / "out" / "m__onnx" / "1" / "model.onnx").is_file()
    assert not (workdir / "out" / "m__torchscript").exists()
    assert "m/torchscript failed: torchscript stage raised" in " ".join(r.stdout.split())
    log = (workdir / "build" / "m" / "torchscript" / "build.log").read_text()
    assert "Traceback (most recent call last)" in log and "torch.jit.script" in log
