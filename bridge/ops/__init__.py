"""Operations: logging and the one redaction rule for everything printed (``log``), the HTTP endpoints
``/ping``, ``/ready``, ``/metrics`` (``http``), the Prometheus metrics (``metrics``) and the publish
latency histogram they report (``latency``).
"""
