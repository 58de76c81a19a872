"""Run a real ``tritonserver`` on a model repository: start, wait until every model is READY, stop.

    with TritonServer("model_repository") as server:
        client = tritonclient.grpc.InferenceServerClient(server.urls.grpc)

The server binds 127.0.0.1 only, on free ports unless given. Its stdout and stderr go to ``log_path``.
It runs in its own process group and ``stop()`` (also on exceptions and at interpreter exit) ends the whole
group: tritonserver and its python-backend stubs. A model that fails to load raises ``UserError`` naming
the model with the server's own error lines.

For a CLI ``serve`` / ``stop`` pair: ``serve_background(repo, pidfile)`` leaves the server running and
writes a pid file; ``stop_from_pidfile(pidfile)`` ends it from another process.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from generator.errors import UserError

HOST = "127.0.0.1"

# Error lines tritonserver prints on every CPU-only machine; never the cause of a failure.
_NOISE = re.compile(
    r"CudaDriverHelper|NVML|DCGM|pinned memory|Pinned memory|cuda|CUDA|GPU metrics|failed to load all models|"
    r"Exiting immediately|error: creating server"
)


@dataclass(frozen=True)
class ServerUrls:
    http: str  # "127.0.0.1:8000", as tritonclient.http.InferenceServerClient(url=...) takes it
    grpc: str  # "127.0.0.1:8001"
    metrics: str  # "http://127.0.0.1:8002/metrics"


def is_remote_repository(repo) -> bool:
    """``s3://...``, ``gs://...``, ``as://...``: a repository tritonserver reads from object storage."""
    return isinstance(repo, str) and repo.split("://", 1)[0] in ("s3", "gs", "as")


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _free_ports(n: int, host: str = HOST) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _check_port_free(port: int, what: str, host: str = HOST) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            raise UserError(
                f"{what} port {port} on {host} is already in use; choose another port or stop what listens there"
            ) from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    import psutil

    try:  # a zombie is not alive
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    import psutil

    # Members may all be zombies waiting for their reaper.
    for p in psutil.process_iter(["status"]):
        try:
            if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, PermissionError):
            continue
    return False


def _kill_group(pid: int, pgid: int, grace_s: float, popen: subprocess.Popen | None = None) -> None:
    """SIGTERM tritonserver (it unloads models and ends its stubs), then SIGKILL the whole group."""
    def wait_pid(deadline: float) -> bool:
        while time.monotonic() < deadline:
            if popen is not None:
                if popen.poll() is not None:
                    return True
            elif not _alive(pid):
                return True
            time.sleep(0.05)
        return False

    if popen is None or popen.poll() is None:  # never signal a pid we have already reaped
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    wait_pid(time.monotonic() + grace_s)
    try:
        os.killpg(pgid, signal.SIGKILL)  # stragglers: stubs that outlived the server, or a hung server
    except ProcessLookupError:
        pass
    if popen is not None:
        try:
            popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    deadline = time.monotonic() + 10
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)


_LIVE: set["TritonServer"] = set()
_LIVE_LOCK = threading.Lock()


@atexit.register
def _stop_all() -> None:
    with _LIVE_LOCK:
        servers = list(_LIVE)
    for server in servers:
        server.stop()


