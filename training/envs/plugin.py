"""Plug-in adapters: an ``--env`` spec that names your own adapter factory.

Two forms (docs/your-agent.md)::

    FILE.py[:FACTORY][:key=value,...]   a Python file given by path (absolute or relative to
                                        the current folder); FACTORY defaults to make_adapter
    MODULE:FACTORY[:key=value,...]      an importable module (dotted name, e.g. my_pkg.agents)

``FACTORY(**options)`` is called with the options as keyword arguments (values parsed as bool,
int, float, else string) and must return an object satisfying
:class:`training.envs.base.EnvAdapter`; ``helpseek check-env SPEC`` checks it further.

A file is imported under a module name derived from its absolute path (so two files called
``agents.py`` do not clash), its folder is appended to ``sys.path`` (so it can import its
sibling modules), and it is imported once per process. Worker processes re-import it from
the same path; a Ray worker on another machine gets the file's content shipped with the task
(:func:`plugin_sources` on the driver, :func:`install_sources` on the worker), so the file
need not exist there.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from training.envs.base import EnvAdapter, EnvSpecError

__all__ = [
    "DEFAULT_FACTORY",
    "adapter_problems",
    "build_plugin",
    "import_source",
    "install_sources",
    "is_module_name",
    "plugin_sources",
]

DEFAULT_FACTORY = "make_adapter"
# canonical path of a plug-in file -> a local copy of the content the driver shipped
_SHIPPED: dict[str, Path] = {}
_MEMBERS = (
    "spec",
    "feature_names",
    "horizon",
    "agent",
    "expert",
    "reset",
    "state_key",
    "features",
    "text",
    "weak_action",
    "expert_action",
    "step",
)
_METHODS = _MEMBERS[5:]


def is_module_name(text: str) -> bool:
    """Tell a dotted Python module name (``my_agents``, ``pkg.sub``) from an env id."""
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def _module_name(path: Path) -> str:
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    stem = "".join(c if c.isalnum() else "_" for c in path.stem)
    return f"helpseek_plugin_{stem}_{digest}"


def import_source(source: str, spec: str) -> ModuleType:
    """Import a plug-in: ``source`` is a ``.py`` path or a dotted module name.

    A file is looked up by its absolute path (or the copy a Ray driver shipped for that
    path). Every failure is an :class:`EnvSpecError` naming ``spec`` and the reason.
    """
    if not source.endswith(".py"):
        try:
            return importlib.import_module(source)
        except Exception as exc:
            raise EnvSpecError(
                f"env spec {spec!r}: cannot import module {source!r}: {type(exc).__name__}: {exc}"
            ) from exc
    path = Path(source).expanduser().absolute()
    name = _module_name(path)
    if name in sys.modules:
        return sys.modules[name]
    local = _SHIPPED.get(str(path), path)
    if not local.is_file():
        raise EnvSpecError(f"env spec {spec!r}: plug-in file {path} not found")
    mod_spec = importlib.util.spec_from_file_location(name, local)
    if mod_spec is None or mod_spec.loader is None:  # pragma: no cover - .py files always load
        raise EnvSpecError(f"env spec {spec!r}: {path} cannot be imported")
    module = importlib.util.module_from_spec(mod_spec)
    sys.modules[name] = module  # before exec: dataclasses and pickling look the module up
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.append(folder)
    try:
        mod_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise EnvSpecError(
            f"env spec {spec!r}: importing {path} failed: {type(exc).__name__}: {exc}"
        ) from exc
    return module


def adapter_problems(obj: object) -> list[str]:
    """Members of :class:`EnvAdapter` that ``obj`` lacks (methods must also be callable)."""
    missing = [m for m in _MEMBERS if not hasattr(obj, m)]
    missing += [m for m in _METHODS if hasattr(obj, m) and not callable(getattr(obj, m))]
    return missing


def build_plugin(source: str, factory: str, kwargs: dict[str, Any], spec: str) -> EnvAdapter:
    """Import ``source``, call ``factory(**kwargs)``, check the result, set its ``spec``.

    ``spec`` is the canonical spec (absolute path, sorted options): it is written into the
    adapter so logs and artifacts record a spec that rebuilds it from any folder.
    """
    module = import_source(source, spec)
    fn = getattr(module, factory, None)
    if fn is None:
        public = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise EnvSpecError(
            f"env spec {spec!r}: {source} has no factory {factory!r} "
            f"(callables defined there: {', '.join(public) or 'none'})"
        )
    if not callable(fn):
        raise EnvSpecError(f"env spec {spec!r}: {source}:{factory} is not callable")
    try:
        adapter = fn(**kwargs)
    except Exception as exc:
        args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise EnvSpecError(
            f"env spec {spec!r}: {factory}({args}) raised {type(exc).__name__}: {exc}"
        ) from exc
    try:
        adapter.spec = spec
    except Exception as exc:  # a slotted or frozen object without a writable spec
        raise EnvSpecError(
            f"env spec {spec!r}: {factory} returned {type(adapter).__name__}, whose 'spec' "
            f"attribute cannot be set ({type(exc).__name__}: {exc})"
        ) from exc
    missing = adapter_problems(adapter)
    if missing:
        raise EnvSpecError(
            f"env spec {spec!r}: {factory} returned {type(adapter).__name__}, not an EnvAdapter "
            f"(missing or not callable: {', '.join(missing)}; see training/envs/base.py)"
        )
    return adapter


def plugin_sources(paths: list[str]) -> dict[str, bytes]:
    """Content of the plug-in files a spec loads, keyed by absolute path (to ship to workers)."""
    return {p: Path(_SHIPPED.get(p, p)).read_bytes() for p in paths}


def install_sources(sources: dict[str, bytes]) -> None:
    """Worker side: make ``sources`` importable under their driver paths.

    A path whose file here has the same bytes is used as it is; otherwise the shipped bytes
    are written to a private temporary folder and imported from there under the driver's
    path (so the worker runs exactly the driver's code).
    """
    for path, content in sources.items():
        here = Path(path)
        if here.is_file() and here.read_bytes() == content:
            continue
        digest = hashlib.sha256(content).hexdigest()[:16]
        folder = Path(tempfile.gettempdir()) / "helpseek-plugins" / digest
        folder.mkdir(parents=True, exist_ok=True)
        local = folder / here.name
        if not local.is_file() or local.read_bytes() != content:
            tmp = folder / f".{here.name}.{id(content)}.tmp"
            tmp.write_bytes(content)
            tmp.replace(local)
        _SHIPPED[path] = local
