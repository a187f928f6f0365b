"""``helpseek check-env SPEC``: check an adapter against the protocol before collecting with it.

Like gymnasium's ``check_env``, it drives the adapter through its public methods only
(:class:`training.envs.base.EnvAdapter`) and names what is wrong, one line per method:

- attributes: ``spec``, ``agent``, ``expert`` are strings; ``feature_names`` distinct strings;
- ``reset()``: ``horizon`` is a positive int afterwards;
- ``state_key()``: an int in the int64 range, equal in a fresh process (a stable hash, not
  Python's salted ``hash()``);
- ``features()``: an array of shape ``(len(feature_names),)``, real-valued and finite;
- ``text()``: a non-empty string;
- ``weak_action()`` / ``expert_action()``: ints, in ``range(n_actions)`` if the adapter
  declares ``n_actions``, accepted by ``step()``;
- ``step()``: a ``StepResult``; success only when terminated; the episode ends (terminated or
  truncated) within ``horizon`` steps;
- same seed -> same episode (keys, features, actions, outcome), in the same adapter and in a
  freshly built one;
- ``exact_arrays()`` (optional): an ``ExactArrays`` of consistent shapes whose rows sum to 1
  and whose states cover every state key seen;
- the expert succeeds more often than the weak agent over ``episodes`` episodes each.

Any failure: exit status 2 with every failed line (:class:`EnvCheckError`).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from training.envs import (
    EnvAdapter,
    EnvSpecError,
    ExactArrays,
    StepResult,
    episode_rng,
    make_env,
    run_episode,
)

__all__ = ["CheckEnvConfig", "CheckReport", "EnvCheckError", "add_arguments", "from_args", "main"]

_INT64 = (-(2**63), 2**63)


class EnvCheckError(EnvSpecError):
    """An adapter failed ``helpseek check-env``; the message lists one line per failure."""


@dataclass(frozen=True)
class CheckEnvConfig:
    """One ``helpseek check-env`` run."""

    spec: str
    """The ``--env`` spec to check (built-in or plug-in)."""
    seeds: int = 5
    """Task seeds probed step by step (seeds 0..seeds-1)."""
    episodes: int = 100
    """Episodes per agent (weak alone, expert alone) for the expert-vs-weak comparison."""
    fresh_process: bool = True
    """Also compare state keys with a freshly spawned process (catches salted ``hash()``)."""


@dataclass
class CheckReport:
    """What ``check-env`` found: passed checks, problems (method -> line), success rates."""

    spec: str
    passed: list[str] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)
    weak_success: float | None = None
    expert_success: float | None = None

    def fail(self, method: str, message: str) -> None:
        """Record the first failure of ``method`` (later ones of the same method are dropped)."""
        self.problems.setdefault(method, f"{method}: {message}")


@dataclass
class _Trace:
    keys: list[int] = field(default_factory=list)
    features: list[bytes] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)
    outcome: tuple[bool, bool] | None = None


def _call(report: CheckReport, method: str, fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as exc:
        report.fail(method, f"raised {type(exc).__name__}: {exc}")
        raise _Abort from exc


class _Abort(Exception):
    """Stop probing this episode (the failure is already recorded)."""


def _check_attributes(adapter: EnvAdapter, report: CheckReport) -> int:
    for name in ("spec", "agent", "expert"):
        value = getattr(adapter, name)
        if not isinstance(value, str) or not value:
            report.fail(name, f"must be a non-empty str, got {value!r}")
    names = adapter.feature_names
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        report.fail("feature_names", f"must be a list of str, got {type(names).__name__}")
        return -1
    if not names or len(set(names)) != len(names):
        report.fail("feature_names", f"must be non-empty and distinct, got {list(names)}")
    return len(names)


def _check_action(adapter: EnvAdapter, report: CheckReport, method: str, action: Any) -> None:
    if isinstance(action, bool) or not isinstance(action, int | np.integer):
        report.fail(method, f"must return an int, got {type(action).__name__} {action!r}")
        return
    n = getattr(adapter, "n_actions", None)
    if isinstance(n, int) and not 0 <= int(action) < n:
        report.fail(method, f"returned {action}, outside range(n_actions={n})")


def _probe(adapter: EnvAdapter, seed: int, n_feat: int, report: CheckReport) -> _Trace:
    """One episode, weak and expert actions mixed by ``rng``, every return value checked."""
    trace = _Trace()
    rng = np.random.default_rng(seed)
    _call(report, "reset()", adapter.reset, seed, seed + 1)
    horizon = adapter.horizon
    if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or horizon < 1:
        report.fail("reset()", f"horizon must be a positive int after reset, got {horizon!r}")
        raise _Abort
    for t in range(int(horizon) + 1):
        key = _call(report, "state_key()", adapter.state_key)
        if isinstance(key, bool) or not isinstance(key, int | np.integer):
            report.fail("state_key()", f"must return an int, got {type(key).__name__} {key!r}")
        elif not _INT64[0] <= int(key) < _INT64[1]:
            report.fail("state_key()", f"returned {key}, outside the int64 range")
        feats = _call(report, "features()", adapter.features)
        arr = np.asarray(feats)
        if not isinstance(feats, np.ndarray) or arr.shape != (n_feat,):
            report.fail(
                "features()",
                f"must return an array of shape ({n_feat},) (one per feature_names"
                f" entry), got {type(feats).__name__} of shape {arr.shape}",
            )
        elif arr.dtype.kind not in "fiub":
            report.fail("features()", f"must be real numbers, got dtype {arr.dtype}")
        elif not np.all(np.isfinite(arr)):
            bad = [n for n, v in zip(adapter.feature_names, arr, strict=True) if not np.isfinite(v)]
            report.fail("features()", f"non-finite value(s) at step {t} in {bad}")
        text = _call(report, "text()", adapter.text)
        if not isinstance(text, str) or not text:
            report.fail("text()", f"must return a non-empty str, got {text!r}")
        expert = rng.random() < 0.5
        method = "expert_action()" if expert else "weak_action()"
        action = _call(
            report,
            method,
            adapter.expert_action if expert else adapter.weak_action,
            *(() if expert else (rng,)),
        )
        _check_action(adapter, report, method, action)
        res = _call(report, "step()", adapter.step, action)
        trace.keys.append(int(key))
        trace.features.append(np.asarray(feats, np.float32).tobytes())
        trace.actions.append(int(action))
        if not isinstance(res, StepResult):
            report.fail("step()", f"must return a StepResult, got {type(res).__name__}")
            raise _Abort
        if res.success and not res.terminated:
            report.fail("step()", f"success=True without terminated=True at step {t}")
        if res.terminated or res.truncated:
            trace.outcome = (bool(res.terminated), bool(res.success))
            return trace
    report.fail(
        "step()",
        f"episode of seed {seed} ran {horizon + 1} steps past horizon={horizon}"
        " without truncated=True",
    )
    raise _Abort


def _key_traces(spec: str, seeds: int) -> list[list[int]]:
    """State keys of the probe episodes of seeds 0..seeds-1 (run in a fresh process)."""
    adapter = make_env(spec)
    n = len(adapter.feature_names)
    return [_probe(adapter, s, n, CheckReport(spec)).keys for s in range(seeds)]


@contextlib.contextmanager
def _other_hash_seed() -> Iterator[None]:
    """Spawn children with a string-hash seed that differs from this process's, if it is set."""
    old = os.environ.get("PYTHONHASHSEED")
    if old not in (None, "random"):
        os.environ["PYTHONHASHSEED"] = str((int(old) + 1) % 4_294_967_296)
    try:
        yield
    finally:
        if old is not None:
            os.environ["PYTHONHASHSEED"] = old


