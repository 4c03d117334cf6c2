"""Writers (and a reader for MIDAS) of the twin's products in their real formats.

COGs: rasterio ``driver="COG"``, DEFLATE + floating-point predictor, one thread, no timestamps,
so the same array gives the same bytes. NetCDF: xarray + h5netcdf with fixed encodings.

MIDAS velocity format (Nevada Geodetic Lab ``midas.IGS14.txt``; Blewitt et al. 2016, JGR
121:2054-2068), whitespace separated, one station per line, 27 columns:

=====  ==========================================================
 1     station id (4 characters)
 2     MIDAS version label (``MIDAS5``)
 3-4   first and last epoch, decimal years
 5     duration, years
 6     number of epochs of data
 7     number of epochs of good data
 8     number of velocity sample pairs
 9-11  east, north, up velocity, m/yr
12-14  east, north, up velocity uncertainty, m/yr
15-17  east, north, up offset at the first epoch, m
18-20  east, north, up fraction of outliers
21-23  east, north, up standard deviation of the velocity pairs, m/yr
24     number of steps assumed
25-27  latitude (deg), longitude (deg; NGL writes some eastern longitudes as lon - 360, below
       -180), height (m)
=====  ==========================================================

NGL ``.tenv3`` daily position series (one file per station): a header line naming the columns,
then one line per day with the 23 fields of
:data:`ncp_subsidence.io.products.tenv3.TENV3_COLUMNS` (``YYMMMDD`` day, decimal year of that
day's noon in Julian years from J2000, MJD, GPS week and day of week, reference meridian, east,
north and up as integer metres plus fractional metres, antenna height, sigmas in m,
correlations, latitude, longitude, height); :func:`write_tenv3`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
import xarray as xr
from rasterio.transform import Affine

from ..io.products.midas import MIDAS_COLUMNS  # the provider's columns, defined once

__all__ = [
    "MIDAS_COLUMNS",
    "read_midas",
    "write_cog",
    "write_geojson",
    "write_midas",
    "write_tenv3",
]


def write_cog(
    path: Path,
    array: np.ndarray,
    transform,
    tags: dict | None = None,
    description: str | None = None,
    *,
    crs: str = "EPSG:4326",
    nodata: float | None = float("nan"),
    dtype: str = "float32",
) -> None:
    """Write a single-band COG, DEFLATE, deterministic bytes.

    Parameters
    ----------
    path : Path
        Output file.
    array : ndarray, shape (rows, cols)
        Values (cast to ``dtype``).
    transform : sequence of 6 float
        GDAL geotransform (west, dx, 0, north, 0, -dy), in ``crs`` units.
    tags : dict, optional
        GDAL metadata (e.g. ``units``).
    description : str, optional
        Band description.
    crs : str
        CRS of the grid: EPSG:4326 (degrees) by default; UTM (``EPSG:32650``) for HyP3.
    nodata : float or None
        No-data value tagged in the file (NaN by default; HyP3 tags 0); None tags none
        (LiCSAR: 0 means no data, but the files do not say so).
    dtype : str
        Band type: ``float32`` (floating-point predictor) or an integer type (``uint8``,
        LiCSAR's coherence; horizontal predictor).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.ascontiguousarray(array, dtype=dtype)
    profile = {
        "driver": "COG",
        "height": data.shape[0],
        "width": data.shape[1],
        "count": 1,
        "dtype": dtype,
        "crs": crs,
        "transform": Affine.from_gdal(*transform),
        "compress": "DEFLATE",
        "predictor": 3 if np.dtype(dtype).kind == "f" else 2,
        "num_threads": 1,
        "blocksize": 256,
    }
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.Env(GDAL_NUM_THREADS=1), rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
        if tags:
            dst.update_tags(**tags)
        if description:
            dst.set_band_description(1, description)


def write_geojson(path: Path, features: list[dict]) -> None:
    """Write a GeoJSON FeatureCollection (EPSG:4326) with sorted keys."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fc = {"type": "FeatureCollection", "features": features}
    path.write_text(json.dumps(fc, sort_keys=True, indent=1) + "\n")


def write_midas(path: Path, table: pd.DataFrame) -> None:
    """Write a station table in the MIDAS velocity format (columns ``MIDAS_COLUMNS``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for r in table.itertuples(index=False):
        d = r._asdict()
        lines.append(
            f"{d['station']:4s} {d['version']} {d['t_first']:9.4f} {d['t_last']:9.4f} "
            f"{d['duration']:7.4f} {d['n_epochs']:5d} {d['n_good']:5d} {d['n_pairs']:6d} "
            + " ".join(f"{d[k]:9.6f}" for k in ("ve", "vn", "vu", "se", "sn", "su"))
            + " "
            + " ".join(f"{d[k]:9.5f}" for k in ("oe", "on", "ou"))
            + " "
            + " ".join(f"{d[k]:6.4f}" for k in ("fe", "fn", "fu"))
            + " "
            + " ".join(f"{d[k]:9.6f}" for k in ("sde", "sdn", "sdu"))
            + f" {d['n_steps']:3d} {d['lat']:12.8f} {d['lon']:13.8f} {d['height']:9.3f}"
        )
    path.write_text("\n".join(lines) + "\n")


#: the header line NGL writes at the top of a ``.tenv3`` file
TENV3_HEADER = (
    "site YYMMMDD yyyy.yyyy __MJD week d reflon _e0(m) __east(m) ____n0(m) _north(m) u0(m) "
    "____up(m) _ant(m) sig_e(m) sig_n(m) sig_u(m) __corr_en __corr_eu __corr_nu _latitude(deg) "
    "_longitude(deg) __height(m)"
)
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_MJD_EPOCH = np.datetime64("1858-11-17", "D")
_GPS_EPOCH_MJD = 44244  # 1980-01-06


def write_tenv3(
    path: Path,
    station: str,
    days: np.ndarray,
    enu_m: np.ndarray,
    sigma_m: np.ndarray,
    *,
    reference_meridian: float,
    lat: float,
    lon: float,
    height: float,
) -> None:
    """Write one station's daily positions in NGL's ``.tenv3`` layout.

    Parameters
    ----------
    path : Path
    station : str
        4-character station id.
    days : ndarray of datetime64[D], shape (n,)
        The days, ascending (each stamped at noon by the decimal-year column).
    enu_m : ndarray, shape (n, 3)
        East (about ``reference_meridian``), north (from the equator) and up (ellipsoidal
        height) positions, m; each is split into integer metres and the fractional part.
    sigma_m : ndarray, shape (3,) or (n, 3)
        1-sigma of east, north, up, m.
    reference_meridian : float, degrees east
    lat, lon, height : float
        Degrees, degrees (written as given: NGL writes some eastern longitudes below -180),
        m.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    days = np.asarray(days, dtype="datetime64[D]")
    mjd = (days - _MJD_EPOCH).astype(np.int64)
    decimal_year = np.round(2000.0 + (mjd + 0.5 - 51544.5) / 365.25, 4)
    ymd = np.datetime_as_string(days, unit="D")
    codes = [f"{d[2:4]}{_MONTHS[int(d[5:7]) - 1]}{d[8:10]}" for d in ymd]
    whole = np.floor(enu_m).astype(np.int64)
    frac = enu_m - whole
    sig = np.broadcast_to(np.asarray(sigma_m, dtype=np.float64), enu_m.shape)
    fmt = (
        f"{station:4s} %s %9.4f %5d %4d %1d {reference_meridian:6.1f} %6d %9.6f %9d %9.6f %5d "
        f"%9.6f 0.0000 %8.6f %8.6f %8.6f 0.000000 0.000000 0.000000 {lat:14.10f} {lon:15.10f} "
        f"{height:11.5f}"
    )
    rows = zip(
        codes,
        decimal_year.tolist(),
        mjd.tolist(),
        ((mjd - _GPS_EPOCH_MJD) // 7).tolist(),
        ((mjd - _GPS_EPOCH_MJD) % 7).tolist(),
        whole[:, 0].tolist(),
        frac[:, 0].tolist(),
        whole[:, 1].tolist(),
        frac[:, 1].tolist(),
        whole[:, 2].tolist(),
        frac[:, 2].tolist(),
        sig[:, 0].tolist(),
        sig[:, 1].tolist(),
        sig[:, 2].tolist(),
        strict=True,
    )
    path.write_text(TENV3_HEADER + "\n" + "\n".join(fmt % r for r in rows) + "\n")


def read_midas(path: Path) -> pd.DataFrame:
    """Read a MIDAS velocity file into a DataFrame with ``MIDAS_COLUMNS`` (velocities m/yr)."""
    df = pd.read_csv(path, sep=r"\s+", header=None, names=list(MIDAS_COLUMNS), dtype={0: str})
    return df


def netcdf_encoding(ds: xr.Dataset, time_units: str) -> dict:
    """Fixed float32 / zlib encodings for every data variable and the time coordinate."""
    enc: dict = {}
    for name, var in ds.data_vars.items():
        if name.endswith("bounds") or name.endswith("bnds"):
            enc[name] = {"dtype": "float64"}
            continue
        enc[name] = {
            "dtype": var.dtype if var.dtype.kind != "f" else "float32",
            "zlib": True,
            "complevel": 4,
            "shuffle": True,
            "_FillValue": np.float32(-99999.0) if var.dtype.kind == "f" else None,
        }
    if "time" in ds.coords:
        enc["time"] = {"units": time_units, "calendar": "standard", "dtype": "float64"}
    return enc
