"""Generate docker/grafana/dashboards/helpseek.json from code (grafana-foundation-sdk).

Usage::

    .venv/bin/python scripts/build_dashboard.py          # rewrite the committed JSON
    .venv/bin/python scripts/build_dashboard.py --check  # exit 1 if the JSON is stale

Every panel queries the Prometheus datasource provisioned with the pinned uid below
(docker/grafana/provisioning/datasources/prometheus.yml); tests/deploy checks that every metric
named here exists in a live service's /metrics.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row, ThresholdsConfig
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.builders.stat import Panel as Stat
from grafana_foundation_sdk.builders.timeseries import Panel as Timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import BigValueGraphMode, BigValueTextMode
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    Threshold,
    ThresholdsMode,
)

__all__ = ["DASHBOARD_PATH", "DASHBOARD_UID", "DATASOURCE_UID", "build", "main", "render"]

DATASOURCE_UID = "helpseek-prometheus"
DASHBOARD_UID = "helpseek-overview"
DASHBOARD_PATH = Path(__file__).resolve().parents[1] / "docker/grafana/dashboards/helpseek.json"
PROM = DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)


def _query(expr: str, legend: str, ref: str) -> Dataquery:
    return Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(PROM)


def _series(title: str, unit: str, queries: list[tuple[str, str]], description: str) -> Timeseries:
    panel = (
        Timeseries()
        .title(title)
        .description(description)
        .datasource(PROM)
        .unit(unit)
        .min(0)
        .height(8)
        .span(12)
        .line_width(1)
        .fill_opacity(10)
    )
    for i, (expr, legend) in enumerate(queries):
        panel = panel.with_target(_query(expr, legend, chr(ord("A") + i)))
    return panel


def _stat(title: str, expr: str, legend: str, unit: str, description: str) -> Stat:
    return (
        Stat()
        .title(title)
        .description(description)
        .datasource(PROM)
        .unit(unit)
        .height(4)
        .span(4)
        .with_target(_query(expr, legend, "A"))
    )


def build() -> Dashboard:
    """Build the HelpSeek overview dashboard: traffic, interventions, budgets, latency, health."""
    degraded_thresholds = (
        ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=None, color="green"), Threshold(value=0.01, color="red")])
    )
    return (
        Dashboard("HelpSeek")
        .uid(DASHBOARD_UID)
        .description("When agents ask for help: decisions, interventions, budgets, latency.")
        .tags(["helpseek", "generated"])
        .refresh("10s")
        .time("now-1h", "now")
        .timezone("browser")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .with_row(Row("Overview"))
        .with_panel(
            _stat(
                "Model version",
                "max by (model_version) (helpseek_model_info) == 1",
                "{{model_version}}",
                "none",
                "Artifact id currently served.",
            )
            .graph_mode(BigValueGraphMode.NONE)
            .text_mode(BigValueTextMode.NAME)
        )
        .with_panel(
            _stat(
                "Decisions / s",
                "sum(rate(helpseek_decisions_total[$__rate_interval]))",
                "decisions/s",
                "reqps",
                "All /should_intervene answers per second.",
            )
        )
        .with_panel(
            _stat(
                "Episode success rate (5m)",
                "helpseek:episode_success_rate:5m",
                "success",
                "percentunit",
                "Reported outcomes ending in success.",
            )
        )
        .with_panel(
            _stat(
                "Degraded share (5m)",
                "helpseek:degraded_share:5m",
                "degraded",
                "percentunit",
                "Answers given by the fail mode (budget store down).",
            ).thresholds(degraded_thresholds)
        )
        .with_panel(
            _stat(
                "Budget refusals / s",
                "helpseek:budget_refusals:rate5m",
                "refused",
                "reqps",
                "Interventions the helper wanted but the budget refused (5m).",
            )
        )
        .with_panel(
            _stat(
                "Model reloads",
                "sum by (result) (increase(helpseek_model_reloads_total[$__range]))",
                "{{result}}",
                "none",
                "Reloads in the shown time range, by result.",
            )
        )
        .with_row(Row("Decisions and interventions"))
        .with_panel(
            _series(
                "Decisions / s by outcome",
                "reqps",
                [
                    (
                        "sum by (outcome, reason) (rate(helpseek_decisions_total[$__rate_interval]))",
                        "{{outcome}} ({{reason}})",
                    ),
                ],
                "Answers per second, split by intervene/proceed and the reason that decided.",
            )
        )
        .with_panel(
            _series(
                "Intervention rate vs target",
                "percentunit",
                [
                    ("helpseek:intervention_rate:5m", "realised {{model_version}}"),
                    (
                        "max by (model_version) (helpseek_model_target_intervention_rate)",
                        "target {{model_version}}",
                    ),
                ],
                "Granted interventions over decisions (5m) against the rate the artifact's "
                "offline evaluation expects.",
            )
        )
        .with_panel(
            _series(
                "Budget exhaustion",
                "short",
                [
                    ("helpseek:budget_refusals:rate5m", "refused for budget / s"),
                    ("helpseek:budget_exhausted_share:5m", "share of decisions, budget spent"),
                ],
                "Interventions the helper wanted but the budget refused, and the share of "
                "answers given with the budget spent.",
            )
        )
        .with_panel(
            _series(
                "Unseen states",
                "percentunit",
                [("helpseek:novel_share:5m", "novel share {{model_version}}")],
                "States unlike the training data: the helper's known weak spot.",
            )
        )
        .with_row(Row("Latency and health"))
        .with_panel(
            _series(
                "Request latency p50 / p99",
                "s",
                [
                    ("helpseek:request_latency_p50:5m", "p50 {{route}}"),
                    ("helpseek:request_latency_p99:5m", "p99 {{route}}"),
                ],
                "Server-side request duration per route (5m windows).",
            )
        )
        .with_panel(
            _series(
                "Degraded answers and budget-store errors",
                "short",
                [
                    ("helpseek:degraded_share:5m", "degraded share"),
                    (
                        "sum by (mode) (rate(helpseek_degraded_total[$__rate_interval]))",
                        "degraded/s ({{mode}})",
                    ),
                    (
                        "sum by (op) (rate(helpseek_budget_store_errors_total[$__rate_interval]))",
                        "store errors/s ({{op}})",
                    ),
                ],
                "Non-zero means Redis failed and the fail mode answered.",
            )
        )
        .with_panel(
            _series(
                "Episodes",
                "short",
                [
                    ("sum(rate(helpseek_sessions_started_total[$__rate_interval]))", "started/s"),
                    (
                        "sum by (outcome) (rate(helpseek_sessions_finished_total[$__rate_interval]))",
                        "finished/s ({{outcome}})",
                    ),
                    ("helpseek:episode_success_rate:5m", "success rate (5m)"),
                ],
                "Sessions opened and closed, and the share of reported successes.",
            )
        )
        .with_panel(
            _series(
                "Budget store p99",
                "s",
                [("helpseek:budget_store_latency_p99:5m", "store p99 {{op}}")],
                "Redis round-trip p99 per budget-store operation.",
            )
        )
    )


def render() -> str:
    """Return the dashboard as the JSON text Grafana's file provisioning reads."""
    return JSONEncoder(sort_keys=True, indent=2).encode(build().build()) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, compare) the committed dashboard JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the JSON is out of date")
    parser.add_argument("--out", type=Path, default=DASHBOARD_PATH)
    args = parser.parse_args(argv)
    text = render()
    json.loads(text)  # never write something Grafana cannot parse
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is stale: run scripts/build_dashboard.py", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
