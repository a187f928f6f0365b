"""Offline deep-RL comparator: discrete CQL (or plain double DQN) on the Phase I log.

The comparison the paper makes: instead of solving a tabular model and distilling its labels,
learn Q(state, remaining budget, steps left, action) directly from the logged transitions.

Budget in the state. The logged interventions were random and independent of any budget, so
every logged transition can be relabelled with every remaining budget ``c <= cmax``: a
proceed row keeps ``c``, an intervention row moves ``c -> c - cost`` and is only valid when
``c >= cost`` (hard budget). Reward 1 on the row where an episode ends in success, 0
otherwise; no discount (the horizon is finite and ``steps_left`` is in the input), so Q is a
success probability. The input encoding is :func:`helpseek_core.helper.encode_inputs`, the
same as the helper's, and invalid actions are masked in both the target and the CQL term.

CQL (Kumar et al. 2020, discrete form): TD loss + ``alpha * (logsumexp_a Q(x, a) - Q(x, a_log))``.
``alpha = 0`` gives double DQN. The trained network is exported to numpy
(:class:`OfflineQPolicy`), so evaluation runs without torch in the loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from helpseek_core.errors import ArtifactSchemaError, ShapeError
from helpseek_core.helper import FeatureStats, encode_inputs
from helpseek_core.types import StepLog

__all__ = [
    "OFFLINE_RL_FILE",
    "OfflineRLConfig",
    "OfflineQPolicy",
    "budget_transitions",
    "train_offline_rl",
]

OFFLINE_RL_FILE = "offline_q.npz"


@dataclass(frozen=True)
class OfflineRLConfig:
    """Settings of the offline deep-RL comparator."""

    alpha: float = 0.0
    """CQL regulariser weight; 0 = double DQN. The logs cover both actions everywhere (random
    interventions over a grid of rates), so conservatism only hurts: on Taxi wall-blind,
    alpha = 0.5 reached 0.34 success at C = 3 against 0.64 with alpha = 0 (300 episodes)."""
    hidden: tuple[int, ...] = (128, 128)
    """Hidden layer widths of the Q-network."""
    steps: int = 6000
    """Gradient steps."""
    batch_size: int = 512
    """Transitions per gradient step."""
    lr: float = 1e-3
    """Adam learning rate."""
    target_update: int = 250
    """Gradient steps between hard copies of the online network into the target network."""
    margin: float = 0.0
    """Intervene only when Q(intervene) exceeds Q(proceed) by more than this."""
    seed: int = 0
    """Seed of the network initialisation and minibatch sampling."""
    max_rows: int = 150_000
    """Logged rows used (a uniform sample when the log is larger), before the x (Cmax + 1)
    budget relabelling: bounds memory on long-horizon logs."""
    threads: int = 1
    """torch intra-op threads while training (1 is fastest for this small net on 2 cores)."""


@dataclass(frozen=True, eq=False)
class Transitions:
    """Budget-augmented transitions, one per (logged row, remaining budget) pair."""

    x: np.ndarray  # (M, F + 3) float32   encoded (state, c, steps_left)
    action: np.ndarray  # (M,) int64
    reward: np.ndarray  # (M,) float32
    x_next: np.ndarray  # (M, F + 3) float32
    done: np.ndarray  # (M,) float32   1 where the episode ended on this row
    valid_next: np.ndarray  # (M, 2) bool   actions allowed at the next (state, c')
    valid: np.ndarray  # (M, 2) bool   actions allowed at (state, c)


def _next_rows(log: StepLog) -> np.ndarray:
    """Index of each row's successor in its episode (itself where the episode ends)."""
    n = len(log)
    order = np.lexsort((log.t, log.episode_id))
    nxt = np.arange(n)
    same = log.episode_id[order[1:]] == log.episode_id[order[:-1]]
    cont = same & ~log.done[order[:-1]]
    nxt[order[:-1][cont]] = order[1:][cont]
    return nxt


