"""Prometheus metrics for the server, on a registry of its own.

Each app gets its own :class:`CollectorRegistry` rather than the process-global default, so
several apps (tests start more than one) never collide on metric names, and ``/metrics``
shows exactly one server's numbers.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServeMetrics:
    """Request counts by route and status, latencies, batch sizes and queue depth."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "res2net_requests",
            "HTTP requests by route template and status code",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency_seconds = Histogram(
            "res2net_request_latency_seconds",
            "Time from request start to the end of the response, by route template",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "res2net_batch_size",
            "Images per forward pass run by the dynamic batcher",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.inference_seconds = Histogram(
            "res2net_inference_seconds",
            "Duration of one batched forward pass",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "res2net_queue_depth",
            "Requests waiting for the batcher",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
