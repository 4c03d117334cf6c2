"""Readers: interferogram COGs (stackstac), NetCDF hydrology (xarray + h5netcdf over fsspec),
GNSS velocities (MIDAS format), and GeoJSON vectors.

All readers are lazy where the data are big (dask arrays whose chunks read their own window of
each file) and return xarray objects in the conventions of DESIGN.md section 3. Failure policy
(:data:`OnError`): ``"fail"`` raises on an unreadable asset; ``"nan"`` turns it into NaN, counts
it, logs it and reports it so the stage can record it in the product's attrs.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import fsspec
import numpy as np
import pandas as pd
import pystac
import xarray as xr

from ..errors import DataError, DataWarning

__all__ = [
    "MIDAS_COLUMNS",
    "AssetFailures",
    "OnError",
    "grid_from_item",
    "open_netcdf",
    "read_geojson",
    "read_ifg_stack",
    "read_midas",
    "read_raster",
]

log = logging.getLogger(__name__)

OnError = Literal["fail", "nan"]

#: Columns of the Nevada Geodetic Lab MIDAS velocity file (velocities in m/yr; Blewitt et al. 2016).
MIDAS_COLUMNS = (
    "station", "version", "t_first", "t_last", "duration", "n_epochs", "n_good", "n_pairs",
    "ve", "vn", "vu", "se", "sn", "su", "oe", "on", "ou", "fe", "fn", "fu",
    "sde", "sdn", "sdu", "n_steps", "lat", "lon", "height",
)  # fmt: skip


@dataclass
class AssetFailures:
    """Assets that could not be read and were turned into NaN (policy ``"nan"``)."""

    hrefs: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def add(self, href: str, reason: str) -> None:
        self.hrefs.append(href)
        self.reasons.append(reason)
        log.warning("unreadable asset %s turned into NaN: %s", href, reason)

    def __len__(self) -> int:
        return len(self.hrefs)

    def attrs(self) -> dict[str, Any]:
        return {"n_unreadable_assets": len(self), "unreadable_assets": json.dumps(self.hrefs)}


def _href(asset: pystac.Asset) -> str:
    href = asset.get_absolute_href() or asset.href
    return href


def _rasterio_path(href: str) -> str:
    """A path rasterio/GDAL opens: local paths bare, s3:// as /vsis3/, http(s) as /vsicurl/."""
    if href.startswith("file://"):
        return href[len("file://") :]
    if href.startswith("s3://"):
        return "/vsis3/" + href[len("s3://") :]
    if href.startswith(("http://", "https://")):
        return "/vsicurl/" + href
    return href


@dataclass(frozen=True)
class Grid:
    """A north-up EPSG:4326 (or other EPSG) grid: bounds, resolution and shape."""

    epsg: int
    bounds: tuple[float, float, float, float]  # west, south, east, north
    resolution: float
    shape: tuple[int, int]

    def coords(self) -> tuple[np.ndarray, np.ndarray]:
        """Cell-centre y (descending) and x coordinates."""
        west, _, _, north = self.bounds
        ny, nx = self.shape
        y = north - self.resolution * (np.arange(ny) + 0.5)
        x = west + self.resolution * (np.arange(nx) + 0.5)
        return y, x


def grid_from_item(item: pystac.Item) -> Grid:
    """The grid of an item from its projection extension (``proj:transform``, ``proj:shape``)."""
    props = item.properties
    code = props.get("proj:code") or (
        f"EPSG:{props['proj:epsg']}" if props.get("proj:epsg") else None
    )
    transform = props.get("proj:transform")
    shape = props.get("proj:shape")
    if not (code and transform and shape):
        raise DataError(
            f"STAC item {item.id!r} lacks the projection extension (proj:code/epsg, proj:transform, proj:shape) "
            "needed to place it on a grid; add it to the catalog"
        )
    a, b, c, d, e, f = transform[:6]
    if b or d or abs(abs(a) - abs(e)) > 1e-12 * abs(a):
        raise DataError(
            f"STAC item {item.id!r}: only north-up square pixels are supported, got proj:transform {transform}"
        )
    ny, nx = int(shape[0]), int(shape[1])
    res = abs(a)
    bounds = (c, f + e * ny, c + a * nx, f)
    return Grid(
        int(str(code).split(":")[-1]),
        (float(bounds[0]), float(bounds[1]), float(bounds[2]), float(bounds[3])),
        float(res),
        (ny, nx),
    )


