"""Kafka/Redpanda → NATS JetStream bridge.

Reads Kafka topics with aiokafka and writes every record into JetStream with nats-py, committing
Kafka offsets only after JetStream acknowledged the records. The layers, one subpackage each (see
README's "Development" section and docs/architecture.md):

- ``core``: pure — config, interpolation, message, checkpoint, routing, frames, errors, TLS, tracing;
- ``kafka``: the aiokafka adapter — source, reader, options, error translation, protocol internals;
- ``jetstream``: the nats-py adapter — publisher and its lanes, client, options, errors, streams;
- ``run``: the pipeline, modes, retry policies, the shutdown deadline, event loop, workers;
- ``ops``: logging, HTTP endpoints, metrics;
- ``migrate``: ``verify`` and ``translate``;
- ``cli``: the commands. Dev tooling (local brokers, bench, demo) is the separate ``bridgedev`` package.
"""

__version__ = "0.1.0"
