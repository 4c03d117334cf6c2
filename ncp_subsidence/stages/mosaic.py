"""Stage ``mosaic``: overlap adjustment across frames and feathered blending (SCIENCE.md 4).

Reads ``adjust/<frame>`` (Eurasia-fixed, GNSS-adjusted LOS products with ``vertical_velocity``),
the frame geometry ``ingest/ifg/<frame>`` (``los_up``) and ``ingest/gnss``. Graph building only;
the numbers live in :mod:`ncp_subsidence.kernels.adjust`.

1. **Overlap samples** (SCIENCE.md 4.3 step 2): every pair of frames whose grids intersect is
   sampled on a regular grid of ``mosaic.overlap_spacing_km`` cells over the intersection; a
   cell's value is the median of the frame's vertical-velocity pixels in it with temporal
   coherence >= ``mosaic.min_coherence`` (only the overlap strips are computed). Where one
   frame is on a projected grid, both are compared at the same points: the other frame's pixel
   centres, where the projected one is sampled bilinearly (medians of two pixel sets that do
   not coincide differ wherever the velocity has a gradient).
2. **GNSS ties**: the training stations of each frame (never the held-out ones recorded by
   ``adjust``), vertical velocity in the same Eurasia-fixed frame as ``adjust`` used.
3. **Sparse least squares** (:func:`~ncp_subsidence.kernels.adjust.adjust_overlaps`): per frame
   adjusted in Stage 3 ``mosaic.adjusted_frame_model``, by default a cubic spline of the north
   coordinate ``k_f(y)`` (knots every ``mosaic.along_track_knot_km``, roughness penalty
   ``mosaic.along_track_roughness``; constant across track) that follows what the frame's GNSS
   fit left along its overlaps, or SCIENCE.md 4.3's offset ``k_f = a_f``, or a plane; a plane
   ``a_f + b_f x + c_f y`` per frame without GNSS (flagged by ``adjust``); GNSS ties weighted
   ``mosaic.gnss_weight``, damping ``mosaic.damping``.
4. **Blending** onto the output grid (``mosaic.resolution_deg`` over the union of the frames,
   cell-registered, ``lat`` descending): per output block a task bilinearly resamples each
   frame's window, adds ``k_f`` and blends with ``W_f = feather_f / sigma_f^2``
   (:func:`~ncp_subsidence.kernels.adjust.blend_frames`); the feather (distance to the frame
   edge, capped at ``mosaic.feather_km``) is computed on each frame's own grid with
   ``map_overlap``. ``sigma_f = sqrt(velocity_std^2 + CV_rmse^2) / u_up``.
   A frame on a projected grid (HyP3's UTM zones, ``x``/``y`` in metres; ``adjust`` keeps each
   frame's CRS) is resampled the same way, onto the EPSG:4326 product grid: the block's cell
   centres are transformed to the frame's x/y (pyproj) and interpolated bilinearly on the
   frame's regular grid (:func:`~ncp_subsidence.kernels.adjust.bilinear_sample`), inside the
   block's task, so memory stays bounded by the block. Its lon/lat box (the transformed outline
   of its grid, snapped out to the product cells) sets the product grid and the overlap boxes;
   overlap cells are lon/lat cells holding the pixels whose centres fall in them.
5. **Time series**: each frame's vertical displacement ``d / u_up`` is resampled to the mid-month
   epochs common to every frame (:func:`~ncp_subsidence.kernels.adjust.resample_to_epochs`),
   corrected by ``k_f (t - t_0)``, re-zeroed at the first common month and blended with the
   velocity weights.

Dataset written (``mosaic/<version>``, dims ``time, lat, lon``): ``vertical_velocity`` (mm/yr),
``velocity_std`` (mm/yr), ``n_frames`` (int16), ``vertical_displacement`` (mm, relative to the
first common month). Attrs: ``frames``, ``frame_corrections`` (JSON: per frame model, plane
parameters and, for ``along_track``, the spline's knots and coefficients), ``overlap_edges`` (JSON: per edge n, rms before/after in mm/yr),
``overlap_rms_before``/``overlap_rms_after`` (max over the used edges), ``plate_model``,
``euler_vector_mas_per_yr``, ``reference_month``, ``n_gnss_ties``, ``unconstrained_components``.

References
----------
Mi, J., Wu, Z., Wang, X., Bai, L., Li, Z., Lu, Z. (2026). Mapping wide-area land subsidence from
groundwater use in the North China plain by machine learning-based InSAR adjustment. Remote Sens.
Environ. doi:10.1016/j.rse.2025.115226.
Paige, C. C., Saunders, M. A. (1982). LSQR. ACM TOMS 8(1), 43-71.
"""

