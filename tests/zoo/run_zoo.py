"""Build the model zoo through tritongen and print a model x variant results table (``make zoo``).

    python tests/zoo/run_zoo.py [--models bert,resnet] [--variants onnx,torchscript] [--work build/zoo] [--force]

Each model is built in its own process (one spec per model, ``generator.spec.load_spec`` +
``generator.build.pipeline.build``), so a crash in one runtime cannot take the others down; results come from
``BuildReport.results``. A model whose build raises a ``UserError`` gets that one line in every cell;
a crash or a tritongen bug gets its first line (the full log is ``<work>/logs/<model>.log``).
Writes ``<work>/results.md`` and ``<work>/results.json``. Exit 1 when any cell crashed or hit a
tritongen bug; failed gates and unsupported variants are results, not errors.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

import registry  # noqa: E402
from registry import VARIANTS, ZOO, spec_for  # noqa: E402

MODEL_TIMEOUT_S = 1800
STATUS_OK = ("built", "cached")


# --------------------------------------------------------------------------- one model, in this process


def _entry(name: str) -> dict:
    return registry.ZOO[name] if name in registry.ZOO else registry.BIG[name]


def write_spec(name: str, variants, work: Path) -> Path:
    """``<work>/specs/<name>/spec.yaml`` with ``factories.py`` beside it."""
    import yaml

    folder = work / "specs" / name
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(HERE / "factories.py", folder / "factories.py")
    path = folder / "spec.yaml"
    text = yaml.safe_dump(spec_for([name], variants), sort_keys=False)
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return path


class _Progress:
    """generator.build.pipeline.Events printing one line per stage (to the model's log)."""

    def stage(self, model, text):
        print(f"[{model}] {text}", flush=True)

    def log(self, model, text):
        print(f"[{model}]   {text}", flush=True)

    def done(self, result):
        print(f"[{result.model}] {result.variant}: {result.status} {result.reason}".rstrip(), flush=True)


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return f"{type(e).__name__}: {s.splitlines()[0] if s else ''}"[:300]


def _cell(r) -> dict:
    v = r.verification or {}
    return {"status": r.status, "reason": r.reason, "build_s": round(r.build_s, 2), "verify_s": round(r.verify_s, 2),
            "max_abs": v.get("max_abs"), "min_cosine": v.get("min_cosine"), "task": v.get("task"), "bytes": r.bytes}


def build_one(name: str, variants=VARIANTS, work: Path = ROOT / "build" / "zoo", force: bool = False,
              progress: Path | None = None) -> dict:
    """Build zoo model ``name`` with tritongen's library API; one row of the table.

    ``cells[variant]``: status built | cached | failed | skipped | error (a UserError: the whole model)
    | bug (an exception from tritongen) | missing (no result), with reason and numbers. With ``progress``,
    the row is written there after each variant (``partial: true``), so a crash keeps the cells already built.
    """
    from generator.errors import UserError
    from generator.build.pipeline import build, Events
    from generator.spec import load_spec

    work = Path(work).resolve()
    row = {"model": name, "kind": _entry(name).get("kind", ""), "cells": {}, "error": None, "wall_s": 0.0}
    t0 = time.perf_counter()
    try:
        spec = load_spec(write_spec(name, variants, work))

        def done(result):
            _Progress.done(None, result)
            row["cells"][result.variant] = _cell(result)
            if progress is not None:
                progress.write_text(json.dumps({**row, "partial": True}, indent=1))

        events = type("ZooEvents", (_Progress, Events), {"done": lambda self, r: done(r)})()
        report = build(spec, work / "repos" / name, work / "build", force=force, events=events)
        for r in report.results:
            row["cells"][r.variant] = _cell(r)
        row["timings"] = report.timings.get(name, {})
    except UserError as e:
        row["error"] = {"status": "error", "reason": str(e)}
    except Exception as e:  # a bug in tritongen (or a library under it): keep the traceback in the log
        traceback.print_exc()
        row["error"] = {"status": "bug", "reason": _first_line(e)}
    row["wall_s"] = round(time.perf_counter() - t0, 1)
    for v in variants:
        if v not in row["cells"]:
            row["cells"][v] = dict(row["error"] or {"status": "missing", "reason": "no result reported"})
    return row


# --------------------------------------------------------------------------- all models, one process each


def run_child(name: str, variants, work: Path, force: bool) -> dict:
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    out = work / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", name, "--work", str(work),
           "--variants", ",".join(variants)] + (["--force"] if force else [])
    t = time.perf_counter()
    with open(logs / f"{name}.log", "w") as log:
        try:
            p = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, timeout=MODEL_TIMEOUT_S)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    row = json.loads(out.read_text()) if out.is_file() else None
    if row is not None and not row.get("partial"):
        return row
    if rc == "timeout":
        why = f"timed out after {MODEL_TIMEOUT_S} s"
    elif isinstance(rc, int) and rc < 0:
        why = f"process killed by {signal.Signals(-rc).name}"
    else:
        why = f"process exited {rc}"
    cell = {"status": "crashed", "reason": f"{why} (see logs/{name}.log)"}
    done = (row or {}).get("cells", {})
    return {"model": name, "kind": _entry(name).get("kind", ""), "error": cell, "wall_s": round(time.perf_counter() - t, 1),
            "cells": {v: done.get(v) or dict(cell) for v in variants}}


def cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    flags = set(re.findall(r"\b(avx512_vnni|avx512f|avx_vnni|avx512_bf16|amx_\w+|avx2)\b", text))
    model = re.search(r"model name\s*:\s*(.+)", text)
    return f"{model.group(1).strip() if model else 'x86'} ({', '.join(sorted(flags)) or 'no AVX2'})"


# --------------------------------------------------------------------------- the table


def _num(x) -> str:
    return f"{x:.1e}" if isinstance(x, (int, float)) else "-"


def cell_text(c: dict, notes: list[str]) -> str:
    s = c["status"]
    t = c.get("build_s", 0) + c.get("verify_s", 0)
    if s in STATUS_OK:
        cos = c.get("min_cosine")
        return f"✓ {t:.1f}s Δ{_num(c.get('max_abs'))}" + (f" cos {cos:.4f}" if cos is not None and cos < 0.9999 else "")
    note = c.get("reason") or s
    if note not in notes:
        notes.append(note)
    gate = (c.get("reason") or "").startswith(("gate failed", "over tolerance"))
    label = {"failed": "✗ gate" if gate else "✗ failed", "skipped": "– unsupported", "error": "✗ error", "bug": "✗ bug",
             "crashed": "✗ crashed", "missing": "✗ missing"}.get(s, s)
    return f"{label} [{notes.index(note) + 1}]"


def table(rows: list[dict], variants) -> str:
    notes: list[str] = []
    lines = ["| model | kind | " + " | ".join(variants) + " | wall |",
             "|---|---|" + "---|" * len(variants) + "---|"]
    for r in rows:
        cells = [cell_text(r["cells"][v], notes) for v in variants]
        lines.append(f"| {r['model']} | {r['kind']} | " + " | ".join(cells) + f" | {r['wall_s']:.0f}s |")
    ok = sum(r["cells"][v]["status"] in STATUS_OK for r in rows for v in variants)
    lines += ["", f"{ok}/{len(rows) * len(variants)} cells built and verified; "
              "✓ time = build + verify (s), Δ = max |variant − PyTorch|, cos shown when < 0.9999.", ""]
    lines += [f"[{i}] {n}" for i, n in enumerate(notes, 1)]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="", help="comma-separated zoo models (default: all)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--work", default=str(ROOT / "build" / "zoo"))
    ap.add_argument("--force", action="store_true", help="rebuild even what the cache holds")
    ap.add_argument("--big", action="store_true", help="also the generated model over 2 GB (slow, ~15 GB disk)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(a.work).resolve()
    variants = tuple(v for v in a.variants.split(",") if v)
    if a.one:
        out = work / "results" / f"{a.one}.json"
        row = build_one(a.one, variants, work, a.force, progress=out)
        out.write_text(json.dumps(row, indent=1))
        return 0
    names = [n for n in a.models.split(",") if n] or list(ZOO) + (list(registry.BIG) if a.big else [])
    unknown = [n for n in names if n not in registry.ZOO_ALL]
    if unknown:
        print(f"--models: unknown zoo model(s) {', '.join(unknown)}; known: {', '.join(registry.ZOO_ALL)}", file=sys.stderr)
        return 1
    rows = []
    t0 = time.perf_counter()
    for n in names:
        print(f"zoo: building {n} ...", flush=True)
        row = run_child(n, variants, work, a.force)
        rows.append(row)
        print(f"zoo: {n} done in {row['wall_s']:.0f}s: "
              + ", ".join(f"{v} {row['cells'][v]['status']}" for v in variants), flush=True)
    header = (f"# tritongen model zoo\n\n{len(rows)} models x {len(variants)} variants, "
              f"{time.perf_counter() - t0:.0f} s wall on {cpu_flags()}, {os.cpu_count()} cores "
              "(timings are noisy on shared machines).\n\n")
    text = header + table(rows, variants)
    work.mkdir(parents=True, exist_ok=True)
    (work / "results.md").write_text(text)
    (work / "results.json").write_text(json.dumps({"cpu": cpu_flags(), "variants": list(variants), "rows": rows},
                                                  indent=1))
    print(text)
    bad = [(r["model"], v) for r in rows for v in variants if r["cells"][v]["status"] in ("crashed", "bug", "missing")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
