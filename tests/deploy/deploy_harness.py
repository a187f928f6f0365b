"""Real processes for the deployment tests: redis-server, the service (uvicorn, 2 workers),
Prometheus; and a small artifact in the real format for tests that need any valid model.

Every process is started in its own session and stopped by its own pid / process group.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from helpseek_core.artifact import write_artifact
from helpseek_core.helper import HELPER_FILE, FeatureStats
from helpseek_core.mlp import MLP

__all__ = [
    "REPO",
    "Proc",
    "free_port",
    "metric_names_in",
    "need_tool",
    "prometheus_query",
    "read_samples",
    "service_importable",
    "start_prometheus",
    "start_redis",
    "start_service",
    "write_toy_artifact",
]

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable


ENSURE = "bash scripts/ensure-prometheus.sh"


def need_tool(name: str) -> str:
    """Path of ``name`` on PATH, or skip the test naming the script that installs it."""
    import pytest

    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed; run `{ENSURE}` (make test does)")
    return path


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_importable() -> str | None:
    """None if ``python -m service`` can start here, else the reason it cannot."""
    if not (REPO / "service" / "__main__.py").is_file():
        return "service/__main__.py does not exist yet"
    probe = subprocess.run(
        [PY, "-c", "import service.app, service.__main__"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.returncode != 0:
        return f"service is not importable: {probe.stderr.strip().splitlines()[-1:]}"
    return None


@dataclass
class Proc:
    """A started process, its log file, and how to reach it."""

    popen: subprocess.Popen[bytes]
    log: Path
    port: int

    @property
    def url(self) -> str:
        """Base URL on loopback."""
        return f"http://127.0.0.1:{self.port}"

    def tail(self, n: int = 40) -> str:
        """Last lines of the process log (for assertion messages)."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Signal the process group this process leads; SIGKILL it after ``timeout``."""
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)


def _spawn(cmd: list[str], log: Path, env: Mapping[str, str] | None, port: int) -> Proc:
    fh = open(log, "wb")  # noqa: SIM115 - kept open for the child's lifetime
    popen = subprocess.Popen(
        cmd,
        cwd=REPO,
        stdout=fh,
        stderr=subprocess.STDOUT,
        env=dict(env) if env else None,
        start_new_session=True,
    )
    fh.close()
    return Proc(popen, log, port)


def _wait_http(proc: Proc, path: str, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.popen.returncode}:\n{proc.tail()}")
        try:
            r = httpx.get(proc.url + path, timeout=1.0)
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.1)
    proc.stop()
    raise RuntimeError(
        f"{what} not ready on {proc.url}{path} after {timeout}s ({last}):\n{proc.tail()}"
    )