from __future__ import annotations

import json
import logging
import math
from types import SimpleNamespace
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage as ndi

from ..errors import DataError
from ..io.cube import SCHEMAS, with_crs
from ..io.projection import (
    dataset_crs,
    frame_lonlat_bounds,
    is_geographic,
    lonlat_box_in_frame,
    lonlat_to_xy,
    xy_to_lonlat,
)
from ..kernels.adjust import (
    EARTH_RADIUS_KM,
    GnssTies,
    OverlapSamples,
    adjust_overlaps,
    bilinear_sample,
    blend_frames,
    evaluate_correction,
    feather_weights,
    grid_spacing_km,
    local_coordinates_km,
    projected_spacing_km,
    resample_to_epochs,
)
from ..kernels.geometry import plate_velocity_enu
from ..kernels.trends import decimal_year
from ..shared import sample_frame_stations, station_window

__all__ = ["STAGE", "MosaicStage", "bilinear_regrid", "common_months"]

log = logging.getLogger(__name__)

_KM_PER_DEG = EARTH_RADIUS_KM * math.pi / 180.0
_M_PER_DEG = 1000.0 * _KM_PER_DEG


def bilinear_regrid(values, y_src, x_src, y_out, x_out):
    """Bilinear resampling of a cell-registered grid to new cell centres, NaN off the grid.

    Parameters
    ----------
    values : ndarray, shape (..., ny, nx)
    y_src : ndarray, shape (ny,), monotonic (either direction); x_src : shape (nx,), monotonic
    y_out : ndarray, shape (my,); x_out : shape (mx,)

    Returns
    -------
    ndarray, shape (..., my, mx), float64
        Points more than half a source cell outside the source grid are NaN; inside the outer
        half cell the edge value is held. NaN inputs propagate to the outputs that use them.
    """
    z = np.asarray(values, dtype=np.float64)
    ys, xs = np.asarray(y_src, float), np.asarray(x_src, float)
    if ys.size > 1 and ys[0] > ys[-1]:
        ys, z = ys[::-1], z[..., ::-1, :]
    if xs.size > 1 and xs[0] > xs[-1]:
        xs, z = xs[::-1], z[..., :, ::-1]
    out_shape = (*z.shape[:-2], np.size(y_out), np.size(x_out))
    if ys.size < 2 or xs.size < 2:
        return np.full(out_shape, np.nan)
    hy, hx = abs(ys[1] - ys[0]) / 2, abs(xs[1] - xs[0]) / 2
    yo, xo = np.asarray(y_out, float), np.asarray(x_out, float)
    out_y = (yo < ys[0] - hy) | (yo > ys[-1] + hy)
    out_x = (xo < xs[0] - hx) | (xo > xs[-1] + hx)
    yc, xc = np.clip(yo, ys[0], ys[-1]), np.clip(xo, xs[0], xs[-1])
    iy = np.clip(np.searchsorted(ys, yc) - 1, 0, ys.size - 2)
    ix = np.clip(np.searchsorted(xs, xc) - 1, 0, xs.size - 2)
    fy = ((yc - ys[iy]) / (ys[iy + 1] - ys[iy]))[:, None]
    fx = ((xc - xs[ix]) / (xs[ix + 1] - xs[ix]))[None, :]
    iy2, ix2 = iy[:, None], ix[None, :]
    out = (
        z[..., iy2, ix2] * (1 - fy) * (1 - fx)
        + z[..., iy2, ix2 + 1] * (1 - fy) * fx
        + z[..., iy2 + 1, ix2] * fy * (1 - fx)
        + z[..., iy2 + 1, ix2 + 1] * fy * fx
    )
    out[..., out_y, :] = np.nan
    out[..., :, out_x] = np.nan
    return out


