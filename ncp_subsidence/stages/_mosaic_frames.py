"""Private to stage ``mosaic``: the frames' lazy inputs, windows and the product grid, and the
GNSS ties (step 2 of the stage's module docstring).

A frame is a dict (:func:`open_frame`): its name and attrs, CRS (None: EPSG:4326) and lon/lat
box, grid coordinates and half-pixels, the lazy vertical velocity, sigma, coherence,
vertical displacement and footprint, and whether ``adjust`` fitted it.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import xarray as xr

from ..io.projection import (
    dataset_crs,
    frame_lonlat_bounds,
    is_geographic,
    lonlat_box_in_frame,
    lonlat_to_xy,
)
from ..kernels.adjust import (
    EARTH_RADIUS_KM,
    GnssTies,
    grid_spacing_km,
    local_coordinates_km,
    projected_spacing_km,
)
from ..kernels.aggregate import snap_bounds_out
from ..kernels.geometry import plate_velocity_enu
from ..kernels.trends import decimal_year
from ..shared import sample_frame_stations, station_window

__all__ = [
    "frame_extents_km",
    "frame_window",
    "gnss_ties",
    "open_frame",
    "product_grid",
]

_KM_PER_DEG = EARTH_RADIUS_KM * math.pi / 180.0
_M_PER_DEG = 1000.0 * _KM_PER_DEG


def _window(coord: np.ndarray, lo: float, hi: float, pad: float) -> slice | None:
    idx = np.flatnonzero((coord >= lo - pad) & (coord <= hi + pad))
    return slice(int(idx[0]), int(idx[-1]) + 1) if idx.size >= 2 else None


def frame_window(
    f: dict[str, Any],
    west: float,
    south: float,
    east: float,
    north: float,
    pad_pixels: int = 0,
    pad_deg: float = 0.0,
) -> tuple[slice | None, slice | None]:
    """Row and column slices of a frame's pixels covering a lon/lat box, padded.

    The pad is ``pad_pixels`` of the frame's pixels plus ``pad_deg`` degrees (as metres,
    ``pad_deg * 111.2 km``, on a projected frame). On an EPSG:4326 frame the box is cut from the
    coordinates; on a projected one the box's outline is transformed to the frame's x/y first.
    """
    pad_y = pad_pixels * (2 * f["hy"]) + pad_deg * (1.0 if f["crs"] is None else _M_PER_DEG)
    pad_x = pad_pixels * (2 * f["hx"]) + pad_deg * (1.0 if f["crs"] is None else _M_PER_DEG)
    if f["crs"] is None:
        return _window(f["y"], south, north, pad_y), _window(f["x"], west, east, pad_x)
    xmin, ymin, xmax, ymax = lonlat_box_in_frame(f["crs"], west, south, east, north)
    return _window(f["y"], ymin, ymax, pad_y), _window(f["x"], xmin, xmax, pad_x)


def open_frame(ctx: Any, name: str) -> dict[str, Any]:
    """One frame's lazy inputs on its own grid, its CRS (None: EPSG:4326) and lon/lat box."""
    adj = ctx.open("adjust", name)
    geo = ctx.open("ingest", f"ifg/{name}")[["los_east", "los_north", "los_up"]]
    crs = dataset_crs(adj)
    projected = not is_geographic(crs)
    geo = geo.assign_coords(y=adj["y"], x=adj["x"])
    chunks = dict(zip(adj["vertical_velocity"].dims, adj["vertical_velocity"].chunks, strict=True))
    geo = geo.chunk(chunks)
    y, x = adj["y"].values, adj["x"].values
    u_up = geo["los_up"]
    cv = adj.attrs.get("correction_cv_rmse")
    sigma_corr = float(cv) if cv is not None else 2.0
    std = adj["velocity_std"] if "velocity_std" in adj else xr.zeros_like(u_up)
    sigma = (np.sqrt(std**2 + sigma_corr**2) / np.abs(u_up)).astype(np.float32)
    hy, hx = abs(y[1] - y[0]) / 2, abs(x[1] - x[0]) / 2
    if projected:
        dy_km, dx_km = projected_spacing_km(x, y)
        bounds = frame_lonlat_bounds(crs, x, y)
    else:
        dy_km, dx_km = grid_spacing_km(x, y)
        bounds = (x.min() - hx, y.min() - hy, x.max() + hx, y.max() + hy)
    return {
        "name": name,
        "attrs": adj.attrs,
        "crs": crs if projected else None,
        "bounds": bounds,
        "y": y,
        "x": x,
        "hy": hy,
        "hx": hx,
        "dy_km": dy_km,
        "dx_km": dx_km,
        "time": adj["time"].values,
        "t": decimal_year(adj["time"].values),
        "geo": geo,
        "vertical": adj["vertical_velocity"],
        "sigma": sigma,
        "coherence": adj.get("temporal_coherence"),
        "displacement": (adj["displacement"] / u_up).astype(np.float32),
        "footprint": u_up.notnull(),
        "fitted": not int(adj.attrs.get("needs_overlap_adjustment", 0)),
    }


