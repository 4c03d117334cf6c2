"""Aggregate a fine raster into the cells of a coarser grid: median, mean or count per cell.

The geodetector takes one response value per factor cell (docs/science.md 7.2: one point per cell, the
median of the cell). Given, for every fine pixel, the row and column of the coarse cell holding it,
:func:`cell_reduce` returns the per-cell statistic on the coarse block. Pure numpy; the Dask layer
(:mod:`ncp_subsidence.stages.geodetector`) cuts the fine raster in blocks whose edges fall on
coarse-cell edges, so every cell is reduced inside one block and the result is exact.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ncp_subsidence.errors import DataError

__all__ = ["cell_of", "cell_reduce", "snap_bounds_out"]


def snap_bounds_out(
    bounds: tuple[float, float, float, float], res: float
) -> tuple[float, float, float, float]:
    """``(west, south, east, north)`` grown outward to the nearest multiples of ``res``.

    A 1e-9-cell tolerance keeps a bound already on a cell edge (up to rounding) where it is.
    Degrees in, degrees out (any unit, as long as both agree).
    """
    w, s, e, n = bounds
    return (
        float(np.floor(w / res + 1e-9) * res),
        float(np.floor(s / res + 1e-9) * res),
        float(np.ceil(e / res - 1e-9) * res),
        float(np.ceil(n / res - 1e-9) * res),
    )


def cell_of(coord: ArrayLike, edge0: float, step: float, n_cells: int) -> NDArray[np.int64]:
    """Index of the coarse cell holding each coordinate; -1 outside ``[0, n_cells)``.

    Parameters
    ----------
    coord : array_like of float, shape (n,)
        Pixel-centre coordinates (degrees).
    edge0 : float
        Outer edge of coarse cell 0 (degrees): the north edge for latitude rows of a north-up
        grid, the west edge for longitude columns.
    step : float
        Signed cell size along the axis: negative for north-up latitude rows (degrees).
    n_cells : int
        Number of coarse cells along the axis.

    Returns
    -------
    ndarray of int64, shape (n,)
    """
    if step == 0:
        raise DataError("cell_of: step must be non-zero")
    pos = (np.asarray(coord, dtype=np.float64) - edge0) / step
    # a centre lying (to rounding) on a cell edge goes to the cell after it
    idx = np.floor(pos + 1e-9).astype(np.int64)
    idx[(idx < 0) | (idx >= n_cells) | ~np.isfinite(pos)] = -1
    return idx


def cell_reduce(
    values: ArrayLike,
    rows: ArrayLike,
    cols: ArrayLike,
    shape: tuple[int, int],
    how: Literal["median", "mean", "count"] = "median",
) -> NDArray[np.float64]:
    """Median, mean or count of the finite values in each coarse cell.

    Parameters
    ----------
    values : array_like of float, shape (ny, nx)
        Fine raster (e.g. vertical velocity, mm/yr); NaN pixels are ignored.
    rows : array_like of int, shape (ny,)
        Coarse row of each fine row (-1: outside the coarse block).
    cols : array_like of int, shape (nx,)
        Coarse column of each fine column (-1: outside).
    shape : (int, int)
        Shape of the coarse block.
    how : {"median", "mean", "count"}
        Statistic; the median of an even count is the mean of the two middle values
        (``numpy.median``).

    Returns
    -------
    ndarray of float64, shape ``shape``
        NaN where a cell holds no finite value (0 for ``count``).
    """
    v = np.asarray(values, dtype=np.float64)
    r = np.asarray(rows, dtype=np.int64).ravel()
    c = np.asarray(cols, dtype=np.int64).ravel()
    if v.shape != (r.size, c.size):
        raise DataError(f"cell_reduce: values have shape {v.shape}, rows/cols {(r.size, c.size)}")
    ny, nx = int(shape[0]), int(shape[1])
    n = ny * nx
    ok_r = (r >= 0) & (r < ny)
    ok_c = (c >= 0) & (c < nx)
    key = (r[:, None] * nx + c[None, :]).ravel()
    ok = (ok_r[:, None] & ok_c[None, :]).ravel() & np.isfinite(v.ravel())
    key = key[ok]
    vv = v.ravel()[ok]
    count = np.bincount(key, minlength=n).astype(np.float64)
    if how == "count":
        return count.reshape(ny, nx)
    out = np.full(n, np.nan)
    has = count > 0
    if how == "mean":
        out[has] = np.bincount(key, weights=vv, minlength=n)[has] / count[has]
        return out.reshape(ny, nx)
    if how != "median":
        raise DataError(f"cell_reduce: unknown statistic {how!r}; use median, mean or count")
    if vv.size:
        order = np.lexsort((vv, key))
        sv, sk = vv[order], key[order]
        starts = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]])
        cnt = np.diff(np.r_[starts, sk.size])
        out[sk[starts]] = 0.5 * (sv[starts + (cnt - 1) // 2] + sv[starts + cnt // 2])
    return out.reshape(ny, nx)
