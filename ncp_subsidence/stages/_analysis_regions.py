"""Stage ``analysis`` (private): inputs, regions and area-weighted region series.

Finds the upstream datasets, reads the region polygons saved by ``discover``, builds lazy
``(region, lat, lon)`` cell-area weights block by block
(:func:`ncp_subsidence.kernels.analysis.region_cell_weights`) and the ``regions`` dataset
(:func:`region_series_dataset`): area-weighted monthly GWSA, vertical displacement,
precipitation and the optional observed series on one monthly axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from ..errors import DataError, StoreError
from ..io.observed import read_observed_series
from ..kernels import analysis as kan

__all__ = [
    "Region",
    "load_regions",
    "region_series",
    "region_series_dataset",
    "region_weights",
]

_UNITS = {
    "gwsa": "mm",
    "vertical_displacement": "mm",
    "precipitation": "mm/month",
    "observed": "as given",
}


@dataclass(frozen=True)
class Region:
    """A named region: a GeoJSON (Multi)Polygon geometry, or None for the whole grid."""

    name: str
    geometry: dict[str, Any] | None
    properties: dict[str, Any]


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def _find(ctx: Any, stage: str, variable: str, required: bool = True) -> xr.Dataset | None:
    """The first dataset of ``stage`` that holds ``variable``."""
    try:
        names = ctx.upstream_datasets(stage)
    except StoreError:
        if required:
            raise
        return None
    for name in names:
        ds = ctx.open(stage, None if name == "." else name)
        if variable in ds.data_vars:
            return ds
    if required:
        raise DataError(
            f"no dataset of product {stage!r} holds {variable!r} (datasets: {list(names)}); "
            f"rerun stage {stage!r}"
        )
    return None


def load_regions(store: Any, name_property: str = "name", config: Any = None) -> list[Region]:
    """Region polygons of the ``regions`` source saved by ``discover`` (empty if none)."""
    from ..io.readers import read_geojson
    from ..sources import load_items, source_names

    if "regions" not in source_names(store):
        return []  # no regions source configured: no region series (any other failure raises)
    items = load_items(store, "regions", config=config)
    out: list[Region] = []
    for item in items:
        asset = item.assets.get("data")
        if asset is None:
            continue
        for i, feature in enumerate(read_geojson(asset.get_absolute_href())):
            props = dict(feature.get("properties") or {})
            geom = feature.get("geometry") or {}
            if geom.get("type") not in ("Polygon", "MultiPolygon"):
                continue
            out.append(Region(str(props.get(name_property, f"region_{i}")), geom, props))
    return out


def _north_up(da_: xr.DataArray) -> xr.DataArray:
    return da_.sortby("lat", ascending=False).sortby("lon")


# --------------------------------------------------------------------------------------------
# Region series
# --------------------------------------------------------------------------------------------


def region_weights(grid: xr.DataArray, regions: list[Region]) -> xr.DataArray:
    """Lazy ``(region, lat, lon)`` weights: cell area (m2) inside each region, 0 outside.

    Built block by block on ``grid``'s spatial chunks, so the weights of a whole-plain 0.001 deg
    grid are never held in memory at once.
    """
    lat = grid["lat"].values
    lon = grid["lon"].values
    dlat = float(np.median(np.abs(np.diff(lat)))) if lat.size > 1 else 0.0
    dlon = float(np.median(np.abs(np.diff(lon)))) if lon.size > 1 else 0.0
    chunks = dict(zip(grid.dims, grid.chunks)) if grid.chunks else {}
    lat_d = da.from_array(lat, chunks=chunks.get("lat", (lat.size,)))
    lon_d = da.from_array(lon, chunks=chunks.get("lon", (lon.size,)))
    data = da.blockwise(
        kan.region_cell_weights,
        "rij",
        lat_d,
        "i",
        lon_d,
        "j",
        new_axes={"r": len(regions)},
        dtype=np.float64,
        meta=np.empty((0, 0, 0)),
        geometries=tuple(r.geometry for r in regions),
        dlat=dlat,
        dlon=dlon,
    )
    return xr.DataArray(
        data,
        dims=("region", "lat", "lon"),
        coords={"region": [r.name for r in regions], "lat": lat, "lon": lon},
        attrs={"units": "m2", "long_name": "cell area inside the region"},
    )


def region_series(values: xr.DataArray, regions: list[Region]) -> xr.DataArray:
    """Lazy area-weighted mean over each region, ``(region, time)``, NaN cells skipped."""
    values = _north_up(values)
    w = region_weights(values.isel(time=0, drop=True), regions)
    num = xr.dot(values.fillna(0.0), w, dim=["lat", "lon"])
    den = xr.dot(values.notnull().astype(np.float64), w, dim=["lat", "lon"])
    out = (num / den.where(den > 0)).transpose("region", "time")
    out.attrs = {"units": values.attrs.get("units", ""), "cell_methods": "area: mean"}
    return out


def _months(times: Any) -> np.ndarray:
    return np.asarray(
        pd.to_datetime(np.asarray(times)).to_period("M").to_timestamp(), "datetime64[M]"
    )


def _mid_month(months: np.ndarray) -> np.ndarray:
    start = months.astype("datetime64[ns]")
    end = (months + 1).astype("datetime64[ns]")
    return start + (end - start) // 2


def region_series_dataset(
    mosaic: xr.Dataset,
    hydro: xr.Dataset,
    imerg: xr.Dataset | None,
    regions: list[Region],
    opts: Any,
) -> xr.Dataset:
    """The ``regions`` dataset (region, time): area-weighted monthly series of every input, on
    one monthly axis (mid-month stamps) spanning them all; NaN where a series has no month."""
    parts = {
        "gwsa": region_series(hydro["gwsa"], regions),
        "vertical_displacement": region_series(mosaic["vertical_displacement"], regions),
    }
    if imerg is not None:
        parts["precipitation"] = region_series(imerg["precipitation"], regions)
    (computed,) = dask.compute(parts)
    months = np.unique(np.concatenate([_months(v["time"].values) for v in computed.values()]))
    months = np.arange(months[0], months[-1] + 1)
    out = xr.Dataset(coords={"region": [r.name for r in regions], "time": _mid_month(months)})
    for key in ("gwsa", "vertical_displacement", "precipitation"):
        arr = np.full((len(regions), months.size), np.nan)
        if key in computed:
            src = computed[key]
            idx = np.searchsorted(months, _months(src["time"].values))
            arr[:, idx] = src.values
        out[key] = (
            ("region", "time"),
            arr,
            {"units": _UNITS[key], "long_name": f"area-weighted regional mean {key}"},
        )
    obs = np.full((len(regions), months.size), np.nan)
    names = [r.name for r in regions]
    for region, url in opts.observed_series.items():
        if region not in names:
            raise DataError(
                f"analysis.observed_series names region {region!r}, which is not one of {names}"
            )
        s = read_observed_series(url)
        key = np.asarray(s.index.to_timestamp(), "datetime64[M]")
        inside = (key >= months[0]) & (key <= months[-1])
        obs[names.index(region), np.searchsorted(months, key[inside])] = s.values[inside]
    out["observed"] = (
        ("region", "time"),
        obs,
        {"units": "as given", "long_name": "observed series"},
    )
    out["time"].attrs["long_name"] = "mid-month"
    out.attrs.update(
        {
            "sign_convention": "vertical positive up: subsidence is negative",
            "weights": "exact spherical cell areas, R = 6371007.181 m",
        }
    )
    return out
