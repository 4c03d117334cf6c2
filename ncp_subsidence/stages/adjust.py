"""Stage ``adjust``: GNSS-based long-wavelength adjustment of each SAR frame (SCIENCE.md 2-3).

Per frame ``f`` of the ``sbas`` product (graph building only; the numbers live in
:mod:`ncp_subsidence.kernels.geometry`, :mod:`ncp_subsidence.kernels.adjust` and
:mod:`ncp_subsidence.models.selection`):

1. **Eurasia-fixed frame** (SCIENCE.md 3.2 step 1, 4.2). The plate-motion LOS term, referenced to
   the SBAS reference point, ``p(x) = u(x) . v_PMM(x) - u(ref) . v_PMM(ref)``, is subtracted
   blockwise: ``v_EF = v_LOS - p``, ``d_EF(t) = d(t) - p (t - t_0)``. GNSS velocities become
   ``v_GNSS - v_PMM``. The plate model is ITRF2014-PMM Eurasia, or an Euler pole fitted to the
   training stations outside the subsidence zones (``plate_model = 'GNSS_regional'``).
2. **Station windows.** Only the small index boxes around the stations are computed
   (:func:`~ncp_subsidence.kernels.adjust.station_window_slices`); the robust window median,
   its MAD sigma and the local gradient come from
   :func:`~ncp_subsidence.kernels.adjust.sample_station_windows`.
3. **Holdout.** Stations are split once for all frames (seeded, stratified by frame,
   :func:`~ncp_subsidence.models.selection.split_holdout_stations`, or the ids given in
   ``adjust.holdout_stations``); held-out stations never enter a fit.
4. **Model selection** on the training residuals ``r = u . v_GNSS,EF - v_EF`` (CV, one-SE rule,
   outlier and steep-gradient rejection; :func:`~ncp_subsidence.models.selection.select_and_fit`).
   The correction is predicted small, on the client, on a coarse grid
   (``adjust.correction_spacing_deg``) and resampled bilinearly blockwise onto the frame.
5. **Apply** ``v_adj = v_EF + c``, ``d_adj(t) = d_EF(t) - m(t) + c (t - t_0)`` (linear-in-time
   correction, SCIENCE.md 3.2), and the vertical-only conversion ``v_U = v_adj / u_U`` (SCIENCE.md
   2.2: valid once the horizontal plate motion is removed). ``m(t)`` is the frame's common mode
   (``adjust.common_mode_filter``, :func:`frame_common_mode`): the median over a spatial sample
   of the linearly detrended series less its smooth interannual trend, which re-references the
   date-to-date part of every series to the frame's median pixel instead of the SBAS reference
   window and so removes that window's atmosphere from every pixel (velocities unchanged).

Projected frames (e.g. HyP3's UTM zones, ``x``/``y`` in metres) are adjusted on their own grid
like EPSG:4326 ones: station positions are transformed to the frame's x/y for the windows
(planar distances in metres), each pixel's lon/lat is computed block by block where the plate
motion needs it, the model is fitted in the same frame-local km coordinates (from lon/lat), and
the coarse correction grid is laid out in the frame's metres.

Datasets written (``adjust/<version>/<frame>``, dims ``time, y, x`` of the sbas grid, its CRS):

``velocity`` (mm/yr, LOS, Eurasia-fixed, adjusted), ``displacement`` (mm, LOS, relative to the
first date), ``common_mode`` (mm, ``time``, the removed ``m``), ``correction`` (mm/yr, LOS, the
added surface ``c``), ``plate_motion_los`` (mm/yr, the referenced plate term removed),
``vertical_velocity`` (mm/yr, up), ``extrapolated`` (uint8, 1 outside the convex hull of the
training stations), and, when the sbas product has them, ``velocity_std`` and
``temporal_coherence``. Attrs: ``frame``, ``crs``, ``plate_model``,
``euler_vector_mas_per_yr``, ``reference_lon``/``reference_lat`` (degrees),
``reference_x``/``reference_y`` (frame CRS), ``selected_model``, ``cv_scheme``, ``cv_table``
(JSON string of every candidate), ``n_gnss_train``, ``n_gnss_holdout``, ``n_gnss_rejected``,
``train_stations``, ``holdout_stations``, ``rejected_stations``,
``holdout_rmse_vertical_before``/``_after`` and ``holdout_rmse_los_before``/``_after`` (mm/yr,
None without holdout stations), ``common_mode_filter`` and ``common_mode_pixels``,
``needs_overlap_adjustment`` (1 for frames without a fit: the mosaic corrects them from their
overlaps with a plane + offset), ``correction`` (JSON of the fitted model's record).
A ``stations.json`` file lists every station per frame with its role and residual.

**GNSS position series** (when ingest wrote ``gnss_series``: ``sources.gnss_series``, or the
twin's). At each frame's held-out stations that have a series, the InSAR displacement series
(the window median per date, :func:`~ncp_subsidence.kernels.adjust.station_window_series`,
vertical-only ``d / u_U``) is compared with the GNSS up series averaged over the days within
:data:`SERIES_HALF_WINDOW_DAYS` of each SAR date
(:func:`~ncp_subsidence.kernels.adjust.window_means`), each less its mean over the dates both
have (:func:`~ncp_subsidence.kernels.adjust.compare_series`), before the adjustment (the sbas
displacement as delivered) and after it (``displacement`` above). The vertical plate motion is
nil, so the GNSS up series needs no Eurasia-fixed term. Attrs: ``gnss_series_rmse_before`` /
``_after`` (mm, RMS over the stations of each station's RMSE; None without a compared
station), ``gnss_series_stations``, ``gnss_series_n_stations``, ``gnss_series_station_rmse``
(JSON ``{station: [before, after]}``), ``gnss_series_half_window_days``; the series themselves
in ``gnss_series.json`` (per frame: ``time``, and per station ``gnss_up``,
``insar_up_before``, ``insar_up_after``, mm, means removed). Without a series product these
are absent (logged once).

References
----------
Mi, J., Wu, Z., Wang, X., Bai, L., Li, Z., Lu, Z. (2026). Mapping wide-area land subsidence from
groundwater use in the North China plain by machine learning-based InSAR adjustment. Remote Sens.
Environ. doi:10.1016/j.rse.2025.115226.
Altamimi, Z., Metivier, L., Rebischung, P., Rouby, H., Collilieux, X. (2017). ITRF2014 plate
motion model. Geophys. J. Int. 209(3), 1906-1912.
Stephenson, O. L. et al. (2022). The impact of plate motions on long-wavelength InSAR-derived
velocity fields. Geophys. Res. Lett. 49, e2022GL099835.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Hashable
from typing import Any

import dask
import numpy as np
import xarray as xr

from ..errors import DataError
from ..io.cube import with_crs
from ..io.projection import (
    GEOGRAPHIC,
    dataset_crs,
    is_geographic,
    lonlat_to_xy,
    xy_to_lonlat,
)
from ..kernels.adjust import (
    EARTH_RADIUS_KM,
    common_mode_series,
    compare_series,
    local_coordinates_km,
    resample_surface,
    residuals_at_stations,
    station_window_series,
    station_window_slices,
    window_means,
)
from ..kernels.geometry import (
    fit_euler_pole,
    plate_motion_los_referenced,
    plate_velocity_enu,
    resolve_euler_vector,
)
from ..kernels.trends import decimal_year
from ..models.selection import (
    FittedCorrection,
    ModelSettings,
    no_fit_attrs,
    select_and_fit,
    split_holdout_stations,
)
from ..shared import sample_frame_stations, station_window

__all__ = ["STAGE", "AdjustStage", "plate_euler_vector"]

log = logging.getLogger(__name__)

_LOS = ("los_east", "los_north", "los_up")

#: GNSS days averaged around each SAR date: within half the Sentinel-1 repeat (12 days)
SERIES_HALF_WINDOW_DAYS = 6.0
#: fewer GNSS days than this around a SAR date leave that date out of the comparison
SERIES_MIN_GNSS_DAYS = 3
#: a station needs this many common dates for a series RMSE
SERIES_MIN_COMMON_DATES = 5


def _json_float(v: Any) -> float | None:
    return float(v) if v is not None and np.isfinite(v) else None


# --------------------------------------------------------------------------------------------
# plate motion
# --------------------------------------------------------------------------------------------


def plate_euler_vector(model: str, gnss: xr.Dataset, exclude: set[Hashable], max_abs_vu: float):
    """The Euler vector (mas/yr) of the plate model, and a JSON-able record of how it was got.

    Parameters
    ----------
    model : str
        'ITRF2014_EURA' (table value) or 'GNSS_regional' (weighted LS fit of ``v_h = omega x X``
        to the horizontal velocities of stations with ``|vu| <= max_abs_vu``, SCIENCE.md 4.2).
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


