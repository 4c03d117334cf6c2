"""Private to stage ``sbas``: the reference point of a frame (docs/science.md 1.2).

:func:`choose_reference` picks one from the data (a stable GNSS station's window with data in
every interferogram, else the most coherent complete window); :func:`frame_reference` uses the
configured ``sbas.reference`` where it lies inside the frame, else chooses one.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import xarray as xr

from ncp_subsidence.errors import DataError
from ncp_subsidence.io.projection import GEOGRAPHIC, is_geographic, lonlat_to_xy
from ncp_subsidence.kernels import sbas as ksbas
from ncp_subsidence.progress import readable

__all__ = ["choose_reference", "frame_reference"]

# the stage's logger: messages and their filters are those of stage ``sbas``
log = logging.getLogger("ncp_subsidence.stages.sbas")


def choose_reference(
    ds: xr.Dataset,
    *,
    min_coherence: float = 0.85,
    window: int = 3,
    stations: Any = None,
) -> tuple[Any, Any]:
    """Pick a reference point (this computes two small (y, x) maps; call it before building).

    Parameters
    ----------
    ds : xarray.Dataset
        ``unw_phase(pair, y, x)`` and ``coherence(pair, y, x)``.
    min_coherence : float
        Minimum mean spatial coherence over the window.
    window : int
        Odd window size in pixels.
    stations : sequence of (x, y, |v_up|), optional
        GNSS stations (coordinates of the frame's grid, vertical speed in mm/yr). docs/science.md 1.2
        prefers a reference co-located with a stable station: the stations are tried from the
        most stable, and the first whose window has a valid pixel in every interferogram wins;
        otherwise the most coherent complete window.

    Returns
    -------
    (y, x) : coordinate values of the window centre.
    """
    if "coherence" not in ds:
        raise DataError(
            "choose_reference needs coherence(pair, y, x); give reference=(y, x) instead"
        )
    complete = ds["unw_phase"].notnull().all("pair")
    mean_coh = ds["coherence"].mean("pair")
    complete, mean_coh = xr.align(complete, mean_coh)
    complete_v, mean_coh_v = (
        np.asarray(a.transpose("y", "x").values) for a in (complete, mean_coh)
    )
    h = window // 2
    ny, nx = complete_v.shape
    any_valid_v = (
        np.asarray(ds["unw_phase"].notnull().transpose("pair", "y", "x").values)
        if stations
        else None
    )
    for sx, sy, speed in sorted(stations or (), key=lambda s: s[2]):
        row = int(ds.indexes["y"].get_indexer([sy], method="nearest")[0])
        col = int(ds.indexes["x"].get_indexer([sx], method="nearest")[0])
        inside = h <= row < ny - h and h <= col < nx - h
        inside = inside and abs(ds["y"].values[row] - sy) <= abs(float(ds["y"][1] - ds["y"][0]))
        inside = inside and abs(ds["x"].values[col] - sx) <= abs(float(ds["x"][1] - ds["x"][0]))
        if not inside:
            continue
        box = (slice(None), slice(row - h, row + h + 1), slice(col - h, col + h + 1))
        if any_valid_v[box].any(axis=(-1, -2)).all():
            y, x = ds["y"].values[row], ds["x"].values[col]
            log.info(
                "reference point at the GNSS station at y=%s x=%s (|v_up| %.1f mm/yr)",
                readable(y, 8),
                readable(x, 8),
                speed,
            )
            return y, x
    try:
        row, col = ksbas.select_reference(
            mean_coh_v, complete_v, min_coherence=min_coherence, window=window
        )
    except DataError:
        # docs/science.md 1.2 asks for >= 0.85; long-span stacks never reach it: take the most
        # coherent complete window instead, and say so
        row, col = ksbas.select_reference(mean_coh_v, complete_v, min_coherence=0.0, window=window)
        log.warning(
            "no %dx%d window reaches mean coherence %.2f; using the most coherent complete one",
            window,
            window,
            min_coherence,
        )
    y, x = ds["y"].values[row], ds["x"].values[col]
    log.info(
        "reference point chosen at y=%s x=%s (mean coherence %.3f)",
        readable(y, 8),
        readable(x, 8),
        mean_coh_v[row, col],
    )
    return y, x


def frame_reference(
    ds: xr.Dataset,
    configured: tuple[float, float] | None,
    stations: Any = None,
    crs: str = GEOGRAPHIC,
) -> tuple[Any, Any]:
    """The reference point (y, x) of a frame: ``configured`` (lon, lat) where it lies inside the
    frame (transformed to the frame's CRS), else :func:`choose_reference` with the GNSS
    ``stations`` (x, y, |v_up|) on the frame's grid."""
    if configured is not None:
        lon, lat = configured
        x, y = (float(v) for v in lonlat_to_xy(crs, lon, lat))
        inside = ds["x"].min() <= x <= ds["x"].max() and ds["y"].min() <= y <= ds["y"].max()
        if inside:
            return (lat, lon) if is_geographic(crs) else (y, x)
        log.info("configured reference (%s, %s) lies outside this frame; choosing one", lon, lat)
    return choose_reference(ds, stations=stations)
