"""Region and wide-area statistics kernels: cell areas, areas, volumes, yearly rates, lags.

Pure numpy/scipy on plain arrays, core dims last (``(..., lat, lon)`` for maps,
``(..., n_time)`` for series). Nothing here reads a store or builds a dask graph: the stage
:mod:`ncp_subsidence.stages.analysis` maps :func:`wide_area_partials` over chunks and folds the
results with :func:`combine_partials` (exact and associative: sums, maxima and a merge of the
largest values) before :func:`finalize_partials` turns them into numbers. The same three
functions on one whole-array "chunk" give the same answer, which the tests check.

Conventions (docs/science.md): vertical positive up, so subsidence is a negative velocity or
displacement; "subsiding faster than tau" means ``v < -tau``. Areas in m2 on the authalic sphere
``R = 6371007.181 m``; volumes in m3 (``1 km3 = 1e9 m3 = one billion m3``); displacements in mm,
velocities in mm/yr, times in decimal years.

References
----------
Mi J, Wu Z, Wang X, Bai L, Li Z, Lu Z. 2026. Mapping wide-area land subsidence from groundwater
use in the North China plain by machine learning-based InSAR adjustment. Remote Sens. Environ.,
doi:10.1016/j.rse.2025.115226 (area above 20 mm/yr, yearly mean velocity, cumulative subsidence,
groundwater loss).
Huang ZH, Huo ZB, et al. 2025. J. Groundwater Sci. Eng. 13(1):74-89 (region series, GWSA vs
deformation lags).
Bretherton CS, Widmann M, Dymnikov VP, Wallace JM, Blade I. 1999. The effective number of
spatial degrees of freedom of a time-varying field. J. Climate 12(7):1990-2009.
Riley FS. 1969. Analysis of borehole extensometer data from central California. IASH Publ. 89.
Galloway DL, Burbey TJ. 2011. Review: regional land subsidence accompanying groundwater
extraction. Hydrogeol. J. 19:1459-1486.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from scipy import stats

from .downscale import EARTH_RADIUS_M, cell_area_m2, spherical_cell_area_m2
from .trends import harmonic_design

__all__ = [
    "EARTH_RADIUS_M",
    "Detrend",
    "centred_moving_average",
    "combine_partials",
    "cumulative_top_k",
    "epoch_index",
    "finalize_partials",
    "grid_cell_area_m2",
    "lagged_cross_correlation",
    "polygon_mask",
    "preprocess_series",
    "region_cell_weights",
    "region_mean",
    "seasonal_component",
    "spherical_cell_area_m2",
    "wide_area_partials",
    "yearly_velocity",
]

Detrend = Literal["none", "linear", "moving_average", "seasonal", "diff"]

# --------------------------------------------------------------------------------------------
# Cell areas and region masks (the cell-area formula itself is
# :func:`ncp_subsidence.kernels.downscale.spherical_cell_area_m2`, re-exported here)
# --------------------------------------------------------------------------------------------


def _step(coord: np.ndarray, name: str) -> float:
    coord = np.asarray(coord, dtype=np.float64)
    if coord.size < 2:
        raise ValueError(f"{name} needs at least 2 cell centres to infer the cell size")
    steps = np.diff(coord)
    step = float(np.median(np.abs(steps)))
    if not np.allclose(np.abs(steps), step, rtol=1e-6, atol=1e-9):
        raise ValueError(
            f"{name} is not a regular grid (steps {np.abs(steps).min()}..{np.abs(steps).max()} deg); "
            "cell areas need cell-registered regular coordinates"
        )
    return step


def grid_cell_area_m2(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Areas of the cells of a regular, cell-registered latitude-longitude grid.

    Parameters
    ----------
    lat : ndarray, shape (ny,), cell-centre latitudes, degrees (either order)
    lon : ndarray, shape (nx,), cell-centre longitudes, degrees

    Returns
    -------
    ndarray, shape (ny, 1), m2
        Broadcasts against ``(..., ny, nx)`` maps (every cell of a row has the same area).
    """
    dlat, dlon = _step(lat, "lat"), _step(lon, "lon")
    return cell_area_m2(np.asarray(lat, dtype=np.float64), dlat, dlon)[:, None]