# --------------------------------------------------------------------------------------------
# the stage
# --------------------------------------------------------------------------------------------


def frame_common_mode(sb: xr.Dataset, t: np.ndarray, opts: Any) -> tuple[xr.DataArray, int]:
    """The common mode of a frame's displacement series (mm, dims ``time``) and its pixel count.

    The median (:func:`~ncp_subsidence.kernels.adjust.common_mode_series`) is taken over a
    regular spatial sample of at most ``opts.common_mode_max_pixels`` pixels (every ``s``-th row
    and column of the frame grid, whatever the chunking) with temporal coherence >=
    ``opts.min_coherence``; the sample is computed here, small, on the client. Zeros when the
    filter is off or the frame has too few coherent pixels.
    """
    zeros = xr.DataArray(np.zeros(t.size), dims="time", coords={"time": sb["time"]})
    if opts.common_mode_filter == "none":
        return zeros, 0
    ny, nx = sb.sizes["y"], sb.sizes["x"]
    stride = max(1, math.ceil(math.sqrt(ny * nx / opts.common_mode_max_pixels)))
    every = {"y": slice(None, None, stride), "x": slice(None, None, stride)}
    sample = sb["displacement"].isel(every).transpose("y", "x", "time")
    if "temporal_coherence" in sb:
        sample = sample.where(sb["temporal_coherence"].isel(every) >= opts.min_coherence)
    values = np.asarray(sample.values, dtype=np.float64).reshape(-1, t.size)
    mode, n_used = common_mode_series(values, t, knot_spacing=opts.common_mode_knot_years)
    if n_used == 0:
        log.warning(
            "common-mode filter skipped: fewer than 100 coherent pixels in a %d x %d sample",
            math.ceil(ny / stride),
            math.ceil(nx / stride),
        )
    else:
        log.info("common mode over %d pixels (stride %d): %.2f mm rms", n_used, stride, mode.std())
    return zeros.copy(data=mode), n_used