def budget_transitions(
    log: StepLog,
    stats: FeatureStats,
    cmax: int,
    horizon: int,
    cost: int,
    steps_left: np.ndarray | None = None,
    rows: np.ndarray | None = None,
) -> Transitions:
    """Relabel every logged row with every remaining budget c <= cmax (see module docstring).

    ``steps_left`` (N,): each row's steps left in its episode (default ``horizon - t``);
    ``rows``: use only these logged rows (their successors are still looked up in the log).
    """
    if len(log) == 0:
        raise ShapeError("budget_transitions: the step log is empty")
    left = horizon - log.t.astype(np.int64) if steps_left is None else np.asarray(steps_left)
    nxt = _next_rows(log)
    # A row whose episode has no logged successor and no done flag is cut off: drop it.
    cut = (nxt == np.arange(len(log))) & ~log.done
    keep = ~cut
    if rows is not None:
        keep &= np.isin(np.arange(len(log)), rows)
    rows = np.flatnonzero(keep)
    a = log.action[rows].astype(np.int64)
    xs, xn, acts, rew, dn, vn, vv = [], [], [], [], [], [], []
    reward = (log.done & log.success & ~log.truncated).astype(np.float32)
    for c in range(cmax + 1):
        ok = (a == 0) | (c >= cost)
        r = rows[ok]
        ai = a[ok]
        c_now = np.full(r.shape[0], c, np.float64)
        c_next = c_now - cost * ai
        j = nxt[r]
        xs.append(encode_inputs(stats, log.features[r], c_now, left[r], cmax, horizon, cost))
        xn.append(encode_inputs(stats, log.features[j], c_next, left[j], cmax, horizon, cost))
        acts.append(ai)
        rew.append(reward[r])
        dn.append(log.done[r].astype(np.float32))
        vn.append(np.stack([np.ones(r.shape[0], bool), c_next >= cost], axis=1))
        vv.append(np.stack([np.ones(r.shape[0], bool), c_now >= cost], axis=1))
    return Transitions(
        np.concatenate(xs),
        np.concatenate(acts),
        np.concatenate(rew),
        np.concatenate(xn),
        np.concatenate(dn),
        np.concatenate(vn),
        np.concatenate(vv),
    )


def _net(in_dim: int, hidden: tuple[int, ...]) -> torch.nn.Sequential:
    layers: list[torch.nn.Module] = []
    width = in_dim
    for h in hidden:
        layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
        width = h
    layers.append(torch.nn.Linear(width, 2))
    return torch.nn.Sequential(*layers)


@dataclass(frozen=True, eq=False)
class OfflineQPolicy:
    """A trained Q-network in numpy: Q(encoded state, action) for action 0 proceed / 1 intervene."""

    weights: tuple[np.ndarray, ...]  # each (in, out) float32; the last has 2 outputs
    biases: tuple[np.ndarray, ...]
    stats: FeatureStats
    cmax: int
    horizon: int
    cost: int
    margin: float = 0.0

    def q_values(
        self, features: np.ndarray, remaining: np.ndarray, steps_left: np.ndarray
    ) -> np.ndarray:
        """Batch (B, F), (B,), (B,) -> (B, 2) Q-values."""
        h = encode_inputs(
            self.stats, features, remaining, steps_left, self.cmax, self.horizon, self.cost
        )
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = h @ w + b
            if i < last:
                np.maximum(h, 0.0, out=h)
        return h

    def decide(self, features: np.ndarray, remaining: int, steps_left: int) -> bool:
        """Intervene when Q(intervene) - Q(proceed) > margin and the budget covers the cost."""
        if remaining < self.cost:
            return False
        f = np.asarray(features, np.float64).reshape(1, -1)
        q = self.q_values(f, np.array([remaining]), np.array([steps_left]))[0]
        return bool(q[1] - q[0] > self.margin)

    def save(self, path: Path) -> Path:
        """Write the network and its constants to one ``.npz`` (no pickle)."""
        arrays: dict[str, Any] = {}
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            arrays[f"W{i}"], arrays[f"b{i}"] = w, b
        arrays.update(self.stats.to_arrays())
        arrays["constants"] = np.array([self.cmax, self.horizon, self.cost], np.int64)
        arrays["margin"] = np.asarray(self.margin)
        np.savez(path, **arrays)
        return path

    @staticmethod
    def load(path: Path) -> OfflineQPolicy:
        """Inverse of :meth:`save`."""
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        n = sum(1 for k in arrays if k.startswith("W") and k[1:].isdigit())
        if n == 0 or "constants" not in arrays:
            raise ArtifactSchemaError(f"{path}: not an offline Q-network file")
        cmax, horizon, cost = (int(v) for v in arrays["constants"])
        return OfflineQPolicy(
            tuple(arrays[f"W{i}"] for i in range(n)),
            tuple(arrays[f"b{i}"] for i in range(n)),
            FeatureStats.from_arrays(arrays, str(path)),
            cmax,
            horizon,
            cost,
            float(arrays["margin"]),
        )


