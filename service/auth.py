"""Optional API keys: tenants are the hashes of the keys, compared in constant time.

With ``HELPSEEK_API_KEYS`` set, every /v1 route and /admin needs ``Authorization: Bearer
<key>`` or ``X-API-Key: <key>``; the tenant (first 16 hex digits of the key's sha256)
namespaces the sessions, so one tenant can neither read nor spend another's. Without keys
everybody is the tenant ``public``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from service.errors import AuthError

__all__ = ["PUBLIC_TENANT", "Authenticator"]

PUBLIC_TENANT = "public"


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class Authenticator:
    """Maps a presented key to its tenant id; holds only sha256 digests of the keys."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = [_digest(k) for k in keys if k]

    @property
    def enabled(self) -> bool:
        """True when keys are configured."""
        return bool(self._digests)

    def tenant(self, presented: str | None) -> str:
        """Tenant id for ``presented``; raises AuthError for a missing or unknown key."""
        if not self._digests:
            return PUBLIC_TENANT
        if not presented:
            raise AuthError("missing API key (Authorization: Bearer <key> or X-API-Key)")
        got = _digest(presented)
        match = None
        for d in self._digests:  # no early exit: time does not depend on which key matched
            if hmac.compare_digest(got, d):
                match = d
        if match is None:
            raise AuthError("invalid API key")
        return match.hex()[:16]
