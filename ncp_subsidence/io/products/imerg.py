"""GPM IMERG Final (V06, V07): half-hourly ``3IMERGHH`` or monthly ``3IMERGM`` HDF5 files.

Provider conventions: HDF5 group ``Grid``; precipitation ``(time, lon, lat)`` (longitude
first) in mm/hr, ``_FillValue`` -9999.9; ``lat`` -89.95..89.95 and ``lon`` -179.95..179.95
(0.1 deg); ``time`` and ``time_bnds`` in seconds since 1970-01-01 (V06) or 1980-01-06 (V07)
with calendar ``"julian"`` (nominal: decoded field by field, see
:mod:`ncp_subsidence.io.products.timecodes`). The merged, gauge-adjusted estimate is
``precipitation`` in V07 files and in the V06 monthly product, ``precipitationCal`` in the
V06 half-hourly product; the first of the two that a file holds is read, and every file of a
series must hold the same one (mixing V06 and V07 half-hourly files is an error).

Canonical variable: ``precipitation`` (time, lat, lon) in mm/month = the mean rate of the
month's files (mm/hr, NaN ignored) x 24 x days in the month. The number of files averaged per
month is in the attrs ``samples_per_month``: one half-hour labelled as a month is an
extrapolation, and says so there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import xarray as xr

from ._gridded import Bbox, Term, read_gridded

__all__ = ["IMERG_TERMS", "read_imerg"]

IMERG_TERMS = (
    Term("precipitation", ("precipitation",), "rate_per_hour", "precipitation (IMERG)"),
    Term("precipitation", ("precipitationCal",), "rate_per_hour", "precipitation (IMERG)"),
)


def read_imerg(
    hrefs: Sequence[str],
    *,
    bbox: Bbox | None = None,
    storage_options: dict[str, Any] | None = None,
) -> xr.Dataset:
    """Read IMERG V06/V07 HDF5 files (group ``Grid``) into the canonical monthly dataset.

    Parameters
    ----------
    hrefs : sequence of str
        IMERG files, one per half hour (``3B-HHR...HDF5``) or per month (``3B-MO...HDF5``).
    bbox : (west, south, east, north), optional
        Degrees; only the overlapping cells are read.
    storage_options : dict, optional
        fsspec options for remote hrefs.

    Returns
    -------
    xarray.Dataset
        ``precipitation`` (time, lat, lon) float64 mm/month, ``time`` mid-month
        datetime64[ns], ``lat``/``lon`` ascending (transposed from the file's lon-first
        layout), fill values NaN.

    Raises
    ------
    DataError
        Missing group or variable (naming the file), units other than mm/hr, files of
        different versions or grids, undecodable times.
    """
    return read_gridded(
        hrefs,
        IMERG_TERMS,
        product="IMERG",
        bbox=bbox,
        group="Grid",
        storage_options=storage_options,
    )
