"""Operations: model info, health, readiness, metrics, and hot reload.

A reload swaps the model *inside* each running worker (no worker restart, no request dropped:
a request already scoring keeps the scorer it started with). With several workers the worker
that answers ``POST /admin/reload`` reloads itself, then sends SIGHUP to each sibling worker
(found under /proc as the other multiprocessing children of the same uvicorn supervisor);
each sibling's SIGHUP handler (:func:`service.app.create_app`) reloads the same way. SIGHUP
sent by an operator to one worker reloads that worker; sent to the *supervisor* it makes
uvicorn restart every worker (uvicorn's own behaviour).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Mapping
from pathlib import Path

from fastapi import APIRouter, Response

from service.deps import Admin, ServiceState, Svc, Tenant
from service.errors import NoModelError, ReloadRefusedError
from service.explore import NO_MODEL_KIND
from service.metrics import CONTENT_TYPE_LATEST
from service.model_holder import target_intervention_rate
from service.schemas import (
    HealthResponse,
    ModelResponse,
    ReadyResponse,
    ReloadResponse,
    TypeInfo,
)
from service.typed_scorer import TypedScorer

__all__ = ["reload_model", "router", "sibling_workers"]

router = APIRouter(tags=["operations"])
_log = logging.getLogger("helpseek.service")


@router.get(
    "/v1/model",
    response_model=ModelResponse,
    responses={401: {"description": "Missing or invalid API key"}},
)
async def model_info(svc: Svc, tenant: Tenant) -> ModelResponse:
    """Describe the artifact this process serves (503 when it runs explore-only)."""
    s = svc.holder.scorer
    if s.kind == NO_MODEL_KIND:
        raise NoModelError("no model is loaded: this service runs explore-only")
    m = s.manifest
    return ModelResponse(
        model_version=s.model_version,
        kind=s.kind,
        feature_dim=s.feature_dim,
        feature_names=[str(n) for n in m.get("feature_schema", {}).get("names", [])],
        cmax=s.cmax,
        budget_range=_budget_range(m, s.cost, s.cmax),
        horizon=s.horizon,
        k=int(m.get("k", 1)),
        cost=s.cost,
        threshold=s.threshold,
        target_intervention_rate=target_intervention_rate(m),
        loaded_at=svc.holder.loaded_at,
        types=[TypeInfo(**t.to_dict()) for t in s.types] if isinstance(s, TypedScorer) else None,
    )


@router.get("/healthz", response_model=HealthResponse)
async def healthz() -> HealthResponse:
    """Liveness: the process answers."""
    return HealthResponse(status="ok")


@router.get("/readyz", response_model=ReadyResponse)
async def readyz(svc: Svc) -> ReadyResponse:
    """Ready once the model is loaded; the budget store's state is reported, not required."""
    return ReadyResponse(
        status="ready",
        model_version=svc.holder.scorer.model_version,
        budget_store=svc.store.kind,
        budget_store_ok=await svc.store.ping(),
        fail_mode=svc.settings.fail_mode,
        explore_only=svc.holder.scorer.kind == NO_MODEL_KIND,
    )


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(svc: Svc) -> Response:
    """Prometheus exposition (aggregated over workers in multiprocess mode)."""
    return Response(svc.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def _budget_range(manifest: object, cost: int, cmax: int) -> tuple[int, int]:
    value = manifest.get("budget_range") if isinstance(manifest, Mapping) else None
    if isinstance(value, list | tuple) and len(value) == 2:
        return int(value[0]), int(value[1])
    return cost, cmax


@router.post(
    "/admin/reload",
    response_model=ReloadResponse,
    responses={
        401: {"description": "Missing or invalid admin key"},
        403: {"description": "Not an admin (a tenant key, or a remote client without admin keys)"},
        409: {"description": "New artifact refused; the old model keeps serving"},
    },
)
async def admin_reload(svc: Svc, admin: Admin) -> ReloadResponse:
    """Re-read HELPSEEK_ARTIFACT, validate it off the event loop, then swap in place.

    A bad artifact is refused (409, naming the file and the reason) and the old model keeps
    serving. With several workers, each other worker is told (SIGHUP) to reload in place.
    """
    old, new = await reload_model(svc)
    told = 0
    if svc.settings.workers > 1 and hasattr(signal, "SIGHUP"):
        for pid in sibling_workers():
            try:
                os.kill(pid, signal.SIGHUP)
                told += 1
            except ProcessLookupError:  # exited meanwhile
                pass
    return ReloadResponse(
        model_version=new, previous_version=old, reloaded=True, workers_signalled=told
    )


def sibling_workers(proc: Path = Path("/proc")) -> list[int]:
    """PIDs of the other uvicorn workers: multiprocessing children of this process's parent."""
    me, parent = os.getpid(), os.getppid()
    pids: list[int] = []
    if not proc.is_dir():
        return pids
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) != parent:
                continue
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if b"spawn_main" in cmdline:  # a worker, not multiprocessing's resource tracker
            pids.append(int(entry.name))
    return sorted(pids)


async def reload_model(svc: ServiceState) -> tuple[str, str]:
    """Reload (also used by the SIGHUP handler); returns (old, new) versions."""
    try:
        old, new = await svc.holder.reload()
    except Exception as exc:  # any failure to load must leave the old model serving
        svc.metrics.reloads.labels(result="error").inc()
        _log.warning("reload refused, keeping %s: %s", svc.holder.scorer.model_version, exc)
        raise ReloadRefusedError(
            f"reload refused, still serving {svc.holder.scorer.model_version}: {exc}"
        ) from exc
    svc.metrics.reloads.labels(result="ok").inc()
    svc.metrics.model_swapped(
        old.model_version, new.model_version, target_intervention_rate(new.manifest)
    )
    _log.info("reloaded model %s -> %s", old.model_version, new.model_version)
    return old.model_version, new.model_version
