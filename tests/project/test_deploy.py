"""Deployment files: Dockerfiles lint clean, Kubernetes overlays render and validate against the
API schemas, the compose file against the compose spec, KServe resources have what KServe needs,
and the image's entrypoint and healthcheck work against the committed models."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from deepserve import AuthenticationError, Client

from ..mnist_sample import digits
from ..server_process import free_port

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (it comes with the dev extra)")
    return path


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.cpu", "Dockerfile.loadtest"])
def test_dockerfiles_pass_hadolint(dockerfile: str) -> None:
    result = subprocess.run(
        [_tool("hadolint"), str(DOCKER / dockerfile)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("overlay", ["cpu", "gpu", "gpu-pvc"])
def test_kustomize_overlays_render_and_validate(overlay: str, tmp_path: Path) -> None:
    rendered = subprocess.run(
        [_tool("kubectl"), "kustomize", str(DOCKER / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (tmp_path / "all.yaml").write_text(rendered)
    result = subprocess.run(
        [_tool("kubernetes-validate"), "--strict", "--quiet", str(tmp_path / "all.yaml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = {doc["kind"]: doc for doc in yaml.safe_load_all(rendered)}
    assert {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
    } <= set(kinds)
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == 8001
    grace = int(kinds["ConfigMap"]["data"]["DEEPSERVE_GRACE_SECONDS"])
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > pause + grace
    # Every interface needs credentials: the tokens come from a Secret, not from the manifests.
    secrets = {
        e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
        for e in container["env"]
        if "valueFrom" in e
    }
    assert secrets == {
        "DEEPSERVE_INFERENCE_TOKEN": "deepserve-tokens",
        "DEEPSERVE_ADMIN_TOKEN": "deepserve-tokens",
    }
    assert kinds["ConfigMap"]["data"]["DEEPSERVE_HOST"] == "0.0.0.0"
    if overlay.startswith("gpu"):
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    if overlay == "gpu-pvc":
        assert "PersistentVolumeClaim" in kinds


def test_compose_file_follows_the_compose_spec() -> None:
    result = subprocess.run(
        [
            _tool("check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            str(DOCKER / "compose.yaml"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    gpu = compose["services"]["deepserve"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]
    assert compose["services"]["deepserve-cpu"]["profiles"] == ["cpu"]
    environment = compose["services"]["deepserve-cpu"]["environment"]
    assert environment["DEEPSERVE_INFERENCE_TOKEN"].startswith("${DEEPSERVE_INFERENCE_TOKEN:?")
    assert compose["services"]["locust-worker"]["profiles"] == ["loadtest"]


def test_kserve_resources_have_what_kserve_needs() -> None:
    runtime = yaml.safe_load((DOCKER / "k8s" / "kserve" / "servingruntime.yaml").read_text())
    service = yaml.safe_load((DOCKER / "k8s" / "kserve" / "inferenceservice.yaml").read_text())
    assert runtime["apiVersion"] == "serving.kserve.io/v1alpha1"
    assert runtime["kind"] == "ServingRuntime"
    spec = runtime["spec"]
    formats = {f["name"] for f in spec["supportedModelFormats"]}
    assert "grpc-v2" in spec["protocolVersions"]
    (container,) = spec["containers"]
    assert container["name"] == "kserve-container" and container["image"]
    assert "--model-repository=/mnt/models" in container["args"]
    assert container["ports"][0]["name"] == "h2c"
    assert service["apiVersion"] == "serving.kserve.io/v1beta1"
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in formats
    assert model["storageUri"] and model["protocolVersion"] == "grpc-v2"


def _dockerfile_runtime(path: Path) -> tuple[list[str], dict[str, str], list[str]]:
    """ENTRYPOINT, ENV and HEALTHCHECK CMD of the Dockerfile's last stage."""
    text = path.read_text().replace("\\\n", " ")
    last_stage = text[text.rindex("\nFROM ") :]
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", last_stage, re.M).group(1))
    health = json.loads(re.search(r"HEALTHCHECK .*CMD (\[.*\])$", last_stage, re.M).group(1))
    env: dict[str, str] = {}
    for line in re.findall(r"^ENV (.*)$", last_stage, re.M):
        env.update(dict(re.findall(r"(\w+)=(\S+)", line)))
    return entrypoint, env, health


def test_cpu_image_entrypoint_serves_the_committed_models(tmp_path: Path) -> None:
    entrypoint, env, health = _dockerfile_runtime(DOCKER / "Dockerfile.cpu")
    assert entrypoint == ["deepserve", "serve"]
    port, metrics_port, http_port = free_port(), free_port(), free_port()
    env.pop("PATH")
    assert env["DEEPSERVE_HOST"] == "0.0.0.0"  # as in the image: tokens are then required
    token = "image-test-token-0123456789"
    env.update(
        DEEPSERVE_MODEL_REPOSITORY=str(ROOT / "models"),
        DEEPSERVE_PORT=str(port),
        DEEPSERVE_METRICS_PORT=str(metrics_port),
        DEEPSERVE_HTTP_PORT=str(http_port),
        DEEPSERVE_INFERENCE_TOKEN=token,
    )
    command = [str(BIN / entrypoint[0]), *entrypoint[1:]]
    health_cmd = [str(BIN / health[0]), *[a.replace("8001", str(port)) for a in health[1:]]]
    server = subprocess.Popen(
        command, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(health_cmd, capture_output=True).returncode != 0:
            assert server.poll() is None and time.monotonic() < deadline, "never healthy"
            time.sleep(0.5)
        images, labels = digits()
        result = Client(f"127.0.0.1:{port}", token=token).classify(images[0], model="mnist")
        assert result.label == str(labels[0])
        with pytest.raises(AuthenticationError):
            Client(f"127.0.0.1:{port}", retries=0).classify(images[0], model="mnist")
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0


def test_sequence_routing_files_hash_the_sequence_header(tmp_path: Path) -> None:
    """The Ingress validates against the API schemas and hashes x-sequence-id, as the compose
    proxy's nginx config does (which tests/grpc/test_sequence_routing.py runs)."""
    ingress = DOCKER / "k8s" / "ingress-sequences.yaml"
    result = subprocess.run(
        [_tool("kubernetes-validate"), "--strict", "--quiet", str(ingress)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    annotations = yaml.safe_load(ingress.read_text())["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/upstream-hash-by"] == "$http_x_sequence_id"
    assert "hash $route_key consistent;" in (DOCKER / "proxy" / "nginx.conf").read_text()
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    proxy = compose["services"]["proxy"]
    assert proxy["profiles"] == ["replicas"] and "./proxy/nginx.conf" in proxy["volumes"][0]
    assert compose["services"]["deepserve-replica"]["deploy"]["replicas"] == 2
