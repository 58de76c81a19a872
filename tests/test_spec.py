"""The spec is a public contract: valid specs parse to the documented values, and every bad input
gives one UserError naming the field path and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from generator.errors import UserError
from generator.spec import load_spec, parse_spec

from specs import linear_model, text_model, write_spec

SPEC = Path("/tmp/spec.yaml")


def parse(data):
    return parse_spec(data, SPEC)


def one(**over):
    return {"models": [linear_model(**over)]}


def test_documented_example_spec_parses():
    spec = load_spec(Path(__file__).resolve().parent.parent / "examples" / "spec.yaml")
    vit = spec.model("vit_b16")
    assert vit.source.factory == "vit:vit_b16"
    assert vit.source.checkpoint.name == "vit_b16.pt"
    assert vit.max_batch_size == 16
    # batch what is queued; two CPU instances of one thread (the served OpenVINO INT8 ViT computes two requests at
    # once: README "Two more levers"), one GPU instance
    assert vit.triton.dynamic_batching.preferred_batch_size == ()
    assert vit.triton.dynamic_batching.max_queue_delay_microseconds == 0
    assert [(g.count, g.kind) for g in vit.triton.instance_group] == [(2, "KIND_CPU"), (1, "KIND_GPU")]
    assert vit.triton.intra_op_threads == 1
    assert spec.model("small_cnn").max_batch_size == 8
    assert [v.name for v in vit.variants] == ["onnx", "torchscript", "onnx-fp16", "onnx-int8", "onnx-int8-dynamic",
                                              "openvino", "openvino-int8", "torch-aoti", "trt-fp16", "trt-int8"]
    ov8 = next(v for v in vit.variants if v.name == "openvino-int8")
    assert ov8.options.model_type == "transformer"  # NNCF's transformer preset: without it the ViT fails the gate
    assert vit.preprocess.size == (224, 224)
    assert vit.verify.task == "classification"


def test_defaults_merge_one_level_and_model_wins():
    spec = parse({
        "defaults": {"max_batch_size": 8, "triton": {"warmup": False, "instance_group": [{"count": 3}]}},
        "models": [linear_model(max_batch_size=2, triton={"warmup": True})],
    })
    m = spec.models[0]
    assert m.max_batch_size == 2
    assert m.triton.warmup is True
    assert m.triton.instance_group[0].count == 3


def test_named_dims_and_ranges():
    m = parse({"models": [text_model()]}).models[0]
    assert m.dims == {"seq": (1, 8, 16)}
    assert m.inputs[0].shape == ("seq",)
    assert m.inputs[0].triton_dims() == [-1]
    assert m.inputs[0].range == (0, 50)
    assert m.dims_at("max") == {"seq": 16}


def test_variant_entries_take_per_variant_tolerance():
    m = parse(one(variants=["onnx", {"name": "torchscript", "verify": {"atol": 0.5}}])).models[0]
    assert m.variants[1].verify.atol == 0.5


def test_max_batch_size_zero_disables_dynamic_batching():
    m = parse(one(max_batch_size=0)).models[0]
    assert m.triton.dynamic_batching is None


BAD = [
    (one(inputs=[{"name": "x", "dtype": "float33", "shape": [4]}]), "models[0].inputs[0].dtype: 'float33' is not one of"),
    (one(inputs=[{"name": "x", "dtype": "float32", "shape": [0]}]), "models[0].inputs[0].shape[0]: must be >= 1"),
    (one(inputs=[{"name": "x", "dtype": "float32", "shape": [-3]}]), "models[0].inputs[0].shape[0]: must be >= 1"),
    (one(inputs=[{"name": "x", "dtype": "float32", "shape": ["seq"]}]), "models[0].inputs[0].shape[0]: dim 'seq' is not declared"),
    (one(dims={"seq": [4, 2, 8]}, inputs=[{"name": "x", "dtype": "float32", "shape": ["seq"]}]), "models[0].dims.seq: need min <= opt <= max"),
    (one(dims={"seq": [1, 2, 8]}), "models[0].dims.seq: declared but no input shape uses it"),
    (one(name="../x"), "models[0].name: '../x' is not a valid Triton model name"),
    (one(name="a/b"), "models[0].name: 'a/b' is not a valid Triton model name"),
    (one(name="a__b"), "models[0].name: 'a__b' contains '__'"),
    ({"models": [linear_model(), linear_model()]}, "models[1].name: 'lin' is already used by models[0]"),
    (one(colour="red"), "models[0].colour: unknown key"),
    ({"models": [linear_model()], "extra": 1}, "spec.extra: unknown key"),
    (one(source={"factory": "tinymodels.tiny:linear", "weights": "x.pt"}), "models[0].source.weights: unknown key"),
    (one(source={"factory": "a:b", "torchscript": "m.pt"}), "models[0].source: give exactly one of"),
    (one(source={"factory": "nocolon"}), "models[0].source.factory: 'nocolon' is not 'module:callable'"),
    (one(source={"factory": "a:b", "checkpoint": "w.txt"}), "models[0].source.checkpoint: 'w.txt' has an unknown suffix"),
    (one(source={"pickle": {"path": "m.pt"}}), "models[0].source.pickle.trust: loading a full pickle runs arbitrary code"),
    (one(source={"pickle": {"path": "m.pt", "trust": False}}), "models[0].source.pickle.trust"),
    (one(variants=["onnx", "onnx-int4"]), "models[0].variants[1]: unknown variant 'onnx-int4'"),
    (one(variants=["onnx", "onnx"]), "models[0].variants[1]: variant 'onnx' is listed twice"),
    (one(triton={"dynamic_batching": {"preferred_batch_size": [2, 64]}}),
     "models[0].triton.dynamic_batching.preferred_batch_size[1]: 64 > max_batch_size 4"),
    (one(max_batch_size=0, triton={"dynamic_batching": {"preferred_batch_size": [2]}}),
     "models[0].triton.dynamic_batching: needs max_batch_size > 0"),
    (one(triton={"instance_group": [{"kind": "KIND_TPU"}]}), "models[0].triton.instance_group[0].kind: 'KIND_TPU' is not one of"),
    (one(max_batch_size=-1), "models[0].max_batch_size: must be >= 0"),
    ({"models": [{k: v for k, v in linear_model().items() if k != "max_batch_size"}]}, "models[0].max_batch_size: missing"),
    (one(outputs=[]), "models[0].outputs: empty"),
    (one(outputs=[{"name": "x", "dtype": "float32", "shape": [3]}]), "tensor name 'x' is used twice"),
    (one(inputs=[{"name": "x", "dtype": "float32", "shape": [4], "range": [0, 5]}]), "models[0].inputs[0].range: only integer inputs"),
    ({"models": []}, "models: empty"),
    ({"defaults": {"name": "x"}, "models": [linear_model()]}, "defaults.name: not a model key"),
    (one(triton={"version_policy": {"newest": 1}}), "models[0].triton.version_policy: expected one of"),
    (one(calibration={"method": "magic"}), "models[0].calibration.method: 'magic' is not one of"),
    (one(inputs=[{"name": "x", "dtype": "TYPE_FP32", "shape": [4]}]), "'TYPE_FP32' is not one of float32, "),
    (one(inputs=[{"name": "x", "dtype": "FP16", "shape": [4]}]), "bool; write float16"),  # Triton's name
    (one(inputs=[{"name": "x", "dtype": "long", "shape": [4]}]), "bool; write int64"),  # torch's
    (one(inputs=[{"name": "x", "dtype": "float32", "shape": ["4"]}]),
     "models[0].inputs[0].shape[0]: '4' is a string (quoted in the YAML); write the number 4 without quotes"),
    (one(opset=99), "models[0].opset: must be <= 23, got 99"),  # torch wrote opset 18 and the manifest said 99
    (one(inputs=[{"name": "x", "dtype": "float32", "shape": [3, 8, 8]}],
         preprocess={"image": {"size": [8, 8], "mean": [0.5, 0.5]}}),
     "models[0].preprocess.image.mean: give 3 values (RGB) or 1 (grayscale), got 2"),
    (one(inputs=[{"name": "x", "dtype": "float32", "shape": [1, 8, 8]}],
         preprocess={"image": {"size": [8, 8], "mean": [0.5]}}),
     "models[0].preprocess.image.std: give as many values as mean (1), got 3"),
    # a typo'd shape: 27.9 GiB a sample, caught here instead of as a MemoryError deep in the export
    (one(inputs=[{"name": "x", "dtype": "uint8", "shape": [3, 100000, 100000]}]),
     "models[0].inputs[0].shape: one sample is 27.9 GiB (input 'x' 3x100000x100000 uint8), over the 2 GiB"),
    (one(inputs=[{"name": "x", "dtype": "float32", "shape": ["seq", 1024]}], dims={"seq": [1, 8, 2**20]}),
     "models[0].inputs[0].shape: one sample is 4.0 GiB (input 'x' 1048576x1024 float32 at the dims max)"),
]


@pytest.mark.parametrize("data,message", BAD, ids=[b[1][:40] for b in BAD])
def test_bad_spec_gives_one_line_naming_the_field(data, message):
    with pytest.raises(UserError) as e:
        parse(data)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    p = tmp_path / "spec.yaml"
    p.write_text("models:\n  - name: [unclosed\n")
    with pytest.raises(UserError, match=r"spec.yaml:\d+:\d+: not valid YAML"):
        load_spec(p)


def test_missing_spec_file(tmp_path):
    with pytest.raises(UserError, match="spec file not found"):
        load_spec(tmp_path / "nope.yaml")


def test_pickle_with_trust_parses(tmp_path):
    (tmp_path / "m.pt").write_bytes(b"x")
    p = write_spec(tmp_path, one(source={"pickle": {"path": "m.pt", "trust": True}}))
    m = load_spec(p).models[0]
    assert m.source.kind == "pickle" and m.source.trust


def test_reading_the_example_spec_imports_nothing_heavy_and_no_build_code():
    """Reading a spec is pure: no torch, onnxruntime, openvino, transformers or tokenizer, no variant build code,
    no validator (in a fresh interpreter, so what other tests imported does not count)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    code = (
        "import sys\n"
        "from generator.spec import load_spec\n"
        f"s = load_spec({str(root / 'examples' / 'spec.yaml')!r})\n"
        "assert [m.name for m in s.models] == ['vit_b16', 'small_cnn', 'minilm'], s.models\n"
        "assert type(s.models[2].preprocess).__name__ == 'TextPreprocess'\n"
        "heavy = ['torch', 'onnx', 'onnxruntime', 'openvino', 'transformers', 'tokenizers', 'generator.variants',\n"
        "         'generator.loading.hf', 'generator.config.rules', 'generator.build.pipeline', 'generator.loading.source']\n"
        "print(' '.join(m for m in heavy if m in sys.modules))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"reading the spec imported: {r.stdout.strip()}"
