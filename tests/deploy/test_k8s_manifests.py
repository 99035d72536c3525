"""The Kubernetes manifests: schema-valid for 1.30 offline, overlays render, and the pieces fit.

"Fit" means what would otherwise only show on a live cluster: Services select the pods they
front, probes and ports line up, the grace period outlasts preStop plus Sidegate's drain, the GPU
pool is reachable where the config says, and every config passes `sidegate check-config`.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from kubernetes_validate import utils as kv

from tests.deploy.crd_schemas import SCHEMAS
from tests.deploy.manifests import (
    APPLIED,
    K8S,
    KUBERNETES_VERSION,
    ROOT,
    Doc,
    find,
    kubectl,
    load_docs,
    manifest_files,
    of_kind,
    pod_spec,
    render_python,
)

ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")


def validate(doc: Doc) -> None:
    """Strict schema validation: unknown fields and wrong types are errors."""
    if doc["apiVersion"].startswith("external-secrets.io/"):
        jsonschema.validate(doc, SCHEMAS[doc["kind"]])
    else:
        kv.validate(doc, KUBERNETES_VERSION, strict=True)


def sidegate_workload(docs: list[Doc]) -> Doc:
    workloads = [d for d in of_kind(docs, "DaemonSet") + of_kind(docs, "Deployment")]
    return next(d for d in workloads if d["metadata"]["name"] == "sidegate")


def sidegate_config(docs: list[Doc]) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(
        find(docs, "ConfigMap", "sidegate-config")["data"]["config.yaml"]
    )
    return config


def container(workload: Doc, name: str) -> Doc:
    found: Doc = next(c for c in pod_spec(workload)["containers"] if c["name"] == name)
    return found


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("path", list(manifest_files()), ids=lambda p: str(p.relative_to(K8S)))
def test_each_manifest_file_is_valid_on_its_own(path: Path) -> None:
    docs = load_docs(path)
    assert docs, f"{path} holds no resource"
    for doc in docs:
        validate(doc)


def test_schema_validation_rejects_an_unknown_field() -> None:
    service = load_docs(K8S / "redis" / "service.yaml")[0]
    service["spec"]["internalTraficPolicy"] = "Local"  # misspelt on purpose
    with pytest.raises(kv.ValidationError):
        validate(service)


@pytest.mark.parametrize("directory", APPLIED, ids=lambda p: p.name)
def test_each_kustomization_renders_to_valid_unique_resources(
    directory: Path, rendered: dict[str, list[Doc]]
) -> None:
    docs = rendered[directory.name]
    keys = [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs]
    assert len(keys) == len(set(keys)), f"duplicate resources in {directory}"
    for doc in docs:
        validate(doc)
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "sidegate"
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "sidegate"


@pytest.mark.skipif(kubectl() is None, reason="kubectl is not installed: nothing to compare with")
@pytest.mark.parametrize("directory", APPLIED, ids=lambda p: p.name)
def test_fallback_renderer_matches_kustomize(
    directory: Path, rendered: dict[str, list[Doc]]
) -> None:
    def keyed(docs: list[Doc]) -> dict[tuple[str, str], Doc]:
        return {(d["kind"], d["metadata"]["name"]): d for d in docs}

    assert keyed(render_python(directory)) == keyed(rendered[directory.name])


@pytest.mark.parametrize("overlay", ["sidecar", "gateway", "gpu-pool"])
def test_sidegate_pods_are_probed_drained_and_configured(
    overlay: str, rendered: dict[str, list[Doc]]
) -> None:
    docs = rendered[overlay]
    workload = sidegate_workload(docs)
    pod = pod_spec(workload)
    main = container(workload, "sidegate")
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert ports == {"http": 8080}
    assert main["args"] == ["serve", "--config", "/etc/sidegate/config.yaml"]
    assert main["image"].startswith("registry.example.com/sidegate:")

    assert main["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert main["resources"]["requests"]["cpu"] and main["resources"]["limits"]["memory"]

    # The pod must outlive preStop plus the drain, or Kubernetes kills streams mid-flight.
    command = main["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = int(command[1])
    config = sidegate_config(docs)
    assert config["server"]["host"] == "0.0.0.0" and config["server"]["port"] == 8080
    drain = config["server"]["drain_timeout_seconds"]
    assert drain >= 60, "long streams need a drain of a minute or more"
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + drain + 10

    # Config from the ConfigMap, keys from the Secret, both mounted where the args say.
    mounts = {m["name"]: m["mountPath"] for m in main["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["config"] == "/etc/sidegate"
    assert volumes["config"]["configMap"]["name"] == "sidegate-config"
    assert main["envFrom"] == [{"secretRef": {"name": "sidegate-upstream-keys"}}]

    # Non-root with a read-only root filesystem; the spend log's directory stays writable.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert "data" in mounts and "emptyDir" in volumes["data"]
    database_url = config["spend"]["database_url"]
    assert mounts["data"] in database_url

    service = find(docs, "Service", "sidegate")
    labels = workload["spec"]["template"]["metadata"]["labels"]
    assert selects(service["spec"]["selector"], labels)
    assert selects(workload["spec"]["selector"]["matchLabels"], labels)
    assert service["spec"]["ports"][0]["targetPort"] in ports
    assert find(docs, "ServiceAccount", pod["serviceAccountName"])


def test_sidecar_runs_on_every_node_and_serves_its_own_node(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["sidecar"]
    daemonset = find(docs, "DaemonSet", "sidegate")
    assert not of_kind(docs, "Deployment")
    assert find(docs, "Service", "sidegate")["spec"]["internalTrafficPolicy"] == "Local"
    # A surge keeps a ready local pod during updates (the Service never crosses nodes).
    rolling = daemonset["spec"]["updateStrategy"]["rollingUpdate"]
    assert rolling == {"maxSurge": 1, "maxUnavailable": 0}


def test_gateway_autoscales_survives_disruptions_and_is_fenced(
    rendered: dict[str, list[Doc]],
) -> None:
    docs = rendered["gateway"]
    deployment = find(docs, "Deployment", "sidegate")
    labels = deployment["spec"]["template"]["metadata"]["labels"]

    hpa = find(docs, "HorizontalPodAutoscaler", "sidegate")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "sidegate",
    }
    resources = {m["resource"]["name"] for m in hpa["spec"]["metrics"]}
    assert resources == {"cpu", "memory"}
    assert hpa["spec"]["minReplicas"] >= 2

    pdb = find(docs, "PodDisruptionBudget", "sidegate")
    assert selects(pdb["spec"]["selector"]["matchLabels"], labels)

    anti = pod_spec(deployment)["affinity"]["podAntiAffinity"]
    terms = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert {t["podAffinityTerm"]["topologyKey"] for t in terms} >= {"kubernetes.io/hostname"}
    assert all(selects(t["podAffinityTerm"]["labelSelector"]["matchLabels"], labels) for t in terms)

    policy = find(docs, "NetworkPolicy", "sidegate")
    assert selects(policy["spec"]["podSelector"]["matchLabels"], labels)
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    egress_ports = {
        (p["port"], p["protocol"]) for rule in policy["spec"]["egress"] for p in rule["ports"]
    }
    # DNS, Redis, the model pool and hosted APIs: each must stay reachable.
    assert {(53, "UDP"), (6379, "TCP"), (8000, "TCP"), (443, "TCP")} <= egress_ports
    redis_labels = find(docs, "StatefulSet", "redis")["spec"]["template"]["metadata"]["labels"]
    assert any(
        selects(peer.get("podSelector", {}).get("matchLabels", {}), redis_labels)
        for rule in policy["spec"]["egress"]
        for peer in rule["to"]
    )


def test_gpu_pool_schedules_on_gpus_and_sidegate_points_at_it(
    rendered: dict[str, list[Doc]],
) -> None:
    docs = rendered["gpu-pool"]
    vllm = find(docs, "Deployment", "vllm")
    pod = pod_spec(vllm)
    main = container(vllm, "vllm")
    assert main["resources"]["limits"]["nvidia.com/gpu"] >= 1
    assert (
        main["resources"]["requests"]["nvidia.com/gpu"]
        == main["resources"]["limits"]["nvidia.com/gpu"]
    )
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert pod["nodeSelector"]

    service = find(docs, "Service", "vllm")
    assert service["spec"]["clusterIP"] == "None"
    assert selects(service["spec"]["selector"], vllm["spec"]["template"]["metadata"]["labels"])
    port = service["spec"]["ports"][0]
    container_ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert container_ports[port["targetPort"]] == port["port"]
    served = main["args"][main["args"].index("--served-model-name") + 1]

    config = sidegate_config(docs)
    host = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    upstreams = {
        name: upstream
        for name, upstream in config["upstreams"].items()
        if any(f"//{host}:{port['port']}/" in e for e in upstream["endpoints"])
    }
    assert len(upstreams) == 1, "one Sidegate upstream must point at the vLLM Service"
    (upstream_name,) = upstreams
    routed = [m for m in config["models"].values() if m["upstream"] == upstream_name]
    assert routed and all(m["upstream_model"] == served for m in routed)
    assert all(m.get("fallbacks") for m in routed), "the pool's models need a fallback"
    # The gateway workload is the one the config patch reached.
    assert sidegate_workload(docs)["kind"] == "Deployment"


@pytest.mark.parametrize("overlay", ["sidecar", "gateway"])
def test_redis_is_where_the_config_expects_it(overlay: str, rendered: dict[str, list[Doc]]) -> None:
    docs = rendered[overlay]
    statefulset = find(docs, "StatefulSet", "redis")
    service = find(docs, "Service", statefulset["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    assert selects(
        service["spec"]["selector"], statefulset["spec"]["template"]["metadata"]["labels"]
    )
    config = sidegate_config(docs)
    assert config["state"]["backend"] == "redis"
    default_url = ENV_REFERENCE.fullmatch(config["state"]["url"])
    assert default_url is not None and default_url.group(2) is not None
    host = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    assert default_url.group(2) == f":-redis://{host}:6379/0"


def test_external_secret_provides_every_variable_the_configs_need(
    rendered: dict[str, list[Doc]],
) -> None:
    provided = {
        entry["secretKey"]
        for entry in find(
            rendered["aws-secrets-manager"],
            "ExternalSecret",
            "sidegate-upstream-keys",
        )["spec"]["data"]
    }
    for overlay in ("sidecar", "gateway", "gpu-pool"):
        text = find(rendered[overlay], "ConfigMap", "sidegate-config")["data"]["config.yaml"]
        required = {m.group(1) for m in ENV_REFERENCE.finditer(text) if m.group(2) is None}
        assert required <= provided, f"{overlay}: {required - provided} not in the ExternalSecret"


@pytest.mark.parametrize("overlay", ["sidecar", "gateway", "gpu-pool"])
def test_each_overlay_config_passes_sidegate_check_config(
    overlay: str, tmp_path: Path, rendered: dict[str, list[Doc]]
) -> None:
    text = find(rendered[overlay], "ConfigMap", "sidegate-config")["data"]["config.yaml"]
    config_file = tmp_path / "config.yaml"
    config_file.write_text(text, encoding="utf-8")
    env = {m.group(1): f"test-{m.group(1).lower()}" for m in ENV_REFERENCE.finditer(text)}
    env = {k: v for k, v in env.items() if k not in {"REDIS_URL", "SPEND_DATABASE_URL"}}
    result = subprocess.run(
        [sys.executable, "-m", "sidegate.cli", "check-config", str(config_file)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **env},
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("overlay", ["sidecar", "gateway", "gpu-pool"])
def test_sidegate_and_redis_pods_meet_the_restricted_pod_security_profile(
    overlay: str, rendered: dict[str, list[Doc]]
) -> None:
    workloads = [
        d
        for d in rendered[overlay]
        if d["kind"] in {"DaemonSet", "Deployment", "StatefulSet"}
        and d["metadata"]["name"] != "vllm"  # the vLLM image runs as root (baseline only)
    ]
    assert {w["metadata"]["name"] for w in workloads} == {"sidegate", "redis"}
    for workload in workloads:
        pod = pod_spec(workload)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for each in pod["containers"]:
            context = each["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
