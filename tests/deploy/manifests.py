"""Loading and rendering the manifests under deploy/ for the deploy tests.

Overlays are rendered with `kubectl kustomize` when kubectl is installed; otherwise with the
small renderer below, which implements only what our kustomizations use (resources, patches as
strategic merges, namespace, labels, images). A test checks that both agree where both exist.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
PROMETHEUS = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
OVERLAYS = ("sidecar", "gateway", "gpu-pool")
# Every directory with a kustomization that a user applies on its own.
APPLIED = (*(K8S / "overlays" / name for name in OVERLAYS), K8S / "secrets" / "aws-secrets-manager")
KUBERNETES_VERSION = "1.30.0"

Doc = dict[str, Any]


def load_docs(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def manifest_files() -> Iterator[Path]:
    """Every YAML file under deploy/k8s except the kustomizations themselves."""
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name != "kustomization.yaml":
            yield path


def kubectl() -> str | None:
    return shutil.which("kubectl")


def render(directory: Path) -> list[Doc]:
    """The overlay's resources, rendered by kubectl when available, else by `render_python`."""
    binary = kubectl()
    if binary is None:
        return render_python(directory)
    result = subprocess.run(
        [binary, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def render_python(directory: Path) -> list[Doc]:
    kustomization = load_docs(directory / "kustomization.yaml")[0]
    docs: list[Doc] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        docs.extend(render_python(path) if path.is_dir() else load_docs(path))
    for patch in kustomization.get("patches", []):
        for patch_doc in load_docs(directory / patch["path"]):
            target = find(docs, patch_doc["kind"], patch_doc["metadata"]["name"])
            _merge(target, patch_doc)
    namespace = kustomization.get("namespace")
    for doc in docs:
        metadata = doc.setdefault("metadata", {})
        if namespace and doc["kind"] != "Namespace":
            metadata["namespace"] = namespace
        for label_set in kustomization.get("labels", []):
            metadata.setdefault("labels", {}).update(label_set["pairs"])
        for image in kustomization.get("images", []):
            _set_image(doc, image)
    return docs


def find(docs: list[Doc], kind: str, name: str) -> Doc:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def pod_spec(workload: Doc) -> Doc:
    spec: Doc = workload["spec"]["template"]["spec"]
    return spec


def _merge(target: Doc, patch: Doc) -> None:
    """Strategic merge as our patches need it: maps merge, lists of named maps merge by name."""
    for key, value in patch.items():
        current = target.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            _merge(current, value)
        elif isinstance(value, list) and isinstance(current, list) and _named(value + current):
            by_name = {item["name"]: item for item in current}
            for item in value:
                if item["name"] in by_name:
                    _merge(by_name[item["name"]], item)
                else:
                    current.append(item)
        else:
            target[key] = value


def _named(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(item, dict) and "name" in item for item in items)


def _set_image(doc: Doc, image: Doc) -> None:
    template = doc.get("spec", {}).get("template", {}).get("spec", {})
    for container in template.get("containers", []) + template.get("initContainers", []):
        name = container["image"].split("@")[0].rsplit(":", 1)[0]
        if name == image["name"]:
            new_name = image.get("newName", name)
            container["image"] = f"{new_name}:{image['newTag']}" if "newTag" in image else new_name
