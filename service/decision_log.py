"""Append every decision and outcome to a JSONL file or a Redis stream (the step-log schema).

One JSON object per line (JSONL) or per stream entry (field ``record``); the exact schema is in
docs/service.md ("Decision log"), written so ``helpseek export-log`` can turn it into a Phase I
step log (docs/design.md §3). File appends use ``O_APPEND`` and one ``write`` per record, so
several worker processes can share the file without interleaving lines.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

__all__ = [
    "DECISION_LOG_SCHEMA_VERSION",
    "DecisionLog",
    "JsonlDecisionLog",
    "NullDecisionLog",
    "RedisStreamDecisionLog",
    "state_key",
]

DECISION_LOG_SCHEMA_VERSION = 1
_log = logging.getLogger("helpseek.service")


def state_key(features: np.ndarray | None, text: str | None) -> int:
    """Stable signed 64-bit hash of a state (float64 feature bytes, or UTF-8 text)."""
    if features is not None:
        raw = np.ascontiguousarray(np.asarray(features, np.float64)).tobytes()
    else:
        raw = (text or "").encode("utf-8")
    return int.from_bytes(hashlib.sha256(raw).digest()[:8], "little", signed=True)


class DecisionLog(Protocol):
    """Where records go; ``append`` never raises (a lost record is logged, not fatal)."""

    async def append(self, record: dict[str, Any]) -> None:
        """Append one record."""
        ...

    async def aclose(self) -> None:
        """Flush and release."""
        ...


def _line(record: dict[str, Any]) -> bytes:
    body = {"schema_version": DECISION_LOG_SCHEMA_VERSION, "ts": time.time(), **record}
    return (json.dumps(body, separators=(",", ":")) + "\n").encode("utf-8")


class NullDecisionLog:
    """No decision log configured."""

    async def append(self, record: dict[str, Any]) -> None:
        """Drop the record."""

    async def aclose(self) -> None:
        """Nothing to release."""


class JsonlDecisionLog:
    """Append-only JSONL file (one ``os.write`` per record)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    async def append(self, record: dict[str, Any]) -> None:
        """Write one line."""
        try:
            os.write(self._fd, _line(record))
        except OSError as exc:  # a full disk must not fail the decision
            _log.warning("decision log %s: write failed: %s", self.path, exc)

    async def aclose(self) -> None:
        """Close the file."""
        os.close(self._fd)


class RedisStreamDecisionLog:
    """XADD to a capped stream; a Redis outage drops records (and says so in the log).

    On Redis Cluster the stream is one key, so it lives on one node.
    """

    def __init__(self, client: Redis | RedisCluster, key: str, maxlen: int) -> None:
        self._r, self._key, self._maxlen = client, key, maxlen

    async def append(self, record: dict[str, Any]) -> None:
        """XADD <key> MAXLEN ~ n * record <json>."""
        try:
            await self._r.xadd(
                self._key,
                {"record": _line(record).decode()[:-1]},
                maxlen=self._maxlen,
                approximate=True,
            )
        except RedisError as exc:
            _log.warning("decision stream %s: XADD failed: %s", self._key, exc)

    async def aclose(self) -> None:
        """Leave the client open (it belongs to the app)."""
