"""The build summary ``tritongen build`` prints: the variants table and the INT8 notes (rich)."""

from __future__ import annotations

from rich.markup import escape  # model names, warnings and notes are text, never rich markup


def console(stderr: bool = False):
    """The CLI's rich console: full width when not a terminal (logs), no highlighting."""
    import shutil
    import sys

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else max(shutil.get_terminal_size((140, 24)).columns, 140)
    return Console(stderr=stderr, highlight=False, width=width)


def summary_table(report):
    from rich.table import Table

    t = Table(title="Variants", title_justify="left")
    for col in ("model", "variant", "status", "max |Δ| vs torch", "cosine", "task gate", "size", "build s", "verify s"):
        t.add_column(col, justify="right" if col not in ("model", "variant", "status", "task gate") else "left")
    colors = {"built": "green", "cached": "green", "failed": "red", "skipped": "yellow"}
    for r in report.results:
        v = r.verification or {}
        v = v if v.get("checks") else {}  # stopped before a comparison: no numbers, not the defaults
        status = f"[{colors[r.status]}]{r.status}[/]"
        t.add_row(r.model, r.variant, status,
                  f"{v['max_abs']:.2e}" if "max_abs" in v else "-",
                  f"{v['min_cosine']:.6f}" if "min_cosine" in v else "-",
                  _task_metrics(v.get("task")),
                  _size(r.bytes), f"{r.build_s:.1f}", f"{r.verify_s:.1f}")
    return t


def _task_metrics(task: dict | None) -> str:
    """e.g. 'top-1 0.94, top-5 0.97 (64 random)' for a classification gate."""
    if not task:
        return "-"
    parts = [f"{label} {task[k]:.3f}" for k, label in (("top1", "top-1"), ("top5", "top-5"), ("mean_cosine", "mean cos"))
             if task.get(k) is not None]
    return f"{', '.join(parts)} ({task.get('samples', '?')} {task.get('data', '')})".replace(" )", ")")


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def int8_note(console, report) -> None:
    """What INT8 buys on this CPU, the recipe each INT8 variant kept, and task sets too small to mean much
    (build summary)."""
    from generator.tables.isa import isa_class, speed_note

    warned = set()
    for r in report.results:  # too few samples for the task metrics to mean much: say so once per model
        w = ((r.verification or {}).get("task") or {}).get("warning")
        if w and r.model not in warned:
            warned.add(r.model)
            console.print(f"  [yellow]warning:[/] {escape(f'{r.model}: {w}')}", soft_wrap=True)
    for r in report.results:  # verified, but only on inputs that take the branch the trace kept
        if r.written and r.info.get("traced_branch"):
            console.print(f"  [yellow]warning:[/] {escape(f'{r.model}/{r.variant}: ' + r.info['traced_branch'])}",
                          soft_wrap=True)
    int8 = [r for r in report.results if r.written and (r.info.get("isa") or r.variant.endswith("int8"))]
    for r in int8:
        if r.info.get("attempts"):
            console.print(f"  {r.model}/{r.variant}: recipe '{r.info.get('recipe')}' after "
                          f"{len(r.info['attempts'])} attempt(s) in {r.info.get('search_s', 0)}s (CPU {isa_class()})")
    note = speed_note("int8") if int8 else None
    if note:
        console.print(f"  [yellow]note:[/] {escape(note)}; `tritongen bench` shows speed vs this machine's ceiling",
                      soft_wrap=True)
