"""Prometheus metrics, on a registry per app so several apps (tests) never collide."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 4.0, 5.0, 10.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "donorbot_webhook_requests",
            "Webhook requests by route and outcome",
            ["route", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "donorbot_webhook_seconds",
            "Webhook request latency",
            ["route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.handler_errors = Counter(
            "donorbot_handler_errors", "Handlers that raised", registry=self.registry
        )
        self.duplicates = Counter(
            "donorbot_duplicates_dropped",
            "WeChat retries answered from the dedup store",
            registry=self.registry,
        )
        self.budget_overruns = Counter(
            "donorbot_budget_overruns",
            "Messages answered later through the customer-service API",
            registry=self.registry,
        )
        self.outbox_sent = Counter(
            "donorbot_outbox_sent",
            "Queued messages sent, by result",
            ["result"],
            registry=self.registry,
        )
        self._latency_children = {r: self.latency.labels(r) for r in ("mp", "wecom")}
        self._request_children: dict[tuple[str, str], Any] = {}

    def observe(self, route: str, outcome: str, seconds: float) -> None:
        child = self._request_children.get((route, outcome))
        if child is None:
            child = self._request_children[(route, outcome)] = self.requests.labels(route, outcome)
        child.inc()
        self._latency_children[route].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
