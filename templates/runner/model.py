"""tritongen runner: a Triton python-backend model that executes one artifact from its version folder.

Static file; tritongen copies it to ``<model>/<version>/model.py`` beside the artifact. Everything it needs
comes from the model config (``args["model_config"]``):

    parameters { key: "runtime"  value: { string_value: "onnxruntime" } }   # onnxruntime | torchscript | openvino | aoti
    parameters { key: "artifact" value: { string_value: "model.onnx" } }    # file in the version folder
    parameters { key: "intra_op_thread_count" ... }   # and every other native-backend key the twin honours:
    # ONNX Runtime: intra_op_thread_count, inter_op_thread_count, execution_mode, enable_mem_arena, enable_mem_pattern,
    #   ort_graph_optimization_level (disable|basic|extended|all; or optimization.graph.level as the native backend)
    # OpenVINO: PERFORMANCE_HINT, NUM_STREAMS, INFERENCE_NUM_THREADS, HINT_BF16, RESHAPE_IO_LAYERS, COMPILATION_NUM_THREADS
    # PyTorch: INFERENCE_MODE, DISABLE_OPTIMIZED_EXECUTION, INTRA_OP_THREAD_COUNT, INTER_OP_THREAD_COUNT
    # AOTInductor (aoti, a model.pt2 loaded with torch._inductor.aoti_load_package): INFERENCE_MODE,
    #   INTRA_OP_THREAD_COUNT, INTER_OP_THREAD_COUNT
    # (read by tritongen_runtimes.settings_from_parameters; the server log lists what was reproduced)

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
import sys

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


def _log(text):
    logger = getattr(pb_utils, "Logger", None)
    if logger is not None:
        logger.log_info(text)
    else:
        print(text, flush=True)


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
# Session creation lives in one place, generator/serve/runtimes.py; the build copies it beside this file as
# tritongen_runtimes.py, with the backend table it reads as tritongen_backends.py (the stub runs isolated and
# cannot import the generator package).

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import tritongen_runtimes as _rt  # noqa: E402  (the build's copy, beside this file)
except ImportError:  # a hand-assembled repository: the generator package installed in the stub's Python
    try:
        from generator.serve import runtimes as _rt  # noqa: E402
    except ImportError as exc:
        raise ImportError("tritongen runner: tritongen_runtimes.py is not beside model.py and the generator package "
                          "is not importable; copy generator/serve/runtimes.py and generator/tables/backends.py there as "
                          "tritongen_runtimes.py and tritongen_backends.py") from exc

_RUNTIMES = tuple(_rt.SESSIONS)


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
        graph_level = (config.get("optimization") or {}).get("graph", {}).get("level")
        # the native openvino backend shares one compiled model among the model's instances (runtimes.openvino_compile)
        params["instances"] = str(sum(int(g.get("count", 1)) for g in config.get("instance_group") or [{}]))
        settings = _rt.settings_from_parameters(runtime, params, graph_level=graph_level)
        batch = [-1] if self.max_batch_size > 0 else []
        # the model's dims: a reshape's shape where the config has one (JSON drops an empty shape: {})
        dims = {i["name"]: batch + [int(d) for d in (i["reshape"].get("shape", []) if "reshape" in i else i.get("dims", []))]
                for i in config["input"]}
        try:
            self.run = _rt.open_session(runtime, path, [n for n, _ in self.inputs], [n for n, _ in self.outputs],
                                        settings, gpu=gpu, input_dims=dims, max_batch_size=self.max_batch_size)
        except Exception as exc:  # the server log and the repository index show this message
            msg = " ".join(str(exc).split())
            raise pb_utils.TritonModelException(f"{self.name}: {runtime} cannot load {artifact}: {msg}") from exc
        _log(f"{self.name}: native-backend settings: {self.run.summary()}")
        self._mimic(runtime, params, config.get("model_warmup") or [])

    def _mimic(self, runtime, params, warmups):
        """The target release's native-backend failures (parameters triton_version / native_behaviours, written
        by tritongen from generator/tables/releases.py), so serving tests here fail where that release would."""
        behaviours = set(filter(None, (params.get("native_behaviours") or "").split(",")))
        self.release = params.get("triton_version") or "?"
        threads = params.get("INTER_OP_THREAD_COUNT") or "0"
        if runtime == "torchscript" and "pytorch_interop_abort" in behaviours and threads.isdigit() and int(threads) > 0:
            owner = _rt.interop_threads_owner(self.name)
            if owner is not None:
                raise pb_utils.TritonModelException(
                    f"{self.name}: INTER_OP_THREAD_COUNT is also set by {owner}: Triton {self.release}'s pytorch backend "
                    "calls at::set_num_interop_threads again and aborts the whole server ('cannot set number of interop "
                    "threads after parallel work has started or set_num_interop_threads called'); the twin refuses "
                    "this model instead; remove the parameter")
        self.ov_padding_bug = (runtime == "openvino" and "openvino_padding_bug" in behaviours and self.max_batch_size > 0
                               and (params.get("ENABLE_BATCH_PADDING") or "").lower() == "yes")
        self.ov_pad = 0
        if self.ov_padding_bug:
            # Triton runs a batch-N warm-up sample as N batch-1 requests in one execution; the native backend's
            # response error fails the load, the python backend's is only logged: so replay the warm-ups here
            for w in warmups:
                n = int(w.get("batch_size", 1))
                rows, self.ov_pad = _rt.openvino_padding_rows([1] * n, self.max_batch_size, self.ov_pad)
                if rows < n:
                    raise pb_utils.TritonModelException(
                        f"{self.name}: failed to run warmup sample '{w.get('name')}': expected batch size of at least "
                        f"{n} in model output, got {rows} (as Triton {self.release}'s openvino backend: batch padding "
                        "is computed per request and never reset)")
            _log(f"{self.name}: mimics Triton {self.release}'s openvino batch padding (stale pad: executions adding up "
                 f"to max_batch_size {self.max_batch_size} fail their last request)")

    def _padding_bug(self, requests, sizes, responses):
        """As openvino_backend: an execution adding up to max_batch_size returns too few rows for its last requests."""
        order = [i for i in range(len(requests)) if i in sizes]
        rows, self.ov_pad = _rt.openvino_padding_rows([sizes[i] for i in order], self.max_batch_size, self.ov_pad)
        offset = 0
        for i in order:
            offset += sizes[i]
            if offset > rows:
                responses[i] = self._error(RuntimeError(
                    f"failed to split the output tensor '{self.outputs[0][0]}' in responses: expected batch size of at "
                    f"least {offset} in model output, got {rows} (Triton {self.release}'s openvino backend: batch padding "
                    "is computed per request and never reset)"))

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

        sizes = {i: int(a[0].shape[0]) for i, a in feeds.items() if a and a[0].ndim} if self.ov_padding_bug else {}
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
        if sizes:
            self._padding_bug(requests, sizes, responses)
        return responses

    def finalize(self):
        self.run = None
