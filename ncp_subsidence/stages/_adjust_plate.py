"""Private to stage ``adjust``: the plate motion (docs/science.md 3.2 step 1, 4.2).

The Euler vector of the plate model (ITRF2014-PMM Eurasia, or a pole fitted to the training
stations), the GNSS velocities in the Eurasia-fixed frame, and the lazy per-pixel plate-motion
LOS term referenced to the SBAS reference point,
``p(x) = u(x) . v_PMM(x) - u(ref) . v_PMM(ref)`` (mm/yr).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from typing import Any

import numpy as np
import xarray as xr

from ..errors import DataError
from ..io.projection import is_geographic, xy_to_lonlat
from ..kernels.geometry import (
    fit_euler_pole,
    plate_motion_los_referenced,
    plate_velocity_enu,
    resolve_euler_vector,
)
from ._adjust_correction import grid_coordinates

__all__ = ["gnss_eurasia_fixed", "plate_euler_vector", "plate_motion_los"]

# the stage's logger: messages and their filters are those of stage ``adjust``
log = logging.getLogger("ncp_subsidence.stages.adjust")

_LOS = ("los_east", "los_north", "los_up")


def plate_euler_vector(model: str, gnss: xr.Dataset, exclude: set[Hashable], max_abs_vu: float):
    """The Euler vector (mas/yr) of the plate model, and a JSON-able record of how it was got.

    Parameters
    ----------
    model : str
        'ITRF2014_EURA' (table value) or 'GNSS_regional' (weighted LS fit of ``v_h = omega x X``
        to the horizontal velocities of stations with ``|vu| <= max_abs_vu``, docs/science.md 4.2).
    gnss : xarray.Dataset
        The ``ingest/gnss`` table (dim ``station``; ``lon, lat, ve, vn, vu, se, sn`` mm/yr).
    exclude : set
        Station ids never to use (the holdout stations).
    max_abs_vu : float, mm/yr

    Returns
    -------
    omega : ndarray, shape (3,), mas/yr
    record : dict
    """
    if model != "GNSS_regional":
        omega = resolve_euler_vector(model)
        return omega, {"plate_model": model, "euler_vector_mas_per_yr": omega.tolist()}
    ids = gnss["station"].values
    use = np.array([i not in exclude for i in ids]) & (np.abs(gnss["vu"].values) <= max_abs_vu)
    if use.sum() < 3:
        raise DataError(
            f"plate_model='GNSS_regional' needs >= 3 training stations with |vu| <= {max_abs_vu} "
            f"mm/yr, found {int(use.sum())}; raise adjust.regional_pole_max_abs_vu or use "
            "plate_model='ITRF2014_EURA'"
        )
    fit = fit_euler_pole(
        gnss["lon"].values[use],
        gnss["lat"].values[use],
        gnss["ve"].values[use],
        gnss["vn"].values[use],
        gnss["se"].values[use],
        gnss["sn"].values[use],
    )
    return fit.omega, {
        "plate_model": "GNSS_regional",
        "euler_vector_mas_per_yr": np.asarray(fit.omega).tolist(),
        "euler_fit_stations": [str(i) for i in ids[use]],
        "euler_fit_wrms_mm_per_yr": [fit.wrms_east, fit.wrms_north],
    }


def _pmm_block(le, ln, lu, lat, lon, *, omega, ref):
    unit = np.stack([le, ln, lu], axis=-1)
    out = plate_motion_los_referenced(lon, lat, unit, ref[0], ref[1], np.asarray(ref[2]), omega)
    return out.astype(np.float32)


def _pmm_block_projected(le, ln, lu, y, x, *, crs, omega, ref):
    # one block of a projected frame: the pixels' lon/lat are computed here, block by block
    lon, lat = xy_to_lonlat(crs, x, y)
    return _pmm_block(le, ln, lu, lat, lon, omega=omega, ref=ref)


def gnss_eurasia_fixed(gnss: xr.Dataset, omega: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GNSS velocities less the plate motion at each station, and their sigmas.

    Returns
    -------
    velocity : ndarray, shape (n_station, 3), mm/yr, ENU, Eurasia-fixed
    sigma : ndarray, shape (n_station, 3), mm/yr (``se, sn, su``)
    """
    slon, slat = gnss["lon"].values.astype(float), gnss["lat"].values.astype(float)
    pmm_enu = plate_velocity_enu(slon, slat, omega)
    gnss_ef = np.stack(
        [
            gnss["ve"].values - pmm_enu[:, 0],
            gnss["vn"].values - pmm_enu[:, 1],
            gnss["vu"].values - pmm_enu[:, 2],
        ],
        axis=-1,
    )
    gnss_sig = np.stack([gnss[c].values for c in ("se", "sn", "su")], axis=-1)
    return gnss_ef, gnss_sig


def plate_motion_los(
    sb: xr.Dataset, geo: xr.Dataset, omega: np.ndarray, frame: str
) -> tuple[xr.DataArray, dict[str, float]]:
    """The lazy plate-motion LOS term of a frame (mm/yr), referenced to its reference point.

    Parameters
    ----------
    sb : xarray.Dataset
        The frame's sbas product (``attrs["crs"]`` set); its ``reference_x``/``reference_y``
        attrs name the reference point (else the frame centre is used, logged).
    geo : xarray.Dataset
        ``los_east, los_north, los_up`` on the same grid and chunks.
    omega : ndarray, shape (3,), mas/yr
    frame : str

    Returns
    -------
    pmm : xarray.DataArray (y, x), float32, mm/yr
    reference : dict with ``reference_lon``, ``reference_lat`` (degrees), ``reference_x``,
        ``reference_y`` (frame CRS)
    """
    crs = sb.attrs["crs"]
    projected = not is_geographic(crs)
    if "reference_y" in sb.attrs and "reference_x" in sb.attrs:
        ref_y, ref_x = float(sb.attrs["reference_y"]), float(sb.attrs["reference_x"])
    else:  # unreferenced velocities: remove the plate term relative to the frame centre
        x, y = sb["x"].values, sb["y"].values
        ref_x, ref_y = float((x[0] + x[-1]) / 2), float((y[0] + y[-1]) / 2)
        log.warning(
            "sbas/%s has no reference point attrs; plate term referenced at the centre", frame
        )
    ref_lon, ref_lat = (float(v) for v in xy_to_lonlat(crs, ref_x, ref_y))
    point = geo[list(_LOS)].sel(y=ref_y, x=ref_x, method="nearest").compute()  # one compute
    ref_unit = [float(point[c].values) for c in _LOS]
    # per-pixel plate motion needs each pixel's lon/lat: the frame's coordinates on a
    # geographic grid, computed block by block from x/y on a projected one
    lat2d, lon2d = grid_coordinates(sb["velocity"])
    block_kwargs: dict[str, Any] = {"omega": omega, "ref": (ref_lon, ref_lat, ref_unit)}
    if projected:
        block_kwargs["crs"] = crs
    pmm = xr.apply_ufunc(
        _pmm_block_projected if projected else _pmm_block,
        geo["los_east"],
        geo["los_north"],
        geo["los_up"],
        lat2d.transpose("y", "x"),
        lon2d.transpose("y", "x"),
        kwargs=block_kwargs,
        dask="parallelized",
        output_dtypes=[np.float32],
    )
    reference = {
        "reference_lon": ref_lon,
        "reference_lat": ref_lat,
        "reference_x": ref_x,
        "reference_y": ref_y,
    }
    return pmm, reference
