"""``--env`` specs: ``ID[:key=value,...]`` -> an :class:`~training.envs.base.EnvAdapter`.

``ID`` is any gymnasium toy_text id (``FrozenLake-v1``, ``Taxi-v4``, ``CliffWalking-v1``, ...)
or any minigrid BabyAI level id (``BabyAI-GoToLocal-v0``), or a preset name from
:data:`PRESETS` (``frozenlake``, ``taxi``, ``cliffwalking``, ``gotolocal``, ``pickuploc``,
``putnextlocal``, ``synth``, ``bosslevel``). Keys the adapter understands are taken out;
all others go to ``gymnasium.make`` as keyword arguments::

    weak=NAME     weak agent (toy_text: eps | wallblind | noslip; BabyAI: explore | eps)
    eps=FLOAT     uniform action noise of the weak agent
    H=INT         step limit (toy_text; BabyAI sets it per seed, see ``limit``)
    limit=FLOAT   BabyAI: step limit = limit x the bot's own episode length + 2 (default 2)
    key=NAME      BabyAI state key: grid (default) | history
    temp=FLOAT    BabyAI ``weak=llm`` (SmolLM2 picks actions, training/envs/llm_agent.py):
                  sampling temperature (default 1; 0 = argmax)

Values are parsed as bool (true/false), int, float, else kept as strings.
"""

from __future__ import annotations

from typing import Any

from training.envs.base import EnvAdapter, EnvSpecError

__all__ = ["PRESETS", "make_env", "parse_spec"]

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
_ADAPTER_KEYS = {"weak", "eps", "H", "limit", "key", "temp"}


def _value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_spec(spec: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Split a spec into (env id, gymnasium kwargs, adapter options); presets expanded."""
    spec = spec.strip()
    if not spec:
        raise EnvSpecError("env spec is empty")
    head, _, rest = spec.partition(":")
    if head.lower() in PRESETS:
        base_id, base_env, base_opts = parse_spec(PRESETS[head.lower()])
        _, env_kw, opts = parse_spec(f"{base_id}:{rest}" if rest else base_id)
        return base_id, {**base_env, **env_kw}, {**base_opts, **opts}
    env_kw: dict[str, Any] = {}
    opts: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, val = item.partition("=")
        if not eq or not key.strip():
            raise EnvSpecError(f"env spec {spec!r}: expected key=value, got {item!r}")
        key = key.strip()
        (opts if key in _ADAPTER_KEYS else env_kw)[key] = _value(val.strip())
    return head, env_kw, opts


def _canonical(env_id: str, env_kw: dict[str, Any], opts: dict[str, Any]) -> str:
    items = {**env_kw, **opts}
    if not items:
        return env_id
    body = ",".join(
        f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in sorted(items.items())
    )
    return f"{env_id}:{body}"


def make_env(spec: str) -> EnvAdapter:
    """Build the adapter for an ``--env`` spec (see the module docstring)."""
    env_id, env_kw, opts = parse_spec(spec)
    canonical = _canonical(env_id, env_kw, opts)
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
                env_id, env_kw, temperature=float(opts.get("temp", 1.0)),
                eps=float(opts["eps"]) if "eps" in opts else None,
                limit=float(opts.get("limit", 2.0)), key=str(opts.get("key", "grid")),
                spec=canonical,
            )  # fmt: skip
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
    return ToyTextAdapter(
        env_id,
        env_kw,
        weak=str(opts.get("weak", "eps")),
        eps=float(opts["eps"]) if "eps" in opts else None,
        horizon=int(opts["H"]) if "H" in opts else None,
        spec=canonical,
    )
