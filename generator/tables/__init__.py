"""The tables every layer reads: Triton backends (backends.py), target releases (releases.py, trt_release.py),
dtypes (dtypes.py) and this CPU's instruction sets (isa.py). Pure data and small functions: nothing below but
``generator.errors``.
"""
