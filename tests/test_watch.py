"""perf.watch: a peer tool that loops on measurements it already has is stopped with everything it started.

Model Analyzer itself is too slow and too big to loop on purpose here: a synthetic tool (a Python script that
starts a child process, as Model Analyzer starts tritonserver, then prints Model Analyzer's skip line forever)
stands in for it. Real processes, real signals."""

from __future__ import annotations

import sys

import psutil

from perf.watch import ProgressMonitor, run_watched

SKIP = "[Model Analyzer] Existing measurement found for run config. Skipping profile"


def test_progress_is_a_new_line_and_a_stall_needs_repeated_skips_and_time():
    m = ProgressMonitor(stall_s=10, min_repeats=3, now=0.0)
    m.feed(["[Model Analyzer] Profiling cnn_config_0: concurrency=1", SKIP, SKIP], now=5.0)
    assert not m.stalled(now=20.0)  # only two skip lines since the last measurement
    m.feed([SKIP], now=6.0)
    assert m.stalled(now=15.1) and not m.stalled(now=14.9)
    m.feed(["[Model Analyzer] Profiling cnn_config_0: concurrency=1"], now=16.0)  # a line seen before: no progress
    assert m.stalled(now=16.0)
    m.feed(["[Model Analyzer] Profiling cnn_config_1: concurrency=1"], now=17.0)  # a new measurement
    assert not m.stalled(now=26.0) and m.skips_total == 3


def test_quiet_tool_busy_measuring_is_not_stalled():
    m = ProgressMonitor(stall_s=1, min_repeats=1, now=0.0)
    m.feed(["[Model Analyzer] Profiling cnn_config_0"], now=0.0)
    assert not m.stalled(now=1000.0)  # no skip line at all: a long measurement, not a loop


def test_a_looping_tool_and_the_server_it_started_are_stopped(tmp_path):
    script = tmp_path / "looping_tool.py"
    script.write_text(
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "print('child', child.pid, flush=True)\n"
        "print('[Model Analyzer] Profiling cnn_config_0', flush=True)\n"
        f"while True:\n    print({SKIP!r}, flush=True)\n    time.sleep(0.01)\n")
    log = tmp_path / "tool.log"
    w = run_watched([sys.executable, str(script)], log, timeout_s=300, stall_s=1.0, min_repeats=20, poll_s=0.2,
                    name="looping tool")
    child = int(next(ln.split()[1] for ln in log.read_text().splitlines() if ln.startswith("child ")))
    assert w.returncode == "stalled" and child in w.stopped and len(w.stopped) == 2
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE
    assert w.summary.startswith("looping tool made no progress for ") and "Skipping profile" in w.summary
    assert "stopped it and the 1 process(es) it started" in w.summary and "\n" not in w.summary


def test_a_tool_that_finishes_is_left_alone(tmp_path):
    w = run_watched([sys.executable, "-c", "print('done')"], tmp_path / "ok.log", timeout_s=300, stall_s=1.0,
                    poll_s=0.1)
    assert w.returncode == 0 and w.stopped == [] and w.summary == ""
    assert (tmp_path / "ok.log").read_text() == "done\n"
