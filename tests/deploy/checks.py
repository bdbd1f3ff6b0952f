"""The checks deploy/kubernetes is held to. Each takes the loaded manifests and returns its
problems, one line each; an empty list is a pass."""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate  # type: ignore[import-untyped]

from issuer.settings import IssuerSettings
from resource_service.settings import JWKS_KNOBS, ResourceSettings
from serving.limits import ConnectionLimits
from shared.errors import ConfigurationError
from tests.deploy.manifests import (
    APP_UID,
    KUBERNETES,
    ROOT,
    Manifests,
    command,
    container_port,
    mount_for,
    option,
    runs,
    selects,
    template_labels,
)

# The oldest Kubernetes release the manifests are written for (kubernetes-validate bundles the
# schemas of 1.25 to 1.37, so the check needs no network).
KUBERNETES_VERSION = "1.30.0"
READY_PATH = "/readyz"
LIVE_PATH = "/healthz"
ISSUER_DEPLOYMENT = "keyhouse-issuer"
# A PostgreSQL URL with a password in it: user:password@
_URL_WITH_PASSWORD = re.compile(r"postgres(?:ql)?(?:\+\w+)?://[^\s/@:]+:[^\s/@]+@")
# Settings whose value is a secret: only their _FILE form (a mounted Secret) may be set.
_SECRET_SETTINGS = re.compile(r"SECRET|PASSWORD|TOKEN")


def schema(m: Manifests) -> list[str]:
    """Every document validates against the Kubernetes schema, strictly (no unknown field)."""
    problems = []
    for file, doc in m.docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = "/".join(str(p) for p in exc.path)
            problems.append(f"{file}: {doc.get('kind')} at {where or '.'}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{file}: {exc.message}")
    return problems


def replicas(m: Manifests) -> list[str]:
    count = m.named("Deployment", ISSUER_DEPLOYMENT)["spec"].get("replicas", 1)
    return [] if count >= 2 else [f"the issuer runs {count} replica(s), fewer than 2"]


def probes(m: Manifests) -> list[str]:
    """Every long-running container: readiness on /readyz, liveness (and startup) on /healthz,
    on the port the server listens on (its --port), which is a declared container port."""
    problems = []
    for where, _, container in m.containers():
        if not where.startswith("Deployment/"):
            continue
        port = option(command(container), "--port")
        if port is None:
            problems.append(f"{where}: no --port on the command line")
            continue
        declared = {int(p["containerPort"]) for p in container.get("ports", [])}
        if int(port) not in declared:
            problems.append(f"{where}: listens on {port}, declares ports {sorted(declared)}")
        wanted = {
            "readinessProbe": READY_PATH,
            "livenessProbe": LIVE_PATH,
            "startupProbe": LIVE_PATH,
        }
        for probe, path in wanted.items():
            get = container.get(probe, {}).get("httpGet")
            if get is None:
                if probe != "startupProbe":
                    problems.append(f"{where}: no HTTP {probe}")
                continue
            if get.get("path") != path:
                problems.append(f"{where}: {probe} asks {get.get('path')}, not {path}")
            if container_port(container, get.get("port", "")) != int(port):
                problems.append(f"{where}: {probe} port {get.get('port')} is not {port}")
    return problems


def secret_files(m: Manifests) -> list[str]:
    """Every issuer container has ISSUER_SECRET_KEY_FILE (never the secret itself), and every
    *_FILE setting names a file of a generated Secret, mounted read-only, readable by the app's
    user alone (mode 0440 with the pod's fsGroup, or 0400 on a Secret owned by it: never
    world-readable)."""
    problems = []
    secrets = m.generated_secrets()
    for where, spec, container in m.containers():
        env = m.env(container)
        if runs(container, "issuer") and "ISSUER_SECRET_KEY_FILE" not in env:
            problems.append(f"{where}: no ISSUER_SECRET_KEY_FILE")
        for name, path in env.items():
            if not name.endswith("_FILE"):
                continue
            found = mount_for(spec, container, path)
            if found is None:
                problems.append(f"{where}: {name}={path} is on no mounted volume")
                continue
            mount, volume = found
            if mount.get("readOnly") is not True:
                problems.append(f"{where}: {name}'s volume {mount['name']} is not read-only")
            secret = volume.get("secret")
            if secret is None:
                problems.append(f"{where}: {name}'s volume {volume['name']} is not a Secret")
                continue
            if secret.get("secretName") not in secrets:
                problems.append(
                    f"{where}: {name} is in Secret {secret.get('secretName')}, not a generated one"
                )
                continue
            relative = path[len(mount["mountPath"].rstrip("/")) + 1 :]
            items = {i["path"]: i for i in secret.get("items", [])}
            item = items.get(relative, {"key": relative})
            if relative not in items and secret.get("items"):
                problems.append(f"{where}: {name}: no item {relative} in volume {volume['name']}")
            if item["key"] not in secrets[secret["secretName"]]:
                problems.append(
                    f"{where}: {name}: Secret {secret['secretName']} has no key {item['key']}"
                )
            mode = item.get("mode", secret.get("defaultMode", 0o644))
            group_ok = mode & 0o040 and spec.get("securityContext", {}).get("fsGroup") == APP_UID
            if mode & 0o007 or not group_ok:
                problems.append(
                    f"{where}: {name} has mode {mode:04o} with fsGroup "
                    f"{spec.get('securityContext', {}).get('fsGroup')}: not readable by "
                    f"uid {APP_UID} alone"
                )
    return problems


