"""A small, generic torch trainer for binary MLPs, exported to core's numpy :class:`MLP`.

Used for the feature PRM (inputs ``[normalised features, action]``, label = episode success)
and reusable for the Phase III helper (inputs from ``helpseek_core.helper.encode_inputs``,
label = the DP's optimal action). Training is deterministic for a given ``seed`` on CPU.
:func:`fit_mlp_classes` is the multi-class variant (cross-entropy over the 1 + m actions of
the typed helper, :mod:`training.typed_phase`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from helpseek_core.mlp import MLP

__all__ = ["class_weights", "fit_mlp", "fit_mlp_classes", "to_core_mlp"]


def class_weights(y: np.ndarray) -> np.ndarray:
    """Per-row weights that balance the two classes (each class gets half the total weight)."""
    y = np.asarray(y).astype(bool)
    n, pos = y.size, int(y.sum())
    if pos in (0, n):
        return np.ones(n)
    return np.where(y, n / (2.0 * pos), n / (2.0 * (n - pos)))


def _network(in_dim: int, hidden: Sequence[int], outputs: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, outputs))
    return nn.Sequential(*layers)


def to_core_mlp(net: nn.Sequential) -> MLP:
    """Export a Linear/ReLU stack to core's numpy MLP (W is the transpose of Linear.weight)."""
    linears = [m for m in net if isinstance(m, nn.Linear)]
    ws = tuple(m.weight.detach().cpu().numpy().T.astype(np.float32).copy() for m in linears)
    bs = tuple(m.bias.detach().cpu().numpy().astype(np.float32).copy() for m in linears)
    return MLP(ws, bs)


def fit_mlp(
    x: np.ndarray,
    y: np.ndarray,
    sample_weight: np.ndarray | None = None,
    *,
    hidden: Sequence[int] = (64, 64),
    epochs: int = 30,
    lr: float = 3e-3,
    batch_size: int = 512,
    weight_decay: float = 0.0,
    class_weight: Literal["balanced"] | None = None,
    seed: int = 0,
    progress: bool = True,
    threads: int | None = 1,
) -> MLP:
    """Fit a ReLU MLP with binary cross-entropy on logits; return core's numpy :class:`MLP`.

    ``x`` (N, D) float inputs, ``y`` (N,) labels in [0, 1] (soft labels allowed),
    ``sample_weight`` (N,) optional non-negative row weights, multiplied by balanced class
    weights when ``class_weight="balanced"``. Adam, shuffled minibatches, fixed epochs.
    ``threads`` caps torch's intra-op threads while training (1 is fastest for these small
    nets on a shared CPU; the previous setting is restored); None leaves torch's default.
    """
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _train(
            x,
            y,
            sample_weight,
            hidden,
            epochs,
            lr,
            batch_size,
            weight_decay,
            class_weight,
            seed,
            progress,
        )
    finally:
        torch.set_num_threads(previous)


def _train(
    x: np.ndarray,
    y: np.ndarray,
    sample_weight: np.ndarray | None,
    hidden: Sequence[int],
    epochs: int,
    lr: float,
    batch_size: int,
    weight_decay: float,
    class_weight: Literal["balanced"] | None,
    seed: int,
    progress: bool,
) -> MLP:
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.float32).reshape(-1)
    if x.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"fit_mlp: need x (N, D) and y (N,), got {x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all((y >= 0) & (y <= 1))):
        raise ValueError("fit_mlp: x must be finite and y in [0, 1]")
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    if w.shape != y.shape or np.any(w < 0):
        raise ValueError("fit_mlp: sample_weight must be (N,) and non-negative")
    if class_weight == "balanced":
        w = w * class_weights(y >= 0.5)
    w = w * (len(w) / max(w.sum(), 1e-12))  # mean weight 1 keeps lr meaningful

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = _network(x.shape[1], hidden)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.BCEWithLogitsLoss(reduction="none")
    xt, yt, wt = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(w.astype(np.float32))
    n = len(y)
    bar = tqdm(range(epochs), desc="fit_mlp", unit="epoch", disable=not progress)
    for _ in bar:
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            loss = (loss_fn(net(xt[idx]).squeeze(1), yt[idx]) * wt[idx]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        bar.set_postfix(loss=f"{total / n:.4f}")
    net.eval()
    return to_core_mlp(net)


def fit_mlp_classes(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    sample_weight: np.ndarray | None = None,
    *,
    hidden: Sequence[int] = (128, 128),
    epochs: int = 30,
    lr: float = 3e-3,
    batch_size: int = 512,
    seed: int = 0,
    progress: bool = True,
    threads: int | None = 1,
) -> MLP:
    """Fit a ReLU MLP with (weighted) cross-entropy over ``n_classes`` logits; core's MLP.

    ``x`` (N, D) finite inputs, ``y`` (N,) integer classes in [0, n_classes), ``sample_weight``
    (N,) non-negative (normalised to mean 1). Adam, shuffled minibatches, fixed epochs.
    """
    x = np.asarray(x, np.float32)
    y = np.asarray(y).reshape(-1)
    if x.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"fit_mlp_classes: need x (N, D) and y (N,), got {x.shape} and {y.shape}")
    if n_classes < 2 or not np.all(np.isfinite(x)) or np.any((y < 0) | (y >= n_classes)):
        raise ValueError(f"fit_mlp_classes: x must be finite and y in 0..{n_classes - 1}")
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    if w.shape != y.shape or np.any(w < 0):
        raise ValueError("fit_mlp_classes: sample_weight must be (N,) and non-negative")
    w = w * (len(w) / max(w.sum(), 1e-12))
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        net = _network(x.shape[1], hidden, n_classes)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        loss_fn = nn.CrossEntropyLoss(reduction="none")
        xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
        wt = torch.from_numpy(w.astype(np.float32))
        n = len(y)
        bar = tqdm(range(epochs), desc="fit_mlp_classes", unit="epoch", disable=not progress)
        for _ in bar:
            perm = torch.randperm(n, generator=gen)
            total = 0.0
            for i in range(0, n, batch_size):
                idx = perm[i : i + batch_size]
                loss = (loss_fn(net(xt[idx]), yt[idx]) * wt[idx]).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            bar.set_postfix(loss=f"{total / n:.4f}")
        net.eval()
        return to_core_mlp(net)
    finally:
        torch.set_num_threads(previous)
