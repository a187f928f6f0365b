"""Exceptions raised by helpseek_core.

Every error the core raises is a :class:`HelpSeekError`; callers map them to their own
edge (HTTP 422, CLI exit code) in one place. Messages always say *what* is wrong and *where*.

    HelpSeekError
    ├── InputError (ValueError)            bad input to a core function
    │   ├── ShapeError                     arrays of the wrong shape / length
    │   ├── ProbabilityError               NaN, negative, or rows not summing to 1
    │   ├── BudgetError                    negative or non-integer budgets / costs
    │   └── UnknownStateError              a state id or key the model does not know
    ├── SolverError                        a solver could not meet its contract
    └── ArtifactError                      an artifact directory cannot be used
        ├── ArtifactMissingError           a file or directory is absent
        ├── ArtifactIntegrityError         a file's sha256 differs from the manifest
        └── ArtifactSchemaError            wrong schema version, feature schema or content
"""

from __future__ import annotations

__all__ = [
    "ArtifactError",
    "ArtifactIntegrityError",
    "ArtifactMissingError",
    "ArtifactSchemaError",
    "BudgetError",
    "HelpSeekError",
    "InputError",
    "ProbabilityError",
    "ShapeError",
    "SolverError",
    "UnknownStateError",
]


class HelpSeekError(Exception):
    """Root of every error raised by helpseek_core."""


class InputError(HelpSeekError, ValueError):
    """Bad input to a core function; the message names the argument and the reason."""


class ShapeError(InputError):
    """An array has the wrong shape, length or dtype."""


class ProbabilityError(InputError):
    """Probabilities are NaN, out of [0, 1], or rows do not sum to 1."""


class BudgetError(InputError):
    """A budget, cost or horizon is negative or not an integer."""


class UnknownStateError(InputError, KeyError):
    """A state id or key is not part of the model."""

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return str(self.args[0]) if self.args else ""


class SolverError(HelpSeekError):
    """A solver could not meet its contract (e.g. no penalty meets the budget)."""


class ArtifactError(HelpSeekError):
    """An artifact directory cannot be used; the message names the file and the reason."""


class ArtifactMissingError(ArtifactError):
    """The artifact directory or one of its files does not exist."""


class ArtifactIntegrityError(ArtifactError):
    """A file's sha256 does not match the manifest (tampered or truncated)."""


class ArtifactSchemaError(ArtifactError):
    """The manifest has the wrong schema version, feature schema or content."""
