"""GRACE / GRACE-FO RL06 mascons: CSR (v02, 0.25 deg) and JPL (RL06.1 v03 / RL06.3 v04, 0.5 deg).

Provider conventions, both centres: one global NetCDF file holding every month;
``lwe_thickness(time, lat, lon)`` in **cm** of equivalent water height (anomaly w.r.t. the
2004.000-2009.999 mean); ``time`` days since 2002-01-01T00:00:00Z (the middle of each
solution's span) with bounds ``time_bounds`` (``time_bnds`` in some releases); ``lon`` 0..360
(CSR 0.125..359.875, JPL 0.25..359.75), ``lat`` ascending (some re-gridded copies descend).

JPL mascons come with two companion files on the same grid: the CLM4 gain factors
(``CLM4.SCALE_FACTOR.JPL.MSCNv0xCRI.nc``, variable ``scale_factor``, multiply, land only) and the
land mask (``LAND_MASK.CRI.nc``, variable ``land_mask``, 1 on land). CSR publishes a land/ocean
mask (variable ``LO_val``, 1 on land) and no gain factors (docs/science.md 5.1).

The reader is **lazy**: the file is opened through fsspec (local, ``https://``, ``s3://``; remote
files: one range request per chunk), only the coordinates and the time axis are read whole, and the
bbox x time window of ``lwe_thickness`` is read as hyperslabs, never the global array.

Canonical output: ``grace_twsa(time, lat, lon)`` in mm (= 10 x cm), ``time`` the mid-month
instant of the calendar month holding each solution's midpoint (solutions sharing a month are
averaged, docs/science.md 5.2), ``lat`` and ``lon`` ascending, ``lon`` in -180..180.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import xarray as xr

from ...errors import DataError
from ...kernels import downscale as units
from ._gridded import (
    Bbox,
    decode_time_axis,
    find_dim,
    grid_window,
    interval_midpoints,
    open_product,
    read_window,
)
from .timecodes import monthly_mean

__all__ = ["LAND_MASK_VARIABLES", "read_grace"]

log = logging.getLogger(__name__)

#: accepted spellings of centimetres in ``lwe_thickness:units``
_CM = ("cm", "centimeters", "centimetres", "cm of water", "cm eqwh")
#: land-mask variable names: JPL ``LAND_MASK.CRI.nc``, CSR ``..._LandMask.nc``
LAND_MASK_VARIABLES = ("land_mask", "LO_val")


def _month_window(stamps: np.ndarray, time_range: Any) -> np.ndarray:
    if time_range is None:
        return np.arange(stamps.size)
    start, end = time_range
    month = stamps.astype("datetime64[M]")
    keep = np.ones(stamps.size, dtype=bool)
    if start is not None:
        keep &= month >= np.datetime64(str(start), "M")
    if end is not None:
        keep &= month <= np.datetime64(str(end), "M")
    return np.flatnonzero(keep)


def _time_indexer(index: np.ndarray) -> slice | np.ndarray:
    if index.size and np.all(np.diff(index) == 1):
        return slice(int(index[0]), int(index[-1]) + 1)
    return index


def _companion(
    href: str,
    names: tuple[str, ...],
    bbox: Bbox,
    lat: np.ndarray,
    lon: np.ndarray,
    what: str,
    storage_options: dict[str, Any] | None,
) -> np.ndarray:
    """A (lat, lon) companion field (scale factors, land mask) on the data's window."""
    with open_product(href, storage_options=storage_options) as ds:
        name = next((n for n in names if n in ds.variables), None)
        if name is None:
            raise DataError(
                f"GRACE {what} file {href} has none of the variables {list(names)}; "
                f"present: {sorted(ds.data_vars)}"
            )
        var = ds[name]
        lat_dim = find_dim(var.dims, ("lat", "latitude", "Y", "y"), "latitude", href)
        lon_dim = find_dim(var.dims, ("lon", "longitude", "X", "x"), "longitude", href)
        lat_index, lon_index = grid_window(ds[lat_dim].values, ds[lon_dim].values, bbox)
        window = read_window(ds, [name], lat_index, lon_index, where=f"GRACE {what} file {href}")
    field = window[name]
    if "time" in field.dims:
        if field.sizes["time"] != 1:
            raise DataError(
                f"GRACE {what} file {href}: {name!r} has {field.sizes['time']} time steps; "
                "expected a static (lat, lon) field"
            )
        field = field.isel(time=0)
    if not (
        field.shape == (lat.size, lon.size)
        and np.allclose(field["lat"].values, lat, atol=1e-6)
        and np.allclose(field["lon"].values, lon, atol=1e-6)
    ):
        raise DataError(
            f"GRACE {what} file {href} is not on the mascon file's grid inside the bbox "
            f"({field.shape} cells vs {(lat.size, lon.size)}); use the companion file of the "
            "same release and resolution"
        )
    return np.asarray(field.values, dtype=np.float64)


