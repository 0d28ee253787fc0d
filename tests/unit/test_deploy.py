"""``deploy/``: every Kubernetes manifest validates against the Kubernetes schemas (kubernetes-validate,
offline, strict), KEDA's against the fields of its ScaledObject/TriggerAuthentication CRDs; the manifests
agree with each other and with the bridge config they carry; the compose file and the Dockerfile have
what they promise: the image installs from the pinned constraints, compose runs the nats-server the
suite runs, the licence matches pyproject. No cluster and no Docker engine: validated, not run."""

from __future__ import annotations

import re
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from bridge.core.config import Loaded, parse
from bridge.ops.http import parse_address
from bridgedev.brokers import nats_server_bin
from bridgedev.constraints import runtime_pins

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
K8S_VERSION = kubernetes_validate.latest_version()


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in documents(path):
            out[(doc["kind"], doc["metadata"]["name"] if "metadata" in doc else path.name)] = doc
    return out


ALL = manifests()
KUBERNETES = {k: v for k, v in ALL.items() if not v["apiVersion"].startswith(("keda.sh/", "kustomize."))}


def one(kind: str) -> dict[str, Any]:
    (doc,) = [d for (k, _), d in ALL.items() if k == kind]
    return doc


def test_every_expected_manifest_is_there() -> None:
    kinds = sorted(k for k, _ in ALL)
    assert kinds == sorted(["ConfigMap", "Secret", "Deployment", "Service", "PodDisruptionBudget", "Job",
                            "ScaledObject", "TriggerAuthentication", "Kustomization"])  # fmt: skip


@pytest.mark.parametrize("key", sorted(KUBERNETES), ids=lambda k: f"{k[0]}/{k[1]}")
def test_kubernetes_schema(key: tuple[str, str]) -> None:
    kubernetes_validate.validate(KUBERNETES[key], K8S_VERSION, strict=True)


def test_the_validator_does_reject() -> None:
    broken = yaml.safe_load(yaml.safe_dump(one("Deployment")))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"] = [4195]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    broken = yaml.safe_load(yaml.safe_dump(one("PodDisruptionBudget")))
    broken["spec"]["maxUnavailabel"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_kustomization_lists_every_file_but_the_job() -> None:
    listed = one("Kustomization")["resources"]
    files = sorted(
        p.name for p in K8S.glob("*.yaml") if p.name not in ("kustomization.yaml", "job-backfill.yaml")
    )
    assert sorted(listed) == files


# ----------------------------------------------------------------------------------- KEDA

_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_META = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
# The fields of KEDA 2.x's ScaledObject spec (keda.sh/v1alpha1 CRD), closed like the CRD's schema.
SCALED_OBJECT = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": _META,
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "initialCooldownPeriod": {"type": "integer", "minimum": 0},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "fallback": {
                    "type": "object",
                    "required": ["failureThreshold", "replicas"],
                    "additionalProperties": False,
                    "properties": {"failureThreshold": {"type": "integer"}, "replicas": {"type": "integer"}},
                },
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {"name": {"type": "string"}, "behavior": {"type": "object"}},
                        },
                        "scalingModifiers": {"type": "object"},
                    },
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metadata": _STR_MAP,  # every value a string, as the CRD says
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "useCachedMetrics": {"type": "boolean"},
                            "authenticationRef": {
                                "type": "object",
                                "required": ["name"],
                                "additionalProperties": False,
                                "properties": {
                                    "name": {"type": "string"},
                                    "kind": {
                                        "enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}
TRIGGER_AUTHENTICATION = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "TriggerAuthentication"},
        "metadata": _META,
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "secretTargetRef": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["parameter", "name", "key"],
                        "additionalProperties": False,
                        "properties": {
                            "parameter": {"type": "string"},
                            "name": {"type": "string"},
                            "key": {"type": "string"},
                        },
                    },
                },
                "env": {"type": "array"},
                "podIdentity": {"type": "object"},
            },
        },
    },
}
# The Kafka scaler's metadata (https://keda.sh/docs/latest/scalers/apache-kafka/).
KAFKA_SCALER_KEYS = {
    "bootstrapServers", "consumerGroup", "topic", "lagThreshold", "activationLagThreshold", "offsetResetPolicy",
    "allowIdleConsumers", "excludePersistentLag", "scaleToZeroOnInvalidOffset", "limitToPartitionsWithLag",
    "partitionLimitation", "sasl", "tls", "unsafeSsl", "version", "ensureEvenDistributionOfPartitions",
}  # fmt: skip


