"""The service's one configuration object (docs/design.md, rule 5).

Every knob is an environment variable with the ``HELPSEEK_`` prefix (``HELPSEEK_PORT=9000``),
read once by :class:`Settings` and handed to :func:`service.app.create_app`. Nothing else in
the service reads ``os.environ``. The one un-prefixed variable is prometheus_client's own
``PROMETHEUS_MULTIPROC_DIR`` (multiprocess metrics with several workers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Resolved service configuration; see docs/service.md for the full table."""

    model_config = SettingsConfigDict(env_prefix="HELPSEEK_", extra="ignore", frozen=True)

    host: str = Field("127.0.0.1", description="Interface uvicorn binds to.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port uvicorn binds to.")
    workers: int = Field(1, ge=1, le=64, description="uvicorn worker processes (>1 needs Redis).")
    artifact: Path = Field(Path("artifacts/default"), description="Artifact directory to serve.")
    allow_no_artifact: bool = Field(
        False,
        description="Start explore-only when no artifact is at HELPSEEK_ARTIFACT (POST "
        "/admin/reload loads it once written).",
    )
    explore_schedule: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [i / 10 for i in range(11)],
        min_length=1,
        description='Comma-separated p values {"explore": true} sessions sweep (round robin).',
    )
    redis_url: str | None = Field(None, description="redis://... ; unset = in-process store.")
    redis_key_prefix: str = Field("helpseek:", description="Prefix of every Redis key.")
    redis_connect_timeout_s: float = Field(0.25, gt=0, le=5, description="Redis connect timeout.")
    redis_socket_timeout_s: float = Field(0.25, gt=0, le=5, description="Redis command timeout.")
    redis_cooldown_s: float = Field(
        0.5, ge=0, le=60, description="After a Redis error, skip Redis this long (then retry)."
    )
    redis_deadline_s: float = Field(
        0.2,
        gt=0,
        le=5,
        description="A decision script starting later than this after it was sent writes nothing "
        "(must be below the command timeout).",
    )
    request_id_cap: int = Field(
        1024,
        ge=1,
        le=1_000_000,
        description="Request-id records per session and generation (two generations are kept).",
    )
    fail_mode: Literal["closed", "open"] = Field(
        "closed",
        description="Budget store down: 'closed' never intervenes, 'open' trusts the helper.",
    )
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated API keys; empty = no auth."
    )
    admin_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated admin keys for /admin/*; empty = admin from loopback only.",
    )
    header_timeout_s: float = Field(
        10.0, gt=0, le=600, description="Close a connection whose request head takes longer."
    )
    keep_alive_timeout_s: float = Field(
        5.0, gt=0, le=3600, description="Close a kept-alive connection idle this long."
    )
    graceful_timeout_s: int = Field(
        30, ge=1, le=3600, description="On SIGTERM, wait this long for in-flight requests."
    )
    default_ttl_s: int = Field(3600, ge=1, le=30 * 86400, description="Session TTL (sliding).")
    max_body_bytes: int = Field(65536, ge=256, description="Largest accepted request body.")
    decision_log: str | None = Field(
        None, description="JSONL path, 'redis-stream', or unset (no decision log)."
    )
    decision_stream: str = Field("decisions", description="Stream key (after the prefix).")
    decision_stream_maxlen: int = Field(1_000_000, ge=1, description="Approximate stream cap.")
    session_cache_size: int = Field(100_000, ge=0, description="Per-process session-info cache.")
    log_level: str = Field("info", description="uvicorn log level.")
    prometheus_multiproc_dir: Path | None = Field(
        None,
        validation_alias=AliasChoices(
            "PROMETHEUS_MULTIPROC_DIR", "HELPSEEK_PROMETHEUS_MULTIPROC_DIR"
        ),
        description="Set (by __main__ when workers > 1) to aggregate metrics across workers.",
    )

    @model_validator(mode="after")
    def _deadline_below_timeout(self) -> Settings:
        if self.redis_deadline_s >= self.redis_socket_timeout_s:
            raise ValueError(
                f"redis_deadline_s ({self.redis_deadline_s}) must be below "
                f"redis_socket_timeout_s ({self.redis_socket_timeout_s})"
            )
        return self

    @field_validator("explore_schedule", mode="before")
    @classmethod
    def _split_schedule(cls, value: object) -> object:
        if isinstance(value, str):
            return [float(p) for p in value.split(",") if p.strip()]
        return value

    @field_validator("explore_schedule")
    @classmethod
    def _schedule_in_range(cls, value: list[float]) -> list[float]:
        bad = [p for p in value if not 0.0 <= p <= 1.0]
        if bad:
            raise ValueError(f"explore_schedule: every p must be in [0, 1], got {bad}")
        return value

    @field_validator("api_keys", "admin_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value
