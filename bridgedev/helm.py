"""``helm`` for the chart test (``tests/unit/test_helm.py``), built once from the Go module proxy.

``go install helm.sh/helm/v3/cmd/helm@HELM_VERSION`` into ``<cache>/helm-<version>/bin`` (the same cache
as the Kafka jars: ``$KJB_CACHE_DIR``, else ``~/.cache/kafka-jetstream-bridge``, outside the repo); a few
minutes the first time on two cores, nothing after. ``$HELM_BIN`` names a helm to use instead. Without
Go (and no ``$HELM_BIN``) ``HelmUnavailable`` says what is missing, and the test skips with that text;
a build that fails fails the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import structlog

from bridgedev.brokers.kafka import _file_lock, kafka_cache_dir

log = structlog.get_logger("bridgedev.helm")

HELM_VERSION = "v3.22.0"  # a v3 release the Go module proxy serves, built with this machine's Go (1.26)
BUILD_TIMEOUT = 1800.0


class HelmUnavailable(RuntimeError):
    """No helm, and none can be built here: the message names what is missing."""


def ensure_helm(version: str = HELM_VERSION) -> Path:
    """A ``helm`` binary: ``$HELM_BIN``, the cached build, or one built now with ``go install``. A build that
    fails is a ``RuntimeError`` (something to fix), no Go at all ``HelmUnavailable`` (something missing)."""
    given = os.environ.get("HELM_BIN")
    if given:
        return Path(given)
    root = kafka_cache_dir() / f"helm-{version}"
    binary = root / "bin" / "helm"
    if binary.is_file():
        return binary
    with _file_lock(kafka_cache_dir() / f"helm-{version}.lock"):
        if binary.is_file():
            return binary
        go = shutil.which("go")
        if go is None:
            raise HelmUnavailable(
                f"helm {version} is built with `go install helm.sh/helm/v3/cmd/helm@{version}`, and the Go "
                "toolchain (`go`) is not on the PATH: install Go, or set HELM_BIN to a helm binary"
            )
        began = time.monotonic()
        log.info("helm.building", version=version, into=str(binary.parent))
        env = {**os.environ, "GOBIN": str(binary.parent), "GOFLAGS": "-buildvcs=false", "CGO_ENABLED": "0"}
        done = subprocess.run(
            [go, "install", f"helm.sh/helm/v3/cmd/helm@{version}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
        )
        if done.returncode != 0 or not binary.is_file():
            raise HelmUnavailable(
                f"`go install helm.sh/helm/v3/cmd/helm@{version}` failed: {done.stderr[-2000:]}"
            )
        log.info("helm.built", version=version, seconds=round(time.monotonic() - began, 1))
    return binary
