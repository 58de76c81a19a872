"""Running things: the in-process runtime sessions the twin and the verifier share (runtimes.py, standalone),
the external tools (tools.py: tritonserver, perf_analyzer) and a real tritonserver's lifecycle (server.py).
"""

from __future__ import annotations

from pathlib import Path


def standalone_runtime_files() -> dict[str, Path]:
    """The runtime layer and the backend table it reads, as files: the build copies them beside the twin's
    model.py as ``tritongen_<name>.py``; the target-release worker loads them by path."""
    from ..tables import backends
    from . import runtimes

    return {"runtimes": Path(runtimes.__file__), "backends": Path(backends.__file__)}