def train_offline_rl(
    log: StepLog,
    stats: FeatureStats,
    cmax: int,
    horizon: int,
    cost: int,
    cfg: OfflineRLConfig,
    steps_left: np.ndarray | None = None,
) -> OfflineQPolicy:
    """Fit the budget-conditioned Q-network on ``log`` with discrete CQL; return it in numpy."""
    before = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        rows = None
        if len(log) > cfg.max_rows:
            rng = np.random.default_rng(cfg.seed)
            rows = np.sort(rng.choice(len(log), cfg.max_rows, replace=False))
        data = budget_transitions(log, stats, cmax, horizon, cost, steps_left, rows)
        return _train(data, stats, cmax, horizon, cost, cfg)
    finally:
        torch.set_num_threads(before)


def _train(
    data: Transitions,
    stats: FeatureStats,
    cmax: int,
    horizon: int,
    cost: int,
    cfg: OfflineRLConfig,
) -> OfflineQPolicy:
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    x = torch.from_numpy(data.x)
    xn = torch.from_numpy(data.x_next)
    act = torch.from_numpy(data.action)
    rew = torch.from_numpy(data.reward)
    done = torch.from_numpy(data.done)
    vn = torch.from_numpy(data.valid_next)
    vv = torch.from_numpy(data.valid)
    online = _net(x.shape[1], cfg.hidden)
    target = _net(x.shape[1], cfg.hidden)
    target.load_state_dict(online.state_dict())
    opt = torch.optim.Adam(online.parameters(), lr=cfg.lr)
    neg = torch.tensor(-1e9)
    m = x.shape[0]
    for step in range(cfg.steps):
        idx = torch.randint(0, m, (min(cfg.batch_size, m),), generator=gen)
        q = online(x[idx])
        q_a = q.gather(1, act[idx].unsqueeze(1)).squeeze(1)
        with torch.no_grad():
            qn_online = torch.where(vn[idx], online(xn[idx]), neg)
            a_star = qn_online.argmax(dim=1, keepdim=True)
            qn = target(xn[idx]).gather(1, a_star).squeeze(1)
            y = rew[idx] + (1.0 - done[idx]) * qn
        loss = torch.nn.functional.smooth_l1_loss(q_a, y)
        if cfg.alpha > 0:
            lse = torch.logsumexp(torch.where(vv[idx], q, neg), dim=1)
            loss = loss + cfg.alpha * (lse - q_a).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % cfg.target_update == 0:
            target.load_state_dict(online.state_dict())
    linears = [mod for mod in online if isinstance(mod, torch.nn.Linear)]
    weights = tuple(mod.weight.detach().numpy().T.astype(np.float32).copy() for mod in linears)
    biases = tuple(mod.bias.detach().numpy().astype(np.float32).copy() for mod in linears)
    return OfflineQPolicy(weights, biases, stats, cmax, horizon, cost, cfg.margin)
