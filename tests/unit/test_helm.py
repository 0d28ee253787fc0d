"""``deploy/helm/kafka-jetstream-bridge``: rendered with ``helm template`` (helm built once from the Go module
proxy, ``bridgedev.helm``) under several values; every Kubernetes object validates against the Kubernetes
schemas (kubernetes-validate, offline, strict), KEDA's against the fields of their CRDs; the objects agree
with each other and with the bridge config they carry (which the bridge's own loader reads with the pod's
environment); values that cannot work are refused at render time. No cluster: rendered, not run."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from bridge.core.config import Loaded, parse
from bridge.ops.http import parse_address
from bridgedev.helm import HelmUnavailable, ensure_helm
from tests.unit.test_deploy import (
    K8S_VERSION,
    KAFKA_SCALER_KEYS,
    SCALED_OBJECT,
    TRIGGER_AUTHENTICATION,
    dockerfile_uid,
)

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "kafka-jetstream-bridge"

STRING_CONFIG = """\
input:
  kafka_franz:
    seed_brokers: ["${KAFKA_BROKERS}"]
    topics: [payments]
    consumer_group: payments-bridge
    sasl:
      - mechanism: SCRAM-SHA-512
        username: "${KAFKA_SASL_USERNAME}"
        password: "${KAFKA_SASL_PASSWORD}"   # quoted: a password may hold ": " or " #"
output:
  nats_jetstream:
    urls: ["${NATS_URL}"]
    subject: payments.${! meta("kafka_partition") }
http:
  address: 0.0.0.0:8080
