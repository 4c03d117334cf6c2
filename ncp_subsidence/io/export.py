"""Export a store's products as files people use: COG, NetCDF, CSV, GeoJSON and a STAC catalog.

``ncp-subsidence export --store S --out DIR`` (and :func:`export_products`) reads the current
version of each product (following the product record, concatenating appended parts) and writes,
with nothing of the store's layout needed to use them::

    DIR/catalog.json                         STAC catalog (self-contained, relative hrefs)
    DIR/<stage>/<stage>.json                 one STAC item per product (stage)
    DIR/<stage>/[<dataset>/]<variable>.tif   maps: every 2-D (lat, lon) or (y, x) variable, as a
                                             Cloud-Optimized GeoTIFF (CRS, nodata, units, sign
                                             convention in the tags), north up
    DIR/<stage>/<dataset>.nc                 cubes: a dataset with a time/pair (or any other
                                             non-spatial) dimension, whole, as CF-1.8 NetCDF-4
                                             (h5netcdf, chunked, zlib); ``<stage>.nc`` for a
                                             product's root dataset
    DIR/<stage>/<dataset>.csv                one-dimensional tables (the GNSS stations)
    DIR/<stage>/<name>.csv                   the CSV tables the stage wrote, as they are
    DIR/<stage>/<name>.json                  the stage's JSON summaries, as they are
    DIR/adjust/gnss_residuals.geojson        adjust's GNSS station residuals (``stations.json``)
                                             as points, one feature per frame and station
    DIR/adjust/gnss_series.csv               adjust's GNSS-vs-InSAR series, long format

Each item carries the product's version, fingerprint and input kind (``ncp:*`` properties),
``datetime`` (the completion time) or ``start_datetime``/``end_datetime`` (the time span of
its data), a footprint in EPSG:4326, and per asset the roles, media type and the projection
extension's ``proj:code``, ``proj:shape``, ``proj:transform`` (gridded assets).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..config import STAGE_NAMES
from ..errors import ConfigError, StoreError
from .stores import ProductStore

__all__ = [
    "DEFAULT_STAGES",
    "EXPORTABLE",
    "MEDIA_TYPES",
    "ExportResult",
    "export_products",
]

log = logging.getLogger(__name__)

#: Products ``export`` can write, in pipeline order (``discover`` holds input catalogs and
#: ``report`` a web page: see ``<store>/report/latest/index.html``).
EXPORTABLE: tuple[str, ...] = tuple(s for s in STAGE_NAMES if s not in ("discover", "report"))
#: What ``export`` writes without ``--stages``: the outputs (``ingest``'s input cubes are large).
DEFAULT_STAGES: tuple[str, ...] = EXPORTABLE[1:]

#: Media types of the exported assets.
MEDIA_TYPES: dict[str, str] = {
    "cog": "image/tiff; application=geotiff; profile=cloud-optimized",
    "netcdf": "application/netcdf",
    "csv": "text/csv",
    "geojson": "application/geo+json",
    "json": "application/json",
}

_SPATIAL = {"lat", "lon", "y", "x"}


@dataclass
class ExportResult:
    """What :func:`export_products` wrote."""

    catalog: Path
    items: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def export_products(
    store: str | os.PathLike[str] | ProductStore,
    out: str | os.PathLike[str],
    stages: Iterable[str] | None = None,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> ExportResult:
    """Write the current version of each product as COG, NetCDF, CSV and GeoJSON, with a STAC
    catalog (see the module docstring for the layout).

    Parameters
    ----------
    store : str, path or ProductStore
        The store a run wrote (local path or fsspec URL).
    out : path
        Local output folder (created; files of an earlier export there are overwritten).
    stages : iterable of str, optional
        Products to export (:data:`EXPORTABLE`); default :data:`DEFAULT_STAGES`, skipping those
        the store does not hold. A stage named here that has no complete version is an error.
    storage_options : mapping, optional
        fsspec options of a remote store given as a URL.

    Returns
    -------
    ExportResult
        ``catalog`` (the ``catalog.json`` path), the item ids and every file written.
    """
    import pystac

    if not isinstance(store, ProductStore):
        store = ProductStore(str(store), storage_options, must_exist=True)
    explicit = stages is not None
    names = list(DEFAULT_STAGES if stages is None else stages)
    unknown = [s for s in names if s not in EXPORTABLE]
    if unknown:
        raise ConfigError(
            f"cannot export {unknown}: exportable products are {', '.join(EXPORTABLE)}"
        )
    root = Path(out).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    result = ExportResult(catalog=root / "catalog.json")
    catalog = pystac.Catalog(
        id="ncp-subsidence-export",
        title="North China Plain land subsidence: exported products",
        description=f"Products of the ncp_subsidence store {store.url}, exported by "
        "`ncp-subsidence export`: maps as Cloud-Optimized GeoTIFF, cubes as CF-1.8 NetCDF, "
        "tables as CSV, GNSS residuals as GeoJSON.",
    )
    input_kind = store.root_attrs().get("input_kind")
    footprints: list[list[float]] = []
    items = []
    for stage in [s for s in EXPORTABLE if s in names]:
        record = store.record(stage)
        if record is None:
            if explicit:
                raise StoreError(
                    f"product {stage!r} has no complete version in store {store.url!r}; "
                    f"run stage {stage!r} first, or leave it out of --stages"
                )
            log.info("export: product %s not in the store, skipped", stage)
            continue
        exporter = _StageExport(store, stage, record, root / stage, input_kind)
        item = exporter.run()
        result.files += exporter.files
        if item.bbox is not None:
            footprints.append(item.bbox)
        items.append(item)
        log.info("export: %s version %s, %d file(s)", stage, record.version, len(exporter.files))
    union = _union(footprints)
    for item in items:
        if item.bbox is None and union is not None:  # tables of the whole area (analysis...)
            item.bbox, item.geometry = union, _box(union)
        catalog.add_item(item)
        result.items.append(item.id)
    catalog.normalize_hrefs(str(root))
    for item in catalog.get_items():
        item.make_asset_hrefs_relative()
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return result


class _StageExport:
    """Export of one product: its datasets, its files, and the STAC item describing them."""

    def __init__(
        self, store: ProductStore, stage: str, record: Any, folder: Path, input_kind: Any
    ) -> None:
        self.store, self.stage, self.record, self.folder = store, stage, record, folder
        self.input_kind = input_kind
        self.assets: dict[str, Any] = {}
        self.files: list[Path] = []
        self.bboxes: list[list[float]] = []
        self.times: list[np.datetime64] = []
        self.codes: set[str] = set()

    # -- the item ----------------------------------------------------------------------------

    def run(self) -> Any:
        import pystac
        from pystac.extensions.projection import ProjectionExtension

        self.folder.mkdir(parents=True, exist_ok=True)
        for name in self.record.datasets:
            self._dataset(name)
        self._files()
        bbox = _union(self.bboxes)
        completed = _parse_time(self.record.completed_at)
        properties: dict[str, Any] = {
            "title": f"ncp_subsidence product {self.stage!r}",
            "description": f"Product {self.stage!r} (datasets: "
            f"{', '.join(self.record.datasets) or 'none'}), version {self.record.version}.",
            "created": _iso(completed),
            "ncp:stage": self.stage,
            "ncp:version": self.record.version,
            "ncp:fingerprint": self.record.fingerprint,
            "ncp:package_version": self.record.package_version,
        }
        if self.input_kind:
            properties["ncp:input_kind"] = self.input_kind
        start = end = None
        if self.times:
            start = _to_datetime(min(self.times))
            end = _to_datetime(max(self.times))
            properties["start_datetime"], properties["end_datetime"] = _iso(start), _iso(end)
        item = pystac.Item(
            id=self.stage,
            geometry=_box(bbox) if bbox else None,
            bbox=bbox,
            datetime=None if self.times else completed,
            properties=properties,
            start_datetime=start,
            end_datetime=end,
        )
        ProjectionExtension.add_to(item)
        if len(self.codes) == 1:  # one CRS for every gridded asset: stated on the item too
            ProjectionExtension.ext(item).code = next(iter(self.codes))
        for key, (path, asset, proj) in self.assets.items():
            stac_asset = pystac.Asset(href=str(path), **asset)
            if proj:
                ext = ProjectionExtension.ext(stac_asset)
                ext.code, ext.shape, ext.transform = proj["code"], proj["shape"], proj["transform"]
            item.add_asset(key, stac_asset)
        return item

    def _add(self, key: str, path: Path, proj: dict[str, Any] | None = None, **asset: Any) -> None:
        while key in self.assets:
            key += "_"
        self.assets[key] = (path, asset, proj)
        self.files.append(path)

    # -- datasets ----------------------------------------------------------------------------

    def _dataset(self, name: str) -> None:
        ds = self.store.open(self.stage, None if name == "." else name)
        label = self.stage if name == "." else name
        prefix = "" if name == "." else name.replace("/", "-") + "-"
        for coord in ds.coords:
            if np.issubdtype(ds[coord].dtype, np.datetime64) and ds[coord].size:
                values = ds[coord].values.ravel()
                values = values[~np.isnat(values)]
                if values.size:
                    self.times += [values.min(), values.max()]
        dims = _grid_dims(ds)
        if dims is not None:
            xdim, ydim = dims
            grid = _grid(ds, xdim, ydim)
            self.bboxes.append(grid["bbox"])
            if grid["code"]:
                self.codes.add(grid["code"])
            maps = [v for v in ds.data_vars if set(ds[v].dims) == {xdim, ydim}]
            for var in maps:
                path = self.folder / ("" if name == "." else name) / f"{var}.tif"
                proj = _write_cog(ds, str(var), xdim, ydim, path, self._where(name))
                attrs = ds[var].attrs
                self._add(
                    f"{prefix}{var}",
                    path,
                    proj,
                    media_type=MEDIA_TYPES["cog"],
                    roles=["data"],
                    title=f"{label}: {attrs.get('long_name', var)} ({attrs.get('units', '-')})",
                    description=_sign_convention(ds, str(var)) or None,
                )
            if len(maps) == len(ds.data_vars):
                return
            path = self.folder / f"{label if name != '.' else self.stage}.nc"
            _write_netcdf(ds, path, self._where(name))
            self._add(
                f"{prefix}netcdf",
                path,
                {k: grid[k] for k in ("code", "shape", "transform")} if grid["code"] else None,
                media_type=MEDIA_TYPES["netcdf"],
                roles=["data"],
                title=f"{label}: every variable ({', '.join(map(str, ds.data_vars))}), CF-1.8",
            )
            return
        if _is_table(ds):
            path = self.folder / f"{label}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            ds.reset_coords().to_dataframe().to_csv(path)
            self._add(
                f"{prefix}csv",
                path,
                media_type=MEDIA_TYPES["csv"],
                roles=["data"],
                title=f"{label}: table ({', '.join(map(str, ds.data_vars))})",
            )
            return
        path = self.folder / f"{label}.nc"
        _write_netcdf(ds, path, self._where(name))
        self._add(
            f"{prefix}netcdf",
            path,
            media_type=MEDIA_TYPES["netcdf"],
            roles=["data"],
            title=f"{label}: every variable ({', '.join(map(str, ds.data_vars))}), CF-1.8",
        )

    def _where(self, name: str) -> str:
        return f"{self.stage}/{self.record.version}" + ("" if name == "." else f"/{name}")

    # -- the stage's own files ---------------------------------------------------------------

    def _files(self) -> None:
        base = f"{self.store.root.rstrip('/')}/{self.stage}/{self.record.version}"
        fs = self.store.fs
        entries = [
            info["name"]
            for info in fs.ls(base, detail=True)
            if info.get("type") == "file" and not info["name"].endswith("/zarr.json")
        ]
        for full in sorted(entries):
            filename = full.rsplit("/", 1)[1]
            stem, _, ext = filename.rpartition(".")
            data = fs.cat_file(full)
            if ext == "csv":
                path = self._write(filename, data)
                self._add(
                    f"table-{stem}",
                    path,
                    media_type=MEDIA_TYPES["csv"],
                    roles=["data"],
                    title=f"{self.stage}: table {stem}",
                )
            elif self.stage == "adjust" and filename == "stations.json":
                self._stations(json.loads(data))
            elif self.stage == "adjust" and filename == "gnss_series.json":
                self._gnss_series(json.loads(data), data)
            elif ext == "json":
                path = self._write(filename, data)
                self._add(
                    f"json-{stem}",
                    path,
                    media_type=MEDIA_TYPES["json"],
                    roles=["metadata"],
                    title=f"{self.stage}: {stem}",
                )

    def _write(self, filename: str, data: bytes | str) -> Path:
        path = self.folder / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def _stations(self, stations: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        """adjust's ``stations.json`` as GeoJSON points (station positions from ingest/gnss)."""
        where: dict[str, tuple[float, float]] = {}
        if self.store.record("ingest") is not None:
            try:
                gnss = self.store.open("ingest", "gnss")
                where = {
                    str(s): (float(lo), float(la))
                    for s, lo, la in zip(
                        gnss["station"].values, gnss["lon"].values, gnss["lat"].values
                    )
                }
            except StoreError:
                log.warning("export: ingest/gnss not found; GNSS residuals without positions")
        features = []
        for frame, records in stations.items():
            for rec in records:
                lonlat = where.get(str(rec.get("station")))
                features.append(
                    {
                        "type": "Feature",
                        "id": f"{frame}:{rec.get('station')}",
                        "geometry": {"type": "Point", "coordinates": list(lonlat)}
                        if lonlat
                        else None,
                        "properties": {"frame": frame, **rec},
                    }
                )
        points = [f["geometry"]["coordinates"] for f in features if f["geometry"]]
        if points:
            lon, lat = np.array(points).T
            self.bboxes.append(
                [float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max())]
            )
        collection = {
            "type": "FeatureCollection",
            "name": "gnss_residuals",
            "description": "GNSS-minus-InSAR LOS velocity residuals at the stations (mm/yr, "
            "positive toward the satellite), the correction there and each station's role "
            "(train, holdout, holdout_screened, rejected), per frame; WGS 84 longitude/latitude",
            "features": features,
        }
        path = self._write("gnss_residuals.geojson", json.dumps(collection, indent=1))
        self._add(
            "gnss-residuals",
            path,
            media_type=MEDIA_TYPES["geojson"],
            roles=["data"],
            title="adjust: GNSS station residuals and roles (mm/yr, LOS)",
        )

    def _gnss_series(self, series: Mapping[str, Any], raw: bytes) -> None:
        """adjust's ``gnss_series.json`` as one long CSV (frame, station, time, series)."""
        import pandas as pd

        rows = []
        try:
            for frame, entry in series.items():
                times = entry["time"]
                for station, values in entry["stations"].items():
                    keys = [k for k, v in values.items() if isinstance(v, list)]
                    for i, t in enumerate(times):
                        row = {"frame": frame, "station": station, "time": t}
                        row.update({k: values[k][i] for k in keys})
                        rows.append(row)
        except (KeyError, TypeError, IndexError, AttributeError):
            path = self._write("gnss_series.json", raw)  # not the layout expected: as it is
            self._add(
                "json-gnss_series",
                path,
                media_type=MEDIA_TYPES["json"],
                roles=["data"],
                title="adjust: GNSS and InSAR up series at the held-out stations",
            )
            return
        path = self.folder / "gnss_series.csv"
        pd.DataFrame(rows).to_csv(path, index=False)
        self._add(
            "table-gnss_series",
            path,
            media_type=MEDIA_TYPES["csv"],
            roles=["data"],
            title="adjust: GNSS and InSAR up displacement (mm) at the held-out stations",
        )


