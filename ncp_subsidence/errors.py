"""Exception and warning families.

Every error the package raises on purpose is an :class:`NcpError` and also subclasses the builtin
that fits (``ValueError`` for bad values, ``OSError`` for storage, ``ConnectionError`` for the
network), so callers can catch either. Messages say what happened, the offending value, and the fix;
causes are chained with ``raise ... from err``.

Warnings form one family under :class:`NcpWarning`; the test suite turns every warning into an
error, so a warning the package emits is always deliberate and typed.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ConfigWarning",
    "DataError",
    "DataWarning",
    "NcpError",
    "NcpWarning",
    "NetworkError",
    "PerformanceWarning",
    "StoreError",
]


class NcpError(Exception):
    """Base of every error raised on purpose by ncp_subsidence."""


class ConfigError(NcpError, ValueError):
    """The configuration is invalid: a bad value, a wrong type, an unknown key, a missing extra."""


class DataError(NcpError, ValueError):
    """Input data are unusable: wrong grid, wrong units, missing variables, empty or degenerate."""


class NetworkError(NcpError, ConnectionError):
    """A remote service (STAC API, HTTPS, S3) failed after the configured retries."""


class StoreError(NcpError, OSError):
    """The product store cannot be opened, read or written."""


class NcpWarning(UserWarning):
    """Base of every warning emitted by ncp_subsidence."""


class DataWarning(NcpWarning):
    """Data were usable but something was dropped, filled, or is undefined (NaN results)."""


class ConfigWarning(NcpWarning):
    """A configuration choice is legal but probably not what was meant."""


class PerformanceWarning(NcpWarning):
    """A choice (chunking, graph size) will make the computation slow or memory-hungry."""
