"""The ``tritongen`` command line. It only calls the library: everything here is possible from Python."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from .errors import UserError


def _console(stderr: bool = False):
    import shutil

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else max(shutil.get_terminal_size((140, 24)).columns, 140)
    return Console(stderr=stderr, highlight=False, width=width)


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as e:
            _console(stderr=True).print(f"[bold red]error:[/] {e}", markup=True, soft_wrap=True)
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="tritongen")
def cli():
    """tritongen: PyTorch checkpoints in, a verified Triton model repository out.

    \b
    A spec file (YAML) names your models, their inputs/outputs and the variants
    you want (onnx, onnx-fp16, onnx-int8, torchscript, ...). `tritongen build`
    exports each model to ONNX, builds every variant, verifies each one
    numerically against PyTorch, renders config.pbtxt from jinja2 templates,
    checks it with Triton's own schema, and swaps the repository in atomically.

    \b
    Typical use:
      tritongen build examples/spec.yaml -o model_repository
      tritongen validate model_repository
      tritonserver --model-repository model_repository

    Exit codes: 0 ok, 1 bad input (one line names the field and the fix),
    3 some variant failed verification (the others are written).
    """


@cli.command()
@click.argument("spec", type=click.Path(path_type=Path))
@click.option("-o", "--output", "output", type=click.Path(path_type=Path), default=Path("model_repository"),
              show_default=True, help="The model repository to write (replaced atomically).")
@click.option("--only", multiple=True, metavar="NAME", help="Build only this model (repeatable); others are kept.")
@click.option("--build-dir", type=click.Path(path_type=Path), default=Path("build"), show_default=True,
              help="Cache, intermediates, logs, reproduce scripts, manifests.")
@click.option("--target", type=click.Choice(["triton", "embedded"]), default="triton", show_default=True,
              help="triton: native backends for the NGC tritonserver. embedded: python-backend runners for the "
                   "CPU tritonserver that `tritongen serve` starts.")
@click.option("--templates", type=click.Path(path_type=Path), default=None,
              help="Folder with your own *.pbtxt.j2 templates (files missing there fall back to ours).")
@click.option("--force", is_flag=True, help="Rebuild even what is cached.")
@click.option("--keep-failed", is_flag=True, help="Write variants that failed verification too (marked in manifest).")
@click.option("--require-all", is_flag=True,
              help="Treat a skipped variant (no GPU, no TensorRT on this machine) as a failure.")
def build(spec, output, only, build_dir, target, templates, force, keep_failed, require_all):
    """Build the model repository described by SPEC."""
    from .pipeline import build as run_build
    from .spec import load_spec

    t0 = time.perf_counter()
    s = load_spec(spec)
    console = _console()
    with _Progress(console) as events:
        report = run_build(s, output, build_dir, only=tuple(only), target=target, templates=templates,
                           force=force, keep_failed=keep_failed, events=events)
    console.print(summary_table(report))
    state = "written" if report.changed else "unchanged (nothing to rebuild)"
    console.print(f"repository {report.output} {state} in {time.perf_counter() - t0:.1f}s")
    skipped = [r for r in report.results if r.status == "skipped"]
    if report.failed or (require_all and skipped):
        n = len(report.failed) + (len(skipped) if require_all else 0)
        console.print(f"[red]{n} variant(s) failed or were skipped; see the table and build/<model>/<variant>/build.log")
        sys.exit(3)


class _Progress:
    """Rich progress: one line per model showing its current stage."""

    def __init__(self, console):
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = console
        self.progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.fields[model]}[/]"),
                                 TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                                 transient=True)
        self.tasks = {}

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def stage(self, model, text):
        if model not in self.tasks:
            self.tasks[model] = self.progress.add_task(text, model=model, total=None)
        self.progress.update(self.tasks[model], description=text)

    def log(self, model, text):
        self.console.log(f"{model}: {text}")

    def done(self, r):
        self.stage(r.model, f"{r.variant}: {r.status}")


def summary_table(report):
    from rich.table import Table

    t = Table(title="Variants", title_justify="left")
    for col in ("model", "variant", "status", "max |Δ| vs torch", "cosine", "size", "build s", "verify s"):
        t.add_column(col, justify="right" if col not in ("model", "variant", "status") else "left")
    colors = {"built": "green", "cached": "green", "failed": "red", "skipped": "yellow"}
    for r in report.results:
        v = r.verification or {}
        status = f"[{colors[r.status]}]{r.status}[/]" + (f" ({r.reason})" if r.reason else "")
        t.add_row(r.model, r.variant, status,
                  f"{v['max_abs']:.2e}" if "max_abs" in v else "-",
                  f"{v['min_cosine']:.6f}" if "min_cosine" in v else "-",
                  _size(r.bytes), f"{r.build_s:.1f}", f"{r.verify_s:.1f}")
    return t


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@cli.command()
@click.argument("repository", type=click.Path(path_type=Path))
@click.option("--triton-version", "triton_release", metavar="RELEASE", default=None,
              help="Target tritonserver release (e.g. 24.10): warn when a TensorRT plan was built with another "
                   "TensorRT than that release bundles.")
@click.option("--compute-capability", "target_cc", metavar="CC", default=None,
              help="Target GPU compute capability (e.g. 9.0): warn when a plan was built for another.")
def validate(repository, triton_release, target_cc):
    """Check every config.pbtxt in REPOSITORY with Triton's schema and tritongen's semantic checks.

    Works on any repository, hand-written ones too: parses each config with
    tritonclient's model_config_pb2, then checks max_batch_size against dynamic
    batching and warm-up, dims, and (for ONNX) names/dtypes/shapes against the
    real graph, and ensemble wiring. Exit 1 when anything is wrong.
    """
    from rich.table import Table

    from .validate import validate_repository

    if triton_release:
        from .tensorrt import trt_version_for_triton

        trt_version_for_triton(triton_release, where="--triton-version")
    reports = validate_repository(repository, triton_release, target_cc)
    console = _console()
    t = Table(title=f"{repository}", title_justify="left")
    t.add_column("model")
    t.add_column("engine")
    t.add_column("result")
    from .validate import engine_of

    for r in reports:
        t.add_row(r.name, engine_of(r.config) if r.config else "?", "[green]ok[/]" if r.ok else f"[red]{len(r.problems)} problem(s)[/]")
    console.print(t)
    for w in (w for r in reports for w in r.warnings):
        _console(stderr=True).print(f"[yellow]warning:[/] {w}", soft_wrap=True)
    bad = [p for r in reports for p in r.problems]
    for p in bad:
        _console(stderr=True).print(f"[red]error:[/] {p}", soft_wrap=True)
    if bad:
        sys.exit(1)
    console.print(f"{len(reports)} model(s) valid")


def main():
    cli(prog_name="tritongen")


if __name__ == "__main__":
    main()