def read_grace(
    href: str,
    *,
    bbox: Bbox,
    time_range: tuple[Any, Any] | None = None,
    scale_factor: str | None = None,
    land_mask: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> xr.Dataset:
    """Read the bbox and months of a CSR or JPL RL06 mascon file, lazily, into mm of water.

    Parameters
    ----------
    href : str
        The mascon NetCDF file: local path, ``file://``, ``https://`` or ``s3://`` URL.
    bbox : (west, south, east, north)
        Degrees, longitudes in -180..180; the cells whose extent overlaps the box are read.
    time_range : (start, end), optional
        Calendar months kept, inclusive, compared with the month of each solution's midpoint
        (e.g. ``("2018-06", "2022-12")``); either side None is open. None keeps every month.
    scale_factor : str, optional
        JPL gain-factor file (variable ``scale_factor``, dimensionless, same grid): the
        thickness is multiplied by it (docs/science.md 5.1: the documented JPL land usage).
    land_mask : str, optional
        Land-mask file (variable ``land_mask`` (JPL) or ``LO_val`` (CSR), 1 on land): cells with
        a mask below 0.5 are set to NaN.
    storage_options : dict, optional
        fsspec options of remote hrefs (all three files).

    Returns
    -------
    xarray.Dataset
        ``grace_twsa(time, lat, lon)`` float64 mm; ``time`` mid-month datetime64[ns],
        ascending; ``lat``/``lon`` ascending degrees, ``lon`` in -180..180, coordinate attrs
        empty. Attrs: ``samples_per_month`` (solutions averaged into each month), the names of
        the companion files applied.

    Raises
    ------
    DataError
        Missing file or ``lwe_thickness``, units other than cm, a bbox or time range holding
        nothing, undecodable times (naming file, variable and units), companion files on
        another grid.
    """
    with open_product(href, storage_options=storage_options) as ds:
        if "lwe_thickness" not in ds.variables:
            raise DataError(
                f"GRACE file {href} lacks variable 'lwe_thickness' (have {sorted(ds.data_vars)})"
            )
        lwe = ds["lwe_thickness"]
        got = str(lwe.attrs.get("units", "")).strip()
        if got.lower() not in _CM:
            raise DataError(
                f"GRACE lwe_thickness in {href} has units {got!r}; expected cm (CSR/JPL mascons)"
            )
        times, bounds = decode_time_axis(ds, file=href)
        stamps = interval_midpoints(times, bounds)
        time_index = _month_window(stamps, time_range)
        if time_index.size == 0:
            raise DataError(
                f"GRACE file {href} has no solution in {time_range} (it spans "
                f"{str(stamps.min())[:10]} to {str(stamps.max())[:10]})"
            )
        lat_dim = find_dim(lwe.dims, ("lat", "latitude"), "latitude", href)
        lon_dim = find_dim(lwe.dims, ("lon", "longitude"), "longitude", href)
        lat_index, lon_index = grid_window(ds[lat_dim].values, ds[lon_dim].values, bbox)
        window = read_window(
            ds,
            ["lwe_thickness"],
            lat_index,
            lon_index,
            time_index=_time_indexer(time_index),
            where=f"GRACE file {href}",
        )
    lat, lon = window["lat"].values, window["lon"].values
    cm = window["lwe_thickness"].values
    attrs: dict[str, str] = {}
    if scale_factor is not None:
        gain = _companion(
            scale_factor, ("scale_factor",), bbox, lat, lon, "scale-factor", storage_options
        )
        cm = cm * gain[None]
        attrs["scale_factor_file"] = scale_factor
    if land_mask is not None:
        mask = _companion(
            land_mask, LAND_MASK_VARIABLES, bbox, lat, lon, "land-mask", storage_options
        )
        cm = np.where((mask >= 0.5)[None], cm, np.nan)
        attrs["land_mask_file"] = land_mask
    months, mm, per_month = monthly_mean(units.grace_cm_to_mm(cm), stamps[time_index])
    out = xr.Dataset(
        {
            "grace_twsa": (
                ("time", "lat", "lon"),
                mm,
                {
                    "units": "mm",
                    "long_name": "GRACE terrestrial water storage anomaly (equivalent water "
                    "height)",
                },
            )
        },
        coords={"time": months, "lat": lat, "lon": lon},
    )
    out.attrs.update(attrs)
    out.attrs["samples_per_month"] = json.dumps(per_month.tolist())
    log.info(
        "GRACE %s: %d solution(s) -> %d month(s) on %d x %d cells",
        href,
        time_index.size,
        months.size,
        lat.size,
        lon.size,
    )
    return out
