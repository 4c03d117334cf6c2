"""Hypothesis strategies for arrays with NaN, inf, empty and degenerate shapes.

Shared by the property tests of every kernel. Finite values are kept in a physical range (so a
property failure means a kernel mishandles a special value, not float overflow of absurd
inputs); special values are drawn on purpose: NaN, +inf, -inf, all-NaN arrays, zero-length
axes, constant arrays, single elements.

>>> from hypothesis import given
>>> @given(float_arrays(max_side=4))
... def check(a):
...     assert a.dtype == np.float64
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

__all__ = [
    "SPECIAL_VALUES",
    "float_arrays",
    "ifg_networks",
    "monthly_series",
    "pair_lists",
    "polylines",
    "shapes",
    "special_floats",
    "strata_codes",
]

#: Values every kernel must survive in its float inputs.
SPECIAL_VALUES = (np.nan, np.inf, -np.inf)


def special_floats(
    *, low: float = -1e4, high: float = 1e4, nan: bool = True, inf: bool = True
) -> st.SearchStrategy[float]:
    """Finite floats in [low, high], mixed with NaN (and +-inf) often enough to matter."""
    finite = st.floats(low, high, allow_nan=False, allow_infinity=False)
    specials = [np.nan] * nan + [np.inf, -np.inf] * inf
    if not specials:
        return finite
    return st.one_of(finite, finite, st.sampled_from(specials))


def shapes(
    *, min_dims: int = 1, max_dims: int = 2, min_side: int = 0, max_side: int = 6
) -> st.SearchStrategy[tuple[int, ...]]:
    """Array shapes including zero-length and length-one axes."""
    return hnp.array_shapes(
        min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side
    )


@st.composite
def float_arrays(
    draw: Any,
    shape: tuple[int, ...] | st.SearchStrategy[tuple[int, ...]] | None = None,
    *,
    max_side: int = 6,
    min_side: int = 0,
    max_dims: int = 2,
    nan: bool = True,
    inf: bool = True,
    low: float = -1e4,
    high: float = 1e4,
) -> np.ndarray:
    """A float64 array that may be empty, constant, all-NaN, or hold NaN/inf anywhere."""
    if shape is None:
        shape = shapes(max_dims=max_dims, min_side=min_side, max_side=max_side)
    if isinstance(shape, st.SearchStrategy):
        shape = draw(shape)
    kind = draw(st.sampled_from(["mixed", "mixed", "constant", "all_nan"]))
    if kind == "constant":
        return np.full(shape, draw(special_floats(low=low, high=high, nan=False, inf=False)))
    if kind == "all_nan" and nan:
        return np.full(shape, np.nan)
    return draw(
        hnp.arrays(np.float64, shape, elements=special_floats(low=low, high=high, nan=nan, inf=inf))
    )


@st.composite
def strata_codes(draw: Any, n: int, *, max_strata: int = 4) -> np.ndarray:
    """Integer stratum labels of ``n`` samples (possibly a single stratum)."""
    k = draw(st.integers(1, max_strata))
    return draw(hnp.arrays(np.int64, n, elements=st.integers(0, k - 1)))


@st.composite
def monthly_series(
    draw: Any, *, min_len: int = 0, max_len: int = 48, nan: bool = True, inf: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(values, decimal-year times) of a monthly series that may be empty or mostly NaN."""
    n = draw(st.integers(min_len, max_len))
    t = 2015.0 + (np.arange(n) + 0.5) / 12.0
    y = draw(float_arrays((n,), nan=nan, inf=inf, low=-500.0, high=500.0))
    return y, t


@st.composite
def ifg_networks(
    draw: Any, *, max_dates: int = 6, max_pixels: int = 5, inf: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unw_phase (n_pixel, n_pair), pairs (n_pair, 2), dates (n_date,)) of a small SBAS network.

    The network is a chain of consecutive dates plus random longer pairs, so it may be
    redundant; phases hold NaN (missing pairs, whole NaN pixels) and optionally inf.
    """
    n_date = draw(st.integers(2, max_dates))
    days = np.cumsum(draw(st.lists(st.integers(6, 48), min_size=n_date, max_size=n_date)))
    dates = np.datetime64("2016-01-01") + days.astype("timedelta64[D]")
    pairs = {(i, i + 1) for i in range(n_date - 1)}
    extra = draw(st.lists(st.tuples(st.integers(0, n_date - 1), st.integers(0, n_date - 1))))
    pairs |= {(min(a, b), max(a, b)) for a, b in extra if a != b}
    pairs_arr = np.array(sorted(pairs), dtype=np.int64)
    n_pixel = draw(st.integers(1, max_pixels))
    phase = draw(float_arrays((n_pixel, len(pairs_arr)), nan=True, inf=inf, low=-100.0, high=100.0))
    return phase, pairs_arr, dates


@st.composite
def pair_lists(draw: Any, n_date: int, *, max_pairs: int = 6) -> np.ndarray:
    """Pair index arrays (n_pair, 2) over ``n_date`` dates, valid most of the time.

    Mostly distinct pairs of distinct dates, in either order (a reversed row is legal); about
    one draw in five adds a degenerate row: a date paired with itself or a repeated pair.
    With fewer than 2 dates only the degenerate networks exist (empty, or self pairs).
    """
    options = [(a, b) for a in range(n_date) for b in range(n_date) if a < b]
    pairs: list[tuple[int, int]] = []
    if options:
        chosen = draw(
            st.lists(st.sampled_from(options), min_size=1, max_size=max_pairs, unique=True)
        )
        pairs = [(b, a) if draw(st.booleans()) else (a, b) for a, b in chosen]
    if n_date >= 1 and (not options or draw(st.integers(0, 4)) == 0):
        if pairs and draw(st.booleans()):
            pairs.append(pairs[0])  # a duplicate
        else:
            k = draw(st.integers(0, n_date - 1))
            pairs.append((k, k))  # a date with itself
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


@st.composite
def polylines(
    draw: Any,
    *,
    west: float = 114.0,
    north: float = 40.0,
    east: float = 117.0,
    south: float = 38.0,
    max_vertices: int = 4,
) -> np.ndarray:
    """A polyline (n_vertex, 2) of finite (lon, lat) vertices inside a box, possibly with
    vertices on cell edges (multiples of 0.5 deg) and repeated vertices."""
    n = draw(st.integers(2, max_vertices))
    # cells are half-open [west, east) x (south, north]: the outer east and south edges are
    # outside the grid, the inner edges (and west, north) are drawn on purpose
    on_edge_lon = st.sampled_from([float(v) for v in np.arange(west, east - 1e-9, 0.5)])
    on_edge_lat = st.sampled_from([float(v) for v in np.arange(north, south + 1e-9, -0.5)][:-1])
    lon = st.one_of(st.floats(west, east - 1e-3), on_edge_lon)
    lat = st.one_of(st.floats(south + 1e-3, north), on_edge_lat)
    pts = draw(st.lists(st.tuples(lon, lat), min_size=n, max_size=n))
    return np.array(pts, dtype=np.float64)