def _frame_centre(ds: xr.Dataset, crs: str = GEOGRAPHIC) -> tuple[float, float]:
    """Lon/lat (degrees) of the centre of a frame grid (its centre in the frame's own CRS)."""
    x, y = ds["x"].values, ds["y"].values
    cx, cy = float((x[0] + x[-1]) / 2), float((y[0] + y[-1]) / 2)
    if is_geographic(crs):
        return cx, cy
    lon, lat = xy_to_lonlat(crs, cx, cy)
    return float(lon), float(lat)


def _coarse_axis(v: np.ndarray, spacing: float) -> np.ndarray:
    lo, hi = float(np.min(v)), float(np.max(v))
    n = max(int(np.ceil((hi - lo) / spacing)) + 1, 2)
    return np.linspace(lo, hi, n)


def _resample_block(lat2d, lon2d, *, surface, lon_src, lat_src):
    # elementwise apply_ufunc: each call gets one (y, x) block of the broadcast coordinates
    return resample_surface(surface, lon_src, lat_src, lon2d[0, :], lat2d[:, 0]).astype(np.float32)


def _lazy_surface(surface, lon_src, lat_src, template: xr.DataArray) -> xr.DataArray:
    """Bilinear resampling of a small client-side surface onto the (chunked) grid of template."""
    lat2d, lon2d = xr.broadcast(template["y"], template["x"])
    if template.chunks is not None:
        chunks = dict(zip(template.dims, template.chunks, strict=True))
        lat2d, lon2d = lat2d.chunk(chunks), lon2d.chunk(chunks)
    return xr.apply_ufunc(
        _resample_block,
        lat2d.transpose("y", "x"),
        lon2d.transpose("y", "x"),
        kwargs={"surface": surface, "lon_src": lon_src, "lat_src": lat_src},
        dask="parallelized",
        output_dtypes=[np.float32],
    )


