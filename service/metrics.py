"""Every Prometheus metric of the service, built on an injected registry (docs/design.md, rule 10).

Names and labels are a contract (docs/design.md §8; Prometheus rules and Grafana use them):

    helpseek_decisions_total{outcome, reason, model_version}     counter
    helpseek_interventions_granted_total{model_version}          counter
    helpseek_decisions_by_type_total{type, model_version}        counter (type: a name from
                                         the artifact's types, or "none": proceed / one type)
    helpseek_interventions_refused_total{reason="budget"}        counter
    helpseek_degraded_total{mode="open"|"closed"}                counter
    helpseek_novel_states_total{model_version}                   counter
    helpseek_request_duration_seconds{route}                     histogram
    helpseek_budget_store_duration_seconds{op}                   histogram
    helpseek_budget_store_errors_total{op}                       counter
    helpseek_sessions_started_total                              counter
    helpseek_sessions_finished_total{outcome="success"|"failure"} counter
    helpseek_model_info{model_version}                           gauge (1 = serving)
    helpseek_model_target_intervention_rate{model_version}       gauge
    helpseek_model_reloads_total{result="ok"|"error"}            counter

With several uvicorn workers, prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR)
aggregates the per-process files at scrape time; the gauges use ``livemax``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class _Answer(Protocol):
    """The fields of a decision response that the counters read."""

    @property
    def intervene(self) -> bool: ...
    @property
    def reason(self) -> str: ...
    @property
    def model_version(self) -> str: ...
    @property
    def degraded(self) -> bool: ...
    @property
    def novel(self) -> bool: ...
    @property
    def type(self) -> str | None: ...


_FAST_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The service's metrics on one registry; ``render`` produces the /metrics body."""

    def __init__(
        self, registry: CollectorRegistry | None = None, multiproc_dir: Path | None = None
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._multiproc_dir = multiproc_dir
        r = self.registry
        self.decisions = Counter(
            "helpseek_decisions_total",
            "Decisions answered.",
            ["outcome", "reason", "model_version"],
            registry=r,
        )
        self.granted = Counter(
            "helpseek_interventions_granted_total",
            "Interventions granted (budget charged).",
            ["model_version"],
            registry=r,
        )
        self.by_type = Counter(
            "helpseek_decisions_by_type_total",
            "Decisions by the intervention type granted (none: proceed, or a one-type model).",
            ["type", "model_version"],
            registry=r,
        )
        self.refused = Counter(
            "helpseek_interventions_refused_total",
            "The helper asked to intervene but the budget did not cover the cost.",
            ["reason"],
            registry=r,
        )
        self.degraded = Counter(
            "helpseek_degraded_total",
            "Decisions answered without the budget store.",
            ["mode"],
            registry=r,
        )
        self.novel = Counter(
            "helpseek_novel_states_total",
            "States unlike the artifact's training data.",
            ["model_version"],
            registry=r,
        )
        self.request_duration = Histogram(
            "helpseek_request_duration_seconds",
            "HTTP request latency by route template.",
            ["route"],
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.store_duration = Histogram(
            "helpseek_budget_store_duration_seconds",
            "Budget store call latency.",
            ["op"],
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.store_errors = Counter(
            "helpseek_budget_store_errors_total",
            "Budget store calls that failed (unreachable).",
            ["op"],
            registry=r,
        )
        self.sessions_started = Counter(
            "helpseek_sessions_started_total", "Sessions created.", registry=r
        )
        self.sessions_finished = Counter(
            "helpseek_sessions_finished_total",
            "Sessions closed with an outcome.",
            ["outcome"],
            registry=r,
        )
        self.model_info = Gauge(
            "helpseek_model_info",
            "1 for the model version this process serves.",
            ["model_version"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.target_rate = Gauge(
            "helpseek_model_target_intervention_rate",
            "Intervention rate the artifact expects (manifest target_intervention_rate; mean "
            "over budgets when it is a list).",
            ["model_version"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.reloads = Counter(
            "helpseek_model_reloads_total", "Model reload attempts.", ["result"], registry=r
        )
        # label-bound children of the per-request metrics, looked up once per label set
        self._children: dict[tuple[object, ...], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached (labels() costs a lock and a dict walk per call)."""
        key = (id(metric), *labels)
        got = self._children.get(key)
        if got is None:
            got = self._children[key] = metric.labels(*labels)
        return got

    def count_decision(self, r: _Answer, asked: bool) -> None:
        """Count one answered decision (decisions, granted, refused, degraded, novel)."""
        v = r.model_version
        self.child(self.decisions, "intervene" if r.intervene else "proceed", r.reason, v).inc()
        self.child(self.by_type, r.type or "none", v).inc()
        if r.intervene:
            self.child(self.granted, v).inc()
        elif r.reason == "budget_exhausted" and asked:
            self.child(self.refused, "budget").inc()
        if r.degraded:
            self.child(self.degraded, "open" if r.reason == "fail_open" else "closed").inc()
        if r.novel:
            self.child(self.novel, v).inc()

    def model_swapped(self, old: str | None, new: str, target_rate: float | None) -> None:
        """Point the model gauges at ``new`` (the old version reads 0)."""
        if old is not None and old != new:
            self.model_info.labels(model_version=old).set(0)
            self.target_rate.labels(model_version=old).set(float("nan"))
        self.model_info.labels(model_version=new).set(1)
        if target_rate is not None:
            self.target_rate.labels(model_version=new).set(target_rate)

    def render(self) -> bytes:
        """Exposition text: this registry, or every worker's files in multiprocess mode."""
        if self._multiproc_dir is not None:
            agg = CollectorRegistry()
            MultiProcessCollector(agg, path=str(self._multiproc_dir))
            return generate_latest(agg)
        return generate_latest(self.registry)
