"""Private to stage ``mosaic``: the overlap samples (step 1 of the stage's module docstring).

Every pair of frames whose lon/lat boxes intersect is sampled on a regular grid of
``mosaic.overlap_spacing_km`` cells over the intersection: per cell the median of each frame's
vertical velocity (over the common acquisition window) and of its sigma, over the coherent
pixels; only the overlap strips are computed.
"""

from __future__ import annotations

import math
from typing import Any

import dask
import numpy as np
import xarray as xr

from ..io.projection import lonlat_to_xy, xy_to_lonlat
from ..kernels.adjust import (
    OverlapSamples,
    bilinear_sample,
    local_coordinates_km,
    overlap_cell_medians,
)
from ._mosaic_frames import _KM_PER_DEG, frame_window

__all__ = ["overlap_samples"]


def _window_velocity(frame: dict[str, Any], t0: float, t1: float) -> xr.DataArray:
    """Vertical velocity (mm/yr) of a frame over ``[t0, t1]`` (decimal years), lazily.

    The OLS slope of the frame's vertical displacement on its dates inside the window; the
    full-span velocity when fewer than 3 dates fall inside.
    """
    t = np.asarray(frame["t"], dtype=float)
    inside = np.flatnonzero((t >= t0 - 1e-9) & (t <= t1 + 1e-9))
    if inside.size < 3:
        return frame["vertical"]
    tc = t[inside] - t[inside].mean()
    disp = frame["displacement"].isel(time=inside)
    weights = xr.DataArray(tc / float(np.sum(tc * tc)), dims="time")
    return (disp * weights).sum("time", skipna=False).astype(np.float32)


def _strip(
    f: dict[str, Any], box: tuple[float, float, float, float], t0: float, t1: float, pad: int = 0
) -> tuple[np.ndarray, ...] | None:
    """A frame's pixels covering a lon/lat box, computed (small: an overlap strip).

    Returns ``y``, ``x`` (the window's coordinates, frame CRS), and ``(ny, nx)`` arrays of the
    vertical velocity over ``[t0, t1]`` (:func:`_window_velocity`, mm/yr), its sigma (mm/yr)
    and temporal coherence (None without it); None when the frame holds no window there.
    """
    sy, sx = frame_window(f, *box, pad_pixels=pad)
    if sy is None or sx is None:
        return None
    velocity = _window_velocity(f, t0, t1).isel(y=sy, x=sx)
    parts = [velocity.data, f["sigma"].isel(y=sy, x=sx).data]
    coh = f["coherence"]
    parts.append(coh.isel(y=sy, x=sx).data if coh is not None else None)
    v, s, q = dask.compute(*parts)
    return f["y"][sy], f["x"][sx], v, s, q


def _strip_at(
    host: dict[str, Any],
    guest: dict[str, Any],
    box: tuple[float, float, float, float],
    t0: float,
    t1: float,
    min_coherence: float,
) -> tuple[Any, ...] | None:
    """Both frames of an overlap at the host frame's pixel centres inside a lon/lat box.

    The guest frame's strip (one pixel wider) is sampled bilinearly at the host's pixel
    centres transformed to its CRS (:func:`~ncp_subsidence.kernels.adjust.bilinear_sample`).

    Returns
    -------
    lat, lon : ndarray, shape (ny, nx), degrees of the host's pixel centres
    ok : ndarray of bool, shape (ny, nx), valid and coherent in both frames
    (v, s) host, (v, s) guest : ndarrays, shape (ny, nx), mm/yr
    or None when either frame holds no window in the box.
    """
    strip_h = _strip(host, box, t0, t1)
    strip_g = _strip(guest, box, t0, t1, pad=1)
    if strip_h is None or strip_g is None:
        return None
    yh, xh, vh, sh, qh = strip_h
    yg, xg, vg, sg, qg = strip_g
    if host["crs"] is None:
        lat, lon = np.broadcast_arrays(yh[:, None], xh[None, :])
    else:
        lon, lat = xy_to_lonlat(host["crs"], xh[None, :], yh[:, None])
    gx, gy = (lon, lat) if guest["crs"] is None else lonlat_to_xy(guest["crs"], lon, lat)
    vg, sg = (bilinear_sample(a, yg, xg, gy, gx) for a in (vg, sg))
    ok = np.isfinite(vh) & np.isfinite(vg)
    for q, y, x in ((qh, None, None), (qg, yg, xg)):
        if q is not None:
            q = q if y is None else bilinear_sample(q, y, x, gy, gx)
            ok &= np.nan_to_num(q, nan=-1.0) >= min_coherence
    return lat, lon, ok, (vh, sh), (vg, sg)


