"""API keys: tenants are the hashes of their keys; admin keys are a separate role.

With ``HELPSEEK_API_KEYS`` set, every /v1 route needs ``Authorization: Bearer <key>`` or
``X-API-Key: <key>``; the tenant (first 16 hex digits of the key's sha256) namespaces the
sessions, so one tenant can neither read nor spend another's. Without keys everybody is the
tenant ``public``.

``/admin/*`` needs an **admin** key (``HELPSEEK_ADMIN_KEYS``): a tenant key there is 403, a
missing or unknown key 401. Without admin keys, admin routes answer only clients on loopback
(127.0.0.0/8, ::1) — the operator on the host — and 403 to everyone else. Admin keys are not
tenant keys (a key may not be both), so an admin key on /v1 is 401. All comparisons are of
sha256 digests in constant time, over every configured key.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable

from service.errors import AuthError, ForbiddenError

__all__ = ["PUBLIC_TENANT", "Authenticator", "is_loopback"]

PUBLIC_TENANT = "public"


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def _match(presented: str, digests: list[bytes]) -> bytes | None:
    got = _digest(presented)
    match = None
    for d in digests:  # no early exit: time does not depend on which key matched
        if hmac.compare_digest(got, d):
            match = d
    return match


def is_loopback(host: str | None) -> bool:
    """Tell whether a client address is loopback (``None``/unparsable: False)."""
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Authenticator:
    """Maps a presented key to its tenant id, or checks the admin role; holds only digests."""

    def __init__(self, keys: Iterable[str], admin_keys: Iterable[str] = ()) -> None:
        self._digests = [_digest(k) for k in keys if k]
        self._admin = [_digest(k) for k in admin_keys if k]
        if set(self._digests) & set(self._admin):
            raise ValueError("HELPSEEK_ADMIN_KEYS and HELPSEEK_API_KEYS share a key")

    @property
    def enabled(self) -> bool:
        """True when tenant keys are configured."""
        return bool(self._digests)

    def tenant(self, presented: str | None) -> str:
        """Tenant id for ``presented``; raises AuthError for a missing or unknown key."""
        if not self._digests:
            return PUBLIC_TENANT
        if not presented:
            raise AuthError("missing API key (Authorization: Bearer <key> or X-API-Key)")
        match = _match(presented, self._digests)
        if match is None:
            raise AuthError("invalid API key")
        return match.hex()[:16]

    def admin(self, presented: str | None, client_host: str | None) -> None:
        """Allow an admin call or raise AuthError (401) / ForbiddenError (403)."""
        if not self._admin:
            if is_loopback(client_host):
                return
            raise ForbiddenError(
                "admin routes answer only on loopback when HELPSEEK_ADMIN_KEYS is unset"
            )
        if not presented:
            raise AuthError("missing admin key (Authorization: Bearer <key> or X-API-Key)")
        is_admin = _match(presented, self._admin) is not None
        is_tenant = _match(presented, self._digests) is not None
        if is_admin:
            return
        if is_tenant:
            raise ForbiddenError("this key is a tenant key; /admin needs an admin key")
        raise AuthError("invalid API key")
