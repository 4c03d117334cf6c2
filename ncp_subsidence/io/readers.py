"""Readers: interferogram rasters (stackstac, one frame grid per frame), NetCDF hydrology
(xarray + h5netcdf over fsspec), GNSS velocities (MIDAS format), and GeoJSON vectors.

All readers are lazy where the data are big (dask arrays whose chunks read their own window of
each file) and return xarray objects in the conventions of docs/design.md section 3. Failure policy
(:data:`OnError`): ``"fail"`` raises on an unreadable asset; ``"nan"`` turns it into NaN, counts
it, logs it and reports it so the stage can record it in the product's attrs.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import fsspec
import numpy as np
import pandas as pd
import pystac
import xarray as xr

from ..errors import DataError, NetworkError
from .remote import fsspec_options, gdal_options, retrying

__all__ = [
    "AUTO_RESAMPLING",
    "LATTICE_TOLERANCE_PX",
    "AssetFailures",
    "FrameGridMode",
    "GDAL_READ_OPTIONS",
    "Grid",
    "OnError",
    "frame_grid",
    "grid_from_item",
    "open_headers",
    "open_netcdf",
    "read_geojson",
    "read_ifg_stack",
    "read_midas_checked",
    "read_onto_grid",
    "read_raster",
    "read_raster_on_grid",
    "raster_block",
    "unique_pairs",
]

log = logging.getLogger(__name__)

OnError = Literal["fail", "nan"]


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


#: GDAL virtual file systems that read over the network (alone or inside /vsizip/ and kin)
_REMOTE_VSI = re.compile(r"/vsi(?:s3|curl|gs|az|adls|oss|swift|webhdfs|hdfs)(?:_streaming)?/")

#: Where an archive's path ends inside a nested GDAL path (``/vsizip//vsis3/b/P.zip/member``)
_ARCHIVE_END = re.compile(r"(?<=\.zip)/|(?<=\.tar)/|(?<=\.tgz)/|(?<=\.tar\.gz)/", re.IGNORECASE)


def _is_remote(href: str) -> bool:
    """Whether ``href`` is read over the network: an http(s)/s3 URL, or a GDAL path through a
    network file system, nested ones included (a HyP3 zip on S3: ``/vsizip//vsis3/...``)."""
    if href.startswith(("http://", "https://", "s3://")):
        return True
    path = _rasterio_path(href)
    return path.startswith("/vsi") and _REMOTE_VSI.search(path) is not None


def _network_file(href: str) -> str:
    """The GDAL path of the file fetched over the network for ``href`` (the archive of a
    member), the prefix GDAL's ``CPL_VSIL_CURL_NON_CACHED`` takes."""
    path = _rasterio_path(href)
    found = _REMOTE_VSI.search(path)
    if found is None or found.start() == 0:
        return path
    return _ARCHIVE_END.split(path[found.start() :], maxsplit=1)[0]


def _open_env(href: str, headers: Any, retries: int, *, single_try: bool = True) -> Any:
    """A ``rasterio.Env`` for opening ``href``: auth headers, netrc, timeouts; remote only.

    With ``single_try`` GDAL does not retry itself and does not cache a failed answer, so the
    caller's :func:`~ncp_subsidence.io.remote.retrying` owns the policy (and counts the tries).
    """
    import rasterio

    if not _is_remote(href):  # rasterio.open sets up the default environment itself
        return contextlib.nullcontext()
    options = gdal_options(href, headers, retries=0 if single_try else retries)
    if single_try:
        options["CPL_VSIL_CURL_NON_CACHED"] = _network_file(href)
    return rasterio.Env(**options)


def _rasterio_path(href: str) -> str:
    """A path rasterio/GDAL opens: local paths bare, s3:// as /vsis3/, http(s) as /vsicurl/."""
    if href.startswith("file://"):
        return href[len("file://") :]
    if href.startswith("s3://"):
        return "/vsis3/" + href[len("s3://") :]
    if href.startswith(("http://", "https://")):
        return "/vsicurl/" + href
    return href


@contextlib.contextmanager
def _open_raster(href: str, headers: Any, retries: int) -> Iterator[Any]:
    """``rasterio.open`` of ``href`` in its remote environment (:func:`_open_env`), with no
    directory listing on open for GDAL virtual paths (/vsizip/ members, remote files: their
    sidecars are unused)."""
    import rasterio

    path = _rasterio_path(href)
    env = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"} if path.startswith("/vsi") else {}
    with _open_env(href, headers, retries), rasterio.Env(**env), rasterio.open(path) as src:
        yield src


def raster_block(href: str, *, headers: Any = None, retries: int = 4) -> tuple[int, int] | None:
    """The internal block (tile or strip) of band 1 of a raster, ``(rows, columns)``.

    A window that cuts through a tile decodes the whole tile, so windows aligned to the tiles
    are the cheap ones (a 1500 x 800 COG of 256 x 256 tiles, opened once per window as the
    ingest's tasks do: 87-93 ms read by 208 x 208 windows, 30 ms by 256 x 256 ones). None when
    the file cannot be opened: the reader's own checks name it later.
    """
    from rasterio.errors import RasterioIOError

    try:
        with _open_raster(href, headers, retries) as src:
            rows, cols = src.block_shapes[0]
    except (RasterioIOError, OSError, IndexError):
        return None
    return int(rows), int(cols)


#: Grids whose origins differ by an integer number of pixels within this many pixels share a
#: lattice: their pixels coincide and a pair is read by windows, never resampled.
LATTICE_TOLERANCE_PX = 1e-6

#: Relative difference of pixel sizes under which two grids have the same resolution.
_RESOLUTION_RTOL = 1e-9

FrameGridMode = Literal["union", "intersection"]


@dataclass(frozen=True)
class Grid:
    """A north-up grid in one EPSG CRS with square pixels: bounds, pixel size and shape.

    Attributes
    ----------
    epsg : int
        EPSG code of the CRS (4326: degrees; UTM 326xx/327xx: metres).
    bounds : (float, float, float, float)
        West, south, east, north edges, in CRS units.
    resolution : float
        Pixel size, CRS units (the same along x and y).
    shape : (int, int)
        Rows (y) and columns (x).
    """

    epsg: int
    bounds: tuple[float, float, float, float]  # west, south, east, north
    resolution: float
    shape: tuple[int, int]

    @property
    def crs(self) -> str:
        """``"EPSG:<code>"``."""
        return f"EPSG:{self.epsg}"

    def coords(self) -> tuple[np.ndarray, np.ndarray]:
        """Cell-centre y (descending) and x coordinates."""
        west, _, _, north = self.bounds
        ny, nx = self.shape
        y = north - self.resolution * (np.arange(ny) + 0.5)
        x = west + self.resolution * (np.arange(nx) + 0.5)
        return y, x

    def on_lattice(self, other: Grid) -> bool:
        """Whether ``other``'s pixels coincide with this grid's (extended) pixel lattice.

        True when both grids have the same CRS and pixel size and their origins differ by whole
        pixels (within :data:`LATTICE_TOLERANCE_PX`): ``other`` is then a window of this
        lattice and is read without resampling.
        """
        if other.epsg != self.epsg:
            return False
        if abs(other.resolution - self.resolution) > _RESOLUTION_RTOL * self.resolution:
            return False
        for mine, theirs in ((self.bounds[0], other.bounds[0]), (self.bounds[3], other.bounds[3])):
            offset = (theirs - mine) / self.resolution
            if abs(offset - round(offset)) > LATTICE_TOLERANCE_PX:
                return False
        return True

    def describe(self) -> str:
        """One line: CRS, pixel size, origin (west, north) and shape."""
        west, _, _, north = self.bounds
        return (
            f"{self.crs}, pixel {self.resolution:.10g}, origin ({west:.10g}, {north:.10g}), "
            f"shape {self.shape[0]} x {self.shape[1]}"
        )


def factor_grid(config: Any) -> Grid:
    """The driving-factor grid: ``sources.bbox`` at ``factors.resolution_deg``."""
    west, south, east, north = config.sources.bbox
    res = config.factors.resolution_deg
    ny, nx = round((north - south) / res), round((east - west) / res)
    return Grid(4326, (west, north - ny * res, west + nx * res, north), res, (ny, nx))


def _item_code(props: dict[str, Any]) -> str | None:
    code = props.get("proj:code") or (
        f"EPSG:{props['proj:epsg']}" if props.get("proj:epsg") else None
    )
    return str(code) if code else None


def grid_from_item(item: pystac.Item) -> Grid:
    """The grid of an item from its projection extension (``proj:transform``, ``proj:shape``)."""
    props = item.properties
    code = _item_code(props)
    transform = props.get("proj:transform")
    shape = props.get("proj:shape")
    if not (code and transform and shape):
        raise DataError(
            f"STAC item {item.id!r} lacks the projection extension (proj:code/epsg, proj:transform, proj:shape) "
            "needed to place it on a grid; add it to the catalog"
        )
    a, b, c, d, e, f = transform[:6]
    if b or d or a <= 0 or e >= 0 or abs(abs(a) - abs(e)) > 1e-12 * abs(a):
        raise DataError(
            f"STAC item {item.id!r}: only north-up square pixels are supported, got proj:transform {transform}"
        )
    ny, nx = int(shape[0]), int(shape[1])
    res = abs(a)
    bounds = (c, f + e * ny, c + a * nx, f)
    try:
        epsg = int(str(code).split(":")[-1])
    except ValueError as err:
        raise DataError(
            f"STAC item {item.id!r}: proj:code {code!r} is not an EPSG code (EPSG:<number>)"
        ) from err
    return Grid(
        epsg,
        (float(bounds[0]), float(bounds[1]), float(bounds[2]), float(bounds[3])),
        float(res),
        (ny, nx),
    )


def _reference_lattice(grids: Sequence[Grid]) -> Grid:
    """The grid whose lattice most grids share (the first such grid on a tie)."""
    from collections import Counter

    def key(g: Grid) -> tuple[int, str, int, int]:
        west, north = g.bounds[0], g.bounds[3]
        phase = [round(((v / g.resolution) % 1.0) * 1e4) % 10_000 for v in (west, north)]
        return g.epsg, f"{g.resolution:.9g}", phase[0], phase[1]

    keys = [key(g) for g in grids]
    best = Counter(keys).most_common(1)[0][0]
    return grids[keys.index(best)]


def frame_grid(items: Sequence[pystac.Item], how: FrameGridMode = "union") -> Grid:
    """The grid one frame's interferograms are stacked on: the union or intersection of their
    extents, on the pixel lattice most of them share, in their native CRS.

    Parameters
    ----------
    items : sequence of pystac.Item
        The frame's interferogram items, each with the projection extension.
    how : {"union", "intersection"}
        ``union``: every pixel any pair covers (NaN where a pair does not); ``intersection``:
        only the pixels every pair covers.

    Returns
    -------
    Grid
        CRS, pixel size and lattice of the reference pair (the lattice most pairs share); its
        bounds enclose (union) or fit inside (intersection) every pair's extent, snapped to
        whole pixels. Pairs off this lattice (another CRS, pixel size or a fractional pixel
        offset; :meth:`Grid.on_lattice`) are snapped outward (union) or inward (intersection).

    Raises
    ------
    DataError
        No item, or an empty intersection.
    """
    if not items:
        raise DataError("no interferogram items to place on a frame grid (empty search?)")
    if how not in ("union", "intersection"):
        raise DataError(f"frame grid {how!r} unknown; use 'union' or 'intersection'")
    grids = [grid_from_item(i) for i in items]
    ref = _reference_lattice(grids)
    x0, y0, res = ref.bounds[0], ref.bounds[3], ref.resolution
    tol = LATTICE_TOLERANCE_PX
    boxes = []
    for g in grids:
        west, south, east, north = g.bounds
        if g.epsg != ref.epsg:
            from rasterio.warp import transform_bounds

            west, south, east, north = transform_bounds(
                g.crs, ref.crs, west, south, east, north, densify_pts=21
            )
        cols = ((west - x0) / res, (east - x0) / res)
        rows = ((y0 - north) / res, (y0 - south) / res)
        if ref.on_lattice(g):
            box = (round(cols[0]), round(rows[0]), round(cols[1]), round(rows[1]))
        elif how == "union":  # outward
            box = (
                int(np.floor(cols[0] + tol)),
                int(np.floor(rows[0] + tol)),
                int(np.ceil(cols[1] - tol)),
                int(np.ceil(rows[1] - tol)),
            )
        else:  # inward
            box = (
                int(np.ceil(cols[0] - tol)),
                int(np.ceil(rows[0] - tol)),
                int(np.floor(cols[1] + tol)),
                int(np.floor(rows[1] + tol)),
            )
        boxes.append(box)
    b = np.array(boxes, dtype=np.int64)
    if how == "union":
        c0, r0, c1, r1 = b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()
    else:
        c0, r0, c1, r1 = b[:, 0].max(), b[:, 1].max(), b[:, 2].min(), b[:, 3].min()
    if c1 <= c0 or r1 <= r0:
        raise DataError(
            f"the {len(items)} interferograms of this frame share no common pixel (intersection "
            f"of their extents is empty; reference {ref.describe()}); set ingest.frame_grid: union"
        )
    bounds = (x0 + int(c0) * res, y0 - int(r1) * res, x0 + int(c1) * res, y0 - int(r0) * res)
    return Grid(ref.epsg, tuple(float(v) for v in bounds), res, (int(r1 - r0), int(c1 - c0)))  # type: ignore[arg-type]


def unique_pairs(items: Sequence[pystac.Item]) -> tuple[list[pystac.Item], list[pystac.Item]]:
    """Keep the first item of each (reference, secondary) date pair.

    Returns
    -------
    kept, dropped : list of pystac.Item
        ``kept`` in the input order; ``dropped`` the later items repeating a pair already kept.
    """
    seen: set[tuple[np.datetime64, np.datetime64]] = set()
    kept, dropped = [], []
    for item in items:
        key = (
            _dt64(item.common_metadata.start_datetime or item.datetime),
            _dt64(item.common_metadata.end_datetime or item.datetime),
        )
        if key in seen:
            dropped.append(item)
        else:
            seen.add(key)
            kept.append(item)
    return kept, dropped


def _asset_georef(item: pystac.Item, key: str) -> tuple[str | None, list[float] | None, Any]:
    """CRS code, ``proj:transform`` and ``proj:shape`` of an asset (asset fields first)."""
    fields = item.assets[key].extra_fields
    props = item.properties
    code = _item_code(fields) or _item_code(props)
    transform = fields.get("proj:transform", props.get("proj:transform"))
    shape = fields.get("proj:shape", props.get("proj:shape"))
    return code, transform, shape


def _check_georef(item: pystac.Item, key: str, href: str, src: Any) -> None:
    """Raise a one-line DataError when the opened file ``src`` is not where its item says."""
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    code, transform, shape = _asset_georef(item, key)
    if src.crs is None:  # a raster without a CRS tag: nothing to compare, and nothing to warp
        raise DataError(
            f"{href} (asset {key!r} of STAC item {item.id!r}) has no coordinate reference "
            f"system (no CRS tag in the file; its item says {code or 'nothing'}); write the CRS "
            f"into the file, e.g. gdal_edit.py -a_srs {code or 'EPSG:4326'} "
            f"{_rasterio_path(href)}"
        )
    if not (code and transform and shape):
        return  # grid_from_item has already required them on the item
    a, _, c, _, e, f = (float(v) for v in transform[:6])
    t = src.transform
    try:
        same_crs = src.crs is not None and CRS.from_user_input(code) == src.crs
    except CRSError:  # an unparsable code is a mismatch too
        same_crs = False
    rtol, px = _RESOLUTION_RTOL, LATTICE_TOLERANCE_PX
    size_ok = abs(t.a - a) <= rtol * abs(a) and abs(t.e - e) <= rtol * abs(e)
    origin_ok = abs(t.c - c) <= px * abs(a) and abs(t.f - f) <= px * abs(e)
    shape_ok = (src.height, src.width) == (int(shape[0]), int(shape[1]))
    if same_crs and size_ok and origin_ok and shape_ok:
        return
    file_crs = src.crs.to_string() if src.crs is not None else "none"
    raise DataError(
        f"{href} (asset {key!r} of STAC item {item.id!r}) is not where its item says: item "
        f"{code}, pixel ({a:.10g}, {e:.10g}), origin ({c:.10g}, {f:.10g}), shape "
        f"{int(shape[0])} x {int(shape[1])}; file {file_crs}, pixel ({t.a:.10g}, {t.e:.10g}), "
        f"origin ({t.c:.10g}, {t.f:.10g}), shape {src.height} x {src.width}; rebuild the item's "
        "proj:code/proj:transform/proj:shape from the file (re-run the catalog) or replace the file"
    )


def _check_assets(
    items: Sequence[pystac.Item],
    keys: Sequence[str],
    on_error: OnError,
    failures: AssetFailures,
    *,
    retries: int = 4,
    headers: Any = None,
    opened: Mapping[str, Any] | None = None,
) -> tuple[list[pystac.Item], list[dict[str, _Header]]]:
    """Open each asset's header and check its CRS, transform and shape against the item.

    Returns the items (under ``nan`` without their unreadable assets) and, for each, the
    headers of its assets (key -> :class:`_Header`), which place the files on the frame grid.
    ``opened`` (from :func:`open_headers`) holds headers opened ahead, by href: those files are
    not opened again, and their answers (a header or the error opening it) are judged as if
    opened here.

    Under ``nan`` unreadable assets are removed (read as NaN); a file whose
    georeferencing disagrees with its item is a :class:`DataError` under either policy. Remote
    opens send ``headers`` and are retried (``retries``) while the server fails transiently; a
    server that stays down is a :class:`~ncp_subsidence.errors.NetworkError` under ``fail``.
    """
    import threading

    opened = opened or {}
    todo = [
        (item, key)
        for item in items
        for key in keys
        if key in item.assets and _href(item.assets[key]) not in opened
    ]
    # under "fail" the first error stops the other threads (a server that is down is not
    # retried file after file); a header they left unopened is opened below if still needed
    stop = threading.Event() if on_error == "fail" else None
    results = {
        (id(item), key): answer for (item, key), answer in _open_all(todo, retries, headers, stop)
    }
    out, found = [], []
    for item in items:  # the verdicts in item order, as a sequential check gives them
        checked: dict[str, _Header] = {}
        original = id(item)
        for key in keys:
            if key not in item.assets:
                if on_error == "fail":
                    raise DataError(
                        f"STAC item {item.id!r} has no asset {key!r} (assets: {sorted(item.assets)})"
                    )
                failures.add(f"{item.id}:{key}", "asset missing from the item")
                continue
            href = _href(item.assets[key])
            answer = opened.get(href) if href in opened else results.get((original, key))
            if answer is None:
                answer = _headers([(item, key)], retries, headers)[0]
            if isinstance(answer, BaseException):
                err = answer
                if on_error == "fail" and isinstance(err, NetworkError):
                    raise err
                if on_error == "fail":
                    raise DataError(
                        f"cannot read asset {key!r} of item {item.id!r} at {href}: {err}; "
                        "fix the file or set ingest.on_error: nan to turn it into NaN"
                    ) from err
                failures.add(href, str(err))
                item = item.clone()
                del item.assets[key]
                continue
            _check_georef(item, key, href, answer)
            checked[key] = answer
        out.append(item)
        found.append(checked)
    return out, found


def _open_all(
    todo: Sequence[tuple[pystac.Item, str]], retries: int, headers: Any, stop: Any = None
) -> list[tuple[tuple[pystac.Item, str], _Header | BaseException]]:
    """The header (or the error) of each ``(item, asset key)`` of ``todo``, opened on a few
    threads (GDAL releases the GIL while it opens and reads), each a contiguous run of files in
    one GDAL environment; ``stop`` as in :func:`_headers` (a run it ends leaves its files out)."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    n_threads = max(1, min(4, os.cpu_count() or 1, len(todo) // 8))
    runs = [todo[k::n_threads] for k in range(n_threads)]
    with ThreadPoolExecutor(n_threads) as pool:
        done = list(pool.map(lambda run: _headers(run, retries, headers, stop), runs))
    return [
        pair
        for run, answers in zip(runs, done, strict=False)
        for pair in zip(run, answers, strict=False)
    ]


def open_headers(
    items: Sequence[pystac.Item],
    keys: Sequence[str],
    *,
    retries: int = 4,
    headers: Any = None,
    stop: Any = None,
) -> dict[str, Any]:
    """Open the headers of assets ``keys`` of ``items`` ahead of :func:`read_ifg_stack` (its
    ``opened``): href -> the header, or the error opening it, judged there as if opened then.

    The ingest opens the next frame's headers while the cluster writes the current frame, so the
    workers do not wait for them between frames. ``stop`` (a :class:`threading.Event`) ends the
    opening early when set, and is set by the first file that cannot be opened (as in
    :func:`_check_assets` under ``fail``: a server that is down is not retried file after file
    ahead of time); the files left unopened are opened by :func:`read_ifg_stack`.
    """
    todo = [(item, key) for item in items for key in keys if key in item.assets]
    return {
        _href(item.assets[key]): answer
        for (item, key), answer in _open_all(todo, retries, headers, stop)
    }


def _headers(
    run: Sequence[tuple[pystac.Item, str]], retries: int, headers: Any, stop: Any = None
) -> list[_Header | BaseException]:
    """The header (or the error) of each ``(item, asset key)`` of ``run``, opened in turn; with
    ``stop`` (a :class:`threading.Event`), set on an error and ending the run early when set."""
    import rasterio

    def header_of(href: str) -> _Header:
        with _open_env(href, headers, retries), rasterio.open(_rasterio_path(href)) as src:
            _check_complete(src)
            return _Header(src.crs, src.transform, src.height, src.width)

    answers: list[_Header | BaseException] = []
    # one GDAL environment for the local opens (rasterio would set one up per file otherwise)
    local = not any(_is_remote(_href(item.assets[key])) for item, key in run)
    with rasterio.Env() if local else contextlib.nullcontext():
        for item, key in run:
            if stop is not None and stop.is_set():
                break
            href = _href(item.assets[key])
            try:
                answers.append(
                    retrying(
                        lambda href=href: header_of(href),
                        url=href,
                        what=f"asset {key!r} of item {item.id!r}",
                        retries=retries,
                        headers=headers,
                    )
                )
            except Exception as err:  # noqa: BLE001 -- judged by the caller, in item order
                answers.append(err)
                if stop is not None:
                    stop.set()
    return answers


def _check_complete(src: Any) -> None:
    """Read the last data block of band 1 of an opened GeoTIFF: a file cut short after its
    header (an interrupted download or copy) fails here, when its header is checked, instead
    of turning into NaN unseen (or a bare GDAL error) inside a task later.

    The block with the largest file offset ends the band's data (a COG stores the full
    resolution last); reading it costs one tile. Formats without TIFF block offsets are not
    checked.

    Raises
    ------
    OSError
        The file ends before that block's last byte (the caller names the file and the policy).
    """
    import rasterio
    from rasterio.windows import Window

    if src.driver not in ("GTiff", "COG") or src.count < 1:
        return
    block_h, block_w = src.block_shapes[0]
    last, where = -1, None
    for row in range(-(-src.height // block_h)):
        for col in range(-(-src.width // block_w)):
            offset = src.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=1)
            if offset is not None and int(offset) > last:  # None: a sparse (empty) block
                last, where = int(offset), (row, col)
    if where is None:
        return
    row, col = where
    window = Window(col * block_w, row * block_h, block_w, block_h).intersection(
        Window(0, 0, src.width, src.height)
    )
    try:
        src.read(1, window=window)
    except rasterio.errors.RasterioError as err:
        # no byte counts in the message: a number such as 503 would read as an HTTP status
        raise OSError(
            f"the file is truncated or damaged: its last data block (block row {row}, column "
            f"{col} of band 1) cannot be read ({err})"
        ) from err


@dataclass(frozen=True)
class _Header:
    """What :func:`_check_georef` needs of an opened raster (kept after the file is closed)."""

    crs: Any
    transform: Any
    height: int
    width: int


def _stac_dict(item: pystac.Item, epsg: int) -> dict[str, Any]:
    """The item as stackstac reads it: absolute hrefs and ``proj:epsg`` (stackstac 0.5 reads
    ``proj:epsg``, not ``proj:code``; without it the asset's extent would be guessed from the
    lon/lat bbox)."""
    d = item.to_dict()
    d["properties"] = {**d["properties"], "proj:epsg": epsg}
    for key, asset in item.assets.items():
        d["assets"][key] = {**d["assets"][key], "href": _href(asset)}
    return d


#: GDAL settings of interferogram reads. Each task reads its window of every pair's files, so
#: every file stays open through the stack (one handle per file and thread): GDAL's per-handle
#: read cache (``VSI_CACHE``, which stackstac turns on at open so thread-local re-opens of
#: remote files are cheap; 25 MB per handle by default) and its block cache (5 % of RAM by
#: default) would otherwise fill with the scene. Both are capped: 64 KiB per handle keeps a
#: COG's header, 256 MB of blocks per process lets neighbouring windows share the file tiles
#: they overlap instead of fetching them again.
GDAL_READ_OPTIONS = {"VSI_CACHE_SIZE": 64 * 1024, "GDAL_CACHEMAX": 256}


def _stack_assets(
    items: Sequence[pystac.Item],
    keys: Sequence[str],
    grid: Grid,
    resampling: str,
    chunks: tuple[int, int],
    on_error: OnError,
    *,
    retries: int = 4,
    headers: Any = None,
) -> Any:
    """A lazy ``(pair, asset, y, x)`` float32 dask array of ``items`` on ``grid`` (one stackstac
    call).

    Chunks ``(pair, asset, chunks[0], chunks[1])``: one task reads one window of every item's
    files, so memory follows the chunk, not the scene. NaN outside each file's extent and where
    the file has no data. On ``grid``'s lattice the reads are windows of each file (GDAL
    nearest on coinciding pixels copies them); off it, ``resampling`` (a
    :class:`rasterio.enums.Resampling` name).
    """
    import stackstac
    from rasterio.enums import Resampling
    from rasterio.errors import RasterioIOError

    remote = next((_href(a) for i in items for a in i.assets.values() if _is_remote(_href(a))), "")
    # remote reads: GDAL retries 429/5xx itself (sources.retries) and sends the headers
    auth = gdal_options(remote, headers, retries=retries) if remote else {}
    env = stackstac.DEFAULT_GDAL_ENV.updated(always={**GDAL_READ_OPTIONS, **auth})
    stack = stackstac.stack(
        [_stac_dict(i, grid_from_item(i).epsg) for i in items],
        assets=list(keys),
        epsg=grid.epsg,
        resolution=grid.resolution,
        bounds=grid.bounds,
        snap_bounds=False,
        resampling=Resampling[resampling],
        dtype=np.dtype("float32"),
        fill_value=np.float32(np.nan),
        rescale=False,
        chunksize=(-1, -1, chunks[0], chunks[1]),
        sortby_date=False,
        xy_coords="center",
        properties=False,
        band_coords=False,
        gdal_env=env,
        errors_as_nodata=(RasterioIOError(".*"),) if on_error == "nan" else (),
    )
    if tuple(stack.shape[-2:]) != grid.shape:
        raise DataError(
            f"stacked grid {tuple(stack.shape[-2:])} differs from the frame grid {grid.describe()}"
        )
    return stack.data


#: GDAL settings of the lattice reads (:func:`_read_lattice_block`) besides
#: :data:`GDAL_READ_OPTIONS`: no directory listing on open (no sidecar requests), merged HTTP
#: ranges. Each task opens a file, reads its window and closes it, so nothing is cached per handle.
_LATTICE_ENV = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MULTIRANGE": "YES",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
}

#: Bytes of one read task of :func:`_lattice_stack`: the pair axis of a spatial chunk is split
#: into blocks of about this size, so a chunk's reads spread over the workers (a small frame
#: is one chunk) while a task stays large next to its overhead.
LATTICE_READ_BYTES = 32 * 2**20

#: From this many spatial windows on, a frame's reads spread over the workers by window alone:
#: each task reads every pair of its window (the chunk the stage asked for), so the pair blocks
#: are not merged and no block travels between workers.
LATTICE_SPREAD_WINDOWS = 8


@dataclass(frozen=True)
class _Placed:
    """One file on the frame grid's lattice: its GDAL path and its pixel box on the grid."""

    path: str
    row: int  # grid row of the file's first row (may be negative or past the grid)
    col: int
    height: int
    width: int