def _ignored_and_untracked(path: Path) -> bool:
    relative = str(path.relative_to(ROOT))
    ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", relative], cwd=ROOT)
    tracked = subprocess.run(
        ["git", "ls-files", "--error-unmatch", relative], cwd=ROOT, capture_output=True
    )
    return ignored.returncode == 0 and tracked.returncode != 0


def no_secret_values(m: Manifests, folder: Path = KUBERNETES) -> list[str]:
    """No secret value in the repository: no Secret document, no secret setting given as a value,
    no password in a database URL, Secrets generated only from files that git ignores."""
    problems = [
        f"{file}: a Secret document ({doc['metadata']['name']})"
        for file, doc in m.docs
        if doc.get("kind") == "Secret"
    ]
    for where, _, container in m.containers():
        for name, value in m.env(container).items():
            if _SECRET_SETTINGS.search(name) and not name.endswith("_FILE"):
                problems.append(
                    f"{where}: {name} is set in the manifest: only its _FILE form may be"
                )
            if _URL_WITH_PASSWORD.search(value):
                problems.append(f"{where}: {name} holds a database URL with a password")
    for generator in m.kustomization.get("secretGenerator", []):
        if generator.get("literals") or generator.get("envs"):
            problems.append(f"secretGenerator {generator['name']}: literals or envs, not files")
    for secret, files in m.generated_secrets().items():
        for source in files.values():
            if not _ignored_and_untracked(folder / source):
                problems.append(f"Secret {secret}: {source} is not git-ignored (or is committed)")
    for path in sorted(folder.rglob("*")):
        text = path.read_text(errors="replace") if path.is_file() else ""
        if _URL_WITH_PASSWORD.search(text) and not _ignored_and_untracked(path):
            problems.append(f"{path.relative_to(ROOT)}: a database URL with a password")
    return problems


def disruption_budget(m: Manifests) -> list[str]:
    """One PodDisruptionBudget selects the issuer's pods (and no job's), minAvailable 1, which is
    fewer than the replicas (else no node could ever be drained)."""
    issuer = m.named("Deployment", ISSUER_DEPLOYMENT)
    budgets = [
        b
        for b in m.of_kind("PodDisruptionBudget")
        if selects(b["spec"]["selector"].get("matchLabels", {}), template_labels(issuer))
    ]
    if len(budgets) != 1:
        return [f"{len(budgets)} PodDisruptionBudgets select the issuer's pods"]
    spec = budgets[0]["spec"]
    problems = []
    if spec.get("minAvailable") != 1:
        problems.append(f"the issuer's budget has minAvailable {spec.get('minAvailable')}, not 1")
    if spec.get("minAvailable", 0) >= issuer["spec"].get("replicas", 1):
        problems.append("the issuer's budget allows no disruption at all")
    for where, spec_ in m.pod_specs():
        owner = where.split("/")
        if owner[0] != "Deployment" or owner[1] != ISSUER_DEPLOYMENT:
            labels = _labels_of(m, where)
            if selects(budgets[0]["spec"]["selector"].get("matchLabels", {}), labels):
                problems.append(f"the issuer's budget also selects {where}")
    return problems


def _labels_of(m: Manifests, where: str) -> dict[str, str]:
    kind, name = where.split("/")[:2]
    doc = m.named(kind, name)
    if kind == "CronJob":
        return dict(doc["spec"]["jobTemplate"]["spec"]["template"]["metadata"].get("labels", {}))
    return template_labels(doc)


