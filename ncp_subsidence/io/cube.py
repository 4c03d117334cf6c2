"""Cube schemas and resumable, chunk-aligned region writes.

A :class:`CubeSchema` states what a product holds: variables with their dims, dtype and CF
attributes, and the chunking rule. :func:`write_cube` writes a lazy dataset the way docs/design.md
section 2 asks: first a template (metadata and coordinates, no data), then the data in regions
aligned to Zarr chunks along one dimension, recording each finished region in the product record
so that a rerun after a crash writes only what is missing. The completion record (the product
pointer) is written last by the pipeline, never here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dask
import numpy as np
import xarray as xr

from ..errors import DataError, StoreError
from .stores import ProductStore

__all__ = [
    "CONVENTIONS",
    "FLAG_MEANINGS",
    "SCHEMAS",
    "CubeSchema",
    "VarSpec",
    "cf_conform",
    "region_slices",
    "with_crs",
    "write_cube",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VarSpec:
    """One variable of a cube: dims, dtype and CF attributes."""

    dims: tuple[str, ...]
    units: str
    long_name: str
    dtype: str = "float32"
    standard_name: str | None = None

    def attrs(self) -> dict[str, str]:
        out = {"units": self.units, "long_name": self.long_name}
        if self.standard_name:
            out["standard_name"] = self.standard_name
        return out


@dataclass(frozen=True)
class CubeSchema:
    """What a product holds: variables, the dimension written in regions, and default chunks.

    ``chunks`` maps a dim to its chunk length; -1 keeps the whole axis in one chunk (the pair
    axis of interferograms, the time axis of time series).
    """

    name: str
    variables: Mapping[str, VarSpec]
    region_dim: str | None
    chunks: Mapping[str, int] = field(default_factory=dict)
    required: tuple[str, ...] = ()

    def conform(self, ds: xr.Dataset) -> xr.Dataset:
        """Check dims and dtypes of the schema's variables in ``ds`` and set their CF attributes.

        Raises :class:`DataError` naming the variable when a required one is missing or a dim
        differs. Variables not in the schema pass through untouched.
        """
        missing = [v for v in self.required if v not in ds.data_vars]
        if missing:
            raise DataError(
                f"{self.name}: missing variable(s) {missing}; present: {sorted(ds.data_vars)}"
            )
        out = ds.copy()
        for name, spec in self.variables.items():
            if name not in out.data_vars:
                continue
            var = out[name]
            if tuple(var.dims) != spec.dims:
                raise DataError(
                    f"{self.name}.{name}: dims {tuple(var.dims)} but the schema says {spec.dims}"
                )
            if var.dtype != np.dtype(spec.dtype):
                out[name] = var.astype(spec.dtype)
            out[name].attrs.update(spec.attrs())
        return out

    def chunk(self, ds: xr.Dataset, overrides: Mapping[str, int] | None = None) -> xr.Dataset:
        """Rechunk ``ds`` to the schema's chunks (with overrides), leaving other dims whole."""
        chunks = {**self.chunks, **(overrides or {})}
        return ds.chunk({d: c for d, c in chunks.items() if d in ds.dims})


def _f(dims: str, units: str, long_name: str, **kw: Any) -> VarSpec:
    return VarSpec(tuple(dims.split(",")), units, long_name, **kw)