def _rings_of(geometry: Mapping[str, Any]) -> list[np.ndarray]:
    kind = geometry.get("type")
    if kind == "Polygon":
        polygons = [geometry["coordinates"]]
    elif kind == "MultiPolygon":
        polygons = geometry["coordinates"]
    else:
        raise ValueError(f"region geometry must be a Polygon or MultiPolygon, got {kind!r}")
    return [np.asarray(ring, dtype=np.float64)[:, :2] for poly in polygons for ring in poly]


def polygon_mask(lon: np.ndarray, lat: np.ndarray, geometry: Mapping[str, Any]) -> np.ndarray:
    """Cells whose centre lies inside a GeoJSON (Multi)Polygon (even-odd rule, holes honoured).

    Parameters
    ----------
    lon : ndarray, shape (nx,), cell-centre longitudes, degrees
    lat : ndarray, shape (ny,), cell-centre latitudes, degrees
    geometry : mapping
        A GeoJSON ``Polygon`` or ``MultiPolygon`` geometry in EPSG:4326.

    Returns
    -------
    ndarray of bool, shape (ny, nx)

    Notes
    -----
    Ray casting along +lon from each centre, one vectorised pass per polygon edge; an edge's
    lower end counts as crossing and its upper end does not, so a centre on a shared vertex is
    counted once. Holes and the parts of a MultiPolygon toggle the same parity.
    """
    x = np.asarray(lon, dtype=np.float64)[None, :]
    y = np.asarray(lat, dtype=np.float64)[:, None]
    inside = np.zeros((y.shape[0], x.shape[1]), dtype=bool)
    for ring in _rings_of(geometry):
        xa, ya = ring[:-1, 0], ring[:-1, 1]
        xb, yb = ring[1:, 0], ring[1:, 1]
        for x1, y1, x2, y2 in zip(xa, ya, xb, yb):
            if y1 == y2:
                continue
            straddles = (y1 <= y) != (y2 <= y)  # (ny, 1)
            if not straddles.any():
                continue
            x_cross = x1 + (y - y1) * (x2 - x1) / (y2 - y1)  # (ny, 1)
            inside ^= straddles & (x < x_cross)
    return inside


def region_cell_weights(
    lat: np.ndarray,
    lon: np.ndarray,
    geometries: Sequence[Mapping[str, Any] | None],
    dlat: float,
    dlon: float,
) -> np.ndarray:
    """Cell area (m2) inside each region, 0 outside, for one block of a grid.

    Parameters
    ----------
    lat : ndarray, shape (ny,), cell-centre latitudes, degrees
    lon : ndarray, shape (nx,), cell-centre longitudes, degrees
    geometries : sequence of GeoJSON (Multi)Polygon geometries, or None for the whole grid
    dlat, dlon : float, cell sizes in degrees

    Returns
    -------
    ndarray, shape (n_regions, ny, nx), m2
    """
    area = cell_area_m2(lat, dlat, dlon)[:, None] * np.ones((1, lon.size))
    out = np.empty((len(geometries), lat.size, lon.size))
    for i, geometry in enumerate(geometries):
        mask = np.ones(area.shape, bool) if geometry is None else polygon_mask(lon, lat, geometry)
        out[i] = np.where(mask, area, 0.0)
    return out


