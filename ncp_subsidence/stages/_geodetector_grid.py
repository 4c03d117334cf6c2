"""Geodetector stage: the mosaic velocity on the factor grid, and the factor strata on the mosaic.

The mosaic is cut into blocks whose edges fall on factor-cell edges (:func:`cell_blocks`), so the
per-cell median (:func:`aggregate_to_factor_grid`) and the lookup of factor strata per pixel
(:func:`codes_on_mosaic`) are exact per block and memory is bounded by the block size. The
per-block work is :func:`~ncp_subsidence.kernels.aggregate.cell_reduce` (``map_blocks``).

Private to :mod:`ncp_subsidence.stages.geodetector` (which re-exports the public names).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeVar

import dask.array as da
import numpy as np
import xarray as xr

from ncp_subsidence.errors import DataError
from ncp_subsidence.kernels.aggregate import cell_of, cell_reduce

__all__ = [
    "CellBlocks",
    "aggregate_to_factor_grid",
    "aligned_mosaic",
    "cell_blocks",
    "codes_on_mosaic",
    "north_up",
]

T = TypeVar("T", xr.DataArray, xr.Dataset)


@dataclass(frozen=True)
class CellBlocks:
    """Blocks of a fine (mosaic) grid whose edges fall on the block edges of the factor grid.

    Fine block ``(i, j)`` holds exactly the pixels of factor block ``(i, j)`` (pixels outside the
    factor grid go to the first or last block and are marked missing), so a per-cell statistic
    or a lookup of factor codes needs only the pair of blocks with the same index.

    Attributes
    ----------
    fine_chunks : tuple of two tuples of int
        Chunks of the fine grid (rows, columns); some may be empty.
    coarse_chunks : tuple of two tuples of int
        Chunks of the factor grid: ``block`` cells per block side.
    geometry : tuple of float
        ``(lat0, dlat, lon0, dlon, north, west, res, ny, nx)``: first fine centre and signed
        fine steps; north and west edges, resolution and shape of the factor grid (degrees).
    """

    fine_chunks: tuple[tuple[int, ...], tuple[int, ...]]
    coarse_chunks: tuple[tuple[int, ...], tuple[int, ...]]
    geometry: tuple[float, ...]


def _step(coord: np.ndarray, name: str) -> float:
    if coord.size < 2:
        return 0.0
    d = np.diff(coord)
    if not np.allclose(d, d[0], rtol=1e-6, atol=1e-10):
        raise DataError(
            f"{name} is not regularly spaced (steps {d.min():g} to {d.max():g}); "
            "the geodetector needs regular EPSG:4326 grids"
        )
    return float(d[0])


def _chunks_along(n_coarse: int, block: int) -> tuple[int, ...]:
    return tuple(min(block, n_coarse - s) for s in range(0, n_coarse, block))


def cell_blocks(
    fine_lat: np.ndarray,
    fine_lon: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    block: int,
) -> CellBlocks:
    """Plan the cell-aligned blocking of a fine north-up grid onto a coarse north-up grid.

    Parameters
    ----------
    fine_lat, fine_lon : ndarray of float
        Cell centres of the fine grid (latitude descending, longitude ascending, regular).
    lat, lon : ndarray of float
        Cell centres of the factor grid (same orientation, regular, equal spacing in both).
    block : int
        Factor cells per block side.

    Returns
    -------
    CellBlocks
    """
    res = abs(_step(lon, "factor lon")) or abs(_step(lat, "factor lat"))
    if not res > 0:
        raise DataError("the factor grid needs at least two cells along one axis")
    north, west = float(lat[0]) + res / 2, float(lon[0]) - res / 2
    dlat, dlon = _step(fine_lat, "mosaic lat"), _step(fine_lon, "mosaic lon")
    if dlat > 0 or dlon < 0:
        raise DataError("cell_blocks needs a north-up fine grid (lat descending, lon ascending)")
    coarse = (_chunks_along(lat.size, block), _chunks_along(lon.size, block))
    fine = []
    for coord, edge0, step, chunks in (
        (fine_lat, north, -res, coarse[0]),
        (fine_lon, west, res, coarse[1]),
    ):
        pos = np.floor((coord - edge0) / step + 1e-9)  # monotone, unclipped
        starts = np.cumsum(chunks)[:-1]
        bounds = np.searchsorted(pos, starts, side="left")
        fine.append(tuple(int(b) for b in np.diff(np.r_[0, bounds, coord.size])))
    geometry = (
        float(fine_lat[0]),
        dlat,
        float(fine_lon[0]),
        dlon,
        north,
        west,
        res,
        float(lat.size),
        float(lon.size),
    )
    return CellBlocks((fine[0], fine[1]), coarse, geometry)


def _local_cells(
    geometry: tuple[float, ...], fine_loc, coarse_loc
) -> tuple[np.ndarray, np.ndarray]:
    lat0, dlat, lon0, dlon, north, west, res, ny, nx = geometry
    (r0, r1), (c0, c1) = fine_loc
    rows = cell_of(lat0 + dlat * np.arange(r0, r1), north, -res, int(ny))
    cols = cell_of(lon0 + dlon * np.arange(c0, c1), west, res, int(nx))
    (cr0, cr1), (cc0, cc1) = coarse_loc
    rows = np.where((rows >= cr0) & (rows < cr1), rows - cr0, -1)
    cols = np.where((cols >= cc0) & (cols < cc1), cols - cc0, -1)
    return rows, cols


def _aggregate_block(values, coarse, *, geometry, how, block_info=None):
    rows, cols = _local_cells(
        geometry, block_info[0]["array-location"], block_info[1]["array-location"]
    )
    return cell_reduce(values, rows, cols, coarse.shape, how).astype(np.float32)


def _expand_block(values, coarse_codes, *, geometry, block_info=None):
    rows, cols = _local_cells(
        geometry, block_info[0]["array-location"], block_info[1]["array-location"]
    )
    out = np.full(values.shape, -1, dtype=np.int16)
    rr, cc = rows >= 0, cols >= 0
    if rr.any() and cc.any():
        out[np.ix_(rr, cc)] = coarse_codes[np.ix_(rows[rr], cols[cc])]
    return out


def north_up(arr: T) -> T:
    """The array or dataset with latitude descending and longitude ascending (north-up)."""
    if arr.sizes["lat"] > 1 and arr["lat"].values[1] > arr["lat"].values[0]:
        arr = arr.isel(lat=slice(None, None, -1))
    if arr.sizes["lon"] > 1 and arr["lon"].values[1] < arr["lon"].values[0]:
        arr = arr.isel(lon=slice(None, None, -1))
    return arr


def aligned_mosaic(velocity: xr.DataArray, lat: np.ndarray, lon: np.ndarray, block: int):
    """The mosaic velocity (north-up) rechunked into blocks aligned with the factor grid.

    Returns
    -------
    velocity : dask.array.Array, shape (n_lat_fine, n_lon_fine)
    plan : CellBlocks
    """
    v = north_up(velocity.transpose("lat", "lon"))
    plan = cell_blocks(v["lat"].values, v["lon"].values, lat, lon, block)
    data = v.data if isinstance(v.data, da.Array) else da.from_array(v.values)
    return data.rechunk(plan.fine_chunks), plan


def aggregate_to_factor_grid(
    velocity: xr.DataArray,
    lat: np.ndarray,
    lon: np.ndarray,
    *,
    how: Literal["median", "mean", "centre"] = "median",
    block: int = 256,
) -> xr.DataArray:
    """Vertical velocity on the factor grid, lazily (docs/science.md 7.2: one point per cell).

    Parameters
    ----------
    velocity : xarray.DataArray, dims (lat, lon)
        Mosaic vertical velocity, mm/yr, on a regular grid (possibly finer than the factor grid).
    lat, lon : ndarray of float
        Factor-grid cell centres (north-up).
    how : {"median", "mean", "centre"}
        Median or mean of the mosaic pixels inside each factor cell (NaN ignored), or the
        pixel nearest the cell centre (within half a factor cell).
    block : int
        Factor cells per block side: each block of the result is computed from the mosaic pixels
        of that block only, so memory is bounded by the block size.

    Returns
    -------
    xarray.DataArray of float32, dims (lat, lon), dask-backed
    """
    if how == "centre":
        res = abs(float(lon[1] - lon[0])) if lon.size > 1 else abs(float(lat[1] - lat[0]))
        out = (
            north_up(velocity.transpose("lat", "lon"))
            .reindex(lat=lat, lon=lon, method="nearest", tolerance=res / 2)
            .astype("float32")
            .chunk({"lat": block, "lon": block})
        )
        return out.drop_vars([c for c in out.coords if c not in ("lat", "lon")])
    data, plan = aligned_mosaic(velocity, lat, lon, block)
    template = da.empty((lat.size, lon.size), chunks=plan.coarse_chunks, dtype=np.float32)
    cells = da.map_blocks(
        _aggregate_block,
        data,
        template,
        geometry=plan.geometry,
        how=how,
        chunks=plan.coarse_chunks,
        dtype=np.float32,
        meta=np.empty((0, 0), dtype=np.float32),
        token=f"geodetector-cell-{how}",
    )
    return xr.DataArray(cells, dims=("lat", "lon"), coords={"lat": lat, "lon": lon})


def codes_on_mosaic(data: da.Array, plan: CellBlocks, codes: np.ndarray) -> da.Array:
    """Factor-cell codes spread onto the mosaic pixels each cell holds (-1 outside), lazily.

    Parameters
    ----------
    data : dask.array.Array
        Aligned mosaic velocity (:func:`aligned_mosaic`); only its blocks' locations are used.
    plan : CellBlocks
    codes : ndarray of int, shape (n_lat, n_lon)
        Stratum codes on the factor grid.

    Returns
    -------
    dask.array.Array of int16, chunked like ``data``
    """
    coarse = da.from_array(np.asarray(codes, dtype=np.int16), chunks=plan.coarse_chunks)
    return da.map_blocks(
        _expand_block,
        data,
        coarse,
        geometry=plan.geometry,
        chunks=data.chunks,
        dtype=np.int16,
        meta=np.empty((0, 0), dtype=np.int16),
        token="geodetector-codes",
    )
