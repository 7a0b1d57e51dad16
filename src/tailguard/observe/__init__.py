"""Observability: Prometheus metrics, latency sketches, usage metering, and the one percentile
of the project (:mod:`.percentiles`, nearest rank, q in percent)."""