#: The schemas of docs/design.md section 2, by product.
SCHEMAS: dict[str, CubeSchema] = {
    "ifg": CubeSchema(
        "ifg",
        {
            "unw_phase": _f(
                "pair,y,x", "rad", "unwrapped interferometric phase, secondary minus reference"
            ),
            "coherence": _f("pair,y,x", "1", "interferometric coherence"),
            "incidence": _f("y,x", "degree", "ellipsoidal incidence angle from the local vertical"),
            "los_east": _f("y,x", "1", "east component of the ground-to-satellite unit vector"),
            "los_north": _f("y,x", "1", "north component of the ground-to-satellite unit vector"),
            "los_up": _f("y,x", "1", "up component of the ground-to-satellite unit vector"),
        },
        region_dim="y",
        chunks={"pair": -1, "y": 512, "x": 512},
        required=("unw_phase",),
    ),
    "sbas": CubeSchema(
        "sbas",
        {
            "displacement": _f(
                "time,y,x",
                "mm",
                "LOS displacement toward the satellite, relative to the first date",
            ),
            "velocity": _f("y,x", "mm/yr", "LOS velocity toward the satellite"),
            "velocity_std": _f("y,x", "mm/yr", "standard error of the LOS velocity"),
            "temporal_coherence": _f("y,x", "1", "temporal coherence of the network inversion"),
            "n_pairs": _f("y,x", "1", "interferograms used", dtype="int16"),
            "n_components": _f(
                "y,x", "1", "connected components of the pixel's network", dtype="int16"
            ),
        },
        region_dim="y",
        chunks={"time": -1, "y": 512, "x": 512},
        required=("displacement", "velocity"),
    ),
    "mosaic": CubeSchema(
        "mosaic",
        {
            "vertical_velocity": _f("lat,lon", "mm/yr", "vertical velocity, positive up"),
            "vertical_displacement": _f("time,lat,lon", "mm", "vertical displacement, positive up"),
            "velocity_std": _f("lat,lon", "mm/yr", "standard error of the vertical velocity"),
        },
        region_dim="lat",
        chunks={"time": -1, "lat": 512, "lon": 512},
        required=("vertical_velocity",),
    ),
    "hydro": CubeSchema(
        "hydro",
        {
            "twsa": _f(
                "time,lat,lon", "mm", "terrestrial water storage anomaly (equivalent water height)"
            ),
            "gwsa": _f(
                "time,lat,lon", "mm", "groundwater storage anomaly (equivalent water height)"
            ),
            "gwsa_trend": _f("lat,lon", "mm/yr", "linear trend of the groundwater storage anomaly"),
        },
        region_dim="lat",
        chunks={"time": -1, "lat": 250, "lon": 250},
        required=("gwsa",),
    ),
}


def with_crs(ds: xr.Dataset, crs: Any = None) -> xr.Dataset:
    """Attach a CF ``spatial_ref`` grid-mapping coordinate that rioxarray reads back.

    Parameters
    ----------
    ds : xarray.Dataset
        With ``lat``/``lon`` (product grid) or ``y``/``x`` (frame grid) dims.
    crs : str or pyproj.CRS, optional
        The grid's CRS. None takes ``ds.attrs["crs"]``, else the CRS of an existing
        ``spatial_ref`` coordinate, else EPSG:4326 (longitude/latitude).

    Returns
    -------
    xarray.Dataset
        With ``spatial_ref``, ``grid_mapping`` on every spatial variable, ``attrs["crs"]`` as
        ``"EPSG:<code>"`` for a projected CRS, and CF attributes on the x/y coordinates: degrees
        for a geographic CRS, metres (``projection_x_coordinate``...) for a projected one.
    """
    import pyproj
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    if crs is None:
        crs = ds.attrs.get("crs")
    if crs is None and "spatial_ref" in ds.coords:
        crs = ds.rio.crs
    crs = pyproj.CRS.from_user_input(crs if crs is not None else "EPSG:4326")
    xdim = "lon" if "lon" in ds.dims else "x"
    ydim = "lat" if "lat" in ds.dims else "y"
    out = ds.rio.set_spatial_dims(x_dim=xdim, y_dim=ydim, inplace=False).rio.write_crs(crs)
    if not crs.is_geographic:  # frames keep a projected CRS by name (geographic ones as before)
        code = crs.to_epsg()
        out.attrs["crs"] = f"EPSG:{code}" if code is not None else crs.to_wkt()
    for name in out.data_vars:
        if xdim in out[name].dims and ydim in out[name].dims:
            out[name].encoding.pop("grid_mapping", None)  # as read back: attrs only, not both
            out[name].attrs["grid_mapping"] = "spatial_ref"
    if xdim in out.coords:
        out[xdim].attrs.update(
            {"units": "degrees_east", "standard_name": "longitude", "axis": "X"}
            if xdim == "lon"
            else {"axis": "X", "long_name": "x coordinate of projection"}
        )
        if xdim == "x" and not crs.is_geographic:
            out[xdim].attrs.update({"units": "m", "standard_name": "projection_x_coordinate"})
    if ydim in out.coords:
        out[ydim].attrs.update(
            {"units": "degrees_north", "standard_name": "latitude", "axis": "Y"}
            if ydim == "lat"
            else {"axis": "Y", "long_name": "y coordinate of projection"}
        )
        if ydim == "y" and not crs.is_geographic:
            out[ydim].attrs.update({"units": "m", "standard_name": "projection_y_coordinate"})
    return out


