"""``--env`` specs -> an :class:`~training.envs.base.EnvAdapter` (built in or your own).

Built-in: ``ID[:key=value,...]``. ``ID`` is any gymnasium toy_text id (``FrozenLake-v1``,
``Taxi-v4``, ``CliffWalking-v1``, any env with a discrete model ``env.P``), any minigrid
BabyAI level id (``BabyAI-GoToLocal-v0``), or a preset name from :data:`PRESETS`
(``frozenlake``, ``taxi``, ``cliffwalking``, ``gotolocal``, ``pickuploc``, ``putnextlocal``,
``synth``, ``bosslevel``). Keys the adapter understands are taken out; all others go to
``gymnasium.make`` as keyword arguments::

    weak=NAME     weak agent (toy_text: eps | wallblind | noslip; BabyAI: explore | eps | llm)
    eps=FLOAT     uniform action noise of the weak agent
    H=INT         step limit (toy_text; BabyAI sets it per seed, see ``limit``)
    limit=FLOAT   BabyAI: step limit = limit x the bot's own episode length + 2 (default 2)
    key=NAME      BabyAI state key: grid (default) | history
    temp=FLOAT    BabyAI ``weak=llm`` (SmolLM2 picks actions, training/envs/llm_agent.py):
                  sampling temperature (default 1; 0 = argmax)
    import=MOD    import a module (dotted name or FILE.py) first, e.g. one that registers
                  its own gymnasium ids (gymnasium's ``module:EnvId`` is ``EnvId:import=module``)
    desc=R/R/..   a custom toy_text map, rows separated by ``/`` (``desc=SFFF/FHFH/FFFH/HFFG``)

Plug-in (your own adapter, :mod:`training.envs.plugin`)::

    FILE.py[:FACTORY][:key=value,...]   FACTORY (default make_adapter) in a file, by path
    MODULE:FACTORY[:key=value,...]      FACTORY in an importable module

Values are parsed as bool (true/false), int, float, else kept as strings; ``,`` and ``:``
cannot appear inside a value. The adapter's ``spec`` is the canonical form (sorted options,
plug-in paths made absolute), which rebuilds the same adapter from any folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.envs.base import EnvAdapter, EnvSpecError, UnsupportedEnvError
from training.envs.plugin import DEFAULT_FACTORY, build_plugin, import_source, is_module_name

__all__ = ["PRESETS", "SUPPORTED", "make_env", "parse_spec", "spec_files"]

PRESETS: dict[str, str] = {
    "frozenlake": "FrozenLake-v1:map_name=8x8,success_rate=0.8,H=200,weak=eps,eps=0.2",
    "taxi": "Taxi-v4:weak=wallblind,H=25",
    "cliffwalking": "CliffWalking-v1:is_slippery=true,H=100,weak=eps,eps=0.2",
    "gotolocal": "BabyAI-GoToLocal-v0:eps=0.5",
    "pickuploc": "BabyAI-PickupLoc-v0",
    "putnextlocal": "BabyAI-PutNextLocal-v0",
    "synth": "BabyAI-Synth-v0",
    "bosslevel": "BabyAI-BossLevel-v0",
}
_ADAPTER_KEYS = {"weak", "eps", "H", "limit", "key", "temp", "import"}
SUPPORTED = (
    "built in: gymnasium toy_text ids (any env with a discrete model env.P), BabyAI-* levels, "
    f"presets {', '.join(PRESETS)}; for any other environment plug in your own adapter with "
    "--env FILE.py:FACTORY[:key=value,...] (docs/your-agent.md; examples/doorkey_adapter.py)"
)


def _value(text: str) -> Any:
    """Parse a value: true/false, int, float (numerals only: ``nan``, ``inf`` stay str), str."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text) if any(c.isdigit() for c in text) else text
        except ValueError:
            pass
    return text


def _options(spec: str, text: str) -> dict[str, Any]:
    """Parse ``key=value,...`` (``desc`` becomes a list of map rows)."""
    out: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, eq, val = item.partition("=")
        if not eq or not key.strip():
            raise EnvSpecError(f"env spec {spec!r}: expected key=value, got {item!r}")
        key, val = key.strip(), val.strip()
        out[key] = val.split("/") if key == "desc" else _value(val)
    return out


def _plugin_parts(spec: str) -> tuple[str, str, str] | None:
    """(source, factory, options) of a plug-in spec, or None for a built-in spec."""
    head, _, rest = spec.partition(":")
    second, _, options = rest.partition(":")
    if head.endswith(".py"):
        if "=" in second:  # FILE.py:key=value,... with the default factory
            return head, DEFAULT_FACTORY, rest
        return head, second or DEFAULT_FACTORY, options
    if head.lower() in PRESETS or not is_module_name(head) or not second or "=" in second:
        return None
    return head, second, options


def _absolute(source: str) -> str:
    return str(Path(source).expanduser().absolute()) if source.endswith(".py") else source


