"""Typed Python SDK for the HelpSeek service: ask "should my agent ask for help now?".

Pure httpx; it imports nothing from ``service`` or ``training``, so agents install it alone::

    from helpseek_client import HelpSeekClient

    with HelpSeekClient("http://127.0.0.1:8000") as hs:
        s = hs.start_session(budget=3)
        if hs.should_intervene(s.session_id, step=0, features=obs_features).intervene:
            ...  # let the expert act
        hs.report_outcome(s.session_id, success=True, steps=12)
"""

from helpseek_client._calls import API_KEY_HEADER, IDEMPOTENCY_HEADER, RetryPolicy, new_request_id
from helpseek_client.async_client import AsyncHelpSeekClient
from helpseek_client.client import HelpSeekClient
from helpseek_client.errors import (
    APIError,
    AuthError,
    ConflictError,
    HelpSeekClientError,
    NotFoundError,
    ServiceUnavailable,
    TransportError,
    UnexpectedResponse,
    ValidationError,
)
from helpseek_client.models import (
    Decision,
    InterventionTypeInfo,
    ModelInfo,
    Session,
    SessionStatus,
)

__all__ = [
    "API_KEY_HEADER",
    "APIError",
    "AsyncHelpSeekClient",
    "AuthError",
    "ConflictError",
    "Decision",
    "HelpSeekClient",
    "HelpSeekClientError",
    "IDEMPOTENCY_HEADER",
    "InterventionTypeInfo",
    "ModelInfo",
    "NotFoundError",
    "RetryPolicy",
    "ServiceUnavailable",
    "Session",
    "SessionStatus",
    "TransportError",
    "UnexpectedResponse",
    "ValidationError",
    "new_request_id",
]
