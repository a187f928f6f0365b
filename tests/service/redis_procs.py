"""Redis servers a test owns: one process, or a 3-node Redis Cluster, on free loopback ports.

Faults are real: ``stop()``/``cont()`` send SIGSTOP/SIGCONT (slow: the kernel still accepts
connections and buffers commands), ``kill()`` sends SIGKILL (dead), ``start()`` restarts on
the same port and directory (with ``appendonly`` the data comes back).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import redis_answers

__all__ = ["RedisProc", "start_cluster"]


@dataclass
class RedisProc:
    """One redis-server on 127.0.0.1:``port`` with its own directory."""

    port: int
    workdir: Path
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> RedisProc:
        """Start (or restart) the server; wait until it answers PING."""
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.skip("redis-server is not installed")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                exe,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--dir",
                str(self.workdir),
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if wait:
            for _ in range(200):
                if redis_answers("127.0.0.1", self.port):
                    return self
                time.sleep(0.05)
            raise RuntimeError(f"redis-server did not start on port {self.port}")
        return self

    @property
    def url(self) -> str:
        """redis://127.0.0.1:<port>/0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def _signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None  # noqa: S101 - started
        os.kill(self.proc.pid, sig)

    def stop(self) -> None:
        """SIGSTOP: slow (connections are accepted, nothing is answered)."""
        self._signal(signal.SIGSTOP)

    def cont(self) -> None:
        """SIGCONT: resume; buffered commands run now."""
        self._signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: dead (connections refused)."""
        if self.proc is not None and self.proc.poll() is None:
            self._signal(signal.SIGCONT)  # a stopped process still dies on SIGKILL; be tidy
            self._signal(signal.SIGKILL)
            self.proc.wait(10)


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too (both below 65536)."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 45000)
        try:
            for p in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def start_cluster(workdir: Path, n: int = 3) -> list[RedisProc]:
    """``n`` masters (no replicas) joined by ``redis-cli --cluster create``; all slots served.

    ``cluster-require-full-coverage no``: when a node dies the others keep serving their slots.
    ``appendonly yes``: a node restarted after SIGKILL comes back with its data and its slots.
    """
    if shutil.which("redis-cli") is None:
        pytest.skip("redis-cli is not installed")
    nodes = [
        RedisProc(
            _cluster_port(),
            workdir / f"node{i}",
            [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "1000",
                "--cluster-require-full-coverage",
                "no",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ],
        ).start()
        for i in range(n)
    ]
    addrs = [f"127.0.0.1:{node.port}" for node in nodes]
    subprocess.run(
        ["redis-cli", "--cluster", "create", *addrs, "--cluster-replicas", "0", "--cluster-yes"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=60,
    )
    for _ in range(200):
        states = [
            subprocess.run(
                ["redis-cli", "-p", str(node.port), "cluster", "info"],
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout
            for node in nodes
        ]
        if all("cluster_state:ok" in s for s in states):
            return nodes
        time.sleep(0.1)
    raise RuntimeError("the cluster did not reach cluster_state:ok")
