"""A real Prometheus scrapes the real service under load and evaluates the committed rules.

Service: 2 uvicorn workers (multiprocess metrics) on a private Redis, toy artifact (target
intervention rate 0.3). Prometheus: Debian's server on loopback, 1 s scrape and evaluation.
The load is driven through the async SDK, which also counts what the agents saw.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import numpy as np
import pytest

from helpseek_client import AsyncHelpSeekClient, HelpSeekClient
from tests.deploy.deploy_harness import (
    Proc,
    metric_names_in,
    need_tool,
    prometheus_query,
    read_samples,
    start_prometheus,
    total,
)

VERSION = "toy-v1"
UP, DOWN, NOVEL = [1.0, 0.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [40.0, 0.0, 0.0, 0.0]


def scalar(prom: Proc, expr: str) -> float | None:
    result = prometheus_query(prom, expr)
    return float(result[0]["value"][1]) if result else None


def wait_for(prom: Proc, expr: str, want: float, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        got = scalar(prom, expr)
        if got == want:
            return
        time.sleep(0.25)
    raise AssertionError(f"{expr} = {got}, expected {want} within {timeout}s\n{prom.tail()}")


def warm_up(hs: HelpSeekClient, artifact: Path, n: int) -> None:
    """Touch every labelled series (so rate() sees all increase after the first scrape)."""
    for _ in range(n):
        s = hs.start_session(budget=1)
        for f in (DOWN, UP, UP, NOVEL):  # proceed, granted, refused for budget, novel
            hs.should_intervene(s.session_id, step=0, features=f)
        hs.report_outcome(s.session_id, success=bool(_ % 2), steps=4)
    # a refused reload: the artifact fails its hash check, the old model keeps serving
    helper = artifact / "helper.npz"
    good = helper.read_bytes()
    helper.write_bytes(good[:-8] + b"corrupt!")
    try:
        r = hs._http.post("/admin/reload")
        assert r.status_code == 409, r.text
    finally:
        helper.write_bytes(good)
    assert hs.model().model_version == VERSION


async def drive(url: str, sessions: int, steps: int, rng: np.random.Generator) -> dict[str, int]:
    """Episodes with budget 2 and random states; returns what the agents saw."""
    plans = rng.normal(size=(sessions, steps))
    seen = {"decisions": 0, "granted": 0, "exhausted": 0, "success": 0, "failure": 0}
    sem = asyncio.Semaphore(8)

    async with AsyncHelpSeekClient(url, api_key="key-a") as hs:

        async def episode(i: int) -> None:
            async with sem:
                s = await hs.start_session(budget=2)
                used = 0
                for t in range(steps):
                    d = await hs.should_intervene(
                        s.session_id, step=t, features=[float(plans[i, t]), 0.0, 0.0, 0.0]
                    )
                    seen["decisions"] += 1
                    seen["granted"] += d.intervene
                    seen["exhausted"] += d.reason == "budget_exhausted"
                    used += d.intervene
                assert used <= 2
                ok = i % 3 != 0
                await hs.report_outcome(s.session_id, success=ok, steps=steps)
                seen["success" if ok else "failure"] += 1

        await asyncio.gather(*(episode(i) for i in range(sessions)))
    return seen


def test_recording_rules_on_live_metrics(live_service, repo: Path, tmp_path: Path) -> None:
    need_tool("prometheus")
    svc, redis, artifact = live_service
    rules = sorted((repo / "docker/prometheus/rules").glob("*.yml"))
    with HelpSeekClient(svc.url, api_key="key-a") as hs:
        warm_up(hs, artifact, n=40)  # first values large enough that rate() never clips at 0
    before = read_samples(svc.url)
    d0 = total(before, "helpseek_decisions_total")
    g0 = total(before, "helpseek_interventions_granted_total")

    prom = start_prometheus(tmp_path, f"127.0.0.1:{svc.port}", rules)
    try:
        wait_for(prom, "sum(helpseek_decisions_total)", d0)
        time.sleep(1.5)  # a few scrapes of the quiet baseline
        seen = asyncio.run(drive(svc.url, sessions=40, steps=6, rng=np.random.default_rng(3)))
        after = read_samples(svc.url)
        d1 = total(after, "helpseek_decisions_total")
        g1 = total(after, "helpseek_interventions_granted_total")

        # the service's own counts are what the agents saw
        assert d1 - d0 == seen["decisions"] == 240
        assert g1 - g0 == seen["granted"]
        assert 0 < seen["granted"] < seen["decisions"] and seen["exhausted"] > 0

        # Prometheus scraped exactly those counts; then let the rules evaluate a few times
        wait_for(prom, "sum(helpseek_decisions_total)", d1)
        wait_for(prom, "sum(helpseek_interventions_granted_total)", g1)
        time.sleep(2.5)

        expected = (g1 - g0) / (d1 - d0)
        rate = prometheus_query(prom, "helpseek:intervention_rate:5m")
        assert [r["metric"] for r in rate] == [
            {"__name__": "helpseek:intervention_rate:5m", "model_version": VERSION}
        ]
        got = float(rate[0]["value"][1])
        print(f"intervention rate: prometheus {got:.6f}, service counts {expected:.6f}")
        # Every series existed before the first scrape with a value large against its increase,
        # so rate() extrapolates all of them alike and the ratio is the counts' ratio.
        assert got == pytest.approx(expected, abs=1e-4)
        drift = scalar(prom, "helpseek:intervention_rate_drift:5m")
        assert drift == pytest.approx(got - 0.3, abs=1e-9)
        assert scalar(prom, "helpseek:degraded_share:5m") == 0.0
        assert scalar(prom, "helpseek:decisions:rate5m") > 0
        finished = total(after, "helpseek_sessions_finished_total", outcome="success")
        assert (
            finished
            == total(before, "helpseek_sessions_finished_total", outcome="success")
            + seen["success"]
        )
        success = scalar(prom, "helpseek:episode_success_rate:5m")
        assert success == pytest.approx(
            seen["success"] / (seen["success"] + seen["failure"]), abs=0.03
        )
        p99 = prometheus_query(prom, "helpseek:request_latency_p99:5m")
        routes = {r["metric"].get("route") for r in p99}
        assert any(r and r.endswith("should_intervene") for r in routes), routes
        decide_p99 = [
            float(r["value"][1])
            for r in p99
            if (r["metric"].get("route") or "").endswith("should_intervene")
        ]
        # the decision route served requests in the window: its p99 must be a real number
        assert decide_p99 and all(0 < v < 2.5 for v in decide_p99), decide_p99

        # Redis goes away: answers are degraded (fail closed) and the share shows it
        redis.stop()
        with HelpSeekClient(svc.url, api_key="key-a") as hs:
            stateless = [
                hs.should_intervene(step=0, features=UP, remaining_budget=1) for _ in range(2)
            ]  # no store needed: not degraded
            assert all(a.intervene and not a.degraded for a in stateless)
            for burst in (5, 10):  # two bursts: rate() needs the series to exist before
                for _ in range(burst):
                    d = hs.should_intervene("gone-session", step=0, features=UP)
                    assert d.degraded and d.reason == "fail_closed" and not d.intervene
                dd = total(read_samples(svc.url), "helpseek_degraded_total")
                wait_for(prom, "sum(helpseek_degraded_total)", dd)
        assert dd == 15
        time.sleep(1.5)
        share = scalar(prom, "helpseek:degraded_share:5m")
        print(f"degraded share: prometheus {share:.4f}")
        assert share is not None and 0.01 < share < 0.2
        degraded_after = read_samples(svc.url)
        assert total(degraded_after, "helpseek_budget_store_errors_total") > 0

        # every metric the dashboard and the rules name exists in the live exposition
        names = {name for name, _ in degraded_after}
        dashboard = json.loads((repo / "docker/grafana/dashboards/helpseek.json").read_text())
        used = metric_names_in(json.dumps(dashboard)) | metric_names_in(
            "\n".join(p.read_text() for p in rules)
        )
        assert len(used) >= 12
        missing = sorted(used - names)
        assert not missing, f"named by dashboard/rules but absent from /metrics: {missing}"
        # and every one of them is known to Prometheus too
        for name in sorted(used):
            assert prometheus_query(prom, f"count({name})"), name
    finally:
        prom.stop()
