"""deploy/k8s: every manifest valid against Kubernetes' schemas (kubernetes-validate's bundled copies,
offline), and its values cross-checked with agent/settings.py, the Dockerfile and each other."""

from __future__ import annotations

import math
import socket
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import tomllib
import yaml
from dockerfile_parse import DockerfileParser

from agent.settings import DEFAULT_MAX_CALLS, DEFAULT_PORT, Settings, SettingsError

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = (
    "1.30.0"  # the oldest release the manifests target (preStop exec, autoscaling/v2, policy/v1)
)


def _load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((K8S / name).read_text())
    assert isinstance(doc, dict), name
    return doc


MANIFESTS = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
KUSTOMIZATION = _load("kustomization.yaml")
DEPLOYMENT, SERVICE, HPA, PDB, SECRET = (
    _load(n) for n in ("deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml", "secret.yaml")
)
POD = DEPLOYMENT["spec"]["template"]["spec"]
(CONTAINER,) = POD["containers"]
ENV = {item["name"]: item["value"] for item in CONTAINER["env"]}
ANNOTATIONS = DEPLOYMENT["metadata"]["annotations"]


def _cores(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("schema validation tried the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.mark.parametrize("version", [KUBERNETES_VERSION, kubernetes_validate.latest_version()])
@pytest.mark.parametrize("name", MANIFESTS)
@pytest.mark.usefixtures("no_network")
def test_every_manifest_is_valid_offline(name: str, version: str) -> None:
    # strict: an unknown or misspelt field is an error, not silently dropped by the API server.
    kubernetes_validate.validate(_load(name), version, strict=True)


def test_validation_can_fail() -> None:
    broken = _load("deployment.yaml")
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/status"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest_but_the_secret_template() -> None:
    assert sorted(KUSTOMIZATION["resources"]) == sorted(set(MANIFESTS) - {"secret.yaml"})
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (image,) = KUSTOMIZATION["images"]
    assert image["name"] == CONTAINER["image"] and image["newTag"] == pyproject["project"]["version"]
    assert KUSTOMIZATION["namespace"] == _load("namespace.yaml")["metadata"]["name"]


def _settings() -> Settings:
    secret_keys = dict.fromkeys(SECRET["stringData"], "")
    return Settings.from_env({**secret_keys, **ENV, "OPENAI_API_KEY": "sk-test"})


def test_the_port_is_the_servers_and_the_probes_ask_what_the_server_answers() -> None:
    settings = _settings()
    (port,) = CONTAINER["ports"]
    assert port["containerPort"] == settings.port == DEFAULT_PORT
    assert SERVICE["spec"]["ports"][0]["targetPort"] == port["name"]
    probes = {
        kind: CONTAINER[kind]["httpGet"] for kind in ("readinessProbe", "livenessProbe", "startupProbe")
    }
    assert {kind: probe["port"] for kind, probe in probes.items()} == dict.fromkeys(probes, port["name"])
    # Readiness drops with the drain (503); liveness must not, or a draining pod would be restarted mid-call.
    assert probes["readinessProbe"]["path"] == "/status"
    assert probes["livenessProbe"]["path"] == probes["startupProbe"]["path"] == "/livez"


def test_the_grace_period_outlasts_the_whole_drain() -> None:
    settings = _settings()
    pre_stop = float(CONTAINER["lifecycle"]["preStop"]["exec"]["command"][-1])
    drain = pre_stop + settings.call_drain_timeout_s + settings.drain_timeout_s
    margin = POD["terminationGracePeriodSeconds"] - drain
    assert 10 <= margin <= 120, (POD["terminationGracePeriodSeconds"], drain)


def test_max_calls_fits_the_cpu_request_at_the_benchmarked_calls_per_core() -> None:
    settings = _settings()
    # One number from the capacity benchmark (bench/README.md): the manifest carries the settings' default.
    assert settings.max_calls == DEFAULT_MAX_CALLS
    calls_per_core = int(ANNOTATIONS["vox-line-agent/calls-per-core"])
    cpu = _cores(CONTAINER["resources"]["requests"]["cpu"])
    assert settings.max_calls * settings.workers <= calls_per_core * cpu
    assert settings.workers <= math.ceil(cpu)  # a worker is one event loop: at most one core each
    assert "cpu" not in CONTAINER["resources"]["limits"]  # throttling stalls the event loop: dead air


def test_it_runs_as_the_images_non_root_user_with_nothing_writable_but_tmp() -> None:
    user = DockerfileParser(str(ROOT / "Dockerfile")).structure
    uid = [item["value"] for item in user if item["instruction"] == "USER"][-1].split(":")[0]
    assert POD["securityContext"]["runAsNonRoot"] is True
    assert str(POD["securityContext"]["runAsUser"]) == uid
    container = CONTAINER["securityContext"]
    assert container["readOnlyRootFilesystem"] and not container["allowPrivilegeEscalation"]
    assert container["capabilities"]["drop"] == ["ALL"]
    assert [mount["mountPath"] for mount in CONTAINER["volumeMounts"]] == ["/tmp"]


def test_secrets_come_from_the_secret_and_the_template_holds_none() -> None:
    assert CONTAINER["envFrom"] == [{"secretRef": {"name": SECRET["metadata"]["name"]}}]
    assert not set(ENV) & set(SECRET["stringData"])  # no key in plain env as well
    for key, value in SECRET["stringData"].items():
        assert value == "" or (value.startswith("<") and value.endswith(">")), key  # placeholders only
    assert SECRET["stringData"]["OPENAI_API_KEY"]  # the one the server cannot start without


def test_selectors_name_the_deployments_pods() -> None:
    labels = DEPLOYMENT["spec"]["template"]["metadata"]["labels"]
    for selector in (
        DEPLOYMENT["spec"]["selector"]["matchLabels"],
        SERVICE["spec"]["selector"],
        PDB["spec"]["selector"]["matchLabels"],
        POD["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"],
    ):
        assert selector.items() <= labels.items()
    target = HPA["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", DEPLOYMENT["metadata"]["name"])
    # A rolling update or an eviction never takes the last ready pod.
    assert HPA["spec"]["minReplicas"] > PDB["spec"]["maxUnavailable"]
    assert DEPLOYMENT["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_the_secret_holds_what_the_server_cannot_start_without() -> None:
    filled = dict(SECRET["stringData"])
    Settings.from_env({**ENV, **filled})  # the template's placeholders filled in: it starts
    with pytest.raises(SettingsError, match=r"^OPENAI_API_KEY"):  # without the LLM key: it refuses, naming it
        Settings.from_env({**ENV, **filled, "OPENAI_API_KEY": ""})
