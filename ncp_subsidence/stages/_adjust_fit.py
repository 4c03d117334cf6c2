"""Private to stage ``adjust``: the frame inputs, the station windows, the holdout split and
the plan of the model selection (docs/science.md 3.2-3.4; steps 2-4 of the stage's module
docstring). The selections themselves run in :mod:`._adjust_select`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from ..errors import DataError
from ..io.projection import dataset_crs, is_geographic, lonlat_to_xy
from ..kernels.adjust import local_coordinates_km, residuals_at_stations
from ..models.selection import (
    FittedCorrection,
    ModelSettings,
    SelectionPlan,
    plan_selection,
    split_holdout_stations,
)
from ..shared import FrameStations, sample_frame_stations, station_window
from ._adjust_correction import frame_centre

__all__ = ["FrameFit", "frame_stations", "holdout_stations", "open_frame"]

# the stage's logger: messages and their filters are those of stage ``adjust``
log = logging.getLogger("ncp_subsidence.stages.adjust")

_LOS = ("los_east", "los_north", "los_up")


def open_frame(ctx: Any, frame: str) -> tuple[xr.Dataset, xr.Dataset]:
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


def holdout_stations(
    ctx: Any,
    inputs: dict[str, tuple[xr.Dataset, xr.Dataset]],
    ids: np.ndarray,
    slon: np.ndarray,
    slat: np.ndarray,
) -> set[str]:
    """The held-out stations, one split for all frames (``adjust.holdout_stations`` if given).

    The split is stratified by frame membership: a station belongs to the frames whose window
    around it is valid, which needs only the geometry (the plate model, which may need the
    holdout set, comes after).
    """
    opts = ctx.options
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
            for h in split_holdout_stations(members, fraction=opts.holdout_fraction, seed=opts.seed)
        }
    return holdout


@dataclass
class FrameFit:
    """The stations of one frame and the correction fitted to them (arrays shape (n_station,)).

    Made by :func:`frame_stations` with ``plan`` set and no fit yet; :meth:`attach` adds the
    fitted correction (and the rejected stations) once the selection has run.

    Attributes
    ----------
    stations : FrameStations, window medians of the Eurasia-fixed LOS velocity
    sx, sy : ndarray, station positions on the frame's grid (its CRS)
    xs, ys : ndarray, km, frame-local coordinates (origin: the frame centre)
    resid, rsig : ndarray, mm/yr, LOS residuals ``u . v_GNSS,EF - v_EF`` and their sigmas
    is_hold, train, test, steep, rejected : ndarray of bool
    radius, gradient_max : float, the station window (m) and the steep-gradient threshold
    plan : SelectionPlan or None, the model selection of the training stations (None: no
        training station, or every one rejected)
    fitted : FittedCorrection or None (no fit yet, or none possible)
    """

    stations: FrameStations
    sx: np.ndarray
    sy: np.ndarray
    xs: np.ndarray
    ys: np.ndarray
    resid: np.ndarray
    rsig: np.ndarray
    is_hold: np.ndarray
    train: np.ndarray
    test: np.ndarray
    steep: np.ndarray
    rejected: np.ndarray
    radius: float
    gradient_max: float
    plan: SelectionPlan | None
    fitted: FittedCorrection | None = None

    def attach(self, fitted: FittedCorrection | None) -> FrameFit:
        """Set the fitted correction of :attr:`plan` and mark the training stations it
        rejected (all of them when there is no fit); returns self."""
        self.fitted = fitted
        self.rejected = np.zeros(self.train.size, dtype=bool)
        if fitted is not None:
            self.rejected[np.flatnonzero(self.train)[~fitted.keep]] = True
        elif self.train.any():
            self.rejected[self.train] = True
        return self


def frame_stations(
    opts: Any,
    frame: str,
    sb: xr.Dataset,
    geo: xr.Dataset,
    v_ef: xr.DataArray,
    ids: np.ndarray,
    slon: np.ndarray,
    slat: np.ndarray,
    gnss_ef: np.ndarray,
    gnss_sig: np.ndarray,
    holdout: set[str],
) -> FrameFit:
    """Station windows on the Eurasia-fixed velocity ``v_ef`` (small windows only), then the
    plan of the model selection on the training stations only (screen and CV folds)."""
    crs = sb.attrs["crs"]
    projected = not is_geographic(crs)
    radius, gradient_max = station_window(opts, sb["x"].values, sb["y"].values, projected=projected)
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
    # not on a steep gradient (docs/science.md 3.4), else the window median is no measurement of
    # the station's velocity and the station validates nothing
    steep = st.gradient > gradient_max
    test = st.valid & is_hold & np.isfinite(resid) & ~steep
    lon0, lat0 = frame_centre(sb, crs)
    xs, ys = local_coordinates_km(slon, slat, lon0, lat0)

    # 3. the selection's plan, on the training stations only
    settings = ModelSettings(
        gp_length_bounds_km=tuple(opts.gp_length_bounds_km),
        tree_smooth_sigma_km=opts.tree_smooth_sigma_km,
    )
    plan: SelectionPlan | None = None
    if train.any():
        plan = plan_selection(
            xs[train],
            ys[train],
            resid[train],
            rsig[train],
            candidates=opts.candidates,
            cv=opts.cv,
            seed=opts.seed,
            origin=(lon0, lat0),
            outlier_k=opts.outlier_k,
            max_gradient=st.gradient[train],
            gradient_max=gradient_max,
            settings=settings,
        )
    return FrameFit(
        stations=st,
        sx=sx,
        sy=sy,
        xs=xs,
        ys=ys,
        resid=resid,
        rsig=rsig,
        is_hold=is_hold,
        train=train,
        test=test,
        steep=steep,
        rejected=np.zeros(ids.size, dtype=bool),
        radius=radius,
        gradient_max=gradient_max,
        plan=plan,
    )
