"""Kubernetes manifests for serving a published repository, computed from the spec that built it.

    write_manifests(spec, Path("k8s"), model_repository="s3://bucket/prefix")

Default: a Deployment of the NGC ``tritonserver:<release>-py3`` image reading the repository straight from
object storage in poll mode (so ``tritongen publish`` rolls models out without a restart), a Service (HTTP
8000, gRPC 8001, metrics 8002) and a HorizontalPodAutoscaler on Triton's queue time per request through the
Prometheus adapter. ``kserve=True``: a KServe ``InferenceService`` on KServe's Triton runtime instead (its
storage initializer downloads the repository at start; roll out a new publish with a restart).

Values are computed here; the jinja2 templates in ``templates/k8s/`` only lay them out. Every manifest is
parsed back as YAML before it is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from generator import __version__
from generator.errors import UserError
from generator.spec import Spec

DEFAULT_RELEASE = "24.10"  # as the TensorRT variants' triton_release default
HPA_METRIC = "triton_queue_us_per_request"  # the Prometheus adapter rule in README names it so
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class DeployOptions:
    model_repository: str  # as tritonserver takes it: s3://bucket/prefix or s3://http://host:port/bucket/prefix
    name: str | None = None  # default: from the spec file name
    namespace: str | None = None
    release: str | None = None  # default: the spec's TensorRT triton_release, else DEFAULT_RELEASE
    replicas: int = 1
    max_replicas: int = 4
    secret: str | None = None  # Secret holding AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_DEFAULT_REGION
    gpus: int = 1
    cpu: str = "2"
    memory: str = "4Gi"
    poll_secs: int = 30  # 0: no polling (model-control-mode none)
    hpa_queue_us: int = 2000  # target average queue time per request, per pod
    kserve: bool = False


def dns_name(text: str, where: str = "--name") -> str:
    """A DNS-1035 label (Service names): lower case, digits and '-', starting with a letter, <= 63."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].strip("-")
    if not name or not name[0].isalpha():
        name = f"triton-{name}".strip("-")[:63]
    return name


def _release(spec: Spec, given: str | None) -> str:
    from generator.stages.tensorrt import _release as norm
    from generator.stages.tensorrt import trt_version_for_triton

    if given:
        trt_version_for_triton(given, where="--release")  # a release tritongen knows
        return norm(given)
    found = {norm(str(v.options["triton_release"])) for m in spec.models for v in m.variants
             if "triton_release" in v.options}
    if len(found) > 1:
        raise UserError(f"{spec.path.name}: variants target several Triton releases ({', '.join(sorted(found))}); "
                        "pass --release to choose the image")
    return found.pop() if found else DEFAULT_RELEASE


def needs_gpu(spec: Spec) -> bool:
    """Any instance group on KIND_GPU, or any variant that only runs on a GPU (fp16, TensorRT plans)."""
    from generator.variants import REGISTRY

    for m in spec.models:
        if any(g.kind == "KIND_GPU" for g in m.triton.instance_group):
            return True
        if any("cpu" not in REGISTRY[v.name].devices for v in m.variants):
            return True
    return False


def split_s3(url: str) -> tuple[str, str | None]:
    """``s3://http://host:port/bucket/prefix`` -> (``s3://bucket/prefix``, ``http://host:port``)."""
    m = re.match(r"^s3://(https?://[^/]+)/(.+)$", url)
    if m:
        return f"s3://{m.group(2)}", m.group(1)
    return url, None


def context(spec: Spec, opts: DeployOptions) -> dict:
    repo = opts.model_repository.strip()
    if not re.match(r"^(s3|gs|as)://.+", repo):
        raise UserError(f"--model-repository {repo or '(empty)'}: give the published URL (s3://BUCKET/PREFIX, as "
                        "`tritongen publish` prints it; gs:// and as:// work too)")
    if opts.name is not None and not _DNS1035.match(opts.name):
        raise UserError(f"--name {opts.name}: not a DNS-1035 label; use lower case letters, digits and '-', "
                        "starting with a letter (at most 63)")
    if opts.replicas < 1 or opts.max_replicas < opts.replicas:
        raise UserError(f"--replicas {opts.replicas} / --max-replicas {opts.max_replicas}: need 1 <= replicas <= "
                        "max-replicas")
    name = opts.name or dns_name(spec.path.stem if spec.path.stem not in ("spec", "") else spec.root.name)
    release = _release(spec, opts.release)
    gpu = needs_gpu(spec)
    if gpu:
        resources = {"requests": {"cpu": opts.cpu, "memory": opts.memory},
                     "limits": {"memory": opts.memory, "nvidia.com/gpu": opts.gpus}}
    else:
        resources = {"requests": {"cpu": opts.cpu, "memory": opts.memory},
                     "limits": {"cpu": opts.cpu, "memory": opts.memory}}
    args = [f"--model-repository={repo}", "--http-port=8000", "--grpc-port=8001", "--metrics-port=8002"]
    if opts.poll_secs > 0:
        args += ["--model-control-mode=poll", f"--repository-poll-secs={opts.poll_secs}"]
    storage_uri, endpoint = split_s3(repo)
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/component": "tritonserver",
              "app.kubernetes.io/managed-by": "tritongen"}
    return {
        "tool_version": __version__,
        "spec_name": spec.path.name,
        "name": name,
        "namespace": opts.namespace,
        "labels": labels,
        "selector": {"app.kubernetes.io/name": name},
        "image": f"nvcr.io/nvidia/tritonserver:{release}-py3",
        "runtime_version": f"{release}-py3",
        "release": release,
        "args": args,
        "secret": opts.secret,
        "resources": resources,
        "gpu": gpu,
        "replicas": opts.replicas,
        "max_replicas": opts.max_replicas,
        "hpa_metric": HPA_METRIC,
        "hpa_target": str(opts.hpa_queue_us),
        "storage_uri": storage_uri,
        "s3_endpoint": endpoint,
        "models": [m.name for m in spec.models],
    }


def render_manifests(spec: Spec, opts: DeployOptions, templates: Path | None = None) -> dict[str, str]:
    """``{file name: YAML text}``: deployment/service/hpa, or serviceaccount/inferenceservice with kserve."""
    import yaml

    from generator.config.render import environment

    ctx = context(spec, opts)
    env = environment(templates)
    files = ["inferenceservice.yaml"] if opts.kserve else ["deployment.yaml", "service.yaml", "hpa.yaml"]
    if opts.kserve and opts.secret:
        files.insert(0, "serviceaccount.yaml")
    out = {}
    for f in files:
        text = env.get_template(f"k8s/{f}.j2").render(**ctx)
        try:
            yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise AssertionError(f"tritongen rendered invalid YAML for {f} (a bug): {e}") from None
        out[f] = text
    return out


def write_manifests(spec: Spec, out_dir: Path, opts: DeployOptions, templates: Path | None = None) -> list[Path]:
    """Write the manifests into ``out_dir`` (created); returns their paths. Files of ours not rendered this
    time (switching to or from --kserve) are removed, so ``kubectl apply -f DIR`` applies exactly these."""
    manifests = render_manifests(spec, opts, templates)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--k8s {out_dir}: not a folder; give a folder for the manifests")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in manifests.items():
        p = out_dir / name
        tmp = p.with_suffix(".yaml.tmp")
        tmp.write_text(text)
        tmp.replace(p)
        written.append(p)
    for stale in ("deployment.yaml", "service.yaml", "hpa.yaml", "inferenceservice.yaml", "serviceaccount.yaml"):
        if stale not in manifests and (out_dir / stale).is_file():
            (out_dir / stale).unlink()
    return written
