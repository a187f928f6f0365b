"""Fixtures of the deployment tests: tools on PATH, and live processes shared per module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.deploy_harness import (
    REPO,
    Proc,
    need_tool,
    service_importable,
    start_redis,
    start_service,
    write_toy_artifact,
)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def promtool() -> str:
    return need_tool("promtool")


@pytest.fixture(scope="module")
def live_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proc, Proc, Path]]:
    """(service, its private redis, artifact): 2 uvicorn workers over a toy artifact."""
    reason = service_importable()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("live")
    artifact = write_toy_artifact(tmp / "artifact")
    redis = start_redis(tmp)
    try:
        svc = start_service(
            tmp, artifact, f"redis://127.0.0.1:{redis.port}/0", api_keys="key-a,key-b"
        )
    except Exception:
        redis.stop()
        raise
    yield svc, redis, artifact
    svc.stop()
    redis.stop()