def parse_spec(spec: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Split a built-in spec into (env id, gymnasium kwargs, adapter options); presets expanded."""
    spec = spec.strip()
    if not spec:
        raise EnvSpecError("env spec is empty")
    head, _, rest = spec.partition(":")
    if head.lower() in PRESETS:
        base_id, base_env, base_opts = parse_spec(PRESETS[head.lower()])
        _, over_env, over_opts = parse_spec(f"{base_id}:{rest}" if rest else base_id)
        return base_id, {**base_env, **over_env}, {**base_opts, **over_opts}
    env_kw: dict[str, Any] = {}
    opts: dict[str, Any] = {}
    for key, val in _options(spec, rest).items():
        (opts if key in _ADAPTER_KEYS else env_kw)[key] = val
    return head, env_kw, opts


def _render(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    return "/".join(map(str, v)) if isinstance(v, list) else str(v)


def _canonical(env_id: str, env_kw: dict[str, Any], opts: dict[str, Any]) -> str:
    items = {**env_kw, **opts}
    if not items:
        return env_id
    return f"{env_id}:{','.join(f'{k}={_render(v)}' for k, v in sorted(items.items()))}"


def spec_files(spec: str) -> list[str]:
    """Absolute paths of the ``.py`` files a spec imports (plug-in file, ``import=`` file)."""
    spec = spec.strip()
    parts = _plugin_parts(spec)
    opts = _options(spec, parts[2]) if parts else parse_spec(spec)[2]
    sources = [parts[0]] if parts else []
    sources += [str(opts["import"])] if "import" in opts else []
    return [_absolute(s) for s in sources if s.endswith(".py")]


def _import_first(opts: dict[str, Any], spec: str) -> None:
    if "import" in opts:
        opts["import"] = _absolute(str(opts["import"]))
        import_source(opts["import"], spec)


def make_env(spec: str) -> EnvAdapter:
    """Build the adapter for an ``--env`` spec (see the module docstring)."""
    spec = spec.strip()
    parts = _plugin_parts(spec)
    if parts is not None:
        source, factory, text = _absolute(parts[0]), parts[1], parts[2]
        kwargs = _options(spec, text)
        _import_first(kwargs, spec)
        canonical = _canonical(f"{source}:{factory}", {}, kwargs)
        kwargs.pop("import", None)
        return build_plugin(source, factory, kwargs, canonical)
    env_id, env_kw, opts = parse_spec(spec)
    _import_first(opts, spec)
    canonical = _canonical(env_id, env_kw, opts)
    opts.pop("import", None)
    if env_id.startswith("MiniGrid-"):
        _refuse_minigrid(env_id, spec)
    if env_id.startswith("BabyAI-"):
        from training.envs.babyai import BabyAIAdapter

        unknown = set(opts) - {"weak", "eps", "limit", "key", "temp"}
        if unknown:
            raise EnvSpecError(
                f"env spec {spec!r}: option(s) {sorted(unknown)} do not apply to BabyAI"
            )
        if opts.get("weak") == "llm":
            from training.envs.llm_agent import LLMBabyAIAdapter

            return LLMBabyAIAdapter(
                env_id,
                env_kw,
                temperature=float(opts.get("temp", 1.0)),
                eps=float(opts["eps"]) if "eps" in opts else None,
                limit=float(opts.get("limit", 2.0)),
                key=str(opts.get("key", "grid")),
                spec=canonical,
            )
        return BabyAIAdapter(
            env_id,
            env_kw,
            weak=str(opts.get("weak", "explore")),
            eps=float(opts["eps"]) if "eps" in opts else None,
            limit=float(opts.get("limit", 2.0)),
            key=str(opts.get("key", "grid")),
            spec=canonical,
        )
    from training.envs.toy_text import ToyTextAdapter

    unknown = set(opts) - {"weak", "eps", "H"}
    if unknown:
        raise EnvSpecError(
            f"env spec {spec!r}: option(s) {sorted(unknown)} do not apply to toy_text"
        )
    try:
        return ToyTextAdapter(
            env_id,
            env_kw,
            weak=str(opts.get("weak", "eps")),
            eps=float(opts["eps"]) if "eps" in opts else None,
            horizon=int(opts["H"]) if "H" in opts else None,
            spec=canonical,
        )
    except UnsupportedEnvError as exc:
        raise UnsupportedEnvError(f"{exc}; {SUPPORTED}") from exc


def _refuse_minigrid(env_id: str, spec: str) -> None:
    """MiniGrid ids other than BabyAI levels have no built-in expert: say so, point to plug-ins."""
    import gymnasium as gym
    import minigrid  # noqa: F401  (registers the MiniGrid-* ids)

    known = "is a minigrid env" if env_id in gym.registry else "is not a registered minigrid id"
    raise UnsupportedEnvError(
        f"env spec {spec!r}: {env_id} {known} without a built-in adapter (only BabyAI-* levels "
        f"have one: the BabyAI bot as expert); {SUPPORTED}"
    )