def _check_exact(adapter: EnvAdapter, seen: set[int], report: CheckReport) -> None:
    arr = _call(report, "exact_arrays()", adapter.exact_arrays)  # type: ignore[attr-defined]
    name = "exact_arrays()"
    if not isinstance(arr, ExactArrays):
        report.fail(name, f"must return an ExactArrays, got {type(arr).__name__}")
        return
    s_n, a_n = len(arr.state_keys), arr.trans.shape[0]
    shapes = {
        "trans": (a_n, s_n, s_n),
        "succ": (a_n, s_n),
        "fail": (a_n, s_n),
        "weak_policy": (s_n, a_n),
        "expert_policy": (s_n, a_n),
        "start": (s_n,),
    }
    for field_name, shape in shapes.items():
        if np.shape(getattr(arr, field_name)) != shape:
            got = np.shape(getattr(arr, field_name))
            report.fail(name, f"{field_name} has shape {got}, expected {shape} (A={a_n}, S={s_n})")
            return
    total = arr.trans.sum(axis=2) + arr.succ + arr.fail
    checks = [
        (np.all(np.diff(arr.state_keys) > 0), "state_keys must be strictly ascending"),
        (min(arr.trans.min(), arr.succ.min(), arr.fail.min()) >= 0, "negative probabilities"),
        (np.allclose(total, 1.0, atol=1e-6), "trans + succ + fail rows must sum to 1"),
        (np.allclose(arr.weak_policy.sum(1), 1.0, atol=1e-6), "weak_policy rows must sum to 1"),
        (np.allclose(arr.expert_policy.sum(1), 1.0, atol=1e-6), "expert_policy rows: sum 1"),
        (abs(arr.start.sum() - 1.0) < 1e-6, "start must sum to 1"),
    ]
    for ok, message in checks:
        if not ok:
            report.fail(name, message)
            return
    missing = seen - set(int(k) for k in arr.state_keys)
    if missing:
        report.fail(
            name,
            f"{len(missing)} state key(s) seen in episodes are not in state_keys, "
            f"e.g. {sorted(missing)[:3]}",
        )


