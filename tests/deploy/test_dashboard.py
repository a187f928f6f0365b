"""The Grafana dashboard: generated from code, fresh, and wired to the provisioned datasource."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy.deploy_harness import metric_names_in

CONTRACT_METRICS = {
    "helpseek_decisions_total",
    "helpseek_interventions_granted_total",
    "helpseek_interventions_refused_total",
    "helpseek_degraded_total",
    "helpseek_novel_states_total",
    "helpseek_request_duration_seconds_bucket",
    "helpseek_budget_store_duration_seconds_bucket",
    "helpseek_budget_store_errors_total",
    "helpseek_sessions_started_total",
    "helpseek_sessions_finished_total",
    "helpseek_model_info",
    "helpseek_model_target_intervention_rate",
    "helpseek_model_reloads_total",
}


@pytest.fixture(scope="module")
def dashboard(repo: Path) -> dict:
    return json.loads((repo / "docker/grafana/dashboards/helpseek.json").read_text())


def exprs(dashboard: dict) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_committed_json_is_what_the_generator_writes(repo: Path) -> None:
    if importlib.util.find_spec("grafana_foundation_sdk") is None:
        pytest.skip("grafana-foundation-sdk is not installed (pip install -e '.[dev]')")
    out = subprocess.run(
        [sys.executable, "scripts/build_dashboard.py", "--check"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr


def test_every_panel_uses_the_pinned_datasource(repo: Path, dashboard: dict) -> None:
    prov = yaml.safe_load(
        (repo / "docker/grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    (ds,) = prov["datasources"]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 10
    for p in panels:
        assert p["datasource"] == {"type": "prometheus", "uid": ds["uid"]}, p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == ds["uid"]


def test_dashboard_covers_what_operators_asked_for(dashboard: dict) -> None:
    titles = " | ".join(p["title"] for p in dashboard["panels"]).lower()
    for words in (
        "decisions / s",
        "intervention rate vs target",
        "budget exhaustion",
        "p50 / p99",
        "degraded",
        "episode success rate",
    ):
        assert words in titles, words
    text = "\n".join(exprs(dashboard))
    assert "helpseek_model_target_intervention_rate" in text
    assert "helpseek:intervention_rate:5m" in text


def test_dashboard_and_rules_name_only_contract_metrics(repo: Path, dashboard: dict) -> None:
    rules = "\n".join(p.read_text() for p in (repo / "docker/prometheus/rules").glob("*.yml"))
    used = metric_names_in("\n".join(exprs(dashboard))) | metric_names_in(rules)
    unknown = {n for n in used if n not in CONTRACT_METRICS}
    assert not unknown, f"not in the service's metric contract: {sorted(unknown)}"


def test_recording_rules_used_by_the_dashboard_exist(repo: Path, dashboard: dict) -> None:
    import re

    recorded = set()
    for path in (repo / "docker/prometheus/rules").glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            recorded |= {r["record"] for r in group["rules"] if "record" in r}
    used = set(re.findall(r"helpseek:[a-z0-9_]+:[a-z0-9]+", "\n".join(exprs(dashboard))))
    assert used and used <= recorded, sorted(used - recorded)


def test_dashboard_provider_points_at_the_mounted_folder(repo: Path) -> None:
    prov = yaml.safe_load(
        (repo / "docker/grafana/provisioning/dashboards/helpseek.yml").read_text()
    )
    path = prov["providers"][0]["options"]["path"]
    compose = yaml.safe_load((repo / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./docker/grafana/dashboards:{path}:ro" in mounts