# --------------------------------------------------------------------------------- writers


def _grid_dims(ds: xr.Dataset) -> tuple[str, str] | None:
    if {"lat", "lon"} <= set(ds.dims):
        return "lon", "lat"
    if {"y", "x"} <= set(ds.dims):
        return "x", "y"
    return None


def _is_table(ds: xr.Dataset) -> bool:
    """One dimension shared by every variable: a table (the GNSS stations)."""
    dims = {d for v in ds.variables.values() for d in v.dims}
    return len(dims) == 1 and all(v.ndim == 1 for v in ds.variables.values() if v.dims)


def _crs(ds: xr.Dataset) -> Any:
    import pyproj
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    crs = ds.rio.crs
    if crs is None and ds.attrs.get("crs"):
        crs = ds.attrs["crs"]
    return pyproj.CRS.from_user_input(crs if crs is not None else "EPSG:4326")


def _code(crs: Any) -> str | None:
    authority = crs.to_authority()
    return f"{authority[0]}:{authority[1]}" if authority else None


def _grid(ds: xr.Dataset, xdim: str, ydim: str) -> dict[str, Any]:
    """proj:code/shape/transform of the stored grid and its EPSG:4326 bbox."""
    from pyproj import Transformer

    crs = _crs(ds)
    transform = _transform(ds[xdim].values, ds[ydim].values)
    a, _, c, _, e, f = transform
    xs, ys = (c, c + a * ds.sizes[xdim]), (f, f + e * ds.sizes[ydim])
    left, right, bottom, top = min(xs), max(xs), min(ys), max(ys)
    if crs.is_geographic:
        bbox = [left, bottom, right, top]
    else:
        to_ll = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
        bbox = list(to_ll.transform_bounds(left, bottom, right, top, densify_pts=21))
    return {
        "code": _code(crs),
        "shape": [int(ds.sizes[ydim]), int(ds.sizes[xdim])],
        "transform": transform,
        "bbox": [float(v) for v in bbox],
    }