def product_grid(
    frames: list[dict[str, Any]], res: float
) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """The product grid over the union of the frames: ``lat`` (descending), ``lon`` cell centres
    (degrees, cell-registered, ``res`` degrees) and the mosaic origin (lon, lat) of the local
    km coordinates. A projected frame's lon/lat box is snapped out to the product cells first
    (its ``bounds`` updated)."""
    for f in frames:  # a projected frame's lon/lat box, snapped out to the product cells
        if f["crs"] is not None:
            f["bounds"] = snap_bounds_out(f["bounds"], res)
    west = min(f["bounds"][0] for f in frames)
    east = max(f["bounds"][2] for f in frames)
    south = min(f["bounds"][1] for f in frames)
    north = max(f["bounds"][3] for f in frames)
    ny, nx = round((north - south) / res), round((east - west) / res)
    lat = north - res * (np.arange(ny) + 0.5)
    lon = west + res * (np.arange(nx) + 0.5)
    origin = (float((west + east) / 2), float((south + north) / 2))
    return lat, lon, origin


def frame_extents_km(
    frames: list[dict[str, Any]], origin: tuple[float, float]
) -> list[tuple[float, float]]:
    """Each frame's south and north edge in the mosaic's local km (``y``), for the spline basis."""
    extents = []
    for f in frames:
        w, so, e, n = f["bounds"]
        lon_c = float(np.mean(f["x"])) if f["crs"] is None else (w + e) / 2
        _, south_km = local_coordinates_km(lon_c, float(so), *origin)
        _, north_km = local_coordinates_km(lon_c, float(n), *origin)
        extents.append((float(south_km), float(north_km)))
    return extents


def _tie_radius(opts: Any, grid: xr.DataArray, projected: bool = False) -> float:
    """GNSS tie window: ``mosaic.gnss_radius_m``, grown to hold ``gnss_min_pixels`` pixels."""
    window = SimpleNamespace(
        radius_m=opts.gnss_radius_m, min_pixels=opts.gnss_min_pixels, max_gradient_mm_yr_km=1.0
    )
    return station_window(window, grid["x"].values, grid["y"].values, projected=projected)[0]


def gnss_ties(ctx: Any, frames: list[dict[str, Any]], opts: Any, origin) -> list[GnssTies]:
    """The training stations of each frame (never the held-out ones recorded by ``adjust``):
    window medians of the frame's vertical velocity against the GNSS up velocity in the same
    Eurasia-fixed frame as ``adjust`` used, local km at the mosaic origin."""
    gnss = ctx.open("ingest", "gnss").load()
    ids = np.asarray([str(s) for s in gnss["station"].values], dtype=object)
    slon, slat = gnss["lon"].values.astype(float), gnss["lat"].values.astype(float)
    out = []
    for k, f in enumerate(frames):
        train = set(f["attrs"].get("train_stations", []))
        use = np.array([i in train for i in ids])
        if not use.any():
            continue
        omega = np.asarray(f["attrs"]["euler_vector_mas_per_yr"], float)
        vu_ef = gnss["vu"].values[use] - plate_velocity_enu(slon[use], slat[use], omega)[:, 2]
        projected = f["crs"] is not None
        if projected:
            sx, sy = lonlat_to_xy(f["crs"], slon[use], slat[use])
        else:
            sx, sy = slon[use], slat[use]
        st = sample_frame_stations(
            f["vertical"],
            f["geo"],
            sx,
            sy,
            ids[use],
            radius_m=_tie_radius(opts, f["vertical"], projected),
            min_pixels=opts.gnss_min_pixels,
            quality=f["coherence"],
            min_quality=opts.min_coherence,
            projected=projected,
        )
        ok = st.valid
        if not ok.any():
            continue
        xk, yk = local_coordinates_km(slon[use][ok], slat[use][ok], *origin)
        sigma = np.sqrt(gnss["su"].values[use][ok] ** 2 + st.sigma[ok] ** 2)
        out.append(GnssTies(k, xk, yk, st.median[ok], vu_ef[ok], np.maximum(sigma, 1e-3)))
    return out