def region_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Area-weighted mean of maps over a region, skipping NaN cells.

    Parameters
    ----------
    values : ndarray, shape (..., ny, nx)
        E.g. GWSA (time, lat, lon) in mm.
    weights : ndarray, shape (ny, nx) or broadcastable
        Cell area times the region mask (0 outside), m2.

    Returns
    -------
    ndarray, shape (...)
        ``sum(w y) / sum(w)`` over the region's finite cells; NaN where none is finite.
    """
    values = np.asarray(values, dtype=np.float64)
    w = np.broadcast_to(np.asarray(weights, dtype=np.float64), values.shape)
    ok = np.isfinite(values) & (w > 0)
    num = np.where(ok, values * w, 0.0).sum(axis=(-2, -1))
    den = np.where(ok, w, 0.0).sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


# --------------------------------------------------------------------------------------------
# Per-pixel temporal pieces
# --------------------------------------------------------------------------------------------


def yearly_velocity(
    displacement: np.ndarray, t: np.ndarray, years: Sequence[int], *, min_months: int = 6
) -> np.ndarray:
    """Per-pixel OLS velocity within each calendar year (docs/science.md 8.3, annual velocity).

    Parameters
    ----------
    displacement : ndarray, shape (..., n_time), mm, positive up
    t : ndarray, shape (n_time,), decimal years
    years : sequence of int, length n_year
    min_months : int
        A pixel-year with fewer finite values gives NaN.

    Returns
    -------
    ndarray, shape (n_year, ...), mm/yr
        Slope of ``d`` against ``t`` over the epochs with ``year <= t < year + 1``.
    """
    d = np.asarray(displacement, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    out = np.full((len(years), *d.shape[:-1]), np.nan)
    for i, year in enumerate(years):
        sel = (t >= year) & (t < year + 1)
        if sel.sum() < max(min_months, 2):
            continue
        y = d[..., sel]
        ok = np.isfinite(y)
        n = ok.sum(axis=-1)
        tt = np.where(ok, t[sel], 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            tm = tt.sum(axis=-1) / n
            ym = np.where(ok, y, 0.0).sum(axis=-1) / n
            dt = np.where(ok, t[sel] - tm[..., None], 0.0)
            sxy = (dt * np.where(ok, y - ym[..., None], 0.0)).sum(axis=-1)
            sxx = (dt * dt).sum(axis=-1)
            out[i] = np.where((n >= min_months) & (sxx > 0), sxy / sxx, np.nan)
    return out


def seasonal_component(displacement: np.ndarray, t: np.ndarray, n_harmonics: int = 2) -> np.ndarray:
    """The fitted annual + semi-annual part of each series (trend and offset excluded).

    Fits ``a + b t + sum_k c_k cos(2 pi k t) + s_k sin(2 pi k t)`` by least squares on each
    series' finite values (docs/science.md 6.2) and returns only the harmonic terms, so
    ``d - seasonal_component(d)`` is the interannual (trend) component used for the
    permanent, inelastic groundwater loss (docs/science.md 8.3; Smith et al. 2017).

    Parameters
    ----------
    displacement : ndarray, shape (..., n_time), mm
    t : ndarray, shape (n_time,), decimal years
    n_harmonics : int

    Returns
    -------
    ndarray, shape (..., n_time), mm; zero for series with too few finite values
    """
    d = np.asarray(displacement, dtype=np.float64)
    design = harmonic_design(np.asarray(t, dtype=np.float64), n_harmonics=n_harmonics)
    n, p = design.shape
    d2 = d.reshape(-1, n)
    ok = np.isfinite(d2)
    coef = np.zeros((d2.shape[0], p))
    patterns, inverse = np.unique(ok, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    for k, pattern in enumerate(patterns):
        if pattern.sum() <= p:
            continue
        rows = inverse == k
        sol, *_ = np.linalg.lstsq(design[pattern], d2[rows][:, pattern].T, rcond=None)
        coef[rows] = sol.T
    seasonal = coef[:, 2:] @ design[:, 2:].T
    return seasonal.reshape(d.shape)


# --------------------------------------------------------------------------------------------
# Wide-area statistics: chunk -> combine -> finalize
# --------------------------------------------------------------------------------------------

_SUM_KEYS = (
    "area_total",
    "area_valid",
    "area_above",
    "n_valid",
    "year_sum_omega",
    "year_area_omega",
    "year_sum_all",
    "year_area_all",
    "volume",
    "volume_net",
    "volume_trend",
    "volume_area",
    "cumulative_n",
)


def epoch_index(months: np.ndarray, epoch: str) -> tuple[int, bool]:
    """Index of month ``epoch`` (``YYYY-MM``) in ``months``; clamped to the window.

    Returns
    -------
    (int, bool)
        The index and whether it was clamped (the requested month lies outside the series:
        docs/science.md 8.5, the common window is used and reported).
    """
    want = np.datetime64(epoch, "M")
    months = np.asarray(months, dtype="datetime64[M]")
    hit = np.flatnonzero(months == want)
    if hit.size:
        return int(hit[0]), False
    if want < months[0]:
        return 0, True
    if want > months[-1]:
        return months.size - 1, True
    return int(np.argmin(np.abs((months - want).astype(np.int64)))), True


def cumulative_top_k(n_cells: int, q: float = 99.9) -> int:
    """How many of the largest values fix the ``q``-th percentile of at most ``n_cells`` values.

    numpy's default (linear) percentile of ``n`` values interpolates the sorted values at
    ranks ``floor(h)`` and ``ceil(h)``, ``h = (n - 1) q / 100``; both lie within the largest
    ``ceil((1 - q / 100) n) + 2`` values for every ``n <= n_cells``.
    """
    return int(np.ceil((1.0 - q / 100.0) * max(n_cells, 1))) + 2


def wide_area_partials(
    velocity: np.ndarray,
    displacement: np.ndarray,
    area: np.ndarray,
    *,
    t: np.ndarray,
    threshold: float,
    years: Sequence[int],
    epoch_pairs: Sequence[tuple[int, int]],
    cumulative_epochs: tuple[int, int],
    top_k: int,
    domain: np.ndarray | None = None,
    trend_only: bool = True,
    min_months: int = 6,
) -> dict[str, np.ndarray]:
    """Partial sums of one chunk for the wide-area statistics (docs/science.md 8.3).

    Parameters
    ----------
    velocity : ndarray, shape (ny, nx), mm/yr, positive up
        Full-period vertical velocity; NaN = no valid InSAR.
    displacement : ndarray, shape (ny, nx, n_time), mm, positive up
        Monthly vertical displacement, time last (the whole time axis in the chunk).
    area : ndarray, shape (ny, 1) or (ny, nx), m2
        Cell areas (:func:`grid_cell_area_m2`).
    t : ndarray, shape (n_time,), decimal years
    threshold : float, mm/yr
        tau; a cell subsides "faster than tau" when ``velocity < -tau``.
    years : sequence of int
        Calendar years of the yearly mean velocity.
    epoch_pairs : sequence of (int, int)
        Time indices ``(a, b)`` of each volume ``V(t_a, t_b)``.
    cumulative_epochs : (int, int)
        Time indices ``(t_0, t_end)`` of the cumulative subsidence.
    top_k : int
        Largest cumulative subsidence values kept (:func:`cumulative_top_k`).
    domain : ndarray of bool, shape (ny, nx), optional
        The NCP mask; cells outside are ignored (default: every cell).
    trend_only : bool
        Also accumulate the volume of the trend component (seasonal harmonics removed).
    min_months : int
        Finite months a pixel-year needs for its yearly velocity.

    Returns
    -------
    dict of ndarray
        Sums (``area_*`` m2, ``volume*`` m3, ``year_sum_*`` mm/yr m2, ``year_area_*`` m2),
        ``cumulative_max`` (mm of subsidence, positive down) and ``cumulative_top`` (the
        ``top_k`` largest subsidence values, ascending, NaN-padded). Fold with
        :func:`combine_partials`, finish with :func:`finalize_partials`.
    """
    v = np.asarray(velocity, dtype=np.float64)
    d = np.asarray(displacement, dtype=np.float64)
    a = np.broadcast_to(np.asarray(area, dtype=np.float64), v.shape)
    inside = np.ones(v.shape, dtype=bool) if domain is None else np.asarray(domain, dtype=bool)
    valid = inside & np.isfinite(v)
    omega = valid & (v < -threshold)
    out: dict[str, np.ndarray] = {
        "area_total": np.float64(np.where(inside, a, 0.0).sum()),
        "area_valid": np.float64(np.where(valid, a, 0.0).sum()),
        "area_above": np.float64(np.where(omega, a, 0.0).sum()),
        "n_valid": np.float64(valid.sum()),
    }
    vy = yearly_velocity(d, t, years, min_months=min_months)  # (n_year, ny, nx)
    fy = np.isfinite(vy)
    out["year_sum_omega"] = np.where(fy & omega, vy * a, 0.0).sum(axis=(-2, -1))
    out["year_area_omega"] = np.where(fy & omega, a, 0.0).sum(axis=(-2, -1))
    out["year_sum_all"] = np.where(fy & valid, vy * a, 0.0).sum(axis=(-2, -1))
    out["year_area_all"] = np.where(fy & valid, a, 0.0).sum(axis=(-2, -1))

    dtrend = d - seasonal_component(d, t) if trend_only else None
    vol, net, vtr, varea = [], [], [], []
    for ia, ib in epoch_pairs:
        change = d[..., ib] - d[..., ia]  # mm, positive up
        ok = inside & np.isfinite(change)
        sink = np.where(ok, np.maximum(0.0, -change), 0.0)
        vol.append((sink * a).sum() * 1e-3)
        net.append((np.where(ok, -change, 0.0) * a).sum() * 1e-3)
        varea.append(np.where(ok, a, 0.0).sum())
        if dtrend is not None:
            ct = dtrend[..., ib] - dtrend[..., ia]
            okt = inside & np.isfinite(ct)
            vtr.append((np.where(okt, np.maximum(0.0, -ct), 0.0) * a).sum() * 1e-3)
        else:
            vtr.append(np.nan)
    out["volume"] = np.asarray(vol, dtype=np.float64)
    out["volume_net"] = np.asarray(net, dtype=np.float64)
    out["volume_trend"] = np.asarray(vtr, dtype=np.float64)
    out["volume_area"] = np.asarray(varea, dtype=np.float64)

    i0, i1 = cumulative_epochs
    sub = -(d[..., i1] - d[..., i0])  # subsidence positive
    sub = sub[inside & np.isfinite(sub)]
    out["cumulative_n"] = np.float64(sub.size)
    out["cumulative_max"] = np.float64(sub.max()) if sub.size else np.float64(np.nan)
    out["cumulative_top"] = _top(sub, top_k)
    return out


def _top(values: np.ndarray, k: int) -> np.ndarray:
    values = values[np.isfinite(values)]
    top = np.sort(values)[-k:] if values.size > k else np.sort(values)
    return np.concatenate([np.full(k - top.size, np.nan), top])


def combine_partials(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Fold two partials of :func:`wide_area_partials` (exact and associative).

    Sums add, ``cumulative_max`` takes the larger (NaN-aware) and ``cumulative_top`` keeps the
    ``top_k`` largest of both lists.
    """
    out: dict[str, Any] = {k: np.asarray(a[k]) + np.asarray(b[k]) for k in _SUM_KEYS}
    out["cumulative_max"] = np.float64(np.fmax(a["cumulative_max"], b["cumulative_max"]))
    k = len(a["cumulative_top"])
    both = np.concatenate([a["cumulative_top"], b["cumulative_top"]])
    out["cumulative_top"] = _top(both, k)
    return out


