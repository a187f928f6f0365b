"""Phase I configuration: one frozen dataclass per stage, saved beside the stage's output.

Every field is documented where it is declared; ``to_dict`` gives the JSON written into the
collection manifest / PRM report, so a run can always be reproduced from its output.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["DEFAULT_P_GRID", "CollectConfig", "PRMConfig", "parse_seeds"]

DEFAULT_P_GRID: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))


def parse_seeds(text: str) -> tuple[int, ...]:
    """Parse a seed list: ``"0-49"`` (inclusive range), ``"1,5,9"``, or a mix ``"0-9,100"``."""
    seeds: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        lo, dash, hi = part.partition("-")
        if dash and lo:
            seeds.extend(range(int(lo), int(hi) + 1))
        else:
            seeds.append(int(part))
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seed list {text!r} repeats a seed")
    return tuple(seeds)


@dataclass(frozen=True)
class CollectConfig:
    """Phase I collection: rollouts with random interventions, written as a step log."""

    env: str
    """Environment spec for ``make_env`` (a preset name, toy_text id or BabyAI level id)."""
    out: Path
    """Output directory (manifest.json + shards/); re-running skips finished shards."""
    train_seeds: tuple[int, ...] = tuple(range(50))
    """Task seeds of the training pool (each seed fixes a layout / start state)."""
    test_seeds: tuple[int, ...] = tuple(range(10_000, 10_020))
    """Task seeds of the held-out pool; must not overlap the training pool."""
    episodes_per_seed: int = 22
    """Rollouts per task seed; rollout j uses intervention probability p_grid[j % len]."""
    p_grid: tuple[float, ...] = DEFAULT_P_GRID
    """Random-intervention probabilities cycled over a seed's rollouts."""
    k: int = 1
    """Env steps the expert acts per intervention (macro-action length)."""
    cost: int = 1
    """Budget units charged per intervention."""
    intervention_type: int = 0
    """Type id of the intervention (0 = the expert takes over)."""
    root_seed: int = 0
    """Root of every episode's RNG (with task seed and rollout index)."""
    record_text: bool = False
    """Also store each state's text rendering (for the LLM path; larger logs)."""
    workers: int = 2
    """Parallel worker processes (1 = run in this process)."""
    backend: Literal["process", "ray"] = "process"
    """``process`` (a local process pool) or ``ray`` (``ray.init``; local unless RAY_ADDRESS)."""
    progress: bool = True
    """Show a tqdm progress bar over shards."""

    def __post_init__(self) -> None:
        if set(self.train_seeds) & set(self.test_seeds):
            raise ValueError("CollectConfig: train and test seed pools overlap")
        if self.k < 1 or self.cost < 0 or self.episodes_per_seed < 1 or self.workers < 1:
            raise ValueError(
                "CollectConfig: need k >= 1, cost >= 0, episodes_per_seed >= 1, workers >= 1"
            )
        if not self.p_grid or any(not 0.0 <= p <= 1.0 for p in self.p_grid):
            raise ValueError(f"CollectConfig: p_grid must be probabilities, got {self.p_grid}")
        if self.backend not in ("process", "ray"):
            raise ValueError(f"CollectConfig: backend must be process or ray, got {self.backend!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the resolved config."""
        d = asdict(self)
        d["out"] = str(self.out)
        return d


@dataclass(frozen=True)
class PRMConfig:
    """PRM training and calibration report on a collected step log."""

    log: Path
    """Collection directory written by ``helpseek collect``."""
    out: Path
    """Output directory: prm.npz (MLP PRM in core's layout), report.json, report.md."""
    hidden: tuple[int, ...] = (64, 64)
    """Hidden layer widths of the MLP PRM."""
    epochs: int = 30
    """Training epochs over the train split."""
    lr: float = 3e-3
    """Adam learning rate."""
    batch_size: int = 512
    """Minibatch size."""
    weight_decay: float = 1e-5
    """Adam weight decay (L2)."""
    prior_strength: float = 2.0
    """Tabular PRM shrinkage pseudo-count m (helpseek_core.prm.TabularPRM)."""
    n_bins: int = 10
    """Bins of the expected calibration error."""
    seed: int = 0
    """Seed of weight init and minibatch order."""
    progress: bool = True
    """Show a tqdm bar over epochs."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes saved with the report."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the resolved config."""
        d = asdict(self)
        d["log"], d["out"] = str(self.log), str(self.out)
        return d
