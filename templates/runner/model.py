"""tritongen runner: a Triton python-backend model that executes one artifact from its version folder.

Static file; tritongen copies it to ``<model>/<version>/model.py`` beside the artifact. Everything it needs
comes from the model config (``args["model_config"]``):

    parameters { key: "runtime"  value: { string_value: "onnxruntime" } }   # onnxruntime | torchscript | openvino
    parameters { key: "artifact" value: { string_value: "model.onnx" } }    # file in the version folder
    parameters { key: "intra_op_threads" value: { string_value: "1" } }     # optional, 0 = runtime default
    parameters { key: "ort_graph_optimization_level" value: { string_value: "extended" } }  # optional: disable|basic|extended|all
    parameters { key: "openvino_inference_precision" value: { string_value: "bf16" } }      # optional, default f32
    parameters { key: "openvino_performance_hint" value: { string_value: "LATENCY" } }      # optional

Inputs are fed to the artifact in config order (by name where the artifact's names match the config's,
else by position); outputs likewise. A list of requests (dynamic batching) is concatenated along dim 0
when ``max_batch_size > 0``, run once, and split back; if the batched run fails, each request is run on
its own so only the bad one gets an error.

Tensors move by DLPack both ways: in a stub running numpy >= 2, ``Tensor.as_numpy()`` reads garbage and
``pb_utils.Tensor(name, ndarray)`` outputs arrive empty (the stub's pybind11 predates numpy 2's ABI).
"""

import ctypes
import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils

_NUMPY = {
    "TYPE_BOOL": np.bool_,
    "TYPE_UINT8": np.uint8,
    "TYPE_UINT16": np.uint16,
    "TYPE_UINT32": np.uint32,
    "TYPE_UINT64": np.uint64,
    "TYPE_INT8": np.int8,
    "TYPE_INT16": np.int16,
    "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64,
    "TYPE_FP16": np.float16,
    "TYPE_FP32": np.float32,
    "TYPE_FP64": np.float64,
}


def _param(config, key, default=None):
    value = config.get("parameters", {}).get(key)
    if value is None:
        return default
    value = value.get("string_value", "") if isinstance(value, dict) else str(value)
    return value if value != "" else default


def _to_numpy(tensor):
    """A pb_utils.Tensor as a numpy array (a view of Triton's buffer: copy before the request ends)."""
    return np.from_dlpack(tensor)


def _to_triton(name, array):
    array = np.ascontiguousarray(array)
    if array.ndim == 0:
        array = array.reshape(1)
    capsule = array.__dlpack__()
    tensor = pb_utils.Tensor.from_dlpack(name, capsule)
    # The stub takes ownership but renames the capsule "used_dlpack"; numpy's capsule destructor only
    # recognises "used_dltensor", so it would print a traceback per response. Name it the standard way.
    _capsule_set_name(capsule, _USED_DLTENSOR)
    return tensor


_USED_DLTENSOR = ctypes.c_char_p(b"used_dltensor")  # kept alive: PyCapsule_SetName stores the pointer
_capsule_set_name = ctypes.pythonapi.PyCapsule_SetName
_capsule_set_name.argtypes = [ctypes.py_object, ctypes.c_char_p]
_capsule_set_name.restype = ctypes.c_int


# ------------------------------------------------------------------------------------------- runtimes


class _OnnxRuntime:
    def __init__(self, path, params, in_names, out_names, gpu_device):
        import onnxruntime as ort

        so = ort.SessionOptions()
        threads = int(params.get("intra_op_threads") or 0)
        if threads > 0:
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
        level = (params.get("ort_graph_optimization_level") or "all").lower()
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[level]
        providers = ["CPUExecutionProvider"]
        if gpu_device is not None and "CUDAExecutionProvider" in ort.get_available_providers():
            providers = [("CUDAExecutionProvider", {"device_id": gpu_device}), "CPUExecutionProvider"]
        self.session = ort.InferenceSession(path, so, providers=providers)
        art_in = [i.name for i in self.session.get_inputs()]
        art_out = [o.name for o in self.session.get_outputs()]
        self.feed = in_names if set(in_names) <= set(art_in) else art_in[: len(in_names)]
        self.fetch = out_names if set(out_names) <= set(art_out) else art_out[: len(out_names)]

    def __call__(self, arrays):
        return self.session.run(self.fetch, dict(zip(self.feed, arrays)))


class _TorchScript:
    def __init__(self, path, params, in_names, out_names, gpu_device):
        import torch

        threads = int(params.get("intra_op_threads") or 0)
        if threads > 0:
            torch.set_num_threads(threads)
        self.torch = torch
        self.device = torch.device(f"cuda:{gpu_device}" if gpu_device is not None and torch.cuda.is_available() else "cpu")
        self.module = torch.jit.load(path, map_location=self.device).eval()
        self.out_names = out_names

    def __call__(self, arrays):
        torch = self.torch
        with torch.inference_mode():
            args = [torch.from_numpy(np.ascontiguousarray(a)).to(self.device) for a in arrays]
            out = self.module(*args)
        if isinstance(out, dict):
            out = [out[n] for n in self.out_names]
        elif not isinstance(out, (list, tuple)):
            out = [out]
        return [o.detach().cpu().contiguous().numpy() for o in out]


