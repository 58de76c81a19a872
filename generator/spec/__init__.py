"""The spec: what the user asked for, as typed, frozen models (``models.py``), read by ``reader.py``.

One definition gives the reader, the field-path errors (``errors.py``), ``tritongen schema`` (``schema.py``)
and the README's key reference. Pure: nothing here imports torch, onnx, openvino, transformers or the variant
build code (``generator.variants``); the variants import their typed options from ``options.py``.
"""

from .hf_folder import HFInfo, fill_model, read_source  # noqa: F401
from .models import (  # noqa: F401
    CHECKPOINT_SUFFIXES, NAME_RE, TASKS, TENSOR_NAME_RE, Calibration, InputSpec, ModelSpec, OutputSpec, PickleSource,
    Source, Spec, SpecFile, TensorSpec, Tolerance, VariantSpec,
)
from .options import OPTIONS, VARIANT_KEYS  # noqa: F401
from .preprocess import ImagePreprocess, PreprocessSection, TextPreprocess  # noqa: F401
from .reader import MODEL_KEYS, load_spec, merge, parse_spec, read_model  # noqa: F401
from .triton import (  # noqa: F401
    BACKEND_SETTINGS, INSTANCE_KINDS, QUEUE_ACTIONS, DynamicBatching, InstanceGroup, QueuePolicy, RateLimiter,
    TritonSpec,
)
from .tune import OBJECTIVES, TuneSettings, parse_tune  # noqa: F401
