"""The one Triton client of perf/: load, ready, unload, liveness, version, statistics over gRPC.

    c = ServerClient("127.0.0.1:8001")
    c.live() -> bool
    c.load(name, config=None) -> ''          # READY; else the server's reason (ServerGone when it died)
    c.unload(name, ...)                      # failures logged, never raised
    c.version() -> str | None
    c.statistics(name) -> dict               # get_inference_statistics(as_json=True)

Used by the perf sweep (``perf.harness``), tune (``perf.tune.measure``), tune-vs-ma and the soak. Every call
opens a short-lived ``tritonclient.grpc.InferenceServerClient`` (a gRPC channel is cheap; a long-lived one
outlives a server that restarts). tritonclient turns every gRPC failure into ``InferenceServerException``:
that is what is caught here, nothing wider.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

log = logging.getLogger(__name__)


class ServerGone(Exception):
    """The server stopped answering in the middle of a run (it died, or was killed)."""


def _errors():
    from tritonclient.utils import InferenceServerException

    return (InferenceServerException,)


def one_line(e: BaseException, limit: int = 300) -> str:
    return " ".join(str(e).split())[:limit]


class ServerClient:
    def __init__(self, url: str):
        self.url = url

    @contextmanager
    def _session(self):
        import tritonclient.grpc as grpcclient

        c = grpcclient.InferenceServerClient(self.url)
        try:
            yield c
        finally:
            c.close()

    def live(self, timeout_s: float = 5.0) -> bool:
        try:
            with self._session() as c:
                return bool(c.is_server_live(client_timeout=timeout_s))
        except _errors():
            return False

    def version(self) -> str | None:
        try:
            with self._session() as c:
                return c.get_server_metadata(client_timeout=10).version
        except _errors() as e:
            log.info("server metadata from %s: %s", self.url, one_line(e))
            return None

    def load(self, name: str, config=None, timeout_s: float = 600.0) -> str:
        """Load ``name`` (with ``config``, a ModelConfig, as an override when given): '' when READY, else the
        server's reason. Raises ServerGone when the load failed because the server is no longer live."""
        from google.protobuf import json_format

        kw = {"config": json_format.MessageToJson(config)} if config is not None else {}
        with self._session() as c:
            try:
                c.load_model(name, client_timeout=timeout_s, **kw)
            except _errors() as e:
                if not self.live():
                    raise ServerGone(f"tritonserver at {self.url} stopped while loading {name}") from None
                return f"failed to load: {one_line(e)}"
            return self._ready_or_reason(c, name)

    def ready_or_reason(self, name: str) -> str:
        """'' when ``name`` is READY, else why not (the repository index's state and reason)."""
        with self._session() as c:
            return self._ready_or_reason(c, name)

    def _ready_or_reason(self, c, name: str) -> str:
        errors = _errors()
        try:
            if c.is_model_ready(name, client_timeout=10):
                return ""
        except errors as e:
            return f"readiness check failed: {one_line(e, 200)}"
        try:
            index = c.get_model_repository_index(as_json=True, client_timeout=10).get("models", [])
        except errors as e:
            log.info("repository index from %s: %s", self.url, one_line(e))
            return "not READY"
        hit = next((m for m in index if m.get("name") == name), {})
        return f"not READY (state {hit.get('state', 'unknown')}: {hit.get('reason', 'no reason given')})"

    def unload(self, *names: str) -> None:
        errors = _errors()
        with self._session() as c:
            for n in names:
                try:
                    c.unload_model(n, client_timeout=60)
                except errors as e:  # unloading is best effort: the next load replaces it anyway
                    log.warning("unload %s at %s: %s", n, self.url, one_line(e))

    def statistics(self, name: str, timeout_s: float = 10.0) -> dict:
        """``get_inference_statistics`` as JSON (raises InferenceServerException on a dead server)."""
        with self._session() as c:
            return c.get_inference_statistics(name, as_json=True, client_timeout=timeout_s)
