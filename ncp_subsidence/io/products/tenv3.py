"""NGL ``.tenv3`` daily GNSS position series (Nevada Geodetic Laboratory), one station per file.

Provider conventions: an optional first line naming the columns, then one whitespace-separated
line per day with 23 fields::

    site YYMMMDD yyyy.yyyy MJD week d reflon e0 east n0 north u0 up ant sig_e sig_n sig_u
    corr_en corr_eu corr_nu latitude longitude height

``YYMMMDD`` is the day (``95MAY19``); the decimal year is that day at 12:00 UTC counted in
Julian years of 365.25 days from J2000 (``2000 + (MJD + 0.5 - 51544.5) / 365.25``), so each
solution is stamped at noon. East, north and up are split into an integer part (``e0``, ``n0``,
``u0``, m) and a fractional part (m) about the reference meridian ``reflon``; ``ant`` is the
antenna height (m), sigmas are m, correlations dimensionless. Longitudes may lie below -180
(LHAS: -268.896 for 91.104 E).

:func:`read_tenv3` returns positions in mm relative to the first epoch, computed from the
integer and fractional parts separately (no loss of sub-millimetre precision).
"""

from __future__ import annotations

import io
import json
import logging

import fsspec
import numpy as np
import xarray as xr

from ...errors import DataError
from ._gridded import normalise_lon

__all__ = ["TENV3_COLUMNS", "read_tenv3"]

log = logging.getLogger(__name__)

TENV3_COLUMNS = (
    "site", "date", "decimal_year", "mjd", "gps_week", "gps_day", "reference_meridian",
    "e0", "east", "n0", "north", "u0", "up", "antenna_height", "sig_e", "sig_n", "sig_u",
    "corr_en", "corr_eu", "corr_nu", "latitude", "longitude", "height",
)  # fmt: skip

_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
    )
}
_J2000_NOON = np.datetime64("2000-01-01T12:00:00", "ns")
_NS_PER_JULIAN_YEAR = 365.25 * 86400e9


def _day(code: str, decimal_year: float) -> np.datetime64:
    """``95MAY19`` -> 1995-05-19 (century taken from the decimal-year column)."""
    if len(code) != 7 or code[2:5].upper() not in _MONTHS:
        raise ValueError(f"date {code!r} is not YYMMMDD")
    yy, month, day = int(code[:2]), _MONTHS[code[2:5].upper()], int(code[5:])
    year = yy + 100 * round((decimal_year - yy) / 100.0)
    return np.datetime64(f"{year:04d}-{month:02d}-{day:02d}", "D")


