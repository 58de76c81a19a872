"""The ``tritongen`` command line. It only calls the library: everything here is possible from Python."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
from rich.markup import escape  # user text (paths, messages, "[rule-id: source]") is text, never rich markup

from .errors import UserError, signals_raise
from generator.build.summary import _size, console as _console, int8_note as _int8_note, summary_table  # noqa: F401


class _Group(click.Group):
    def invoke(self, ctx):
        for stream in (sys.stdout, sys.stderr):  # an ASCII terminal (LC_ALL=C) prints '?' for 'Δ', never fails
            if hasattr(stream, "reconfigure"):
                stream.reconfigure(errors="replace")
        try:
            with signals_raise():  # Ctrl-C / SIGTERM: staging discarded, locks freed, exit 130
                return super().invoke(ctx)
        except UserError as e:
            _console(stderr=True).print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)
            sys.exit(1)
        except KeyboardInterrupt:
            _console(stderr=True).print("[bold red]interrupted:[/] stopped; an output being written keeps its previous state")
            sys.exit(130)


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
      tritongen build examples/spec.yaml -o model_repository     # for the NGC tritonserver
      tritongen validate model_repository
      tritonserver --model-repository model_repository
      tritongen bench examples/spec.yaml                         # speed table, in-process

    \b
    Here, on CPU, with the embedded tritonserver:
      tritongen build examples/spec.yaml -o build/embedded_repository --target embedded
      tritongen serve build/embedded_repository                  # ... tritongen stop
      tritongen perf examples/spec.yaml --repo build/embedded_repository

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
@click.option("--wait-lock", "wait_lock", type=float, default=0.0, show_default=True, metavar="SECONDS",
              help="Another build writing the same output holds its lock: wait this long for it (0: fail at once).")
@click.option("--triton-version", "triton_version", metavar="RELEASE", default=None,
              help="Target Triton release (README 'Target releases'); default the spec's triton_version, else the "
                   "newest known (24.10 for --target embedded).")
def build(spec, output, only, build_dir, target, templates, force, keep_failed, require_all, wait_lock, triton_version):
    """Build the model repository described by SPEC."""
    from generator.build.pipeline import build as run_build
    from .spec import load_spec

    t0 = time.perf_counter()
    s = load_spec(spec)
    console = _console()
    with _Progress(console) as events:
        report = run_build(s, output, build_dir, only=tuple(only), target=target, templates=templates,
                           force=force, keep_failed=keep_failed, events=events, lock_wait_s=wait_lock,
                           triton_version=triton_version)
    console.print(summary_table(report))
    for r in report.results:
        if r.reason:
            console.print(f"  {r.model}/{r.variant} {r.status}: {r.reason}", soft_wrap=True, markup=False)
    _int8_note(console, report)
    state = "written" if report.changed else "unchanged (nothing to rebuild)"
    console.print(f"repository {report.output} {state} in {time.perf_counter() - t0:.1f}s", markup=False)
    skipped = [r for r in report.results if r.status == "skipped"]
    if report.failed or (require_all and skipped):
        n = len(report.failed) + (len(skipped) if require_all else 0)
        console.print(f"[red]{n} variant(s) failed or were skipped; see the table and build/<model>/<variant>/build.log")
        sys.exit(3)


class _RichProgress:
    """A context manager around a rich ``Progress`` held in ``self.progress``."""

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)


class _Progress(_RichProgress):
    """Rich progress: one line per model showing its current stage."""

    def __init__(self, console):
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = console
        self.progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.fields[model]}[/]"),
                                 TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                                 transient=True)
        self.tasks = {}

    def stage(self, model, text):
        if model not in self.tasks:
            self.tasks[model] = self.progress.add_task(text, model=model, total=None)
        self.progress.update(self.tasks[model], description=text)

    def log(self, model, text):
        self.console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {escape(f'{model}: {text}')}", soft_wrap=True)

    def done(self, r):
        self.stage(r.model, f"{r.variant}: {r.status}")


@cli.command()
@click.argument("repository", type=click.Path(path_type=Path))
@click.option("--triton-version", "triton_release", metavar="RELEASE", default=None,
              help="Target tritonserver release (e.g. 24.10): its native backends' known failures (README 'Target "
                   "releases'), and a TensorRT plan built with another TensorRT than that release bundles.")
@click.option("--compute-capability", "target_cc", metavar="CC", default=None,
              help="Target GPU compute capability (e.g. 9.0): warn when a plan was built for another.")
def validate(repository, triton_release, target_cc):
    """Check every config.pbtxt in REPOSITORY with Triton's schema and tritongen's semantic checks.

    Works on any repository, hand-written ones too: parses each config with tritonclient's model_config_pb2,
    then checks max_batch_size against dynamic batching and warm-up, dims, and (for ONNX) names/dtypes/shapes
    against the real graph, and ensemble wiring. Exit 1 when anything is wrong.
    """
    from rich.table import Table

    from generator.config.validate import validate_repository

    reports = validate_repository(repository, triton_release, target_cc)
    console = _console()
    t = Table(title=f"{repository}", title_justify="left")
    t.add_column("model")
    t.add_column("engine")
    t.add_column("result")
    from generator.config.validate import engine_of

    for r in reports:
        t.add_row(r.name, engine_of(r.config) if r.config else "?", "[green]ok[/]" if r.ok else f"[red]{len(r.problems)} problem(s)[/]")
    console.print(t)
    _isa_warnings(repository)

    for w in (w for r in reports for w in r.warnings):
        _console(stderr=True).print(f"[yellow]warning:[/] {escape(w)}", soft_wrap=True)
    bad = [p for r in reports for p in r.problems]
    for p in bad:
        _console(stderr=True).print(f"[red]error:[/] {escape(p)}", soft_wrap=True)
    if bad:
        sys.exit(1)
    console.print(f"{len(reports)} model(s) valid")


@cli.command()
@click.argument("spec", type=click.Path(path_type=Path))
@click.option("--repo", type=click.Path(path_type=Path), default=Path("model_repository"), show_default=True,
              help="The repository `tritongen build` wrote (variants whose gate passed are timed).")
@click.option("--batches", default="1,8", show_default=True, help="Comma-separated batch sizes.")
@click.option("--threads", type=int, default=2, show_default=True, help="Intra-op threads, the same for every runtime.")
@click.option("--warmup", type=int, default=3, show_default=True)
@click.option("--iters", type=int, default=10, show_default=True)
@click.option("--only", multiple=True, metavar="NAME", help="Only this model (repeatable).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("perf/results"), show_default=True)
def bench(spec, repo, batches, threads, warmup, iters, only, out):
    """Speed table: every verified variant in-process vs PyTorch eager fp32.

    Each runtime is timed in its own process (no thread pool disturbs another), warm-up
    first, threads pinned and equal for all. Writes CSV + Markdown under
    perf/results/bench-<time>/. A benchmark, not a test: numbers vary with machine load.
    """
    from perf.bench import run_bench

    try:
        sizes = tuple(int(b) for b in batches.split(","))
    except ValueError:
        raise UserError(f"--batches {batches}: give comma-separated integers, e.g. 1,8")
    run_bench(spec, repo, batches=sizes, threads=threads, warmup=warmup, iters=iters, out_dir=out, only=tuple(only))


@cli.command()
@click.argument("spec", type=click.Path(path_type=Path))
@click.option("--repo", type=click.Path(path_type=Path), default=Path("build/embedded_repository"), show_default=True,
              help="The repository to measure (served here unless --url is given).")
@click.option("--url", default=None, metavar="HOST:PORT",
              help="gRPC endpoint of a running Triton (e.g. an NGC server on a GPU box); default: serve --repo here.")
@click.option("--http-url", default=None, metavar="HOST:PORT", help="HTTP endpoint of that Triton (--protocol http).")
@click.option("--models", default=None, help="Comma-separated model names (spec or Triton names); default: all.")
@click.option("--concurrency", default="1,2,4,8", show_default=True)
@click.option("--latency-budget-ms", type=float, default=1000.0, show_default=True,
              help="p99 budget: the best variant is chosen among those within it.")
@click.option("--driver", type=click.Choice(["loadgen", "perf_analyzer", "both"]), default="loadgen", show_default=True)
@click.option("--protocol", type=click.Choice(["grpc", "http", "both"]), default="grpc", show_default=True)
@click.option("--measurement-s", type=float, default=10.0, show_default=True, help="Window per concurrency step.")
@click.option("--max-requests", type=int, default=2000, show_default=True, help="Request cap per step.")
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Interleaved rounds of every step and baseline (medians, 95% intervals); each round's window "
                   "is --measurement-s / rounds (at least 2 s).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("perf/results"), show_default=True)
@click.option("--run-id", default=None, help="The run folder's name under --out (default: a timestamp).")
@click.option("--no-baselines", is_flag=True, help="Skip the in-process and PyTorch eager baselines.")
@click.option("--no-op-profile", is_flag=True, help="Skip the best variant's per-operator profile (Where the time goes).")
@click.option("--request-rates", default="", metavar="R1,R2,...",
              help="Also an open loop: Poisson request rates (requests/s) to sweep per variant, e.g. 5,10,20,40.")
@click.option("--rates-beyond", type=click.IntRange(min=0), default=4, show_default=True,
              help="Open loop: while every given rate is held, up to this many more rates, 1.5x each.")
@click.option("--headline-rounds", type=click.IntRange(min=0), default=None, help="Rounds of the best variant served, "
              "in-process and eager side by side, for the headline ratios [default: max(--rounds, 5); 0: off].")
@click.option("--max-isa", type=click.Choice(["avx2"]), default=None, help="Measure as on a CPU with at most this ISA "
              "(oneDNN, OpenVINO, ATen, OpenBLAS capped; ONNX Runtime variants skipped: no cap reaches them).")
@click.option("--images", type=click.Path(path_type=Path), default=None,
              help="A folder of JPEG/PNG files: also measure the image ensembles with them (one BYTES element each).")
@click.option("--sentences", type=click.Path(path_type=Path), default=None,
              help="A text file, one sentence a line: also measure the text ensembles with them.")
def perf(spec, repo, url, http_url, models, concurrency, latency_budget_ms, driver, protocol, measurement_s,
         max_requests, rounds, out, run_id, no_baselines, no_op_profile, images, sentences, request_rates, rates_beyond,
         headline_rounds, max_isa):
    """Sweep concurrency through a real Triton, compare every variant, report with plots, name the best.

    Drives the server with tritonclient (gRPC/HTTP) and/or perf_analyzer, times each variant in-process and PyTorch
    eager, and writes perf/results/<run>/report.md|html, results.csv|json, plots and the exact commands.
    """
    from perf.harness import run_perf
    from perf.inputs import RealInputs

    if url is None:
        _isa_warnings(repo)
    levels = _numbers(concurrency, "--concurrency", "integers above 0, like 1,2,4,8", int, positive=True)
    rates = _numbers(request_rates, "--request-rates", "request rates above 0 per second, like 5,10,20", positive=True)
    run_dir = run_perf(url, repo, spec, [m for m in (models or "").split(",") if m] or None, levels, latency_budget_ms,
                       out, driver, measurement_s, max_requests, protocol=protocol, http_url=http_url,
                       baselines=not no_baselines, op_profile=not no_op_profile, rounds=rounds, run_id=run_id,
                       real_inputs=RealInputs(images, sentences), request_rates=rates or None,
                       rates_beyond=rates_beyond, headline_rounds=headline_rounds, max_isa=max_isa)
    _console().print(f"report: {run_dir / 'report.md'} (and report.html)", markup=False)


DEFAULT_PIDFILE = Path("build/tritonserver.json")


@cli.command()
@click.argument("repository", type=click.Path(path_type=Path))
@click.option("--http-port", type=int, default=None, help="Default: a free port.")
@click.option("--grpc-port", type=int, default=None, help="Default: a free port.")
@click.option("--metrics-port", type=int, default=None, help="Default: a free port.")
@click.option("--pidfile", type=click.Path(path_type=Path), default=DEFAULT_PIDFILE, show_default=True,
              help="Where the running server is recorded (for `tritongen stop`).")
@click.option("--foreground", is_flag=True, help="Stay attached; Ctrl-C stops the server.")
@click.option("--timeout", "timeout_s", type=float, default=300.0, show_default=True,
              help="Seconds to wait for every model to be READY.")
def serve(repository, http_port, grpc_port, metrics_port, pidfile, foreground, timeout_s):
    """Serve REPOSITORY with the embedded tritonserver (CPU, python backend), bound to 127.0.0.1.

    Installs the server into .tools/ on first use, waits until every model is READY and prints the endpoints.
    Build the repository with `tritongen build SPEC --target embedded` (the NGC tritonserver loads the default
    `--target triton` repository; see README "Serving it"). If a model fails to load, exits 1 naming the model
    with the server's own error.
    """
    from generator.serve.server import TritonServer, serve_background

    if not Path(repository).is_dir():
        raise UserError(f"{repository}: not a folder; build one with `tritongen build SPEC -o {repository} --target embedded`")
    _refuse_native_repository(Path(repository))
    console = _console()
    kwargs = dict(http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port, startup_timeout_s=timeout_s)
    if foreground:
        with TritonServer(repository, **kwargs) as server:
            _print_endpoints(console, server)
            try:
                server.process.wait()
            except KeyboardInterrupt:
                console.print("stopping")
        return
    server = serve_background(repository, pidfile, **kwargs)
    _print_endpoints(console, server)
    console.print(f"stop it with: tritongen stop --pidfile {pidfile}", markup=False)


def _refuse_native_repository(repo: Path) -> None:
    """The embedded server has only the python backend: say so before it fails on a native config."""
    from generator.config.validate import parse_config

    native = []
    for cfg_path in sorted(repo.glob("*/config.pbtxt")):
        cfg, problem = parse_config(cfg_path.read_text(), str(cfg_path))
        if cfg is not None and cfg.platform not in ("", "ensemble") and cfg.backend != "python":
            native.append(f"{cfg_path.parent.name} ({cfg.platform or cfg.backend})")
    if native:
        raise UserError(f"{repo}: {native[0]} needs a native backend the embedded CPU server lacks (it has only python); "
                        "rebuild with `tritongen build SPEC --target embedded`, or serve it with the NGC tritonserver")


def _print_endpoints(console, server) -> None:
    index = server.repository_index()
    console.print(escape(f"tritonserver ready in {server.ready_time_s:.1f}s (pid {server.pid}, log {server.log_path})"))
    console.print(f"  gRPC    {server.urls.grpc}")
    console.print(f"  HTTP    {server.urls.http}")
    console.print(f"  metrics {server.urls.metrics}")
    for m in index:
        console.print(f"  {m.get('state', '?'):6} {m['name']}", markup=False)


@cli.command()
@click.option("--pidfile", type=click.Path(path_type=Path), default=DEFAULT_PIDFILE, show_default=True)
def stop(pidfile):
    """Stop the server `tritongen serve` started (by the pid in PIDFILE)."""
    from generator.serve.server import stop_from_pidfile

    if not Path(pidfile).is_file():
        raise UserError(f"{pidfile}: no running server recorded; start one with `tritongen serve REPOSITORY`")
    running = stop_from_pidfile(pidfile)
    _console().print("stopped" if running else "it was not running (stale pid file removed)")


@cli.command()
@click.argument("repository", type=click.Path(path_type=Path))
@click.argument("url")
@click.option("--endpoint-url", default=None, metavar="URL",
              help="S3-compatible endpoint (MinIO, Ceph, moto), e.g. http://minio:9000; default: AWS_ENDPOINT_URL, "
                   "else AWS.")
@click.option("--dry-run", is_flag=True, help="Print what would be uploaded, copied and deleted; write nothing.")
@click.option("--retries", type=int, default=5, show_default=True,
              help="Attempts per request (botocore standard mode: exponential backoff with jitter).")
def publish(repository, url, endpoint_url, dry_run, retries):
    """Publish REPOSITORY to object storage (URL: s3://BUCKET/PREFIX) for a Triton fleet.

    \b
    Incremental by sha256 (a manifest object and per-object metadata): an unchanged
    repository uploads nothing. Atomic per model for polling servers: changed
    artifacts go to a new version folder, then config.pbtxt (pinned to that version)
    is written last. Credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or
    AWS_PROFILE; region: AWS_DEFAULT_REGION. Prints the URL to give
    `tritonserver --model-repository`.
    """
    from generator.ship.publish import publish as run_publish

    console = _console()
    with _PublishProgress(console) as progress:
        report = run_publish(repository, url, endpoint_url=endpoint_url, dry_run=dry_run, retries=retries,
                             progress=progress)
    verb = "would" if dry_run else ""
    for op in report.ops if dry_run else []:
        console.print(f"  {op.kind:6} {op.key}" + (f"  ({_size(op.bytes)})" if op.kind == "upload" else ""),
                      soft_wrap=True, markup=False)
    console.print(f"{report.url}: {verb + ' ' if verb else ''}upload {report.count('upload')} file(s) "
                  f"({_size(report.uploaded_bytes)}), copy {report.count('copy')}, delete {report.count('delete')}; "
                  f"{len(report.unchanged)} model(s) unchanged", soft_wrap=True, markup=False)
    for name, version in sorted(report.versions.items()):
        console.print(f"  {name}: version {version}", markup=False)
    console.print(f"serve it with: tritonserver --model-repository={report.triton_url}", soft_wrap=True, markup=False)


class _PublishProgress(_RichProgress):
    """Rich progress for publish: bytes uploaded and the current object."""

    def __init__(self, console):
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), console=console, transient=True)
        self.task = None


    def start(self, total_bytes, n_ops):
        self.task = self.progress.add_task("publishing", total=max(total_bytes, 1))

    def op(self, op):
        if self.task is not None:
            self.progress.update(self.task, description=f"{op.kind} {op.key}")

    def advance(self, nbytes):
        if self.task is not None:
            self.progress.advance(self.task, nbytes)


@cli.command()
@click.argument("spec", type=click.Path(path_type=Path))
@click.option("--k8s", "out_dir", type=click.Path(path_type=Path), required=True, metavar="DIR",
              help="Folder for the manifests (`kubectl apply -f DIR`).")
@click.option("--model-repository", "model_repository", required=True, metavar="URL",
              help="The published repository, as `tritongen publish` prints it (s3://BUCKET/PREFIX, or "
                   "s3://http://HOST:PORT/BUCKET/PREFIX for MinIO and other S3-compatible stores).")
@click.option("--name", default=None, help="Name of every object (default: from the spec file name).")
@click.option("--namespace", default=None)
@click.option("--release", default=None, metavar="YY.MM",
              help="tritonserver release of the NGC image (default: the spec's TensorRT triton_release, else 24.10).")
@click.option("--replicas", type=int, default=1, show_default=True, help="Minimum replicas.")
@click.option("--max-replicas", type=int, default=4, show_default=True, help="HPA ceiling.")
@click.option("--secret", default=None, metavar="NAME",
              help="Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_DEFAULT_REGION (envFrom).")
@click.option("--gpus", type=int, default=1, show_default=True, help="nvidia.com/gpu per pod, when a variant needs one.")
@click.option("--cpu", default="2", show_default=True, help="CPU request (and limit on CPU-only pods).")
@click.option("--memory", default="4Gi", show_default=True)
@click.option("--poll-secs", type=int, default=30, show_default=True,
              help="Repository poll interval (a new publish rolls out without restart); 0: no polling.")
@click.option("--hpa-queue-us", type=int, default=2000, show_default=True,
              help="HPA target: average queue time per request (microseconds) per pod.")
@click.option("--kserve", is_flag=True, help="A KServe InferenceService (Triton runtime) instead of "
                                              "Deployment + Service + HPA.")
def deploy(spec, out_dir, model_repository, name, namespace, release, replicas, max_replicas, secret, gpus, cpu,
           memory, poll_secs, hpa_queue_us, kserve):
    """Kubernetes manifests serving SPEC's published repository with the NGC tritonserver.

    \b
    Deployment (GPU or CPU resources from the variants' instance groups,
    readiness /v2/health/ready, liveness /v2/health/live, credentials from a
    Secret), Service (8000 HTTP, 8001 gRPC, 8002 metrics) and an HPA on Triton's
    queue time through the Prometheus adapter (rule: README "From one machine to
    a fleet"); or, with --kserve, a KServe InferenceService.
    """
    from generator.ship.deploy import DeployOptions, write_manifests
    from .spec import load_spec

    s = load_spec(spec)
    opts = DeployOptions(model_repository=model_repository, name=name, namespace=namespace, release=release,
                         replicas=replicas, max_replicas=max_replicas, secret=secret, gpus=gpus, cpu=cpu,
                         memory=memory, poll_secs=poll_secs, hpa_queue_us=hpa_queue_us, kserve=kserve)
    console = _console()
    for p in write_manifests(s, out_dir, opts):
        console.print(f"wrote {p}", markup=False)
    console.print(f"apply with: kubectl apply -f {out_dir}", markup=False)
@cli.command()
@click.argument("checkpoint", type=str)
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("spec.yaml"), show_default=True,
              help="The spec to write (paths inside are relative to its folder).")
@click.option("--factory", default=None, metavar="MODULE:CALLABLE",
              help="For a state_dict: the function that builds the model (importable from the spec's folder).")
@click.option("--name", default=None, help="Model name (default: from the checkpoint's name).")
@click.option("--task", default=None, help="Hugging Face folders: the task (default: from the architecture).")
@click.option("--force", is_flag=True, help="Overwrite an existing spec.")
@click.option("--image-size", default=None, metavar="HxW",
              help="state_dict image models: the input size (e.g. 224 or 224x224); adds image preprocessing + an "
                   "ensemble (image bytes in).")
@click.option("--mean", default=None, metavar="R,G,B", help="With --image-size: per-channel mean (default ImageNet; "
              "one value for a grayscale model).")
@click.option("--std", default=None, metavar="R,G,B", help="With --image-size: per-channel std (default ImageNet).")
def init(checkpoint, output, factory, name, task, force, image_size, mean, std):
    """Write a starting spec for CHECKPOINT: a Hugging Face folder, a TorchScript or torch.export file,
    or a state_dict with --factory. What cannot be inferred is left as a TODO the build names."""
    import time

    from .init import init_spec

    image = None
    if image_size is not None:
        image = {"size": _hw(image_size, "--image-size")}
        for opt, val in (("mean", mean), ("std", std)):
            if val is not None:
                image[opt] = _numbers(val, f"--{opt}", "three comma-separated numbers (R,G,B), or one (grayscale)")
                if len(image[opt]) not in (1, 3):
                    raise UserError(f"--{opt} {val}: give three comma-separated numbers (R,G,B), or one (grayscale)")
    elif mean is not None or std is not None:
        raise UserError("--mean/--std: only with --image-size")
    t = time.perf_counter()
    text = init_spec(checkpoint, output, factory=factory, name=name, task=task, force=force, image=image)
    todos = text.count("TODO")
    _console().print(f"wrote {output} in {time.perf_counter() - t:.1f}s"
                     + (f"; {todos} TODO(s) to check" if todos else "; next: tritongen build " + str(output)), markup=False)


@cli.command()
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Write the schema to this file instead of printing it.")
@click.option("--markdown", is_flag=True, help="Print the spec's key reference (README) instead of the JSON Schema.")
def schema(output, markdown):
    """Print the spec's JSON Schema, generated from the spec models. Editors (YAML language server) complete and
    check a spec whose first line is `# yaml-language-server: $schema=tritongen-spec.schema.json`."""
    import json

    from .spec import schema as spec_schema

    text = spec_schema.markdown() if markdown else json.dumps(spec_schema.schema(), indent=2) + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        tmp = Path(output).with_name(f".{Path(output).name}.tmp")
        tmp.write_text(text)
        tmp.rename(output)


def _hw(text: str, opt: str) -> list[int]:
    parts = text.lower().split("x")
    try:
        hw = [int(p) for p in parts]
    except ValueError:
        hw = []
    if len(hw) == 1:
        hw = hw * 2
    if len(hw) != 2 or min(hw) < 1:
        raise UserError(f"{opt} {text}: give a size like 224 or 224x192 (height x width)")
    return hw


def _numbers(text: str, opt: str, what: str, kind=float, count: int | None = None, positive: bool = False) -> list:
    try:
        v = [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        v = None
    if v is None or (count and len(v) != count) or (positive and any(x <= 0 for x in v)):
        raise UserError(f"{opt} {text}: give {what}")
    return v


def _isa_warnings(repository: Path) -> None:
    """INT8 artifacts verified on another CPU class than this one (generator/tables/isa.py)."""
    from generator.tables.isa import mismatch_warnings

    for w in mismatch_warnings(repository):
        _console(stderr=True).print(f"[yellow]warning:[/] {escape(str(w))}", soft_wrap=True)


@cli.command()
@click.argument("spec", type=click.Path(path_type=Path))
@click.option("--repo", type=click.Path(path_type=Path), default=Path("build/embedded_repository"), show_default=True,
              help="The repository to tune (served here in explicit model-control mode unless --url is given).")
@click.option("--url", default=None, metavar="HOST:PORT", help="gRPC endpoint of a running Triton in explicit "
              "model-control mode (e.g. an NGC server); default: serve --repo here.")
@click.option("--models", default=None, help="Comma-separated spec model names or Triton names; default: all.")
@click.option("--strategy", type=click.Choice(["quick", "brute"]), default="quick", show_default=True)
@click.option("--objective", type=click.Choice(["throughput", "latency", "rate"]), default=None,
              help="Maximise throughput (default) or minimise p99, within the constraints.")
@click.option("--latency-budget-ms", type=float, default=None, help="p99 constraint (ms).")
@click.option("--min-throughput", type=float, default=None, help="Throughput constraint (inferences/s).")
@click.option("--max-memory-mb", type=float, default=None, help="Server memory constraint for the model (MB).")
@click.option("--max-configs", type=int, default=16, show_default=True, help="Configurations measured per model (search).")
@click.option("--window-s", type=float, default=1.5, show_default=True,
              help="Measurement window per concurrency level (it also closes at 1500 requests).")
@click.option("--rounds", type=int, default=3, show_default=True,
              help="Alternating re-measurement rounds of the finalists, the spec's config and Triton's defaults.")
@click.option("--finalists", type=int, default=2, show_default=True)
@click.option("--cores", type=int, default=None, help="Cores of the server (default: this machine's).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Run folder (default perf/results/tune-<models>); re-running with the same folder resumes.")
@click.option("--apply", is_flag=True, help="Write the winner into the variant's config.pbtxt (idempotent).")
@click.option("--apply-to", multiple=True, type=click.Path(path_type=Path),
              help="Also write it into this repository (e.g. the native one built from the same spec).")
@click.option("--images", type=click.Path(path_type=Path), default=None,
              help="A folder of JPEG/PNG files: measure image models on them (preprocessed as the ensemble does).")
@click.option("--sentences", type=click.Path(path_type=Path), default=None,
              help="A text file, one sentence a line: measure text models on them (tokenised as the ensemble does).")
def tune(spec, repo, url, models, strategy, objective, latency_budget_ms, min_throughput, max_memory_mb, max_configs,
         window_s, rounds, finalists, cores, out, apply, apply_to, images, sentences):
    """Search variant x instances x max_batch_size x queue delay x threads through a real server.

    \b
    Screens every gate-passed variant at the spec's settings, climbs (quick) or
    walks the grid (brute), then re-measures the finalists, the spec's config and
    Triton's defaults alternately and reports the winner with a 95% interval
    (or says it is not distinguishable). Writes report.md, a Pareto plot,
    results.json and tuned.yaml (the spec values to keep) under --out.
    """
    from perf.inputs import RealInputs, active
    from perf.tune import run_tune

    with active(RealInputs(images, sentences)):
        run_dir = run_tune(spec, repo, url=url, models=[m for m in (models or "").split(",") if m] or None,
                           strategy=strategy, objective=objective, latency_budget_ms=latency_budget_ms,
                           min_throughput=min_throughput, max_memory_mb=max_memory_mb, max_configs=max_configs,
                           window_s=window_s, rounds=rounds, finalists=finalists, cores=cores, out=out, apply=apply,
                           apply_to=tuple(apply_to))
    _console().print(f"report: {run_dir / 'report.md'}", markup=False)


def main():
    cli(prog_name="tritongen")


if __name__ == "__main__":
    main()
