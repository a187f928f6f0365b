"""docker-compose.yml and the Dockerfiles, checked with what runs without a Docker engine.

A compose client validates the file offline when one is installed (the `docker compose`
plugin, else Debian's docker-compose); the structure checks below run everywhere. The
Dockerfiles are parsed into instructions and checked for what the issue asks (multi-stage,
non-root, health check, no torch in the serving image, the same commands as the Makefile).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REDIS_FLAGS = [
    "--appendonly",
    "yes",
    "--appendfsync",
    "everysec",
    "--maxmemory-policy",
    "noeviction",
]


def compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


@pytest.fixture(scope="module")
def compose(repo: Path) -> dict:
    return yaml.safe_load((repo / "docker-compose.yml").read_text())


def test_compose_client_validates_the_file(repo: Path) -> None:
    cli = compose_cli()
    if cli is None:
        pytest.skip(
            "no compose client; run `bash scripts/ensure-prometheus.sh` (installs docker-compose)"
        )
    out = subprocess.run(
        [*cli, "-f", "docker-compose.yml", "config", "-q"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    services = subprocess.run(
        [*cli, "-f", "docker-compose.yml", "config", "--services"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.split()
    assert {"redis", "service", "prometheus", "grafana"} <= set(services)
    assert "train" in services  # listed; started only with --profile train (checked below)


def test_compose_client_rejects_a_broken_file(repo: Path, tmp_path: Path) -> None:
    """The validation above can fail: a misspelt key is refused."""
    cli = compose_cli()
    if cli is None:
        pytest.skip("no compose client; run `bash scripts/ensure-prometheus.sh`")
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(
        (repo / "docker-compose.yml").read_text().replace("depends_on:", "depend_on:", 1)
    )
    out = subprocess.run(
        [*cli, "-f", str(bad), "config", "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0


def test_images_are_pinned(compose: dict) -> None:
    for name, svc in compose["services"].items():
        if "image" in svc and "build" not in svc:
            image = svc["image"]
            tag = image.rsplit(":", 1)[-1] if ":" in image else ""
            assert re.fullmatch(r"v?\d+\.\d+\.\d+(-[a-z0-9]+)?", tag), (
                f"{name}: unpinned image {image}"
            )


def test_redis_is_durable_and_never_evicts(compose: dict) -> None:
    redis = compose["services"]["redis"]
    cmd = [str(c) for c in redis["command"]]
    for flag, value in zip(REDIS_FLAGS[::2], REDIS_FLAGS[1::2], strict=True):
        assert cmd[cmd.index(flag) + 1] == value
    assert "redis-cli" in " ".join(redis["healthcheck"]["test"])


def test_service_waits_for_redis_and_mounts_the_artifact_read_only(compose: dict) -> None:
    svc = compose["services"]["service"]
    assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
    assert svc["environment"]["HELPSEEK_REDIS_URL"].startswith("redis://redis:6379")
    assert svc["environment"]["HELPSEEK_WORKERS"] == "2"
    mounts = [v for v in svc["volumes"] if ":/artifacts" in v]
    assert mounts and all(v.endswith(":ro") for v in mounts)
    assert svc["environment"]["HELPSEEK_ARTIFACT"].startswith("/artifacts/")


def test_train_job_writes_where_the_service_reads(compose: dict, repo: Path) -> None:
    train, svc = compose["services"]["train"], compose["services"]["service"]
    assert train["profiles"] == ["train"]
    source = [v[: v.index(":/artifacts")] for v in svc["volumes"] if ":/artifacts" in v]
    assert source == [v[: v.index(":/artifacts")] for v in train["volumes"]]
    assert train["volumes"][0].endswith(":/artifacts")  # read-write for the trainer
    out = train["command"][train["command"].index("--out") + 1]
    assert out == svc["environment"]["HELPSEEK_ARTIFACT"]
    makefile = (repo / "Makefile").read_text()
    assert "helpseek train --default --out" in makefile  # the same command as `make train-default`
    assert train["command"][:2] == ["train", "--default"]


def test_monitoring_mounts_point_at_committed_files(compose: dict, repo: Path) -> None:
    for name in ("prometheus", "grafana"):
        for vol in compose["services"][name]["volumes"]:
            src = vol.split(":")[0]
            if src.startswith("./"):
                assert (repo / src).exists(), f"{name} mounts missing {src}"
    assert "/etc/prometheus/prometheus.yml" in " ".join(
        compose["services"]["prometheus"]["command"]
    )


def test_makefile_up_and_down_use_compose(repo: Path) -> None:
    makefile = (repo / "Makefile").read_text()
    assert re.search(r"^up:.*\n\tdocker compose up", makefile, re.M)
    assert re.search(r"^down:.*\n\tdocker compose down", makefile, re.M)


# ---- Dockerfiles -------------------------------------------------------------------------


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        buf = f"{buf} {line}" if buf else line
        if buf.endswith("\\"):
            buf = buf[:-1].rstrip()
            continue
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    assert not buf, f"{path}: dangling continuation line"
    return out


KNOWN = {
    "FROM",
    "ARG",
    "ENV",
    "RUN",
    "COPY",
    "WORKDIR",
    "USER",
    "EXPOSE",
    "HEALTHCHECK",
    "ENTRYPOINT",
    "CMD",
    "VOLUME",
    "LABEL",
}


@pytest.mark.parametrize("name", ["Dockerfile.service", "Dockerfile.train"])
def test_dockerfile_structure(repo: Path, name: str) -> None:
    ins = instructions(repo / "docker" / name)
    assert {w for w, _ in ins} <= KNOWN
    froms = [a for w, a in ins if w == "FROM"]
    assert len(froms) >= 2, "multi-stage build expected"
    assert ins[-1][0] in {"CMD", "ENTRYPOINT"}
    users = [a for w, a in ins if w == "USER"]
    assert users and not users[-1].startswith(("root", "0")), "must run as non-root"
    stage_runtime = [i for i, (w, _) in enumerate(ins) if w == "FROM"][-1]
    assert any(w == "COPY" and "--from=build" in a for w, a in ins[stage_runtime:])
    for w, a in ins:
        if w == "COPY" and "--from" not in a:
            for src in a.split()[:-1]:
                assert (repo / src).exists(), f"{name}: COPY source {src} does not exist"
    ignore = repo / "docker" / f"{name}.dockerignore"
    assert ignore.is_file() and ".venv" not in ignore.read_text().replace("!", "")


def test_service_image_has_no_torch_and_a_healthcheck(repo: Path) -> None:
    ins = instructions(repo / "docker/Dockerfile.service")
    text = " ".join(a for _, a in ins)
    runs = [a for w, a in ins if w == "RUN"]
    assert any("'.[service]'" in r for r in runs)
    assert not re.search(r"\.\[[^\]]*(train|llm)", text), (
        "the serving image must not install torch extras"
    )
    assert "torch" not in " ".join(r.replace("! pip show torch", "") for r in runs)
    health = [a for w, a in ins if w == "HEALTHCHECK"]
    assert health and "/healthz" in health[0]
    env = " ".join(a for w, a in ins if w == "ENV")
    assert "HELPSEEK_WORKERS=2" in env and "PROMETHEUS_MULTIPROC_DIR=" in env
    assert [a for w, a in ins if w == "CMD"][-1] == '["python", "-m", "service"]'
    makefile = (repo / "Makefile").read_text()
    assert "-m service" in makefile  # the same command as `make serve`
    entry = (repo / "docker/service-entrypoint.sh").read_text()
    assert 'find "$PROMETHEUS_MULTIPROC_DIR" -mindepth 1 -delete' in entry and 'exec "$@"' in entry


def test_service_entrypoint_cleans_the_metrics_dir(repo: Path, tmp_path: Path) -> None:
    mp = tmp_path / "mp"
    mp.mkdir()
    (mp / "counter_123.db").write_bytes(b"stale")
    out = subprocess.run(
        ["sh", str(repo / "docker/service-entrypoint.sh"), "ls", "-A", str(mp)],
        env={"PROMETHEUS_MULTIPROC_DIR": str(mp), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_train_image_runs_helpseek_train(repo: Path) -> None:
    ins = instructions(repo / "docker/Dockerfile.train")
    runs = " ".join(a for w, a in ins if w == "RUN")
    assert "'.[train]'" in runs
    assert [a for w, a in ins if w == "ENTRYPOINT"] == ['["helpseek"]']
    assert [a for w, a in ins if w == "CMD"] == [
        '["train", "--default", "--out", "/artifacts/default"]'
    ]


def test_service_image_build_context_makes_a_complete_wheel(repo: Path, tmp_path: Path) -> None:
    """Replay the build stage's COPY lines into a folder and build the wheel pip would install.

    It must hold the service with its Lua script and the SDK, and no training code.
    """
    import shutil as sh
    import sys
    import zipfile

    ins = instructions(repo / "docker/Dockerfile.service")
    build_end = [i for i, (w, _) in enumerate(ins) if w == "FROM"][1]
    ctx = tmp_path / "src"
    ctx.mkdir()
    for w, a in ins[:build_end]:
        if w == "COPY":
            *srcs, dest = a.split()
            for src in srcs:
                target = ctx / Path(src).name if dest in ("./", ".") else ctx / dest
                (sh.copytree if (repo / src).is_dir() else sh.copy)(repo / src, target)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(ctx),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("helpseek-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "service/__main__.py",
        "service/budget/check_and_consume.lua",
        "helpseek_client/__init__.py",
        "helpseek_core/helper.py",
    } <= names
    assert not any(n.startswith(("training/", "helpseek_text/")) for n in names)