def _place(header: _Header, href: str, grid: Grid) -> _Placed | None:
    """Where an opened file's pixels fall on ``grid``; None when they are off its lattice."""
    t = header.transform
    if header.crs is None or header.crs.to_epsg() != grid.epsg or t.b or t.d:
        return None
    res = grid.resolution
    if abs(t.a - res) > _RESOLUTION_RTOL * res or abs(-t.e - res) > _RESOLUTION_RTOL * res:
        return None
    col = (t.c - grid.bounds[0]) / res
    row = (grid.bounds[3] - t.f) / res
    if max(abs(col - round(col)), abs(row - round(row))) > LATTICE_TOLERANCE_PX:
        return None
    return _Placed(_rasterio_path(href), round(row), round(col), header.height, header.width)


def _read_window_nan(src: Any, window: Any) -> np.ndarray:
    """Band 1 of an open dataset in ``window`` as float32, its no data NaN: exactly
    ``src.read(1, window=window, out_dtype=np.float32, masked=True).filled(np.nan)``.

    Hand-written because a masked read of a file with a no-data value asks GDAL for its mask
    band, and GDAL's no-data mask band (``GDALNoDataMaskBand``) reads and decodes the pixels a
    second time: on the demo twin's 222 HyP3 GeoTIFFs (float32, no data 0, in zips) masked
    reads took 1.75x the CPU of plain ones (0.96 s against 0.55 s). Here a GeoTIFF band whose
    only mask is its no-data value (mask flags exactly ``nodata``) is read once, in its own
    dtype, and masked by GDAL's own rule (``GDALNoDataMaskBand::IRasterIO`` in
    gcore/gdalnodatamaskband.cpp and ``ARE_REAL_EQUAL`` in gcore/gdal_priv.h, GDAL 3.x; checked
    against rasterio's masked reads in tests/test_lattice_reads.py):

    - float32/float64: a NaN no data masks NaN pixels; otherwise the no data ``nd`` (cast to
      float32 on a float32 band) masks ``v == nd`` or ``|v - nd| < eps32 * |v + nd| * 2``,
      computed in the band's dtype (eps32 the float32 epsilon); that second term can hold only
      for a finite nonzero ``nd``;
    - integers: GDAL casts the no data to its (possibly wider) work type, truncating toward
      zero, and masks equal pixels: none when the truncated value is outside the band's dtype.

    A no-data value outside the band's range gets no mask from GDAL (flags ``all_valid``): the
    band is read plainly, like one without no data. The values are cast to float32 as GDAL
    does (exact for float32 and integers of up to 16 bits; C round-to-nearest for 32-bit
    integers and float64) except valid float64 values beyond float32's finite range, which
    GDAL versions convert differently. Those windows, other drivers, other dtypes, a no data
    rasterio does not report, and every other mask (internal or external mask band, alpha,
    per-dataset) keep the masked read.
    """
    from rasterio.enums import MaskFlags

    def masked_read() -> np.ndarray:
        data = src.read(1, window=window, out_dtype=np.float32, masked=True)
        return np.asarray(data.filled(np.float32(np.nan)), dtype=np.float32)

    flags = list(src.mask_flag_enums[0])
    if flags == [MaskFlags.all_valid]:
        return src.read(1, window=window, out_dtype=np.float32)
    dtype = np.dtype(src.dtypes[0])
    nodata = src.nodatavals[0]
    if (
        flags != [MaskFlags.nodata]
        or src.driver != "GTiff"
        or nodata is None
        or dtype.name
        not in ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")
        or (dtype.kind != "f" and not np.isfinite(nodata))
    ):
        return masked_read()
    data = src.read(1, window=window)
    if dtype.kind == "f":
        with np.errstate(invalid="ignore", over="ignore"):
            nd = dtype.type(nodata)  # GDAL: static_cast<float> of the double (float32 band)
            if np.isnan(nd):
                mask = np.isnan(data)
            else:
                mask = data == nd
                if np.isfinite(nd) and nd != 0:
                    eps = dtype.type(np.finfo(np.float32).eps)
                    mask |= np.abs(data - nd) < eps * np.abs(data + nd) * dtype.type(2)
            if dtype == np.float64:  # a valid value GDAL versions cast differently
                big = np.abs(data)
                if ((big > np.finfo(np.float32).max) & (big != np.inf) & ~mask).any():
                    return masked_read()
    else:
        nd_int = int(np.trunc(nodata))
        info = np.iinfo(dtype)
        mask = data == dtype.type(nd_int) if info.min <= nd_int <= info.max else None
    with np.errstate(over="ignore"):  # a masked float64 beyond float32: NaN below
        values = data if dtype == np.float32 else data.astype(np.float32)
    if mask is not None:
        values[mask] = np.float32(np.nan)
    return values


