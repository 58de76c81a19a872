"""tritongen preprocess: a Triton python-backend model that turns encoded images into model input.

Static file; tritongen copies it to ``<model>/<version>/model.py``. Config (``args["model_config"]``):

    input  [ { name: "image" data_type: TYPE_STRING dims: [ 1 ] } ]    # one encoded file per element
    output [ { name: "pixel_values" data_type: TYPE_FP32 dims: [ 3, 224, 224 ] } ]
    parameters { key: "size"   value: { string_value: "224,224" } }          # height,width
    parameters { key: "mean"   value: { string_value: "0.485,0.456,0.406" } }
    parameters { key: "std"    value: { string_value: "0.229,0.224,0.225" } }
    parameters { key: "layout" value: { string_value: "NCHW" } }             # NCHW | NHWC
    parameters { key: "resize" value: { string_value: "bilinear" } }         # bilinear | nearest | bicubic
    parameters { key: "output_name" value: { string_value: "pixel_values" } }  # optional, default: the only output

The image input is TYPE_STRING ``[1]`` (one encoded JPEG/PNG/... file per element, so one batch may mix
sizes and formats; what Triton's ensemble_image_client sends) or TYPE_UINT8 ``[-1]`` (the encoded bytes, one
row per image, zero-padded to one length within a request; the decoders ignore trailing bytes; read by
DLPack). TYPE_STRING needs a python backend stub that reads strings correctly: the stub in tritonserver
<= 2.51 running numpy >= 2 corrupts ``as_numpy()`` (and so every TYPE_STRING input), which this model detects
at load and refuses; tritongen's embedded target sets EXECUTION_ENV_PATH to a numpy<2 + Pillow environment.
An element that does not decode fails its request with an error naming the element; the model keeps serving.

``preprocess_image`` below is a copy of ``generator.loading.preprocess.preprocess_image`` (a test keeps them equal).
"""

from __future__ import annotations

import ctypes
import io
import json
from typing import Sequence

import numpy as np
import triton_python_backend_utils as pb_utils

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def preprocess_image(
    data: bytes,
    size: Sequence[int] = (224, 224),
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    layout: str = "NCHW",
    resize: str = "bilinear",
) -> np.ndarray:
    """Encoded image bytes (JPEG/PNG/...) -> float32 (C, H, W) for NCHW or (H, W, C) for NHWC, C = len(mean):
    3 (RGB) or 1 (grayscale, Pillow's "L").

    Decode with Pillow, convert to RGB (or L), resize to ``size`` = (height, width) with ``resize``
    (bilinear | nearest | bicubic), scale to [0, 1], subtract ``mean`` and divide by ``std`` per channel.
    Trailing bytes after the image (zero padding in a batch) are ignored by the decoders.
    """
    from PIL import Image

    modes = {"bilinear": Image.BILINEAR, "nearest": Image.NEAREST, "bicubic": Image.BICUBIC}
    with Image.open(io.BytesIO(bytes(data))) as img:
        rgb = img.convert("L" if len(mean) == 1 else "RGB").resize((int(size[1]), int(size[0])), modes[resize])
    x = np.asarray(rgb, dtype=np.float32).reshape(int(size[0]), int(size[1]), -1) / np.float32(255.0)
    x = (x - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    if layout.upper() == "NCHW":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x, dtype=np.float32)


_USED_DLTENSOR = ctypes.c_char_p(b"used_dltensor")  # kept alive: PyCapsule_SetName stores the pointer
_capsule_set_name = ctypes.pythonapi.PyCapsule_SetName
_capsule_set_name.argtypes = [ctypes.py_object, ctypes.c_char_p]
_capsule_set_name.restype = ctypes.c_int


def _to_triton(name, array):
    """Output by DLPack. The stub takes ownership but renames the capsule "used_dlpack", which numpy's
    capsule destructor does not recognise (a traceback per response): name it the standard way."""
    capsule = np.ascontiguousarray(array).__dlpack__()
    tensor = pb_utils.Tensor.from_dlpack(name, capsule)
    _capsule_set_name(capsule, _USED_DLTENSOR)
    return tensor


def _param(config, key, default):
    value = config.get("parameters", {}).get(key)
    if isinstance(value, dict):
        value = value.get("string_value", "")
    return value if value else default


