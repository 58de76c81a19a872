"""Build stages, file in, file out: export to ONNX (export.py), INT8 quantization (quantize.py, recipe_search.py),
TensorRT plans (tensorrt.py), verification against PyTorch and the INT8 gate (verify.py, gate.py, gate_data.py)
and verification with the target release's runtimes (target_verify.py, target_worker.py).
"""
