"""Static STAC catalogs of provider interferograms, and the pieces the adapters share to build them.

:func:`write_catalog` saves the items an adapter's ``items_from_source`` made (one per pair) as a
self-contained static catalog that :func:`ncp_subsidence.io.stac.discover_items` walks with
``SourceOptions(kind="static_catalog", url=".../catalog.json")``::

    OUT/catalog.json                      root catalog (relative child link)
    OUT/<collection>/collection.json      one collection, extent from the items
    OUT/<collection>/<item>/<item>.json   one item per pair (relative links)

Asset hrefs
-----------
* plain local files: relative to the item's JSON file (the catalog moves with the data when both
  live under one folder);
* GDAL ``/vsizip/`` members (HyP3 zips read in place): left **absolute**, e.g.
  ``/vsizip//data/hyp3/P.zip/P/P_unw_phase.tif`` or ``/vsizip/vsicurl/https://host/P.zip/...``.
  GDAL cannot resolve a ``/vsizip/`` path relative to a JSON file, so these are written as they
  are. pystac treats them as absolute paths (they start with ``/``) and never rewrites them;
  discovery turns the local form into ``file:///vsizip//...``, which rasterio (and so stackstac)
  opens unchanged, and :func:`ncp_subsidence.io.readers._rasterio_path` strips back to
  ``/vsizip/...``. Moving a catalog of zip members therefore needs the zips to stay where they were;
* URLs (``https://``, ``s3://``): unchanged.

The helpers (:func:`raster_projection`, :func:`unique_items`, :func:`list_dir`...) are the
catalog-building steps every adapter shares: projection fields read from a raster header with
rasterio, the footprint in EPSG:4326, source expansion through fsspec (local paths, globs,
``s3://``, ``https://`` index pages).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import pystac

from ...errors import DataError
from ..readers import _rasterio_path

__all__ = [
    "Entry",
    "as_list",
    "expand_sources",
    "gdal_path",
    "child",
    "list_dir",
    "parent_of",
    "raster_projection",
    "read_text",
    "unique_items",
    "write_catalog",
]

log = logging.getLogger(__name__)

#: GDAL settings for header reads of remote rasters: no directory listing on open.
GDAL_ENV = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}

_GLOB_CHARS = set("*?[")


# --------------------------------------------------------------------------- sources (fsspec)


@dataclass(frozen=True)
class Entry:
    """One file or folder found under a source.

    ``url`` is what users and GDAL see (a local absolute path, ``s3://...``, ``https://...``);
    ``path`` is the fsspec path of ``fs``.
    """

    fs: Any
    path: str
    url: str
    name: str
    is_dir: bool


def as_list(sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    """``sources`` as a list of strings (one path or URL is a list of one)."""
    if isinstance(sources, str | os.PathLike):
        return [os.fspath(sources)]
    return [os.fspath(s) for s in sources]


def _is_local(fs: Any) -> bool:
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def _is_http(fs: Any) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "http" in protocols or "https" in protocols


def _url(fs: Any, path: str) -> str:
    if _is_local(fs):
        return path
    if "://" in path:
        return path
    return fs.unstrip_protocol(path)


def _entry(fs: Any, path: str, is_dir: bool) -> Entry:
    path = path.rstrip("/") + "/" if is_dir and _is_http(fs) else path
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return Entry(fs, path, _url(fs, path), name, is_dir)


def _looks_like_file(path: str) -> bool:
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return not path.endswith("/") and "." in last and last.rsplit(".", 1)[-1].isalpha()


def expand_sources(
    sources: str | Sequence[str], storage_options: dict[str, Any] | None = None
) -> list[Entry]:
    """Files and folders named by ``sources`` (local paths, globs, ``s3://``, ``https://``).

    Globs expand through the file system's ``glob`` (not over HTTP, which cannot glob). An HTTP
    URL is a folder (an HTML index page) unless its last part has a file extension.

    Raises
    ------
    DataError
        A source that does not exist or a glob that matches nothing.
    """
    out: list[Entry] = []
    for source in as_list(sources):
        text = source.removeprefix("file://")
        if "://" not in text:
            text = os.path.abspath(os.path.expanduser(text))
        try:
            fs, path = fsspec.core.url_to_fs(text, **(storage_options or {}))
        except (ImportError, ValueError) as err:
            raise DataError(f"cannot open source {source!r}: {err}") from err
        if _is_http(fs):
            out.append(_entry(fs, path, not _looks_like_file(path)))
            continue
        if _GLOB_CHARS & set(path):
            matches = sorted(fs.glob(path))
            if not matches:
                raise DataError(f"source glob {source!r} matches nothing; check the pattern")
            out.extend(_entry(fs, m, fs.isdir(m)) for m in matches)
            continue
        if not fs.exists(path):
            raise DataError(f"source {source!r} does not exist; check the path or URL")
        out.append(_entry(fs, path, fs.isdir(path)))
    return out


def list_dir(entry: Entry) -> list[Entry]:
    """The files and folders directly inside ``entry`` (sorted by name).

    Over HTTP this reads the folder's HTML index page (links below the folder only).
    """
    fs = entry.fs
    try:
        listing = fs.ls(entry.path, detail=True)
    except FileNotFoundError as err:
        raise DataError(f"folder {entry.url} not found") from err
    except OSError as err:
        raise DataError(f"cannot list folder {entry.url}: {err}") from err
    out = []
    base = entry.path.rstrip("/")
    for info in listing:
        name = str(info["name"])
        if _is_http(fs) and not name.rstrip("/").startswith(base + "/"):
            continue  # parent links and links elsewhere on the site
        if name.rstrip("/") == base:
            continue
        out.append(_entry(fs, name, info.get("type") == "directory"))
    return sorted(out, key=lambda e: e.name)


def child(entry: Entry, name: str, is_dir: bool = False) -> Entry:
    """The entry ``name`` inside the folder ``entry`` (not checked for existence)."""
    path = entry.path.rstrip("/") + "/" + name
    return _entry(entry.fs, path, is_dir)


def parent_of(entry: Entry) -> Entry:
    """The folder holding ``entry``."""
    return _entry(entry.fs, entry.path.rstrip("/").rsplit("/", 1)[0], True)


def read_text(entry: Entry) -> str:
    """A small text file's content (UTF-8)."""
    try:
        with entry.fs.open(entry.path, "rb") as f:
            return f.read().decode("utf-8", errors="replace")
    except FileNotFoundError as err:
        raise DataError(f"file {entry.url} not found") from err
    except OSError as err:
        raise DataError(f"cannot read {entry.url}: {err}") from err


def gdal_path(url: str) -> str:
    """The GDAL path of a file URL: local paths bare, ``/vsis3/``, ``/vsicurl/``."""
    return _rasterio_path(url)


# --------------------------------------------------------------------------- raster headers


def raster_projection(path: str) -> dict[str, Any]:
    """Projection fields and the EPSG:4326 footprint of a raster, from its header (rasterio).

    Parameters
    ----------
    path : str
        A GDAL path (local file, ``/vsizip/...``, ``/vsicurl/...``).

    Returns
    -------
    dict
        ``proj:code`` (``"EPSG:<n>"``), ``proj:shape`` ``[rows, cols]``, ``proj:transform``
        (affine ``[a, b, c, d, e, f]`` in the file's CRS units, metres for UTM, degrees for
        EPSG:4326), ``proj:bbox`` ``[left, bottom, right, top]`` in the file's CRS, and ``bbox``
        ``[west, south, east, north]`` (degrees) and ``geometry`` (GeoJSON polygon, degrees):
        the footprint transformed to EPSG:4326 (densified edges).

    Raises
    ------
    DataError
        Unreadable file or a CRS without an EPSG code.
    """
    import rasterio
    from rasterio.warp import transform as warp_transform
    from rasterio.warp import transform_bounds

    try:
        with rasterio.Env(**GDAL_ENV), rasterio.open(path) as src:
            crs, transform, shape, bounds = src.crs, src.transform, src.shape, src.bounds
    except rasterio.errors.RasterioIOError as err:
        raise DataError(f"cannot read raster {path}: {err}") from err
    authority = crs.to_authority() if crs else None
    if not authority:
        raise DataError(
            f"raster {path} has no EPSG coordinate reference system ({crs}); "
            "write it with an EPSG CRS (gdal_translate -a_srs EPSG:...)"
        )
    code = f"{authority[0]}:{authority[1]}"
    left, bottom, right, top = (float(v) for v in bounds)
    west, south, east, north = transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21)
    n = 8  # points per edge of the footprint polygon
    xs = [left + (right - left) * i / n for i in range(n)]
    xs += [right] * n + [right - (right - left) * i / n for i in range(n)] + [left] * n
    ys = [bottom] * n + [bottom + (top - bottom) * i / n for i in range(n)]
    ys += [top] * n + [top - (top - bottom) * i / n for i in range(n)]
    lon, lat = warp_transform(crs, "EPSG:4326", xs, ys)
    ring = [[float(x), float(y)] for x, y in zip(lon, lat)]
    ring.append(ring[0])
    return {
        "proj:code": code,
        "proj:shape": [int(shape[0]), int(shape[1])],
        "proj:transform": [float(v) for v in tuple(transform)[:6]],
        "proj:bbox": [left, bottom, right, top],
        "bbox": [float(west), float(south), float(east), float(north)],
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }


# --------------------------------------------------------------------------- items


def unique_items(items: Iterable[pystac.Item], what: str) -> list[pystac.Item]:
    """Items with each id once (the first kept), sorted by reference date and id.

    A pair listed twice (the same zip passed twice, overlapping globs) is logged as a warning
    with the count of dropped duplicates.
    """
    seen: dict[str, pystac.Item] = {}
    dropped = 0
    for item in items:
        if item.id in seen:
            dropped += 1
            continue
        seen[item.id] = item
    if dropped:
        log.warning("%s: %d pair(s) listed more than once were kept once", what, dropped)
    return sorted(seen.values(), key=lambda i: (i.properties.get("start_datetime", ""), i.id))


def iso(value: _dt.datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` of a UTC datetime."""
    value = value.astimezone(_dt.UTC).replace(tzinfo=None)
    return value.isoformat() + "Z"


def _extent(items: Sequence[pystac.Item]) -> pystac.Extent:
    boxes = [i.bbox for i in items if i.bbox]
    bbox = [
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    ]
    times = []
    for item in items:
        common = item.common_metadata
        times += [t for t in (item.datetime, common.start_datetime, common.end_datetime) if t]
    return pystac.Extent(
        pystac.SpatialExtent([bbox]), pystac.TemporalExtent([[min(times), max(times)]])
    )


def _is_plain_local(href: str) -> bool:
    if href.startswith("/vsi"):
        return False
    if href.startswith("file://"):
        return True
    return "://" not in href and os.path.isabs(href)


def write_catalog(
    items: Sequence[pystac.Item],
    out_dir: str | os.PathLike[str],
    *,
    collection_id: str,
    title: str,
    description: str,
) -> Path:
    """Write ``items`` as a self-contained static STAC catalog under ``out_dir``.

    Parameters
    ----------
    items : sequence of pystac.Item
        One item per interferogram (an adapter's ``items_from_source``); not modified (clones
        are written). Ids must be unique.
    out_dir : path
        Local folder; created if needed. ``out_dir/catalog.json`` is the root.
    collection_id, title, description : str
        The one collection holding the items (its extent is the items' union box and time span).

    Returns
    -------
    Path
        ``out_dir/catalog.json`` (absolute).

    Raises
    ------
    DataError
        No items, or two items with one id.
    """
    if not items:
        raise DataError(f"no interferogram items to write into a catalog at {out_dir}")
    ids = [i.id for i in items]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise DataError(f"items {dup[:3]} appear more than once; pass each pair once")
    out = Path(out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    catalog = pystac.Catalog(
        id=f"{collection_id}-catalog",
        description=description,
        title=title,
        catalog_type=pystac.CatalogType.SELF_CONTAINED,
    )
    collection = pystac.Collection(
        id=collection_id,
        description=description,
        title=title,
        extent=_extent(items),
        license="other",
    )
    formats = sorted({str(i.properties.get("ncp:format")) for i in items})
    frames = sorted({str(i.properties.get("ncp:frame")) for i in items})
    collection.summaries.add("ncp:format", formats)
    collection.summaries.add("ncp:frame", frames)
    catalog.add_child(collection)
    for item in sorted(items, key=lambda i: i.id):
        clone = item.clone()
        clone.clear_links()
        collection.add_item(clone)
    catalog.normalize_hrefs(str(out))
    for item in collection.get_items():
        item_dir = Path(item.get_self_href() or out).parent
        for asset in item.assets.values():
            if _is_plain_local(asset.href):
                target = asset.href.removeprefix("file://")
                asset.href = Path(os.path.relpath(target, item_dir)).as_posix()
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    path = out / "catalog.json"
    log.info("wrote a static STAC catalog of %d item(s) to %s", len(items), path)
    return path