#: The CF version every product declares in its global ``Conventions`` attribute.
CONVENTIONS = "CF-1.8"

#: ``flag_meanings`` of flag variables (``flag_values`` set) that do not state their own, by name.
FLAG_MEANINGS: dict[str, str] = {
    "extrapolated": "inside_training_station_hull outside_training_station_hull",
}

_COORDINATE_NAMES = {
    "latitude",
    "longitude",
    "projection_x_coordinate",
    "projection_y_coordinate",
    "grid_latitude",
    "grid_longitude",
}


def _is_gridded(ds: xr.Dataset) -> bool:
    return {"lat", "lon"} <= set(ds.dims) or {"y", "x"} <= set(ds.dims)


def cf_conform(ds: xr.Dataset, stage: str, dataset: str | None = None) -> xr.Dataset:
    """The CF-1.8 attributes every product carries, set on the write path (:func:`write_cube`).

    - global ``Conventions`` (:data:`CONVENTIONS`), and, where the stage set none, ``title``,
      ``source`` and ``history``; these are deterministic (no time stamp, no version name: a
      resumed or repeated run writes identical attributes; the version and its completion time
      are in the product record);
    - ``time`` (a dimension coordinate): ``standard_name: time``, ``axis: T`` and a
      ``long_name``;
    - ``flag_meanings`` wherever ``flag_values`` is set without one (:data:`FLAG_MEANINGS` by
      variable name, else ``flag_<value>``);
    - data variables lose coordinate-only attributes (``axis``, a latitude/longitude or
      projection-coordinate ``standard_name``) that arithmetic with a coordinate carried over;
    - a gridded dataset (``lat``/``lon`` or ``y``/``x`` dims) without a ``spatial_ref`` grid
      mapping on every spatial variable gets one (:func:`with_crs`: ``attrs["crs"]``, else the
      existing ``spatial_ref``, else EPSG:4326), so rioxarray finds its CRS.
    """
    from .. import __version__

    out = ds.copy()
    for name in out.data_vars:
        attrs = out[name].attrs
        attrs.pop("axis", None)
        if attrs.get("standard_name") in _COORDINATE_NAMES:
            attrs.pop("standard_name")
        if "flag_values" in attrs and "flag_meanings" not in attrs:
            values = np.atleast_1d(attrs["flag_values"])
            attrs["flag_meanings"] = FLAG_MEANINGS.get(
                str(name), " ".join(f"flag_{v}" for v in values)
            )
    if "time" in out.dims and "time" in out.coords:
        out["time"].attrs.setdefault("standard_name", "time")
        out["time"].attrs.setdefault("axis", "T")
        out["time"].attrs.setdefault("long_name", "time")
    if _is_gridded(out):
        xdim, ydim = ("lon", "lat") if {"lat", "lon"} <= set(out.dims) else ("x", "y")
        spatial = [n for n in out.data_vars if {xdim, ydim} <= set(out[n].dims)]
        linked = all(
            (out[n].attrs.get("grid_mapping") or out[n].encoding.get("grid_mapping"))
            == "spatial_ref"
            for n in spatial
        )
        if "spatial_ref" not in out.coords or not linked:
            out = with_crs(out)
    what = f"product {stage!r}" + ("" if dataset in (None, "", ".") else f", dataset {dataset!r}")
    out.attrs["Conventions"] = CONVENTIONS
    out.attrs.setdefault("title", f"North China Plain land subsidence (ncp_subsidence): {what}")
    out.attrs.setdefault("source", f"ncp_subsidence {__version__}, stage {stage!r}")
    out.attrs.setdefault(
        "history",
        f"written by ncp_subsidence {__version__}, stage {stage!r} (configuration in the store's "
        "root attributes; version and completion time in the product record)",
    )
    return out


