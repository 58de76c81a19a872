"""Runs one artifact in another Python: the target release's ONNX Runtime / OpenVINO venv (generator/stages/target_verify.py).

Started as ``<venv>/bin/python target_worker.py RUNTIMES_PY BACKENDS_PY``: imports only numpy, the runtime, and
generator/serve/runtimes.py by path (the same session code the twin serves with). Frames on stdin/stdout: 8-byte
big-endian length + payload. The first frame is a JSON header {runtime, artifact, inputs, outputs, settings};
it answers a JSON frame {"ok": true, "version": ...} or {"ok": false, "error": ...}. Every later frame is an
.npz of feeds, answered by an .npz of outputs or a JSON error frame. An empty frame ends it.
"""

import importlib.util
import io
import json
import struct
import sys
from pathlib import Path


def _read(stream):
    head = stream.read(8)
    if len(head) < 8:
        return b""
    (n,) = struct.unpack(">Q", head)
    return stream.read(n)


def _write(stream, payload: bytes) -> None:
    stream.write(struct.pack(">Q", len(payload)) + payload)
    stream.flush()


def main() -> int:
    import numpy as np

    # runtimes.py reads the standalone backend table (generator/tables/backends.py, argv[2]), as the twin does
    backends_py = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(sys.argv[1]).with_name("backends.py")
    if backends_py.is_file():
        bspec = importlib.util.spec_from_file_location("tritongen_backends", backends_py)
        sys.modules["tritongen_backends"] = bk = importlib.util.module_from_spec(bspec)
        bspec.loader.exec_module(bk)
    spec = importlib.util.spec_from_file_location("tritongen_runtimes", sys.argv[1])
    rt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rt)
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    header = json.loads(_read(inp))
    try:
        session = rt.open_session(header["runtime"], header["artifact"], header["inputs"], header["outputs"],
                                  header.get("settings") or {})
        module = __import__(header["runtime"])
        _write(out, json.dumps({"ok": True, "version": getattr(module, "__version__", "?")}).encode())
    except Exception as exc:  # reported to the parent in one line
        _write(out, json.dumps({"ok": False, "error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"}).encode())
        return 0
    while True:
        frame = _read(inp)
        if not frame:
            return 0
        try:
            with np.load(io.BytesIO(frame)) as z:
                feeds = {k: z[k] for k in z.files}
            result = session.feeds(feeds)
            buf = io.BytesIO()
            np.savez(buf, **{k: np.asarray(v) for k, v in result.items()})
            _write(out, b"N" + buf.getvalue())
        except Exception as exc:
            _write(out, b"E" + f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}".encode())


if __name__ == "__main__":
    sys.exit(main())