def _read_lattice_block(
    files: Sequence[Sequence[_Placed | None]],
    rows: tuple[int, int],
    cols: tuple[int, int],
    env: dict[str, Any],
    on_error: OnError,
) -> np.ndarray:
    """Read one window of the frame grid from files on its lattice (one dask task).

    Parameters
    ----------
    files : sequence (pair) of sequence (asset) of _Placed or None
        The files of a block of pairs; None is an asset not read (NaN).
    rows, cols : (int, int)
        The window, grid pixels ``[start, stop)``.
    env : dict
        GDAL configuration (:data:`GDAL_READ_OPTIONS`, remote options).
    on_error : {"fail", "nan"}
        A file that cannot be read: raise a :class:`DataError` naming it, or NaN.

    Returns
    -------
    ndarray, shape (asset, pair, rows, cols), float32
        The files' values as read (their no data, and everything outside their extent, NaN):
        pixel for pixel, since the files' pixels coincide with the grid's.
    """
    import rasterio
    from rasterio.errors import RasterioIOError
    from rasterio.windows import Window

    n_asset = max((len(f) for f in files), default=0)
    out = np.full((n_asset, len(files), rows[1] - rows[0], cols[1] - cols[0]), np.nan, np.float32)
    with rasterio.Env(**env):
        for p, pair_files in enumerate(files):
            for a, f in enumerate(pair_files):
                if f is None:
                    continue
                r0, r1 = max(rows[0], f.row), min(rows[1], f.row + f.height)
                c0, c1 = max(cols[0], f.col), min(cols[1], f.col + f.width)
                if r1 <= r0 or c1 <= c0:
                    continue
                window = Window(c0 - f.col, r0 - f.row, c1 - c0, r1 - r0)
                try:
                    with rasterio.open(f.path) as src:
                        data = _read_window_nan(src, window)
                except RasterioIOError as err:
                    if on_error == "nan":
                        log.warning("unreadable window of %s turned into NaN: %s", f.path, err)
                        continue
                    raise DataError(
                        f"cannot read {f.path} (rows {r0 - f.row}:{r1 - f.row}, columns "
                        f"{c0 - f.col}:{c1 - f.col}): {err}; fix the file or set "
                        "ingest.on_error: nan to turn it into NaN"
                    ) from err
                out[a, p, r0 - rows[0] : r1 - rows[0], c0 - cols[0] : c1 - cols[0]] = data
    return out


