"""Stage ``ingest``: stream the discovered products into chunked Zarr cubes.

Datasets written (``ingest/<version>/...``):

``ifg/<frame>``
    ``unw_phase``, ``coherence`` ``(pair, y, x)`` float32 (pair axis one chunk, spatial chunks
    ``ingest.chunk_y x ingest.chunk_x``, or sized to ``ingest.chunk_mb``), ``incidence``,
    ``los_east/north/up`` ``(y, x)``; coords ``reference(pair)``, ``secondary(pair)``; the
    frame's native CRS (``attrs["crs"]`` and ``spatial_ref``; UTM stays UTM). The provider's
    adapter (:func:`~ncp_subsidence.io.products.ifg_adapter`, chosen by
    ``sources.interferograms.<frame>.format`` or the items' ``ncp:format``) turns its no-data,
    scaling and geometry into the canonical schema; its ``attrs()`` and ``ifg_format`` are
    recorded. Pairs on different extents share one frame grid (``ingest.frame_grid``: union or
    intersection) on their pixel lattice; a pair off it is an error unless ``ingest.resample``
    (then counted: ``n_resampled_pairs``). A pair listed twice is kept once
    (``n_duplicate_pairs``). Read lazily through stackstac, so each task reads only its window
    of each file: memory is bounded by the chunk size.
``hydro/grace``, ``hydro/gldas``, ``hydro/fldas``, ``hydro/imerg``
    Monthly ``(time, lat, lon)`` on each product's native grid, in mm of water (SCIENCE.md 5.2):
    ``grace_twsa`` (GRACE cm x 10), ``canopy_water`` (GLDAS kg m-2), ``soil_moisture`` (FLDAS
    volume fractions x layer thickness, 0-2 m), ``swe``, ``evapotranspiration`` and
    ``precipitation`` (mm/month). ``time`` is the mid-month date.
``factors``
    Driving-factor rasters resampled to the factor grid (``factors.resolution_deg`` over
    ``sources.bbox``) from each file's own CRS and transform (any CRS and pixel shape; cell
    average where the file is finer, bilinear where coarser; a file without a CRS is an error),
    and ``fault_density``, the fault length per cell (km) from the fault lines.
``gnss``
    The GNSS velocity table, dim ``station``: ``lon, lat, height, ve, vn, vu, se, sn, su`` (mm/yr).
``gnss_series`` (when ``sources.gnss_series`` is set, or the twin gives it)
    GNSS daily positions (NGL ``.tenv3``, one file per station), dims ``station, time`` (each
    day at 12:00 UTC within the source's datetime window, NaN where a station has no solution):
    ``east``, ``north``, ``up`` (mm, relative to the station's first day in the window),
    ``sigma_up`` (mm); coords ``lon`` (-180..180), ``lat``, ``height``. Screened like the
    velocities: days with a non-finite position or a sigma <= 0 dropped, a station given twice
    kept once (the longer series), stations with no day in the window or outside every
    interferogram frame dropped; each counted in the attrs and logged.

Unreadable interferogram assets follow ``ingest.on_error``: ``fail`` raises; ``nan`` fills NaN,
counts them, logs them and records them in the dataset's attrs.

Incremental runs (``ingest.incremental``, on by default). When discovery finds items the
previous ingest did not have, and every item it had is unchanged (same id, dates, ``updated``
stamp and asset hrefs), only the new items are read: new interferograms are appended to
``ifg/<frame>`` along ``pair``, new months to ``hydro/<source>`` along ``time``, each as a new
part of the dataset (see :mod:`ncp_subsidence.io.stores`), and datasets whose items did not
change are carried over without a byte written. Anything else (an item removed or republished,
a new grid, a month inside the existing record, ``ingest.max_parts`` reached, ``--force``)
rewrites that dataset whole. Interferograms are ordered by secondary then reference date, so
pairs that arrive in acquisition order append exactly where one run on everything puts them.
Each dataset records the items that made it: ``source_item_ids`` and ``source_items_digest``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .. import __version__
from ..config import redacted_dump
from ..errors import DataError
from ..io.cube import SCHEMAS, with_crs
from ..io.products import ifg_adapter
from ..io.products.fldas import read_fldas
from ..io.products.gldas import read_gldas
from ..io.products.grace import read_grace
from ..io.products.imerg import read_imerg
from ..io.products.tenv3 import read_tenv3
from ..io.readers import (
    AUTO_RESAMPLING,
    Grid,
    factor_grid,
    frame_grid,
    read_geojson,
    read_ifg_stack,
    read_midas_checked,
    read_raster_on_grid,
    unique_pairs,
)
from ..io.remote import fsspec_options, retrying
from ..io.stac import choose_asset, item_interval, items_digest, parse_interval
from ..kernels.vector import line_length_per_cell
from ..redaction import redact_url
from ..sources import RASTER_FACTORS, load_items, source_names

__all__ = ["STAGE", "IngestStage", "month_midpoints"]

log = logging.getLogger(__name__)


def month_midpoints(times: Any) -> np.ndarray:
    """The mid-month instant of the calendar month holding each time (datetime64[ns])."""
    t = pd.DatetimeIndex(pd.to_datetime(np.asarray(times)))
    start = t.to_period("M").to_timestamp()
    end = (t.to_period("M") + 1).to_timestamp()
    return np.asarray(start + (end - start) / 2, dtype="datetime64[ns]")


def spatial_chunks(n_pair: int, options: Any, itemsize: int = 4) -> tuple[int, int]:
    """Spatial chunk (y, x) of a (pair, y, x) cube: the configured one, or square chunks holding
    about ``chunk_mb`` MB with the whole pair axis (a multiple of 16, between 64 and 2048)."""
    side = int((options.chunk_mb * 2**20 / (itemsize * max(n_pair, 1))) ** 0.5) // 16 * 16
    side = min(2048, max(64, side))
    return options.chunk_y or side, options.chunk_x or side


def _hrefs(items: list[Any], keys: tuple[str, ...] = ("data",)) -> list[str]:
    return [
        choose_asset(i, keys)[1].get_absolute_href() or choose_asset(i, keys)[1].href for i in items
    ]


def _hydro_bbox(config: Any) -> tuple[float, float, float, float]:
    """``sources.bbox`` padded by :data:`HYDRO_PAD_DEG` (coarse cells overlapping the edge)."""
    w, s, e, n = config.sources.bbox
    p = HYDRO_PAD_DEG
    return max(-180.0, w - p), max(-90.0, s - p), min(180.0, e + p), min(90.0, n + p)


#: degrees added around ``sources.bbox`` when reading gridded hydrology
HYDRO_PAD_DEG = 1.0


def _remote(config: Any, key: str) -> tuple[int, Any]:
    """The retries and HTTP headers of source ``key`` (headers stay SecretStr until sent)."""
    source = getattr(config.sources, key, None)
    return config.sources.retries, (source.headers if source is not None else None)


def _read_product(config: Any, key: str, hrefs: list[str], read: Any) -> xr.Dataset:
    """``read(storage_options)`` retried on transient failures, authenticated per source."""
    retries, headers = _remote(config, key)
    options = fsspec_options(hrefs[0], headers)
    url = hrefs[0] + (f" (+{len(hrefs) - 1} more)" if len(hrefs) > 1 else "")
    return retrying(
        lambda: read(options),
        url=url,
        what=f"source {key!r}",
        retries=retries,
        headers=headers,
    )


def _read_grace(config: Any, items: list[Any]) -> xr.Dataset:
    # the months kept: the source's own window; the whole record otherwise (the hydro stage
    # takes anomalies against a long baseline, wider than the InSAR period)
    source = config.sources.grace
    start, end = parse_interval(source.datetime if source else None)
    window = (start.date() if start else None, end.date() if end else None)
    bbox = _hydro_bbox(config)
    parts = [
        _read_product(
            config,
            "grace",
            [href],
            lambda options, href=href: read_grace(
                href,
                bbox=bbox,
                time_range=window,
                scale_factor=source.scale_factor if source else None,
                land_mask=source.land_mask if source else None,
                storage_options=options,
            ),
        )
        for href in _hrefs(items)
    ]
    ds = xr.concat(parts, "time", combine_attrs="drop") if len(parts) > 1 else parts[0]
    ds.attrs = {
        f"{option}_file": redact_url(getattr(source, option))
        for option in ("scale_factor", "land_mask")
        if source is not None and getattr(source, option) is not None
    }
    if ds.indexes["time"].has_duplicates:  # items sharing a month: averaged (SCIENCE.md 5.2)
        ds = ds.groupby("time").mean(keep_attrs=True)
    return ds.sortby("time")


def _read_gridded(config: Any, key: str, items: list[Any]) -> xr.Dataset:
    hrefs = _hrefs(items)
    bbox = _hydro_bbox(config)
    if key == "gldas":
        return _read_product(
            config,
            key,
            hrefs,
            lambda o: read_gldas(hrefs, bbox=bbox, variables=("canopy_water",), storage_options=o),
        )
    if key == "fldas":
        return _read_product(
            config,
            key,
            hrefs,
            lambda o: read_fldas(
                hrefs,
                bbox=bbox,
                variables=("soil_moisture", "swe", "precipitation", "evapotranspiration"),
                storage_options=o,
            ),
        )
    return _read_product(
        config, key, hrefs, lambda o: read_imerg(hrefs, bbox=bbox, storage_options=o)
    )


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


def pair_order(item: Any) -> tuple[Any, Any, str]:
    """Sort key of interferogram items: secondary date, reference date, id."""
    start, end = item_interval(item)
    return end, start, item.id


def _frame_adapter(ctx: Any, frame: str, items: list[Any]) -> Any:
    """The provider adapter of a frame: ``sources.interferograms.<frame>.format``, or with
    ``auto`` the items' ``ncp:format`` (``cog`` when absent); one format per frame."""
    source = ctx.config.sources.interferograms.get(frame)
    configured = source.format if source is not None else "auto"
    declared = sorted(
        {str(i.properties["ncp:format"]) for i in items if "ncp:format" in i.properties}
    )
    if configured != "auto":
        if declared and declared != [configured]:
            raise DataError(
                f"frame {frame}: sources.interferograms.{frame}.format is {configured!r} but its "
                f"items declare ncp:format {declared}; set format: auto or fix the catalog"
            )
        return ifg_adapter(configured)
    if len(declared) > 1:
        raise DataError(
            f"frame {frame}: items of several formats {declared} in one frame; split them into "
            "one source per format"
        )
    if declared and any("ncp:format" not in i.properties for i in items):
        raise DataError(
            f"frame {frame}: some items declare ncp:format {declared[0]!r} and some none; set "
            f"sources.interferograms.{frame}.format or fix the catalog"
        )
    return ifg_adapter(declared[0] if declared else "cog")


