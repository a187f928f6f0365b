"""A ReLU multilayer perceptron in numpy: the inference side of every small network HelpSeek ships.

The trainers (torch, in ``training`` and ``helpseek_text``) export their layers as
``{W0, b0, W1, b1, ...}``; this record runs them without torch. One output for the helper
and the PRMs, 1 + m outputs for the typed helper.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from helpseek_core.errors import ArtifactSchemaError, ShapeError

__all__ = ["MLP"]


@dataclass(frozen=True, eq=False)
class MLP:
    """A ReLU multilayer perceptron: one output logit per row (``outputs`` > 1 for the typed helper)."""

    weights: tuple[np.ndarray, ...]  # each (in, out) float32
    biases: tuple[np.ndarray, ...]  # each (out,) float32

    def __post_init__(self) -> None:
        if not self.weights or len(self.weights) != len(self.biases):
            raise ShapeError("MLP: need as many weight matrices as bias vectors (>= 1)")
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            if w.ndim != 2 or b.shape != (w.shape[1],):
                raise ShapeError(f"MLP: layer {i} has W {w.shape} and b {b.shape}")
            if i and w.shape[0] != self.weights[i - 1].shape[1]:
                raise ShapeError(f"MLP: layer {i} input {w.shape[0]} != previous output")

    @property
    def in_dim(self) -> int:
        """Input width."""
        return int(self.weights[0].shape[0])

    @property
    def outputs(self) -> int:
        """Logits per row (1 for the helper; 1 + number of types for the typed helper)."""
        return int(self.weights[-1].shape[1])

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(B, in) -> (B, outputs) logits."""
        h = np.asarray(x, dtype=np.float32)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = h @ w + b
            if i < last:
                np.maximum(h, 0.0, out=h)
        return h

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(B, in) -> (B,) logits of a one-output MLP."""
        if self.outputs != 1:
            raise ShapeError(f"MLP.logits: this MLP has {self.outputs} outputs, use forward()")
        return self.forward(x)[:, 0]

    def probability(self, x: np.ndarray) -> np.ndarray:
        """(B, in) -> (B,) sigmoid of the logits."""
        z = self.logits(x).astype(np.float64)
        return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flatten to ``{W0, b0, W1, b1, ...}`` for an ``.npz`` file."""
        out: dict[str, np.ndarray] = {}
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            out[f"W{i}"], out[f"b{i}"] = w.astype(np.float32), b.astype(np.float32)
        return out

    @staticmethod
    def from_arrays(arrays: dict[str, np.ndarray], where: str = "MLP") -> MLP:
        """Inverse of :meth:`to_arrays`."""
        n = sum(1 for k in arrays if k.startswith("W") and k[1:].isdigit())
        try:
            ws = tuple(np.asarray(arrays[f"W{i}"], np.float32) for i in range(n))
            bs = tuple(np.asarray(arrays[f"b{i}"], np.float32) for i in range(n))
        except KeyError as exc:
            raise ArtifactSchemaError(f"{where}: missing layer array {exc}") from exc
        try:
            return MLP(ws, bs)
        except ShapeError as exc:
            raise ArtifactSchemaError(f"{where}: {exc}") from exc