def overlap_samples(
    frames: list[dict[str, Any]], opts: Any, origin: tuple[float, float]
) -> list[OverlapSamples]:
    """Cell medians of both frames of every overlapping pair (module doc, step 1).

    Two EPSG:4326 frames: each frame's medians over its own coherent pixels in the cell.
    An edge with a projected frame: both frames at the same points, the pixel centres of
    one frame (the geographic one where there is one), the other bilinearly sampled there
    (:func:`_strip_at`); pixels of two grids that do not coincide would put different parts
    of a cell into the two medians, a bias wherever the velocity has a gradient.
    """
    out = []
    for i, fa in enumerate(frames):
        for j in range(i + 1, len(frames)):
            edge = _edge_samples(fa, frames[j], i, j, opts, origin)
            if edge is not None:
                out.append(edge)
    return out


def _edge_samples(
    fa: dict[str, Any],
    fb: dict[str, Any],
    i: int,
    j: int,
    opts: Any,
    origin: tuple[float, float],
) -> OverlapSamples | None:
    """The samples of the overlap of frames ``i`` (``fa``) and ``j`` (``fb``); None without one."""
    lo0 = max(fa["bounds"][0], fb["bounds"][0])
    lo1 = min(fa["bounds"][2], fb["bounds"][2])
    la0 = max(fa["bounds"][1], fb["bounds"][1])
    la1 = min(fa["bounds"][3], fb["bounds"][3])
    if lo1 <= lo0 or la1 <= la0:
        return None
    dlat = opts.overlap_spacing_km / _KM_PER_DEG
    dlon = dlat / math.cos(math.radians((la0 + la1) / 2))
    nlat, nlon = max(int((la1 - la0) / dlat), 1), max(int((lo1 - lo0) / dlon), 1)
    box = (lo0, la0, lo1, la1)
    cells = {"south": la0, "west": lo0, "dlat": dlat, "dlon": dlon, "nlat": nlat, "nlon": nlon}
    meds, sigs = [], []
    # velocities over the common acquisition window (docs/science.md 4.3 edge cases):
    # slopes over different spans differ wherever the motion is not linear
    t0, t1 = max(fa["t"][0], fb["t"][0]), min(fa["t"][-1], fb["t"][-1])
    if fa["crs"] is None and fb["crs"] is None:
        for f in (fa, fb):
            strip = _strip(f, box, t0, t1)
            if strip is None:
                break
            y, x, v, s, q = strip
            ok = np.isfinite(v) & (q >= opts.min_coherence if q is not None else True)
            med, sg = overlap_cell_medians(y[:, None], x[None, :], ok, (v, s), **cells)
            meds.append(med)
            sigs.append(sg)
    else:
        host, guest = (fb, fa) if fa["crs"] is not None and fb["crs"] is None else (fa, fb)
        pair = _strip_at(host, guest, box, t0, t1, opts.min_coherence)
        if pair is not None:
            lat_px, lon_px, ok, (vh, sh), (vg, sg_) = pair
            by_frame = {
                id(host): overlap_cell_medians(lat_px, lon_px, ok, (vh, sh), **cells),
                id(guest): overlap_cell_medians(lat_px, lon_px, ok, (vg, sg_), **cells),
            }
            for f in (fa, fb):
                meds.append(by_frame[id(f)][0])
                sigs.append(by_frame[id(f)][1])
    if len(meds) < 2:
        return None
    cy = la0 + dlat * (np.arange(nlat) + 0.5)
    cx = lo0 + dlon * (np.arange(nlon) + 0.5)
    xk, yk = local_coordinates_km(cx[None, :], cy[:, None], *origin)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = 1.0 / (sigs[0] ** 2 + sigs[1] ** 2)
    return OverlapSamples(i, j, xk.ravel(), yk.ravel(), meds[0], meds[1], w)