def _transform(x: np.ndarray, y: np.ndarray) -> list[float]:
    """Affine ``[a, b, c, d, e, f]`` of a regular grid from its cell-centre coordinates."""
    dx = float(x[1] - x[0]) if x.size > 1 else 1.0
    dy = float(y[1] - y[0]) if y.size > 1 else -1.0
    return [dx, 0.0, float(x[0]) - dx / 2, 0.0, dy, float(y[0]) - dy / 2]


def _sign_convention(ds: xr.Dataset, var: str) -> str:
    attrs = ds[var].attrs
    own = attrs.get("sign_convention") or ds.attrs.get("sign_convention")
    if own:
        return str(own)
    text = str(attrs.get("long_name", ""))
    if "positive up" in text:
        return "vertical, positive up: uplift > 0, subsidence < 0"
    if "toward the satellite" in text:
        return "line of sight, positive toward the satellite"
    return ""


def _write_cog(
    ds: xr.Dataset, var: str, xdim: str, ydim: str, path: Path, where: str
) -> dict[str, Any]:
    """One 2-D variable as a north-up Cloud-Optimized GeoTIFF; returns its proj fields."""
    import rioxarray  # noqa: F401

    crs = _crs(ds)
    da = ds[var].copy(deep=False)  # own attrs and encoding: the dataset's stay as they are
    attrs = dict(da.attrs)
    fill = da.encoding.get("_FillValue")
    y = da[ydim].values
    if y.size > 1 and y[1] > y[0]:  # north up
        da = da.isel({ydim: slice(None, None, -1)})
    if da.dtype == bool:
        da = da.astype(np.uint8)
    da = da.reset_coords(drop=True).load()
    da.attrs, da.encoding = {}, {}
    da = da.rio.set_spatial_dims(x_dim=xdim, y_dim=ydim).rio.write_crs(crs)
    if np.issubdtype(da.dtype, np.floating):
        da = da.rio.write_nodata(np.nan, encoded=False)
    elif fill is not None and np.isfinite(fill):
        da = da.rio.write_nodata(fill, encoded=False)
    tags = {
        "long_name": str(attrs.get("long_name", var)),
        "units": str(attrs.get("units", "1")),
        "sign_convention": _sign_convention(ds, var) or "n/a",
        "nodata_value": "NaN" if np.issubdtype(da.dtype, np.floating) else str(fill),
        "crs_code": _code(crs) or crs.to_wkt(),
        "source_product": where,
        "source_conventions": str(ds.attrs.get("Conventions", "none")),
        "input_kind": str(ds.attrs.get("input_kind", "unknown")),
    }
    if "flag_values" in attrs:
        tags["flag_values"] = " ".join(str(v) for v in np.atleast_1d(attrs["flag_values"]))
        tags["flag_meanings"] = str(attrs.get("flag_meanings", "none"))
    path.parent.mkdir(parents=True, exist_ok=True)
    da.rio.to_raster(path, driver="COG", compress="DEFLATE", tags=tags)
    return {
        "code": _code(crs),
        "shape": [int(da.sizes[ydim]), int(da.sizes[xdim])],
        "transform": [float(v) for v in tuple(da.rio.transform())[:6]],
    }


