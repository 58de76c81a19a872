"""`tritongen deploy`: manifests from the spec, validated offline against the Kubernetes schemas
(kubernetes-validate, strict: unknown fields fail) and, where it works without a cluster, by kubectl."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml
from specs import cnn_model, linear_model, write_spec

from generator.ship.deploy import HPA_METRIC, DeployOptions, write_manifests
from generator.errors import UserError
from generator.spec import load_spec

URL = "s3://http://minio.storage:9000/models/prod"


def _validate(doc: dict) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def _load(folder) -> dict[str, dict]:
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(folder.glob("*.yaml"))}


@pytest.fixture
def cpu_spec(tmp_path):
    return load_spec(write_spec(tmp_path / "cpu", {"models": [linear_model(variants=["onnx", "onnx-int8-dynamic"])]},
                                name="fleet.yaml"))


@pytest.fixture
def gpu_spec(tmp_path):
    return load_spec(write_spec(tmp_path / "gpu", {"models": [
        cnn_model(triton={"instance_group": [{"count": 2, "kind": "KIND_GPU"}]})]}, name="vision.yaml"))


def test_cpu_spec_gives_valid_deployment_service_and_hpa(cpu_spec, tmp_path):
    out = tmp_path / "k8s"
    paths = write_manifests(cpu_spec, out, DeployOptions(URL, secret="s3-creds", namespace="serving", max_replicas=6))
    assert sorted(p.name for p in paths) == ["deployment.yaml", "hpa.yaml", "service.yaml"]
    docs = _load(out)
    for doc in docs.values():
        _validate(doc)
    dep = docs["deployment.yaml"]
    assert dep["metadata"] == {**dep["metadata"], "name": "fleet", "namespace": "serving"}
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == "nvcr.io/nvidia/tritonserver:24.10-py3"
    assert f"--model-repository={URL}" in c["args"] and "--model-control-mode=poll" in c["args"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert c["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    assert c["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"} and "tolerations" not in pod
    assert dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    svc = docs["service.yaml"]
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    hpa = docs["hpa.yaml"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "fleet" and hpa["spec"]["maxReplicas"] == 6
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == HPA_METRIC


def test_gpu_instances_request_gpus_and_the_release_follows_the_tensorrt_variants(gpu_spec, tmp_path):
    docs_dir = tmp_path / "k8s"
    write_manifests(gpu_spec, docs_dir, DeployOptions(URL, gpus=2, poll_secs=0))
    (c,) = _load(docs_dir)["deployment.yaml"]["spec"]["template"]["spec"]["containers"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 2 and "cpu" not in c["resources"]["limits"]
    assert not any(a.startswith("--model-control-mode") for a in c["args"]) and "envFrom" not in c
    _validate(_load(docs_dir)["deployment.yaml"])

    spec = load_spec(write_spec(tmp_path / "trt", {"models": [linear_model(variants=[
        "onnx", {"name": "trt-fp16", "options": {"triton_release": "24.08"}}])]}))
    write_manifests(spec, tmp_path / "trt-k8s", DeployOptions("s3://models/prod"))
    dep = _load(tmp_path / "trt-k8s")["deployment.yaml"]
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "nvcr.io/nvidia/tritonserver:24.08-py3"
    assert dep["spec"]["template"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"  # plans need a GPU


def test_kserve_inference_service_uses_the_triton_runtime(cpu_spec, tmp_path):
    out = tmp_path / "k8s"
    write_manifests(cpu_spec, out, DeployOptions(URL, secret="s3-creds"))
    write_manifests(cpu_spec, out, DeployOptions(URL, secret="s3-creds", kserve=True))
    docs = _load(out)
    assert sorted(docs) == ["inferenceservice.yaml", "serviceaccount.yaml"]  # the Deployment set was replaced
    _validate(docs["serviceaccount.yaml"])
    isvc = docs["inferenceservice.yaml"]
    assert (isvc["apiVersion"], isvc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    model = isvc["spec"]["predictor"]["model"]
    assert model["modelFormat"] == {"name": "triton"} and model["runtime"] == "kserve-tritonserver"
    assert model["runtimeVersion"] == "24.10-py3"
    assert model["storageUri"] == "s3://models/prod"  # KServe takes the endpoint from the Secret's annotation
    assert isvc["spec"]["predictor"]["serviceAccountName"] == "s3-creds"
    # InferenceService is a CRD (no schema offline): its container fields must still be valid Kubernetes
    _validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
               "spec": {"containers": [{"name": "kserve-container", "image": "x", "resources": model["resources"]}]}})


def test_bad_options_are_one_line_user_errors(cpu_spec, tmp_path):
    with pytest.raises(UserError, match=r"--model-repository model_repository: give the published URL"):
        write_manifests(cpu_spec, tmp_path / "k", DeployOptions("model_repository"))
    with pytest.raises(UserError, match=r"--name Fleet_1: not a DNS-1035 label"):
        write_manifests(cpu_spec, tmp_path / "k", DeployOptions(URL, name="Fleet_1"))
    with pytest.raises(UserError, match=r"--release: Triton release '19.01' is not in"):
        write_manifests(cpu_spec, tmp_path / "k", DeployOptions(URL, release="19.01"))
    with pytest.raises(UserError, match=r"--replicas 3 / --max-replicas 2"):
        write_manifests(cpu_spec, tmp_path / "k", DeployOptions(URL, replicas=3, max_replicas=2))


def test_cli_deploy_writes_manifests(cpu_spec, tmp_path):
    out = tmp_path / "k8s"
    run = subprocess.run([sys.executable, "-m", "generator.cli", "deploy", str(cpu_spec.path), "--k8s", str(out),
                          "--model-repository", URL], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert (out / "deployment.yaml").is_file() and f"kubectl apply -f {out}" in run.stdout
    bad = subprocess.run([sys.executable, "-m", "generator.cli", "deploy", str(cpu_spec.path), "--k8s", str(out),
                          "--model-repository", "repo"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr


def test_kubectl_client_dry_run(cpu_spec, tmp_path):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    out = tmp_path / "k8s"
    write_manifests(cpu_spec, out, DeployOptions(URL, secret="s3-creds"))
    run = subprocess.run([kubectl, "apply", "--dry-run=client", "-f", str(out)], capture_output=True, text=True,
                         timeout=120, env={"PATH": "/usr/bin:/bin", "KUBECONFIG": str(tmp_path / "no-kubeconfig")})
    text = run.stdout + run.stderr
    if run.returncode != 0 and ("connection refused" in text or "failed to download openapi" in text):
        pytest.skip("kubectl apply --dry-run=client needs a cluster's API discovery even for client-side dry runs "
                    "(no cluster here); the manifests are schema-validated offline by kubernetes-validate instead")
    assert run.returncode == 0, text
    assert "created (dry run)" in text