def common_months(first: list[np.datetime64], last: list[np.datetime64]) -> np.ndarray:
    """Mid-month epochs inside every frame's acquisition span (datetime64[ns]).

    Parameters
    ----------
    first, last : list of datetime64, per frame first and last acquisition

    Returns
    -------
    ndarray of datetime64[ns], shape (n_month,), increasing; empty when the spans do not meet
    """
    lo, hi = max(first), min(last)
    months = pd.period_range(pd.Timestamp(lo).to_period("M"), pd.Timestamp(hi).to_period("M"))
    start = months.to_timestamp()
    mid = start + ((months + 1).to_timestamp() - start) / 2
    mid = np.asarray(mid, dtype="datetime64[ns]")
    return mid[(mid >= np.datetime64(lo, "ns")) & (mid <= np.datetime64(hi, "ns"))]


def _feather_block(fp, *, dy_km, dx_km, cap_km):
    return feather_weights(fp, dy_km=dy_km, dx_km=dx_km, cap_km=cap_km, edge_at_border=True)


def _blend_series(series, feathers, sigmas) -> np.ndarray:
    """Blend displacement series (time, lat, lon) of several frames with the velocity weights.

    The same weights as :func:`blend_frames` (feather / sigma^2 where both are valid, and the
    value finite), accumulated frame by frame in float32, so memory stays a few series in size.
    """
    num = np.zeros(series[0].shape, np.float32)
    den = np.zeros(series[0].shape, np.float32)
    for ts, fw, sg in zip(series, feathers, sigmas):
        w = np.where(
            np.isfinite(sg) & (sg > 0) & (fw > 0), fw / np.where(sg > 0, sg, 1.0) ** 2, 0.0
        )
        ok = np.isfinite(ts)
        num += np.where(ok, ts, 0.0).astype(np.float32) * w.astype(np.float32)
        den += ok * w.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, np.nan)


def _blend_block(lat, lon, frames, months_t, origin):
    """One output block: resample each frame's window, correct, blend (see the module doc).

    A frame on a projected grid (``fr["crs"]`` set) is sampled at the block's cell centres
    transformed to its x/y (bilinear on its regular grid); an EPSG:4326 frame is regridded.
    """
    vals, feath, sigs, series = [], [], [], []
    x_km, y_km = local_coordinates_km(lon[None, :], lat[:, None], *origin)
    for fr in frames:
        if fr.get("crs") is not None:
            xq, yq = lonlat_to_xy(fr["crs"], lon[None, :], lat[:, None])

            def regrid(a, fr=fr, xq=xq, yq=yq):
                return bilinear_sample(a, fr["y"], fr["x"], yq, xq)
        else:

            def regrid(a, fr=fr):
                return bilinear_regrid(a, fr["y"], fr["x"], lat, lon)

        rg = [regrid(a) for a in (fr["v"], fr["s"], fr["w"])]
        k = evaluate_correction(fr["k"], x_km, y_km)
        vals.append(rg[0] + k)
        sigs.append(rg[1])
        feath.append(np.nan_to_num(rg[2], nan=0.0))
        if months_t.size:
            ts = resample_to_epochs(np.moveaxis(fr["d"], 0, -1), fr["t"], months_t)
            ts = regrid(np.moveaxis(ts, -1, 0))
            ts = ts + k[None] * (months_t - months_t[0])[:, None, None]
            series.append((ts - ts[:1]).astype(np.float32))
    shape = (lat.size, lon.size)
    if not frames:
        nan = np.full(shape, np.nan, np.float32)
        return (
            nan,
            nan,
            np.zeros(shape, np.int16),
            np.full((months_t.size, *shape), np.nan, np.float32),
        )
    v, s, n = blend_frames(np.stack(vals), np.stack(feath), np.stack(sigs))
    d = _blend_series(series, feath, sigs) if months_t.size else np.empty((0, *shape))
    return v.astype(np.float32), s.astype(np.float32), n.astype(np.int16), d.astype(np.float32)


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


def _window(coord: np.ndarray, lo: float, hi: float, pad: float) -> slice | None:
    idx = np.flatnonzero((coord >= lo - pad) & (coord <= hi + pad))
    return slice(int(idx[0]), int(idx[-1]) + 1) if idx.size >= 2 else None