#: the fewest chunks a region holds by default. A region is computed and waited for before the
#: next starts (so that a rerun resumes after the last one done): the workers that finish their
#: share first idle until its last task ends. Measured on the large preset's ingest (frames of
#: 6 x 4 and 6 x 3 windows of 256 px, the last column 32 and 115 px wide, 2 workers): a region
#: per chunk row left one worker idle through most of every row.
REGION_MIN_CHUNKS = 32


def default_chunks_per_region(ds: xr.Dataset, region_dim: str) -> int:
    """Chunks along ``region_dim`` per region: about 8 regions, but each region at least
    :data:`REGION_MIN_CHUNKS` chunks of its widest variable (chunk rows x the chunks across).
    """
    n_rows = len(ds.chunks[region_dim])
    across = max(
        (
            int(np.prod([len(c) for d, c in zip(v.dims, v.chunks) if d != region_dim]))
            for v in ds.data_vars.values()
            if v.chunks is not None and region_dim in v.dims
        ),
        default=1,
    )
    return max(1, -(-n_rows // 8), -(-REGION_MIN_CHUNKS // across))


def region_slices(chunks: tuple[int, ...], per_region: int) -> list[slice]:
    """Contiguous slices covering whole chunks, ``per_region`` chunks each.

    >>> region_slices((4, 4, 4, 2), 2)
    [slice(0, 8, None), slice(8, 14, None)]
    """
    bounds = np.concatenate([[0], np.cumsum(chunks)])
    out = []
    for i in range(0, len(chunks), per_region):
        out.append(slice(int(bounds[i]), int(bounds[min(i + per_region, len(chunks))])))
    return out


def _check_chunks(ds: xr.Dataset) -> dict[str, tuple[int, ...]]:
    """Dask chunks of ``ds`` must be Zarr-compatible: equal except the last, one chunking per dim."""
    chunks: dict[str, tuple[int, ...]] = {}
    for name, var in ds.variables.items():
        if var.chunks is None:
            continue
        for dim, c in zip(var.dims, var.chunks):
            if dim in chunks and chunks[dim] != c:
                raise DataError(
                    f"variable {name!r} has chunks {c} along {dim!r}, others have {chunks[dim]}; rechunk first"
                )
            if len(c) > 1 and (len(set(c[:-1])) != 1 or c[-1] > c[0]):
                raise DataError(
                    f"variable {name!r} has irregular chunks {c} along {dim!r}: Zarr needs equal chunks "
                    "except a smaller last one; rechunk with a fixed size"
                )
            chunks[dim] = c
    return chunks


def write_cube(
    store: ProductStore,
    stage: str,
    version: str,
    dataset_name: str | None,
    ds: xr.Dataset,
    *,
    region_dim: str | None = None,
    chunks_per_region: int | None = None,
    compute: Callable[[Any], Any] | None = None,
) -> str:
    """Write ``ds`` to ``stage/version/dataset_name``: a template first, then resumable regions.

    Parameters
    ----------
    store : ProductStore
        Destination; ``stage`` must have a pending version (see :meth:`ProductStore.begin`).
    ds : xarray.Dataset
        Lazy (dask-backed) or in-memory dataset with Zarr-compatible chunks. In-memory variables
        are written with the template, in the chunks of their ``encoding["chunks"]`` if set;
        small products need no dask graph at all. Written with the CF-1.8 attributes of
        :func:`cf_conform`.
    region_dim : str, optional
        Dimension along which data are written in regions, each recorded when done so a rerun
        resumes. None writes all data at once (small products).
    chunks_per_region : int, optional
        Chunks along ``region_dim`` per region; default :func:`default_chunks_per_region`
        (about 8 regions, each at least :data:`REGION_MIN_CHUNKS` chunks).
    compute : callable, optional
        Computes each region's delayed write and waits for it (default ``dask.compute``); the
        CLI passes one that shows a progress bar.

    Returns
    -------
    str
        The group path written.
    """
    path = store.path(stage, version, dataset_name)
    key = dataset_name or "."
    ds = cf_conform(ds, stage, dataset_name)
    # coordinates are small: hold them in memory so the template writes them at once
    lazy = [c for c in ds.coords if ds[c].chunks is not None]
    if lazy:  # one computation for all of them (one round trip to a cluster, not one each)
        ds = ds.assign_coords(dict(zip(lazy, dask.compute(*(ds[c] for c in lazy)), strict=True)))
    chunks = _check_chunks(ds)
    encoding = {
        name: {"chunks": tuple(c[0] for c in var.chunks)}
        for name, var in ds.variables.items()
        if var.chunks is not None
    }
    for name, var in ds.variables.items():
        if var.chunks is not None:  # dask chunks decide; an in-memory variable keeps its own
            ds[name].encoding.pop("chunks", None)
        ds[name].encoding.pop("preferred_chunks", None)
        if var.chunks is None and "chunks" in var.encoding:
            encoding[name] = {"chunks": tuple(var.encoding["chunks"])}

    done = store.done_regions(stage, key)
    if "template" not in done:
        _write_template(store, ds, path, encoding)
        store.mark_done(stage, key, "template")
    lazy_vars = [n for n, v in ds.data_vars.items() if v.chunks is not None]
    if not lazy_vars:
        store.mark_done(stage, key, "data")
        return path

    if region_dim is None or region_dim not in chunks:
        if "data" not in done:
            _write_region(store, ds[lazy_vars], path, None, compute)
            store.mark_done(stage, key, "data")
        return path

    along = [n for n in lazy_vars if region_dim in ds[n].dims]
    rest = [n for n in lazy_vars if region_dim not in ds[n].dims]
    per = chunks_per_region or default_chunks_per_region(ds[along], region_dim)
    for sl in region_slices(chunks[region_dim], per):
        tag = f"{region_dim}[{sl.start}:{sl.stop}]"
        if tag in done:
            continue
        chunk0 = chunks[region_dim][0]
        if sl.start % chunk0 or (sl.stop % chunk0 and sl.stop != ds.sizes[region_dim]):
            raise StoreError(f"region {tag} of {path} is not aligned to Zarr chunks of {chunk0}")
        sub = ds[along].isel({region_dim: sl})
        _write_region(store, sub, path, {region_dim: sl}, compute)
        store.mark_done(stage, key, tag)
        log.debug("wrote %s %s", path, tag)
    if rest and "rest" not in done:
        _write_region(store, ds[rest], path, None, compute)
        store.mark_done(stage, key, "rest")
    return path


def _write_template(
    store: ProductStore, ds: xr.Dataset, path: str, encoding: dict[str, Any]
) -> None:
    """The group at ``path``: every array's metadata, and the data of the in-memory variables.

    On a local disk xarray writes it in place. On a remote store (S3, GCS, HTTP) it is written
    into a Zarr ``MemoryStore`` by the same ``to_zarr`` call and its documents sent in one batch
    (:meth:`ProductStore.put_group`): the same bytes, one request a key instead of the ~17
    that creating each array through Zarr costs there (listings, the parent groups read and
    checked, each ``zarr.json`` written twice).
    """
    options = {
        "mode": "w",
        "compute": False,
        "consolidated": False,
        "zarr_format": store.zarr_format,
        "encoding": encoding,
    }
    if store.is_local:
        ds.to_zarr(store.zarr_store, group=path, **options)
        return
    import zarr

    documents: dict[str, Any] = {}
    ds.to_zarr(zarr.storage.MemoryStore(store_dict=documents), group=path, **options)
    store.put_group(path, {key: buf.to_bytes() for key, buf in documents.items()})


def _write_region(
    store: ProductStore,
    ds: xr.Dataset,
    path: str,
    region: dict[str, slice] | None,
    compute: Callable[[Any], Any] | None,
) -> None:
    # Coordinates were written with the template; a region write carries data variables only,
    # and names their non-index coordinates (e.g. spatial_ref) so xarray keeps the link.
    linked = {
        name: " ".join(
            c for c in ds.coords if c not in ds.dims and set(ds[c].dims) <= set(var.dims)
        )
        for name, var in ds.data_vars.items()
    }
    ds = ds.drop_vars(list(ds.coords))
    region_arg = {d: (region or {}).get(d, slice(None)) for d in ds.dims}
    for name in ds.data_vars:
        ds[name].encoding = {"coordinates": linked[name]} if linked[name] else {}
    delayed = ds.to_zarr(
        store.zarr_store,
        group=path,
        mode="r+",
        region=region_arg,
        compute=False,
        consolidated=False,
        zarr_format=store.zarr_format,
    )
    (compute or dask.compute)(delayed)
