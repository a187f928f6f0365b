"""Write an output folder all at once: build it beside the target, rename it into place.

A stage that fails half-way (bad input, a crash, Ctrl-C) leaves nothing behind: the folder is
built as ``.<name>.partial-<pid>`` next to ``out`` and renamed to ``out`` only when the stage
returns. An earlier run's folder at ``out`` is replaced then; any other non-empty folder there
is refused before anything is written (it is not ours to delete).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["OutputExistsError", "staged_output"]


class OutputExistsError(ValueError):
    """``out`` is a non-empty folder that no HelpSeek stage wrote."""


@contextmanager
def staged_output(out: Path, *, marker: str) -> Iterator[Path]:
    """Yield a fresh staging folder; on success it becomes ``out``, on failure it is removed.

    ``marker`` is a file every output of this stage contains (``config.json``,
    ``manifest.json``): a non-empty ``out`` without it is refused with OutputExistsError.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / marker).exists())):
        raise OutputExistsError(
            f"{out}: exists and is not an earlier output (no {marker}); choose a fresh --out"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        os.replace(out, old)
    os.replace(stage, out)
    shutil.rmtree(old, ignore_errors=True)
