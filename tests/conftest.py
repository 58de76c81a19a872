"""Shared fixtures: a real tritonserver (installed into .tools/ on first use) and servers that always stop."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def triton_install():
    """generator.serve.tools.TritonInstall: tritonserver 2.51 + python backend, installed once into .tools/."""
    from generator.serve.tools import ensure_tritonserver

    return ensure_tritonserver()


@pytest.fixture(scope="session")
def perf_analyzer_install(triton_install):
    from generator.serve.tools import ensure_perf_analyzer

    return ensure_perf_analyzer()


@pytest.fixture
def triton_server_factory(triton_install, tmp_path_factory):
    """``start(repo, **TritonServer kwargs) -> TritonServer`` (started, READY); all stopped at teardown."""
    from generator.serve.server import TritonServer

    servers = []

    def start(repo, **kwargs):
        kwargs.setdefault("install", triton_install)
        kwargs.setdefault("log_path", tmp_path_factory.mktemp("triton-log") / "tritonserver.log")
        server = TritonServer(repo, **kwargs)
        servers.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def workdir(tmp_path):
    """A fresh folder per test for a spec, its build/ and model_repository/."""
    return tmp_path