class TritonServer:
    """A tritonserver process on ``model_repository``; a context manager."""

    def __init__(
        self,
        model_repository: str | os.PathLike,
        *,
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        install=None,  # generator.serve.tools.TritonInstall; default: ensure_tritonserver()
        model_control_mode: str = "none",
        extra_args: Sequence[str] = (),
        log_path: str | os.PathLike | None = None,
        log_verbose: int = 0,
        startup_timeout_s: float = 120.0,
        exit_timeout_s: int = 5,
        expected_models: Sequence[str] | None = None,
        env: dict[str, str] | None = None,
    ):
        # a folder, or an object-store URL tritonserver reads itself (s3://, gs://, as://)
        self.model_repository = model_repository if is_remote_repository(model_repository) \
            else Path(model_repository).resolve()
        self._ports = {"http": http_port, "grpc": grpc_port, "metrics": metrics_port}
        self._install = install
        self.model_control_mode = model_control_mode
        self.extra_args = list(extra_args)
        self.log_path = Path(log_path) if log_path else None
        self.log_verbose = log_verbose
        self.startup_timeout_s = startup_timeout_s
        self.exit_timeout_s = exit_timeout_s
        self.expected_models = list(expected_models) if expected_models is not None else None
        self.extra_env = dict(env or {})
        self.process: subprocess.Popen | None = None
        self.ready_time_s: float | None = None  # seconds from start to every model READY
        self.detached = False

    # ------------------------------------------------------------------------------------ properties

    @property
    def http_port(self) -> int:
        return self._ports["http"]

    @property
    def grpc_port(self) -> int:
        return self._ports["grpc"]

    @property
    def metrics_port(self) -> int:
        return self._ports["metrics"]

    @property
    def urls(self) -> ServerUrls:
        return ServerUrls(
            http=f"{HOST}:{self.http_port}",
            grpc=f"{HOST}:{self.grpc_port}",
            metrics=f"http://{HOST}:{self.metrics_port}/metrics",
        )

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def command(self) -> list[str]:
        install = self._install
        cmd = [
            str(install.binary),
            "--model-repository", str(self.model_repository),
            "--backend-directory", str(install.backend_dir),
            "--model-control-mode", self.model_control_mode,
            "--http-address", HOST, "--http-port", str(self.http_port),
            "--grpc-address", HOST, "--grpc-port", str(self.grpc_port),
            "--metrics-address", HOST, "--metrics-port", str(self.metrics_port),
            "--exit-timeout-secs", str(self.exit_timeout_s),
            "--log-verbose", str(self.log_verbose),
        ]
        return cmd + self.extra_args

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace") if self.log_path else ""
        except OSError:
            return ""

    # ----------------------------------------------------------------------------------- lifecycle

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "TritonServer":
        if self.process is not None:
            raise RuntimeError("server already started")
        if not is_remote_repository(self.model_repository) and not self.model_repository.is_dir():
            raise UserError(f"model repository {self.model_repository} is not a folder; generate it first")
        if self._install is None:
            from generator.serve.tools import ensure_tritonserver

            self._install = ensure_tritonserver()
        binary = Path(self._install.binary)
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise UserError(f"tritonserver not found at {binary}; delete {self._install.root} and run "
                            "`tritongen serve` again to reinstall it (or set TRITONGEN_TOOLS to another tools folder)")
        for what, port in self._ports.items():
            if port is not None:
                _check_port_free(port, what)
        missing = [k for k, v in self._ports.items() if v is None]
        for what, port in zip(missing, _free_ports(len(missing))):
            self._ports[what] = port
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="tritonserver-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)

        env = dict(self._install.env)
        env.update(self.extra_env)
        t0 = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group: stop() kills tritonserver and its stubs
            )
        with _LIVE_LOCK:
            _LIVE.add(self)
        try:
            self._wait_ready(t0)
        except BaseException:
            self.stop()
            raise
        self.ready_time_s = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """End tritonserver and every process of its group; safe to call twice."""
        with _LIVE_LOCK:
            _LIVE.discard(self)
        proc = self.process
        if proc is None or self.detached and proc.poll() is not None:
            return
        _kill_group(proc.pid, proc.pid, grace_s=self.exit_timeout_s + 2, popen=proc)

    def detach(self) -> None:
        """Leave the server running after this process exits (see ``serve_background``)."""
        with _LIVE_LOCK:
            _LIVE.discard(self)
        self.detached = True

    # ----------------------------------------------------------------------------------- readiness

    def _get(self, path: str, method: str = "GET", body: bytes | None = None):
        req = urllib.request.Request(f"http://{self.urls.http}{path}", data=body, method=method)
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()

    def repository_index(self) -> list[dict]:
        """``[{"name", "version", "state", "reason"}, ...]`` from the server."""
        _, body = self._get("/v2/repository/index", "POST", b"{}")
        return json.loads(body or b"[]")

    def _wait_ready(self, t0: float) -> None:
        deadline = t0 + self.startup_timeout_s
        while True:
            if self.process.poll() is not None:
                self._raise_startup_failure(exited=True)
            live, index = False, []
            try:
                live = self._get("/v2/health/live")[0] == 200
                index = self.repository_index() if live else []
            except (urllib.error.URLError, OSError, ValueError):
                live = False
            if live:
                failed = [m for m in index if m.get("state") == "UNAVAILABLE" and m.get("reason")]
                if failed:
                    self._raise_startup_failure(exited=False, index=index)
                states = {m["name"]: m.get("state") for m in index}
                wanted = self.expected_models
                if wanted is None:
                    wanted = list(states) if self.model_control_mode != "explicit" else []
                if all(states.get(name) == "READY" for name in wanted):
                    self._wait_metrics(deadline)
                    return
            if time.monotonic() > deadline:
                not_ready = ""
                if live:
                    not_ready = ", ".join(f"{m['name']}={m.get('state')}" for m in index if m.get("state") != "READY")
                raise UserError(
                    f"tritonserver was not ready after {self.startup_timeout_s:.0f} s"
                    f"{' (' + not_ready + ')' if not_ready else ''}; see {self.log_path}"
                )
            time.sleep(0.1)

    def _wait_metrics(self, deadline: float) -> None:
        """The metrics endpoint starts after HTTP and its failure does not stop the server: wait for it."""
        if any(a.replace(" ", "").lower() in ("--allow-metrics=false", "--allow-metrics=0") for a in self.extra_args):
            return
        # It logs "Started Metrics Service" and then, tens of ms later, "failed to start Metrics service".
        until = min(deadline, time.monotonic() + 5)
        started = None
        while time.monotonic() < until:
            log = self.log_text()
            self._raise_if_port_conflict(log)
            if started is None and "Started Metrics Service" in log:
                started = time.monotonic()
            if started is not None and time.monotonic() - started > 0.3:
                return
            time.sleep(0.05)

    def _raise_if_port_conflict(self, log: str) -> None:
        """A port taken between our check and the server's bind ("failed to start GRPC service: ...")."""
        m = re.search(r"failed to start (HTTP|GRPC|Metrics) service: (.*?)\"?$", log, re.MULTILINE)
        if m:
            what = m.group(1).lower()
            raise UserError(
                f"{what} port {self._ports[what]} on {HOST} is already in use ({m.group(2).strip()}); "
                f"choose another port or stop what listens there"
            )

    def _raise_startup_failure(self, exited: bool, index: list[dict] | None = None) -> None:
        log = self.log_text()
        self._raise_if_port_conflict(log)
        failures = model_failures(log)
        for m in index or []:
            if m.get("state") == "UNAVAILABLE" and m.get("reason"):
                failures.setdefault(m["name"], []).append(m["reason"])
        if failures:
            parts = [f"model '{name}' failed to load: " + " | ".join(_distinct(lines)) for name, lines in failures.items()]
            raise UserError("; ".join(parts) + f"; fix the model and serve again (full log: {self.log_path})")
        errors = [ln for ln in _error_lines(log) if not _NOISE.search(ln)]
        what = f"exited with status {self.process.returncode}" if exited else "failed"
        detail = " | ".join(errors[-5:]) or (log.strip().splitlines() or ["(empty log)"])[-1]
        raise UserError(f"tritonserver {what} during startup: {detail}; see {self.log_path}")