def finalize_partials(
    partials: Mapping[str, np.ndarray], *, q: float = 99.9, kappa: float = 1.0
) -> dict[str, Any]:
    """Turn folded partials into the wide-area numbers (docs/science.md 8.3).

    Parameters
    ----------
    partials : mapping
        Output of :func:`combine_partials` (or of one :func:`wide_area_partials`).
    q : float
        Percentile of the cumulative subsidence (99.9 resists outliers).
    kappa : float
        Groundwater loss per unit subsidence volume (aquitard drainage: the released pore water
        equals the compaction volume, Riley 1969; Galloway & Burbey 2011).

    Returns
    -------
    dict
        ``area_above_threshold_m2``, ``area_valid_m2``, ``area_total_m2``, ``coverage``,
        ``yearly_velocity_omega`` / ``yearly_velocity_all`` (mean *subsidence* rate, mm/yr,
        positive down, per year), ``volume_m3``, ``volume_net_m3``, ``volume_trend_m3``,
        ``volume_area_m2``, ``groundwater_loss_m3``, ``groundwater_loss_trend_m3`` (per epoch
        pair), ``cumulative_max_mm`` and ``cumulative_p999_mm`` (subsidence, positive down).
    """
    p = partials
    with np.errstate(invalid="ignore", divide="ignore"):
        y_omega = -np.where(
            p["year_area_omega"] > 0, p["year_sum_omega"] / p["year_area_omega"], np.nan
        )
        y_all = -np.where(p["year_area_all"] > 0, p["year_sum_all"] / p["year_area_all"], np.nan)
    top = np.asarray(p["cumulative_top"])
    n = int(p["cumulative_n"])
    finite = top[np.isfinite(top)]
    if n == 0 or finite.size == 0:
        pq = np.nan
    else:
        # the largest values of n; rank r (ascending, 0-based) of all n sits at r - (n - size)
        h = (n - 1) * q / 100.0
        lo, hi = int(np.floor(h)), int(np.ceil(h))
        offset = n - finite.size
        if lo < offset:
            raise ValueError(
                f"top-k list of {finite.size} values cannot fix the {q} percentile of {n}"
            )
        vlo, vhi = finite[lo - offset], finite[hi - offset]
        pq = float(vlo + (h - lo) * (vhi - vlo))
    volume = np.asarray(p["volume"], dtype=np.float64)
    volume_trend = np.asarray(p["volume_trend"], dtype=np.float64)
    area_total = float(p["area_total"])
    return {
        "area_above_threshold_m2": float(p["area_above"]),
        "area_valid_m2": float(p["area_valid"]),
        "area_total_m2": area_total,
        "coverage": float(p["area_valid"]) / area_total if area_total > 0 else float("nan"),
        "n_valid": int(p["n_valid"]),
        "yearly_velocity_omega": y_omega,
        "yearly_velocity_all": y_all,
        "yearly_area_omega_m2": np.asarray(p["year_area_omega"], dtype=np.float64),
        "volume_m3": volume,
        "volume_net_m3": np.asarray(p["volume_net"], dtype=np.float64),
        "volume_trend_m3": volume_trend,
        "volume_area_m2": np.asarray(p["volume_area"], dtype=np.float64),
        "groundwater_loss_m3": kappa * volume,
        "groundwater_loss_trend_m3": kappa * volume_trend,
        "cumulative_max_mm": float(p["cumulative_max"]),
        "cumulative_p999_mm": pq,
    }


