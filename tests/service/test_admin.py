"""The admin role (issue 13 row 5): admin keys apart from tenant keys; loopback-only without."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.app import create_app
from service.auth import Authenticator, is_loopback
from service.settings import Settings

REMOTE = ("203.0.113.7", 40000)
LOCAL = ("127.0.0.1", 40000)


@contextlib.asynccontextmanager
async def client_from(
    client: tuple[str, int], **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """An app with its lifespan running, called from the address ``client``."""
    app = create_app(Settings(**overrides))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c


@pytest.mark.asyncio
async def test_admin_keys_are_a_separate_role(artifact_dir: Path) -> None:
    keys = {"artifact": artifact_dir, "api_keys": ["tenant-key"], "admin_keys": ["admin-key"]}
    async with client_from(REMOTE, **keys) as c:
        assert (await c.post("/admin/reload")).status_code == 401
        assert (await c.post("/admin/reload", headers={"X-API-Key": "wrong"})).status_code == 401
        r = await c.post("/admin/reload", headers={"X-API-Key": "tenant-key"})
        assert r.status_code == 403 and "tenant key" in r.json()["detail"]
        r = await c.post("/admin/reload", headers={"Authorization": "Bearer admin-key"})
        assert r.status_code == 200 and r.json()["reloaded"] is True
        # an admin key is not a tenant key
        assert (await c.get("/v1/model", headers={"X-API-Key": "admin-key"})).status_code == 401
        assert (await c.get("/v1/model", headers={"X-API-Key": "tenant-key"})).status_code == 200
    async with client_from(LOCAL, **keys) as c:  # loopback is no exemption once keys exist
        assert (
            await c.post("/admin/reload", headers={"X-API-Key": "tenant-key"})
        ).status_code == 403


@pytest.mark.asyncio
async def test_without_admin_keys_admin_answers_only_on_loopback(artifact_dir: Path) -> None:
    for extra in ({}, {"api_keys": ["tenant-key"]}):
        async with client_from(REMOTE, artifact=artifact_dir, **extra) as c:
            r = await c.post("/admin/reload", headers={"X-API-Key": "tenant-key"})
            assert r.status_code == 403 and "loopback" in r.json()["detail"], extra
        async with client_from(LOCAL, artifact=artifact_dir, **extra) as c:
            assert (await c.post("/admin/reload")).status_code == 200, extra
    async with client_from(("::1", 1), artifact=artifact_dir) as c:
        assert (await c.post("/admin/reload")).status_code == 200


@pytest.mark.asyncio
async def test_openapi_documents_admin_refusals(artifact_dir: Path) -> None:
    async with client_from(LOCAL, artifact=artifact_dir) as c:
        responses = (await c.get("/openapi.json")).json()["paths"]["/admin/reload"]["post"]
        assert {"401", "403", "409"} <= set(responses["responses"])


def test_a_key_cannot_be_both_and_loopback_parsing() -> None:
    with pytest.raises(ValueError, match="share a key"):
        Authenticator(["k1", "k2"], ["k2"])
    assert is_loopback("127.0.0.1") and is_loopback("127.9.9.9") and is_loopback("::1")
    assert not is_loopback("10.0.0.1") and not is_loopback(None) and not is_loopback("testclient")