_GLOG = re.compile(r'^[EWIF]\d{4} [\d:.]+\s+\d+ [^\]]+\] ?"?(.*?)"?$')


def _error_lines(log: str) -> list[str]:
    out = []
    for line in log.splitlines():
        if line.startswith("E"):
            m = _GLOG.match(line)
            out.append(" ".join((m.group(1) if m else line).split()))
    return out


def _clean(line: str) -> str:
    """One server error line without its Python traceback tail and escaped newlines."""
    line = re.split(r"(?:\\n|\s)+At:(?:\\n|\s)", line, maxsplit=1)[0]
    line = line.replace("\\n", " ")
    line = re.sub(r"^(failed to load '[^']+' version \d+: |UNAVAILABLE: )", "", line.strip())
    return " ".join(line.split())


def _distinct(lines: list[str]) -> list[str]:
    """Cleaned lines, dropping any that another line already contains."""
    cleaned = []
    for line in map(_clean, lines):
        if line and line not in cleaned:
            cleaned.append(line)
    return [a for i, a in enumerate(cleaned) if not any(a in b and (a != b or j < i) for j, b in enumerate(cleaned) if j != i)]


def model_failures(log: str) -> dict[str, list[str]]:
    """``{model: [error lines]}`` from a tritonserver log (load errors and the model status table)."""
    failures: dict[str, list[str]] = {}
    for line in _error_lines(log):
        m = re.search(r"failed to load '([^']+)'|load failed for model '([^']+)'|for model directory '([^']+)'|'([^']+)' version \d+", line)
        if m and not _NOISE.search(line.split(":", 1)[0]):
            name = next(g for g in m.groups() if g)
            failures.setdefault(name, []).append(line)
    # The status table: "| name | 1 | UNAVAILABLE: reason |"
    for line in log.splitlines():
        m = re.match(r"^\|\s*(\S+)\s*\|\s*(\d+)\s*\|\s*UNAVAILABLE:\s*(.*?)\s*\|\s*$", line)
        if m:
            failures.setdefault(m.group(1), []).append(f"UNAVAILABLE: {m.group(3)}")
    return failures