# --------------------------------------------------------------------------------------------
# Lagged cross-correlation (docs/science.md 6.2)
# --------------------------------------------------------------------------------------------


def centred_moving_average(y: np.ndarray, period: int = 12) -> np.ndarray:
    """Centred ``2 x period`` moving average of a monthly series (the classical trend-cycle).

    Parameters
    ----------
    y : ndarray, shape (n,), NaN = missing month
    period : int
        Season length in samples (12 for monthly data). An even period uses the weights
        ``[1/2, 1, ..., 1, 1/2] / period`` over ``period + 1`` samples; an odd one a plain mean
        over ``period`` samples. Either removes a cycle of that period exactly.

    Returns
    -------
    ndarray, shape (n,)
        NaN wherever the window reaches past the series or holds a missing month.

    References
    ----------
    Brockwell PJ, Davis RA 2016, Introduction to Time Series and Forecasting, 3rd ed., Sec. 1.5.2.
    """
    y = np.asarray(y, dtype=np.float64)
    if period < 2:
        raise ValueError(f"period must be >= 2 samples; got {period}")
    if period % 2 == 0:
        w = np.r_[0.5, np.ones(period - 1), 0.5] / period
    else:
        w = np.ones(period) / period
    half = w.size // 2
    out = np.full(y.shape, np.nan)
    if y.size < w.size:
        return out
    windows = np.lib.stride_tricks.sliding_window_view(y, w.size)
    out[half : y.size - half] = windows @ w  # NaN propagates: incomplete windows stay NaN
    return out