def start_redis(tmp: Path) -> Proc:
    """A private redis-server on a free loopback port (so a test may stop it)."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not installed (scripts/ensure-redis.sh installs it)")
    port = free_port()
    proc = _spawn(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp),
        ],
        tmp / f"redis-{port}.log",
        None,
        port,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2) as s:
            s.sendall(b"PING\r\n")
            if s.recv(16).startswith(b"+PONG"):
                return proc
        time.sleep(0.05)
    proc.stop()
    raise RuntimeError(f"redis-server did not answer on {port}:\n{proc.tail()}")


def start_service(
    tmp: Path,
    artifact: Path,
    redis_url: str,
    *,
    workers: int = 2,
    api_keys: str = "",
    fail_mode: str = "closed",
    extra_env: Mapping[str, str] | None = None,
) -> Proc:
    """``python -m service`` (uvicorn, ``workers`` processes) on a free port; waits for /readyz."""
    port = free_port()
    mp_dir = tmp / f"metrics-{port}"
    mp_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPSEEK_")}
    env.update(
        HELPSEEK_HOST="127.0.0.1",
        HELPSEEK_PORT=str(port),
        HELPSEEK_WORKERS=str(workers),
        HELPSEEK_ARTIFACT=str(artifact),
        HELPSEEK_REDIS_URL=redis_url,
        HELPSEEK_REDIS_KEY_PREFIX=f"helpseek-deploy-test-{os.getpid()}-{port}:",
        HELPSEEK_FAIL_MODE=fail_mode,
        HELPSEEK_API_KEYS=api_keys,
        HELPSEEK_LOG_LEVEL="warning",
        PROMETHEUS_MULTIPROC_DIR=str(mp_dir),
    )
    env.update(extra_env or {})
    proc = _spawn([PY, "-m", "service"], tmp / f"service-{port}.log", env, port)
    _wait_http(proc, "/readyz", 60.0, "the service")
    return proc


def start_prometheus(tmp: Path, target: str, rule_files: list[Path]) -> Proc:
    """A real Prometheus on loopback scraping ``target`` every second with ``rule_files``."""
    exe = shutil.which("prometheus")
    if exe is None:
        raise RuntimeError("prometheus is not installed (scripts/ensure-prometheus.sh)")
    port = free_port()
    config = tmp / "prometheus.yml"
    rules = "\n".join(f"  - {p}" for p in rule_files)
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n{rules}\n"
        "scrape_configs:\n  - job_name: helpseek\n    scrape_interval: 1s\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    proc = _spawn(
        [
            exe,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        tmp / "prometheus.log",
        None,
        port,
    )
    _wait_http(proc, "/-/ready", 30.0, "prometheus")
    return proc


def prometheus_query(prom: Proc, expr: str) -> list[dict]:
    """Instant query through Prometheus' HTTP API; returns the result vector."""
    r = httpx.get(f"{prom.url}/api/v1/query", params={"query": expr}, timeout=5.0)
    r.raise_for_status()
    body = r.json()
    if body.get("status") != "success":
        raise RuntimeError(f"query {expr!r} failed: {body}")
    return list(body["data"]["result"])


def read_samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Scrape ``url``/metrics: {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url + "/metrics", timeout=5.0).text
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


def total(
    samples: Mapping[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels``."""
    return sum(
        v
        for (n, lbl), v in samples.items()
        if n == name and all(dict(lbl).get(k) == want for k, want in labels.items())
    )


def metric_names_in(text: str) -> set[str]:
    """Raw ``helpseek_*`` metric names referenced by PromQL in ``text`` (rules, dashboards)."""
    import re

    return set(re.findall(r"\bhelpseek_[a-z0-9_]+\b", text))


def write_toy_artifact(
    directory: Path, *, version: str = "toy-v1", dim: int = 4, target_rate: float = 0.3
) -> Path:
    """A tiny features artifact in the real format that reads every input the service encodes.

    One linear layer over the helper's input encoding (z-scored features, c/cmax,
    1[c >= cost], steps_left/H): p = sigmoid(8 z0 + c/cmax + 0.5 1[c >= cost] - steps_left/H - 2).
    Feature 0 = 1.0 (z0 ~ 1) always intervenes, 0.0 (z0 ~ 0) never; in between the budget and
    the steps left decide.
    """
    rng = np.random.default_rng(7)
    feats = rng.normal(size=(2000, dim))
    stats = FeatureStats.fit(feats)
    w = np.zeros((dim + 3, 1), np.float32)
    w[0, 0], w[dim, 0], w[dim + 1, 0], w[dim + 2, 0] = 8.0, 1.0, 0.5, -1.0
    mlp = MLP((w,), (np.full(1, -2.0, np.float32),))
    manifest = {
        "artifact_id": version,
        "created_at": "2026-01-01T00:00:00Z",
        "kind": "features",
        "feature_schema": {"names": [f"f{i}" for i in range(dim)], "dim": dim},
        "cmax": 5,
        "horizon": 50,
        "k": 1,
        "cost": 1,
        "helper": {"threshold": 0.5},
        "target_intervention_rate": target_rate,
        "config": {"note": "toy artifact written by tests/deploy"},
    }
    return write_artifact(
        directory, manifest, {HELPER_FILE: {**mlp.to_arrays(), **stats.to_arrays()}}
    )


def iter_lines(path: Path) -> Iterator[str]:
    """Lines of a text file (empty if missing)."""
    if path.is_file():
        yield from path.read_text().splitlines()
