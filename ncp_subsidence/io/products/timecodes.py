"""CF time codes of the hydrology products, decoded to ``datetime64[ns]`` without xarray's help.

Every adapter opens its NetCDF/HDF5 files with ``decode_times=False`` and calls
:func:`decode_times` on the raw numbers, so that one function owns the calendars and units the
providers write and one error names the file, the variable and the units that failed:

==========================  ==============================================  ==================
product                     ``units``                                       ``calendar``
==========================  ==============================================  ==================
GRACE CSR / JPL mascons     ``days since 2002-01-01T00:00:00Z``             gregorian / none
GLDAS-2.1 Noah (3H)         `` minutes since 2000-01-01 03:00:00``          none (standard)
GLDAS-2.1 Noah (monthly)    ``days since 1948-01-01 00:00:00``              none (standard)
FLDAS Noah (monthly)        ``days since 1982-01-01 00:00:00``              standard
IMERG V06 (HH and monthly)  ``seconds since 1970-01-01 00:00:00 UTC``       **julian**
IMERG V07                   ``seconds since 1980-01-06 00:00:00 UTC``       **julian**
==========================  ==============================================  ==================

Calendars
---------
``standard``, ``gregorian`` (and no calendar at all, the CF default) and ``proleptic_gregorian``
are decoded with exact integer nanosecond arithmetic in numpy (for an epoch before 1582-10-15
the mixed Julian/Gregorian ``standard`` calendar goes through cftime instead). ``julian``,
``noleap``/``365_day``, ``all_leap``/``366_day`` and ``360_day`` go through ``cftime`` and are
carried over **field by field**: the date the provider wrote (year, month, day, hour, minute,
second) becomes the same date in ``datetime64``. This is what the IMERG files mean: their
"julian" label is nominal (file ``...20000601-S000000-E002959...`` holds
``959817600 seconds since 1970-01-01`` = 2000-06-01 00:00 in both calendars, which agree
between 1970 and 2100 on day counts), whereas converting the Julian *instant* to the Gregorian
calendar would shift every IMERG time stamp by 13 days. A date that does not exist in the
Gregorian calendar (30 February of a 360-day calendar) is a :class:`~ncp_subsidence.errors.DataError`.

Monthly labels
--------------
:func:`month_midpoints` and :func:`monthly_mean` turn decoded stamps into the canonical monthly
axis (mid-month instants; samples of one month averaged, NaN-aware, without numpy's
empty-slice warnings).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ...errors import ConfigError, DataError

__all__ = [
    "CFTIME_CALENDARS",
    "NUMPY_CALENDARS",
    "decode_times",
    "month_midpoints",
    "monthly_mean",
    "parse_time_units",
]

#: nanoseconds per CF time unit (months and years are ambiguous in CF and refused)
_NS_PER_UNIT: dict[str, int] = {
    "nanoseconds": 1,
    "microseconds": 1_000,
    "milliseconds": 1_000_000,
    "seconds": 1_000_000_000,
    "minutes": 60_000_000_000,
    "hours": 3_600_000_000_000,
    "days": 86_400_000_000_000,
    "weeks": 604_800_000_000_000,
}
_UNIT_ALIASES: dict[str, str] = {
    **{k: k for k in _NS_PER_UNIT},
    **{k[:-1]: k for k in _NS_PER_UNIT},
    "ns": "nanoseconds",
    "us": "microseconds",
    "ms": "milliseconds",
    "msec": "milliseconds",
    "msecs": "milliseconds",
    "s": "seconds",
    "sec": "seconds",
    "secs": "seconds",
    "min": "minutes",
    "mins": "minutes",
    "h": "hours",
    "hr": "hours",
    "hrs": "hours",
    "d": "days",
}

#: calendars decoded with numpy (exact integer nanoseconds)
NUMPY_CALENDARS = ("standard", "gregorian", "proleptic_gregorian")
#: calendars decoded with cftime, then carried over field by field
CFTIME_CALENDARS = ("julian", "noleap", "365_day", "all_leap", "366_day", "360_day")

_UNITS_RE = re.compile(r"^\s*([A-Za-z]+)\s+since\s+(.+?)\s*$", re.IGNORECASE)
_EPOCH_RE = re.compile(
    r"^(?P<y>[+-]?\d{1,4})-(?P<mo>\d{1,2})-(?P<d>\d{1,2})"
    r"(?:[T\s]+(?P<h>\d{1,2}):(?P<mi>\d{1,2})(?::(?P<s>\d{1,2})(?:\.(?P<f>\d+))?)?)?"
    r"\s*(?P<tz>Z|UTC|GMT|[+-]\d{1,2}(?::?\d{2})?)?$",
    re.IGNORECASE,
)
_GREGORIAN_START = (1582, 10, 15)


def parse_time_units(units: str) -> tuple[str, tuple[int, int, int, int, int, int, int], int]:
    """Split CF ``"<unit> since <epoch>"`` into its parts.

    Parameters
    ----------
    units : str
        E.g. ``"seconds since 1970-01-01 00:00:00 UTC"``, ``"days since 2002-01-01T00:00:00Z"``,
        ``" minutes since 2000-01-01 03:00:00"``, ``"hours since 1992-10-8 15:15:42.5 -6:00"``.

    Returns
    -------
    unit : str
        Canonical unit name (``"seconds"``, ``"minutes"``, ``"hours"``, ``"days"``...).
    epoch : tuple of int
        ``(year, month, day, hour, minute, second, microsecond)`` as written (local time of the
        offset).
    offset_s : int
        Time-zone offset of the epoch, seconds east of UTC (``0`` for ``Z``/``UTC``/none).

    Raises
    ------
    ValueError
        When the string is not of that form (callers turn it into a DataError with context).
    """
    match = _UNITS_RE.match(str(units))
    if not match:
        raise ValueError("not of the form '<unit> since <epoch>'")
    unit = _UNIT_ALIASES.get(match.group(1).lower())
    if unit is None:
        raise ValueError(
            f"unit {match.group(1)!r} is not one of {sorted(_NS_PER_UNIT)} (CF months and years "
            "have no fixed length and are not accepted)"
        )
    epoch = _EPOCH_RE.match(match.group(2).strip())
    if not epoch:
        raise ValueError(f"epoch {match.group(2)!r} is not a date 'YYYY-MM-DD[ hh:mm[:ss]]'")
    g = epoch.groupdict()
    frac = (g["f"] or "")[:6].ljust(6, "0")
    fields = (
        int(g["y"]),
        int(g["mo"]),
        int(g["d"]),
        int(g["h"] or 0),
        int(g["mi"] or 0),
        int(g["s"] or 0),
        int(frac),
    )
    if not (1 <= fields[1] <= 12 and 1 <= fields[2] <= 31 and fields[3] < 24 and fields[4] < 60):
        raise ValueError(f"epoch {match.group(2)!r} is not a valid date")
    offset_s = 0
    tz = (g["tz"] or "").upper()
    if tz and tz not in ("Z", "UTC", "GMT"):
        sign = -1 if tz[0] == "-" else 1
        body = tz[1:].replace(":", "")
        hours, minutes = (int(body[:-2]), int(body[-2:])) if len(body) > 2 else (int(body), 0)
        offset_s = sign * (hours * 3600 + minutes * 60)
    return unit, fields, offset_s


def decode_times(
    values: Any, units: str, calendar: str | None, *, file: str, variable: str
) -> np.ndarray:
    """Decode raw CF time numbers to ``datetime64[ns]`` (UTC).

    Parameters
    ----------
    values : array_like of int or float
        The numbers stored in the file (any shape), in ``units``.
    units : str
        The variable's ``units`` attribute, ``"<unit> since <epoch>"``.
    calendar : str or None
        The variable's ``calendar`` attribute; None or empty means ``standard`` (CF default).
    file, variable : str
        Where the numbers come from; named in every error.

    Returns
    -------
    ndarray of datetime64[ns], same shape as ``values``

    Raises
    ------
    DataError
        Unparseable units, an unknown calendar, non-finite numbers, a date outside the
        ``datetime64[ns]`` range (1677-2262) or one that does not exist in the Gregorian calendar;
        the message names ``file``, ``variable``, ``units`` and ``calendar``.
    ConfigError
        A non-Gregorian calendar was met and ``cftime`` is not installed.
    """
    where = f"time variable {variable!r} of {file} (units {units!r}, calendar {calendar!r})"
    cal = (str(calendar).strip().lower() if calendar is not None else "") or "standard"
    try:
        unit, epoch, offset_s = parse_time_units(units)
    except ValueError as err:
        raise DataError(
            f"cannot decode {where}: {err}. Expected CF units such as "
            "'days since 2002-01-01T00:00:00Z'; fix the file's attribute or replace the file"
        ) from err
    raw = np.asarray(values)
    if raw.dtype.kind not in "iuf":
        raise DataError(f"cannot decode {where}: values have dtype {raw.dtype}, not numbers")
    if raw.dtype.kind == "f" and not np.all(np.isfinite(raw)):
        bad = raw[~np.isfinite(raw)].ravel()[0]
        raise DataError(f"cannot decode {where}: it holds a non-finite value ({bad})")
    if cal in NUMPY_CALENDARS and (cal == "proleptic_gregorian" or epoch[:3] >= _GREGORIAN_START):
        return _decode_numpy(raw, unit, epoch, offset_s, where)
    if cal in (*CFTIME_CALENDARS, *NUMPY_CALENDARS):
        return _decode_cftime(raw, unit, epoch, offset_s, cal, where)
    raise DataError(
        f"cannot decode {where}: unknown calendar {calendar!r}; expected one of "
        f"{[*NUMPY_CALENDARS, *CFTIME_CALENDARS]}"
    )


def _decode_numpy(
    raw: np.ndarray, unit: str, epoch: tuple[int, ...], offset_s: int, where: str
) -> np.ndarray:
    step = _NS_PER_UNIT[unit]
    y, mo, d, h, mi, s, us = epoch
    try:
        origin = np.datetime64(f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}", "ns")
    except ValueError as err:
        raise DataError(f"cannot decode {where}: the epoch is not a valid date") from err
    origin = origin + np.timedelta64(us * 1000 - offset_s * 1_000_000_000, "ns")
    # range check in float seconds first: int64 nanoseconds span about +-292 years around 1970
    limit = 9.2e9  # seconds
    origin_s = float(origin.astype(np.int64)) / 1e9
    span = raw.astype(np.float64) * (step / 1e9) + origin_s
    if raw.size and (np.max(span) > limit or np.min(span) < -limit):
        raise DataError(
            f"cannot decode {where}: values {raw.min()}..{raw.max()} fall outside the "
            "datetime64[ns] range (1677-09-21 to 2262-04-11)"
        )
    if raw.dtype.kind in "iu":
        ns = raw.astype(np.int64) * np.int64(step)
    else:
        whole = np.floor(raw.astype(np.float64))
        frac = raw.astype(np.float64) - whole
        ns = whole.astype(np.int64) * np.int64(step) + np.round(frac * step).astype(np.int64)
    return (origin + ns.astype("timedelta64[ns]")).astype("datetime64[ns]")


def _decode_cftime(
    raw: np.ndarray, unit: str, epoch: tuple[int, ...], offset_s: int, cal: str, where: str
) -> np.ndarray:
    try:
        import cftime
    except ImportError as err:  # pragma: no cover - cftime is a declared dependency
        raise ConfigError(
            f"decoding {where} needs the 'cftime' package (calendar {cal!r}); pip install cftime"
        ) from err
    y, mo, d, h, mi, s, us = epoch
    stamp = f"{y:04d}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d}.{us:06d}"
    numbers = raw.astype(np.float64) if raw.dtype.kind == "f" else raw.astype(np.int64)
    if offset_s:
        numbers = numbers.astype(np.float64) - offset_s * 1e9 / _NS_PER_UNIT[unit]
    try:
        dates = cftime.num2date(
            numbers, f"{unit} since {stamp}", calendar=cal, only_use_cftime_datetimes=True
        )
    except (ValueError, OverflowError) as err:
        raise DataError(f"cannot decode {where}: {err}") from err
    flat = np.ravel(np.asarray(dates, dtype=object))
    out = np.empty(flat.shape, dtype="datetime64[ns]")
    for i, t in enumerate(flat):
        text = (
            f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:"
            f"{t.second:02d}.{t.microsecond:06d}"
        )
        try:
            out[i] = np.datetime64(text, "ns")
        except ValueError as err:
            raise DataError(
                f"cannot decode {where}: {text} (calendar {cal!r}) is not a Gregorian date"
            ) from err
    return out.reshape(raw.shape)


def month_midpoints(times: Any) -> np.ndarray:
    """The mid-month instant of the calendar month holding each time.

    Parameters
    ----------
    times : array_like of datetime64

    Returns
    -------
    ndarray of datetime64[ns]
        E.g. 2000-06-01T00:15 -> 2000-06-16T00:00 (June: 30 days, midpoint after 15 days).
    """
    t = np.asarray(times, dtype="datetime64[ns]")
    start = t.astype("datetime64[M]").astype("datetime64[ns]")
    end = (t.astype("datetime64[M]") + 1).astype("datetime64[ns]")
    return start + (end - start) // 2


def monthly_mean(
    values: np.ndarray, stamps: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Average the samples of each calendar month, ignoring NaN.

    Parameters
    ----------
    values : ndarray, shape (n_sample, ...)
        Samples in any unit (a storage or a rate); NaN where missing.
    stamps : ndarray of datetime64, shape (n_sample,)
        The instant that decides each sample's month (the middle of its averaging interval).

    Returns
    -------
    months : ndarray of datetime64[ns], shape (n_month,)
        Mid-month labels, ascending.
    mean : ndarray of float64, shape (n_month, ...)
        Mean of the finite samples of each month; NaN where a month has none.
    count : ndarray of int64, shape (n_month,)
        Samples per month (finite or not).
    """
    labels = month_midpoints(stamps)
    months, inverse, count = np.unique(labels, return_inverse=True, return_counts=True)
    values = np.asarray(values, dtype=np.float64)
    out = np.full((months.size, *values.shape[1:]), np.nan)
    for k in range(months.size):
        block = values[inverse == k]
        valid = np.isfinite(block)
        total = np.where(valid, block, 0.0).sum(axis=0)
        n = valid.sum(axis=0)
        np.divide(total, n, out=out[k], where=n > 0)
    return months, out, count.astype(np.int64)
