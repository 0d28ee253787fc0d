"""The NATS JetStream adapter (nats-py): the publisher (``publisher``) with its pure lane state machine
(``lanes``), the client that is the only module touching nats-py's internals (``client``: writes, the
reply inbox and its parser), connection options and auth (``options``), the one translation of nats-py's
exceptions (``errors``), stream administration (``streams``) and reading a stream back (``reader``).

Not named ``nats``: that would read as nats-py inside the package.
"""
