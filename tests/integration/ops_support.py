"""Helpers for the operations tests (HTTP endpoints, metrics, provisioning, verify, translate).

``get`` and ``scrape`` talk to a bridge's HTTP server on 127.0.0.1; ``Scrape`` looks samples up by
name and labels. ``ops_config`` is ``tests.support.write_config`` with the HTTP server switched on
at a free port.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bridgedev.brokers import free_port
from tests.support import exposed, write_config

PREFIX = "kafka_jetstream_bridge_"


async def get(url: str) -> tuple[int, str]:
    """GET ``url`` within 3 s: (status, body)."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session,
        session.get(url) as resp,
    ):
        return resp.status, await resp.text()


@dataclass
class Scrape:
    text: str
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]

    def value(self, name: str, **labels: str) -> float:
        key = (name if name.startswith(("process_", "python_")) else PREFIX + name, frozenset(labels.items()))
        return self.samples[key]

    def raw(self, name: str, **labels: str) -> float:
        """A sample by the exact name on the page (Redpanda Connect's names: no prefix, no ``_total``)."""
        return exposed(self.text)[(name, frozenset(labels.items()))]

    def labelled(self, name: str) -> dict[frozenset[tuple[str, str]], float]:
        full = PREFIX + name
        return {labels: v for (n, labels), v in self.samples.items() if n == full}


async def scrape(base: str) -> Scrape:
    status, body = await get(base + "/metrics")
    assert status == 200, body
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Scrape(body, samples)


def ops_config(path: Path, **kwargs: Any) -> tuple[Path, str]:
    """A bridge config with ``http`` on 127.0.0.1 at a free port; returns (path, base URL)."""
    port = free_port()
    top = dict(kwargs.pop("top", None) or {})
    top["http"] = {"enabled": True, "address": f"127.0.0.1:{port}"}
    return write_config(path, top=top, **kwargs), f"http://127.0.0.1:{port}"
