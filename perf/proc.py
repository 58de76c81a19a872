"""Process trees and their memory, through psutil (no hand-read /proc).

    group_rss_mb(pgid) -> float | None        # resident memory of a process group (tritonserver + its stubs)
    tree(pid) -> [psutil.Process]             # a process and everything it started
    stop_tree(pid, grace_s) -> [pid]          # SIGTERM the tree, SIGKILL what is left; the pids it ended
"""

from __future__ import annotations

import os

import psutil


def group_rss_mb(pgid: int) -> float | None:
    """Resident memory (MB) of every process whose process group is ``pgid``; None when none is found."""
    total, found = 0, False
    for p in psutil.process_iter(["memory_info"]):
        try:
            if os.getpgid(p.pid) != pgid or p.info["memory_info"] is None:
                continue
        except (ProcessLookupError, PermissionError):
            continue
        total += p.info["memory_info"].rss
        found = True
    return total / 2**20 if found else None


def tree(pid: int) -> list[psutil.Process]:
    """``pid`` and its descendants (empty when ``pid`` is gone)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def stop_tree(pid: int, grace_s: float = 5.0, extra: list[psutil.Process] = ()) -> list[int]:
    """End ``pid``, everything it started, and ``extra`` processes (e.g. a server a tool launched in its own
    session, found beforehand): SIGTERM, wait ``grace_s``, SIGKILL the rest. Returns the pids ended."""
    procs = {p.pid: p for p in [*tree(pid), *extra]}
    for p in procs.values():
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(list(procs.values()), timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=grace_s)
    return sorted(procs)