# ------------------------------------------------------------------------------------ CLI serve / stop


@dataclass(frozen=True)
class PidRecord:
    pid: int
    pgid: int
    http: str
    grpc: str
    metrics: str
    log_path: str
    model_repository: str
    started_at: float


def serve_background(
    model_repository: str | os.PathLike, pidfile: str | os.PathLike, **kwargs
) -> TritonServer:
    """Start a server that outlives this process; write ``pidfile`` (JSON) once every model is READY.

    ``kwargs`` go to ``TritonServer``. A pid file naming a live server is a UserError (stop it first).
    """
    pidfile = Path(pidfile)
    if pidfile.exists():
        try:
            rec = _read_pidfile(pidfile)
        except UserError:
            rec = None
        if rec and _is_tritonserver(rec.pid):
            raise UserError(
                f"a tritonserver (pid {rec.pid}, http {rec.http}) is already running from {pidfile}; stop it first"
            )
        pidfile.unlink()
    if kwargs.get("log_path") is None:
        kwargs["log_path"] = pidfile.with_suffix(".log")
    server = TritonServer(model_repository, **kwargs)
    server.start()
    server.detach()
    rec = PidRecord(
        pid=server.pid,
        pgid=server.pid,
        http=server.urls.http,
        grpc=server.urls.grpc,
        metrics=server.urls.metrics,
        log_path=str(server.log_path),
        model_repository=str(server.model_repository),
        started_at=time.time(),
    )
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    tmp = pidfile.with_name(pidfile.name + ".tmp")
    tmp.write_text(json.dumps(asdict(rec), indent=2) + "\n")
    tmp.replace(pidfile)
    return server


def _read_pidfile(pidfile: Path) -> PidRecord:
    try:
        return PidRecord(**json.loads(pidfile.read_text()))
    except FileNotFoundError:
        raise UserError(f"no pid file {pidfile}: no server was started with it (or it was stopped)") from None
    except (ValueError, TypeError) as exc:
        raise UserError(f"pid file {pidfile} is not one tritongen wrote ({exc}); delete it") from None


def _is_tritonserver(pid: int) -> bool:
    import psutil

    try:
        cmdline = psutil.Process(pid).cmdline()
    except psutil.Error:
        return False
    return _alive(pid) and bool(cmdline) and os.path.basename(cmdline[0]) == "tritonserver"


def read_pidfile(pidfile: str | os.PathLike) -> PidRecord:
    return _read_pidfile(Path(pidfile))


def stop_from_pidfile(pidfile: str | os.PathLike, grace_s: float = 10.0) -> bool:
    """Stop the server a pid file names and delete the file. False: it was not running (stale file)."""
    pidfile = Path(pidfile)
    rec = _read_pidfile(pidfile)
    running = _is_tritonserver(rec.pid)
    if running:
        _kill_group(rec.pid, rec.pgid, grace_s=grace_s)
    elif _group_alive(rec.pgid) and rec.pgid == rec.pid:
        try:  # the server died but stubs of its group live on
            os.killpg(rec.pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    pidfile.unlink(missing_ok=True)
    return running