def _write_netcdf(ds: xr.Dataset, path: Path, where: str) -> None:
    """A dataset as CF-1.8 NetCDF-4 (h5netcdf): chunked, zlib-compressed, attributes NetCDF-safe."""
    out = ds.copy()
    lazy = {c: out[c].compute() for c in out.coords if out[c].chunks is not None}
    if lazy:  # coordinates are small: in memory, so xarray picks their time units itself
        out = out.assign_coords(lazy)
    for name in list(out.variables):
        var = out[name]
        if var.dtype.kind in ("T", "U", "O"):  # numpy StringDType and str: variable-length str
            values = np.asarray(var.values).astype(object)
            if name in out.coords:
                out = out.assign_coords({name: (var.dims, values, var.attrs)})
            else:
                out[name] = (var.dims, values, var.attrs)
    # NetCDF chunks: 256 x 256 cells, 64 along other dims; dask writes whole chunks
    sizes = {d: min(n, 256 if d in _SPATIAL else 64) for d, n in out.sizes.items()}
    out = out.chunk(sizes)
    encoding: dict[str, dict[str, Any]] = {}
    for name, var in out.variables.items():
        keep: dict[str, Any] = {}
        gm = var.encoding.get("grid_mapping") or var.attrs.pop("grid_mapping", None)
        var.encoding = {}
        var.attrs = _netcdf_attrs(var.attrs, var.dtype)
        if gm:
            keep["grid_mapping"] = gm
        if var.ndim and var.size and var.dtype.kind in "biufcM":
            chunks = tuple(sizes[d] for d in var.dims)
            keep.update(zlib=True, complevel=4, shuffle=True, chunksizes=chunks)
        encoding[str(name)] = keep
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    line = f"{now}: ncp-subsidence export of {where} to NetCDF"
    history = out.attrs.get("history")
    out.attrs["history"] = f"{line}\n{history}" if history else line
    out.attrs.setdefault("Conventions", "CF-1.8")
    out.attrs = _netcdf_attrs(out.attrs, None)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.to_netcdf(path, engine="h5netcdf", encoding=encoding)


