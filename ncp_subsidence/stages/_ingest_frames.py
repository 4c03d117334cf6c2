"""Ingest of the interferograms: the ``ifg/<frame>`` cubes, written whole or appended to.

The provider's adapter turns each frame's files into the canonical schema; pairs share one
frame grid; new pairs are appended along ``pair`` (the ``ingest`` module docstring).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from ..errors import DataError
from ..io.cube import SCHEMAS, with_crs
from ..io.products import ifg_adapter
from ..io.readers import Grid, frame_grid, open_headers, raster_block, read_ifg_stack, unique_pairs
from ..io.stac import item_interval, items_digest
from ._ingest_items import _increment, _provenance

log = logging.getLogger("ncp_subsidence.stages.ingest")


def spatial_chunks(
    n_pair: int, options: Any, itemsize: int = 4, block: tuple[int, int] | None = None
) -> tuple[int, int]:
    """Spatial chunk (y, x) of a (pair, y, x) cube: the configured one, or square chunks holding
    about ``chunk_mb`` MB with the whole pair axis (a multiple of 16, between 64 and 2048).

    With ``block``, the files' square internal tiles (rows, columns), a sized side is rounded
    to the nearest whole number of tiles, so each window reads whole tiles instead of decoding
    the tiles it cuts several times, unless that makes it more than 25 % longer (a side below
    0.8 tile stays as sized: memory follows ``chunk_mb``); strips and tiles larger than 2048
    are left alone.
    """
    side = int((options.chunk_mb * 2**20 / (itemsize * max(n_pair, 1))) ** 0.5) // 16 * 16
    side = min(2048, max(64, side))
    if block is not None and block[0] == block[1] and 16 <= block[0] <= 2048:
        tiles = max(1, round(side / block[0])) * block[0]
        if tiles <= 1.25 * side:
            side = tiles
    return options.chunk_y or side, options.chunk_x or side


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


def _frame_assets(ctx: Any, frame: str, adapter: Any) -> list[str]:
    """Phase (and coherence) asset keys: the source's ``assets``, else the adapter's."""
    source = ctx.config.sources.interferograms.get(frame)
    if source and source.assets:
        return list(source.assets)
    return [adapter.phase_asset, adapter.coherence_asset]


def _file_block(ctx: Any, frame: str, items: list[Any], adapter: Any) -> tuple[int, int] | None:
    """The internal block of the frame's first phase file (:func:`raster_block`)."""
    key = _frame_assets(ctx, frame, adapter)[0]
    asset = items[0].assets.get(key) if items else None
    if asset is None:
        return None
    source = ctx.config.sources.interferograms.get(frame)
    return raster_block(
        asset.get_absolute_href() or asset.href,
        headers=source.headers if source is not None else None,
        retries=ctx.config.sources.retries,
    )


def read_options(ctx: Any, frame: str, adapter: Any) -> str:
    """What shapes the frame besides the ingest options: the format and the assets read."""
    return json.dumps({"format": adapter.name, "assets": _frame_assets(ctx, frame, adapter)})


def _read_frame(
    ctx: Any,
    frame: str,
    items: list[Any],
    opts: Any,
    chunks: tuple[int, int],
    adapter: Any,
    grid: Grid,
    opened: Any = None,
) -> tuple[xr.Dataset, Any]:
    assets = _frame_assets(ctx, frame, adapter)
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
        opened=opened,
    )
    ds = ds.assign_coords(item_id=("pair", ds["item_id"].values.astype(object)))
    return ds, failures


def _chunk_data(ds: xr.Dataset, chunks: tuple[int, int]) -> xr.Dataset:
    """The data variables in Zarr chunks (pair whole, ``chunks`` in y, x). The coordinates and
    the variables already in memory (the geometry) stay in memory and are written with the
    template, in those chunks: as dask arrays they would travel to the cluster inside the
    write's graph (19 MB for a 1500 x 800 frame's geometry)."""
    sizes = {"pair": -1, "y": chunks[0], "x": chunks[1]}
    out = {}
    for name, var in ds.data_vars.items():
        want = {d: sizes[d] for d in var.dims if d in sizes}
        if var.chunks is None:
            var = var.copy(deep=False)
            var.encoding = {
                **var.encoding,
                "chunks": tuple(
                    n if want.get(d, -1) <= 0 else min(want[d], n) for d, n in var.sizes.items()
                ),
            }
            out[name] = var
        else:
            out[name] = var.chunk(want)
    return ds.assign(out)


