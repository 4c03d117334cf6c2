"""Stage ``factors``: every driving factor of the geodetector on one grid (docs/science.md 7.1).

Reads ``ingest/factors`` (DEM, NDVI, evapotranspiration, precipitation, population, GDP, building
density, fault density, already on the factor grid: ``sources.bbox`` at
``factors.resolution_deg``) and ``gwsa_trend`` from ``hydro`` (mm/yr, on the hydro grid), and
writes ``factors/<version>/factors``: one ``(lat, lon)`` float32 variable per factor, in the order
of :data:`FACTOR_NAMES`, with CF attributes and a CRS.

The GWSA trend is resampled to the factor grid as ``factors.gwsa_resampling`` says; ``auto`` takes
the cell average when the hydro grid is finer (area-weighted, NaN ignored) and bilinear
interpolation when it is coarser, as ingest does for the factor rasters. The field is 2-D (at most a
few million cells for the whole plain), so it is resampled in memory with rasterio.
"""

from __future__ import annotations

import logging

import numpy as np
import xarray as xr

from ..choices import FACTOR_NAMES
from ..errors import DataError
from ..io.cube import with_crs
from ..io.readers import factor_grid
from ..pipeline import Stage, StageContext

__all__ = [
    "FACTOR_ATTRS",
    "FACTOR_NAMES",
    "STAGE",
    "FactorsStage",
    "resample_to_grid",
]

log = logging.getLogger(__name__)

#: Default CF attributes per factor (upstream ``units`` win when present).
FACTOR_ATTRS: dict[str, dict[str, str]] = {
    "gwsa_trend": {
        "units": "mm/yr",
        "long_name": "linear trend of the groundwater storage anomaly",
    },
    "dem": {"units": "m", "long_name": "elevation", "standard_name": "surface_altitude"},
    "precipitation": {"units": "mm", "long_name": "annual precipitation"},
    "evapotranspiration": {"units": "mm", "long_name": "annual evapotranspiration"},
    "ndvi": {"units": "1", "long_name": "normalized difference vegetation index"},
    "fault_density": {"units": "km", "long_name": "fault length per cell"},
    "building_density": {"units": "1", "long_name": "built-up fraction of the cell"},
    "population": {"units": "km-2", "long_name": "population density"},
    "gdp": {"units": "1e4 CNY km-2", "long_name": "gross domestic product density"},
}


def _regular(coord: np.ndarray, name: str) -> float:
    """Signed spacing of a regular coordinate; raises if irregular."""
    if coord.size < 2:
        raise DataError(f"{name} has {coord.size} value(s); a grid needs at least 2")
    d = np.diff(coord)
    if not np.allclose(d, d[0], rtol=1e-6, atol=1e-9):
        raise DataError(f"{name} is not regularly spaced (steps {d.min()} to {d.max()})")
    return float(d[0])


