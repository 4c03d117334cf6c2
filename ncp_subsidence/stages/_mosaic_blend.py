"""Private to stage ``mosaic``: the feathered blending onto the product grid and the monthly
time series (steps 4-5 of the stage's module docstring), and the product's attrs.
"""

from __future__ import annotations

import json
import math
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from ..io.cube import SCHEMAS, with_crs
from ..io.projection import lonlat_to_xy
from ..kernels.adjust import (
    GnssTies,
    OverlapAdjustment,
    bilinear_regrid,
    bilinear_sample,
    blend_frames,
    blend_series,
    evaluate_correction,
    feather_weights,
    local_coordinates_km,
    resample_to_epochs,
)
from ._mosaic_frames import frame_window

__all__ = ["blend", "common_months", "mosaic_attrs"]


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
    d = blend_series(series, feath, sigs) if months_t.size else np.empty((0, *shape))
    return v.astype(np.float32), s.astype(np.float32), n.astype(np.int16), d.astype(np.float32)


def blend(
    frames: list[dict[str, Any]],
    result: OverlapAdjustment,
    lat: np.ndarray,
    lon: np.ndarray,
    months: np.ndarray,
    months_t: np.ndarray,
    origin: tuple[float, float],
    opts: Any,
) -> xr.Dataset:
    """The lazy mosaic: one delayed :func:`_blend_block` per output block of ``opts.chunk`` cells,
    each frame's feather computed on its own grid with ``map_overlap``."""
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
                sy, sx = frame_window(
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


def mosaic_attrs(
    names: list[str],
    frames: list[dict[str, Any]],
    result: OverlapAdjustment,
    ties: list[GnssTies],
    origin: tuple[float, float],
    months: np.ndarray,
) -> dict[str, Any]:
    """The product's attrs (see the stage's module docstring)."""
    used = [e for e in result.edges if e["used"]]
    return {
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
