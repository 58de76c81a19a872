"""Rendering and checking config.pbtxt: the one config path (render.py), release workarounds
(release_config.py), TensorRT profiles (trt_profiles.py), validation with Triton's schema (validate.py) and the
native-backend rules (rules/). Depends only on the spec, the tables and the formats (an import-linter contract).
"""
