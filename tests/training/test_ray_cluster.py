"""Collection on an existing two-node Ray cluster, started on loopback by this module.

A head (``ray start --head``) and a second node (``ray start --address``), one CPU each, every
port picked free and distinct; each ``ray start --block`` runs in its own session and is
stopped by SIGTERM in teardown, so only this cluster's processes are touched (never ``ray
stop``, which would stop every Ray on the machine). The driver is the ``helpseek collect``
command itself with ``RAY_ADDRESS`` set (or ``--ray-address``), as a user with a cluster would run it, collecting a
plug-in adapter from a folder outside the repository. Token authentication is switched off
for this cluster (``RAY_AUTH_MODE=disabled`` on every process) so that a token another Ray
left in ``~/.ray`` cannot make the nodes and the driver disagree.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.training.test_collect import WATCHED, assert_same_log
from training.collect import main as collect_main
from training.config import CollectConfig
from training.steplog_io import read_steplog

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SEEDS = ["--train-seeds", "0-7", "--test-seeds", "100-101", "--episodes-per-seed", "6"]


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _node_ports(ports: list[int]) -> list[str]:
    names = (
        "--node-manager-port",
        "--object-manager-port",
        "--dashboard-agent-listen-port",
        "--dashboard-agent-grpc-port",
        "--runtime-env-agent-port",
        "--metrics-export-port",
    )
    return [arg for name, port in zip(names, ports, strict=True) for arg in (name, str(port))]


def _wait_for_nodes(address: str, n: int, env: dict[str, str], timeout: float = 120) -> None:
    probe = (
        "import sys, time, ray\n"
        f"ray.init(address={address!r}, log_to_driver=False)\n"
        f"deadline = time.time() + {timeout}\n"
        f"while sum(x['Alive'] for x in ray.nodes()) < {n}:\n"
        "    if time.time() > deadline: sys.exit('nodes did not join')\n"
        "    time.sleep(0.5)\n"
    )
    subprocess.run([sys.executable, "-c", probe], env=env, check=True, timeout=timeout + 60)


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict[str, str]]:
    """Start a head and one more node on loopback; yield the env a driver needs."""
    pytest.importorskip("ray")
    temp = tempfile.mkdtemp(prefix="hsray", dir="/tmp")  # short: Ray's socket paths
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "disabled"
    # a frozen node is declared dead after ~3 missed 1 s health checks, not Ray's default ~30 s
    env.update(
        RAY_health_check_period_ms="1000",
        RAY_health_check_timeout_ms="1000",
        RAY_health_check_failure_threshold="3",
    )
    ports = _free_ports(14)
    address = f"127.0.0.1:{ports[0]}"
    common = ["--block", "--num-cpus", "1", "--disable-usage-stats"]
    commands = [
        [
            str(BIN / "ray"),
            "start",
            "--head",
            "--port",
            str(ports[0]),
            "--include-dashboard",
            "false",
            "--ray-client-server-port",
            str(ports[1]),
            "--temp-dir",
            temp,
            *_node_ports(ports[2:8]),
            *common,
        ],
        [str(BIN / "ray"), "start", "--address", address, *_node_ports(ports[8:14]), *common],
    ]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i, cmd in enumerate(commands):
            log = open(Path(temp) / f"node{i}.log", "wb")  # noqa: SIM115 - kept for teardown
            procs.append(
                subprocess.Popen(
                    cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            )
            if i == 0:
                deadline = time.time() + 60
                while True:  # the GCS accepts connections before a node may join
                    try:
                        socket.create_connection(("127.0.0.1", ports[0]), 1).close()
                        break
                    except OSError:
                        if time.time() > deadline or procs[0].poll() is not None:
                            raise RuntimeError((Path(temp) / "node0.log").read_text()) from None
                        time.sleep(0.3)
        _wait_for_nodes(address, 2, env)
        yield {**env, "RAY_ADDRESS": address, "NODE2_PID": str(procs[1].pid)}
    finally:
        for p in reversed(procs):
            with contextlib.suppress(psutil.Error):  # a node a test froze takes SIGTERM again
                for proc in [psutil.Process(p.pid), *psutil.Process(p.pid).children(True)]:
                    proc.send_signal(signal.SIGCONT)
            p.terminate()  # ray start --block shuts its own node down on SIGTERM
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)  # only this node's session
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def user_folder(tmp_path: Path) -> Path:
    shutil.copy(REPO / "examples" / "doorkey_adapter.py", tmp_path / "my_adapter.py")
    (tmp_path / "watched.py").write_text(WATCHED)
    (tmp_path / "marks").mkdir()
    return tmp_path


def _reference(folder: Path) -> Path:
    """The same seeds on the local process backend: the log every Ray run must reproduce."""
    cfg = CollectConfig(
        env=f"{folder}/my_adapter.py:H=30",
        out=folder / "ref",
        train_seeds=tuple(range(8)),
        test_seeds=(100, 101),
        episodes_per_seed=6,
        workers=2,
        progress=False,
    )
    return collect_main(cfg, log=lambda _: None)


def _collect(
    folder: Path, env: dict[str, str], spec: str, out: str, *, flag: bool = False
) -> subprocess.Popen[str]:
    """``helpseek collect --backend ray``: the cluster from RAY_ADDRESS, or ``--ray-address``."""
    where = ["--ray-address", env["RAY_ADDRESS"]] if flag else []
    env = {k: v for k, v in env.items() if k != "NODE2_PID" and not (flag and k == "RAY_ADDRESS")}
    return subprocess.Popen(
        [
            str(BIN / "helpseek"),
            "collect",
            "--env",
            spec,
            "--out",
            out,
            *SEEDS,
            "--backend",
            "ray",
            *where,
            "--no-progress",
        ],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_collect_on_an_existing_two_node_cluster_matches_the_process_backend(
    cluster: dict[str, str], user_folder: Path
) -> None:
    spec = f"watched.py:inner={user_folder}/my_adapter.py,folder={user_folder}/marks"
    run = _collect(user_folder, cluster, spec, "log")
    stdout, stderr = run.communicate(timeout=240)
    assert run.returncode == 0, stderr
    assert f"to run on the Ray cluster at {cluster['RAY_ADDRESS']}" in stdout
    manifest = json.loads((user_folder / "log" / "manifest.json").read_text())
    assert manifest["last_run"] == {
        **manifest["last_run"],
        "backend": "ray",
        "ray_address": cluster["RAY_ADDRESS"],
        "shards_run": 10,
    }
    nodes = {p.name for p in (user_folder / "marks").iterdir()}
    assert len(nodes) == 2, nodes  # episodes ran on both nodes of the cluster
    assert_same_log(read_steplog(user_folder / "log")[0], read_steplog(_reference(user_folder))[0])


def test_a_dead_ray_worker_is_retried_and_a_killed_driver_resumes(
    cluster: dict[str, str], user_folder: Path
) -> None:
    marks = user_folder / "marks"
    # 1. the worker running seed 3 dies (os._exit) in the middle of its shard: Ray reruns it
    spec = f"watched.py:inner={user_folder}/my_adapter.py,folder={marks},die_on=3"
    run = _collect(user_folder, cluster, spec, "log")
    _, stderr = run.communicate(timeout=240)
    assert run.returncode == 0, stderr
    assert (marks / "died").exists()
    reference = read_steplog(_reference(user_folder))[0]
    assert_same_log(read_steplog(user_folder / "log")[0], reference)
    # 2. the driver is killed once the first shard is written; the same command resumes
    slow = f"watched.py:inner={user_folder}/my_adapter.py,folder={marks},delay=0.15"
    run = _collect(user_folder, cluster, slow, "log2", flag=True)
    shards = user_folder / "log2" / "shards"
    deadline = time.time() + 120
    while not (shards.is_dir() and any(shards.glob("*.parquet"))):
        assert time.time() < deadline and run.poll() is None, run.communicate()[1]
        time.sleep(0.05)
    run.kill()
    run.wait()
    written = len(list(shards.glob("*.parquet")))
    assert 1 <= written < 10 and not (user_folder / "log2" / "manifest.json").exists()
    again = _collect(user_folder, cluster, slow, "log2", flag=True)
    stdout, stderr = again.communicate(timeout=240)
    assert again.returncode == 0, stderr
    assert f"on the Ray cluster at {cluster['RAY_ADDRESS']}" in stdout
    done = int(stdout.split(" already done")[0].rsplit(", ", 1)[1])
    assert done >= written, stdout
    assert_same_log(read_steplog(user_folder / "log2")[0], reference)


def test_a_frozen_node_is_declared_dead_and_its_shards_rerun_elsewhere(
    cluster: dict[str, str], user_folder: Path
) -> None:
    """SIGSTOP the second node (raylet and its workers) mid-run: a slow fault, not a crash.

    Runs last: the frozen node stays dead for the rest of this module's cluster.
    """
    marks = user_folder / "marks"
    slow = f"watched.py:inner={user_folder}/my_adapter.py,folder={marks},delay=0.1"
    run = _collect(user_folder, cluster, slow, "log")
    deadline = time.time() + 120
    while len(list(marks.glob("node-*"))) < 2:  # both nodes are running shards
        assert time.time() < deadline and run.poll() is None, run.communicate()[1]
        time.sleep(0.05)
    node = psutil.Process(int(cluster["NODE2_PID"]))
    for proc in [node, *node.children(recursive=True)]:  # raylet, its workers (own groups too)
        proc.send_signal(signal.SIGSTOP)
    stdout, stderr = run.communicate(timeout=240)
    assert run.returncode == 0, stderr
    manifest = json.loads((user_folder / "log" / "manifest.json").read_text())
    assert manifest["last_run"]["shards_run"] == 10
    # the shard the frozen node was running was run again on the other node
    seeds = [set(p.read_text().split()) for p in marks.glob("node-*")]
    assert len(seeds) == 2 and seeds[0] & seeds[1], seeds
    assert_same_log(read_steplog(user_folder / "log")[0], read_steplog(_reference(user_folder))[0])
