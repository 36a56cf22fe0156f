"""The engine's small family of typed exceptions.

Every error the engine raises on bad input or bad artifacts derives from
:class:`RecsysError`, so the CLI can turn any of them into a one-line message
and exit code 2.
"""

from __future__ import annotations


class RecsysError(Exception):
    """Base class of every error the engine raises on purpose."""


class SchemaError(RecsysError):
    """A data file cannot be read, or lacks a required column."""


class UnknownCodeError(RecsysError, ValueError):
    """A code (group, region, topic, channel, ...) is not in the taxonomy."""


class ConfigError(RecsysError, ValueError):
    """A configuration value or a call parameter is invalid."""


class ArtifactError(RecsysError):
    """A model bundle file is missing, corrupted or of an unsupported version."""


class NotFittedError(RecsysError):
    """A component was used before ``fit`` was called."""


class DataError(RecsysError):
    """The data as a whole cannot be used: nothing left to work on, or too much of it rejected."""