def _parse_lines(text: str, href: str) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Sites, days (datetime64[D]), integer metres (n, 3) and the other numbers (n, 16) of the
    position lines, one line at a time: a malformed line is named by its number."""
    sites: list[str] = []
    days: list[np.datetime64] = []
    ints: list[tuple[int, int, int]] = []
    numbers: list[list[float]] = []
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].lower() == "site" or line.lstrip().startswith("#"):
            continue
        if len(parts) != len(TENV3_COLUMNS):
            raise DataError(
                f"tenv3 file {href} line {number} has {len(parts)} fields; expected "
                f"{len(TENV3_COLUMNS)} ({' '.join(TENV3_COLUMNS)})"
            )
        try:
            decimal_year = float(parts[2])
            days.append(_day(parts[1], decimal_year))
            ints.append((int(parts[7]), int(parts[9]), int(parts[11])))
            numbers.append(
                [decimal_year, float(parts[3]), float(parts[6]), float(parts[8]), float(parts[10]),
                 float(parts[12]), *map(float, parts[13:])]
            )  # fmt: skip
        except ValueError as err:
            raise DataError(f"tenv3 file {href} line {number} does not parse: {err}") from err
        sites.append(parts[0])
    return (
        sites,
        np.asarray(days, dtype="datetime64[D]"),
        np.asarray(ints, dtype=np.int64).reshape(-1, 3),
        np.asarray(numbers, dtype=np.float64).reshape(-1, 16),
    )


def _parse_columns(text: str) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray] | None:
    """:func:`_parse_lines`' result for a clean file, read by numpy's C ``loadtxt`` (the
    demo twin's 120 files: ``read_tenv3`` 2.3 s -> 0.6 s; the same float bits, checked on NGL's
    LHAS);
    None where any line needs the line-by-line parser (a comment, a wrong field count, a
    non-number, a missing value, a malformed date), which then names the line or reads it
    exactly as before."""
    if "#" in text:
        return None
    body = text.lstrip()
    first = body.split(None, 1)
    if not first:
        return None
    skip = 1 if first[0].lower() == "site" else 0
    dtype = [("site", "U32"), ("date", "S8")] + [
        (f"c{i}", "i8" if i in (7, 9, 11) else "f8") for i in range(2, len(TENV3_COLUMNS))
    ]
    try:
        table = np.loadtxt(io.StringIO(body), dtype=dtype, skiprows=skip, comments=None, ndmin=1)
    except ValueError:
        return None
    whole = np.stack([table["c7"], table["c9"], table["c11"]], axis=1)
    num = np.stack([table[f"c{i}"] for i in (2, 3, 6, 8, 10, 12, *range(13, 23))], axis=1)
    if not table.size or not np.isfinite(num).all() or np.char.str_len(table["site"]).max() >= 32:
        return None
    # YYMMMDD as bytes: two digits, three letters, two digits, nothing after
    code = np.ascontiguousarray(table["date"]).view(np.uint8).reshape(-1, 8)
    digits = code[:, [0, 1, 5, 6]].astype(np.int64) - ord("0")
    letters = code[:, 2:5].astype(np.int64) & ~0x20  # upper case
    key = (letters[:, 0] << 16) | (letters[:, 1] << 8) | letters[:, 2]
    names = np.array([(ord(m[0]) << 16) | (ord(m[1]) << 8) | ord(m[2]) for m in _MONTHS])
    order = np.argsort(names)
    pos = np.minimum(np.searchsorted(names[order], key), len(names) - 1)
    if code[:, 7].any() or (names[order][pos] != key).any() or ((digits < 0) | (digits > 9)).any():
        return None
    month = order[pos] + 1  # 1..12
    yy = digits[:, 0] * 10 + digits[:, 1]
    day = digits[:, 2] * 10 + digits[:, 3]
    year = yy + 100 * np.round((num[:, 0] - yy) / 100.0).astype(np.int64)
    start = ((year - 1970) * 12 + month - 1).astype("datetime64[M]")
    length = ((start + 1).astype("datetime64[D]") - start.astype("datetime64[D]")).astype(int)
    if ((day < 1) | (day > length)).any():
        return None
    days = start.astype("datetime64[D]") + (day - 1).astype("timedelta64[D]")
    return table["site"].tolist(), days, whole, num


def read_tenv3(href: str, storage_options: dict | None = None) -> xr.Dataset:
    """Read one station's NGL ``.tenv3`` daily position series.

    Parameters
    ----------
    href : str
        Local path or fsspec URL.
    storage_options : dict, optional
        fsspec options of a remote href (HTTP headers, retries' client options).

    Returns
    -------
    xarray.Dataset
        Dim ``time`` (datetime64[ns], the day of ``YYMMMDD`` at 12:00 UTC, ascending), coords
        ``decimal_year`` (years) and ``mjd`` (days, int64) as in the file. Variables:
        ``east``, ``north``, ``up`` (float64, mm, relative to the first epoch), ``sigma_east``,
        ``sigma_north``, ``sigma_up`` (mm), ``corr_en``, ``corr_eu``, ``corr_nu`` (1),
        ``antenna_height`` (m). Attrs: ``station``, ``lon`` (degrees, -180..180),
        ``lon_as_written`` (degrees, as in the file: NGL's can lie below -180), ``lat``
        (degrees), ``height`` (m) of the first epoch, ``reference_meridian`` (degrees),
        ``reference_epoch`` (ISO date-time), ``reference_enu_m`` (JSON [e, n, u] of the first
        epoch about the reference meridian, m).

    Raises
    ------
    DataError
        Missing file, a malformed line (named by number), more than one station, a date that
        disagrees with its decimal year, or the same day twice.
    """
    url = href[len("file://") :] if href.startswith("file://") else href
    try:
        with fsspec.open(url, "rt", **(storage_options or {})) as f:
            text = f.read()
    except FileNotFoundError as err:
        raise DataError(f"tenv3 file {href} not found") from err
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read tenv3 file {href}: {err}") from err
    parsed = _parse_columns(text) or _parse_lines(text, href)
    sites, days, whole, num = parsed
    if not len(days):
        raise DataError(f"tenv3 file {href} holds no position line")
    if len(set(sites)) > 1:
        raise DataError(
            f"tenv3 file {href} holds several stations {sorted(set(sites))}; give one file per "
            "station"
        )
    (
        decimal_year, mjd, reflon, east_f, north_f, up_f, antenna,
        sig_e, sig_n, sig_u, corr_en, corr_eu, corr_nu, lat, lon, height,
    ) = num.T  # fmt: skip
    time = days.astype("datetime64[ns]") + np.timedelta64(12, "h")
    # the decimal year is written with 4 decimals (0.0001 yr = 0.9 h): check the date against it
    implied = 2000.0 + (time - _J2000_NOON).astype(np.float64) / _NS_PER_JULIAN_YEAR
    off = np.abs(implied - decimal_year)
    if np.any(off > 1.5e-4):
        i = int(np.argmax(off))
        raise DataError(
            f"tenv3 file {href}: date {days[i]!s} disagrees with its decimal year "
            f"{decimal_year[i]:.4f} (expected {implied[i]:.4f}); the file is corrupt"
        )
    order = np.argsort(time, kind="stable")
    if np.any(np.diff(time[order]) == np.timedelta64(0, "ns")):
        dup = time[order][np.flatnonzero(np.diff(time[order]) == np.timedelta64(0, "ns"))[0]]
        raise DataError(f"tenv3 file {href} holds the day {str(dup)[:10]} twice")
    if not np.all(order == np.arange(order.size)):
        log.info("%s: lines not in time order; sorted", href)

    def relative_mm(integer: np.ndarray, fraction: np.ndarray) -> np.ndarray:
        # integer metres and fractional metres differenced apart: no loss of precision
        return (
            (integer - integer[order[0]]).astype(np.float64) + (fraction - fraction[order[0]])
        ) * 1000.0

    first = order[0]
    series = {
        "east": (relative_mm(whole[:, 0], east_f), "mm", "east position relative to the first epoch"),
        "north": (relative_mm(whole[:, 1], north_f), "mm", "north position relative to the first epoch"),
        "up": (relative_mm(whole[:, 2], up_f), "mm", "up position relative to the first epoch"),
        "sigma_east": (sig_e * 1000.0, "mm", "east position uncertainty (1 sigma)"),
        "sigma_north": (sig_n * 1000.0, "mm", "north position uncertainty (1 sigma)"),
        "sigma_up": (sig_u * 1000.0, "mm", "up position uncertainty (1 sigma)"),
        "corr_en": (corr_en, "1", "east-north correlation"),
        "corr_eu": (corr_eu, "1", "east-up correlation"),
        "corr_nu": (corr_nu, "1", "north-up correlation"),
        "antenna_height": (antenna, "m", "antenna height"),
    }  # fmt: skip
    ds = xr.Dataset(
        {
            name: ("time", values[order], {"units": unit, "long_name": long_name})
            for name, (values, unit, long_name) in series.items()
        },
        coords={
            "time": time[order],
            "decimal_year": ("time", decimal_year[order], {"units": "year"}),
            "mjd": ("time", mjd[order].astype(np.int64), {"units": "day"}),
        },
    )
    ds.attrs = {
        "station": sites[0],
        "lon": float(normalise_lon(lon[first])),
        "lon_as_written": float(lon[first]),
        "lat": float(lat[first]),
        "height": float(height[first]),
        "reference_meridian": float(reflon[first]),
        "reference_epoch": str(time[first]),
        "reference_enu_m": json.dumps(
            [
                float(whole[first, 0] + east_f[first]),
                float(whole[first, 1] + north_f[first]),
                float(whole[first, 2] + up_f[first]),
            ]
        ),
        "source": "NGL tenv3",
    }
    if not -180.0 <= lon[first] < 180.0:
        log.info("%s: longitude %.4f moved into -180..180", href, lon[first])
    log.info("%s: station %s, %d daily positions", href, sites[0], ds.sizes["time"])
    return ds
