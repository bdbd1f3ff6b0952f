"""The Kubernetes manifests under deploy/kubernetes, loaded as kustomize sees them, and the checks
the tests hold them to. Each check returns its problems (empty: the manifests pass), so that a
test can also break a copy of the manifests and see the check notice (tests/deploy)."""

from __future__ import annotations

import copy
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
# The image's user and group (Dockerfile: useradd --uid 10001 --user-group).
APP_UID = 10001

Doc = dict[str, Any]


@dataclass
class Manifests:
    """The kustomization and the documents of the files it lists (``file`` per document)."""

    kustomization: Doc
    docs: list[tuple[str, Doc]]

    def copy(self) -> Manifests:
        return copy.deepcopy(self)

    def of_kind(self, kind: str) -> list[Doc]:
        return [doc for _, doc in self.docs if doc.get("kind") == kind]

    def named(self, kind: str, name: str) -> Doc:
        found = [d for d in self.of_kind(kind) if d["metadata"]["name"] == name]
        if len(found) != 1:
            raise LookupError(f"{len(found)} {kind} named {name!r}")
        return found[0]

    def config_maps(self) -> dict[str, dict[str, str]]:
        """The configMapGenerator's ConfigMaps (literals only), by name."""
        maps: dict[str, dict[str, str]] = {}
        for generator in self.kustomization.get("configMapGenerator", []):
            data = maps.setdefault(generator["name"], {})
            for literal in generator.get("literals", []):
                key, _, value = str(literal).partition("=")
                data[key] = value
        return maps

    def generated_secrets(self) -> dict[str, dict[str, str]]:
        """The secretGenerator's Secrets: name -> {key: source file, relative to the folder}."""
        secrets: dict[str, dict[str, str]] = {}
        for generator in self.kustomization.get("secretGenerator", []):
            files = secrets.setdefault(generator["name"], {})
            for entry in generator.get("files", []):
                key, sep, path = str(entry).partition("=")
                files[key if sep else posixpath.basename(key)] = path if sep else key
        return secrets

    def pod_specs(self) -> Iterator[tuple[str, Doc]]:
        """Every pod template: (``Kind/name``, pod spec)."""
        for _, doc in self.docs:
            kind, name = doc.get("kind"), doc["metadata"]["name"]
            if kind in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
                yield f"{kind}/{name}", doc["spec"]["template"]["spec"]
            elif kind == "CronJob":
                yield f"{kind}/{name}", doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]

    def containers(self) -> Iterator[tuple[str, Doc, Doc]]:
        """Every container and init container: (``Kind/name/container``, pod spec, container)."""
        for where, spec in self.pod_specs():
            for container in [*spec.get("initContainers", []), *spec["containers"]]:
                yield f"{where}/{container['name']}", spec, container

    def env(self, container: Doc) -> dict[str, str]:
        """The container's environment with literal values: envFrom ConfigMaps, then env (a
        ``valueFrom`` entry maps to ``<valueFrom>``)."""
        maps = self.config_maps()
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            ref = source.get("configMapRef")
            if ref is not None:
                env.update(maps.get(ref["name"], {}))
        for entry in container.get("env", []):
            env[entry["name"]] = entry.get("value", "<valueFrom>")
        return env


def load(folder: Path = KUBERNETES) -> Manifests:
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    docs: list[tuple[str, Doc]] = []
    for name in kustomization.get("resources", []):
        for doc in yaml.safe_load_all((folder / name).read_text()):
            if doc is not None:
                docs.append((name, doc))
    return Manifests(kustomization, docs)


def command(container: Doc) -> list[str]:
    return [str(part) for part in container.get("command", []) + container.get("args", [])]


def runs(container: Doc, program: str) -> bool:
    cmd = command(container)
    return bool(cmd) and cmd[0] == program


def option(cmd: list[str], name: str) -> str | None:
    """The value of ``--name VALUE`` or ``--name=VALUE`` in a command line."""
    for i, part in enumerate(cmd):
        if part == name and i + 1 < len(cmd):
            return cmd[i + 1]
        if part.startswith(name + "="):
            return part.split("=", 1)[1]
    return None


def container_port(container: Doc, port: int | str) -> int | None:
    """A probe's or Service's port (a number, or the name of one of the container's ports)."""
    if isinstance(port, int):
        return port
    for declared in container.get("ports", []):
        if declared.get("name") == port:
            return int(declared["containerPort"])
    return None


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def template_labels(doc: Doc) -> dict[str, str]:
    return dict(doc["spec"]["template"]["metadata"].get("labels", {}))


def mount_for(spec: Doc, container: Doc, path: str) -> tuple[Doc, Doc] | None:
    """The volume mount (and its volume) that holds ``path``, the deepest one if several."""
    best: tuple[Doc, Doc] | None = None
    for mount in container.get("volumeMounts", []):
        root = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(root) and (
            best is None or len(mount["mountPath"]) > len(best[0]["mountPath"])
        ):
            volume = next((v for v in spec.get("volumes", []) if v["name"] == mount["name"]), None)
            if volume is not None:
                best = (mount, volume)
    return best