def _days(times: np.ndarray) -> np.ndarray:
    """Days (float64) since 2000-01-01 of datetime64 times."""
    since = np.asarray(times, dtype="datetime64[ns]") - np.datetime64("2000-01-01", "ns")
    return since / np.timedelta64(1, "D")


def _compare_frame_series(
    sb: xr.Dataset,
    adjusted: xr.DataArray,
    ids: np.ndarray,
    sx: np.ndarray,
    sy: np.ndarray,
    u_up: np.ndarray,
    series: xr.Dataset,
    *,
    radius: float,
    opts: Any,
    projected: bool,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """GNSS up series vs the frame's InSAR vertical series at the given (held-out) stations.

    ``ids``, ``sx``, ``sy`` (frame x/y) and ``u_up`` (window median of the LOS up component)
    are the held-out stations of the frame; those with a GNSS series are compared. Only their
    small windows of the sbas and adjusted displacement cubes are computed.

    Returns the frame's attrs (module docstring) and its record for ``gnss_series.json``.
    """
    known = {str(s): i for i, s in enumerate(series["station"].values)}
    pick = [i for i, s in enumerate(ids) if str(s) in known and np.isfinite(u_up[i])]
    boxes = station_window_slices(
        sb["x"].values, sb["y"].values, sx[pick], sy[pick], radius, projected=projected
    )
    pieces = []
    for box in boxes:
        if box is None:
            pieces.append(None)
            continue
        sel = {"y": box[0], "x": box[1]}
        quality = sb["temporal_coherence"].isel(sel).data if "temporal_coherence" in sb else None
        pieces.append(
            [
                sb["displacement"].isel(sel).transpose("time", "y", "x").data,
                adjusted.isel(sel).transpose("time", "y", "x").data,
                quality,
            ]
        )
    (computed,) = dask.compute(pieces)
    n_time = sb.sizes["time"]
    before = np.full((len(pick), n_time), np.nan)
    after = np.full((len(pick), n_time), np.nan)
    x, y = sb["x"].values, sb["y"].values
    for k, (box, parts) in enumerate(zip(boxes, computed, strict=True)):
        if box is None:
            continue
        i = pick[k]
        for out, cube in ((before, parts[0]), (after, parts[1])):
            out[k] = (
                station_window_series(
                    cube,
                    x[box[1]],
                    y[box[0]],
                    float(sx[i]),
                    float(sy[i]),
                    radius_m=radius,
                    min_pixels=opts.min_pixels,
                    quality=parts[2],
                    min_quality=opts.min_coherence,
                    projected=projected,
                )
                / u_up[i]
            )
    names = [str(ids[i]) for i in pick]
    up = series["up"].sel(station=names).values if names else np.empty((0, series.sizes["time"]))
    gnss, _ = window_means(
        _days(series["time"].values),
        up,
        _days(sb["time"].values),
        SERIES_HALF_WINDOW_DAYS,
        min_samples=SERIES_MIN_GNSS_DAYS,
    )
    gnss = np.atleast_2d(gnss).reshape(len(pick), n_time)
    cmp_before = compare_series(before, gnss, min_common=SERIES_MIN_COMMON_DATES)
    cmp_after = compare_series(after, gnss, min_common=SERIES_MIN_COMMON_DATES)
    both = np.isfinite(cmp_before.rmse) & np.isfinite(cmp_after.rmse)
    used = [n for n, ok in zip(names, both, strict=True) if ok]

    def value(v: float) -> float | None:
        return _json_float(v) if used else None

    attrs = {
        "gnss_series_n_stations": len(used),
        "gnss_series_stations": used,
        "gnss_series_rmse_before": value(cmp_before.pooled_rmse(both)),
        "gnss_series_rmse_after": value(cmp_after.pooled_rmse(both)),
        "gnss_series_station_rmse": json.dumps(
            {
                n: [_json_float(cmp_before.rmse[k]), _json_float(cmp_after.rmse[k])]
                for k, n in enumerate(names)
                if both[k]
            },
            sort_keys=True,
        ),
        "gnss_series_half_window_days": SERIES_HALF_WINDOW_DAYS,
    }

    def listed(a: np.ndarray) -> list[float | None]:
        return [_json_float(v) for v in a]

    record = {
        "units": "mm, vertical, positive up; each series less its mean over the common dates",
        "time": [str(t)[:10] for t in sb["time"].values],
        "rmse_before": attrs["gnss_series_rmse_before"],
        "rmse_after": attrs["gnss_series_rmse_after"],
        "stations": {
            n: {
                "gnss_up": listed(cmp_after.second[k]),
                "insar_up_before": listed(cmp_before.first[k]),
                "insar_up_after": listed(cmp_after.first[k]),
                "rmse_before": _json_float(cmp_before.rmse[k]),
                "rmse_after": _json_float(cmp_after.rmse[k]),
                "n_dates": int(cmp_after.n_common[k]),
            }
            for k, n in enumerate(names)
            if both[k]
        },
    }
    return attrs, record


class AdjustStage:
    """GNSS-based ML long-wavelength adjustment per frame (see the module docstring)."""

    name = "adjust"
    reads: tuple[str, ...] = ("sbas", "ingest")

    def run(self, ctx: Any) -> None:
        opts = ctx.options
        frames = sorted(d for d in ctx.upstream_datasets("sbas") if d != ".")
        if not frames:
            raise DataError("the sbas product has no frame datasets; run stage 'sbas' first")
        gnss = ctx.open("ingest", "gnss").load()
        ids = np.asarray([str(s) for s in gnss["station"].values], dtype=object)
        slon, slat = gnss["lon"].values.astype(float), gnss["lat"].values.astype(float)

        # plate model: the regional pole needs the holdout set, which needs the membership; the
        # membership needs only the geometry, so sample in two passes.
        inputs = {f: self._open_frame(ctx, f) for f in frames}
        members: dict[str, list[str]] = {}
        for f, (sb, geo) in inputs.items():
            crs = sb.attrs["crs"]
            projected = not is_geographic(crs)
            radius, _ = station_window(opts, sb["x"].values, sb["y"].values, projected=projected)
            sx, sy = lonlat_to_xy(crs, slon, slat)
            s = sample_frame_stations(
                sb["velocity"],
                geo,
                sx,
                sy,
                ids,
                radius_m=radius,
                min_pixels=opts.min_pixels,
                quality=sb.get("temporal_coherence"),
                min_quality=opts.min_coherence,
                projected=projected,
            )
            members[f] = [str(i) for i in ids[s.valid]]
        if opts.holdout_stations is not None:
            holdout = set(opts.holdout_stations)
        else:
            holdout = {
                str(h)
                for h in split_holdout_stations(
                    members, fraction=opts.holdout_fraction, seed=opts.seed
                )
            }
        omega, plate_record = plate_euler_vector(
            opts.plate_model, gnss, holdout, opts.regional_pole_max_abs_vu
        )
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
        series = self._gnss_series(ctx)
        records: dict[str, list[dict[str, Any]]] = {}
        series_records: dict[str, Any] = {}
        for f in frames:
            sb, geo = inputs[f]
            records[f] = self._adjust_frame(
                ctx,
                f,
                sb,
                geo,
                ids,
                slon,
                slat,
                gnss_ef,
                gnss_sig,
                holdout,
                omega,
                plate_record,
                series=series,
                series_out=series_records,
            )
        ctx.write_file("stations.json", json.dumps(records, indent=1, sort_keys=True))
        if series is not None:
            ctx.write_file("gnss_series.json", json.dumps(series_records, sort_keys=True))

    @staticmethod
    def _gnss_series(ctx: Any) -> xr.Dataset | None:
        """The ingested GNSS position series (``up`` only, loaded), or None (logged once)."""
        if "gnss_series" not in ctx.upstream_datasets("ingest"):
            log.info(
                "no GNSS position series (sources.gnss_series unset): holdout scores from "
                "velocities only"
            )
            return None
        return ctx.open("ingest", "gnss_series")[["up"]].load()

    @staticmethod
    def _open_frame(ctx: Any, frame: str) -> tuple[xr.Dataset, xr.Dataset]:
        """The frame's sbas product (``attrs["crs"]`` set: the frame grid's CRS) and geometry."""
        sb = ctx.open("sbas", frame)
        ifg = ctx.open("ingest", f"ifg/{frame}")
        named = "crs" in sb.attrs or "spatial_ref" in sb.coords
        sb.attrs["crs"] = dataset_crs(sb) if named else dataset_crs(ifg)
        missing = [c for c in _LOS if c not in ifg]
        if missing:
            raise DataError(
                f"ingest/ifg/{frame} lacks LOS geometry {missing}: the adjustment needs the "
                "ground-to-satellite unit vector per pixel (lv_theta/lv_phi assets)"
            )
        geo = ifg[list(_LOS)]
        if (
            geo.sizes["y"] != sb.sizes["y"]
            or geo.sizes["x"] != sb.sizes["x"]
            or not (
                np.allclose(geo["y"].values, sb["y"].values)
                and np.allclose(geo["x"].values, sb["x"].values)
            )
        ):
            raise DataError(
                f"sbas/{frame} grid {dict(sb.sizes)} differs from its geometry grid "
                f"{dict(geo.sizes)}; the adjustment needs both on the same (y, x) grid"
            )
        geo = geo.assign_coords(y=sb["y"], x=sb["x"])
        if sb["velocity"].chunks is not None:
            chunks = dict(zip(sb["velocity"].dims, sb["velocity"].chunks, strict=True))
            geo = geo.chunk(chunks)
        return sb, geo

    def _adjust_frame(
        self,
        ctx: Any,
        frame: str,
        sb: xr.Dataset,
        geo: xr.Dataset,
        ids: np.ndarray,
        slon: np.ndarray,
        slat: np.ndarray,
        gnss_ef: np.ndarray,
        gnss_sig: np.ndarray,
        holdout: set[str],
        omega: np.ndarray,
        plate_record: dict[str, Any],
        series: xr.Dataset | None = None,
        series_out: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        opts = ctx.options
        crs = sb.attrs["crs"]
        projected = not is_geographic(crs)
        # 1. Eurasia-fixed frame, referenced to the SBAS reference point
        if "reference_y" in sb.attrs and "reference_x" in sb.attrs:
            ref_y, ref_x = float(sb.attrs["reference_y"]), float(sb.attrs["reference_x"])
        else:  # unreferenced velocities: remove the plate term relative to the frame centre
            x, y = sb["x"].values, sb["y"].values
            ref_x, ref_y = float((x[0] + x[-1]) / 2), float((y[0] + y[-1]) / 2)
            log.warning(
                "sbas/%s has no reference point attrs; plate term referenced at the centre", frame
            )
        ref_lon, ref_lat = (float(v) for v in xy_to_lonlat(crs, ref_x, ref_y))
        ref_unit = [float(geo[c].sel(y=ref_y, x=ref_x, method="nearest").values) for c in _LOS]
        # per-pixel plate motion needs each pixel's lon/lat: the frame's coordinates on a
        # geographic grid, computed block by block from x/y on a projected one
        lat2d, lon2d = xr.broadcast(sb["y"], sb["x"])
        if sb["velocity"].chunks is not None:
            chunks = dict(zip(sb["velocity"].dims, sb["velocity"].chunks, strict=True))
            lat2d, lon2d = lat2d.chunk(chunks), lon2d.chunk(chunks)
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
        t = decimal_year(sb["time"].values)
        dt = xr.DataArray(t - t[0], dims="time", coords={"time": sb["time"]})
        v_ef = sb["velocity"] - pmm

        # 2. station windows on the Eurasia-fixed velocity (small windows only)
        radius, gradient_max = station_window(
            opts, sb["x"].values, sb["y"].values, projected=projected
        )
        if radius > opts.radius_m:
            log.info(
                "%s: station windows of %.0f m, steep above %.2f mm/yr/km",
                frame,
                radius,
                gradient_max,
            )
        sx, sy = lonlat_to_xy(crs, slon, slat)
        st = sample_frame_stations(
            v_ef,
            geo,
            sx,
            sy,
            ids,
            radius_m=radius,
            min_pixels=opts.min_pixels,
            quality=sb.get("temporal_coherence"),
            min_quality=opts.min_coherence,
            projected=projected,
        )
        resid, rsig = residuals_at_stations(gnss_ef, gnss_sig, st.unit, st.median, st.sigma)
        is_hold = np.array([i in holdout for i in ids])
        train = st.valid & ~is_hold & np.isfinite(resid)
        # held-out stations get the same screen as training ones: the window must be valid and
        # not on a steep gradient (SCIENCE.md 3.4), else the window median is no measurement of
        # the station's velocity and the station validates nothing
        steep = st.gradient > gradient_max
        test = st.valid & is_hold & np.isfinite(resid) & ~steep
        lon0, lat0 = _frame_centre(sb, crs)
        xs, ys = local_coordinates_km(slon, slat, lon0, lat0)

        # 3. selection and fit on the training stations only
        settings = ModelSettings(
            gp_length_bounds_km=tuple(opts.gp_length_bounds_km),
            tree_smooth_sigma_km=opts.tree_smooth_sigma_km,
        )
        fitted: FittedCorrection | None = None
        if train.any():
            fitted = select_and_fit(
                xs[train],
                ys[train],
                resid[train],
                rsig[train],
                candidates=opts.candidates,
                cv={"spatial_block": "block"}.get(opts.cv, opts.cv),
                seed=opts.seed,
                origin=(lon0, lat0),
                outlier_k=opts.outlier_k,
                max_gradient=st.gradient[train],
                gradient_max=gradient_max,
                settings=settings,
            )
        rejected = np.zeros(ids.size, dtype=bool)
        if fitted is not None:
            rejected[np.flatnonzero(train)[~fitted.keep]] = True
        elif train.any():
            rejected[train] = True

        # 4. correction: small on the client, bilinear blockwise onto the frame
        template = sb["velocity"]
        if fitted is not None:
            spacing = opts.correction_spacing_deg
            if projected:  # the coarse grid in the frame's metres
                spacing *= EARTH_RADIUS_KM * 1000.0 * math.pi / 180.0
            spacing = max(spacing, abs(float(sb["x"][1] - sb["x"][0])))
            lon_c = _coarse_axis(sb["x"].values, spacing)
            lat_c = _coarse_axis(sb["y"].values, spacing)
            if projected:
                glon, glat = xy_to_lonlat(crs, lon_c[None, :], lat_c[:, None])
                gx, gy = local_coordinates_km(glon, glat, *fitted.origin)
                surface, extrap = fitted.predict(gx, gy), fitted.extrapolation_mask(gx, gy)
            else:
                surface, extrap = fitted.predict_grid(lon_c, lat_c)
            correction = _lazy_surface(surface, lon_c, lat_c, template)
            extrapolated = (
                _lazy_surface(extrap.astype(float), lon_c, lat_c, template) > 0.5
            ).astype(np.uint8)
            c_st = fitted.predict(xs, ys)
            fit_attrs = fitted.to_attrs()
        else:
            correction = xr.zeros_like(template, dtype=np.float32)
            extrapolated = xr.ones_like(template, dtype=np.uint8)
            c_st = np.zeros(ids.size)
            fit_attrs = no_fit_attrs(
                "no GNSS station in the frame" if not train.any() else "every station rejected"
            )

        # 5. apply
        mode, n_mode = frame_common_mode(sb, t, opts)
        velocity = (v_ef + correction).astype(np.float32)
        displacement = (sb["displacement"] - mode - pmm * dt + correction * dt).astype(np.float32)
        vertical = (velocity / geo["los_up"]).astype(np.float32)

        # holdout scores (vertical: GNSS up vs InSAR LOS / u_up; LOS: u . v_GNSS vs InSAR)
        u_up = st.unit[:, 2]
        scores = {}
        for kind, r in (
            ("los", resid),
            ("vertical", gnss_ef[:, 2] - st.median / np.where(np.isfinite(u_up), u_up, np.nan)),
        ):
            cr = c_st if kind == "los" else c_st / u_up
            scores[f"holdout_rmse_{kind}_before"] = (
                _json_float(np.sqrt(np.mean(r[test] ** 2))) if test.any() else None
            )
            scores[f"holdout_rmse_{kind}_after"] = (
                _json_float(np.sqrt(np.mean((r[test] - cr[test]) ** 2))) if test.any() else None
            )

        attrs = {
            "frame": frame,
            "crs": crs,
            **plate_record,
            "reference_lon": ref_lon,
            "reference_lat": ref_lat,
            "reference_x": ref_x,
            "reference_y": ref_y,
            "first_date": str(sb["time"].values[0]),
            "selected_model": fit_attrs["selected_model"],
            "cv_scheme": fit_attrs["cv_scheme"],
            "cv_table": json.dumps(fit_attrs["cv_table"], sort_keys=True),
            "correction": json.dumps(fit_attrs, sort_keys=True, default=str),
            "n_gnss_train": int(fitted.n_train) if fitted is not None else 0,
            "n_gnss_holdout": int(test.sum()),
            "n_gnss_rejected": int(rejected.sum()),
            "train_stations": [str(i) for i in ids[train & ~rejected]],
            "holdout_stations": [str(i) for i in ids[test]],
            "rejected_stations": [str(i) for i in ids[rejected]],
            "holdout_screened_steep": [str(i) for i in ids[st.valid & is_hold & steep]],
            "needs_overlap_adjustment": int(fitted is None),
            "common_mode_filter": opts.common_mode_filter,
            "common_mode_pixels": n_mode,
            "correction_cv_rmse": _json_float(
                fitted.cv_table[fitted.model_id]["cv_rmse"] if fitted is not None else None
            ),
            **scores,
        }
        if series is not None:
            series_attrs, record = _compare_frame_series(
                sb,
                displacement,
                ids[test],
                sx[test],
                sy[test],
                st.unit[test, 2],
                series,
                radius=radius,
                opts=opts,
                projected=projected,
            )
            attrs.update(series_attrs)
            if series_out is not None:
                series_out[frame] = record
            log.info(
                "adjust %s: GNSS series RMSE at %d held-out station(s) %s -> %s mm",
                frame,
                series_attrs["gnss_series_n_stations"],
                series_attrs["gnss_series_rmse_before"],
                series_attrs["gnss_series_rmse_after"],
            )
        out = xr.Dataset(
            {
                "velocity": velocity.assign_attrs(
                    units="mm/yr",
                    long_name="adjusted LOS velocity toward the satellite, Eurasia-fixed",
                ),
                "displacement": displacement.transpose("time", "y", "x").assign_attrs(
                    units="mm",
                    long_name="adjusted LOS displacement toward the satellite, relative to the "
                    "first date, Eurasia-fixed",
                ),
                "correction": correction.astype(np.float32).assign_attrs(
                    units="mm/yr", long_name="long-wavelength correction added to the LOS velocity"
                ),
                "common_mode": mode.astype(np.float32).assign_attrs(
                    units="mm",
                    long_name="common mode removed from every displacement series (LOS, zero "
                    "slope, zero at the first date)",
                ),
                "plate_motion_los": pmm.assign_attrs(
                    units="mm/yr",
                    long_name="plate-motion LOS velocity relative to the reference point (removed)",
                ),
                "vertical_velocity": vertical.assign_attrs(
                    units="mm/yr", long_name="vertical velocity, positive up (vertical-only)"
                ),
                "extrapolated": extrapolated.assign_attrs(
                    units="1",
                    long_name="1 outside the convex hull of the training GNSS stations",
                    flag_values=[0, 1],
                ),
            },
            attrs=attrs,
        )
        for name in ("velocity_std", "temporal_coherence"):
            if name in sb:
                out[name] = sb[name].astype(np.float32)
        out = out.drop_vars([c for c in out.coords if c not in ("time", "y", "x")])
        ctx.write(frame, with_crs(out, crs), region_dim="y")
        log.info(
            "adjust %s: model %s, %d train / %d holdout / %d rejected, holdout vertical RMSE "
            "%s -> %s mm/yr",
            frame,
            attrs["selected_model"],
            attrs["n_gnss_train"],
            attrs["n_gnss_holdout"],
            attrs["n_gnss_rejected"],
            scores["holdout_rmse_vertical_before"],
            scores["holdout_rmse_vertical_after"],
        )
        return [
            {
                "station": str(ids[i]),
                "role": (
                    "holdout"
                    if test[i]
                    else "holdout_screened"
                    if is_hold[i]
                    else "rejected"
                    if rejected[i]
                    else "train"
                ),
                "residual_los": _json_float(resid[i]),
                "sigma_los": _json_float(rsig[i]),
                "correction_los": _json_float(c_st[i]),
                "window_pixels": int(st.n_pixels[i]),
                "window_gradient": _json_float(st.gradient[i]),
            }
            for i in np.flatnonzero(st.valid)
        ]


STAGE = AdjustStage()
