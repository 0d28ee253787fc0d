"""The pure core: what the bridge means, with no client library in it.

The config (``config``: load, models, the Kafka dialects, secrets, the YAML document), ``${! }``
templates (``interpolation``), a Kafka record as a message with its ``kafka_*`` metadata (``message``),
the commit rule (``checkpoint``), a message → its publish (``routing``: subject, headers,
``Nats-Msg-Id``, limits), the wire format of a publish (``frames``), ``inject_tracing_map``
(``tracing``), a TLS section → ``ssl.SSLContext`` (``tls``), bounded reads of the files a config names
(``localfiles``) and every error of the project (``errors``). Nothing here imports aiokafka or nats
(``tests/unit/test_purity.py`` checks every module of this package).
"""