def _floats(text):
    return tuple(float(v) for v in str(text).replace(" ", "").split(","))


def _as_numpy_works():
    """Whether this stub moves TYPE_STRING tensors correctly (not numpy 2 under an old stub)."""
    try:
        probe = np.array([b"\x89PNG", b"\xff\xd8\x00"], dtype=np.object_)
        back = pb_utils.Tensor("probe", probe).as_numpy()
        return [bytes(v) for v in back.reshape(-1)] == [b"\x89PNG", b"\xff\xd8\x00"]
    except Exception:
        return False


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        name = args.get("model_name", config.get("name", "?"))
        if len(config["input"]) != 1:
            raise pb_utils.TritonModelException(f"{name}: preprocess takes exactly one input (the encoded image)")
        self.input_name = config["input"][0]["name"]
        self.input_type = config["input"][0]["data_type"]
        if self.input_type not in ("TYPE_UINT8", "TYPE_STRING"):
            raise pb_utils.TritonModelException(
                f"{name}: input {self.input_name} is {self.input_type}; declare it TYPE_STRING dims [1] or TYPE_UINT8 dims [-1]"
            )
        numpy2 = int(np.__version__.split(".")[0]) >= 2 and _param(config, "stub_numpy2", "false") != "true"
        if self.input_type == "TYPE_STRING" and (numpy2 or not _as_numpy_works()):
            raise pb_utils.TritonModelException(
                f"{name}: this python backend stub corrupts TYPE_STRING inputs under numpy {np.__version__}; "
                f"declare {self.input_name} as TYPE_UINT8 dims [-1] (the encoded bytes; spec preprocess.image.dtype: uint8) or "
                f"set parameters EXECUTION_ENV_PATH to an environment with numpy<2 and Pillow (or stub_numpy2: true for a "
                f"server whose stub is built against numpy 2)"
            )
        outputs = [o["name"] for o in config["output"]]
        self.output_name = _param(config, "output_name", outputs[0])
        if self.output_name not in outputs:
            raise pb_utils.TritonModelException(f"{name}: parameters.output_name {self.output_name!r} is not an output")
        self.size = tuple(int(v) for v in _floats(_param(config, "size", "224,224")))
        self.mean = _floats(_param(config, "mean", ",".join(map(str, IMAGENET_MEAN))))
        self.std = _floats(_param(config, "std", ",".join(map(str, IMAGENET_STD))))
        self.layout = _param(config, "layout", "NCHW").upper()
        self.resize = _param(config, "resize", "bilinear").lower()
        self.batched = int(config.get("max_batch_size", 0)) > 0

    def _images(self, request):
        tensor = pb_utils.get_input_tensor_by_name(request, self.input_name)
        if tensor is None:
            raise ValueError(f"input {self.input_name!r} is missing")
        if self.input_type == "TYPE_STRING":
            rows = [bytes(v) for v in np.asarray(tensor.as_numpy(), dtype=object).reshape(-1)]
        else:
            raw = np.from_dlpack(tensor)
            rows = [r.tobytes() for r in raw.reshape(-1, raw.shape[-1])] if self.batched else [raw.tobytes()]
        return rows

    def _decode(self, rows):
        images = []
        for i, data in enumerate(rows):
            try:
                images.append(preprocess_image(data, self.size, self.mean, self.std, self.layout, self.resize))
            except Exception as exc:
                raise ValueError(f"input {self.input_name!r} element {i} of {len(rows)} ({len(data)} bytes) is not an "
                                 f"image Pillow can decode: {type(exc).__name__}: {exc}") from None
        return images

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                images = self._decode(self._images(request))
                out = np.stack(images) if self.batched else images[0]
                responses.append(
                    pb_utils.InferenceResponse(
                        output_tensors=[_to_triton(self.output_name, out)]
                    )
                )
            except Exception as exc:
                # a bad element is the caller's mistake: INVALID_ARG where this backend has error codes
                code = getattr(pb_utils.TritonError, "INVALID_ARG", None) if isinstance(exc, ValueError) else None
                text = f"{type(exc).__name__}: {exc}"
                error = pb_utils.TritonError(text, code) if code is not None else pb_utils.TritonError(text)
                responses.append(pb_utils.InferenceResponse(error=error))
        return responses