def write_frame(
    ctx: Any,
    frame: str,
    items: list[Any],
    duplicates: list[Any],
    opts: Any,
    adapter: Any,
    opened: Any = None,
) -> None:
    grid = frame_grid(items, opts.frame_grid)
    chunks = spatial_chunks(len(items), opts, block=_file_block(ctx, frame, items, adapter))
    ds, failures = _read_frame(ctx, frame, items, opts, chunks, adapter, grid, opened)
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
            **_provenance(items, read_options(ctx, frame, adapter)),
        }
    )
    for key in ("sat:relative_orbit", "sat:orbit_state", "twin:heading"):
        if key in items[0].properties:
            ds.attrs[key.replace(":", "_")] = items[0].properties[key]
    ds = with_crs(ds, grid.crs)
    ds.attrs["crs"] = grid.crs  # rioxarray's write_crs drops a "crs" attribute
    ds = _chunk_data(ds, chunks)
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


def append_frame(
    ctx: Any,
    frame: str,
    previous: xr.Dataset,
    items: list[Any],
    added: list[Any],
    opts: Any,
    adapter: Any,
    opened: Any = None,
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
    ds, failures = _read_frame(ctx, frame, added, opts, chunks, adapter, grid, opened)
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
    ds = _chunk_data(with_crs(ds, grid.crs), chunks)
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


@dataclass(frozen=True)
class FramePlan:
    """What the ingest of one frame will do, decided once (on the headers' thread, ahead).

    ``items``: the frame's items in pair order, each pair once; ``duplicates``: the repeats
    skipped; ``adapter``: the provider adapter; ``increment``: :func:`~._ingest_items._increment`'s
    answer for the frame's reading options (None: written whole; ``(previous, added)``: appended
    to, or reused when ``added`` is empty).
    """

    items: list[Any]
    duplicates: list[Any]
    adapter: Any
    increment: tuple[Any, list[Any]] | None


def plan_frame(ctx: Any, frame: str, items: list[Any], duplicates: list[Any]) -> FramePlan:
    """The :class:`FramePlan` of ``frame`` from its unique ``items`` (pair order)."""
    adapter = _frame_adapter(ctx, frame, items)
    increment = _increment(ctx, f"ifg/{frame}", items, read_options(ctx, frame, adapter))
    return FramePlan(items, duplicates, adapter, increment)


def open_frame_headers(
    ctx: Any, frame: str, items: list[Any], stop: Any = None
) -> tuple[FramePlan | None, dict[str, Any]]:
    """The frame's :class:`FramePlan` and the headers of the files its ingest will open, opened
    ahead (:func:`~ncp_subsidence.io.readers.open_headers`; the stage does it for the next
    frame while the cluster writes the current one): every pair's for a frame written whole,
    the new pairs' for one appended to, none for one reused. A plan that fails (a bad catalog,
    an unknown format) gives ``(None, {})``: the frame's own ingest plans again, in its order,
    and raises it; headers that fail give none."""
    try:
        plan = plan_frame(ctx, frame, *unique_pairs(sorted(items, key=pair_order)))
    except Exception:  # noqa: BLE001 -- raised again, in order, by the frame's own ingest
        return None, {}
    try:
        wanted = plan.items if plan.increment is None else plan.increment[1]
        source = ctx.config.sources.interferograms.get(frame)
        return plan, open_headers(
            wanted,
            _frame_assets(ctx, frame, plan.adapter)[:2],
            retries=ctx.config.sources.retries,
            headers=source.headers if source is not None else None,
            stop=stop,
        )
    except Exception:  # noqa: BLE001 -- each file is opened again by the frame's reads
        return plan, {}
