"""Stage ``adjust``: GNSS-based long-wavelength adjustment of each SAR frame (docs/science.md 2-3).

Per frame ``f`` of the ``sbas`` product (graph building only; the numbers live in
:mod:`ncp_subsidence.kernels.geometry`, :mod:`ncp_subsidence.kernels.adjust` and
:mod:`ncp_subsidence.models.selection`):

1. **Eurasia-fixed frame** (docs/science.md 3.2 step 1, 4.2). The plate-motion LOS term, referenced to
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
   Every frame is planned first (station windows, screen, CV folds); the candidates' CV then
   runs as Dask tasks on the cluster, all frames at once, each frame finished on the client
   when its last task completes (``_adjust_select``; serially without a cluster, same
   numbers), with a progress line every interval. The correction is predicted small, on the
   client, on a coarse grid (``adjust.correction_spacing_deg``) and resampled bilinearly
   blockwise onto the frame.
5. **Apply** ``v_adj = v_EF + c``, ``d_adj(t) = d_EF(t) - m(t) + c (t - t_0)`` (linear-in-time
   correction, docs/science.md 3.2), and the vertical-only conversion ``v_U = v_adj / u_U`` (docs/science.md
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
from typing import Any

import numpy as np

from ..errors import DataError
from ..pipeline import Stage, StageContext
from ._adjust_correction import frame_common_mode
from ._adjust_fit import holdout_stations, open_frame
from ._adjust_frame import FramePrep, prepare_frame, write_frame
from ._adjust_plate import gnss_eurasia_fixed, plate_euler_vector
from ._adjust_select import FrameSelections
from ._adjust_series import SERIES_HALF_WINDOW_DAYS, gnss_series
from ._adjust_series import _days as _days  # re-exported for tests/test_gnss_series.py

__all__ = [
    "SERIES_HALF_WINDOW_DAYS",
    "STAGE",
    "AdjustStage",
    "frame_common_mode",
    "plate_euler_vector",
]


class AdjustStage(Stage):
    """GNSS-based ML long-wavelength adjustment per frame (see the module docstring)."""

    name = "adjust"
    reads: tuple[str, ...] = ("sbas", "ingest")

    def run(self, ctx: StageContext) -> None:
        opts = ctx.options
        frames = sorted(d for d in ctx.upstream_datasets("sbas") if d != ".")
        if not frames:
            raise DataError("the sbas product has no frame datasets; run stage 'sbas' first")
        selections = FrameSelections(ctx.client)  # (warms the workers up for the CV)
        gnss = ctx.open("ingest", "gnss").load()
        ids = np.asarray([str(s) for s in gnss["station"].values], dtype=object)
        slon, slat = gnss["lon"].values.astype(float), gnss["lat"].values.astype(float)

        # plate model: the regional pole needs the holdout set, which needs the membership; the
        # membership needs only the geometry, so sample in two passes.
        inputs = {f: open_frame(ctx, f) for f in frames}
        holdout = holdout_stations(ctx, inputs, ids, slon, slat)
        omega, plate_record = plate_euler_vector(
            opts.plate_model, gnss, holdout, opts.regional_pole_max_abs_vu
        )
        gnss_ef, gnss_sig = gnss_eurasia_fixed(gnss, omega)
        series = gnss_series(ctx)
        # 1.-3. each frame up to its selection's plan, its CV submitted to the cluster at once;
        # 4.-5. each frame's correction and product as soon as its selection is done
        preps: dict[str, FramePrep] = {}
        for f in frames:
            preps[f] = prepare_frame(
                ctx, f, *inputs[f], ids, slon, slat, gnss_ef, gnss_sig, holdout, omega
            )
            selections.submit(f, preps[f].fit.plan)
        records: dict[str, list[dict[str, Any]]] = {}
        series_records: dict[str, Any] = {}
        for f in frames:
            preps[f].fit.attach(selections.result(f))
            records[f] = write_frame(
                ctx,
                f,
                *inputs[f],
                preps[f],
                ids,
                gnss_ef,
                plate_record,
                series=series,
                series_out=series_records,
            )
        ctx.write_file("stations.json", json.dumps(records, indent=1, sort_keys=True))
        if series is not None:
            ctx.write_file("gnss_series.json", json.dumps(series_records, sort_keys=True))


STAGE = AdjustStage()
