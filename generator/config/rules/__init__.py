"""What Triton's native backends require of a model folder, as our own small checks.

The package: ``framework`` (Target, Finding, the registry, parameter checks, sources), ``signatures``
(reading artifacts), ``artifact_rules`` and ``config_rules`` (the rules, registered in this order). Each rule is one function, registered with the backend(s) it concerns and the place in that backend's
documentation or source the requirement comes from. Every finding is one line:
``<model>/<file>: what is wrong; the fix [rule-id: source]``. ``tritongen validate`` and the build (before a
repository is swapped into place) run them all; the README's "Backend rules" table lists them.

Backends, by their config name: ``onnxruntime`` (platform onnxruntime_onnx), ``openvino``, ``pytorch``
(platform pytorch_libtorch), ``tensorrt`` (platform tensorrt_plan), ``python``. A tritongen runner (python
backend with ``parameters.runtime``) stands in for a native backend, so the artifact rules of that backend
apply to it too. Heavy modules (onnx, openvino, torch) are imported only when a rule needs the artifact.
"""

from __future__ import annotations

from generator.config.rules import artifact_rules, config_rules  # noqa: F401,I001 (registers the rules, in this order)
from generator.config.rules import aoti_rules, client_rules, release_rules  # noqa: F401,E402 (torch_aoti, input-format, label-file and release-aware rules, registered last)
from generator.config.rules.artifact_rules import check_batch_dim, check_io_match, check_libtorch_dtype, check_libtorch_io, check_openvino_batch
from generator.config.rules.config_rules import EXTS, FLOAT_TYPES, OV_EXTS, check_accelerators, check_backend_parameters, check_gpu_accelerator_kind, check_instance_kind, check_model_files, check_ort_graph_level, check_versions, check_warmup
from generator.config.rules.framework import BACKEND_PARAMETERS, CPU_ACCELERATORS, DEFAULT_FILES, GPU_ACCELERATORS, PARAM_SOURCE, RULES, RUNNER_RUNTIMES, SRC, TRT_EA_PARAMETERS, Finding, Rule, Target, check_parameter, is_rule_message, normalize_engine, problem, read_manifest, rule, rule_error, rule_table, run_rules, unknown_parameter, warning
from generator.config.rules.signatures import OV_TYPES, artifact_signature, onnx_external_files  # noqa: F401
