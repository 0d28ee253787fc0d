"""Topics on a local broker, for ``dev``, ``bench`` and the suite (the bridge itself never creates one)."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

__all__ = ["create_topic"]


async def create_topic(bootstrap: str, topic: str, partitions: int, replication_factor: int = 1) -> None:
    """Create ``topic`` with ``partitions`` partitions (replication 1 unless told) on a local broker."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=replication_factor)]
        )
    finally:
        await admin.close()