class _OpenVINO:
    def __init__(self, path, params, in_names, out_names, gpu_device):
        import openvino as ov

        core = ov.Core()
        cfg = {"PERFORMANCE_HINT": params.get("openvino_performance_hint") or "LATENCY"}
        threads = int(params.get("intra_op_threads") or 0)
        if threads > 0:
            cfg["INFERENCE_NUM_THREADS"] = threads
        # OpenVINO's CPU plugin defaults to bf16 where the CPU has avx512_bf16/AMX (error ~1e-3):
        # f32 unless bf16/f16 is asked for.
        cfg["INFERENCE_PRECISION_HINT"] = params.get("openvino_inference_precision") or "f32"
        self.compiled = core.compile_model(core.read_model(path), "CPU", cfg)
        self.request = self.compiled.create_infer_request()
        art_in = [sorted(p.get_names()) for p in self.compiled.inputs]
        self.in_index = []
        for pos, name in enumerate(in_names):
            hit = [i for i, names in enumerate(art_in) if name in names]
            self.in_index.append(hit[0] if hit else pos)
        self.out_ports = []
        for pos, name in enumerate(out_names):
            hit = [p for p in self.compiled.outputs if name in p.get_names()]
            self.out_ports.append(hit[0] if hit else self.compiled.outputs[pos])

    def __call__(self, arrays):
        feed = {self.in_index[i]: np.ascontiguousarray(a) for i, a in enumerate(arrays)}
        result = self.request.infer(feed)
        return [np.array(result[p]) for p in self.out_ports]


_RUNTIMES = {"onnxruntime": _OnnxRuntime, "torchscript": _TorchScript, "openvino": _OpenVINO}


# --------------------------------------------------------------------------------------------- model


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.name = args.get("model_name", config.get("name", "?"))
        params = {k: _param(config, k) for k in config.get("parameters", {})}
        runtime = (params.get("runtime") or "").lower()
        if runtime not in _RUNTIMES:
            raise pb_utils.TritonModelException(
                f"{self.name}: parameters.runtime is {runtime!r}; set it to one of {', '.join(_RUNTIMES)}"
            )
        artifact = params.get("artifact")
        if not artifact:
            raise pb_utils.TritonModelException(f"{self.name}: parameters.artifact is missing; name the file in the version folder")
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        path = os.path.join(version_dir, artifact)
        if not os.path.isfile(path):
            raise pb_utils.TritonModelException(f"{self.name}: artifact {path} does not exist")

        self.max_batch_size = int(config.get("max_batch_size", 0))
        self.inputs = [(i["name"], _NUMPY[i["data_type"]]) for i in config["input"]]
        self.outputs = [(o["name"], _NUMPY[o["data_type"]]) for o in config["output"]]
        gpu = None
        if args.get("model_instance_kind") == "GPU":
            gpu = int(args.get("model_instance_device_id", 0))
        try:
            self.run = _RUNTIMES[runtime](
                path, params, [n for n, _ in self.inputs], [n for n, _ in self.outputs], gpu
            )
        except Exception as exc:  # the server log and the repository index show this message
            msg = " ".join(str(exc).split())
            raise pb_utils.TritonModelException(f"{self.name}: {runtime} cannot load {artifact}: {msg}") from exc

    # One request's inputs, in config order, as arrays of the config's dtypes (copied out of Triton).
    def _read(self, request):
        arrays = []
        for name, dtype in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"input {name!r} is missing")
            arrays.append(np.array(_to_numpy(tensor), dtype=dtype, copy=True))
        return arrays

    def _respond(self, outputs):
        return pb_utils.InferenceResponse(
            output_tensors=[
                _to_triton(name, np.asarray(arr).astype(dtype, copy=False))
                for (name, dtype), arr in zip(self.outputs, outputs)
            ]
        )

    @staticmethod
    def _error(exc):
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}"))

    def execute(self, requests):
        responses = [None] * len(requests)
        feeds = {}
        for i, request in enumerate(requests):
            try:
                feeds[i] = self._read(request)
            except Exception as exc:
                responses[i] = self._error(exc)

        if self.max_batch_size > 0 and len(feeds) > 1:
            idx = list(feeds)
            try:
                sizes = [feeds[i][0].shape[0] for i in idx]
                batched = [np.concatenate([feeds[i][k] for i in idx], axis=0) for k in range(len(self.inputs))]
                outs = self.run(batched)
                bounds = np.cumsum(sizes)[:-1]
                parts = [np.split(np.asarray(o), bounds, axis=0) for o in outs]
                for j, i in enumerate(idx):
                    responses[i] = self._respond([p[j] for p in parts])
                feeds = {}
            except Exception:
                pass  # fall through: run one by one so only the bad request fails

        for i, arrays in feeds.items():
            try:
                responses[i] = self._respond(self.run(arrays))
            except Exception as exc:
                responses[i] = self._error(exc)
        return responses

    def finalize(self):
        self.run = None
