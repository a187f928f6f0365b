"""The typed helper: "which help, if any, now?" from (features, remaining budget of every type, steps left).

One multi-class MLP (:class:`~helpseek_core.mlp.MLP` with 1 + m outputs: proceed, type 1,
.., type m) trained on the labels of :func:`helpseek_core.typed.label_typed`. Input encoding
(:func:`encode_typed_inputs`), shared by trainer, evaluator and service::

    x = [ z-scores of the features (capped) ,
          for each type i: min(c_i, cmax_i) / max(cmax_i, 1) , 1[c_i >= cost_i] ,
          steps_left / horizon ]

Budgets above a type's trained Cmax are clipped to it (the helper is never asked about
budgets it was not trained on). The decision is the arg-max logit over the actions the
remaining budgets can pay for (proceed always can): a type whose budget is below its cost is
never chosen.

The artifact (``kind: "typed"``) carries ``helper.npz`` (the MLP and the feature statistics)
and the manifest's ``types``: ``[{"name", "k", "cost", "cmax"}, ...]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from helpseek_core.artifact import Artifact
from helpseek_core.errors import ArtifactSchemaError, BudgetError, ShapeError
from helpseek_core.helper import HELPER_FILE, FeatureStats
from helpseek_core.mlp import MLP

__all__ = [
    "InterventionType",
    "TypedDecision",
    "TypedHelper",
    "encode_typed_inputs",
    "types_from_manifest",
]


@dataclass(frozen=True)
class InterventionType:
    """One rung of the ladder: its name, steps covered, cost and the budget range trained."""

    name: str
    k: int = 1
    cost: int = 1
    cmax: int = 1

    def __post_init__(self) -> None:
        for field_name in ("k", "cost"):
            v = getattr(self, field_name)
            if isinstance(v, bool) or int(v) != v or v < 1:
                raise BudgetError(
                    f"type {self.name!r}: {field_name} must be an integer >= 1, got {v!r}"
                )
        if isinstance(self.cmax, bool) or int(self.cmax) != self.cmax or self.cmax < 0:
            raise BudgetError(
                f"type {self.name!r}: cmax must be an integer >= 0, got {self.cmax!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """For the manifest."""
        return {"name": self.name, "k": int(self.k), "cost": int(self.cost), "cmax": int(self.cmax)}


def types_from_manifest(
    manifest: Mapping[str, Any], where: str = "manifest"
) -> tuple[InterventionType, ...]:
    """Read the manifest's ``types`` list; raises ArtifactSchemaError naming what is wrong."""
    raw = manifest.get("types")
    if not isinstance(raw, list) or not raw:
        raise ArtifactSchemaError(
            f"{where}: 'types' must be a non-empty list of intervention types"
        )
    out = []
    for i, t in enumerate(raw):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise ArtifactSchemaError(f"{where}: types[{i}] must be an object with a 'name'")
        try:
            out.append(
                InterventionType(
                    t["name"], int(t.get("k", 1)), int(t.get("cost", 1)), int(t.get("cmax", 1))
                )
            )
        except (TypeError, ValueError, BudgetError) as exc:
            raise ArtifactSchemaError(f"{where}: types[{i}]: {exc}") from exc
    names = [t.name for t in out]
    if len(set(names)) != len(names):
        raise ArtifactSchemaError(f"{where}: type names must be distinct, got {names}")
    return tuple(out)