def _netcdf_attrs(attrs: Mapping[str, Any], dtype: Any) -> dict[str, Any]:
    """Attributes NetCDF can hold: str and numbers; lists of numbers as arrays; the rest JSON."""
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if value is None:
            continue
        if isinstance(value, bool | np.bool_):
            out[key] = int(value)
        elif isinstance(value, str | int | float | np.number):
            out[key] = value
        elif (
            isinstance(value, list | tuple | np.ndarray)
            and len(value)
            and all(
                isinstance(v, int | float | np.number) and not isinstance(v, bool) for v in value
            )
        ):
            target = dtype if key == "flag_values" and dtype is not None else None
            out[key] = np.asarray(value, dtype=target)
        else:
            out[key] = json.dumps(value, default=str)
    return out


# ------------------------------------------------------------------------------------ small


def _union(boxes: Sequence[Sequence[float]]) -> list[float] | None:
    if not boxes:
        return None
    arr = np.asarray(boxes, dtype=float)
    return [
        float(arr[:, 0].min()),
        float(arr[:, 1].min()),
        float(arr[:, 2].max()),
        float(arr[:, 3].max()),
    ]


def _box(bbox: Sequence[float]) -> dict[str, Any]:
    w, s, e, n = bbox
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def _parse_time(text: str) -> _dt.datetime:
    try:
        when = _dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return _dt.datetime.now(_dt.UTC)
    return when if when.tzinfo else when.replace(tzinfo=_dt.UTC)


def _to_datetime(value: np.datetime64) -> _dt.datetime:
    seconds = value.astype("datetime64[s]").astype(np.int64)
    return _dt.datetime.fromtimestamp(int(seconds), _dt.UTC)


def _iso(when: _dt.datetime) -> str:
    return when.astimezone(_dt.UTC).isoformat().replace("+00:00", "Z")
