"""The Kafka adapter (aiokafka): the consumer the run reads from (``source``), the reader ``verify`` and
``translate`` use (``reader``), the consumer options they share (``options``), the one translation of
aiokafka's exceptions (``errors``) and the only module that touches aiokafka's internals
(``protocol``: no topic auto-creation, topic IDs, commit metadata).
"""
