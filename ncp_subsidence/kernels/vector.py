"""Vector-to-grid kernels: fault length per cell (the "fault scale index" of Huang et al. 2025).

Pure numpy. Lines are lists of (lon, lat) vertices in degrees; grids are north-up, cell-registered.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence

import numpy as np

from ncp_subsidence.errors import DataWarning

__all__ = ["line_length_per_cell"]

_EARTH_RADIUS_KM = 6371.0071810  # authalic sphere, as for cell areas (docs/science.md 8.2)


def line_length_per_cell(
    lines: Sequence[np.ndarray],
    west: float,
    north: float,
    resolution: float,
    shape: tuple[int, int],
) -> np.ndarray:
    """Length of line features inside each grid cell, km.

    Each segment is cut exactly at every cell boundary it crosses (the crossing parameters of
    the meridians and parallels between its ends), and each piece's great-circle length is
    added to the cell holding its midpoint; nothing is sampled, so the total equals the lines'
    length inside the grid.

    A vertex with a NaN or infinite coordinate is a gap in its line: the segments that end at it
    (one or two) have no length and add nothing, the rest of the line still counts, as if the
    line were split there. The segments so dropped are counted in one
    :class:`~ncp_subsidence.errors.DataWarning` per call, which names the lines that hold them.

    Parameters
    ----------
    lines : sequence of ndarray, each shape (n_vertex, 2)
        Polylines as (lon, lat) in degrees.
    west, north : float
        Outer edges of the grid, degrees.
    resolution : float
        Cell size, degrees.
    shape : (int, int)
        Grid rows (north to south) and columns (west to east).

    Returns
    -------
    ndarray, shape ``shape``, float64
        Line length per cell, km.

    Warns
    -----
    DataWarning
        When segments with a non-finite vertex were left out: how many, and in which lines.

    References
    ----------
    Huang et al. 2025, Table 1 ("fault scale index": length of fault lines per 1 km cell).
    """
    ny, nx = shape
    out = np.zeros(ny * nx)
    dropped: dict[int, int] = {}  # line index -> segments left out (a non-finite vertex)
    for index, line in enumerate(lines):
        pts = np.asarray(line, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[0] < 2:
            continue
        finite = np.isfinite(pts).all(axis=1)
        keep = finite[:-1] & finite[1:]
        if not keep.all():
            dropped[index] = int((~keep).sum())
        for (x0, y0), (x1, y1) in itertools.compress(itertools.pairwise(pts), keep):
            cut = [0.0, 1.0]
            # parameters where the segment crosses cell edges (columns and rows)
            for a, b, origin, step in ((x0, x1, west, resolution), (y0, y1, north, -resolution)):
                if a != b:
                    k0, k1 = sorted(((a - origin) / step, (b - origin) / step))
                    ks = np.arange(np.ceil(k0), np.floor(k1) + 1)
                    cut.extend(((origin + ks * step) - a) / (b - a))
            t = np.unique(np.clip(cut, 0.0, 1.0))
            lon = x0 + t * (x1 - x0)
            lat = y0 + t * (y1 - y0)
            piece = _great_circle_km(lon[:-1], lat[:-1], lon[1:], lat[1:])
            mid_lon = 0.5 * (lon[:-1] + lon[1:])
            mid_lat = 0.5 * (lat[:-1] + lat[1:])
            col = np.floor((mid_lon - west) / resolution).astype(np.int64)
            row = np.floor((north - mid_lat) / resolution).astype(np.int64)
            inside = (row >= 0) & (row < ny) & (col >= 0) & (col < nx)
            out += np.bincount(
                row[inside] * nx + col[inside], weights=piece[inside], minlength=ny * nx
            )
    if dropped:
        listed = ", ".join(f"{i}: {n}" for i, n in list(dropped.items())[:10])
        more = f", and {len(dropped) - 10} more lines" if len(dropped) > 10 else ""
        warnings.warn(
            f"line_length_per_cell: {sum(dropped.values())} segment(s) touch a NaN or infinite "
            f"vertex and add no length (segments by line index: {listed}{more}); the rest of "
            "each line counts. Remove or repair those vertices, or split the lines there.",
            DataWarning,
            stacklevel=2,
        )
    return out.reshape(ny, nx)


def _great_circle_km(
    lon1: np.ndarray, lat1: np.ndarray, lon2: np.ndarray, lat2: np.ndarray
) -> np.ndarray:
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(lon2 - lon1)
    h = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * _EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))
