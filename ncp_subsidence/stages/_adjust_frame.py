"""Private to stage ``adjust``: the lazy adjusted product of one frame (steps 1-5 of the
stage's module docstring) and its station records.

:func:`prepare_frame` builds the Eurasia-fixed velocity and samples the station windows (up to
the selection's plan); once the frame's selection has run (:mod:`._adjust_select`),
:func:`write_frame` applies the correction and writes the product.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from ..io.cube import with_crs
from ..io.projection import is_geographic
from ..kernels.adjust import holdout_rmse_scores
from ..kernels.trends import decimal_year
from ..models.selection import no_fit_attrs
from ..progress import readable
from ._adjust_correction import correction_layers, frame_common_mode
from ._adjust_fit import FrameFit, frame_stations
from ._adjust_plate import plate_motion_los
from ._adjust_series import compare_frame_series, json_float

__all__ = ["FramePrep", "prepare_frame", "write_frame"]

# the stage's logger: messages and their filters are those of stage ``adjust``
log = logging.getLogger("ncp_subsidence.stages.adjust")


@dataclass
class FramePrep:
    """One frame up to its model selection (lazy arrays on the frame grid).

    Attributes
    ----------
    pmm : xarray.DataArray (y, x), mm/yr, the referenced plate-motion LOS term
    reference : dict, the reference point's attrs
    t : ndarray (time,), decimal years
    dt : xarray.DataArray (time,), years since the first date
    v_ef : xarray.DataArray (y, x), mm/yr, Eurasia-fixed LOS velocity
    fit : FrameFit, the stations and the selection's plan (``fit.fitted`` once selected)
    """

    pmm: xr.DataArray
    reference: dict[str, Any]
    t: np.ndarray
    dt: xr.DataArray
    v_ef: xr.DataArray
    fit: FrameFit


def prepare_frame(
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
) -> FramePrep:
    """Steps 1-3 of one frame: the Eurasia-fixed frame, the station windows, the holdout
    screen and the plan of the selection on the training stations.

    ``sb``, ``geo``: the frame's sbas product and LOS geometry (:func:`open_frame`); ``ids``,
    ``slon``, ``slat``: every GNSS station; ``gnss_ef``, ``gnss_sig`` (n_station, 3) their
    Eurasia-fixed ENU velocities and sigmas, mm/yr; ``holdout`` the held-out ids; ``omega`` the
    plate model's Euler vector.
    """
    # 1. Eurasia-fixed frame, referenced to the SBAS reference point
    pmm, reference = plate_motion_los(sb, geo, omega, frame)
    t = decimal_year(sb["time"].values)
    dt = xr.DataArray(t - t[0], dims="time", coords={"time": sb["time"]})
    v_ef = sb["velocity"] - pmm
    # 2.-3. station windows, holdout screen, the selection's plan on the training stations only
    fit = frame_stations(
        ctx.options, frame, sb, geo, v_ef, ids, slon, slat, gnss_ef, gnss_sig, holdout
    )
    return FramePrep(pmm=pmm, reference=reference, t=t, dt=dt, v_ef=v_ef, fit=fit)


def write_frame(
    ctx: Any,
    frame: str,
    sb: xr.Dataset,
    geo: xr.Dataset,
    prep: FramePrep,
    ids: np.ndarray,
    gnss_ef: np.ndarray,
    plate_record: dict[str, Any],
    series: xr.Dataset | None = None,
    series_out: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Steps 4-5 of one frame, once ``prep.fit`` has its fit (:meth:`FrameFit.attach`): build
    its lazy ``adjust/<frame>`` product and write it.

    ``plate_record`` is the plate model's attrs; ``series`` the GNSS up series (or None) and
    ``series_out`` the dict collecting each frame's ``gnss_series.json`` record.

    Returns the frame's station records for ``stations.json``.
    """
    opts = ctx.options
    crs = sb.attrs["crs"]
    pmm, t, dt, v_ef, fit = prep.pmm, prep.t, prep.dt, prep.v_ef, prep.fit
    st, fitted, train, test, rejected = fit.stations, fit.fitted, fit.train, fit.test, fit.rejected

    # 4. correction: small on the client, bilinear blockwise onto the frame
    template = sb["velocity"]
    if fitted is not None:
        correction, extrapolated = correction_layers(fitted, sb, opts)
        c_st = fitted.predict(fit.xs, fit.ys)
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
    scores = holdout_rmse_scores(fit.resid, gnss_ef[:, 2], st.median, st.unit[:, 2], c_st, test)

    attrs = {
        "frame": frame,
        "crs": crs,
        **plate_record,
        **prep.reference,
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
        "holdout_screened_steep": [str(i) for i in ids[st.valid & fit.is_hold & fit.steep]],
        "needs_overlap_adjustment": int(fitted is None),
        "common_mode_filter": opts.common_mode_filter,
        "common_mode_pixels": n_mode,
        "correction_cv_rmse": json_float(
            fitted.cv_table[fitted.model_id]["cv_rmse"] if fitted is not None else None
        ),
        **scores,
    }
    if series is not None:
        series_attrs, record = compare_frame_series(
            sb,
            displacement,
            ids[test],
            fit.sx[test],
            fit.sy[test],
            st.unit[test, 2],
            series,
            radius=fit.radius,
            opts=opts,
            projected=not is_geographic(crs),
        )
        attrs.update(series_attrs)
        if series_out is not None:
            series_out[frame] = record
        log.info(
            "adjust %s: GNSS series RMSE at %d held-out station(s) %s -> %s mm",
            frame,
            series_attrs["gnss_series_n_stations"],
            readable(series_attrs["gnss_series_rmse_before"]),
            readable(series_attrs["gnss_series_rmse_after"]),
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
        readable(scores["holdout_rmse_vertical_before"]),
        readable(scores["holdout_rmse_vertical_after"]),
    )
    return _station_records(fit, ids, c_st)


def _station_records(fit: FrameFit, ids: np.ndarray, c_st: np.ndarray) -> list[dict[str, Any]]:
    """One record per station with a valid window: role, residual, correction, window."""
    st = fit.stations
    return [
        {
            "station": str(ids[i]),
            "role": (
                "holdout"
                if fit.test[i]
                else "holdout_screened"
                if fit.is_hold[i]
                else "rejected"
                if fit.rejected[i]
                else "train"
            ),
            "residual_los": json_float(fit.resid[i]),
            "sigma_los": json_float(fit.rsig[i]),
            "correction_los": json_float(c_st[i]),
            "window_pixels": int(st.n_pixels[i]),
            "window_gradient": json_float(st.gradient[i]),
        }
        for i in np.flatnonzero(st.valid)
    ]
