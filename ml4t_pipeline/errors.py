"""The one error hierarchy of the project.

User mistakes (bad data, bad config, missing files) raise a subclass of `Ml4tError`; the CLI
prints its message and exits non-zero without a traceback. Business outcomes inside a backtest
(not enough cash, a risk veto, a missing bar) are never exceptions: they are rejection rows.
"""

from __future__ import annotations


class Ml4tError(Exception):
    """Base class for every error a user can cause and fix."""


class ConfigError(Ml4tError):
    """A run configuration is invalid: unknown key, wrong type, bad value."""


class DataError(Ml4tError):
    """An input file is missing, unreadable, or breaks a data rule."""


class LookAheadError(DataError):
    """A value is used before it was available (knowledge time after decision time)."""


class StateError(Ml4tError):
    """Saved engine state is missing or does not match the run that wants to continue it."""


def shown(value: object, limit: int = 200) -> str:
    """`repr(value)` for a message, cut to `limit` characters (then '…' and the full length),
    so a huge value (a 2 MB asset id, an expanded YAML alias) never floods the terminal."""
    return clipped(repr(value), limit)


def clipped(text: str, limit: int = 200) -> str:
    """`text` cut to `limit` characters, then '…' and the full length, when it is longer."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"
