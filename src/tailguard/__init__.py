"""tailguard: train and serve ML models under P99 latency and cost objectives."""

__version__ = "0.1.0"
