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
detector on it (:class:`DrawResult`); :func:`permutation_nulls` gives the null of every factor and
crossed pair of one draw.

Pure numpy on flattened arrays: y, lat, lon (degrees, cell centres) and factor codes.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ncp_subsidence.errors import DataError, DataWarning
from ncp_subsidence.kernels.discretize import sample_codes
from ncp_subsidence.kernels.geodetector import (
    GeodetectorResult,
    batch_stats,
    factor_pairs,
    finalize_batch,
    geodetector_batch,
)

__all__ = [
    "sweep_columns",
    "DrawResult",
    "PermutationNull",
    "SampleDraw",
    "cell_index",
    "draw_sample",
    "mean_sd",
    "permutation_null",
    "permutation_nulls",
    "repeated_draws",
    "run_draws",
    "sensitivity_sweep",
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
    rng = np.random.default_rng(seed)
    sub = thin_to_cells(yv, cv, ok & (yv <= threshold))
    n_sub_cells = int(sub.size)
    if cap is not None and sub.size > cap:
        sub = np.sort(rng.choice(sub, size=int(cap), replace=False))
    non = thin_to_cells(yv, cv, ok & (yv > threshold))
    non = non[~np.isin(cv[non], cv[sub])]
    n_non_cells = int(non.size)
    want = round(ratio * sub.size)
    if want > non.size:
        warnings.warn(
            f"sampling design: {want} non-subsidence points wanted (ratio {ratio} x "
            f"{sub.size}), only {non.size} cells available; taking all of them. Lower the ratio "
            "or the spacing.",
            DataWarning,
            stacklevel=2,
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
    **finalize_kwargs,
) -> tuple[list[DrawResult], int]:
    """Repeat the [H25] draw ``n_draws`` times (seeds ``seed, seed + 1, ...``) and run the detectors.

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
    valid = np.isfinite(y) & np.all(np.isfinite(factors), axis=0)
    cells = cell_index(lat, lon, min_spacing)
    k = factors.shape[0]
    pairs = factor_pairs(k) if interactions else []
    out: list[DrawResult] = []
    n_short = 0
    for b in range(int(n_draws)):
        s = int(seed) + b
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DataWarning)
            d = draw_sample(
                y,
                lat,
                lon,
                threshold=threshold,
                ratio=ratio,
                min_spacing=min_spacing,
                cap=cap,
                seed=s,
                valid=valid,
                cells=cells,
            )
        for w in caught:
            if issubclass(w.category, DataWarning):
                n_short += 1
                log.info("geodetector draw (seed %d): %s", s, w.message)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if d.index.size < 3:
            log.warning(
                "geodetector draw (seed %d, threshold %g): only %d points; skipped",
                s,
                threshold,
                d.index.size,
            )
            continue
        ys = y[d.index]
        codes, n_codes, used = [], [], []
        for i in range(k):
            c, n, e = sample_codes(
                ys,
                factors[i, d.index],
                None if edges is None else edges[i],
                method=method,
                n_strata=n_strata,
                sample_size=sample_size,
                seed=s,
                min_stratum_size=min_stratum_size,
            )
            codes.append(c)
            n_codes.append(n)
            used.append(e)
        detail = detail_first and not out
        res = geodetector_batch(
            ys, codes, n_codes, pairs=pairs, risk=detail, ecological=detail, **finalize_kwargs
        )
        out.append(DrawResult(d, res, codes, n_codes, used))
    return out, n_short


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
) -> tuple[list[PermutationNull], list[PermutationNull]]:
    """Permutation null of q for every factor and every crossed pair of one draw.

    Crossed strata use the code ``c_i * n_j + c_j`` (docs/science.md 7.4 caveat).
    """
    fac = [permutation_null(y, c, n, n_perm=n_perm, seed=seed) for c, n in zip(codes, n_codes)]
    inter = [
        permutation_null(
            y,
            codes[i].astype(np.int64) * n_codes[j] + codes[j],
            n_codes[i] * n_codes[j],
            n_perm=n_perm,
            seed=seed,
        )
        for i, j in pairs
    ]
    return fac, inter
