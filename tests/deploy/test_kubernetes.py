"""deploy/kubernetes: every manifest is valid Kubernetes (the schemas kubernetes-validate
bundles: no network), and the fields that matter hold (tests/deploy/checks.py). Each check is
also run on a copy of the manifests broken on purpose, and must notice."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped]

from tests.deploy import checks
from tests.deploy.manifests import KUBERNETES, Manifests, load


@pytest.fixture(scope="module")
def manifests() -> Manifests:
    return load()


def test_the_kustomization_lists_every_manifest_file() -> None:
    listed = set(yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())["resources"])
    present = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


def test_the_secret_files_have_committed_examples() -> None:
    for source in load().generated_secrets().values():
        for path in source.values():
            example = KUBERNETES / f"{path}.example"
            assert example.is_file(), example
            assert "REPLACE" in example.read_text()


@pytest.mark.parametrize("name", sorted(checks.CHECKS))
def test_manifests_pass(manifests: Manifests, name: str) -> None:
    assert checks.CHECKS[name](manifests) == []


# ---------------------------------------------------------------------------------------------
# Each check fails on manifests broken the way it guards against.


def _deployment(m: Manifests, name: str = "keyhouse-issuer") -> dict[str, Any]:
    return m.named("Deployment", name)


def _issuer(m: Manifests) -> dict[str, Any]:
    spec: dict[str, Any] = _deployment(m)["spec"]["template"]["spec"]
    return spec


def _container(m: Manifests, name: str = "keyhouse-issuer") -> dict[str, Any]:
    container: dict[str, Any] = _deployment(m, name)["spec"]["template"]["spec"]["containers"][0]
    return container


def _literal(m: Manifests, name: str, value: str) -> None:
    generator = m.kustomization["configMapGenerator"][0]
    generator["literals"] = [
        *(x for x in generator["literals"] if not x.startswith(name + "=")),
        f"{name}={value}",
    ]


def _set_env(m: Manifests, deployment: str, name: str, value: str) -> None:
    env = _container(m, deployment).setdefault("env", [])
    env[:] = [e for e in env if e["name"] != name] + [{"name": name, "value": value}]


PHOTOS = "keyhouse-photos"

Breakage = Callable[[Manifests], object]
BROKEN: list[tuple[str, str, Breakage]] = [
    ("schema", "unknown field", lambda m: _deployment(m)["spec"].update(replica=2)),
    ("schema", "wrong type", lambda m: _container(m).update(ports=[{"containerPort": "8000"}])),
    ("replicas", "one issuer", lambda m: _deployment(m)["spec"].update(replicas=1)),
    (
        "probes",
        "readiness on /healthz",
        lambda m: _container(m)["readinessProbe"]["httpGet"].update(path="/healthz"),
    ),
    (
        "probes",
        "liveness on /readyz",
        lambda m: _container(m, PHOTOS)["livenessProbe"]["httpGet"].update(path="/readyz"),
    ),
    (
        "probes",
        "probe on another port",
        lambda m: _container(m)["readinessProbe"]["httpGet"].update(port=8001),
    ),
    ("probes", "server on another port", lambda m: _container(m)["command"].__setitem__(5, "9000")),
    ("probes", "no readiness probe", lambda m: _container(m, PHOTOS).pop("readinessProbe")),
    (
        "secret_files",
        "secret key mount writable",
        lambda m: _container(m)["volumeMounts"][0].pop("readOnly"),
    ),
    (
        "secret_files",
        "secret key elsewhere",
        lambda m: _literal(m, "ISSUER_SECRET_KEY_FILE", "/etc/keyhouse/key"),
    ),
    (
        "secret_files",
        "world-readable",
        lambda m: _issuer(m)["volumes"][0]["secret"].update(defaultMode=0o444),
    ),
    ("secret_files", "no fsGroup", lambda m: _issuer(m)["securityContext"].pop("fsGroup")),
    (
        "secret_files",
        "not a Secret",
        lambda m: _issuer(m)["volumes"][0].update(secret=None, emptyDir={}),
    ),
    (
        "secret_files",
        "another key",
        lambda m: _issuer(m)["volumes"][0]["secret"]["items"][0].update(key="other"),
    ),
    (
        "secret_files",
        "no secret key setting",
        lambda m: m.kustomization["configMapGenerator"][0].update(
            literals=[
                x
                for x in m.kustomization["configMapGenerator"][0]["literals"]
                if not x.startswith("ISSUER_SECRET_KEY_FILE")
            ]
        ),
    ),
    (
        "no_secret_values",
        "the secret in env",
        lambda m: _set_env(m, "keyhouse-issuer", "ISSUER_SECRET_KEY", "a-secret-in-the-repository"),
    ),
    (
        "no_secret_values",
        "password in the URL",
        lambda m: _literal(
            m, "ISSUER_DATABASE_URL", "postgresql://keyhouse:hunter2hunter2@db/keyhouse"
        ),
    ),
    (
        "no_secret_values",
        "a Secret document",
        lambda m: m.docs.append(
            (
                "x.yaml",
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "x"},
                    "stringData": {"k": "v"},
                },
            )
        ),
    ),
    (
        "no_secret_values",
        "generator literals",
        lambda m: m.kustomization["secretGenerator"][0].update(literals=["issuer_secret_key=abc"]),
    ),
    (
        "no_secret_values",
        "generated from a committed file",
        lambda m: m.kustomization["secretGenerator"][0].update(
            files=["issuer_secret_key=secrets/issuer_secret_key.example"]
        ),
    ),
    (
        "disruption_budget",
        "budget selects nothing",
        lambda m: m.of_kind("PodDisruptionBudget")[0]["spec"]["selector"]["matchLabels"].update(
            {"app.kubernetes.io/name": "issuer"}
        ),
    ),
    (
        "disruption_budget",
        "minAvailable 2 of 2",
        lambda m: m.of_kind("PodDisruptionBudget")[0]["spec"].update(minAvailable=2),
    ),
    (
        "services",
        "selector matches nothing",
        lambda m: m.named("Service", "keyhouse-issuer")["spec"]["selector"].update(
            {"app.kubernetes.io/name": "issuer"}
        ),
    ),
    (
        "services",
        "pod labels renamed",
        lambda m: _deployment(m)["spec"]["template"]["metadata"]["labels"].update(
            {"app.kubernetes.io/name": "x"}
        ),
    ),
    (
        "services",
        "targetPort unknown",
        lambda m: m.named("Service", PHOTOS)["spec"]["ports"][0].update(targetPort="web"),
    ),
    (
        "services",
        "ingress to no port",
        lambda m: m.of_kind("Ingress")[0]["spec"]["rules"][0]["http"]["paths"][0]["backend"][
            "service"
        ]["port"].update(name="https"),
    ),
    (
        "one_image",
        "another image",
        lambda m: _container(m, PHOTOS).update(image="python:3.11-slim"),
    ),
    ("setting_names", "renamed issuer setting", lambda m: _literal(m, "ISSUER_DB_POOL_SIZE", "10")),
    (
        "setting_names",
        "renamed resource setting",
        lambda m: _set_env(m, PHOTOS, "RESOURCE_JWKS_ALLOW_PLAIN_HTTP", "true"),
    ),
    (
        "setting_names",
        "value refused",
        lambda m: _set_env(m, PHOTOS, "RESOURCE_JWKS_ALLOW_HTTP", "maybe"),
    ),
    ("hardening", "root", lambda m: _issuer(m)["securityContext"].update(runAsUser=0)),
    (
        "hardening",
        "writable root",
        lambda m: _container(m, PHOTOS)["securityContext"].update(readOnlyRootFilesystem=False),
    ),
    (
        "hardening",
        "escalation",
        lambda m: _container(m)["securityContext"].pop("allowPrivilegeEscalation"),
    ),
    (
        "hardening",
        "capabilities",
        lambda m: _container(m)["securityContext"]["capabilities"].update(add=["NET_ADMIN"]),
    ),
    ("hardening", "no limits", lambda m: _container(m)["resources"].pop("limits")),
    ("hardening", "not spread", lambda m: _issuer(m).pop("topologySpreadConstraints")),
    (
        "resource_wiring",
        "another iss",
        lambda m: _set_env(m, PHOTOS, "RESOURCE_ISSUER", "https://other.example.com"),
    ),
    (
        "resource_wiring",
        "keys from elsewhere",
        lambda m: _set_env(
            m, PHOTOS, "RESOURCE_JWKS_URL", "http://issuer:8000/.well-known/jwks.json"
        ),
    ),
    (
        "resource_wiring",
        "no pushed revocation",
        lambda m: _set_env(m, PHOTOS, "RESOURCE_EVENTS", "0"),
    ),
    (
        "resource_wiring",
        "events from elsewhere",
        lambda m: _set_env(m, PHOTOS, "RESOURCE_EVENTS_URL", "http://issuer:8000/events"),
    ),
    (
        "resource_wiring",
        "items in the image",
        lambda m: _set_env(m, PHOTOS, "RESOURCE_DATABASE_PATH", "/var/lib/keyhouse/var/photos.db"),
    ),
    (
        "resource_wiring",
        "two pods on one SQLite file",
        lambda m: _deployment(m, PHOTOS)["spec"].update(replicas=2),
    ),
]


@pytest.mark.parametrize(
    ("check", "breakage"), [(c, b) for c, _, b in BROKEN], ids=[f"{c}: {d}" for c, d, _ in BROKEN]
)
def test_a_broken_manifest_fails_its_check(
    manifests: Manifests, check: str, breakage: Breakage
) -> None:
    broken = manifests.copy()
    breakage(broken)
    assert checks.CHECKS[check](broken) != []


def test_every_check_is_tried_on_a_broken_manifest() -> None:
    assert {c for c, _, _ in BROKEN} == set(checks.CHECKS)


# ---------------------------------------------------------------------------------------------
# What `kubectl apply -k` would send, where kubectl is installed.


def test_the_rendered_kustomization_is_valid_and_consistent(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (the checks above read the files themselves)")
    folder = tmp_path / "kubernetes"
    shutil.copytree(KUBERNETES, folder)
    for files in load().generated_secrets().values():
        for source in files.values():
            (folder / source).write_text("placeholder-value-of-32-characters\n")
    out = subprocess.run(
        [kubectl, "kustomize", str(folder)], capture_output=True, text=True, check=True
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d is not None]
    for doc in docs:
        kubernetes_validate.validate(doc, checks.KUBERNETES_VERSION, strict=True)
        assert doc["kind"] == "Namespace" or doc["metadata"]["namespace"] == "keyhouse"
    secrets = {d["metadata"]["name"] for d in docs if d["kind"] == "Secret"}
    maps = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
    rendered = Manifests({}, [("rendered", d) for d in docs])
    images = set()
    for where, spec, container in rendered.containers():
        images.add(container["image"])
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets, where
        for source in container.get("envFrom", []):
            assert source["configMapRef"]["name"] in maps, where
    assert len(images) == 1
    assert images.pop().startswith(load().kustomization["images"][0]["newName"])