def test_keda_objects_match_their_crd_fields() -> None:
    jsonschema.validate(one("ScaledObject"), SCALED_OBJECT)
    jsonschema.validate(one("TriggerAuthentication"), TRIGGER_AUTHENTICATION)
    broken = yaml.safe_load(yaml.safe_dump(one("ScaledObject")))
    broken["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 5000  # must be a string
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCALED_OBJECT)


def test_keda_scales_the_deployment_on_the_bridges_group_lag() -> None:
    spec = one("ScaledObject")["spec"]
    deployment = one("Deployment")
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                      "name": deployment["metadata"]["name"]}  # fmt: skip
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert set(meta) <= KAFKA_SCALER_KEYS
    loaded = bridge_config()
    assert meta["consumerGroup"] == loaded.kafka.group
    assert meta["topic"] in loaded.kafka.topics
    assert meta["bootstrapServers"] in loaded.kafka.brokers
    assert int(meta["lagThreshold"]) > 0
    assert meta["sasl"] == "scram_sha512"
    assert loaded.kafka.sasl is not None
    assert loaded.kafka.sasl.mechanism == "SCRAM-SHA-512"
    assert (meta["tls"] == "enable") is loaded.kafka.tls.enabled
    auth = one("TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    secret = one("Secret")
    for ref in auth["spec"]["secretTargetRef"]:
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["stringData"]


# ----------------------------------------------------------------------------------- consistency


def pod_env(pod: dict[str, Any]) -> dict[str, str]:
    """The environment the bridge sees: literal values, the Secret's keys, the downward API (a sample)."""
    (container,) = pod["containers"]
    env: dict[str, str] = {}
    for item in container.get("env", []):
        env[item["name"]] = item.get("value", "from-field")
    secret = one("Secret")
    for source in container.get("envFrom", []):
        assert source["secretRef"]["name"] == secret["metadata"]["name"]
        env.update(secret["stringData"])
    return env


def bridge_config(pod: dict[str, Any] | None = None) -> Loaded:
    pod = pod or one("Deployment")["spec"]["template"]["spec"]
    text = one("ConfigMap")["data"]["config.yaml"]
    return parse(text, source="configmap:config.yaml", environ=pod_env(pod))  # every ${VAR} must be set


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_pods_run_the_bridge_with_the_config(kind: str) -> None:
    pod = one(kind)["spec"]["template"]["spec"]
    loaded = bridge_config(pod)  # the ConfigMap's config loads with this pod's environment
    assert not loaded.warnings
    (container,) = pod["containers"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    volume = next(v for v in pod["volumes"] if v["name"] == "config")
    assert volume["configMap"]["name"] == one("ConfigMap")["metadata"]["name"]
    assert container["args"][1:3] == ["-c", mount["mountPath"] + "/config.yaml"]
    assert container["args"][0] == ("run" if kind == "Deployment" else "backfill")
    # above the shutdown budget: the bridge commits before the kubelet kills it
    assert pod["terminationGracePeriodSeconds"] > loaded.config.shutdown_timeout
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == dockerfile_uid()
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]


def test_probes_hit_ping_and_ready_on_the_http_port() -> None:
    pod = one("Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    port = next(p for p in container["ports"] if p["name"] == "http")
    _, http_port = parse_address(bridge_config().config.http.address)
    assert port["containerPort"] == http_port
    assert bridge_config().config.http.enabled
    assert container["livenessProbe"]["httpGet"] == {"path": "/ping", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/ping", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    annotations = one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(http_port)


def test_pdb_and_service_select_the_replicas() -> None:
    labels = one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert one("Deployment")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert one("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert one("Service")["spec"]["selector"].items() <= labels.items()
    job_labels = one("Job")["spec"]["template"]["metadata"]["labels"]
    assert (
        not one("Service")["spec"]["selector"].items() <= job_labels.items()
    )  # the backfill is not a replica


# ----------------------------------------------------------------------------------- compose


def test_compose_file() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"redpanda", "topics", "nats", "bridge"}
    for name in ("redpanda", "nats", "bridge"):
        assert services[name]["healthcheck"]["test"], name
    assert re.fullmatch(
        r"docker\.redpanda\.com/redpandadata/redpanda:v\d+\.\d+\.\d+", services["redpanda"]["image"]
    )
    assert re.search(r"^nats:\d+\.\d+\.\d+", services["nats"]["image"])
    assert "--jetstream" in services["nats"]["command"]
    bridge = services["bridge"]
    assert bridge["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert bridge["depends_on"] == {
        "redpanda": {"condition": "service_healthy"},
        "nats": {"condition": "service_healthy"},
        "topics": {"condition": "service_completed_successfully"},
    }
    env = bridge["environment"]
    assert env["KAFKA_BROKERS"] == "redpanda:9092"
    assert env["NATS_URL"] == "nats://nats:4222"
    source, target, access = bridge["volumes"][0].split(":")
    assert (DEPLOY / source).is_file()
    assert access == "ro"
    assert bridge["command"] == ["run", "-c", target]
    loaded = parse((DEPLOY / source).read_text(), source=source, environ={k: str(v) for k, v in env.items()})
    assert loaded.kafka.brokers == ("redpanda:9092",)
    assert not loaded.warnings
    _, port = parse_address(loaded.config.http.address)
    assert f"{port}:{port}" in bridge["ports"]
    assert "/ready" in " ".join(bridge["healthcheck"]["test"])
    grace = bridge["stop_grace_period"]
    assert int(grace.rstrip("s")) > loaded.config.shutdown_timeout
    assert set(compose["volumes"]) == {"redpanda-data", "nats-data"}


# ----------------------------------------------------------------------------------- Dockerfile


def dockerfile() -> list[str]:
    """Instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def dockerfile_uid() -> int:
    (user,) = [line.split()[1] for line in dockerfile() if line.startswith("USER ")]
    return int(user.split(":")[0])


def test_dockerfile_essentials() -> None:
    lines = dockerfile()
    froms = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert len(froms) == 2  # build stage + slim runtime stage
    for image in froms:  # pinned: an exact patch version tag, or a digest
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", image), image
    assert dockerfile_uid() >= 1000  # not root, not a system account
    assert lines.index(next(x for x in lines if x.startswith("USER "))) > lines.index(
        next(x for x in lines if x.startswith("COPY --from=build"))
    )
    (health,) = [line for line in lines if line.startswith("HEALTHCHECK ")]
    assert "/ping" in health
    assert "--interval=" in health
    assert any(line.startswith("EXPOSE 4195") for line in lines)
    assert any(line == "STOPSIGNAL SIGTERM" for line in lines)
    assert any(line.startswith('ENTRYPOINT ["kafka-jetstream-bridge"]') for line in lines)
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("*") + 1 :][:1] == ["!pyproject.toml"]


def test_dockerfile_installs_from_the_pinned_constraints() -> None:
    lines = dockerfile()
    (copy,) = [line for line in lines if line.startswith("COPY deploy/constraints.txt ")]
    target = copy.split()[-1].removeprefix("./")  # relative to the WORKDIR
    (install,) = [line for line in lines if "pip install" in line]
    assert re.search(rf"pip install (--constraint|-c) {re.escape(target)} \.( |$)", install), install
    assert lines.index(copy) < lines.index(install)
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert "!deploy/constraints.txt" in ignore
    # `make install` takes the same pins, so the suite runs the versions the image gets
    assert "--constraint $(CONSTRAINTS)" in (REPO / "Makefile").read_text()


def pinned() -> dict[str, str]:
    out = {}
    for line in (DEPLOY / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep, f"not pinned with ==: {line}"
            out[canonicalize_name(name)] = version
    return out


def test_constraints_pin_every_runtime_dependency_at_the_tested_version() -> None:
    """Every distribution the bridge needs at run time (pyproject's dependencies, their extras and theirs,
    transitively) is pinned, at the version installed here, where the suite runs; nothing else is."""
    assert pinned() == runtime_pins(), "stale deploy/constraints.txt: run `make constraints`"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for line in project["dependencies"]:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate():
            assert req.specifier.contains(pinned()[canonicalize_name(req.name)]), line


def test_the_licence_matches_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text()
    assert text.split()[:5] == ["Apache", "License", "Version", "2.0,", "January"]
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert metadata.metadata("kafka-jetstream-bridge")["License-Expression"] == "Apache-2.0"
    assert 'org.opencontainers.image.licenses="Apache-2.0"' in " ".join(dockerfile())
    assert "!LICENSE" in (DEPLOY / "Dockerfile.dockerignore").read_text().split()


def test_compose_runs_the_nats_server_the_suite_runs() -> None:
    version = metadata.version("nats-server-bin")
    binary = subprocess.run([nats_server_bin(), "--version"], capture_output=True, text=True, check=True)
    assert binary.stdout.split()[-1] == f"v{version}"
    nats = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]["nats"]
    assert nats["image"] == f"nats:{version}-alpine"
