"""User-facing error types.

Every error a user can cause with bad input (a wrong shape, an unknown operator, a missing
dataset path, a bad suite file) is an :class:`UpbenchError`. The CLI prints its message on one
line and exits with code 2; library callers can catch the specific subclass.
"""

from __future__ import annotations


class UpbenchError(Exception):
    """Base class of all errors caused by bad user input."""


class UnknownOperatorError(UpbenchError, KeyError):
    """An operator name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class InvalidOptionError(UpbenchError, TypeError):
    """An option that an operator (or another component) does not accept."""


class InputShapeError(UpbenchError, ValueError):
    """A tensor given to an operator or model has the wrong rank, size, channels or dtype."""


class ConfigError(UpbenchError, ValueError):
    """A suite file or a ``--set`` override that does not validate."""


class DatasetError(UpbenchError, FileNotFoundError):
    """A dataset path that is missing or does not have the expected layout."""

    def __str__(self) -> str:  # FileNotFoundError formats multi-argument errors differently
        return str(self.args[0]) if self.args else ""


class UnsupportedScaleError(UpbenchError, ValueError):
    """A scale that is not an integer, or that the operator does not support."""