def preprocess_series(y: np.ndarray, t: np.ndarray, detrend: Detrend = "linear") -> np.ndarray:
    """Detrend and standardise one series before lag analysis (docs/science.md 6.2, step 1).

    Parameters
    ----------
    y : ndarray, shape (n,), NaN = missing month
    t : ndarray, shape (n,), decimal years
    detrend : {"none", "linear", "moving_average", "seasonal", "diff"}
        ``linear`` removes an OLS line; ``moving_average`` removes the trend-cycle of the
        classical decomposition, a centred 2 x 12 moving average (NaN where its 13-month window
        is incomplete), so changes of rate between years do not dominate the correlation of the
        seasonal cycles; ``seasonal`` removes the monthly climatology; ``diff`` takes first
        differences (the first value becomes NaN).

    Returns
    -------
    ndarray, shape (n,)
        Zero mean and unit variance over the finite values; all NaN for a flat series.
    """
    y = np.asarray(y, dtype=np.float64).copy()
    t = np.asarray(t, dtype=np.float64)
    ok = np.isfinite(y)
    if detrend == "linear":
        if ok.sum() >= 2:
            slope, intercept = np.polyfit(t[ok], y[ok], 1)
            y = y - (intercept + slope * t)
    elif detrend == "seasonal":
        month = np.floor(np.mod(t, 1.0) * 12.0).astype(int)
        for m in range(12):
            sel = ok & (month == m)
            if sel.any():
                y[month == m] -= y[sel].mean()
    elif detrend == "moving_average":
        y = y - centred_moving_average(y, 12)
    elif detrend == "diff":
        y = np.concatenate([[np.nan], np.diff(y)])
    elif detrend != "none":
        raise ValueError(
            f"detrend must be none, linear, moving_average, seasonal or diff; got {detrend!r}"
        )
    ok = np.isfinite(y)
    if ok.sum() < 3:
        return np.full_like(y, np.nan)
    sd = y[ok].std()
    if not sd > 1e-12 * max(1.0, float(np.abs(y[ok]).max())):
        return np.full_like(y, np.nan)
    return (y - y[ok].mean()) / sd