def _check_assets(
    items: Sequence[pystac.Item], keys: Sequence[str], on_error: OnError, failures: AssetFailures
) -> list[pystac.Item]:
    """Open each asset's header; under ``nan`` remove unreadable assets (stackstac fills NaN)."""
    import rasterio

    out = []
    for item in items:
        for key in keys:
            if key not in item.assets:
                if on_error == "fail":
                    raise DataError(
                        f"STAC item {item.id!r} has no asset {key!r} (assets: {sorted(item.assets)})"
                    )
                failures.add(f"{item.id}:{key}", "asset missing from the item")
                continue
            href = _href(item.assets[key])
            try:
                with rasterio.open(_rasterio_path(href)):
                    pass
            except Exception as err:
                if on_error == "fail":
                    raise DataError(
                        f"cannot read asset {key!r} of item {item.id!r} at {href}: {err}; "
                        "fix the file or set ingest.on_error: nan to turn it into NaN"
                    ) from err
                failures.add(href, str(err))
                item = item.clone()
                del item.assets[key]
        out.append(item)
    return out


def read_ifg_stack(
    items: Sequence[pystac.Item],
    *,
    phase_asset: str = "unw_phase",
    coherence_asset: str | None = "corr",
    chunks: tuple[int, int] = (512, 512),
    on_error: OnError = "fail",
) -> tuple[xr.Dataset, AssetFailures]:
    """Stack one frame's interferogram items into ``unw_phase(pair, y, x)`` and ``coherence``.

    Parameters
    ----------
    items : sequence of pystac.Item
        One item per interferogram of one frame, each with ``start_datetime`` (reference) and
        ``end_datetime`` (secondary), the projection extension, and the phase (and coherence)
        assets. All must share one grid.
    chunks : (int, int)
        Spatial chunk (y, x); the pair axis is one chunk.

    Returns
    -------
    dataset : xarray.Dataset
        ``unw_phase`` (rad) and ``coherence`` float32 ``(pair, y, x)``, NaN for no data; coords
        ``reference(pair)``, ``secondary(pair)`` (datetime64), ``item_id(pair)``, ``y``, ``x``
        (cell centres, degrees for EPSG:4326); the grid exactly that of the items.
    failures : AssetFailures
        Unreadable assets turned into NaN (empty under ``on_error="fail"``).
    """
    import stackstac
    from rasterio.errors import RasterioIOError

    if not items:
        raise DataError("no interferogram items to ingest for this frame (empty search?)")
    grids = {grid_from_item(i) for i in items}
    if len(grids) != 1:
        raise DataError(
            f"interferograms of one frame must share one grid; found {len(grids)}: "
            + "; ".join(f"{g.shape} at {g.bounds}" for g in sorted(grids, key=str))
            + " (resample them first or split the frame)"
        )
    grid = grids.pop()
    keys = [phase_asset] + ([coherence_asset] if coherence_asset else [])
    failures = AssetFailures()
    items = _check_assets(items, keys, on_error, failures)
    intervals = [
        (
            _dt64(i.common_metadata.start_datetime or i.datetime),
            _dt64(i.common_metadata.end_datetime or i.datetime),
        )
        for i in items
    ]
    reference = np.array([a for a, _ in intervals])
    secondary = np.array([b for _, b in intervals])
    if np.any(secondary <= reference):
        bad = [i.id for i, (a, b) in zip(items, intervals) if b <= a]
        raise DataError(
            f"interferogram(s) {bad[:3]} have end_datetime <= start_datetime; dates out of order"
        )
    stack = stackstac.stack(
        list(items),
        assets=keys,
        epsg=grid.epsg,
        resolution=grid.resolution,
        bounds=grid.bounds,
        snap_bounds=False,
        dtype=np.dtype("float32"),
        fill_value=np.float32(np.nan),
        rescale=False,
        chunksize=(1, 1, chunks[0], chunks[1]),
        sortby_date=False,
        xy_coords="center",
        properties=False,
        band_coords=False,
        errors_as_nodata=(RasterioIOError(".*"),) if on_error == "nan" else (),
    )
    if tuple(stack.shape[-2:]) != grid.shape:
        raise DataError(
            f"stacked grid {stack.shape[-2:]} differs from the items' proj:shape {grid.shape}"
        )
    y, x = grid.coords()
    data = {}
    for key, name in zip(keys, ("unw_phase", "coherence")):
        arr = stack.sel(band=key).data.rechunk((-1, chunks[0], chunks[1]))
        data[name] = (("pair", "y", "x"), arr)
    ds = xr.Dataset(
        data,
        coords={
            "pair": np.arange(len(items)),
            "reference": ("pair", reference),
            "secondary": ("pair", secondary),
            "item_id": ("pair", np.array([i.id for i in items])),
            "y": y,
            "x": x,
        },
    )
    return ds, failures


def _dt64(value: _dt.datetime | None) -> np.datetime64:
    if value is None:
        raise DataError("a STAC item has no datetime")
    if value.tzinfo is not None:
        value = value.astimezone(_dt.UTC).replace(tzinfo=None)
    return np.datetime64(value, "ns")