def encode_typed_inputs(
    stats: FeatureStats,
    features: np.ndarray,
    remaining: np.ndarray,
    steps_left: np.ndarray,
    types: Sequence[InterventionType],
    horizon: int,
) -> np.ndarray:
    """Build the typed helper's input rows (module docstring). Shapes (B, F), (B, m), (B,)."""
    f = np.atleast_2d(np.asarray(features, np.float64))
    c = np.atleast_2d(np.asarray(remaining, np.float64))
    left = np.asarray(steps_left, np.float64).reshape(-1)
    m = len(types)
    if f.shape[1] != stats.mean.shape[0]:
        raise ShapeError(f"features: expected length {stats.mean.shape[0]}, got {f.shape[1]}")
    if c.shape != (f.shape[0], m) or left.shape[0] != f.shape[0]:
        raise ShapeError(
            f"remaining must be (B, {m}) and steps_left (B,) for B = {f.shape[0]} states"
        )
    if np.any(c < 0) or not np.all(np.isfinite(c)):
        raise BudgetError("remaining: every budget must be a finite number >= 0")
    cols = [stats.normalise(f).astype(np.float64)]
    for i, t in enumerate(types):
        cols.append((np.minimum(c[:, i], t.cmax) / max(t.cmax, 1))[:, None])
        cols.append((c[:, i] >= t.cost).astype(np.float64)[:, None])
    cols.append((left / horizon)[:, None])
    return np.concatenate(cols, axis=1).astype(np.float32)


@dataclass(frozen=True)
class TypedDecision:
    """The answer for one state: the action (0 proceed, i = type i) and its probabilities."""

    action: int  # 0 = proceed, i = request types[i - 1]
    probabilities: tuple[float, ...]  # (1 + m,) softmax over the affordable actions
    novel: bool
    novelty_score: float

    @property
    def intervene(self) -> bool:
        """Whether any help is requested."""
        return self.action > 0


@dataclass(frozen=True, eq=False)
class TypedHelper:
    """A loaded typed helper: multi-class MLP + feature statistics + the types and horizon."""

    mlp: MLP
    stats: FeatureStats
    types: tuple[InterventionType, ...]
    horizon: int

    def __post_init__(self) -> None:
        m = len(self.types)
        if self.mlp.outputs != m + 1:
            raise ShapeError(f"TypedHelper: MLP has {self.mlp.outputs} outputs, need 1 + {m} types")
        if self.mlp.in_dim != self.stats.mean.shape[0] + 2 * m + 1:
            raise ShapeError(
                f"TypedHelper: MLP input {self.mlp.in_dim} != features {self.stats.mean.shape[0]}"
                f" + 2 x {m} types + 1"
            )

    @staticmethod
    def from_artifact(artifact: Artifact) -> TypedHelper:
        """Build from a verified ``typed`` artifact (``helper.npz`` + manifest ``types``)."""
        where = str(artifact.path / HELPER_FILE)
        if HELPER_FILE not in artifact.arrays:
            raise ArtifactSchemaError(f"{where}: the artifact has no helper weights")
        arrays = artifact.arrays[HELPER_FILE]
        types = types_from_manifest(artifact.manifest, str(artifact.path / "manifest.json"))
        try:
            return TypedHelper(
                MLP.from_arrays(arrays, where),
                FeatureStats.from_arrays(arrays, where),
                types,
                int(artifact.manifest["horizon"]),
            )
        except ShapeError as exc:
            raise ArtifactSchemaError(f"{where}: {exc}") from exc

    def probabilities(
        self, features: np.ndarray, remaining: np.ndarray, steps_left: np.ndarray
    ) -> np.ndarray:
        """Batch (B, F), (B, m), (B,) -> (B, 1 + m) action probabilities (unaffordable = 0)."""
        x = encode_typed_inputs(
            self.stats, features, remaining, steps_left, self.types, self.horizon
        )
        z = self.mlp.forward(x).astype(np.float64)
        c = np.atleast_2d(np.asarray(remaining, np.float64))
        afford = np.ones_like(z, dtype=bool)
        afford[:, 1:] = c >= np.array([t.cost for t in self.types])[None, :]
        z = np.where(afford, z, -np.inf)
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def decide(
        self, features: np.ndarray, remaining: Sequence[float], steps_left: int
    ) -> TypedDecision:
        """One state -> TypedDecision (arg-max over the affordable actions; ties -> lower index)."""
        f = np.asarray(features, np.float64).reshape(1, -1)
        p = self.probabilities(
            f, np.asarray(remaining, np.float64).reshape(1, -1), np.array([steps_left])
        )[0]
        return TypedDecision(
            action=int(np.argmax(p)),
            probabilities=tuple(float(v) for v in p),
            novel=bool(self.stats.is_novel(f)[0]),
            novelty_score=float(self.stats.score(f)[0]),
        )
