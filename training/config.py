"""Stage configuration: one frozen dataclass per stage, and the command line derived from it.

Every field is documented where it is declared; ``to_dict`` gives the JSON written into the
collection manifest / PRM report, so a run can always be reproduced from its output.

Every option is defined once (docs/design.md): :func:`add_dataclass_arguments` turns a stage
dataclass into argparse options — field ``n_min`` -> ``--n-min``, its default -> the default
shown in ``--help``, the string under the field (or ``metadata["help"]``) -> the help text,
``bool`` -> ``--x/--no-x``, ``Literal`` -> choices, ``tuple[int, ...]`` -> ``1,2,3`` (seed
fields also take ranges, ``0-99``), a nested stage dataclass -> its fields under the field's
name (``helper.epochs`` -> ``--helper-epochs``) — and :func:`from_namespace` builds the
config back, applying only the options given (unset ones keep the base config's values).
"""

from __future__ import annotations

import argparse
import ast
import inspect
import textwrap
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "DEFAULT_P_GRID",
    "CollectConfig",
    "PRMConfig",
    "add_dataclass_arguments",
    "field_docs",
    "from_namespace",
    "parse_seeds",
]

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
    """Environment spec for ``make_env``: a preset, toy_text id, BabyAI level id or a plug-in
    ``FILE.py[:FACTORY][:key=value,...]`` / ``MODULE:FACTORY[:...]`` (docs/your-agent.md)."""
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
    """``process`` (a local process pool) or ``ray`` (a local Ray, or an existing cluster)."""
    ray_address: str | None = None
    """Existing Ray cluster to collect on (``HOST:PORT``, ``ray://HOST:10001``) with backend ray;
    unset: the RAY_ADDRESS environment variable, else a local Ray started for the run."""
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
    test_fraction: float = 0.2
    """Episodes held out for calibration when the log has no test split."""
    split_seed: int = 0
    """Seed of that episode split."""
    exact: bool = True
    """Compare with the exact model where the log's env spec builds one (toy_text)."""
    progress: bool = True
    """Show a tqdm bar over epochs."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes saved with the report."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the resolved config."""
        d = asdict(self)
        d["log"], d["out"] = str(self.log), str(self.out)
        return d


# ---- the command line, derived from the dataclasses -------------------------------------------


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Field name -> the docstring written under it in ``cls``'s body (base classes too)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for stmt, nxt in zip(body, body[1:], strict=False):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[stmt.target.id] = " ".join(nxt.value.value.split())
    return docs


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else tp), True
    return tp, False


def _comma(item: Callable[[str], Any]) -> Callable[[str], tuple[Any, ...]]:
    def parse(text: str) -> tuple[Any, ...]:
        return tuple(item(p.strip()) for p in text.split(",") if p.strip())

    return parse


def _value_parser(name: str, tp: Any) -> tuple[Callable[[str], Any] | None, dict[str, Any]]:
    """(argparse ``type``, extra argparse keywords) for a field type; (None, {}) = unsupported."""
    origin = typing.get_origin(tp)
    if tp is bool:
        return None, {"action": argparse.BooleanOptionalAction}
    if origin is Literal:
        choices = typing.get_args(tp)
        return type(choices[0]), {"choices": choices}
    if origin is tuple:
        item = typing.get_args(tp)[0]
        if name.endswith("seeds") and item is int:
            return parse_seeds, {"metavar": "SEEDS"}
        if item in (int, float, str):
            return _comma(item), {"metavar": f"{item.__name__.upper()},..."}
        return None, {}
    if tp in (int, float, str, Path):
        return tp, {}
    return None, {}


def add_dataclass_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    prefix: str = "",
    skip: tuple[str, ...] = (),
    aliases: Mapping[str, str] | None = None,
    defaults: Any = None,
) -> None:
    """Add one option per field of the dataclass ``cls`` (nested stage dataclasses recursed).

    Options are stored under the field's dotted path (``helper.epochs``) and default to
    "not given" so :func:`from_namespace` can keep a base config's value. ``skip`` names dotted
    paths to leave out; ``aliases`` maps a dotted path to its flag where the derived one is not
    wanted (``{"model.n_min": "--n-min"}``); ``defaults`` is the base config whose values the
    help text shows (default: the dataclass defaults).
    """
    aliases = aliases or {}
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for f in fields(cls):
        path = prefix + f.name
        if path in skip or not f.init:
            continue
        tp, optional = _strip_optional(hints[f.name])
        default = (
            getattr(defaults, f.name)
            if defaults is not None
            else (
                f.default
                if f.default is not MISSING
                else (f.default_factory() if f.default_factory is not MISSING else MISSING)
            )
        )
        if is_dataclass(tp):
            inner = default if is_dataclass(default) else None
            add_dataclass_arguments(
                parser,
                tp,  # type: ignore[arg-type]
                prefix=path + ".",
                skip=skip,
                aliases=aliases,
                defaults=inner,
            )
            continue
        parse, extra = _value_parser(f.name, tp)
        if parse is None and not extra:
            continue  # dicts and other free-form fields are not options
        help_text = f.metadata.get("help") or docs.get(f.name, "")
        if default is MISSING and not optional:
            extra["required"] = defaults is None
        else:
            help_text += f" (default: {_show(default)})"
        flag = aliases.get(path, "--" + path.replace(".", "-").replace("_", "-"))
        kw: dict[str, Any] = {
            "dest": path,
            "default": argparse.SUPPRESS,
            "help": help_text.replace("%", "%%"),
            **extra,
        }
        if parse is not None:
            kw["type"] = parse
            kw.setdefault("metavar", f.name.upper())
        parser.add_argument(flag, **kw)


def _show(default: Any) -> str:
    """Show a default as the flag takes it: ``0-99`` for consecutive ints, else ``a,b``."""
    if not isinstance(default, tuple):
        return str(default)
    ints = len(default) > 2 and all(isinstance(x, int) for x in default)
    if ints and list(default) == list(range(default[0], default[0] + len(default))):
        return f"{default[0]}-{default[-1]}"
    return ",".join(map(str, default))


def from_namespace(cls: type, ns: argparse.Namespace | Mapping[str, Any], base: Any = None) -> Any:
    """Build ``cls`` from parsed options: ``base`` (or the defaults) with the given ones applied."""
    given = dict(vars(ns) if isinstance(ns, argparse.Namespace) else ns)
    return _apply(cls, base, given, "")


def _apply(cls: type, base: Any, given: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    kw: dict[str, Any] = {}
    for f in fields(cls):
        path = prefix + f.name
        tp, _ = _strip_optional(hints[f.name])
        if is_dataclass(tp) and any(k.startswith(path + ".") for k in given):
            inner = (
                getattr(base, f.name)
                if base is not None
                else (
                    f.default
                    if f.default is not MISSING
                    else (f.default_factory() if f.default_factory is not MISSING else None)
                )
            )
            kw[f.name] = _apply(tp, inner, given, path + ".")  # type: ignore[arg-type]
        elif path in given:
            kw[f.name] = given[path]
    return replace(base, **kw) if base is not None else cls(**kw)
