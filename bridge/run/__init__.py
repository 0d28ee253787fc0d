"""The run: the loop from Kafka to JetStream and back (``pipeline``), its start and stop policies
(``modes``: continuous, backfill), the retry policies of every edge (``retry``), the one shutdown
deadline (``deadline``), the event loop every command runs on (``eventloop``) and ``--workers N``
processes (``workers``).
"""
