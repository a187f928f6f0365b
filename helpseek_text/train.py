"""Train the heads of a text model: encode texts once (frozen encoder), fit small MLPs in torch.

The encoder stays frozen (no LoRA: ``peft`` is not installed, and a head on the final hidden
state already separates the toy and DP labels); each distinct text is encoded once. The heads
are exported to the numpy layouts of helpseek_core (``MLPPRM``, ``Helper``), so inference
needs no torch beyond the encoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from helpseek_core.helper import FeatureStats, Helper, encode_inputs
from helpseek_core.mlp import MLP
from helpseek_core.prm import MLPPRM
from helpseek_text.config import TextModelConfig
from helpseek_text.encoders import Encoder, build_encoder, check_texts
from helpseek_text.errors import TextInputError
from helpseek_text.scorer import TextScorer

__all__ = [
    "HeadConfig",
    "HelperExamples",
    "PRMExamples",
    "encode_unique",
    "fit_helper_head",
    "fit_prm_head",
    "train_text_model",
]


@dataclass(frozen=True)
class HeadConfig:
    """Training settings of one MLP head."""

    hidden: tuple[int, ...] = (64,)
    """Hidden layer widths (ReLU); ``()`` is logistic regression."""
    epochs: int = 100
    """Passes over the training rows."""
    batch_size: int = 256
    """Rows per Adam step."""
    lr: float = 3e-3
    """Adam learning rate."""
    weight_decay: float = 1e-3
    """AdamW weight decay (the features are wide and the data small)."""
    max_components: int | None = 32
    """Low-rank first layer: train on the top-k whitened principal components of the
    normalised features, k = clip(distinct texts // 20, 2, max_components), then fold the
    projection into the first layer (the export keeps helpseek_core's layout). ``None``: full
    width. Without it a wide head memorises each training text and ignores the action and
    budget columns (measured on the toy task: held-out intervene-vs-proceed lift 0.05 vs 0.5)."""

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.weight_decay < 0:
            raise TextInputError(f"HeadConfig: bad settings {self}")
        if self.max_components is not None and self.max_components < 1:
            raise TextInputError("HeadConfig: max_components must be >= 1 or None")


@dataclass(frozen=True)
class PRMExamples:
    """PRM rows: the state text, the action taken, the episode's success."""

    texts: tuple[str, ...]  # (N,)
    actions: np.ndarray  # (N,) int 0 proceed / 1 intervene
    success: np.ndarray  # (N,) float in [0, 1]

    def __post_init__(self) -> None:
        texts = tuple(check_texts(self.texts, "PRMExamples.texts"))
        n = len(texts)
        a = np.asarray(self.actions).reshape(-1)
        y = np.asarray(self.success, np.float64).reshape(-1)
        if n == 0 or a.shape[0] != n or y.shape[0] != n:
            raise TextInputError(
                f"PRMExamples: need N > 0 rows of equal length, got {n}/{a.size}/{y.size}"
            )
        if not np.isin(a, (0, 1)).all() or np.any((y < 0) | (y > 1)):
            raise TextInputError("PRMExamples: actions must be 0/1 and success in [0, 1]")
        object.__setattr__(self, "texts", texts)
        object.__setattr__(self, "actions", a.astype(np.int64))
        object.__setattr__(self, "success", y)


@dataclass(frozen=True)
class HelperExamples:
    """Helper rows (the DP labels): state text, remaining budget, steps left, optimal action."""

    texts: tuple[str, ...]  # (N,)
    remaining: np.ndarray  # (N,) int >= 0
    steps_left: np.ndarray  # (N,) int >= 0
    labels: np.ndarray  # (N,) 1 = intervening is optimal

    def __post_init__(self) -> None:
        texts = tuple(check_texts(self.texts, "HelperExamples.texts"))
        n = len(texts)
        cols = {
            k: np.asarray(getattr(self, k)).reshape(-1)
            for k in ("remaining", "steps_left", "labels")
        }
        if n == 0 or any(v.shape[0] != n for v in cols.values()):
            raise TextInputError(f"HelperExamples: need N > 0 rows of equal length ({n} texts)")
        if np.any(cols["remaining"] < 0) or np.any(cols["steps_left"] < 0):
            raise TextInputError("HelperExamples: remaining and steps_left must be >= 0")
        if not np.isin(cols["labels"], (0, 1)).all():
            raise TextInputError("HelperExamples: labels must be 0/1")
        object.__setattr__(self, "texts", texts)
        for k, v in cols.items():
            object.__setattr__(self, k, v.astype(np.int64))


def encode_unique(encoder: Encoder, texts: Sequence[str]) -> np.ndarray:
    """Encode each distinct text once; (N,) texts -> (N, D) features."""
    uniq, inverse = np.unique(np.asarray(list(texts), dtype=object), return_inverse=True)
    return encoder.encode([str(t) for t in uniq])[inverse.reshape(-1)]


def _fit_mlp(x: np.ndarray, y: np.ndarray, cfg: HeadConfig, rng: np.random.Generator) -> MLP:
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(int(rng.integers(2**31 - 1)))
        dims = [x.shape[1], *cfg.hidden, 1]
        layers: list[torch.nn.Module] = []
        for i in range(len(dims) - 1):
            layers.append(torch.nn.Linear(dims[i], dims[i + 1]))
            if i < len(dims) - 2:
                layers.append(torch.nn.ReLU())
        net = torch.nn.Sequential(*layers)
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        xt = torch.as_tensor(x, dtype=torch.float32)
        yt = torch.as_tensor(y, dtype=torch.float32)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        n = x.shape[0]
        for _ in range(cfg.epochs):
            order = torch.as_tensor(rng.permutation(n))
            for i in range(0, n, cfg.batch_size):
                idx = order[i : i + cfg.batch_size]
                opt.zero_grad()
                loss = loss_fn(net(xt[idx])[:, 0], yt[idx])
                loss.backward()
                opt.step()
        linears = [m for m in net if isinstance(m, torch.nn.Linear)]
        ws = tuple(m.weight.detach().numpy().T.astype(np.float32).copy() for m in linears)
        bs = tuple(m.bias.detach().numpy().astype(np.float32).copy() for m in linears)
    return MLP(ws, bs)


def _projection(z: np.ndarray, n_distinct: int, cfg: HeadConfig) -> np.ndarray | None:
    """(N, D) normalised features -> (D, k) whitened PCA projection, or None for full width."""
    if cfg.max_components is None:
        return None
    k = int(np.clip(n_distinct // 20, 2, cfg.max_components))
    k = min(k, z.shape[0], z.shape[1])
    centred = z - z.mean(axis=0)
    _, sing, vt = np.linalg.svd(centred.astype(np.float64), full_matrices=False)
    scale = np.maximum(sing[:k] / np.sqrt(max(z.shape[0], 1)), 1e-6)
    return (vt[:k].T / scale).astype(np.float32)


def _fit_folded(
    z: np.ndarray,
    extra: np.ndarray,
    y: np.ndarray,
    n_distinct: int,
    cfg: HeadConfig,
    rng: np.random.Generator,
) -> MLP:
    """Fit on ``[z @ P, extra]`` and return the MLP on ``[z, extra]`` (P folded into layer 0)."""
    proj = _projection(z, n_distinct, cfg)
    if proj is None:
        return _fit_mlp(np.concatenate([z, extra], axis=1), y, cfg, rng)
    small = _fit_mlp(np.concatenate([z @ proj, extra], axis=1), y, cfg, rng)
    k = proj.shape[1]
    w0 = small.weights[0]
    folded = np.concatenate([proj @ w0[:k], w0[k:]], axis=0).astype(np.float32)
    return MLP((folded, *small.weights[1:]), small.biases)


def fit_prm_head(
    features: np.ndarray, examples: PRMExamples, cfg: HeadConfig, rng: np.random.Generator
) -> MLPPRM:
    """Fit P(success | text, action) on (N, D) features of ``examples.texts``."""
    stats = FeatureStats.fit(features)
    action = examples.actions.astype(np.float32)[:, None]
    n_distinct = len(set(examples.texts))
    mlp = _fit_folded(stats.normalise(features), action, examples.success, n_distinct, cfg, rng)
    return MLPPRM(mlp, stats)


def fit_helper_head(
    features: np.ndarray,
    examples: HelperExamples,
    cfg: HeadConfig,
    rng: np.random.Generator,
    *,
    cmax: int,
    horizon: int,
    cost: int = 1,
    threshold: float = 0.5,
) -> Helper:
    """Fit P(intervening is optimal | text, c, steps left) on features of the rendered texts."""
    if cmax < 0 or horizon < 1 or cost < 1:
        raise TextInputError("fit_helper_head: need cmax >= 0, horizon >= 1, cost >= 1")
    stats = FeatureStats.fit(features)
    x = encode_inputs(stats, features, examples.remaining, examples.steps_left, cmax, horizon, cost)
    d = features.shape[1]
    n_distinct = len(set(examples.texts))
    labels = examples.labels.astype(np.float64)
    mlp = _fit_folded(x[:, :d], x[:, d:], labels, n_distinct, cfg, rng)
    return Helper(mlp, stats, int(cmax), int(horizon), int(cost), float(threshold))


def train_text_model(
    config: TextModelConfig,
    rng: np.random.Generator,
    *,
    prm: PRMExamples | None = None,
    helper: HelperExamples | None = None,
    head: HeadConfig | None = None,
    cmax: int = 0,
    horizon: int = 1,
    cost: int = 1,
    encoder: Encoder | None = None,
) -> TextScorer:
    """Build (or reuse) the encoder of ``config`` and fit the requested heads on it."""
    if prm is None and helper is None:
        raise TextInputError("train_text_model: give PRM examples, helper examples, or both")
    head = head or HeadConfig()
    enc = encoder if encoder is not None else build_encoder(config)
    prm_head = helper_head = None
    if prm is not None:
        prm_head = fit_prm_head(encode_unique(enc, prm.texts), prm, head, rng)
    if helper is not None:
        scratch = TextScorer(config, enc)
        rendered = scratch.helper_texts(helper.texts, helper.remaining, helper.steps_left)
        feats = encode_unique(enc, rendered)
        helper_head = fit_helper_head(
            feats, helper, head, rng, cmax=cmax, horizon=horizon, cost=cost
        )
    return TextScorer(config, enc, prm_head, helper_head)
