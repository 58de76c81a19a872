"""Files tritongen reads and writes, one module each: an ONNX file's interface (onnxfile.py), a config.pbtxt
through Triton's schema (pbtxt.py), input formats and label files (classes.py), perf_analyzer's CSV
(perfanalyzer.py), and the repository on disk: staging, manifests, provenance (repository.py).
"""
