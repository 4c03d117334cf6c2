"""Private to stage ``adjust``: GNSS position series against the frame's InSAR series at the
held-out stations (the ``gnss_series_*`` attrs and ``gnss_series.json``; see the stage's
module docstring).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import dask
import numpy as np
import xarray as xr

from ..kernels.adjust import (
    compare_series,
    station_window_series,
    station_window_slices,
    window_means,
)

__all__ = [
    "SERIES_HALF_WINDOW_DAYS",
    "SERIES_MIN_COMMON_DATES",
    "SERIES_MIN_GNSS_DAYS",
    "compare_frame_series",
    "gnss_series",
    "json_float",
]

# the stage's logger: messages and their filters are those of stage ``adjust``
log = logging.getLogger("ncp_subsidence.stages.adjust")

#: GNSS days averaged around each SAR date: within half the Sentinel-1 repeat (12 days)
SERIES_HALF_WINDOW_DAYS = 6.0
#: fewer GNSS days than this around a SAR date leave that date out of the comparison
SERIES_MIN_GNSS_DAYS = 3
#: a station needs this many common dates for a series RMSE
SERIES_MIN_COMMON_DATES = 5


def json_float(v: Any) -> float | None:
    return float(v) if v is not None and np.isfinite(v) else None


def _days(times: np.ndarray) -> np.ndarray:
    """Days (float64) since 2000-01-01 of datetime64 times."""
    since = np.asarray(times, dtype="datetime64[ns]") - np.datetime64("2000-01-01", "ns")
    return since / np.timedelta64(1, "D")


def compare_frame_series(
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
        return json_float(v) if used else None

    attrs = {
        "gnss_series_n_stations": len(used),
        "gnss_series_stations": used,
        "gnss_series_rmse_before": value(cmp_before.pooled_rmse(both)),
        "gnss_series_rmse_after": value(cmp_after.pooled_rmse(both)),
        "gnss_series_station_rmse": json.dumps(
            {
                n: [json_float(cmp_before.rmse[k]), json_float(cmp_after.rmse[k])]
                for k, n in enumerate(names)
                if both[k]
            },
            sort_keys=True,
        ),
        "gnss_series_half_window_days": SERIES_HALF_WINDOW_DAYS,
    }

    def listed(a: np.ndarray) -> list[float | None]:
        return [json_float(v) for v in a]

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
                "rmse_before": json_float(cmp_before.rmse[k]),
                "rmse_after": json_float(cmp_after.rmse[k]),
                "n_dates": int(cmp_after.n_common[k]),
            }
            for k, n in enumerate(names)
            if both[k]
        },
    }
    return attrs, record


def gnss_series(ctx: Any) -> xr.Dataset | None:
    """The ingested GNSS position series (``up`` only, loaded), or None (logged once)."""
    if "gnss_series" not in ctx.upstream_datasets("ingest"):
        log.info(
            "no GNSS position series (sources.gnss_series unset): holdout scores from "
            "velocities only"
        )
        return None
    return ctx.open("ingest", "gnss_series")[["up"]].load()