def _frame_window(
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


def _strip(
    f: dict[str, Any], box: tuple[float, float, float, float], t0: float, t1: float, pad: int = 0
) -> tuple[np.ndarray, ...] | None:
    """A frame's pixels covering a lon/lat box, computed (small: an overlap strip).

    Returns ``y``, ``x`` (the window's coordinates, frame CRS), and ``(ny, nx)`` arrays of the
    vertical velocity over ``[t0, t1]`` (:func:`_window_velocity`, mm/yr), its sigma (mm/yr)
    and temporal coherence (None without it); None when the frame holds no window there.
    """
    sy, sx = _frame_window(f, *box, pad_pixels=pad)
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


def _tie_radius(opts: Any, grid: xr.DataArray, projected: bool = False) -> float:
    """GNSS tie window: ``mosaic.gnss_radius_m``, grown to hold ``gnss_min_pixels`` pixels."""
    window = SimpleNamespace(
        radius_m=opts.gnss_radius_m, min_pixels=opts.gnss_min_pixels, max_gradient_mm_yr_km=1.0
    )
    return station_window(window, grid["x"].values, grid["y"].values, projected=projected)[0]


class MosaicStage:
    """Overlap adjustment and feathered blending onto one grid (see the module docstring)."""

    name = "mosaic"
    reads: tuple[str, ...] = ("adjust", "ingest")

    def run(self, ctx: Any) -> None:
        opts = ctx.options
        names = sorted(d for d in ctx.upstream_datasets("adjust") if d != ".")
        if not names:
            raise DataError("the adjust product has no frame datasets; run stage 'adjust' first")
        frames = [self._frame(ctx, f) for f in names]
        res = opts.resolution_deg
        for f in frames:  # a projected frame's lon/lat box, snapped out to the product cells
            if f["crs"] is not None:
                w, so, e, n = f["bounds"]
                f["bounds"] = (
                    math.floor(w / res + 1e-9) * res,
                    math.floor(so / res + 1e-9) * res,
                    math.ceil(e / res - 1e-9) * res,
                    math.ceil(n / res - 1e-9) * res,
                )
        west = min(f["bounds"][0] for f in frames)
        east = max(f["bounds"][2] for f in frames)
        south = min(f["bounds"][1] for f in frames)
        north = max(f["bounds"][3] for f in frames)
        ny, nx = round((north - south) / res), round((east - west) / res)
        lat = north - res * (np.arange(ny) + 0.5)
        lon = west + res * (np.arange(nx) + 0.5)
        origin = (float((west + east) / 2), float((south + north) / 2))

        overlaps = self._overlaps(frames, opts, origin)
        ties = self._ties(ctx, frames, opts, origin)
        models = [opts.adjusted_frame_model if f["fitted"] else "plane" for f in frames]
        extents = []
        for f in frames:
            w, so, e, n = f["bounds"]
            lon_c = float(np.mean(f["x"])) if f["crs"] is None else (w + e) / 2
            _, south_km = local_coordinates_km(lon_c, float(so), *origin)
            _, north_km = local_coordinates_km(lon_c, float(n), *origin)
            extents.append((float(south_km), float(north_km)))
        result = adjust_overlaps(
            len(frames),
            overlaps,
            ties,
            models=models,
            lambda_gnss=opts.gnss_weight,
            damping=opts.damping,
            min_samples=opts.min_overlap_samples,
            extents_km=extents,
            knot_spacing_km=opts.along_track_knot_km,
            roughness=opts.along_track_roughness,
        )
        months = common_months([f["time"][0] for f in frames], [f["time"][-1] for f in frames])
        months_t = decimal_year(months)
        ds = self._blend(frames, result, lat, lon, months, months_t, origin, opts)
        used = [e for e in result.edges if e["used"]]
        ds.attrs.update(
            {
                "frames": names,
                "frame_corrections": json.dumps(
                    {f["name"]: result.frame_attrs(k) for k, f in enumerate(frames)}
                ),
                "correction_length_scale_km": result.length_scale_km,
                "mosaic_origin_lonlat": list(origin),
                "overlap_edges": json.dumps(
                    [{**e, "frames": [names[i] for i in e["frames"]]} for e in result.edges]
                ),
                "overlap_rms_before": max((e["rms_before"] for e in used), default=None),
                "overlap_rms_after": max((e["rms_after"] for e in used), default=None),
                "unconstrained_components": list(result.unconstrained_components),
                "n_gnss_ties": int(sum(np.isfinite(t.v_gnss).sum() for t in ties)),
                "plate_model": frames[0]["attrs"].get("plate_model"),
                "euler_vector_mas_per_yr": frames[0]["attrs"].get("euler_vector_mas_per_yr"),
                "reference_month": str(months[0]) if months.size else None,
            }
        )
        log.info(
            "mosaic: %d frames, corrections %s, overlap RMS %s -> %s mm/yr",
            len(frames),
            result.models,
            ds.attrs["overlap_rms_before"],
            ds.attrs["overlap_rms_after"],
        )
        ctx.write(None, ds, region_dim="lat")

    # ----------------------------------------------------------------------------------------

    @staticmethod
    def _frame(ctx: Any, name: str) -> dict[str, Any]:
        """One frame's lazy inputs on its own grid, its CRS (None: EPSG:4326) and lon/lat box."""
        adj = ctx.open("adjust", name)
        geo = ctx.open("ingest", f"ifg/{name}")[["los_east", "los_north", "los_up"]]
        crs = dataset_crs(adj)
        projected = not is_geographic(crs)
        geo = geo.assign_coords(y=adj["y"], x=adj["x"])
        chunks = dict(
            zip(adj["vertical_velocity"].dims, adj["vertical_velocity"].chunks, strict=True)
        )
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

    @staticmethod
    def _overlaps(frames, opts, origin) -> list[OverlapSamples]:
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
                fb = frames[j]
                lo0 = max(fa["bounds"][0], fb["bounds"][0])
                lo1 = min(fa["bounds"][2], fb["bounds"][2])
                la0 = max(fa["bounds"][1], fb["bounds"][1])
                la1 = min(fa["bounds"][3], fb["bounds"][3])
                if lo1 <= lo0 or la1 <= la0:
                    continue
                dlat = opts.overlap_spacing_km / _KM_PER_DEG
                dlon = dlat / math.cos(math.radians((la0 + la1) / 2))
                nlat, nlon = max(int((la1 - la0) / dlat), 1), max(int((lo1 - lo0) / dlon), 1)
                box = (lo0, la0, lo1, la1)
                index = np.arange(1, nlat * nlon + 1)

                def cells(
                    lat_px, lon_px, ok, nlat=nlat, nlon=nlon, la0=la0, lo0=lo0, dlat=dlat, dlon=dlon
                ):
                    iy = np.floor((lat_px - la0) / dlat).astype(int)
                    ix = np.floor((lon_px - lo0) / dlon).astype(int)
                    inside = ok & (iy >= 0) & (iy < nlat) & (ix >= 0) & (ix < nlon)
                    return inside, np.where(inside, iy * nlon + ix + 1, 0)

                def medians(v, s, inside, labels, index=index):
                    count = ndi.sum(inside, labels, index)
                    med = np.where(count > 0, ndi.median(np.nan_to_num(v), labels, index), np.nan)
                    sg = np.where(count > 0, ndi.median(np.nan_to_num(s), labels, index), np.nan)
                    return med, sg

                meds, sigs = [], []
                # velocities over the common acquisition window (SCIENCE.md 4.3 edge cases):
                # slopes over different spans differ wherever the motion is not linear
                t0, t1 = max(fa["t"][0], fb["t"][0]), min(fa["t"][-1], fb["t"][-1])
                if fa["crs"] is None and fb["crs"] is None:
                    for f in (fa, fb):
                        strip = _strip(f, box, t0, t1)
                        if strip is None:
                            break
                        y, x, v, s, q = strip
                        ok = np.isfinite(v) & (q >= opts.min_coherence if q is not None else True)
                        inside, labels = cells(y[:, None], x[None, :], ok)
                        med, sg = medians(v, s, inside, labels)
                        meds.append(med)
                        sigs.append(sg)
                else:
                    host, guest = (
                        (fb, fa) if fa["crs"] is not None and fb["crs"] is None else (fa, fb)
                    )
                    pair = _strip_at(host, guest, box, t0, t1, opts.min_coherence)
                    if pair is not None:
                        lat_px, lon_px, ok, (vh, sh), (vg, sg_) = pair
                        inside, labels = cells(lat_px, lon_px, ok)
                        by_frame = {
                            id(host): medians(vh, sh, inside, labels),
                            id(guest): medians(vg, sg_, inside, labels),
                        }
                        for f in (fa, fb):
                            meds.append(by_frame[id(f)][0])
                            sigs.append(by_frame[id(f)][1])
                if len(meds) < 2:
                    continue
                cy = la0 + dlat * (np.arange(nlat) + 0.5)
                cx = lo0 + dlon * (np.arange(nlon) + 0.5)
                xk, yk = local_coordinates_km(cx[None, :], cy[:, None], *origin)
                with np.errstate(divide="ignore", invalid="ignore"):
                    w = 1.0 / (sigs[0] ** 2 + sigs[1] ** 2)
                out.append(OverlapSamples(i, j, xk.ravel(), yk.ravel(), meds[0], meds[1], w))
        return out

    @staticmethod
    def _ties(ctx, frames, opts, origin) -> list[GnssTies]:
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

    @staticmethod
    def _blend(frames, result, lat, lon, months, months_t, origin, opts) -> xr.Dataset:
        feathers = []
        for f in frames:
            fp = f["footprint"].data
            depth = math.ceil(opts.feather_km / max(min(f["dy_km"], f["dx_km"]), 1e-9)) + 1
            depth = min(depth, *(min(c) for c in fp.chunks))
            feathers.append(
                da.map_overlap(
                    _feather_block,
                    fp,
                    depth=depth,
                    boundary="none",
                    dtype=np.float64,
                    dy_km=f["dy_km"],
                    dx_km=f["dx_km"],
                    cap_km=opts.feather_km,
                )
            )
        step = opts.chunk
        res = opts.resolution_deg
        rows_v, rows_s, rows_n, rows_d = [], [], [], []
        for r0 in range(0, lat.size, step):
            la = lat[r0 : r0 + step]
            cols = ([], [], [], [])
            for c0 in range(0, lon.size, step):
                lo = lon[c0 : c0 + step]
                parts = []
                for k, f in enumerate(frames):
                    sy, sx = _frame_window(
                        f, lo.min(), la.min(), lo.max(), la.max(), pad_pixels=1, pad_deg=res
                    )
                    if sy is None or sx is None:
                        continue
                    parts.append(
                        {
                            "crs": f["crs"],
                            "y": f["y"][sy],
                            "x": f["x"][sx],
                            "t": f["t"],
                            "v": f["vertical"].data[sy, sx],
                            "s": f["sigma"].data[sy, sx],
                            "w": feathers[k][sy, sx],
                            "d": f["displacement"].data[:, sy, sx],
                            "k": result.frame_spec(k),
                        }
                    )
                out = dask.delayed(_blend_block, nout=4)(la, lo, parts, months_t, origin)
                shape = (la.size, lo.size)
                cols[0].append(da.from_delayed(out[0], shape, dtype=np.float32))
                cols[1].append(da.from_delayed(out[1], shape, dtype=np.float32))
                cols[2].append(da.from_delayed(out[2], shape, dtype=np.int16))
                cols[3].append(da.from_delayed(out[3], (months.size, *shape), dtype=np.float32))
            rows_v.append(cols[0])
            rows_s.append(cols[1])
            rows_n.append(cols[2])
            rows_d.append(cols[3])
        ds = xr.Dataset(
            {
                "vertical_velocity": (("lat", "lon"), da.block(rows_v)),
                "velocity_std": (("lat", "lon"), da.block(rows_s)),
                "n_frames": (
                    ("lat", "lon"),
                    da.block(rows_n),
                    {"units": "1", "long_name": "frames contributing to the cell"},
                ),
                "vertical_displacement": (("time", "lat", "lon"), da.block([rows_d])),
            },
            coords={"time": months, "lat": lat, "lon": lon},
        )
        ds = SCHEMAS["mosaic"].conform(ds)
        ds["vertical_displacement"].attrs["long_name"] = (
            "vertical displacement, positive up, relative to the first common month"
        )
        return with_crs(ds)


STAGE = MosaicStage()