def _lattice_stack(
    files: Sequence[Sequence[_Placed | None]],
    grid: Grid,
    chunks: tuple[int, int],
    on_error: OnError,
    env: dict[str, Any],
) -> Any:
    """A lazy ``(asset, pair, y, x)`` float32 dask array of files on ``grid``'s lattice.

    One task reads one spatial window (``chunks``) of every pair, opening each file once and
    reading only its window: memory follows the chunk, not the scene. A frame of fewer than
    :data:`LATTICE_SPREAD_WINDOWS` windows (a small frame is one) has each window's pairs read
    in blocks of about :data:`LATTICE_READ_BYTES` instead, so its reads still spread over the
    workers; the blocks are merged again after the canonical values.
    """
    import dask.array as da
    from dask.highlevelgraph import HighLevelGraph
    from dask.tokenize import tokenize

    n_pair = len(files)
    n_asset = max(len(f) for f in files)
    ny, nx = grid.shape
    ychunks = tuple(min(chunks[0], ny - y) for y in range(0, ny, chunks[0]))
    xchunks = tuple(min(chunks[1], nx - x) for x in range(0, nx, chunks[1]))
    per_pair = n_asset * chunks[0] * chunks[1] * 4
    n_blocks = 1  # enough windows to spread: each window read whole, no merge, no transfer
    if len(ychunks) * len(xchunks) < LATTICE_SPREAD_WINDOWS:
        n_blocks = -(-n_pair // max(1, LATTICE_READ_BYTES // per_pair))
    size = -(-n_pair // n_blocks)
    pchunks = tuple(min(size, n_pair - p) for p in range(0, n_pair, size))
    name = "read-lattice-" + tokenize(files, grid, chunks, on_error, env)
    dsk: dict[Any, Any] = {}
    p0 = 0
    for ip, np_ in enumerate(pchunks):
        block = tuple(tuple(f) for f in files[p0 : p0 + np_])
        y0 = 0
        for iy, cy in enumerate(ychunks):
            x0 = 0
            for ix, cx in enumerate(xchunks):
                dsk[(name, 0, ip, iy, ix)] = (
                    _read_lattice_block,
                    block,
                    (y0, y0 + cy),
                    (x0, x0 + cx),
                    env,
                    on_error,
                )
                x0 += cx
            y0 += cy
        p0 += np_
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=())
    return da.Array(
        graph,
        name,
        chunks=((n_asset,), pchunks, ychunks, xchunks),
        dtype=np.float32,
        meta=np.empty((0, 0, 0, 0), dtype=np.float32),
    )


def _canonical_block(adapter: Any, block: np.ndarray, has_coherence: bool) -> np.ndarray:
    """The adapter's ``canonical_block`` on one ``(asset, pair, y, x)`` block (assets phase,
    coherence?); returns ``(2, pair, y, x)`` float32: canonical phase and coherence (each
    contiguous, so a variable's chunk is a view)."""
    phase = block[0]
    coherence = block[1] if has_coherence else np.full_like(phase, np.nan)
    phase, coherence = adapter.canonical_block(phase, coherence)
    out = np.empty((2, *block.shape[1:]), dtype=np.float32)
    out[0] = phase
    out[1] = coherence
    return out


def read_ifg_stack(
    items: Sequence[pystac.Item],
    *,
    adapter: Any = None,
    phase_asset: str | None = None,
    coherence_asset: str | None = "",
    conncomp_asset: str | None = None,
    chunks: tuple[int, int] = (512, 512),
    on_error: OnError = "fail",
    grid: FrameGridMode | Grid = "union",
    resample: bool = False,
    phase_resampling: str = "nearest",
    retries: int = 4,
    headers: Any = None,
    opened: Mapping[str, Any] | None = None,
) -> tuple[xr.Dataset, AssetFailures]:
    """Stack one frame's interferogram items into ``unw_phase(pair, y, x)`` and ``coherence``
    on one frame grid.

    Pairs on different extents go onto one grid (:func:`frame_grid`): their union or
    intersection, in their native CRS, on the lattice most of them share. Pairs on that lattice
    are read window by window, pixel for pixel (NaN outside each pair's extent); a pair off it
    (another CRS, pixel size or a fractional pixel offset) is a :class:`DataError` unless
    ``resample``, then resampled (coherence bilinear, phase ``phase_resampling``, connected
    components nearest) and counted. Each file's CRS, transform and shape are checked against
    its item when its header is opened. A pair listed twice (same reference and secondary
    dates) is read once (the first item), counted and logged. The adapter's
    ``canonical_block`` turns raw values into the canonical ones chunk by chunk, lazily.

    Parameters
    ----------
    items : sequence of pystac.Item
        One item per interferogram of one frame, each with ``start_datetime`` (reference) and
        ``end_datetime`` (secondary), the projection extension, and the phase (and coherence)
        assets.
    adapter : IfgAdapter, optional
        The provider's conventions (:mod:`ncp_subsidence.io.products`); default the plain-COG
        adapter (``cog``).
    phase_asset, coherence_asset : str, optional
        Asset keys; ``None`` phase or ``""`` coherence take the adapter's; ``None`` coherence
        reads none (``coherence`` is then absent).
    conncomp_asset : str, optional
        Asset key of connected components (stacked as ``connected_components``, float32 labels,
        NaN outside); None reads none.
    chunks : (int, int)
        Spatial chunk (y, x) of the output; the pair axis is one chunk.
    on_error : {"fail", "nan"}
        Unreadable asset: raise, or fill NaN and report it in ``failures``.
    grid : {"union", "intersection"} or Grid
        The frame grid, or how to make it from the items (:func:`frame_grid`).
    resample : bool
        Resample pairs off the frame grid's lattice instead of raising.
    phase_resampling : str
        :class:`rasterio.enums.Resampling` name for the phase of resampled pairs.
    retries, headers
        Remote reads: retries of transient failures (``sources.retries``) and the source's
        HTTP headers (e.g. an Earthdata ``Authorization``; never logged).
    opened : mapping, optional
        Headers already opened (:func:`open_headers`), by href: not opened again.

    Returns
    -------
    dataset : xarray.Dataset
        ``unw_phase`` (rad) and ``coherence`` (0-1) float32 ``(pair, y, x)``, NaN for no data
        and outside each pair's extent; coords ``reference(pair)``, ``secondary(pair)``
        (datetime64), ``item_id(pair)``, ``y``, ``x`` (cell centres, CRS units: metres for UTM,
        degrees for EPSG:4326). Attrs ``crs`` (``"EPSG:<code>"``), ``frame_grid``,
        ``n_resampled_pairs``, ``resampled_items`` (JSON ids), ``n_duplicate_pairs``,
        ``duplicate_items`` (JSON ids).
    failures : AssetFailures
        Unreadable assets turned into NaN (empty under ``on_error="fail"``).

    Raises
    ------
    DataError
        No items; dates out of order; a file not where its item says; a pair off the lattice
        without ``resample``; an unreadable asset under ``on_error="fail"``.
    """
    import dask.array as da

    if not items:
        raise DataError("no interferogram items to ingest for this frame (empty search?)")
    if adapter is None:
        from .products import ifg_adapter

        adapter = ifg_adapter("cog")
    phase_asset = phase_asset or adapter.phase_asset
    if coherence_asset == "":
        coherence_asset = adapter.coherence_asset
    items, dropped = unique_pairs(items)
    if dropped:
        log.warning(
            "%d interferogram(s) repeat a pair already listed and are skipped: %s",
            len(dropped),
            ", ".join(i.id for i in dropped[:5]) + (" ..." if len(dropped) > 5 else ""),
        )
    mode = grid if isinstance(grid, str) else "given"
    target = grid if isinstance(grid, Grid) else frame_grid(items, grid)
    keys = [k for k in (phase_asset, coherence_asset, conncomp_asset) if k]
    failures = AssetFailures()
    items, found = _check_assets(
        items, keys, on_error, failures, retries=retries, headers=headers, opened=opened
    )
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
    aligned = [k for k, i in enumerate(items) if target.on_lattice(grid_from_item(i))]
    off = [k for k in range(len(items)) if k not in set(aligned)]
    if off and not resample:
        first = items[off[0]]
        raise DataError(
            f"{len(off)} interferogram(s) are off the frame grid's pixel lattice, e.g. "
            f"{first.id!r}: {grid_from_item(first).describe()}; frame grid {target.describe()}; "
            "set ingest.resample: true to resample them (coherence bilinear, phase "
            "ingest.phase_resampling) or reprocess them onto one lattice"
        )
    if off:
        log.warning(
            "%d interferogram(s) off the frame grid's lattice are resampled (phase %s, "
            "coherence bilinear): %s",
            len(off),
            phase_resampling,
            ", ".join(items[k].id for k in off[:5]) + (" ..." if len(off) > 5 else ""),
        )
    resampling = {phase_asset: phase_resampling, coherence_asset: "bilinear"}
    if conncomp_asset:
        resampling[conncomp_asset] = "nearest"
    # aligned pairs whose every file lies on the lattice are read window by window directly;
    # the others (an asset's own georeferencing off the lattice) go through stackstac (nearest)
    placed: dict[int, list[_Placed | None]] = {}
    for k in aligned:
        spots = [
            _place(found[k][key], _href(items[k].assets[key]), target) if key in found[k] else None
            for key in keys
        ]
        if all(s is not None or key not in found[k] for s, key in zip(spots, keys)):
            placed[k] = spots
    stacked = [k for k in aligned if k not in placed]
    remote = next((_href(a) for i in items for a in i.assets.values() if _is_remote(_href(a))), "")
    auth = gdal_options(remote, headers, retries=retries) if remote else {}
    parts = []  # (asset, pair, y, x) stacks: the lattice reads, stackstac's, the resampled ones
    if placed:
        env = {**GDAL_READ_OPTIONS, **_LATTICE_ENV, **auth}
        parts.append(_lattice_stack(list(placed.values()), target, chunks, on_error, env))
    if stacked:
        parts.append(
            _stack_assets(
                [items[k] for k in stacked],
                keys,
                target,
                "nearest",
                chunks,
                on_error,
                retries=retries,
                headers=headers,
            ).transpose(1, 0, 2, 3)
        )
    if off:  # stackstac takes one resampling per call: one call per asset
        per_asset = [
            _stack_assets(
                [items[k] for k in off],
                [key],
                target,
                resampling[key],
                chunks,
                on_error,
                retries=retries,
                headers=headers,
            )
            for key in keys
        ]
        parts.append(da.concatenate(per_asset, axis=1).transpose(1, 0, 2, 3))
    raw = parts[0] if len(parts) == 1 else da.concatenate(parts, axis=1)
    order = [*placed, *stacked, *off]
    if order != list(range(len(items))):
        raw = raw[:, np.argsort(np.array(order))]
    raw = raw.rechunk({0: -1, 2: chunks[0], 3: chunks[1]})  # each window stays one chunk
    has_coherence = bool(coherence_asset)
    canonical = da.map_blocks(
        _canonical_block,
        adapter,
        raw,
        has_coherence,
        chunks=((2,), *raw.chunks[1:]),
        dtype=np.float32,
        meta=np.empty((0, 0, 0, 0), dtype=np.float32),
    )
    # the pair blocks of each window merge here, after the canonical values (within the
    # window), one variable at a time: the two merges (and their writes) run on two workers
    whole = (-1, chunks[0], chunks[1])
    data = {"unw_phase": (("pair", "y", "x"), canonical[0].rechunk(whole))}
    if has_coherence:
        data["coherence"] = (("pair", "y", "x"), canonical[1].rechunk(whole))
    if conncomp_asset:
        comps = raw[keys.index(conncomp_asset)].rechunk((-1, chunks[0], chunks[1]))
        data["connected_components"] = (("pair", "y", "x"), comps)
    y, x = target.coords()
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
    geographic = target.epsg == 4326
    ds["x"].attrs = (
        {"units": "degrees_east", "standard_name": "longitude"}
        if geographic
        else {"units": "m", "standard_name": "projection_x_coordinate"}
    )
    ds["y"].attrs = (
        {"units": "degrees_north", "standard_name": "latitude"}
        if geographic
        else {"units": "m", "standard_name": "projection_y_coordinate"}
    )
    ds.attrs.update(
        {
            "crs": target.crs,
            "frame_grid": mode,
            "n_resampled_pairs": len(off),
            "resampled_items": json.dumps([items[k].id for k in off]),
            "n_duplicate_pairs": len(dropped),
            "duplicate_items": json.dumps([i.id for i in dropped]),
        }
    )
    return ds, failures


def _dt64(value: _dt.datetime | None) -> np.datetime64:
    if value is None:
        raise DataError("a STAC item has no datetime")
    if value.tzinfo is not None:
        value = value.astimezone(_dt.UTC).replace(tzinfo=None)
    return np.datetime64(value, "ns")


#: ``resampling`` of :func:`read_onto_grid` that picks by pixel size: cell average when the
#: source is finer than the grid in both directions, bilinear otherwise.
AUTO_RESAMPLING = "auto"


def _source_pixel_size(src: Any, dst_crs: Any) -> tuple[float, float]:
    """(x, y) pixel size of an opened raster in the units of ``dst_crs``.

    In its own CRS the transform's column and row steps; in another CRS, the size of one
    pixel at the raster's centre, transformed (a pixel is small enough to be a parallelogram).
    """
    from rasterio.warp import transform as warp_transform

    t = src.transform
    col_step, row_step = float(np.hypot(t.a, t.d)), float(np.hypot(t.b, t.e))
    if src.crs == dst_crs:
        return col_step, row_step
    c, r = src.width / 2.0, src.height / 2.0
    xs, ys = zip(*(t * (c + dc, r + dr) for dc, dr in ((0, 0), (1, 0), (0, 1))))
    u, v = warp_transform(src.crs, dst_crs, list(xs), list(ys))
    return float(np.hypot(u[1] - u[0], v[1] - v[0])), float(np.hypot(u[2] - u[0], v[2] - v[0]))


def read_onto_grid(
    href: str,
    grid: Grid,
    *,
    resampling: str = "bilinear",
    src_nodata: float | None = None,
    retries: int = 4,
    headers: Any = None,
    what: str = "raster",
) -> tuple[np.ndarray, tuple[slice, slice]] | None:
    """Read band 1 of a (small) raster onto the part of ``grid`` it covers, eagerly.

    The one reader of rasters placed on a grid: per-frame geometry layers (every adapter) and
    driving-factor rasters. The file's own CRS and affine transform place it (any CRS, any
    pixel shape, rotation included). On ``grid``'s lattice (same CRS and pixel size, whole
    pixels apart) the overlapping window is copied pixel for pixel; otherwise the raster is
    warped (GDAL) with ``resampling``. Only the window of ``grid`` that the raster's footprint
    covers is computed, so memory follows the raster's size on the grid, not the grid's.

    Parameters
    ----------
    href : str
        Local path, URL (``file://``, ``s3://``, ``https://``) or GDAL path (``/vsizip/...``).
    grid : Grid
        Target grid.
    resampling : str
        :class:`rasterio.enums.Resampling` name, used only off the lattice; ``"auto"``: cell
        average where the source pixels are finer than ``grid``'s in both directions, bilinear
        otherwise.
    src_nodata : float, optional
        No-data value of a file that has no nodata tag (LiCSAR writes 0 untagged); the file's
        own tag wins. Floating-point files without either use NaN.
    retries, headers
        Remote reads: retries of transient failures and the HTTP headers sent.
    what : str
        What the raster is, for messages (``"factor raster 'dem'"``).

    Returns
    -------
    (values, (rows, cols)) or None
        ``values`` float32, shape ``(len(rows), len(cols))``, NaN for no data, and the slices of
        ``grid`` it fills; None when the raster does not overlap ``grid``.

    Raises
    ------
    DataError
        The file cannot be read, or has no CRS (naming the file and how to write one).
    NetworkError
        A remote server still failing after ``retries``.
    """
    import math

    from rasterio.crs import CRS
    from rasterio.enums import Resampling
    from rasterio.transform import from_origin
    from rasterio.vrt import WarpedVRT
    from rasterio.warp import transform_bounds
    from rasterio.windows import Window

    path = _rasterio_path(href)
    dst_crs = CRS.from_epsg(grid.epsg)
    west, _, _, north = grid.bounds
    ny, nx = grid.shape
    res = grid.resolution

    def read() -> tuple[np.ndarray, tuple[slice, slice]] | None:
        with _open_raster(href, headers, retries) as src:
            if src.crs is None:
                raise DataError(
                    f"{what} {href} has no coordinate reference system (no CRS tag in the "
                    f"file), so it cannot be placed on the {grid.crs} grid; write the CRS into "
                    f"the file, e.g. gdal_edit.py -a_srs EPSG:4326 {path} (with the file's own "
                    "CRS)"
                )
            nodata = src.nodata if src.nodata is not None else src_nodata
            if nodata is None and np.issubdtype(np.dtype(src.dtypes[0]), np.floating):
                nodata = np.nan
            t = src.transform
            corners = [t * (c, r) for c in (0, src.width) for r in (0, src.height)]
            xs, ys = [p[0] for p in corners], [p[1] for p in corners]  # rotation included
            left, bottom, right, top = transform_bounds(
                src.crs, dst_crs, min(xs), min(ys), max(xs), max(ys)
            )
            col0 = max(0, math.floor((left - west) / res))
            col1 = min(nx, math.ceil((right - west) / res))
            row0 = max(0, math.floor((north - top) / res))
            row1 = min(ny, math.ceil((north - bottom) / res))
            if col1 <= col0 or row1 <= row0:
                return None
            epsg = src.crs.to_epsg()
            own = Grid(
                int(epsg or 0),
                (t.c, t.f + t.e * src.height, t.c + t.a * src.width, t.f),
                abs(t.a),
                (src.height, src.width),
            )
            square = t.b == 0 and t.d == 0 and t.a > 0 and t.e < 0 and abs(t.a + t.e) <= 1e-12 * t.a
            if square and epsg == grid.epsg and grid.on_lattice(own):
                col = round((t.c - west) / res)
                row = round((north - t.f) / res)
                r0, c0 = max(row, 0), max(col, 0)
                r1, c1 = min(row + src.height, ny), min(col + src.width, nx)
                if r1 <= r0 or c1 <= c0:
                    return None
                window = ((r0 - row, r1 - row), (c0 - col, c1 - col))
                values = src.read(1, window=window, out_dtype="float32")
                if nodata is not None and not np.isnan(nodata):
                    values[values == np.float32(nodata)] = np.nan
                return values, (slice(r0, r1), slice(c0, c1))
            method = resampling
            if resampling == AUTO_RESAMPLING:
                size = _source_pixel_size(src, dst_crs)
                method = "average" if max(size) < res * 0.999 else "bilinear"
                log.debug(
                    "%s %s: source pixel %s, grid pixel %g: %s", what, href, size, res, method
                )
            with WarpedVRT(
                src,
                crs=dst_crs,
                transform=from_origin(west, north, res, res),
                width=nx,
                height=ny,
                resampling=Resampling[method],
                src_nodata=nodata,
                nodata=np.nan,
                dtype="float32",
            ) as vrt:
                window = Window(col0, row0, col1 - col0, row1 - row0)
                values = vrt.read(1, window=window, out_dtype="float32")
        return values, (slice(row0, row1), slice(col0, col1))

    try:
        return retrying(read, url=href, what=what, retries=retries, headers=headers)
    except (DataError, NetworkError):
        raise
    except Exception as err:
        raise DataError(f"cannot read {what} {href} onto the {grid.crs} grid: {err}") from err


def read_raster_on_grid(href: str, grid: Grid, **options: Any) -> np.ndarray:
    """Band 1 of a (small) raster on the whole of ``grid``: :func:`read_onto_grid` (same
    ``options``), NaN where the raster has no data or does not reach.

    Returns
    -------
    ndarray, shape grid.shape, float32
    """
    out = np.full(grid.shape, np.nan, dtype=np.float32)
    read = read_onto_grid(href, grid, **options)
    if read is not None:
        values, (rows, cols) = read
        out[rows, cols] = values
    return out


def read_raster(href: str, *, band: int = 1, retries: int = 4, headers: Any = None) -> xr.DataArray:
    """Read one band of a (small) raster eagerly as ``(y, x)`` with cell-centre coords.

    Used for per-frame geometry layers and factor rasters; nodata becomes NaN. Remote reads
    send ``headers`` and are retried ``retries`` times while the server fails transiently
    (:class:`~ncp_subsidence.errors.NetworkError` when it stays down).
    """
    import rasterio

    path = _rasterio_path(href)

    def read() -> tuple[np.ndarray, Any, Any]:
        with _open_env(href, headers, retries), rasterio.open(path) as src:
            arr = src.read(band, out_dtype="float64")
            if src.nodata is not None and not np.isnan(src.nodata):
                arr[arr == src.nodata] = np.nan
            return arr, src.transform, (src.crs.to_epsg() if src.crs else None)

    try:
        arr, t, epsg = retrying(read, url=href, what="raster", retries=retries, headers=headers)
        ny, nx = arr.shape
    except NetworkError:
        raise
    except Exception as err:
        raise DataError(f"cannot read raster {href}: {err}") from err
    y = t.f + t.e * (np.arange(ny) + 0.5)
    x = t.c + t.a * (np.arange(nx) + 0.5)
    da = xr.DataArray(arr, dims=("y", "x"), coords={"y": y, "x": x})
    da.attrs["epsg"] = epsg
    return da


def open_netcdf(
    href: str,
    *,
    group: str | None = None,
    storage_options: dict[str, Any] | None = None,
    retries: int = 4,
    headers: Any = None,
) -> xr.Dataset:
    """Open a NetCDF4/HDF5 file (local, https, s3) with h5netcdf through fsspec, loaded eagerly.

    Hydrology files are small per file (one month or one year on a 0.1-0.25 deg grid); they are
    loaded so the file handle can be closed at once. HTTP(S) reads send ``headers`` (else an
    Earthdata token / netrc) unless ``storage_options`` are given; remote reads are retried
    ``retries`` times while the server fails transiently.
    """
    url = href[len("file://") :] if href.startswith("file://") else href
    options = storage_options if storage_options is not None else fsspec_options(url, headers)

    def read() -> xr.Dataset:
        with (
            fsspec.open(url, "rb", **options) as f,
            xr.open_dataset(f, engine="h5netcdf", group=group, decode_timedelta=False) as ds,
        ):
            return ds.load()

    try:
        return retrying(read, url=href, what="NetCDF file", retries=retries, headers=headers)
    except NetworkError:
        raise
    except FileNotFoundError as err:
        raise DataError(f"NetCDF file {href} not found") from err
    except OSError as err:
        raise DataError(f"cannot read NetCDF file {href}: {err}") from err


def read_midas_checked(
    href: str, *, retries: int = 4, headers: Any = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a MIDAS file with the provider adapter's quality screen
    (:func:`ncp_subsidence.io.products.midas.read_midas`: longitudes into -180..180, rows with
    NaN, sigma <= 0 or a repeated station dropped); returns the table and its report.

    Remote files are fetched once (``headers``, retried ``retries`` times), then parsed.
    """
    from .products import midas

    url = href[len("file://") :] if href.startswith("file://") else href
    if "://" not in url:
        return midas.read_midas(url)
    text = _read_text(href, retries=retries, headers=headers, what="MIDAS velocity file")
    memfs = fsspec.filesystem("memory")
    name = f"/midas/{abs(hash(href))}/{url.rstrip('/').rsplit('/', 1)[-1]}"
    memfs.pipe(name, text.encode())
    try:
        table, report = midas.read_midas(f"memory://{name}")
    finally:
        memfs.rm(name)
    report["href"] = href
    return table, report


def _read_text(href: str, *, retries: int, headers: Any, what: str) -> str:
    """A text file read whole through fsspec, with auth headers and retries."""
    url = href[len("file://") :] if href.startswith("file://") else href

    def read() -> str:
        with fsspec.open(url, "rt", **fsspec_options(url, headers)) as f:
            return f.read()

    try:
        return retrying(read, url=href, what=what, retries=retries, headers=headers)
    except NetworkError:
        raise
    except FileNotFoundError as err:
        raise DataError(f"{what} {href} not found") from err
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read {what} {href}: {err}") from err


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
