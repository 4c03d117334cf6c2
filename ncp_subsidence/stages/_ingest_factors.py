"""Ingest of the driving factors: the ``factors`` dataset on the factor grid.

Each raster resampled to the factor grid (``factors.resolution_deg`` over ``sources.bbox``) from
its own CRS and transform, and ``fault_density``, the fault length per cell (km) from the fault
lines (the ``ingest`` module docstring).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import xarray as xr

from ..io.cube import with_crs
from ..io.readers import AUTO_RESAMPLING, Grid, factor_grid, read_geojson, read_raster_on_grid
from ..kernels.vector import line_length_per_cell
from ..sources import RASTER_FACTORS, load_items
from ._ingest_items import _hrefs, _increment, _provenance, _remote


def _read_factor(
    items: list[Any], name: str, grid: Grid, retries: int = 4, headers: Any = None
) -> xr.DataArray:
    """A factor raster on the factor grid, placed by the file's own CRS and transform (any CRS,
    any pixel shape): cell average where the file is finer, bilinear where it is coarser
    (:func:`~ncp_subsidence.io.readers.read_raster_on_grid`, ``resampling="auto"``). A file
    without a CRS is a :class:`DataError` naming it."""
    (href,) = _hrefs(items[:1])
    values = read_raster_on_grid(
        href,
        grid,
        resampling=AUTO_RESAMPLING,
        retries=retries,
        headers=headers,
        what=f"factor raster {name!r}",
    )
    lat, lon = grid.coords()
    units_attr = items[0].properties.get("twin:units") or items[0].properties.get("units") or ""
    return xr.DataArray(
        values,
        dims=("lat", "lon"),
        coords={"lat": lat, "lon": lon},
        attrs={"units": units_attr, "long_name": name.replace("_", " ")},
    )


def _fault_density(items: list[Any], grid: Grid) -> xr.DataArray:
    lines: list[np.ndarray] = []
    for href in _hrefs(items):
        for feature in read_geojson(href):
            geom = feature.get("geometry") or {}
            if geom.get("type") == "LineString":
                lines.append(np.asarray(geom["coordinates"], dtype=float)[:, :2])
            elif geom.get("type") == "MultiLineString":
                lines.extend(np.asarray(c, dtype=float)[:, :2] for c in geom["coordinates"])
    km = line_length_per_cell(lines, grid.bounds[0], grid.bounds[3], grid.resolution, grid.shape)
    lat, lon = grid.coords()
    return xr.DataArray(
        km.astype("float32"),
        dims=("lat", "lon"),
        coords={"lat": lat, "lon": lon},
        attrs={"units": "km", "long_name": "fault length per cell"},
    )


def ingest_factors(ctx: Any, names: list[str]) -> None:
    grid = factor_grid(ctx.config)
    sources = {k: load_items(ctx.store, k, config=ctx.config) for k in RASTER_FACTORS if k in names}
    if "faults" in names:
        sources["faults"] = load_items(ctx.store, "faults", config=ctx.config)
    sources = {k: v for k, v in sources.items() if v}
    if not sources:
        return
    every = [i for k in sorted(sources) for i in sources[k]]
    how = json.dumps({"bounds": list(grid.bounds), "resolution": grid.resolution})
    increment = _increment(ctx, "factors", every, how)
    if increment is not None and not increment[1]:
        ctx.reuse("factors")
        return
    layers = {
        key: _read_factor(items, key, grid, *_remote(ctx.config, key))
        for key, items in sources.items()
        if key != "faults"
    }
    if "faults" in sources:
        layers["fault_density"] = _fault_density(sources["faults"], grid)
    ds = with_crs(xr.Dataset(layers))
    for var in ds.data_vars.values():
        if var.ndim == 2:
            var.encoding["chunks"] = tuple(min(512, n) for n in var.shape)
    ds.attrs.update(_provenance(every, how))
    ctx.write("factors", ds)
