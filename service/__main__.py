"""``python -m service``: serve with uvicorn using :class:`service.settings.Settings`.

With ``HELPSEEK_WORKERS`` > 1 each worker builds its own app (``create_app`` as a uvicorn
factory) and prometheus_client runs in multiprocess mode: a fresh PROMETHEUS_MULTIPROC_DIR is
made unless one is given.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import uvicorn

from service.app import create_app
from service.settings import Settings

__all__ = ["main"]


def main() -> None:
    """Run the service until interrupted."""
    settings = Settings()  # type: ignore[call-arg]  # read from the environment
    if settings.workers > 1 and not settings.redis_url:
        raise SystemExit(
            "HELPSEEK_WORKERS > 1 needs HELPSEEK_REDIS_URL (the in-process store is per process)"
        )
    common = {"host": settings.host, "port": settings.port, "log_level": settings.log_level}
    if settings.workers == 1:
        uvicorn.run(create_app(settings), **common)  # type: ignore[arg-type]
        return
    mp_dir = settings.prometheus_multiproc_dir
    if mp_dir is None:
        mp_dir = Path(tempfile.mkdtemp(prefix="helpseek-metrics-"))
    # prometheus_client picks its multiprocess value class from this variable at import time
    # in each worker; the workers inherit it (and their Settings read it back).
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(mp_dir)
    mp_dir.mkdir(parents=True, exist_ok=True)
    for stale in mp_dir.glob("*.db"):
        stale.unlink()
    uvicorn.run("service.app:create_app", factory=True, workers=settings.workers, **common)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
