"""Service fixtures: both budget stores, an in-process app, and a uvicorn subprocess launcher."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from service.app import create_app
from service.budget import MemoryBudgetStore, RedisBudgetStore, make_client
from service.budget.protocol import BudgetStore
from service.settings import Settings
from tests.service.redis_procs import RedisProc, start_cluster

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RedisProc]]:
    """A real 3-master Redis Cluster on loopback for the session (tests must not kill it)."""
    nodes = start_cluster(tmp_path_factory.mktemp("cluster"))
    yield nodes
    for node in nodes:
        node.kill()


@pytest_asyncio.fixture(params=["memory", "redis"])
async def store(
    request: pytest.FixtureRequest, redis_url: str, redis_prefix: str
) -> AsyncIterator[BudgetStore]:
    """Each test using this runs once per implementation."""
    if request.param == "memory":
        s: BudgetStore = MemoryBudgetStore()
    else:
        s = RedisBudgetStore(make_client(redis_url, 0.5, 0.5), prefix=redis_prefix)
    yield s
    await s.aclose()


@contextlib.asynccontextmanager
async def running_app(**overrides: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """An app built by create_app with its lifespan running, and an httpx client on it."""
    app = create_app(Settings(**overrides))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client, app


@pytest.fixture(params=["memory", "redis"])
def store_settings(
    request: pytest.FixtureRequest, redis_url: str, redis_prefix: str
) -> dict[str, Any]:
    """Settings overrides selecting one of the two stores."""
    if request.param == "memory":
        return {}
    return {"redis_url": redis_url, "redis_key_prefix": redis_prefix}


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(base + "/readyz", timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server did not become ready")


@pytest.fixture
def serve() -> Iterator[Callable[..., str]]:
    """Start ``python -m service`` with HELPSEEK_* env overrides; returns its base URL."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(port: int, **env: str) -> str:
        full = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("HELPSEEK_") and k != "PROMETHEUS_MULTIPROC_DIR"
        }
        full.update({f"HELPSEEK_{k.upper()}": str(v) for k, v in env.items()})
        full.update(HELPSEEK_PORT=str(port), HELPSEEK_LOG_LEVEL="warning")
        proc = subprocess.Popen([sys.executable, "-m", "service"], cwd=REPO, env=full)
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, proc)
        return base

    yield start
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
