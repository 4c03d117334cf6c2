"""Sampling design of the geodetector analysis ([H25]; docs/science.md 7.2) and its permutation null.

1. Subsidence set: pixels with ``y <= threshold`` (vertical velocity, mm/a; subsidence is
   negative), thinned to one pixel per ``min_spacing`` grid cell: the pixel holding the cell's
   median y (the lower median for an even count), so no cell contributes twice.
2. If more than ``cap`` subsidence cells remain, a random ``cap`` of them are kept.
3. Non-subsidence set: pixels with ``y > threshold``, thinned the same way, excluding cells that
   already hold a subsidence point; ``round(ratio * N_s)`` of these cells are drawn at random
   (``ratio`` is non-subsidence per subsidence point: 0.5 for [H25]'s 1 : 0.5).
4. Pixels with y or any factor missing are excluded *before* drawing (``valid``), so the ratio
   holds after dropping; the number excluded is reported.

Repeating the draw with seeds gives the mean and spread of q; :func:`sensitivity_sweep` runs the
paper's thresholds x ratios grid as one table. :func:`permutation_null` shuffles y to give the q
that the number of strata alone produces (docs/science.md 7.4, caveat).

The design of the geodetector stage: :func:`run_draws` repeats the draw, stratifies each factor
at the drawn points (:func:`~ncp_subsidence.kernels.discretize.sample_codes`) and runs every
detector on it (:class:`DrawResult`); :func:`sweep_draws` does the same draws for the sensitivity
sweep and keeps their q (:class:`SweepDraws`); :func:`permutation_nulls` gives the null of every
factor and crossed pair of one draw.

Repeated draws share what no seed changes, so it is computed once (:class:`DrawFrame`): the valid
cells, the thinned candidates of each threshold (steps 1 and 3 come before any random choice)
and, with limits fixed once, the stratum of every cell (a draw looks its points up and merges a
class only where its sample leaves it too small). The statistics of many draws are taken
together (:func:`~ncp_subsidence.kernels.geodetector.batch_stats_many`) and their F tests in one
vectorised call (:func:`~ncp_subsidence.kernels.geodetector.finalize_batches`); the permutation
nulls share one sequence of shuffles. Each result is the one the draw-by-draw computation gives
(``tests/test_stages_geodetector.py`` checks them against it).

Pure numpy on flattened arrays: y, lat, lon (degrees, cell centres) and factor codes.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ncp_subsidence.errors import DataError, DataWarning
from ncp_subsidence.kernels.discretize import apply_breaks, sample_codes
from ncp_subsidence.kernels.geodetector import (
    BatchStats,
    GeodetectorResult,
    batch_stats,
    batch_stats_many,
    factor_pairs,
    factor_q,
    finalize_batch,
    finalize_batches,
    q_needs_m2,
)

__all__ = [
    "sweep_columns",
    "DrawFrame",
    "DrawResult",
    "PermutationNull",
    "SampleDraw",
    "SweepDraws",
    "cell_index",
    "draw_sample",
    "mean_sd",
    "permutation_null",
    "permutation_nulls",
    "repeated_draws",
    "run_draws",
    "sensitivity_sweep",
    "sweep_draws",
    "thin_to_cells",
]

log = logging.getLogger(__name__)


def cell_index(
    lat: ArrayLike, lon: ArrayLike, spacing: float, origin: tuple[float, float] = (0.0, 0.0)
) -> NDArray[np.int64]:
    """Integer id of the ``spacing``-degree cell that holds each (lat, lon).

    Cells are aligned to ``origin + spacing * integer`` (default: multiples of the spacing, so
    0.01 deg cells coincide with the 0.01 deg factor grid).
    """
    la = np.asarray(lat, dtype=np.float64).ravel()
    lo = np.asarray(lon, dtype=np.float64).ravel()
    if la.shape != lo.shape:
        raise DataError(f"lat and lon differ in size: {la.size} vs {lo.size}")
    if not spacing > 0:
        raise DataError(f"min_spacing must be positive, got {spacing}")
    r = np.floor((la - origin[0]) / spacing).astype(np.int64)
    c = np.floor((lo - origin[1]) / spacing).astype(np.int64)
    if r.size == 0:
        return r
    r -= r.min()
    c -= c.min()
    return r * (int(c.max()) + 1) + c


def thin_to_cells(y: ArrayLike, cells: ArrayLike, candidates: ArrayLike) -> NDArray[np.intp]:
    """One pixel per cell among the candidates: the one with the cell's (lower) median y.

    Parameters
    ----------
    y : array_like of float, shape (n,)
    cells : array_like of int, shape (n,)
        Cell id of each pixel (:func:`cell_index`).
    candidates : array_like of bool, shape (n,)

    Returns
    -------
    ndarray of intp
        Indices into the inputs, one per occupied cell, sorted by cell id.
    """
    yv = np.asarray(y, dtype=np.float64).ravel()
    cv = np.asarray(cells).ravel()
    idx = np.flatnonzero(np.asarray(candidates, dtype=bool).ravel())
    if idx.size == 0:
        return idx
    order = np.lexsort((yv[idx], cv[idx]))
    sidx = idx[order]
    sc = cv[sidx]
    starts = np.flatnonzero(np.r_[True, sc[1:] != sc[:-1]])
    counts = np.diff(np.r_[starts, sc.size])
    return sidx[starts + (counts - 1) // 2]


@dataclass(frozen=True)
class SampleDraw:
    """One draw of the sampling design.

    Attributes
    ----------
    index : ndarray of intp, shape (n_subsidence + n_nonsubsidence,)
        Indices into the flattened inputs; subsidence points first.
    is_subsidence : ndarray of bool, same shape
    n_subsidence, n_nonsubsidence : int
        Points drawn.
    n_subsidence_cells, n_nonsubsidence_cells : int
        Cells available to each set after thinning (before the cap and the draw).
    n_excluded : int
        Pixels excluded because y or a factor was missing.
    seed : int
    threshold, ratio, min_spacing : float
    """

    index: NDArray[np.intp]
    is_subsidence: NDArray[np.bool_]
    n_subsidence: int
    n_nonsubsidence: int
    n_subsidence_cells: int
    n_nonsubsidence_cells: int
    n_excluded: int
    seed: int
    threshold: float
    ratio: float
    min_spacing: float


def draw_sample(
    y: ArrayLike,
    lat: ArrayLike,
    lon: ArrayLike,
    *,
    threshold: float = -15.0,
    ratio: float = 0.5,
    min_spacing: float = 0.01,
    cap: int | None = 20000,
    seed: int = 0,
    valid: ArrayLike | None = None,
    cells: ArrayLike | None = None,
) -> SampleDraw:
    """Draw subsidence and non-subsidence points ([H25]; docs/science.md 7.2).

    Parameters
    ----------
    y : array_like of float, shape (n,)
        Vertical velocity (mm/a, positive up); NaN pixels are never drawn.
    lat, lon : array_like of float, shape (n,)
        Pixel centres (degrees).
    threshold : float
        Subsidence if ``y <= threshold`` (mm/a). [H25]: -15.
    ratio : float
        Non-subsidence points per subsidence point. [H25]: 0.5 (1 : 0.5).
    min_spacing : float
        Cell size of the thinning (degrees). Default 0.01.
    cap : int or None
        Largest number of subsidence points (random thinning beyond it). Default 20000.
    seed : int
        Seed of the random cap and draw.
    valid : array_like of bool, shape (n,), optional
        False where any factor is missing; such pixels are excluded before drawing.
    cells : array_like of int, shape (n,), optional
        Precomputed :func:`cell_index` (saves time over repeated draws).

    Returns
    -------
    SampleDraw
    """
    yv = np.asarray(y, dtype=np.float64).ravel()
    ok = np.isfinite(yv)
    if valid is not None:
        ok &= np.asarray(valid, dtype=bool).ravel()
    n_excluded = int(yv.size - np.count_nonzero(ok))
    cv = cell_index(lat, lon, min_spacing) if cells is None else np.asarray(cells).ravel()
    if cv.shape != yv.shape:
        raise DataError(f"y and lat/lon differ in size: {yv.size} vs {cv.size}")
    thinned = _thin_sets(yv, cv, ok, threshold)
    return _draw_thinned(
        thinned,
        cv,
        ratio=ratio,
        cap=cap,
        seed=seed,
        n_excluded=n_excluded,
        threshold=threshold,
        min_spacing=min_spacing,
        stacklevel=3,
    )


@dataclass(frozen=True)
class _Thinned:
    """The thinned candidates of one threshold: they do not depend on the seed of a draw.

    ``overlap`` marks the non-subsidence cells that also hold a subsidence candidate; only they
    can be excluded by a draw's (capped) subsidence set.
    """

    sub: NDArray[np.intp]
    non: NDArray[np.intp]
    overlap: NDArray[np.bool_]


def _thin_sets(
    yv: NDArray[np.float64], cv: NDArray, ok: NDArray[np.bool_], threshold: float
) -> _Thinned:
    """Steps 1 and 3 of the design before any random choice (one median pixel per cell)."""
    sub = thin_to_cells(yv, cv, ok & (yv <= threshold))
    non = thin_to_cells(yv, cv, ok & (yv > threshold))
    return _Thinned(sub, non, np.isin(cv[non], cv[sub]))


def _draw_thinned(
    thinned: _Thinned,
    cv: NDArray,
    *,
    ratio: float,
    cap: int | None,
    seed: int,
    n_excluded: int,
    threshold: float,
    min_spacing: float,
    stacklevel: int = 2,
) -> SampleDraw:
    """The random part of :func:`draw_sample` (cap, exclusion, draw) on thinned candidates."""
    rng = np.random.default_rng(seed)
    sub = thinned.sub
    n_sub_cells = int(sub.size)
    if cap is not None and sub.size > cap:
        sub = np.sort(rng.choice(sub, size=int(cap), replace=False))
    non = thinned.non
    if thinned.overlap.any():
        # only cells that hold a subsidence candidate can hold one of this draw's points
        keep = ~thinned.overlap
        keep[thinned.overlap] = ~np.isin(cv[non[thinned.overlap]], cv[sub])
        non = non[keep]
    n_non_cells = int(non.size)
    want = round(ratio * sub.size)
    if want > non.size:
        warnings.warn(
            f"sampling design: {want} non-subsidence points wanted (ratio {ratio} x "
            f"{sub.size}), only {non.size} cells available; taking all of them. Lower the ratio "
            "or the spacing.",
            DataWarning,
            stacklevel=stacklevel,
        )
        want = non.size
    non = np.sort(rng.choice(non, size=want, replace=False)) if want else non[:0]
    index = np.concatenate([sub, non]).astype(np.intp)
    is_sub = np.zeros(index.size, dtype=bool)
    is_sub[: sub.size] = True
    return SampleDraw(
        index=index,
        is_subsidence=is_sub,
        n_subsidence=int(sub.size),
        n_nonsubsidence=int(non.size),
        n_subsidence_cells=n_sub_cells,
        n_nonsubsidence_cells=n_non_cells,
        n_excluded=n_excluded,
        seed=int(seed),
        threshold=float(threshold),
        ratio=float(ratio),
        min_spacing=float(min_spacing),
    )


def _codes_list(codes: Sequence[ArrayLike] | NDArray) -> list[NDArray]:
    return [np.asarray(c).ravel() for c in codes]


def _valid_codes(codes: list[NDArray], n_codes: Sequence[int]) -> NDArray[np.bool_]:
    ok = np.ones(codes[0].shape, dtype=bool) if codes else np.ones(0, dtype=bool)
    for c, n in zip(codes, n_codes):
        ok &= (c >= 0) & (c < n)
    return ok


def repeated_draws(
    y: ArrayLike,
    lat: ArrayLike,
    lon: ArrayLike,
    codes: Sequence[ArrayLike] | NDArray,
    n_codes: Sequence[int],
    *,
    n_draws: int = 20,
    seed: int = 0,
    convention: str = "R",
    **design,
) -> dict[str, NDArray]:
    """Repeat the draw with seeds ``seed, seed + 1, ...`` and compute q of every factor.

    Parameters
    ----------
    y, lat, lon : array_like, shape (n,)
    codes : sequence of k int arrays, shape (n,)
        Factor strata on the full grid (breaks computed once; missing = -1).
    n_codes : sequence of int
    n_draws : int
        B; docs/science.md 7.2: 20.
    seed : int
    convention : str
        Factor-detector convention.
    **design
        ``threshold``, ``ratio``, ``min_spacing``, ``cap`` of :func:`draw_sample`.

    Returns
    -------
    dict
        ``q`` (n_draws, k), ``p_value`` (n_draws, k), ``q_mean`` (k,), ``q_sd`` (k,) (ddof=1),
        ``seeds`` (n_draws,), ``n_subsidence`` and ``n_nonsubsidence`` (n_draws,).
    """
    yv = np.asarray(y, dtype=np.float64).ravel()
    cl = _codes_list(codes)
    valid = _valid_codes(cl, n_codes)
    cells = cell_index(lat, lon, float(design.get("min_spacing", 0.01)))
    k = len(cl)
    q = np.full((n_draws, k), np.nan)
    p = np.full((n_draws, k), np.nan)
    seeds = np.arange(seed, seed + n_draws, dtype=np.int64)
    n_s = np.zeros(n_draws, dtype=np.int64)
    n_n = np.zeros(n_draws, dtype=np.int64)
    for b, s in enumerate(seeds):
        d = draw_sample(yv, lat, lon, seed=int(s), valid=valid, cells=cells, **design)
        n_s[b], n_n[b] = d.n_subsidence, d.n_nonsubsidence
        if d.index.size < 3:
            continue
        res = finalize_batch(
            batch_stats(yv[d.index], [c[d.index] for c in cl], n_codes, pairs=[]),
            convention=convention,  # type: ignore[arg-type]
        )
        q[b] = [r.q for r in res.factors]
        p[b] = [r.p_value for r in res.factors]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        q_mean = np.nanmean(q, axis=0) if n_draws else np.full(k, np.nan)
        q_sd = np.nanstd(q, axis=0, ddof=1) if n_draws > 1 else np.full(k, np.nan)
    return {
        "q": q,
        "p_value": p,
        "q_mean": q_mean,
        "q_sd": q_sd,
        "seeds": seeds,
        "n_subsidence": n_s,
        "n_nonsubsidence": n_n,
    }


@dataclass(frozen=True)
class PermutationNull:
    """Permutation null distribution of q.

    Attributes
    ----------
    q_observed : float
    q_null : ndarray of float, shape (n_perm,)
        q after shuffling y.
    q_quantile : float
        The ``quantile`` (default 95th percentile) of ``q_null``.
    p_value : float
        ``(1 + #{q_null >= q_observed}) / (n_perm + 1)``.
    n_strata : int
        Non-empty strata.
    """

    q_observed: float
    q_null: NDArray[np.float64]
    q_quantile: float
    p_value: float
    n_strata: int


def permutation_null(
    y: ArrayLike,
    codes: ArrayLike,
    n_codes: int,
    *,
    n_perm: int = 199,
    seed: int = 0,
    quantile: float = 0.95,
) -> PermutationNull:
    """q under random shuffles of y over fixed strata (docs/science.md 7.4 caveat).

    Shuffling keeps the stratum sizes, so the null shows how much q the number and sizes of the
    strata give by themselves (large for 20 x 20 crossed strata on few samples). Crossed strata:
    pass ``codes1 * n2 + codes2`` and ``n_codes = n1 * n2``. q is ``SSB / SST`` with singleton
    strata kept (the R convention). Samples with y or the code missing are dropped first.

    Returns
    -------
    PermutationNull
    """
    yv = np.asarray(y, dtype=np.float64).ravel()
    cv = np.asarray(codes).astype(np.intp, copy=False).ravel()
    ok = np.isfinite(yv) & (cv >= 0) & (cv < n_codes)
    yv, cv = yv[ok], cv[ok]
    if yv.size < 2:
        raise DataError("permutation_null needs at least two valid samples")
    d = yv - yv.mean()
    sst = float(np.dot(d, d))
    count = np.bincount(cv, minlength=n_codes).astype(np.float64)
    nz = count > 0

    def q_of(values: NDArray[np.float64]) -> float:
        s = np.bincount(cv, weights=values, minlength=n_codes)[nz]
        return float(np.sum(s * s / count[nz]) / sst) if sst > 0 else float("nan")

    # with values centred, SSB = sum_h s_h^2 / n_h
    q_obs = q_of(d)
    rng = np.random.default_rng(seed)
    q_null = np.array([q_of(rng.permutation(d)) for _ in range(int(n_perm))])
    p = (1.0 + np.count_nonzero(q_null >= q_obs)) / (n_perm + 1.0)
    return PermutationNull(
        q_observed=q_obs,
        q_null=q_null,
        q_quantile=float(np.quantile(q_null, quantile)) if n_perm else float("nan"),
        p_value=float(p),
        n_strata=int(np.count_nonzero(nz)),
    )


def sensitivity_sweep(
    y: ArrayLike,
    lat: ArrayLike,
    lon: ArrayLike,
    codes: Sequence[ArrayLike] | NDArray,
    n_codes: Sequence[int],
    *,
    thresholds: Sequence[float] = (-20.0, -15.0, -10.0),
    ratios: Sequence[float] = (2.0, 1.0, 0.5),
    n_draws: int = 20,
    seed: int = 0,
    min_spacing: float = 0.01,
    cap: int | None = 20000,
    convention: str = "R",
) -> dict[str, NDArray]:
    """The [H25] sensitivity sweep: q of every factor for each threshold and ratio, as one table.

    Parameters
    ----------
    y, lat, lon, codes, n_codes
        As :func:`repeated_draws`.
    thresholds : sequence of float
        Subsidence thresholds (mm/a). [H25]: -20, -15, -10.
    ratios : sequence of float
        Non-subsidence points per subsidence point. [H25]: 1:2, 1:1, 1:0.5 -> 2, 1, 0.5.
    n_draws, seed, min_spacing, cap, convention
        As :func:`repeated_draws` / :func:`draw_sample`.

    Returns
    -------
    dict of str -> ndarray, each of length ``len(thresholds) * len(ratios) * k``
        Columns ``threshold``, ``ratio``, ``factor`` (index), ``q_mean``, ``q_sd``, ``rank``
        (1 = largest mean q within the setting), ``n_subsidence``, ``n_nonsubsidence`` (means
        over draws), ``n_draws``.
    """
    rows = []
    for t in thresholds:
        for r in ratios:
            out = repeated_draws(
                y,
                lat,
                lon,
                codes,
                n_codes,
                n_draws=n_draws,
                seed=seed,
                convention=convention,
                threshold=float(t),
                ratio=float(r),
                min_spacing=min_spacing,
                cap=cap,
            )
            rows.append(
                (
                    t,
                    r,
                    out["q_mean"],
                    out["q_sd"],
                    float(np.mean(out["n_subsidence"])),
                    float(np.mean(out["n_nonsubsidence"])),
                    int(n_draws),
                )
            )
    return sweep_columns(rows)


def sweep_columns(
    rows: Iterable[tuple[float, float, NDArray, NDArray, float, float, int]],
) -> dict[str, NDArray]:
    """Columns of the sensitivity table from one row per (threshold, ratio) setting.

    Parameters
    ----------
    rows : iterable of (threshold, ratio, q_mean, q_sd, n_subsidence, n_nonsubsidence, n_draws)
        ``q_mean`` and ``q_sd`` of shape (k,), one value per factor; counts are means over draws.

    Returns
    -------
    dict of str -> ndarray, each of length ``n_settings * k``
        ``threshold``, ``ratio``, ``factor`` (index), ``q_mean``, ``q_sd``, ``rank`` (1 = largest
        mean q within the setting, NaN last), ``n_subsidence``, ``n_nonsubsidence``, ``n_draws``.
    """
    names = (
        "threshold",
        "ratio",
        "factor",
        "q_mean",
        "q_sd",
        "rank",
        "n_subsidence",
        "n_nonsubsidence",
        "n_draws",
    )
    cols: dict[str, list] = {key: [] for key in names}
    for t, r, qm, qs, n_s, n_n, n_draws in rows:
        qm = np.asarray(qm, dtype=np.float64)
        k = qm.size
        order = np.argsort(-np.where(np.isnan(qm), -np.inf, qm), kind="stable")
        rank = np.empty(k, dtype=np.int64)
        rank[order] = np.arange(1, k + 1)
        cols["threshold"] += [float(t)] * k
        cols["ratio"] += [float(r)] * k
        cols["factor"] += list(range(k))
        cols["q_mean"] += list(qm)
        cols["q_sd"] += list(np.asarray(qs, dtype=np.float64))
        cols["rank"] += list(rank)
        cols["n_subsidence"] += [float(n_s)] * k
        cols["n_nonsubsidence"] += [float(n_n)] * k
        cols["n_draws"] += [int(n_draws)] * k
    return {key: np.asarray(v) for key, v in cols.items()}


# --------------------------------------------------------------------------------------------
# The stage's design: repeated draws with every detector, permutation nulls
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DrawResult:
    """One draw of the sampling design with every detector run on it.

    Attributes
    ----------
    draw : SampleDraw
        Indices of the points (into the flattened factor grid) and counts.
    result : GeodetectorResult
        Factor and interaction detectors (risk and ecological only where asked).
    codes : list of ndarray of int
        Stratum codes of each factor at the drawn points.
    n_codes : list of int
        Effective number of strata per factor.
    edges : list of ndarray of float
        Class limits used per factor.
    """

    draw: SampleDraw
    result: GeodetectorResult
    codes: list[np.ndarray]
    n_codes: list[int]
    edges: list[np.ndarray]


class DrawFrame:
    """The inputs of repeated draws, prepared once and shared by every call of :func:`run_draws`.

    What does not depend on a draw's seed is computed here once: the valid mask, the thinning
    cells, the thinned candidates of each threshold (steps 1 and 3 of the design, cached on first
    use) and, when the class limits are fixed, the stratum of every cell under them (a draw then
    looks its points' strata up instead of classifying them again).

    Parameters
    ----------
    y : ndarray of float, shape (n,)
        Vertical velocity per factor cell, mm/yr (NaN: no data).
    lat, lon : ndarray of float, shape (n,)
        Cell centres, degrees.
    factors : ndarray of float, shape (k, n)
        Factor values per cell (NaN: missing).
    edges : sequence of k ndarrays, or None
        Class limits computed once (as :func:`run_draws`), or None.
    min_spacing : float
        Cell size of the thinning, degrees.
    """

    def __init__(
        self,
        y: np.ndarray,
        lat: np.ndarray,
        lon: np.ndarray,
        factors: np.ndarray,
        edges: Sequence[np.ndarray] | None,
        *,
        min_spacing: float,
    ) -> None:
        self.y = np.asarray(y, dtype=np.float64).ravel()
        self.factors = np.asarray(factors, dtype=np.float64)
        if self.factors.ndim != 2 or self.factors.shape[1] != self.y.size:
            raise DataError(f"factors must have shape (k, {self.y.size}), got {self.factors.shape}")
        self.min_spacing = float(min_spacing)
        self.valid = np.isfinite(self.y) & np.all(np.isfinite(self.factors), axis=0)
        self.n_excluded = int(self.y.size - np.count_nonzero(self.valid))
        self.cells = cell_index(lat, lon, self.min_spacing)
        if self.cells.shape != self.y.shape:
            raise DataError(f"y and lat/lon differ in size: {self.y.size} vs {self.cells.size}")
        self.edges = None if edges is None else [np.asarray(e, dtype=np.float64) for e in edges]
        self.codes: np.ndarray | None = None
        if self.edges is not None and all(
            e.size >= 2 and bool(np.all(np.diff(e) >= 0)) for e in self.edges
        ):
            # the narrowest signed type of the codes (-1 on missing cells): cheaper look-ups
            top = max(e.size - 2 for e in self.edges)
            dtype = np.int8 if top <= 127 else np.int16 if top <= 32767 else np.int32
            self.codes = np.stack(
                [apply_breaks(x, e).astype(dtype) for x, e in zip(self.factors, self.edges)]
            )
        self._thinned: dict[float, _Thinned] = {}

    def thinned(self, threshold: float) -> _Thinned:
        """Thinned subsidence and non-subsidence candidates at a threshold (cached)."""
        key = float(threshold)
        if key not in self._thinned:
            self._thinned[key] = _thin_sets(self.y, self.cells, self.valid, key)
        return self._thinned[key]

    def matches(self, edges: Sequence[np.ndarray] | None, min_spacing: float) -> bool:
        """Whether the frame was prepared with these class limits and thinning spacing."""
        if float(min_spacing) != self.min_spacing or (edges is None) != (self.edges is None):
            return False
        if edges is None:
            return True
        return len(edges) == len(self.edges) and all(  # type: ignore[arg-type]
            np.array_equal(np.asarray(a, dtype=np.float64), b)
            for a, b in zip(edges, self.edges)  # type: ignore[arg-type]
        )


def run_draws(
    y: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    factors: np.ndarray,
    edges: Sequence[np.ndarray] | None,
    *,
    threshold: float,
    ratio: float,
    min_spacing: float,
    cap: int | None,
    n_draws: int,
    seed: int,
    method: str = "natural_breaks",
    n_strata: int = 20,
    sample_size: int = 5000,
    min_stratum_size: int = 2,
    interactions: bool = True,
    detail_first: bool = False,
    frame: DrawFrame | None = None,
    on_draw: Callable[[int], None] | None = None,
    **finalize_kwargs,
) -> tuple[list[DrawResult], int]:
    """Repeat the [H25] draw ``n_draws`` times (seeds ``seed, seed + 1, ...``) and run the detectors.

    Each draw is :func:`draw_sample`, :func:`~ncp_subsidence.kernels.discretize.sample_codes`
    per factor and :func:`~ncp_subsidence.kernels.geodetector.geodetector_batch`, with the same
    result; what does not depend on the seed (valid cells, thinning, the strata of every cell
    under fixed limits) is prepared once (:class:`DrawFrame`), and the F tests of every draw are
    finalized together (:func:`~ncp_subsidence.kernels.geodetector.finalize_batches`).

    Parameters
    ----------
    y : ndarray of float, shape (n,)
        Vertical velocity per factor cell, mm/yr (NaN: no data).
    lat, lon : ndarray of float, shape (n,)
        Cell centres, degrees.
    factors : ndarray of float, shape (k, n)
        Factor values per cell (NaN: missing; such cells are never drawn).
    edges : sequence of k ndarrays, or None
        Class limits computed once (merged again on each sample so no stratum is smaller than
        ``min_stratum_size``); None computes limits from each draw's sample (as [H25]).
    threshold, ratio, min_spacing, cap
        The design of :func:`draw_sample`.
    n_draws, seed : int
    method, n_strata, sample_size, min_stratum_size
        Discretisation, when ``edges`` is None
        (:func:`~ncp_subsidence.kernels.discretize.sample_codes`).
    interactions : bool
        Also run the interaction detector on every pair.
    detail_first : bool
        Run the risk and ecological detectors on the first draw.
    frame : DrawFrame, optional
        The same inputs prepared once (``DrawFrame(y, lat, lon, factors, edges,
        min_spacing=min_spacing)``); pass one frame to several calls (the sensitivity sweep) to
        share its thinning. Built here when None.
    on_draw : callable, optional
        Called with the number of draws done (1) after each draw (progress).
    **finalize_kwargs
        ``convention``, ``interaction_convention`` of
        :func:`~ncp_subsidence.kernels.geodetector.finalize_batch`.

    Returns
    -------
    draws : list of DrawResult
        One per draw that has at least 3 points.
    n_short : int
        Draws that found fewer non-subsidence cells than the ratio asks (all were taken; the
        counts in each draw say how many).
    """
    frame = _frame_for(frame, y, lat, lon, factors, edges, min_spacing)
    pairs = factor_pairs(frame.factors.shape[0]) if interactions else []
    short = [0]
    kept = list(
        _stratified_draws(
            frame,
            edges is None,
            threshold=threshold,
            ratio=ratio,
            min_spacing=min_spacing,
            cap=cap,
            n_draws=n_draws,
            seed=seed,
            method=method,
            n_strata=n_strata,
            sample_size=sample_size,
            min_stratum_size=min_stratum_size,
            pairs=pairs,
            with_m2=True,
            on_draw=on_draw,
            short=short,
        )
    )
    detail = [detail_first and b == 0 for b in range(len(kept))]
    results = finalize_batches(
        [bs for *_, bs in kept], risk=detail, ecological=detail, **finalize_kwargs
    )
    out = [
        DrawResult(d, res, [np.asarray(c, dtype=np.int32) for c in codes], n_codes, used)
        for (d, codes, n_codes, used, _), res in zip(kept, results)
    ]
    return out, short[0]


@dataclass(frozen=True)
class SweepDraws:
    """q of every draw of one setting of the sensitivity sweep, and the counts drawn.

    Attributes
    ----------
    q : ndarray of float, shape (n_kept, k)
        q of every factor in each draw with at least 3 points (seeds in order).
    n_subsidence, n_nonsubsidence : ndarray of int64, shape (n_kept,)
        Points drawn.
    n_short : int
        Draws that found fewer non-subsidence cells than the ratio asks.
    """

    q: NDArray[np.float64]
    n_subsidence: NDArray[np.int64]
    n_nonsubsidence: NDArray[np.int64]
    n_short: int

    @classmethod
    def from_draws(cls, draws: Sequence[DrawResult], n_short: int, k: int) -> SweepDraws:
        """The q and counts of :func:`run_draws` results (the same numbers, nothing else)."""
        return cls(
            np.array([[f.q for f in d.result.factors] for d in draws], dtype=np.float64).reshape(
                -1, k
            ),
            np.array([d.draw.n_subsidence for d in draws], dtype=np.int64),
            np.array([d.draw.n_nonsubsidence for d in draws], dtype=np.int64),
            int(n_short),
        )


def sweep_draws(
    y: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    factors: np.ndarray,
    edges: Sequence[np.ndarray] | None,
    *,
    threshold: float,
    ratio: float,
    min_spacing: float,
    cap: int | None,
    n_draws: int,
    seed: int,
    method: str = "natural_breaks",
    n_strata: int = 20,
    sample_size: int = 5000,
    min_stratum_size: int = 2,
    convention: str = "R",
    singletons: str | None = None,
    lambda_variance: str | None = None,
    frame: DrawFrame | None = None,
    on_draw: Callable[[int], None] | None = None,
    **_finalize_kwargs,
) -> SweepDraws:
    """The draws of :func:`run_draws` reduced to what the sensitivity sweep tabulates: q.

    The same draws and strata as ``run_draws(..., interactions=False)`` and the same q
    (``SSB / SST`` of each factor's strata), without what q does not use: no interactions, no F
    tests and, where singletons are kept (the R convention), no per-stratum M2. SST is summed
    single-threaded (``batch_stats(..., blas_sst=False)``), so q may differ from
    :func:`run_draws`' in its last bits (about 1e-16 relative), not more.

    Parameters
    ----------
    y, lat, lon, factors, edges, threshold, ratio, min_spacing, cap, n_draws, seed, method,
    n_strata, sample_size, min_stratum_size, frame, on_draw
        As :func:`run_draws`.
    convention, singletons, lambda_variance
        Of the factor detector (:func:`~ncp_subsidence.kernels.geodetector.factor_from_stats`);
        other finalize keywords are accepted and not used.

    Returns
    -------
    SweepDraws
    """
    frame = _frame_for(frame, y, lat, lon, factors, edges, min_spacing)
    kw = dict(convention=convention, singletons=singletons, lambda_variance=lambda_variance)
    with_m2 = q_needs_m2(convention, singletons)  # type: ignore[arg-type]
    short = [0]
    q, n_s, n_n = [], [], []
    for d, _, _, _, bs in _stratified_draws(
        frame,
        edges is None,
        threshold=threshold,
        ratio=ratio,
        min_spacing=min_spacing,
        cap=cap,
        n_draws=n_draws,
        seed=seed,
        method=method,
        n_strata=n_strata,
        sample_size=sample_size,
        min_stratum_size=min_stratum_size,
        pairs=[],
        with_m2=with_m2,
        on_draw=on_draw,
        short=short,
        blas_sst=False,
    ):
        q.append([factor_q(st, sst=bs.sst, **kw) for st in bs.factor_stats])  # type: ignore[arg-type]
        n_s.append(d.n_subsidence)
        n_n.append(d.n_nonsubsidence)
    k = frame.factors.shape[0]
    return SweepDraws(
        np.array(q, dtype=np.float64).reshape(-1, k),
        np.array(n_s, dtype=np.int64),
        np.array(n_n, dtype=np.int64),
        short[0],
    )


def _frame_for(
    frame: DrawFrame | None,
    y: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    factors: np.ndarray,
    edges: Sequence[np.ndarray] | None,
    min_spacing: float,
) -> DrawFrame:
    if frame is None:
        return DrawFrame(y, lat, lon, factors, edges, min_spacing=min_spacing)
    if frame.y.shape != np.shape(y) or not frame.matches(edges, min_spacing):
        raise DataError("the draw frame was prepared for other inputs, limits or spacing")
    return frame


def _stratified_draws(
    frame: DrawFrame,
    breaks_per_draw: bool,
    *,
    threshold: float,
    ratio: float,
    min_spacing: float,
    cap: int | None,
    n_draws: int,
    seed: int,
    method: str,
    n_strata: int,
    sample_size: int,
    min_stratum_size: int,
    pairs: Sequence[tuple[int, int]],
    with_m2: bool,
    on_draw: Callable[[int], None] | None,
    short: list[int],
    blas_sst: bool = True,
) -> Iterator[tuple[SampleDraw, list[np.ndarray], list[int], list[np.ndarray], BatchStats]]:
    """Draw, stratify and summarise each draw: (draw, codes, n_codes, limits, statistics).

    Draws with fewer than 3 points are skipped (a warning); draws short of non-subsidence cells
    are counted in ``short[0]`` (an info line each). ``on_draw(1)`` after every draw.
    """
    yv, fx = frame.y, frame.factors
    thinned = frame.thinned(threshold)
    k = fx.shape[0]
    lookup = frame.codes is not None and not breaks_per_draw
    n_codes0 = [int(e.size - 1) for e in frame.edges] if lookup else []  # type: ignore[union-attr]
    least = max(min_stratum_size, 1)

    def chunks() -> Iterator[list[tuple[int, SampleDraw]]]:
        """The draws with 3 points or more, (seed, draw), a chunk of points at a time."""
        pending: list[tuple[int, SampleDraw]] = []
        size = 0
        for b in range(int(n_draws)):
            s = int(seed) + b
            d = _logged_draw(thinned, frame, ratio, cap, s, threshold, min_spacing, short)
            if d.index.size < 3:
                log.warning(
                    "geodetector draw (seed %d, threshold %g): only %d points; skipped",
                    s,
                    threshold,
                    d.index.size,
                )
                if on_draw is not None:
                    on_draw(1)
                continue
            pending.append((s, d))
            size += d.index.size
            if size >= _CHUNK:
                yield pending
                pending, size = [], 0
        if pending:
            yield pending

    for pending in chunks():
        # the drawn points so far: their strata and statistics, the response part of every
        # draw first (batch_stats_many)
        ys_all = [yv[d.index] for _, d in pending]
        stats: list[BatchStats | None] = [None] * len(pending)
        looked: list[list[np.ndarray]] = []
        if lookup:
            # the strata of the points under the fixed limits, looked up; they stand unless a
            # class is too small on a sample, which the counts of its statistics show
            looked = [[c[d.index] for c in frame.codes] for _, d in pending]  # type: ignore[union-attr]
            stats = batch_stats_many(  # type: ignore[assignment]
                ys_all, looked, n_codes0, pairs=pairs, with_m2=with_m2, blas_sst=blas_sst
            )
        for a, ((s, d), ys) in enumerate(zip(pending, ys_all)):
            bs = stats[a]
            if (
                bs is not None
                and bs.n_dropped == 0
                and all(
                    st.count.size == n and bool(np.all(st.count >= least))
                    for st, n in zip(bs.factor_stats, n_codes0)
                )
            ):
                codes, n_codes = looked[a], list(n_codes0)
                used = [e.copy() for e in frame.edges]  # type: ignore[union-attr]
            else:
                codes, n_codes, used = [], [], []
                for i in range(k):
                    c, n, e = sample_codes(
                        ys,
                        fx[i][d.index],
                        None if breaks_per_draw else frame.edges[i],  # type: ignore[index]
                        method=method,
                        n_strata=n_strata,
                        sample_size=sample_size,
                        seed=s,
                        min_stratum_size=min_stratum_size,
                        codes=looked[a][i] if lookup else None,
                    )
                    codes.append(c)
                    n_codes.append(n)
                    used.append(e)
                bs = batch_stats(
                    ys, codes, n_codes, pairs=pairs, with_m2=with_m2, blas_sst=blas_sst
                )
            if on_draw is not None:
                on_draw(1)
            yield d, codes, n_codes, used, bs


#: Points of the draws stratified together (bounds the memory of :func:`_stratified_draws`).
_CHUNK = 1 << 22


def _logged_draw(
    thinned: _Thinned,
    frame: DrawFrame,
    ratio: float,
    cap: int | None,
    seed: int,
    threshold: float,
    min_spacing: float,
    short: list[int],
) -> SampleDraw:
    """One draw; a short draw (too few non-subsidence cells) is counted and logged."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        d = _draw_thinned(
            thinned,
            frame.cells,
            ratio=ratio,
            cap=cap,
            seed=seed,
            n_excluded=frame.n_excluded,
            threshold=threshold,
            min_spacing=min_spacing,
        )
    for w in caught:
        if issubclass(w.category, DataWarning):
            short[0] += 1
            log.info("geodetector draw (seed %d): %s", seed, w.message)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return d


def mean_sd(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample s.d. (ddof=1) over draws (axis 0), NaN ignored; s.d. NaN for one draw."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(values, axis=0)
        sd = (
            np.nanstd(values, axis=0, ddof=1)
            if values.shape[0] > 1
            else np.full(values.shape[1:], np.nan)
        )
    return mean, sd


def permutation_nulls(
    y: np.ndarray,
    codes: Sequence[np.ndarray],
    n_codes: Sequence[int],
    pairs: Sequence[tuple[int, int]],
    *,
    n_perm: int,
    seed: int,
    quantile: float = 0.95,
    on_perm: Callable[[int], None] | None = None,
) -> tuple[list[PermutationNull], list[PermutationNull]]:
    """Permutation null of q for every factor and every crossed pair of one draw.

    Crossed strata use the code ``c_i * n_j + c_j`` (docs/science.md 7.4 caveat). Equal, null by
    null, to :func:`permutation_null` of each factor and pair with the same ``seed``: every null
    shuffles the same centred y with the same generator, so the ``n_perm`` shuffles are drawn
    once and every stratification is scored on each (one pass instead of ``k + k (k - 1) / 2``).

    Parameters
    ----------
    y : ndarray of float, shape (n,)
        Response at the draw's points.
    codes : sequence of k int arrays, shape (n,)
        Stratum codes per factor (out of range or with y missing: dropped, as
        :func:`permutation_null`).
    n_codes : sequence of int, length k
    pairs : sequence of (i, j)
    n_perm, seed, quantile
        As :func:`permutation_null`.
    on_perm : callable, optional
        Called with the number of shuffles done (1) after each shuffle (progress).

    Returns
    -------
    factor_nulls : list of PermutationNull, one per factor
    pair_nulls : list of PermutationNull, one per pair
    """
    strat = [(np.asarray(c), int(n)) for c, n in zip(codes, n_codes)]
    strat += [
        (np.asarray(codes[i]).astype(np.int64) * n_codes[j] + codes[j], n_codes[i] * n_codes[j])
        for i, j in pairs
    ]
    nulls = _shared_permutation_nulls(
        y, strat, n_perm=n_perm, seed=seed, quantile=quantile, on_perm=on_perm
    )
    k = len(codes)
    return nulls[:k], nulls[k:]


def _shared_permutation_nulls(
    y: ArrayLike,
    strat: Sequence[tuple[NDArray, int]],
    *,
    n_perm: int,
    seed: int,
    quantile: float,
    on_perm: Callable[[int], None] | None,
) -> list[PermutationNull]:
    """:func:`permutation_null` of many stratifications of the same y, sharing the shuffles.

    Stratifications with the same usable samples (y finite and the code in range: all of them in
    a draw) share one centred y and one sequence of shuffles; the per-stratum sums of a shuffle
    are ``bincount`` in sample order and q the same ``sum(s^2 / n_h) / SST``, so each null is
    bit for bit that of :func:`permutation_null`.
    """
    yv = np.asarray(y, dtype=np.float64).ravel()
    fin = np.isfinite(yv)
    prepared = []
    groups: dict[bytes, list[int]] = {}
    for a, (c, n) in enumerate(strat):
        cv = np.asarray(c).astype(np.intp, copy=False).ravel()
        ok = fin & (cv >= 0) & (cv < n)
        if np.count_nonzero(ok) < 2:
            raise DataError("permutation_null needs at least two valid samples")
        prepared.append((cv if ok.all() else cv[ok], int(n)))
        groups.setdefault(np.packbits(ok).tobytes() + ok.size.to_bytes(8, "little"), []).append(a)
    out: list[PermutationNull | None] = [None] * len(strat)
    first = True
    for members in groups.values():
        cv0 = np.asarray(strat[members[0]][0]).astype(np.intp, copy=False).ravel()
        ok = fin & (cv0 >= 0) & (cv0 < strat[members[0]][1])
        yg = yv[ok]
        d = yg - yg.mean()
        sst = float(np.dot(d, d))
        score = []
        for a in members:
            cv, n = prepared[a]
            count = np.bincount(cv, minlength=n).astype(np.float64)
            nz = count > 0
            score.append((cv, n, nz, count[nz]))
        q_obs = [_null_q(d, sst, *sc) for sc in score]
        q_null = np.empty((len(members), int(n_perm)))
        rng = np.random.default_rng(seed)
        for p in range(int(n_perm)):
            dp = rng.permutation(d)
            for m, sc in enumerate(score):
                q_null[m, p] = _null_q(dp, sst, *sc)
            if on_perm is not None and first:
                on_perm(1)
        first = False
        for m, a in enumerate(members):
            qn = q_null[m]
            pv = (1.0 + np.count_nonzero(qn >= q_obs[m])) / (n_perm + 1.0)
            out[a] = PermutationNull(
                q_observed=q_obs[m],
                q_null=qn,
                q_quantile=float(np.quantile(qn, quantile)) if n_perm else float("nan"),
                p_value=float(pv),
                n_strata=int(np.count_nonzero(score[m][2])),
            )
    return out  # type: ignore[return-value]


def _null_q(
    values: NDArray[np.float64],
    sst: float,
    codes: NDArray[np.intp],
    n_codes: int,
    nz: NDArray[np.bool_],
    count_nz: NDArray[np.float64],
) -> float:
    """q of centred values over fixed strata: ``SSB / SST = sum_h s_h^2 / n_h / SST``."""
    s = np.bincount(codes, weights=values, minlength=n_codes)[nz]
    return float(np.sum(s * s / count_nz) / sst) if sst > 0 else float("nan")
