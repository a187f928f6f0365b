"""Exceptions raised by helpseek_text (the text/LLM scoring path).

Every error is a :class:`~helpseek_core.errors.HelpSeekError`, so callers that already map
core errors keep working; a bad saved model is also an ``ArtifactSchemaError``.

    HelpSeekError
    └── TextModelError
        ├── ModelNotInstalledError      a base-model package or file is absent (names the package)
        ├── BackendUnavailableError     the backend cannot run here (vLLM without CUDA, ...)
        ├── TextModelFormatError        saved text model unreadable (also ArtifactSchemaError)
        ├── TextInputError              bad texts / budgets / labels (also InputError)
        └── BatcherError                the micro-batcher is closed or a batch misbehaved
"""

from __future__ import annotations

from helpseek_core.errors import ArtifactSchemaError, HelpSeekError, InputError

__all__ = [
    "BackendUnavailableError",
    "BatcherError",
    "ModelNotInstalledError",
    "TextInputError",
    "TextModelError",
    "TextModelFormatError",
]


class TextModelError(HelpSeekError):
    """Root of the errors of the text scoring path."""


class ModelNotInstalledError(TextModelError):
    """A base model's PyPI package or model file is missing; the message names what to install."""


class BackendUnavailableError(TextModelError):
    """The selected backend cannot run on this machine (e.g. vLLM without a CUDA GPU)."""


class TextModelFormatError(TextModelError, ArtifactSchemaError):
    """A saved text model is missing files, has a bad config, or does not fit the backend."""


class TextInputError(TextModelError, InputError):
    """Bad input to a scorer or trainer: empty texts, mismatched lengths, negative budgets."""


class BatcherError(TextModelError):
    """The micro-batcher was closed, or the batch function returned the wrong number of rows."""
