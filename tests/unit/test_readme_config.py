"""The README's first config is valid, and it is the configuration the bench measures first (issue 12:
"the bench's headline is the mission's configuration"; measure what users run)."""

from __future__ import annotations

from pathlib import Path

import yaml

from bridge.core.config import parse
from bridgedev.bench import MISSION_METADATA

ROOT = Path(__file__).resolve().parents[2]


def _first_config() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("```yaml\n", text.index("## A config in a dozen lines")) + len("```yaml\n")
    return text[start : text.index("```", start)]


def test_the_readme_config_loads() -> None:
    loaded = parse(_first_config(), environ={})
    assert loaded.kafka.group == "kafka-jetstream-bridge"


def test_the_bench_measures_the_readme_config() -> None:
    readme = yaml.safe_load(_first_config())["output"]["nats_jetstream"]["metadata"]
    assert readme == MISSION_METADATA
