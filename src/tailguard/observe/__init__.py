"""Observability: Prometheus metrics, latency sketches, usage metering."""
