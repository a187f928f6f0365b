"""``python -m service``: serve with uvicorn using :class:`service.settings.Settings`.

Configuration comes from ``HELPSEEK_*`` environment variables only; ``--help`` lists them and
exits. With ``HELPSEEK_WORKERS`` > 1 each worker builds its own app (``create_app`` as a
uvicorn factory) and prometheus_client runs in multiprocess mode: a fresh
PROMETHEUS_MULTIPROC_DIR is made unless one is given. Timeouts, graceful shutdown and the
access log: :mod:`service.server`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from service.settings import Settings

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    lines = []
    for name, field in Settings.model_fields.items():
        env = "PROMETHEUS_MULTIPROC_DIR" if name == "prometheus_multiproc_dir" else name.upper()
        env = env if env.startswith("PROMETHEUS") else f"HELPSEEK_{env}"
        default = (
            ""
            if field.is_required()
            else f" (default: {field.get_default(call_default_factory=True)!r})"
        )
        lines.append(f"  {env}\n      {field.description}{default}")
    return argparse.ArgumentParser(
        prog="python -m service",
        description="Serve HelpSeek budgeted intervention decisions over HTTP (uvicorn). "
        "Every option is an environment variable; see docs/service.md.",
        epilog="environment variables:\n" + "\n".join(lines),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(argv: list[str] | None = None) -> None:
    """Run the service until SIGTERM/SIGINT (then drain in-flight requests and exit)."""
    _parser().parse_args(sys.argv[1:] if argv is None else argv)  # --help prints and exits
    settings = Settings()  # type: ignore[call-arg]  # read from the environment
    if settings.workers > 1 and not settings.redis_url:
        raise SystemExit(
            "HELPSEEK_WORKERS > 1 needs HELPSEEK_REDIS_URL (the in-process store is per process)"
        )
    from service.app import create_app
    from service.server import HeaderTimeoutProtocol, ServerConfig, serve

    common = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "http": HeaderTimeoutProtocol,
        "header_timeout_s": settings.header_timeout_s,
        "timeout_keep_alive": settings.keep_alive_timeout_s,
        "timeout_graceful_shutdown": settings.graceful_timeout_s,
    }
    if settings.workers == 1:
        raise SystemExit(serve(ServerConfig(create_app(settings), **common)))  # type: ignore[arg-type]
    mp_dir = settings.prometheus_multiproc_dir
    if mp_dir is None:
        mp_dir = Path(tempfile.mkdtemp(prefix="helpseek-metrics-"))
    # prometheus_client picks its multiprocess value class from this variable at import time
    # in each worker; the workers inherit it (and their Settings read it back).
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(mp_dir)
    mp_dir.mkdir(parents=True, exist_ok=True)
    for stale in mp_dir.glob("*.db"):
        stale.unlink()
    config = ServerConfig(
        "service.app:create_app",
        factory=True,
        workers=settings.workers,
        **common,  # type: ignore[arg-type]
    )
    raise SystemExit(serve(config))


if __name__ == "__main__":
    main()
