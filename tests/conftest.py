"""Shared fixtures: a real Redis (with a unique key prefix per test) and a small valid artifact.

``redis_url``: the Redis on 127.0.0.1:6379 when it answers, else a redis-server started on a
free port for the session. ``redis_prefix``: a unique key prefix; its keys are deleted after
the test. ``artifact_dir``: a features artifact written with the real artifact writer, whose
helper depends on feature 0, the remaining budget and the steps left (see
``write_test_artifact``). ``typed_artifact_dir``: a typed artifact with two intervention
types (``write_typed_test_artifact``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpseek_core.artifact import write_artifact
from helpseek_core.helper import HELPER_FILE, FeatureStats
from helpseek_core.mlp import MLP

DEFAULT_REDIS = ("127.0.0.1", 6379)
BUDGET_W, READY_W, LEFT_W = 0.5, 0.25, 0.5  # write_test_artifact's weights on the budget inputs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_answers(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis_server(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    """Start a throwaway redis-server on loopback; wait until it answers."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed")
    proc = subprocess.Popen(
        [
            exe,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        if redis_answers("127.0.0.1", port):
            return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"redis-server did not start on port {port}")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if redis_answers(*DEFAULT_REDIS):
        yield f"redis://{DEFAULT_REDIS[0]}:{DEFAULT_REDIS[1]}/0"
        return
    port = free_port()
    proc = start_redis_server(port, tmp_path_factory.mktemp("redis"))
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(5)


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    prefix = f"hstest:{uuid.uuid4().hex[:12]}:"
    yield prefix
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def write_test_artifact(
    directory: Path,
    artifact_id: str = "test-v1",
    dim: int = 4,
    gain: float = 4.0,
    extra_manifest: dict[str, Any] | None = None,
) -> Path:
    """A small valid features artifact whose logit reads every input the service encodes::

        logit = gain * (z0 + BUDGET_W * min(c, cmax) / cmax + READY_W * 1[c >= cost]
                        - LEFT_W * steps_left / horizon)

    (z0 = feature 0 standardised by the training data, ``rng(0).normal((512, dim))``; cmax 5,
    horizon 25, cost 1). With ``gain > 0`` feature 0 = +1 (``UP``) always intervenes and -1
    (``DOWN``) never does; at feature 0 = its training mean the answer turns on the budget and
    the steps left (more budget or fewer steps left -> intervene). ``gain`` very negative:
    never intervenes on ``UP``. The budget always gates the answer.
    """
    rng = np.random.default_rng(0)
    stats = FeatureStats.fit(rng.normal(size=(512, dim)))
    w0 = np.zeros((dim + 3, 2), np.float32)
    for row, weight in ((0, 1.0), (dim, BUDGET_W), (dim + 1, READY_W), (dim + 2, -LEFT_W)):
        w0[row, 0], w0[row, 1] = weight, -weight  # hidden units relu(u), relu(-u)
    mlp = MLP(
        (w0, np.array([[gain], [-gain]], np.float32)),
        (np.zeros(2, np.float32), np.zeros(1, np.float32)),
    )
    manifest = {
        "artifact_id": artifact_id,
        "created_at": "2026-11-25T00:00:00Z",
        "kind": "features",
        "feature_schema": {"names": [f"f{i}" for i in range(dim)], "dim": dim},
        "cmax": 5,
        "horizon": 25,
        "k": 1,
        "cost": 1,
        "helper": {"threshold": 0.5},
        "target_intervention_rate": [0.0, 0.1, 0.15, 0.2, 0.2, 0.25],
        **(extra_manifest or {}),
    }
    return write_artifact(
        directory, manifest, {HELPER_FILE: {**mlp.to_arrays(), **stats.to_arrays()}}
    )


@pytest.fixture
def artifact_dir(tmp_path: Path) -> Path:
    return write_test_artifact(tmp_path / "artifact")


TYPED_TYPES = (  # write_typed_test_artifact's intervention types
    {"name": "a", "k": 1, "cost": 1, "cmax": 3},
    {"name": "b", "k": 3, "cost": 1, "cmax": 1},
)


def write_typed_test_artifact(
    directory: Path,
    artifact_id: str = "typed-v1",
    dim: int = 4,
    types: Any = TYPED_TYPES,
    feature_names: list[str] | None = None,
    horizon: int = 25,
) -> Path:
    """A small valid ``typed`` artifact (two types ``a``, ``b``) whose logits are linear::

        proceed = -3 z0 + 3 steps_left / horizon - 0.5
        a       = 1[c_a >= cost_a] + 0.5 min(c_a, cmax_a) / cmax_a
        b       = 2 1[c_b >= cost_b]

    (z0 as in :func:`write_test_artifact`; horizon 25 by default). The helper picks the arg-max over the
    affordable actions, so on ``UP`` (z0 ~ +1) it asks for ``b`` while ``b`` is affordable,
    then ``a``, then proceeds; on ``DOWN`` it proceeds; at z0 = its training mean it proceeds
    with many steps left and asks for help with few left.
    """
    rng = np.random.default_rng(0)
    stats = FeatureStats.fit(rng.normal(size=(512, dim)))
    w = np.zeros((dim + 5, 3), np.float32)
    w[0, 0] = -3.0
    w[dim + 4, 0] = 3.0  # steps_left / horizon
    w[dim + 1, 1], w[dim, 1] = 1.0, 0.5  # a: ready, fraction of cmax
    w[dim + 3, 2] = 2.0  # b: ready
    mlp = MLP((w,), (np.array([-0.5, 0.0, 0.0], np.float32),))
    first = types[0]
    manifest = {
        "artifact_id": artifact_id,
        "created_at": "2026-12-01T00:00:00Z",
        "kind": "typed",
        "feature_schema": {"names": feature_names or [f"f{i}" for i in range(dim)], "dim": dim},
        "cmax": first["cmax"],
        "horizon": horizon,
        "k": first["k"],
        "cost": first["cost"],
        "types": [dict(t) for t in types],
    }
    return write_artifact(
        directory, manifest, {HELPER_FILE: {**mlp.to_arrays(), **stats.to_arrays()}}
    )


@pytest.fixture
def typed_artifact_dir(tmp_path: Path) -> Path:
    return write_typed_test_artifact(tmp_path / "typed-artifact")