def _provenance(items: list[Any], how: str = "") -> dict[str, str]:
    """Attributes naming what a dataset was made of: its items, and how they were read."""
    return {
        "source_item_ids": json.dumps([i.id for i in items]),
        "source_items_digest": items_digest(items),
        "source_read_options": how,
    }


def _increment(
    ctx: Any, name: str, items: list[Any], how: str = ""
) -> tuple[Any, list[Any]] | None:
    """The previous dataset and the items new since it, when ``name`` can be extended.

    ``how`` describes the reading options that shape the dataset (assets, grid); it must equal
    the previous one's. None when the dataset must be written whole: no previous product (first
    run, ``--force``, ``ingest.incremental`` off), other ingest options, package version or
    reading options than the previous dataset's, an item it was made of is gone or changed, or
    it already has ``ingest.max_parts`` parts.
    """
    opts = ctx.options
    prev_record = ctx.previous
    if not opts.incremental or prev_record is None or name not in prev_record.datasets:
        return None
    _, versions = prev_record.dataset_parts(name)
    previous = ctx.store.open("ingest", name)
    try:
        old_ids = json.loads(previous.attrs["source_item_ids"])
        old_digest = previous.attrs["source_items_digest"]
        old_how = previous.attrs["source_read_options"]
    except KeyError:
        log.info("%s: the previous dataset has no item provenance; rewriting it", name)
        return None
    options = json.dumps(redacted_dump(opts), sort_keys=True)
    if (
        old_how != how
        or previous.attrs.get("ncp_subsidence_options") != options
        or previous.attrs.get("ncp_subsidence_version") != __version__
    ):
        log.info("%s: ingest options or package version changed; rewriting it", name)
        return None
    known = {i.id: i for i in items}
    gone = [i for i in old_ids if i not in known]
    if gone:
        log.info(
            "%s: %d item(s) of the previous run are gone (%s...); rewriting",
            name,
            len(gone),
            gone[0],
        )
        return None
    if items_digest([known[i] for i in old_ids]) != old_digest:
        log.info("%s: items of the previous run were republished; rewriting", name)
        return None
    old = set(old_ids)
    added = [i for i in items if i.id not in old]
    if added and len(versions) >= opts.max_parts:
        log.info("%s: %d parts reached (ingest.max_parts); rewriting it whole", name, len(versions))
        return None
    return previous, added


