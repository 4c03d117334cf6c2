"""Pieces more than one stage uses (no stage imports another; they import from here).

* Station windows on a frame grid (``adjust`` and ``mosaic``): :func:`station_window` sizes the
  window for the grid's posting, :func:`sample_frame_stations` takes the window medians of a
  lazy velocity around each GNSS station, computing only the windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dask
import numpy as np
import xarray as xr

from .kernels.adjust import (
    grid_spacing_km,
    projected_spacing_km,
    sample_station_windows,
    station_window_slices,
)

__all__ = ["FrameStations", "sample_frame_stations", "station_window"]

_LOS = ("los_east", "los_north", "los_up")


def station_window(
    opts: Any, lon: np.ndarray, lat: np.ndarray, *, projected: bool = False
) -> tuple[float, float]:
    """Station-window radius (m) and steep-gradient threshold (mm/yr/km) for this grid.

    docs/science.md 3.2 sets the window at 200 m for ~100 m pixels; on coarser postings the window
    grows until it holds ``min_pixels`` pixels (radius ``1.25 * pixel * sqrt(min_pixels / pi)``),
    and the gradient threshold shrinks in proportion, so a station is rejected for the same
    velocity change across its window (docs/science.md 3.4).

    ``lon``/``lat`` are the grid's x/y cell centres: degrees, or metres with ``projected``.
    """
    dy_km, dx_km = projected_spacing_km(lon, lat) if projected else grid_spacing_km(lon, lat)
    needed = 1000.0 * max(dy_km, dx_km) * 1.25 * float(np.sqrt(opts.min_pixels / np.pi))
    radius = max(opts.radius_m, needed)
    return radius, opts.max_gradient_mm_yr_km * opts.radius_m / radius


@dataclass
class FrameStations:
    """What one frame sees at the GNSS stations (all arrays shape (n_station,)).

    Attributes
    ----------
    ids : ndarray of object, station ids
    median, sigma, gradient : ndarray, mm/yr, mm/yr, mm/yr/km (window median of ``v_EF``)
    n_pixels : ndarray of int
    unit : ndarray, shape (n_station, 3), ENU LOS unit vector (window median)
    valid : ndarray of bool, station inside the frame with enough valid pixels
    """

    ids: np.ndarray
    median: np.ndarray
    sigma: np.ndarray
    gradient: np.ndarray
    n_pixels: np.ndarray
    unit: np.ndarray
    valid: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)


def sample_frame_stations(
    velocity: xr.DataArray,
    unit: xr.Dataset,
    station_lon: np.ndarray,
    station_lat: np.ndarray,
    station_ids: np.ndarray,
    *,
    radius_m: float,
    min_pixels: int,
    quality: xr.DataArray | None = None,
    min_quality: float = 0.7,
    projected: bool = False,
) -> FrameStations:
    """Window medians of a lazy ``(y, x)`` velocity around each station; only the windows compute.

    Parameters
    ----------
    velocity : xarray.DataArray, dims (y, x), mm/yr, dask-backed or not
    unit : xarray.Dataset with ``los_east, los_north, los_up`` (y, x)
    station_lon, station_lat : ndarray, shape (n,), degrees; with ``projected`` the stations'
        x, y on the frame's projected grid (metres)
    station_ids : ndarray, shape (n,)
    radius_m : float, window radius, m
    min_pixels : int
    quality : xarray.DataArray (y, x), optional, temporal coherence
    min_quality : float
    projected : bool
        The frame grid is projected (``x``/``y`` metres, e.g. UTM), not EPSG:4326.

    Returns
    -------
    FrameStations
    """
    lon = velocity["x"].values
    lat = velocity["y"].values
    n = station_lon.size
    boxes = station_window_slices(lon, lat, station_lon, station_lat, radius_m, projected=projected)
    pieces = []
    for box in boxes:
        if box is None:
            pieces.append(None)
            continue
        sel = {"y": box[0], "x": box[1]}
        parts = [velocity.isel(sel).data] + [unit[c].isel(sel).data for c in _LOS]
        parts.append(quality.isel(sel).data if quality is not None else None)
        pieces.append(parts)
    (computed,) = dask.compute(pieces)
    out = FrameStations(
        ids=np.asarray(station_ids, dtype=object),
        median=np.full(n, np.nan),
        sigma=np.full(n, np.nan),
        gradient=np.full(n, np.nan),
        n_pixels=np.zeros(n, dtype=np.int64),
        unit=np.full((n, 3), np.nan),
        valid=np.zeros(n, dtype=bool),
    )
    for i, (box, parts) in enumerate(zip(boxes, computed, strict=True)):
        if box is None:
            continue
        vel, ue, un, uu, q = parts
        vel = np.where(np.isfinite(ue) & np.isfinite(uu), vel, np.nan)
        s = sample_station_windows(
            vel,
            lon[box[1]],
            lat[box[0]],
            station_lon[i : i + 1],
            station_lat[i : i + 1],
            radius_m=radius_m,
            min_pixels=min_pixels,
            quality=q,
            min_quality=min_quality,
            projected=projected,
        )
        out.median[i], out.sigma[i] = s.median[0], s.sigma[0]
        out.gradient[i], out.n_pixels[i], out.valid[i] = (
            s.max_gradient[0],
            s.n_pixels[0],
            s.valid[0],
        )
        if s.valid[0]:
            out.unit[i] = [float(np.nanmedian(c)) for c in (ue, un, uu)]
    out.valid &= np.all(np.isfinite(out.unit), axis=1)
    return out
