"""Shared fixtures for the Phase I tests: small real collections, built once per session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from training.collect import main as collect_main
from training.config import CollectConfig


def _tiny_config(out: Path, env: str = "taxi", **kw: object) -> CollectConfig:
    """A collection small enough for a unit test (a second or less on toy_text)."""
    base = dict(
        env=env,
        out=out,
        train_seeds=tuple(range(6)),
        test_seeds=(500, 501),
        episodes_per_seed=11,
        workers=1,
        progress=False,
        record_text=True,
    )
    base.update(kw)
    return CollectConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def tiny_config() -> Callable[..., CollectConfig]:
    """Factory: ``tiny_config(out, env="taxi", **overrides)`` -> a small CollectConfig."""
    return _tiny_config


@pytest.fixture(scope="session")
def taxi_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Taxi (wall-blind) collection big enough to train and evaluate a PRM."""
    out = tmp_path_factory.mktemp("taxi_log")
    cfg = CollectConfig(
        env="taxi",
        out=out,
        train_seeds=tuple(range(80)),
        test_seeds=tuple(range(1000, 1040)),
        episodes_per_seed=22,
        workers=1,
        progress=False,
    )
    return collect_main(cfg, log=lambda _: None)