class IngestStage:
    """Stream discovered products into chunked Zarr cubes (see the module docstring)."""

    name = "ingest"
    reads: tuple[str, ...] = ("discover",)

    def run(self, ctx: Any) -> None:
        opts = ctx.options
        names = source_names(ctx.store)
        for name in [n for n in names if n.startswith("interferograms/")]:
            self._ingest_frame(
                ctx, name.split("/", 1)[1], load_items(ctx.store, name, config=ctx.config), opts
            )
        self._ingest_hydro(ctx, names)
        self._ingest_factors(ctx, names)
        if "gnss" in names:
            self._ingest_gnss(ctx, load_items(ctx.store, "gnss", config=ctx.config))
        if "gnss_series" in names:
            self._ingest_gnss_series(ctx, load_items(ctx.store, "gnss_series", config=ctx.config))

    def _ingest_frame(self, ctx: Any, frame: str, items: list[Any], opts: Any) -> None:
        name = f"ifg/{frame}"
        items, duplicates = unique_pairs(sorted(items, key=pair_order))
        if duplicates:
            log.warning(
                "frame %s: %d interferogram(s) repeat a pair already listed and are skipped: %s",
                frame,
                len(duplicates),
                ", ".join(i.id for i in duplicates[:5]) + (" ..." if len(duplicates) > 5 else ""),
            )
        adapter = _frame_adapter(ctx, frame, items)
        how = self._read_options(ctx, frame, adapter)
        increment = _increment(ctx, name, items, how)
        if increment is not None:
            previous, added = increment
            if previous.attrs.get("duplicate_items") != json.dumps([i.id for i in duplicates]):
                log.info("frame %s: the repeated pairs changed; rewriting the frame", frame)
            elif not added:
                ctx.reuse(name)
                log.info("frame %s: no new interferograms, %d kept", frame, previous.sizes["pair"])
                return
            elif self._append_frame(ctx, frame, previous, items, added, opts, adapter):
                return
        self._write_frame(ctx, frame, items, duplicates, opts, adapter)

    @staticmethod
    def _frame_assets(ctx: Any, frame: str, adapter: Any) -> list[str]:
        """Phase (and coherence) asset keys: the source's ``assets``, else the adapter's."""
        source = ctx.config.sources.interferograms.get(frame)
        if source and source.assets:
            return list(source.assets)
        return [adapter.phase_asset, adapter.coherence_asset]

    def _read_options(self, ctx: Any, frame: str, adapter: Any) -> str:
        """What shapes the frame besides the ingest options: the format and the assets read."""
        return json.dumps(
            {"format": adapter.name, "assets": self._frame_assets(ctx, frame, adapter)}
        )

    def _read_frame(
        self,
        ctx: Any,
        frame: str,
        items: list[Any],
        opts: Any,
        chunks: tuple[int, int],
        adapter: Any,
        grid: Grid,
    ) -> tuple[xr.Dataset, Any]:
        assets = self._frame_assets(ctx, frame, adapter)
        source = ctx.config.sources.interferograms.get(frame)
        ds, failures = read_ifg_stack(
            items,
            adapter=adapter,
            phase_asset=assets[0],
            coherence_asset=assets[1] if len(assets) > 1 else None,
            chunks=chunks,
            on_error=opts.on_error,
            grid=grid,
            resample=opts.resample,
            phase_resampling=opts.phase_resampling,
            retries=ctx.config.sources.retries,
            headers=source.headers if source is not None else None,
        )
        ds = ds.assign_coords(item_id=("pair", ds["item_id"].values.astype(object)))
        return ds, failures

    def _write_frame(
        self,
        ctx: Any,
        frame: str,
        items: list[Any],
        duplicates: list[Any],
        opts: Any,
        adapter: Any,
    ) -> None:
        chunks = spatial_chunks(len(items), opts)
        grid = frame_grid(items, opts.frame_grid)
        ds, failures = self._read_frame(ctx, frame, items, opts, chunks, adapter, grid)
        geometry = adapter.geometry(items, grid)
        if geometry is not None:
            ds = ds.assign({k: (("y", "x"), v) for k, v in geometry.items()})
        ds = SCHEMAS["ifg"].conform(ds)
        ds.attrs.update(
            {
                "frame": frame,
                "n_pairs": int(ds.sizes["pair"]),
                **adapter.attrs(),
                "ifg_format": adapter.name,
                "frame_grid": opts.frame_grid,
                "n_duplicate_pairs": len(duplicates),
                "duplicate_items": json.dumps([i.id for i in duplicates]),
                **failures.attrs(),
                **_provenance(items, self._read_options(ctx, frame, adapter)),
            }
        )
        for key in ("sat:relative_orbit", "sat:orbit_state", "twin:heading"):
            if key in items[0].properties:
                ds.attrs[key.replace(":", "_")] = items[0].properties[key]
        ds = with_crs(ds, grid.crs)
        ds.attrs["crs"] = grid.crs  # rioxarray's write_crs drops a "crs" attribute
        ds = ds.chunk({"pair": -1, "y": chunks[0], "x": chunks[1]})
        ctx.write(f"ifg/{frame}", ds, region_dim="y")
        log.info(
            "ingested frame %s (%s): %d pairs on a %s grid of %d x %d pixels (%s), %d resampled, "
            "%d repeated pair(s) skipped, %d unreadable asset(s)",
            frame,
            adapter.name,
            ds.sizes["pair"],
            opts.frame_grid,
            ds.sizes["y"],
            ds.sizes["x"],
            grid.crs,
            ds.attrs["n_resampled_pairs"],
            len(duplicates),
            len(failures),
        )

    def _append_frame(
        self,
        ctx: Any,
        frame: str,
        previous: xr.Dataset,
        items: list[Any],
        added: list[Any],
        opts: Any,
        adapter: Any,
    ) -> bool:
        """Append ``added`` (of ``items``, all the frame's) as a new part; False on a new grid."""
        grid = frame_grid(items, opts.frame_grid)  # the frame grid of everything, old and new
        y, x = grid.coords()
        same_grid = (
            previous.attrs.get("crs") == grid.crs
            and previous.sizes["y"] == y.size
            and previous.sizes["x"] == x.size
            and np.array_equal(previous["y"].values, y)
            and np.array_equal(previous["x"].values, x)
        )
        if not same_grid:
            log.info("frame %s: the new interferograms change the frame grid; rewriting", frame)
            return False
        var = previous["unw_phase"]
        chunks = (
            (var.chunks[1][0], var.chunks[2][0]) if var.chunks else spatial_chunks(len(added), opts)
        )
        ds, failures = self._read_frame(ctx, frame, added, opts, chunks, adapter, grid)
        # the part holds what varies along pair; the geometry stays in the first part
        along = [v for v in previous.data_vars if "pair" in previous[v].dims]
        if any(v not in ds.data_vars for v in along):
            log.info("frame %s: new interferograms lack %s; rewriting the frame", frame, along)
            return False
        resampled = json.loads(previous.attrs.get("resampled_items", "[]")) + json.loads(
            ds.attrs["resampled_items"]
        )
        ds = SCHEMAS["ifg"].conform(ds[along])
        if "pair" in ds.coords:  # the pair index runs on from the previous parts
            n_old = previous.sizes["pair"]
            ds = ds.assign_coords(pair=np.arange(n_old, n_old + ds.sizes["pair"]))
        for name in along:
            ds[name].attrs = dict(previous[name].attrs)
        old_ids = json.loads(previous.attrs["source_item_ids"])
        hrefs = json.loads(previous.attrs.get("unreadable_assets", "[]")) + failures.hrefs
        ds.attrs = {
            **previous.attrs,
            "n_pairs": int(previous.sizes["pair"] + ds.sizes["pair"]),
            "n_resampled_pairs": len(resampled),
            "resampled_items": json.dumps(resampled),
            "n_unreadable_assets": len(hrefs),
            "unreadable_assets": json.dumps(hrefs),
            "source_item_ids": json.dumps([*old_ids, *(i.id for i in added)]),
            "source_items_digest": items_digest(items),
        }
        ds = with_crs(ds, grid.crs).chunk({"pair": -1, "y": chunks[0], "x": chunks[1]})
        ds.attrs["crs"] = grid.crs  # rioxarray's write_crs drops a "crs" attribute
        ctx.write(f"ifg/{frame}", ds, region_dim="y", append_dim="pair")
        log.info(
            "frame %s: appended %d interferogram(s) to %d, %d unreadable asset(s)",
            frame,
            ds.sizes["pair"],
            previous.sizes["pair"],
            len(failures),
        )
        return True

    def _ingest_hydro(self, ctx: Any, names: list[str]) -> None:
        config = ctx.config
        readers = {
            "grace": lambda items: _read_grace(config, items),
            "gldas": lambda items: _read_gridded(config, "gldas", items),
            "fldas": lambda items: _read_gridded(config, "fldas", items),
            "imerg": lambda items: _read_gridded(config, "imerg", items),
        }
        for key, reader in readers.items():
            if key not in names:
                continue
            items = load_items(ctx.store, key, config=config)
            if not items:
                continue
            name = f"hydro/{key}"
            increment = _increment(ctx, name, items)
            if increment is not None:
                previous, added = increment
                if not added:
                    ctx.reuse(name)
                    continue
                new = reader(added).astype("float32")
                later = bool(np.all(new["time"].values > previous["time"].values[-1]))
                same = set(new.data_vars) == set(previous.data_vars) and all(
                    np.array_equal(new[c].values, previous[c].values) for c in ("lat", "lon")
                )
                if later and same:
                    ds = self._hydro_cube(ctx, new, key)
                    ds.attrs.update(
                        {
                            **previous.attrs,
                            "source_item_ids": json.dumps(
                                [
                                    *json.loads(previous.attrs["source_item_ids"]),
                                    *(i.id for i in added),
                                ]
                            ),
                            "source_items_digest": items_digest(items),
                        }
                    )
                    if "samples_per_month" in new.attrs:  # per month of the whole record
                        ds.attrs["samples_per_month"] = json.dumps(
                            json.loads(previous.attrs.get("samples_per_month", "[]"))
                            + json.loads(new.attrs["samples_per_month"])
                        )
                    ctx.write(name, ds, append_dim="time")
                    log.info("%s: appended %d month(s)", name, ds.sizes["time"])
                    continue
                log.info("%s: new items overlap the record or change its grid; rewriting", name)
            ds = self._hydro_cube(ctx, reader(items).astype("float32"), key)
            ds.attrs.update(_provenance(items))
            ctx.write(name, ds)

    @staticmethod
    def _hydro_cube(ctx: Any, ds: xr.Dataset, key: str) -> xr.Dataset:
        chunk = ctx.options.hydro_time_chunk
        ds = with_crs(ds)
        for var in ds.data_vars.values():  # in memory: written with the template
            if var.ndim == 3:
                var.encoding["chunks"] = (
                    var.shape[0] if chunk == -1 else min(chunk, var.shape[0]),
                    *var.shape[1:],
                )
        ds.attrs["source"] = key
        return ds

    def _ingest_factors(self, ctx: Any, names: list[str]) -> None:
        grid = factor_grid(ctx.config)
        sources = {
            k: load_items(ctx.store, k, config=ctx.config) for k in RASTER_FACTORS if k in names
        }
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

    def _ingest_gnss(self, ctx: Any, items: list[Any]) -> None:
        increment = _increment(ctx, "gnss", items)
        if increment is not None and not increment[1]:
            ctx.reuse("gnss")
            return
        (href,) = _hrefs(items[:1])
        retries, headers = _remote(ctx.config, "gnss")
        table, report = read_midas_checked(href, retries=retries, headers=headers)
        boxes = _frame_boxes(ctx)
        outside: list[str] = []
        if boxes:
            lon, lat = table["lon"].to_numpy(), table["lat"].to_numpy()
            inside = np.zeros(len(table), dtype=bool)
            for w, s, e, n in boxes:
                inside |= (lon >= w) & (lon <= e) & (lat >= s) & (lat <= n)
            outside = table.loc[~inside, "station"].astype(str).tolist()
            table = table[inside].reset_index(drop=True)
            if outside:
                log.info(
                    "gnss: %d station(s) outside every interferogram frame dropped (%s%s)",
                    len(outside),
                    ", ".join(outside[:10]),
                    " ..." if len(outside) > 10 else "",
                )
        if table.empty:
            raise DataError(
                f"GNSS file {href}: no usable station inside the interferogram frames "
                f"{[[round(float(v), 4) for v in b] for b in boxes]} (west, south, east, north; "
                f"{report['n_kept']} usable station(s) read); give a GNSS file covering the frames"
            )
        report.pop("href", None)
        report["n_outside_frames"] = len(outside)
        report["outside_frames"] = outside
        ds = xr.Dataset.from_dataframe(table.set_index("station"))
        for c in ("ve", "vn", "vu", "se", "sn", "su"):
            ds[c].attrs = {
                "units": "mm/yr",
                "long_name": {"v": "velocity", "s": "velocity uncertainty"}[c[0]]
                + " "
                + {"e": "east", "n": "north", "u": "up"}[c[1]]
                + " (ITRF)",
            }
        ds["lon"].attrs = {"units": "degrees_east"}
        ds["lat"].attrs = {"units": "degrees_north"}
        ds["height"].attrs = {"units": "m"}
        ds = ds.assign_coords(station=ds["station"].values.astype(object))
        ds.attrs.update(
            {
                "quality_report": json.dumps(report),
                "n_stations": int(ds.sizes["station"]),
                "n_dropped_nan": int(report["n_nan"]),
                "n_dropped_duplicate": int(report["n_duplicate"]),
                "n_dropped_malformed": int(report["n_malformed"]),
                "n_dropped_nonpositive_sigma": int(report["n_nonpositive_sigma"]),
                "n_lon_normalised": int(report["n_lon_normalised"]),
                "n_outside_frames": len(outside),
            }
        )
        ds.attrs.update(_provenance(items))
        ctx.write("gnss", ds)

    def _ingest_gnss_series(self, ctx: Any, items: list[Any]) -> None:
        """The ``gnss_series`` dataset from one ``.tenv3`` file per item (module docstring)."""
        increment = _increment(ctx, "gnss_series", items)
        if increment is not None and not increment[1]:
            ctx.reuse("gnss_series")
            return
        source = ctx.config.sources.gnss_series
        start, end = parse_interval(
            (source.datetime if source is not None else None) or ctx.config.sources.datetime
        )
        lo = np.datetime64(start.replace(tzinfo=None), "ns") if start else None
        hi = np.datetime64(end.replace(tzinfo=None), "ns") if end else None
        stations: dict[str, xr.Dataset] = {}
        duplicates: list[str] = []
        empty: list[str] = []
        n_lon_normalised = 0
        n_bad_days = 0
        for href in _hrefs(items):
            one = _read_product(
                ctx.config,
                "gnss_series",
                [href],
                lambda options, href=href: read_tenv3(href, storage_options=options),
            )
            raw_lon = float(one.attrs.get("lon_as_written", one.attrs["lon"]))
            n_lon_normalised += int(not -180.0 <= raw_lon < 180.0)
            keep = np.isfinite(one["up"].values) & np.isfinite(one["east"].values)
            keep &= np.isfinite(one["north"].values) & (one["sigma_up"].values > 0)
            n_bad_days += int((~keep).sum())
            t = one["time"].values
            if lo is not None:
                keep &= t >= lo
            if hi is not None:
                keep &= t <= hi
            one = one.isel(time=np.flatnonzero(keep))
            name = str(one.attrs["station"])
            if one.sizes["time"] == 0:
                empty.append(name)
                continue
            if name in stations:
                duplicates.append(name)
                if one.sizes["time"] <= stations[name].sizes["time"]:
                    continue
            stations[name] = one
        if n_bad_days:
            log.warning(
                "gnss_series: %d day(s) with a non-finite position or sigma <= 0 dropped",
                n_bad_days,
            )
        if duplicates:
            log.warning(
                "gnss_series: station(s) given twice, the longer series kept: %s",
                ", ".join(sorted(set(duplicates))),
            )
        if empty:
            log.warning(
                "gnss_series: %d station(s) without a day in %s dropped: %s",
                len(empty),
                source.datetime if source and source.datetime else ctx.config.sources.datetime,
                ", ".join(empty[:10]) + (" ..." if len(empty) > 10 else ""),
            )
        boxes = _frame_boxes(ctx)
        outside = [
            name
            for name, one in stations.items()
            if boxes
            and not any(
                w <= one.attrs["lon"] <= e and s <= one.attrs["lat"] <= n for w, s, e, n in boxes
            )
        ]
        if outside:
            log.info(
                "gnss_series: %d station(s) outside every interferogram frame dropped (%s%s)",
                len(outside),
                ", ".join(outside[:10]),
                " ..." if len(outside) > 10 else "",
            )
        kept = {k: v for k, v in sorted(stations.items()) if k not in outside}
        if not kept:
            raise DataError(
                f"GNSS series source: none of its {len(items)} file(s) has a station with days "
                f"in the window inside the interferogram frames ({len(empty)} without days in "
                f"the window, {len(outside)} outside the frames); give .tenv3 files of stations "
                "inside the frames (sources.gnss_series)"
            )
        ds = self._series_cube(kept)
        ds.attrs.update(
            {
                "n_stations": int(ds.sizes["station"]),
                "n_dropped_duplicate": len(duplicates),
                "duplicate_stations": json.dumps(sorted(set(duplicates))),
                "n_dropped_no_days_in_window": len(empty),
                "no_days_in_window": json.dumps(empty),
                "n_outside_frames": len(outside),
                "outside_frames": json.dumps(outside),
                "n_days_dropped_invalid": n_bad_days,
                "n_lon_normalised": n_lon_normalised,
                "source": "NGL tenv3",
            }
        )
        ds.attrs.update(_provenance(items))
        ctx.write("gnss_series", ds)
        log.info(
            "gnss_series: %d station(s), %d day(s) (%s to %s)",
            ds.sizes["station"],
            ds.sizes["time"],
            str(ds["time"].values[0])[:10],
            str(ds["time"].values[-1])[:10],
        )

    @staticmethod
    def _series_cube(stations: dict[str, xr.Dataset]) -> xr.Dataset:
        """Stations' series on their union of days: dims ``(station, time)``, mm."""
        days = np.unique(np.concatenate([one["time"].values for one in stations.values()]))
        names = list(stations)
        data = {k: np.full((len(names), days.size), np.nan, np.float32) for k in _SERIES_VARS}
        for i, one in enumerate(stations.values()):
            at = np.searchsorted(days, one["time"].values)
            for k in ("east", "north", "up"):  # relative to the first day kept
                values = one[k].values
                data[k][i, at] = values - values[0]
            data["sigma_up"][i, at] = one["sigma_up"].values
        ds = xr.Dataset(
            {
                k: (("station", "time"), v, {"units": "mm", "long_name": _SERIES_VARS[k]})
                for k, v in data.items()
            },
            coords={
                "station": np.asarray(names, dtype=object),
                "time": days,
                "lon": (
                    "station",
                    [stations[n].attrs["lon"] for n in names],
                    {"units": "degrees_east"},
                ),
                "lat": (
                    "station",
                    [stations[n].attrs["lat"] for n in names],
                    {"units": "degrees_north"},
                ),
                "height": ("station", [stations[n].attrs["height"] for n in names], {"units": "m"}),
            },
        )
        return ds


#: variables of the ``gnss_series`` dataset and their long names (all mm)
_SERIES_VARS = {
    "east": "east position relative to the station's first day (ITRF)",
    "north": "north position relative to the station's first day (ITRF)",
    "up": "up position relative to the station's first day",
    "sigma_up": "up position uncertainty (1 sigma)",
}


def _frame_boxes(ctx: Any) -> list[tuple[float, float, float, float]]:
    """Lon/lat bbox of each ingested interferogram frame (the union of its items' ``bbox``)."""
    boxes = []
    for name in source_names(ctx.store):
        if not name.startswith("interferograms/"):
            continue
        bbs = [i.bbox for i in load_items(ctx.store, name) if i.bbox]
        if bbs:
            a = np.asarray(bbs, dtype=float)
            boxes.append((a[:, 0].min(), a[:, 1].min(), a[:, 2].max(), a[:, 3].max()))
    return boxes


STAGE = IngestStage()