def _lag1(z: np.ndarray) -> float:
    """Lag-1 autocorrelation of ``z`` over its finite neighbours (:func:`_pearson`): NaN with
    fewer than 3 pairs or a constant side (``np.corrcoef`` would divide by a zero spread)."""
    return _pearson(z[:-1], z[1:])[0]


def _pearson(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """Pearson r of ``a`` and ``b`` over the pairs finite in both, and their count; NaN below
    3 pairs or where either side is constant."""
    ok = np.isfinite(a) & np.isfinite(b)
    n = int(ok.sum())
    if n < 3:
        return float("nan"), n
    x, y = a[ok] - a[ok].mean(), b[ok] - b[ok].mean()
    den = np.sqrt((x * x).sum() * (y * y).sum())
    return (float((x * y).sum() / den) if den > 0 else float("nan")), n


def lagged_cross_correlation(
    x: np.ndarray,
    y: np.ndarray,
    t: np.ndarray,
    *,
    max_lag: int = 12,
    detrend: Detrend = "linear",
    min_months: int = 24,
    period: int = 12,
    period_tolerance: float = 0.05,
) -> dict[str, Any]:
    """Correlation of ``x(t)`` with ``y(t + k)`` for ``k = 0..max_lag`` months, and its lag.

    Parameters
    ----------
    x : ndarray, shape (n,)
        Leading series on a regular monthly axis, e.g. region GWSA in mm.
    y : ndarray, shape (n,)
        Lagging series, e.g. region vertical displacement in mm (positive up).
    t : ndarray, shape (n,), decimal years of the months
    max_lag : int
        K, the largest lag in months.
    detrend : {"none", "linear", "seasonal", "diff"}
        Pre-processing of both series (:func:`preprocess_series`).
    min_months : int
        Fewer overlapping finite months at lag 0 gives NaN results.
    period : int
        Length of the seasonal cycle in months.
    period_tolerance : float
        When ``k* >= period`` and ``r(k* - period) >= r(k*) - period_tolerance``, the shorter
        lag ``k* - period`` is reported: a seasonal signal correlates equally at ``k`` and
        ``k + period``, and the shorter lag is the physical one.

    Returns
    -------
    dict
        ``r`` (ndarray, shape (max_lag + 1,)), ``lag`` (k* = argmax r, months; -1 when
        undefined), ``r0``, ``r_lag``, ``n`` (pairs at k*), ``rho_x``, ``rho_y`` (lag-1
        autocorrelations), ``n_eff``, ``p_value`` (two-sided t test of ``r_lag`` with
        ``n_eff - 2`` degrees of freedom).

    Notes
    -----
    ``n_eff = n (1 - rho_x rho_y) / (1 + rho_x rho_y)`` (Bretherton et al. 1999), clipped to
    ``[3, n]``. A positive r is expected: falling GWSA goes with a falling surface. The p-value
    is that of the single lag k*; choosing k* among ``max_lag + 1`` lags is not corrected for.

    References
    ----------
    Bretherton et al. 1999, J. Climate 12:1990-2009, Eq. 31; Huang et al. 2025.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of equal length; got {x.shape} and {y.shape}")
    zx = preprocess_series(x, t, detrend)
    zy = preprocess_series(y, t, detrend)
    n_time = x.size
    r = np.full(max_lag + 1, np.nan)
    counts = np.zeros(max_lag + 1, dtype=int)
    for k in range(min(max_lag, n_time - 3) + 1):
        r[k], counts[k] = _pearson(zx[: n_time - k], zy[k:])
    out: dict[str, Any] = {
        "r": r,
        "lag": -1,
        "r0": float(r[0]),
        "r_lag": float("nan"),
        "n": 0,
        "rho_x": float("nan"),
        "rho_y": float("nan"),
        "n_eff": float("nan"),
        "p_value": float("nan"),
    }
    if counts[0] < min_months or not np.isfinite(r).any():
        out["r"] = np.full(max_lag + 1, np.nan)  # too short: every lag is undefined, as documented
        out["r0"] = float("nan")
        return out
    k = int(np.nanargmax(r))
    while k >= period and np.isfinite(r[k - period]) and r[k - period] >= r[k] - period_tolerance:
        k -= period
    rk, n = float(r[k]), int(counts[k])
    rho_x, rho_y = _lag1(zx), _lag1(zy)
    prod = rho_x * rho_y if np.isfinite(rho_x * rho_y) else 0.0
    n_eff = float(np.clip(n * (1.0 - prod) / (1.0 + prod), 3.0, n))
    dof = n_eff - 2.0
    if abs(rk) < 1.0:
        tstat = rk * np.sqrt(dof / (1.0 - rk * rk))
        p = float(2.0 * stats.t.sf(abs(tstat), dof))
    else:
        p = 0.0
    out.update(
        {
            "lag": k,
            "r_lag": rk,
            "n": n,
            "rho_x": rho_x,
            "rho_y": rho_y,
            "n_eff": n_eff,
            "p_value": p,
        }
    )
    return out
