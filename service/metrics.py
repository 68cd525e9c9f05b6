"""Prometheus metrics: requests and latency by endpoint and model, predictions by label,
and the close-confusion rate per model.

Each app owns a :class:`Metrics` with its own registry, so several apps (tests) never
collide. With several uvicorn workers the CLI sets ``PROMETHEUS_MULTIPROC_DIR`` before any
worker starts; every worker then writes its samples there and ``/metrics`` aggregates all
workers, whichever one answers the scrape.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Rows per onnxruntime call: 1 is a lone one-instance request; more is batch scoring at
# work (service/batching.py) or a client's own batch.
ROWS_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096, 16384, 65536)
UNMATCHED = "unmatched"


class _CloseConfusionRate(Collector):
    """Derives the per-model rate at scrape time from the two counters, which (unlike a
    gauge) aggregate correctly across worker processes."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def describe(self) -> list[Metric]:
        # Registering must not collect: the source may not be scrapable yet.
        return []

    def collect(self) -> Iterator[Metric]:
        totals: dict[str, float] = {}
        close: dict[str, float] = {}
        for family in self.source.collect():
            for sample in family.samples:
                if sample.name == "costaware_predictions_total":
                    model = sample.labels["model"]
                    totals[model] = totals.get(model, 0.0) + sample.value
                elif sample.name == "costaware_close_confusions_total":
                    close[sample.labels["model"]] = sample.value
        gauge = GaugeMetricFamily(
            "costaware_close_confusion_rate",
            "Share of predictions with |score - threshold| < margin, per model",
            labels=["model"],
        )
        for model, total in sorted(totals.items()):
            if total:
                gauge.add_metric([model], close.get(model, 0.0) / total)
        yield gauge


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        self._children: dict[tuple[Any, ...], Any] = {}
        # The children one request touches, looked up once per model or per request key.
        self._prediction_children: dict[str, tuple[Any, Any, Any]] = {}
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._rows_children: dict[str, Any] = {}
        self.requests = Counter(
            "costaware_requests",
            "HTTP requests by endpoint, model and status",
            ["endpoint", "model", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "costaware_request_duration_seconds",
            "Request latency by endpoint and model",
            ["endpoint", "model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "costaware_predictions",
            "Predictions served, by model and label",
            ["model", "label"],
            registry=self.registry,
        )
        self.close_confusions = Counter(
            "costaware_close_confusions",
            "Predictions with |score - threshold| < margin, by model",
            ["model"],
            registry=self.registry,
        )
        self.non_finite_scores = Counter(
            "costaware_non_finite_scores",
            "Instances refused because the model's score was not a finite number in [0, 1]",
            ["model"],
            registry=self.registry,
        )
        self.out_of_range = Counter(
            "costaware_out_of_range",
            "Instances with at least one feature outside the model's training range "
            "(flagged or refused), by model",
            ["model"],
            registry=self.registry,
        )
        # The decision log (service.decisionlog): written, dropped past its bounds, queued.
        self.decision_log_written = Counter(
            "costaware_decision_log_written",
            "Decisions written to the decision log",
            registry=self.registry,
        )
        self.decision_log_dropped = Counter(
            "costaware_decision_log_dropped",
            "Decisions not logged: the queue was full, or they waited longer than the bound "
            "for an unavailable store",
            registry=self.registry,
        )
        self.decision_log_queued = Gauge(
            "costaware_decision_log_queued",
            "Decisions waiting to be written to the decision log",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        # The value report's last window (GET /models/{name}/value), per model.
        self.realized_value = Gauge(
            "costaware_realized_value_dollars",
            "Realized value of the decisions with an outcome in the last window reported",
            ["model"],
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self.expected_value = Gauge(
            "costaware_expected_value_dollars",
            "Expected value stated for the same decisions in the last window reported",
            ["model"],
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )

        self.scoring_rows = Histogram(
            "costaware_scoring_call_rows",
            "Rows scored per onnxruntime call for /predict and /invocations, by model "
            "(more than a request's own rows: batch scoring at work)",
            ["model"],
            buckets=ROWS_BUCKETS,
            registry=self.registry,
        )

    def _child(self, metric: Any, *labels: str) -> Any:
        # labels() costs more than the increment itself; children are cached per label set.
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe_predictions(self, model: str, labels: list[bool], close: list[bool]) -> None:
        children = self._prediction_children.get(model)
        if children is None:
            # Created on a model's first predictions, all three, so each series exists
            # (at 0) from then on, whichever values later requests add to it.
            children = self._prediction_children[model] = (
                self._child(self.predictions, model, "1"),
                self._child(self.predictions, model, "0"),
                self._child(self.close_confusions, model),
            )
        positive, negative, close_child = children
        positives = labels.count(True)
        # Adding 0 changes nothing but takes the value's lock; a single instance always
        # leaves one of the two label counters at 0.
        if positives:
            positive.inc(positives)
        if len(labels) - positives:
            negative.inc(len(labels) - positives)
        n_close = close.count(True)
        if n_close:
            close_child.inc(n_close)

    def observe_scoring_call(self, model: str, rows: int) -> None:
        child = self._rows_children.get(model)
        if child is None:
            child = self._rows_children[model] = self._child(self.scoring_rows, model)
        child.observe(rows)

    def observe_non_finite(self, model: str, instances: int) -> None:
        self._child(self.non_finite_scores, model).inc(instances)

    def observe_out_of_range(self, model: str, instances: int) -> None:
        self._child(self.out_of_range, model).inc(instances)

    def observe_request(self, endpoint: str, model: str, status: int, seconds: float) -> None:
        key = (endpoint, model, status)
        children = self._request_children.get(key)
        if children is None:
            children = self._request_children[key] = (
                self._child(self.latency, endpoint, model),
                self._child(self.requests, endpoint, model, str(status)),
            )
        latency, requests = children
        latency.observe(seconds)
        requests.inc()

    def render(self) -> tuple[bytes, str]:
        source = self.registry
        if self.multiprocess:
            # Imported here: the module reads the multiprocess directory when used.
            from prometheus_client import multiprocess

            source = CollectorRegistry()
            multiprocess.MultiProcessCollector(source)
        # The rate lives in its own registry because it reads the source's counters; in
        # the source itself it would collect itself.
        derived = CollectorRegistry(auto_describe=False)
        derived.register(_CloseConfusionRate(source))
        return generate_latest(source) + generate_latest(derived), CONTENT_TYPE_LATEST