def services(m: Manifests) -> list[str]:
    """Each Service selects the pods of exactly one Deployment (and nothing else), on a port its
    container declares; each Ingress backend is a Service port."""
    problems = []
    templates = [(where, _labels_of(m, where)) for where, _ in m.pod_specs()]
    ports: dict[str, set[str | int]] = {}
    for svc in m.of_kind("Service"):
        name, spec = svc["metadata"]["name"], svc["spec"]
        chosen = [w for w, labels in templates if selects(spec.get("selector", {}), labels)]
        if len(chosen) != 1 or not chosen[0].startswith("Deployment/"):
            problems.append(f"Service {name} selects {chosen or 'nothing'}")
            continue
        kind, deployment = chosen[0].split("/")
        container = m.named(kind, deployment)["spec"]["template"]["spec"]["containers"][0]
        for port in spec["ports"]:
            ports.setdefault(name, set()).update({port["port"], port.get("name", "")})
            if container_port(container, port.get("targetPort", port["port"])) is None:
                problems.append(
                    f"Service {name}: targetPort {port.get('targetPort')} is no container port"
                )
    for ingress in m.of_kind("Ingress"):
        for rule in ingress["spec"].get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                backend = path["backend"]["service"]
                port = backend["port"].get("name", backend["port"].get("number"))
                if port not in ports.get(backend["name"], set()):
                    problems.append(
                        f"Ingress {rule.get('host')}{path['path']}: "
                        f"no Service port {backend['name']}:{port}"
                    )
    return problems


def one_image(m: Manifests) -> list[str]:
    """Every container runs the one image the kustomization sets (the repository's Dockerfile)."""
    images = m.kustomization.get("images", [])
    if len(images) != 1:
        return [f"the kustomization sets {len(images)} images, not 1"]
    problems = []
    for where, _, container in m.containers():
        if container.get("image") != images[0]["name"]:
            problems.append(f"{where}: image {container.get('image')}, not {images[0]['name']}")
    return problems


class _Recorder(Mapping[str, str]):
    """An environment that remembers every name the code looked up."""

    def __init__(self, data: dict[str, str]) -> None:
        self.data = data
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return self.data[key]

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return key in self.data

    def __iter__(self) -> Any:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def _with_files(env: dict[str, str], folder: Path) -> dict[str, str]:
    """The environment with every *_FILE pointing at a placeholder file of the same name."""
    out = dict(env)
    for name in env:
        if name.endswith("_FILE"):
            path = folder / name
            path.write_text("placeholder-value-of-32-characters\n")
            out[name] = str(path)
    return out


def setting_names(m: Manifests) -> list[str]:
    """Every variable a container sets is one the code reads (a renamed setting fails), and the
    settings accept the manifest's values. Issuer names: what IssuerSettings.from_env looks up;
    resource service names: the names in resource_service/settings.py, its JWKS knobs and the
    connection limits."""
    problems = []
    resource_source = (ROOT / "resource_service" / "settings.py").read_text()
    resource_names = set(re.findall(r'"(RESOURCE_[A-Z0-9_]+)"', resource_source))
    resource_names |= set(JWKS_KNOBS.values())
    limits = _Recorder({})
    ConnectionLimits.from_env("RESOURCE_", limits)
    resource_names |= limits.read
    for where, _, container in m.containers():
        env = m.env(container)
        with tempfile.TemporaryDirectory() as folder:
            values = _with_files(env, Path(folder))
            recorder = _Recorder(values)
            try:
                if runs(container, "issuer"):
                    IssuerSettings.from_env(recorder)
                    known = recorder.read
                elif runs(container, "resource-service"):
                    ResourceSettings.from_env(values)
                    known = resource_names
                else:
                    problems.append(f"{where}: runs neither issuer nor resource-service")
                    continue
            except ConfigurationError as exc:
                problems.append(f"{where}: the settings refuse the manifest: {exc.description}")
                continue
        for name in sorted(set(env) - known):
            problems.append(f"{where}: {name} is not a setting the code reads")
    return problems


