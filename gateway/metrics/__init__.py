"""Prometheus metrics of the gateway (docs/metrics.md)."""
