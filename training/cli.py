"""The ``helpseek`` command line: one subcommand per training stage.

Each stage module exposes ``add_arguments(parser)``, ``from_args(namespace) -> config`` and
``main(config) -> Path``. Adding a stage is one line in :data:`SUBCOMMANDS`. Only the chosen
stage's module is imported, so ``helpseek collect`` does not pay for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from helpseek_core.errors import HelpSeekError

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

# name -> (module, one-line help)
# fmt: off
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "collect": ("training.collect", "Phase I: roll out with random interventions, write a step log"),
    "prm": ("training.prm", "Phase I: fit tabular and MLP process reward models, report calibration"),
    "train": ("training.pipeline", "Whole pipeline: collect (--env) or read a step log (--log), PRM, DP, helper, evaluate, export an artifact"),
    "evaluate": ("training.evaluate", "Evaluate an artifact live against every baseline"),
    "train-text": ("training.text_pipeline", "Text/LLM path: collect with texts, text PRM, DP, text helper, text artifact"),
    "export-log": ("training.export_log", "Turn the service's decision log into a step log (train/test splits) for train --log"),
    "train-typed": ("training.typed_train", "Several intervention types: collect, typed DP, one multi-class helper, evaluate at budget vectors, typed artifact"),
    "check-env": ("training.check_env", "Check an --env adapter (built-in or plug-in) against the protocol"),
}
# fmt: on


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """Build the top-level parser; only ``selected``'s module is imported for its arguments."""
    parser = argparse.ArgumentParser(prog="helpseek", description="HelpSeek training pipeline")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == selected:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``helpseek`` script; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    selected = next((a for a in args if not a.startswith("-")), None)
    ns = build_parser(selected if selected in SUBCOMMANDS else None).parse_args(args)
    module = importlib.import_module(SUBCOMMANDS[ns.command][0])
    try:
        module.main(module.from_args(ns))
    # the named training errors (EnvSpecError, StepLogError, ...) are ValueErrors; core's
    # errors (a refused artifact, a solver that cannot meet a budget) are HelpSeekErrors
    except (HelpSeekError, ValueError, OSError) as exc:
        print(f"helpseek {ns.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0