def read_raster(href: str, *, band: int = 1) -> xr.DataArray:
    """Read one band of a (small) raster eagerly as ``(y, x)`` with cell-centre coords.

    Used for per-frame geometry layers and factor rasters; nodata becomes NaN.
    """
    import rasterio

    path = _rasterio_path(href)
    try:
        with rasterio.open(path) as src:
            arr = src.read(band, out_dtype="float64")
            if src.nodata is not None and not np.isnan(src.nodata):
                arr[arr == src.nodata] = np.nan
            t = src.transform
            ny, nx = arr.shape
            epsg = src.crs.to_epsg() if src.crs else None
    except Exception as err:
        raise DataError(f"cannot read raster {href}: {err}") from err
    y = t.f + t.e * (np.arange(ny) + 0.5)
    x = t.c + t.a * (np.arange(nx) + 0.5)
    da = xr.DataArray(arr, dims=("y", "x"), coords={"y": y, "x": x})
    da.attrs["epsg"] = epsg
    return da


def open_netcdf(
    href: str, *, group: str | None = None, storage_options: dict[str, Any] | None = None
) -> xr.Dataset:
    """Open a NetCDF4/HDF5 file (local, https, s3) with h5netcdf through fsspec, loaded eagerly.

    Hydrology files are small per file (one month or one year on a 0.1-0.25 deg grid); they are
    loaded so the file handle can be closed at once.
    """
    url = href[len("file://") :] if href.startswith("file://") else href
    try:
        with (
            fsspec.open(url, "rb", **(storage_options or {})) as f,
            xr.open_dataset(f, engine="h5netcdf", group=group, decode_timedelta=False) as ds,
        ):
            return ds.load()
    except FileNotFoundError as err:
        raise DataError(f"NetCDF file {href} not found") from err
    except OSError as err:
        raise DataError(f"cannot read NetCDF file {href}: {err}") from err


def read_midas(href: str) -> pd.DataFrame:
    """Read a MIDAS velocity file (Nevada Geodetic Lab) into mm/yr east, north, up velocities.

    Lines that do not have the 27 MIDAS columns, or whose numbers do not parse, are skipped and
    counted (a :class:`~ncp_subsidence.errors.DataWarning` names how many and the first line).

    Returns
    -------
    pandas.DataFrame
        Columns ``station, lon, lat, height, ve, vn, vu, se, sn, su`` (velocities and their
        uncertainties in mm/yr), ``t_first, t_last`` (decimal years).
    """
    import warnings

    url = href[len("file://") :] if href.startswith("file://") else href
    try:
        with fsspec.open(url, "rt") as f:
            lines = f.read().splitlines()
    except FileNotFoundError as err:
        raise DataError(f"GNSS velocity file {href} not found") from err
    rows, bad = [], []
    for number, line in enumerate(lines, 1):
        parts = line.split()
        if not parts or line.lstrip().startswith("#"):
            continue
        if len(parts) != len(MIDAS_COLUMNS):
            bad.append(number)
            continue
        try:
            rows.append([parts[0], parts[1], *map(float, parts[2:])])
        except ValueError:
            bad.append(number)
    if bad:
        warnings.warn(
            f"{href}: skipped {len(bad)} malformed MIDAS line(s), first at line {bad[0]}",
            DataWarning,
            stacklevel=2,
        )
    if not rows:
        raise DataError(f"GNSS velocity file {href} holds no valid MIDAS line")
    df = pd.DataFrame(rows, columns=list(MIDAS_COLUMNS))
    out = pd.DataFrame(
        {
            "station": df["station"].astype(str),
            "lon": df["lon"],
            "lat": df["lat"],
            "height": df["height"],
        }
    )
    for c in ("ve", "vn", "vu", "se", "sn", "su"):
        out[c] = df[c] * 1000.0  # m/yr -> mm/yr
    out["t_first"] = df["t_first"]
    out["t_last"] = df["t_last"]
    return out


def read_geojson(href: str) -> list[dict[str, Any]]:
    """The features of a GeoJSON FeatureCollection (EPSG:4326 assumed, as GeoJSON mandates)."""
    url = href[len("file://") :] if href.startswith("file://") else href
    try:
        with fsspec.open(url, "rt") as f:
            data = json.load(f)
    except FileNotFoundError as err:
        raise DataError(f"GeoJSON file {href} not found") from err
    except json.JSONDecodeError as err:
        raise DataError(f"GeoJSON file {href} is not valid JSON: {err}") from err
    if data.get("type") == "FeatureCollection":
        return list(data.get("features", []))
    if data.get("type") == "Feature":
        return [data]
    raise DataError(
        f"{href} is not a GeoJSON Feature or FeatureCollection (type {data.get('type')!r})"
    )
