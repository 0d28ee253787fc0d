"""Kafka/Redpanda → NATS JetStream bridge.

Reads Kafka topics with aiokafka and writes every record into JetStream with nats-py, committing
Kafka offsets only after JetStream acknowledged the records. See README.md and DESIGN notes in the
module docstrings: config → interpolation → message → router → sink / source → pipeline → cli.
"""

__version__ = "0.1.0"