def _compare_agents(adapter: EnvAdapter, cfg: CheckEnvConfig, report: CheckReport) -> None:
    rates = []
    for p in (0.0, 1.0):
        wins = 0
        for i in range(cfg.episodes):
            rng, dyn = episode_rng(0, 1_000 + i, 0)
            wins += run_episode(adapter, 1_000 + i, p, rng=rng, dynamics_seed=dyn).success
        rates.append(wins / cfg.episodes)
    report.weak_success, report.expert_success = rates
    if rates[1] <= rates[0]:
        report.fail(
            "expert_action()",
            f"the expert succeeds {rates[1]:.3f}, the weak agent "
            f"{rates[0]:.3f} over {cfg.episodes} episodes each: an intervention cannot "
            "help",
        )
    else:
        report.passed.append(
            f"expert better than weak: {rates[1]:.3f} vs {rates[0]:.3f} ({cfg.episodes} episodes)"
        )


def check(cfg: CheckEnvConfig) -> CheckReport:
    """Run every check on ``cfg.spec``; building the adapter may raise :class:`EnvSpecError`."""
    adapter = make_env(cfg.spec)
    report = CheckReport(adapter.spec)
    n_feat = _check_attributes(adapter, report)
    traces: list[_Trace] = []
    for seed in range(cfg.seeds):
        try:
            traces.append(_probe(adapter, seed, n_feat, report))
        except _Abort:
            break
    if report.problems:
        return report
    report.passed.append(f"protocol: {cfg.seeds} episodes, every return value well-formed")
    try:
        again = [_probe(adapter, s, n_feat, report) for s in range(cfg.seeds)]
        rebuilt = make_env(cfg.spec)
        fresh = [_probe(rebuilt, s, n_feat, report) for s in range(cfg.seeds)]
    except _Abort:
        return report
    for label, other in (("the same adapter", again), ("a freshly built adapter", fresh)):
        for seed, (a, b) in enumerate(zip(traces, other, strict=True)):
            for part, method in (
                ("keys", "state_key()"),
                ("features", "features()"),
                ("actions", "weak_action()"),
                ("outcome", "step()"),
            ):
                if getattr(a, part) != getattr(b, part):
                    report.fail(
                        method,
                        f"same seed {seed}, different {part} in {label}: "
                        "the episode must depend only on reset(seed) and rng",
                    )
    if cfg.fresh_process and not report.problems:
        with _other_hash_seed():
            ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
                keys = pool.submit(_key_traces, adapter.spec, cfg.seeds).result()
        if keys != [t.keys for t in traces]:
            report.fail(
                "state_key()",
                "keys differ in a fresh process: use a stable hash "
                "(training.envs.stable_key), not Python's hash()",
            )
    if not report.problems:
        report.passed.append(
            "same seed -> same episode (same adapter, fresh adapter"
            + (", fresh process)" if cfg.fresh_process else ")")
        )
    if callable(getattr(adapter, "exact_arrays", None)):
        with contextlib.suppress(_Abort):
            _check_exact(adapter, {k for t in traces for k in t.keys}, report)
        if "exact_arrays()" not in report.problems:
            report.passed.append("exact_arrays(): a consistent exact model")
    _compare_agents(adapter, cfg, report)
    return report


def main(cfg: CheckEnvConfig, log: Callable[[str], None] = print) -> CheckReport:
    """Check ``cfg.spec`` and print the result; raises :class:`EnvCheckError` on any failure."""
    report = check(cfg)
    for line in report.passed:
        log(f"ok    {line}")
    for line in report.problems.values():
        log(f"FAIL  {line}")
    if report.problems:
        raise EnvCheckError(
            f"env spec {report.spec!r}: {len(report.problems)} check(s) failed:\n  "
            + "\n  ".join(report.problems.values())
        )
    log(f"{report.spec}: all checks passed")
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``helpseek check-env``."""
    d = CheckEnvConfig.__dataclass_fields__
    parser.add_argument("spec", help="env spec: preset, gymnasium id or FILE.py:FACTORY[:k=v,...]")
    parser.add_argument(
        "--seeds",
        type=int,
        default=d["seeds"].default,
        help="task seeds probed step by step (0..N-1)",
    )
    parser.add_argument(
        "--episodes",
        type=int,
        default=d["episodes"].default,
        help="episodes per agent for the expert-vs-weak comparison",
    )
    parser.add_argument(
        "--no-fresh-process",
        action="store_true",
        help="skip comparing state keys with a freshly spawned process",
    )


def from_args(ns: argparse.Namespace) -> CheckEnvConfig:
    """Build the config from parsed ``helpseek check-env`` arguments."""
    return CheckEnvConfig(
        spec=ns.spec, seeds=ns.seeds, episodes=ns.episodes, fresh_process=not ns.no_fresh_process
    )