def hardening(m: Manifests) -> list[str]:
    """Non-root, read-only root filesystem, no privilege escalation, no capabilities, seccomp,
    no API token, requests and limits; issuer replicas spread over nodes."""
    problems = []
    for where, spec in m.pod_specs():
        pod = spec.get("securityContext", {})
        if pod.get("runAsNonRoot") is not True or pod.get("runAsUser") != APP_UID:
            problems.append(f"{where}: not runAsNonRoot as uid {APP_UID}")
        if pod.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{where}: no RuntimeDefault seccomp profile")
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: mounts a service account token")
    for where, _, container in m.containers():
        sc = container.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation is not false")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: the root filesystem is writable")
        if sc.get("capabilities", {}).get("drop") != ["ALL"] or sc["capabilities"].get("add"):
            problems.append(f"{where}: capabilities not dropped (drop: [ALL], no add)")
        resources = container.get("resources", {})
        for part in ("requests", "limits"):
            for what in ("cpu", "memory"):
                if what not in resources.get(part, {}):
                    problems.append(f"{where}: no {what} {part}")
    issuer = m.named("Deployment", ISSUER_DEPLOYMENT)
    spec = issuer["spec"]["template"]["spec"]
    spread = [
        c
        for c in spec.get("topologySpreadConstraints", [])
        if c.get("topologyKey") == "kubernetes.io/hostname"
        and c.get("whenUnsatisfiable") == "DoNotSchedule"
        and selects(c.get("labelSelector", {}).get("matchLabels", {}), template_labels(issuer))
    ]
    if not spread:
        problems.append("the issuer's replicas are not spread over nodes (hostname, DoNotSchedule)")
    return problems


def resource_wiring(m: Manifests) -> list[str]:
    """A resource service accepts the issuer's `iss`, fetches keys through the issuer's Service
    and keeps its items on a writable volume; one pod on a ReadWriteOnce volume, replaced
    (Recreate) rather than rolled, since two pods must not share the SQLite file."""
    problems = []
    issuer_url = m.config_maps()["keyhouse-issuer"].get("ISSUER_URL")
    service = m.named("Service", ISSUER_DEPLOYMENT)
    for deployment in m.of_kind("Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        for container in spec["containers"]:
            if not runs(container, "resource-service"):
                continue
            where = f"Deployment/{deployment['metadata']['name']}/{container['name']}"
            env = m.env(container)
            if env.get("RESOURCE_ISSUER") != issuer_url:
                problems.append(
                    f"{where}: RESOURCE_ISSUER {env.get('RESOURCE_ISSUER')} "
                    f"is not ISSUER_URL {issuer_url}"
                )
            jwks = urlsplit(env.get("RESOURCE_JWKS_URL", ""))
            if (jwks.hostname or "").split(".")[0] != service["metadata"][
                "name"
            ] or jwks.port not in {p["port"] for p in service["spec"]["ports"]}:
                problems.append(
                    f"{where}: RESOURCE_JWKS_URL {jwks.geturl()} is not the issuer's Service"
                )
            problems += _events_wiring(where, env, service)
            found = mount_for(spec, container, env.get("RESOURCE_DATABASE_PATH", "var/x.db"))
            if found is None or found[0].get("readOnly"):
                problems.append(f"{where}: RESOURCE_DATABASE_PATH is on no writable volume")
            elif "persistentVolumeClaim" in found[1] and (
                deployment["spec"].get("replicas", 1) != 1
                or deployment["spec"].get("strategy", {}).get("type") != "Recreate"
            ):
                problems.append(
                    f"{where}: items on a volume claim need 1 replica and strategy Recreate"
                )
    return problems


def _events_wiring(where: str, env: Mapping[str, str], service: dict[str, Any]) -> list[str]:
    """Pushed revocation is on and its stream (RESOURCE_EVENTS_URL, or the default derived from
    RESOURCE_JWKS_URL) is reached through the issuer's Service, like the keys."""
    try:
        settings = ResourceSettings.from_env(env)
    except ConfigurationError:
        return []  # setting_names reports it
    if not settings.events:
        return [f"{where}: RESOURCE_EVENTS is off: revocations would not be pushed"]
    events = urlsplit(settings.events_url)
    if (events.hostname or "").split(".")[0] != service["metadata"]["name"] or events.port not in {
        p["port"] for p in service["spec"]["ports"]
    }:
        return [f"{where}: the events stream {events.geturl()} is not the issuer's Service"]
    return []


CHECKS = {
    "schema": schema,
    "replicas": replicas,
    "probes": probes,
    "secret_files": secret_files,
    "no_secret_values": no_secret_values,
    "disruption_budget": disruption_budget,
    "services": services,
    "one_image": one_image,
    "setting_names": setting_names,
    "hardening": hardening,
    "resource_wiring": resource_wiring,
}
