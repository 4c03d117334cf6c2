"""Private to stage ``adjust``: the frame's common mode and the lazy correction surface.

:func:`frame_common_mode` is the ``m(t)`` removed from every displacement series;
:func:`correction_layers` predicts the fitted correction small, on the client, on a coarse grid
(``adjust.correction_spacing_deg``) and resamples it bilinearly, blockwise, onto the frame.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import xarray as xr

from ..io.projection import GEOGRAPHIC, is_geographic, xy_to_lonlat
from ..kernels.adjust import (
    EARTH_RADIUS_KM,
    coarse_axis,
    common_mode_series,
    local_coordinates_km,
    resample_surface,
)
from ..models.selection import FittedCorrection

__all__ = ["correction_layers", "frame_centre", "frame_common_mode"]

# the stage's logger: messages and their filters are those of stage ``adjust``
log = logging.getLogger("ncp_subsidence.stages.adjust")


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


def frame_centre(ds: xr.Dataset, crs: str = GEOGRAPHIC) -> tuple[float, float]:
    """Lon/lat (degrees) of the centre of a frame grid (its centre in the frame's own CRS)."""
    x, y = ds["x"].values, ds["y"].values
    cx, cy = float((x[0] + x[-1]) / 2), float((y[0] + y[-1]) / 2)
    if is_geographic(crs):
        return cx, cy
    lon, lat = xy_to_lonlat(crs, cx, cy)
    return float(lon), float(lat)


def grid_coordinates(template: xr.DataArray) -> tuple[xr.DataArray, xr.DataArray]:
    """The ``y`` and ``x`` coordinates of ``template`` broadcast to its ``(y, x)`` grid, in its
    chunks when it has them.

    The 1-D coordinates are chunked and then broadcast, so each block is formed on the worker
    that needs it; broadcasting first and chunking the two 2-D arrays after put them inside the
    graph (19 MB for a 1500 x 800 frame: dask's "Sending large graph" warning, and graphs that
    grow with the frame's area).
    """
    y, x = template["y"], template["x"]
    if template.chunks is None:
        return xr.broadcast(y, x)
    import dask.array as da

    sizes = dict(zip(template.dims, template.chunks, strict=True))
    chunks = {"y": sizes["y"], "x": sizes["x"]}
    # an index coordinate cannot be chunked itself: a chunked copy of its values
    y, x = (
        xr.DataArray(da.from_array(c.values, chunks=(chunks[d],)), dims=d, coords={d: c}, name=d)
        for d, c in (("y", y), ("x", x))
    )
    lat2d, lon2d = xr.broadcast(y, x)  # the new axis is one chunk: split it (lazily)
    return lat2d.chunk(chunks), lon2d.chunk(chunks)


def _resample_block(lat2d, lon2d, *, surface, lon_src, lat_src):
    # elementwise apply_ufunc: each call gets one (y, x) block of the broadcast coordinates
    return resample_surface(surface, lon_src, lat_src, lon2d[0, :], lat2d[:, 0]).astype(np.float32)


def _lazy_surface(surface, lon_src, lat_src, template: xr.DataArray) -> xr.DataArray:
    """Bilinear resampling of a small client-side surface onto the (chunked) grid of template."""
    lat2d, lon2d = grid_coordinates(template)
    return xr.apply_ufunc(
        _resample_block,
        lat2d.transpose("y", "x"),
        lon2d.transpose("y", "x"),
        kwargs={"surface": surface, "lon_src": lon_src, "lat_src": lat_src},
        dask="parallelized",
        output_dtypes=[np.float32],
    )


def correction_layers(
    fitted: FittedCorrection, sb: xr.Dataset, opts: Any
) -> tuple[xr.DataArray, xr.DataArray]:
    """The fitted correction (mm/yr, LOS) and its extrapolation flag on the frame grid, lazily.

    The surface is predicted on a coarse grid of ``opts.correction_spacing_deg`` (as metres on a
    projected frame; never finer than the frame's pixels) and resampled bilinearly blockwise
    onto ``sb["velocity"]``'s grid and chunks.

    Returns
    -------
    correction : xarray.DataArray (y, x), float32, mm/yr
    extrapolated : xarray.DataArray (y, x), uint8, 1 outside the training stations' hull
    """
    crs = sb.attrs["crs"]
    projected = not is_geographic(crs)
    template = sb["velocity"]
    spacing = opts.correction_spacing_deg
    if projected:  # the coarse grid in the frame's metres
        spacing *= EARTH_RADIUS_KM * 1000.0 * math.pi / 180.0
    spacing = max(spacing, abs(float(sb["x"][1] - sb["x"][0])))
    lon_c = coarse_axis(sb["x"].values, spacing)
    lat_c = coarse_axis(sb["y"].values, spacing)
    if projected:
        glon, glat = xy_to_lonlat(crs, lon_c[None, :], lat_c[:, None])
        gx, gy = local_coordinates_km(glon, glat, *fitted.origin)
        surface, extrap = fitted.predict(gx, gy), fitted.extrapolation_mask(gx, gy)
    else:
        surface, extrap = fitted.predict_grid(lon_c, lat_c)
    correction = _lazy_surface(surface, lon_c, lat_c, template)
    extrapolated = (_lazy_surface(extrap.astype(float), lon_c, lat_c, template) > 0.5).astype(
        np.uint8
    )
    return correction, extrapolated