shutdown_timeout: 20s
"""

CASES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "keda": {
        "keda": {
            "enabled": True,
            "maxReplicaCount": 6,
            "kafka": {"sasl": "scram_sha512", "tls": "enable"},
            "auth": {"username": "KAFKA_SASL_USERNAME", "password": "KAFKA_SASL_PASSWORD"},
        },
        "secretEnv": {"KAFKA_SASL_USERNAME": "bridge", "KAFKA_SASL_PASSWORD": "change: me #1"},
    },
    "config-as-text": {
        "config": STRING_CONFIG,
        "httpPort": 8080,
        "workers": 2,
        "replicaCount": 3,
        "existingSecret": "payments-credentials",
        "podDisruptionBudget": {"enabled": False},
        "service": {"enabled": False},
        "terminationGracePeriodSeconds": 30,
        "resources": {"requests": {"cpu": "1", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
    },
}


@pytest.fixture(scope="session")
def helm() -> Path:
    try:
        return ensure_helm()
    except HelmUnavailable as exc:
        pytest.skip(str(exc))


def helm_template(helm: Path, values: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return subprocess.run(
        [str(helm), "template", "bridge", str(CHART), "--namespace", "streaming", "-f", str(path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def render(helm: Path, values: dict[str, Any], tmp_path: Path) -> dict[str, dict[str, Any]]:
    done = helm_template(helm, values, tmp_path)
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    by_kind = {d["kind"]: d for d in docs}
    assert len(by_kind) == len(docs), [d["kind"] for d in docs]  # one of each
    return by_kind


def values_of(case: str) -> dict[str, Any]:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    merged = {**defaults, **CASES[case]}
    merged["keda"] = {**defaults["keda"], **CASES[case].get("keda", {})}
    merged["keda"]["kafka"] = {**defaults["keda"]["kafka"], **CASES[case].get("keda", {}).get("kafka", {})}
    return merged


def pod_env(objects: dict[str, dict[str, Any]], pod: dict[str, Any]) -> dict[str, str]:
    """What the bridge sees: literal env, the downward API (a sample), the Secret's keys (a stand-in for a
    Secret the chart does not create)."""
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value", "from-field") for e in container["env"]}
    for source in container.get("envFrom", []):
        name = source["secretRef"]["name"]
        if "Secret" in objects:
            assert objects["Secret"]["metadata"]["name"] == name
            env.update(objects["Secret"]["stringData"])
        else:
            env.update({"KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p: #x"})
    return env


def config_of(objects: dict[str, dict[str, Any]]) -> Loaded:
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    text = objects["ConfigMap"]["data"]["config.yaml"]
    return parse(text, source="configmap:config.yaml", environ=pod_env(objects, pod))


def test_the_chart_lints(helm: Path) -> None:
    done = subprocess.run(
        [str(helm), "lint", "--strict", str(CHART)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_objects_validate(helm: Path, tmp_path: Path, case: str) -> None:
    objects = render(helm, CASES[case], tmp_path)
    for kind, obj in objects.items():
        if kind == "ScaledObject":
            jsonschema.validate(obj, SCALED_OBJECT)
        elif kind == "TriggerAuthentication":
            jsonschema.validate(obj, TRIGGER_AUTHENTICATION)
        else:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_objects_agree_with_the_values_and_the_config(helm: Path, tmp_path: Path, case: str) -> None:
    values = values_of(case)
    objects = render(helm, CASES[case], tmp_path)
    expected = {"ConfigMap", "Deployment"}
    expected |= {"Service"} if values["service"]["enabled"] else set()
    expected |= {"PodDisruptionBudget"} if values["podDisruptionBudget"]["enabled"] else set()
    expected |= {"Secret"} if values["secretEnv"] and not values["existingSecret"] else set()
    expected |= {"ScaledObject", "TriggerAuthentication"} if values["keda"]["enabled"] else set()
    assert set(objects) == expected

    deployment = objects["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    loaded = config_of(objects)  # the ConfigMap's config loads with this pod's environment
    assert not loaded.warnings
    assert loaded.config.http.enabled
    _, port = parse_address(loaded.config.http.address)
    assert port == values["httpPort"]
    assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/ping", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/ping", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["checksum/config"]  # a config change rolls the pods

    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    volume = next(v for v in pod["volumes"] if v["name"] == "config")
    assert volume["configMap"]["name"] == objects["ConfigMap"]["metadata"]["name"]
    workers = ["--workers", str(values["workers"])] if values["workers"] > 1 else []
    assert container["args"] == ["run", "-c", mount["mountPath"] + "/config.yaml", *workers]
    assert container["image"] == f"{values['image']['repository']}:0.1.0"
    assert container["resources"] == values["resources"]
    assert pod["terminationGracePeriodSeconds"] > loaded.config.shutdown_timeout
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == dockerfile_uid()
    assert container["securityContext"]["readOnlyRootFilesystem"] is True

    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    if "PodDisruptionBudget" in objects:
        pdb = objects["PodDisruptionBudget"]["spec"]
        assert pdb["selector"]["matchLabels"].items() <= labels.items()
        assert pdb["maxUnavailable"] == 1
    if "Service" in objects:
        assert objects["Service"]["spec"]["selector"].items() <= labels.items()
        assert objects["Service"]["spec"]["ports"][0]["port"] == port

    if values["keda"]["enabled"]:
        assert "replicas" not in deployment["spec"]  # KEDA owns the replica count
        spec = objects["ScaledObject"]["spec"]
        assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                          "name": deployment["metadata"]["name"]}  # fmt: skip
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] == values["keda"]["maxReplicaCount"]
        (trigger,) = spec["triggers"]
        meta = trigger["metadata"]
        assert set(meta) <= KAFKA_SCALER_KEYS
        assert meta["consumerGroup"] == loaded.kafka.group
        assert meta["topic"] in loaded.kafka.topics
        assert meta["bootstrapServers"] in loaded.kafka.brokers
        assert int(meta["lagThreshold"]) > 0
        auth = objects["TriggerAuthentication"]
        assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["name"] == objects["Secret"]["metadata"]["name"]
            assert ref["key"] in objects["Secret"]["stringData"]
    else:
        assert deployment["spec"]["replicas"] == values["replicaCount"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"config": {"http": {"enabled": False}}}, "the chart needs the HTTP server"),
        ({"config": STRING_CONFIG}, "http.address must listen on httpPort (4195)"),
        ({"keda": {"enabled": True, "minReplicaCount": 4, "maxReplicaCount": 2}}, "minReplicaCount is above"),
        ({"keda": {"enabled": True, "auth": {"username": "U"}}}, "set existingSecret or secretEnv"),
        ({"config": {"shutdown_timeout": "60s"}}, "must be above config.shutdown_timeout (60s)"),
        ({"terminationGracePeriodSeconds": 10}, "must be above config.shutdown_timeout (30s)"),
        ({"workers": 0}, "workers must be a whole number of at least 1"),
        ({"workers": "abc"}, "workers must be a whole number of at least 1"),
        ({"keda": {"enabled": True, "minReplicaCount": 0}}, "keda.minReplicaCount must be at least 1"),
        (
            {"keda": {"enabled": True, "kafka": {"consumerGroup": "other"}}},
            "is not the config's consumer_group",
        ),
    ],
    ids=[
        "http-off",
        "port-mismatch",
        "keda-min-above-max",
        "keda-auth-without-secret",
        "grace-below-shutdown",
        "grace-too-short",
        "no-worker",
        "workers-not-a-number",
        "keda-min-0",
        "keda-other-group",
    ],
)
def test_values_that_cannot_work_are_refused(
    helm: Path, tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    done = helm_template(helm, values, tmp_path)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr


def test_keda_scales_on_the_configs_group(helm: Path, tmp_path: Path) -> None:
    values = {"keda": {"enabled": True}, "config": {"input": {"kafka_franz": {"consumer_group": "mine"}}}}
    (trigger,) = render(helm, values, tmp_path)["ScaledObject"]["spec"]["triggers"]
    assert trigger["metadata"]["consumerGroup"] == "mine"


def test_a_config_change_rolls_the_pods(helm: Path, tmp_path: Path) -> None:
    def checksum(values: dict[str, Any]) -> str:
        pod = render(helm, values, tmp_path)["Deployment"]["spec"]["template"]
        return str(pod["metadata"]["annotations"]["checksum/config"])

    assert checksum({}) == checksum({"replicaCount": 5})
    assert checksum({}) != checksum({"config": {"shutdown_timeout": "25s"}})
