"""promtool on the committed Prometheus config and rules (real promtool, Debian's package)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_config_and_rule_files_are_valid(promtool: str, repo: Path) -> None:
    out = run([promtool, "check", "config", "prometheus.yml"], repo / "docker/prometheus")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 rule files found" in out.stdout + out.stderr


def test_rules_are_valid(promtool: str, repo: Path) -> None:
    files = sorted(str(p) for p in (repo / "docker/prometheus/rules").glob("*.yml"))
    assert len(files) == 2
    out = run([promtool, "check", "rules", *files], repo)
    assert out.returncode == 0, out.stdout + out.stderr


def test_rule_unit_tests_pass(promtool: str, repo: Path) -> None:
    out = run([promtool, "test", "rules", "tests/deploy/prometheus_rules_test.yml"], repo)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_rule_unit_tests_can_fail(promtool: str, repo: Path, tmp_path: Path) -> None:
    """The unit-test file really checks values: a wrong expectation must fail."""
    spec = yaml.safe_load((repo / "tests/deploy/prometheus_rules_test.yml").read_text())
    spec["rule_files"] = [
        str(repo / "docker/prometheus/rules" / Path(p).name) for p in spec["rule_files"]
    ]
    spec["tests"][0]["promql_expr_test"][0]["exp_samples"][0]["value"] = 0.26
    bad = tmp_path / "bad_test.yml"
    bad.write_text(yaml.safe_dump(spec))
    out = run([promtool, "test", "rules", str(bad)], tmp_path)
    assert out.returncode != 0
    assert "helpseek:intervention_rate:5m" in out.stdout + out.stderr


def test_required_recording_rules_and_alerts_exist(repo: Path) -> None:
    records, alerts = set(), set()
    for path in (repo / "docker/prometheus/rules").glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                records.add(rule.get("record"))
                alerts.add(rule.get("alert"))
    assert {
        "helpseek:intervention_rate:5m",
        "helpseek:degraded_share:5m",
        "helpseek:request_latency_p99:5m",
    } <= records
    assert {
        "HelpSeekDegradedAnswers",
        "HelpSeekLatencyP99High",
        "HelpSeekInterventionRateDrift",
        "HelpSeekUnseenStatesHigh",
    } <= alerts
