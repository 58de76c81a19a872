"""Run a peer tool (Model Analyzer) and stop it, with everything it started, when it stops making progress.

Model Analyzer 1.58's quick search was seen looping on configurations it had already measured ("Existing
measurement found for run config. Skipping profile": 2.7 million log lines in 12 minutes), and the
tritonserver it launched kept running after it was stopped by hand. ``run_watched`` follows the tool's log:

- progress is a log line not seen before that is not a "skip" line (a new measurement, a new config);
- the tool is *stalled* when no progress came for ``stall_s`` seconds while at least ``min_repeats`` skip
  lines did (a tool busy measuring prints little, a looping one prints skip lines fast);
- stalled, or past ``timeout_s``, the tool and every process it started (``perf.proc.stop_tree``: the
  tritonserver it launched included, collected while the tool is alive) are stopped, and ``summary`` says so in
  one line.

    ProgressMonitor(stall_s, min_repeats).feed(lines, now); .stalled(now) -> bool
    run_watched(argv, log_path, timeout_s, stall_s, ...) -> Watched
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SKIP_RE = re.compile(r"Existing measurement found.*Skipping profile", re.IGNORECASE)


class ProgressMonitor:
    def __init__(self, stall_s: float, min_repeats: int = 50, skip_re: re.Pattern = SKIP_RE, now: float = 0.0):
        self.stall_s, self.min_repeats, self.skip_re = stall_s, min_repeats, skip_re
        self.seen: set[str] = set()
        self.last_progress = now
        self.skips_since = 0  # skip lines since the last progress
        self.skips_total = 0

    def feed(self, lines, now: float) -> None:
        for line in lines:
            text = line.strip()
            if not text:
                continue
            if self.skip_re.search(text):
                self.skips_since += 1
                self.skips_total += 1
            elif text not in self.seen:
                self.seen.add(text)
                self.last_progress = now
                self.skips_since = 0

    def stalled(self, now: float) -> bool:
        return self.skips_since >= self.min_repeats and now - self.last_progress >= self.stall_s


@dataclass
class Watched:
    returncode: int | str  # the exit status, or "stalled" / "timeout" when it was stopped
    wall_s: float
    stopped: list[int] = field(default_factory=list)  # pids ended (the tool and all it started)
    skips: int = 0
    summary: str = ""


def _tail(fh) -> list[str]:
    chunk = fh.read()
    return chunk.splitlines() if chunk else []


def run_watched(argv: list[str], log_path: Path, timeout_s: float, stall_s: float = 120.0, min_repeats: int = 50,
                env: dict | None = None, cwd: Path | None = None, poll_s: float = 1.0, name: str = "") -> Watched:
    """Run ``argv`` (stdout and stderr into ``log_path``) until it exits, stalls or passes ``timeout_s``."""
    from .proc import stop_tree, tree

    name = name or Path(argv[0]).name
    t0 = time.monotonic()
    mon = ProgressMonitor(stall_s, min_repeats, now=t0)
    with open(log_path, "w") as out, open(log_path, errors="replace") as follow:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        why = ""
        while proc.poll() is None:
            time.sleep(poll_s)
            now = time.monotonic()
            mon.feed(_tail(follow), now)
            if mon.stalled(now):
                why = "stalled"
            elif now - t0 > timeout_s:
                why = "timeout"
            if why:
                break
        if not why:
            return Watched(proc.returncode, time.monotonic() - t0, skips=mon.skips_total)
        started = tree(proc.pid)[1:]  # collected while the tool is alive: its children would be reparented
        stopped = stop_tree(proc.pid, extra=started)
        proc.wait()
    wall = time.monotonic() - t0
    what = (f"made no progress for {time.monotonic() - mon.last_progress:.0f} s ({mon.skips_since} "
            f"'Existing measurement found ... Skipping profile' lines since its last new measurement)"
            if why == "stalled" else f"ran past its {timeout_s:g} s timeout")
    return Watched(why, wall, stopped, mon.skips_total,
                   f"{name} {what}: stopped it and the {len(stopped) - 1} process(es) it started "
                   f"(pids {', '.join(map(str, stopped))}) after {wall:.0f} s")