def resample_to_grid(
    source: xr.DataArray,
    lat: np.ndarray,
    lon: np.ndarray,
    method: str = "auto",
) -> xr.DataArray:
    """Resample a 2-D ``(lat, lon)`` field (EPSG:4326, cell centres) onto another regular grid.

    Parameters
    ----------
    source : xarray.DataArray, dims (lat, lon)
        Field on a regular grid (any orientation); NaN is nodata.
    lat, lon : ndarray of float
        Cell centres of the target grid (regular; latitude may be descending).
    method : {"auto", "average", "bilinear", "nearest"}
        ``auto``: cell average if the source is finer than the target, bilinear otherwise.

    Returns
    -------
    xarray.DataArray of float32, dims (lat, lon)
        On the target grid, the source's attrs plus ``resampling``.
    """
    import rasterio
    from rasterio.warp import Resampling, reproject

    src = source.transpose("lat", "lon").sortby("lat", ascending=False).sortby("lon")
    s_lat, s_lon = src["lat"].values, src["lon"].values
    ds_lat, ds_lon = _regular(s_lat, "source lat"), _regular(s_lon, "source lon")
    t_lat, t_lon = np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
    dt_lat, dt_lon = _regular(t_lat, "target lat"), _regular(t_lon, "target lon")
    src_res, dst_res = abs(ds_lon), abs(dt_lon)
    if method == "auto":
        method = "average" if src_res < dst_res * 0.999 else "bilinear"
    resampling = {
        "average": Resampling.average,
        "bilinear": Resampling.bilinear,
        "nearest": Resampling.nearest,
    }.get(method)
    if resampling is None:
        raise DataError(f"unknown resampling {method!r}; use auto, average, bilinear or nearest")
    flip = dt_lat > 0  # target ascending: compute north-up, flip back
    north_lat = t_lat[::-1] if flip else t_lat
    out = np.full((t_lat.size, t_lon.size), np.nan, dtype=np.float64)
    reproject(
        np.asarray(src.values, dtype=np.float64),
        out,
        src_transform=rasterio.transform.from_origin(
            s_lon[0] - abs(ds_lon) / 2, s_lat[0] + abs(ds_lat) / 2, abs(ds_lon), abs(ds_lat)
        ),
        src_crs="EPSG:4326",
        dst_transform=rasterio.transform.from_origin(
            t_lon[0] - dst_res / 2, north_lat[0] + abs(dt_lat) / 2, dst_res, abs(dt_lat)
        ),
        dst_crs="EPSG:4326",
        src_nodata=np.nan,
        dst_nodata=np.nan,
        resampling=resampling,
    )
    if flip:
        out = out[::-1]
    return xr.DataArray(
        out.astype("float32"),
        dims=("lat", "lon"),
        coords={"lat": t_lat, "lon": t_lon},
        attrs={**source.attrs, "resampling": f"{method} from {src_res:g} deg"},
    )


class FactorsStage(Stage):
    """Driving factors on the factor grid (see the module docstring)."""

    name = "factors"
    reads: tuple[str, ...] = ("ingest", "hydro")

    def run(self, ctx: StageContext) -> None:
        """Assemble the factors and write dataset ``factors`` in lat regions."""
        opts = ctx.options
        ingested = ctx.open("ingest", "factors")
        grid = factor_grid(ctx.config)
        lat, lon = grid.coords()
        if ingested.sizes.get("lat") != lat.size or ingested.sizes.get("lon") != lon.size:
            raise DataError(
                f"ingest/factors has shape {(ingested.sizes.get('lat'), ingested.sizes.get('lon'))} "
                f"but the factor grid is {(lat.size, lon.size)} at {opts.resolution_deg} deg; "
                "rerun ingest with the same factors.resolution_deg and sources.bbox"
            )
        gwsa = ctx.find_variable("hydro", "gwsa_trend")
        layers: dict[str, xr.DataArray] = {
            "gwsa_trend": resample_to_grid(
                gwsa.compute(), ingested["lat"].values, ingested["lon"].values, opts.gwsa_resampling
            )
        }
        missing = []
        for name in FACTOR_NAMES[1:]:
            if name in ingested.data_vars:
                layers[name] = ingested[name].astype("float32")
            else:
                missing.append(name)
        if missing:
            log.warning("factors: ingest/factors lacks %s; writing the others", missing)
        out = xr.Dataset(
            {name: arr.drop_vars("spatial_ref", errors="ignore") for name, arr in layers.items()}
        )
        for name in out.data_vars:
            attrs = dict(FACTOR_ATTRS[name])
            upstream = {k: v for k, v in layers[name].attrs.items() if k in ("units", "resampling")}
            if upstream.get("units"):
                attrs["units"] = str(upstream["units"])
            if "resampling" in upstream:
                attrs["resampling"] = upstream["resampling"]
            out[name].attrs = attrs
        out.attrs["factors"] = list(out.data_vars)
        out.attrs["missing_factors"] = missing
        chunk = int(opts.chunk_cells)
        out = with_crs(out).chunk({"lat": chunk, "lon": chunk})
        ctx.write("factors", out, region_dim="lat")
        log.info(
            "factors: %d factor(s) on %d x %d cells (%s)",
            len(out.data_vars),
            out.sizes["lat"],
            out.sizes["lon"],
            layers["gwsa_trend"].attrs["resampling"],
        )


STAGE = FactorsStage()
