"""Geographical detector (geodetector) kernels: factor, interaction, risk and ecological detectors.

Everything here is computed from per-stratum *sufficient statistics*: counts, sums and sums of
squared deviations from the stratum mean (``M2``). These combine exactly and associatively across
chunks (Chan, Golub & LeVeque 1979), so the same finalize step serves an in-memory array and a Dask
chunk -> combine -> finalize reduction over hundreds of millions of pixels
(:mod:`ncp_subsidence.stages.geodetector`). Pure numpy/scipy; no dask, no xarray, no I/O.

The q-statistic of a stratification h = 1..L of N samples (Wang et al. 2010, Eq. 1) is

    q = 1 - SSW / SST = SSB / SST,   SSB = sum_h N_h (mean_h - mean)^2,

computed here as ``SSB / SST``. That needs only counts and sums per stratum once SST (one number per
sample set) is known, so crossed strata for the interaction detector cost two ``bincount`` passes.

Many sample sets with one layout (the repeated draws of the sampling design) go through
:func:`batch_stats_many` and :func:`finalize_batches`: each set gets exactly the result of
:func:`batch_stats` and :func:`finalize_batch`, with the F-test tails of every set and detector
in one vectorised call (``scipy.stats`` costs much more per call than per value).

Conventions where the reference implementations differ
-------------------------------------------------------
``convention="R"`` (default) reproduces the CRAN R package ``geodetector`` (Xu, Hou, Wang & Yin;
``factor_detector``/``interaction_detector``); ``convention="pypi"`` reproduces PyPI
``geodetector`` 0.2.0 (which follows the R packages ``GD`` and ``gdverse`` for the p-value).

================================  =====================================  =====================================
item                              R ``geodetector`` (``"R"``)            PyPI ``geodetector`` 0.2.0 (``"pypi"``)
================================  =====================================  =====================================
strata with one sample            kept: in N, L and lambda; 0 in SSW     dropped with their samples (N, L, SST
                                                                         recomputed on the rest)
variance in lambda (Wang 2016)    sample variance ``var(y)`` (ddof=1)    population variance (ddof=0)
p-value                           ``pf(F, L-1, N-L, ncp, lower=F)``      ``1 - ncf.cdf``; 1 if q <= 0, 0 if q >= 1
fewer than 2 strata               error (here: q = 0, p NaN, a warning)  q = 0, p = 1
interaction ties                  ``q12 <= min`` -> nonlinear weaken;    ``q12 < min`` -> nonlinear weaken;
                                  ``q12 >= max`` -> bi-variable enhance  ``q12 <= max`` -> uni-variable weaken;
                                  (so "independent" is never reported)   independent if ``|q12-q1-q2| < 1e-10``
================================  =====================================  =====================================

``interaction_convention="wang2010"`` applies the table of docs/science.md 7.4 (closed uni-variable
interval, independence within a tolerance, default 1e-3). The ecological detector has its own
``convention`` (:func:`ecological_from_ssw`): Wang et al. (2010) Eq. 5 with a one-sided F test by
default (as gdverse), two-sided for PyPI, and the R package's q-ratio rule on request.
Constant y (SST = 0) gives q = NaN with a :class:`~ncp_subsidence.errors.DataWarning` under every
convention (PyPI returns q = NaN and p = 1).

The p-value of the non-central F test depends on the *offset* of y: the non-centrality parameter
of Wang, Zhang & Fu (2016, Eq. 7), ``lambda = [sum_h mean_h^2 - (sum_h sqrt(N_h) mean_h)^2 / N] /
sigma^2``, uses raw stratum means, so adding a constant to y (another reference, another unit with
a different zero such as degC vs K) changes lambda and the p-value while q and F do not change.
A pure rescaling of y (mm/a vs m/a) leaves it unchanged. The central F p-value
(``p_value_central``) is offset-invariant and is reported beside it.

References
----------
Wang JF, Li XH, Christakos G, Liao YL, Zhang T, Gu X, Zheng XY. 2010. Geographical detectors-based
health risk assessment and its application in the neural tube defects study of the Heshun Region,
China. Int. J. Geogr. Inf. Sci. 24(1):107-127.

Wang JF, Zhang TL, Fu BJ. 2016. A measure of spatial stratified heterogeneity. Ecol. Indic.
67:250-256.

Chan TF, Golub GH, LeVeque RJ. 1979. Updating formulae and a pairwise algorithm for computing
sample variances. Stanford CS report STAN-CS-79-773 (the parallel combine of M2).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats as _sps

from ncp_subsidence.errors import DataError, DataWarning

__all__ = [
    "INTERACTION_LABELS",
    "BatchStats",
    "EcologicalResult",
    "FactorResult",
    "GeodetectorResult",
    "InteractionResult",
    "RiskResult",
    "StratumStats",
    "batch_stats",
    "batch_stats_many",
    "classify_interaction",
    "combine_batch_stats",
    "combine_stats",
    "ecological_detector",
    "ecological_from_ssw",
    "encode_strata",
    "factor_detector",
    "factor_from_stats",
    "factor_pairs",
    "factor_q",
    "finalize_batch",
    "finalize_batches",
    "geodetector_batch",
    "interaction_detector",
    "interaction_from_stats",
    "noncentral_f_pvalue",
    "combine_packed",
    "packed_size",
    "q_needs_m2",
    "unpack_batch",
    "risk_detector",
    "risk_from_stats",
    "stratum_stats",
]

Convention = Literal["R", "pypi"]
InteractionConvention = Literal["R", "pypi", "wang2010"]

#: Interaction types, numbered as in PyPI ``geodetector`` (``_types.INTERACTION_TYPES``).
INTERACTION_LABELS: dict[int, str] = {
    0: "Weaken, nonlinear",
    1: "Weaken, uni-variable",
    2: "Enhance, bi-variable",
    3: "Independent",
    4: "Enhance, nonlinear",
}

_CONVENTIONS: dict[str, dict[str, str]] = {
    "R": {"singletons": "keep", "lambda_variance": "sample"},
    "pypi": {"singletons": "drop", "lambda_variance": "population"},
}


# --------------------------------------------------------------------------------------------
# Sufficient statistics
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StratumStats:
    """Per-stratum sufficient statistics of y.

    Attributes
    ----------
    count : ndarray of int64, shape (n_codes,)
        Number of valid samples in each stratum.
    total : ndarray of float64, shape (n_codes,)
        Sum of ``y - shift`` in each stratum (units of y).
    m2 : ndarray of float64, shape (n_codes,), or None
        Sum of squared deviations from the stratum mean (units of y squared). ``None`` where only
        counts and sums were gathered (crossed strata of the interaction detector).
    n_dropped : int
        Samples dropped because y was not finite or the code was out of range (missing).
    shift : float
        The constant subtracted from y before summing (keeps sums accurate for offset data).
    """

    count: NDArray[np.int64]
    total: NDArray[np.float64]
    m2: NDArray[np.float64] | None
    n_dropped: int = 0
    shift: float = 0.0

    @property
    def n_codes(self) -> int:
        """Number of stratum codes (including empty ones)."""
        return int(self.count.shape[-1])

    @property
    def n_samples(self) -> int:
        """Number of valid samples."""
        return int(self.count.sum())


def _as_codes(codes: ArrayLike) -> NDArray[np.intp]:
    arr = np.asarray(codes)
    if arr.dtype.kind not in "iub":
        raise DataError(
            f"stratum codes must be integers, got dtype {arr.dtype}; "
            "encode categories with encode_strata() or discretize() first"
        )
    return arr.astype(np.intp, copy=False)


def _with_ones(yc: NDArray[np.float64]) -> NDArray[np.complex128]:
    """``yc + 1j``: one ``add.at`` over it accumulates sums (real) and counts (imaginary)."""
    yz = np.empty(yc.shape, dtype=np.complex128)
    yz.real = yc
    yz.imag = 1.0
    return yz


def _group_stats(
    yz: NDArray[np.complex128],
    codes: NDArray[np.intp],
    n_codes: int,
    *,
    with_m2: bool,
    work: NDArray[np.float64] | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64] | None]:
    """Counts, sums and (two-pass) M2 of already-valid, already-shifted samples.

    ``yz`` is ``y - shift + 1j`` (:func:`_with_ones`): a single ``np.add.at`` pass gives the
    per-stratum sums in its real part and the counts (exact integers below 2**53) in its
    imaginary part. ``np.add.at`` on intp indices accumulates in element order, exactly as
    ``np.bincount`` does. ``work`` is an optional float64 buffer shaped like ``yz``.
    """
    acc = np.zeros(n_codes, dtype=np.complex128)
    np.add.at(acc, codes, yz)
    count = np.rint(acc.imag).astype(np.int64)
    total = acc.real.copy()
    if not with_m2:
        return count, total, None
    mean = total / np.maximum(count, 1)
    dev = np.empty(yz.shape, dtype=np.float64) if work is None else work
    np.take(mean, codes, out=dev)
    np.subtract(yz.real, dev, out=dev)
    np.multiply(dev, dev, out=dev)
    m2 = np.zeros(n_codes, dtype=np.float64)
    np.add.at(m2, codes, dev)
    return count, total, m2


def stratum_stats(
    y: ArrayLike,
    codes: ArrayLike,
    n_codes: int,
    *,
    shift: float = 0.0,
    with_m2: bool = True,
) -> StratumStats:
    """Per-stratum counts, sums and sums of squared deviations of y.

    Parameters
    ----------
    y : array_like of float, shape (n,)
        Response values (any units). Non-finite values are dropped and counted.
    codes : array_like of int, shape (n,)
        Stratum code of each sample in ``[0, n_codes)``; codes outside that range (``-1`` marks a
        missing factor value, as :func:`ncp_subsidence.kernels.discretize.discretize` writes) are
        dropped and counted.
    n_codes : int
        Number of possible codes (length of the outputs).
    shift : float, optional
        Constant subtracted from y before summing; pass a value near the mean of y for data with a
        large offset. Every partial result that is combined must use the same shift.
    with_m2 : bool, optional
        Also compute M2 by a second pass over the samples (exact, no ``sum(y^2)`` cancellation).

    Returns
    -------
    StratumStats
    """
    y = np.asarray(y, dtype=np.float64).ravel()
    c = _as_codes(codes).ravel()
    if y.shape != c.shape:
        raise DataError(f"y and codes differ in size: {y.size} vs {c.size}")
    if n_codes < 1:
        raise DataError(f"n_codes must be at least 1, got {n_codes}")
    valid = np.isfinite(y) & (c >= 0) & (c < n_codes)
    n_dropped = int(y.size - np.count_nonzero(valid))
    if n_dropped:
        y, c = y[valid], c[valid]
    yz = _with_ones(y - shift)
    count, total, m2 = _group_stats(yz, c, n_codes, with_m2=with_m2)
    return StratumStats(count, total, m2, n_dropped=n_dropped, shift=float(shift))


def _chan_merge(
    count: NDArray, total: NDArray, m2: NDArray | None
) -> tuple[NDArray, NDArray, NDArray | None]:
    """Merge statistics stacked along axis 0 (shape (m, ...)) into one (shape (...)).

    Multi-way form of Chan, Golub & LeVeque (1979): ``M2 = sum_i M2_i + sum_i n_i (mean_i -
    mean)^2``, a sum of non-negative terms, exact in exact arithmetic and associative.
    """
    n = count.sum(axis=0)
    s = total.sum(axis=0)
    if m2 is None:
        return n, s, None
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, s / np.maximum(n, 1), 0.0)
        mean_i = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    d = mean_i - mean
    m2_out = m2.sum(axis=0) + (count * d * d).sum(axis=0)
    return n, s, m2_out


def combine_stats(*parts: StratumStats) -> StratumStats:
    """Combine statistics of disjoint sample sets exactly (Chan et al. 1979).

    Parameters
    ----------
    *parts : StratumStats
        Partial statistics with the same ``n_codes`` and ``shift``.

    Returns
    -------
    StratumStats
        Statistics of the union of the samples. The operation is associative and commutative up
        to floating-point rounding.
    """
    if not parts:
        raise DataError("combine_stats needs at least one StratumStats")
    shifts = {p.shift for p in parts}
    if len(shifts) != 1:
        raise DataError(f"cannot combine statistics computed with different shifts: {shifts}")
    sizes = {p.n_codes for p in parts}
    if len(sizes) != 1:
        raise DataError(f"cannot combine statistics with different numbers of codes: {sizes}")
    with_m2 = all(p.m2 is not None for p in parts)
    count = np.stack([p.count for p in parts])
    total = np.stack([p.total for p in parts])
    m2 = np.stack([p.m2 for p in parts]) if with_m2 else None  # type: ignore[misc]
    n, s, m = _chan_merge(count, total, m2)
    return StratumStats(
        n.astype(np.int64),
        s,
        m,
        n_dropped=sum(p.n_dropped for p in parts),
        shift=parts[0].shift,
    )


# --------------------------------------------------------------------------------------------
# Significance
# --------------------------------------------------------------------------------------------


def noncentral_f_pvalue(f_stat: float, dfn: float, dfd: float, noncentrality: float) -> float:
    """Upper-tail probability of the non-central F distribution (R ``pf(..., lower.tail=FALSE)``).

    Parameters
    ----------
    f_stat : float
        Observed F statistic.
    dfn, dfd : float
        Numerator (L - 1) and denominator (N - L) degrees of freedom.
    noncentrality : float
        Non-centrality parameter lambda >= 0 (Wang, Zhang & Fu 2016, Eq. 7).

    Returns
    -------
    float
        ``P(F' > f_stat)``; 0 for an infinite statistic, NaN where undefined.
    """
    if not (np.isfinite(dfn) and np.isfinite(dfd)) or dfn <= 0 or dfd <= 0 or np.isnan(f_stat):
        return float("nan")
    if np.isinf(f_stat):
        return 0.0
    nc = max(float(noncentrality), 0.0)
    return float(_sps.ncf.sf(f_stat, dfn, dfd, nc))


# --------------------------------------------------------------------------------------------
# Factor detector
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FactorResult:
    """Result of the factor detector for one stratification.

    Attributes
    ----------
    q : float
        Share of the variance of y explained by the strata, in [0, 1]; NaN if y is constant.
    f_stat : float
        ``(N - L) / (L - 1) * q / (1 - q)``.
    p_value : float
        Upper tail of the non-central F(L - 1, N - L; lambda) (Wang, Zhang & Fu 2016).
    p_value_central : float
        Upper tail of the central F(L - 1, N - L) (the one-way ANOVA test).
    noncentrality : float
        lambda of Wang, Zhang & Fu (2016, Eq. 7) with the convention's variance.
    n_strata : int
        L, the strata that enter the test (non-empty; singletons excluded when dropped).
    n_samples : int
        N, the samples that enter the test.
    n_dropped : int
        Samples dropped because y or the factor was missing.
    n_singleton : int
        Strata with a single sample (kept or dropped according to the convention).
    convention : str
        ``"R"`` or ``"pypi"``, or ``"custom"`` when options were overridden.
    """

    q: float
    f_stat: float
    p_value: float
    p_value_central: float
    noncentrality: float
    n_strata: int
    n_samples: int
    n_dropped: int = 0
    n_singleton: int = 0
    convention: str = "R"


def _resolve(convention: str, singletons: str | None, lambda_variance: str | None):
    if convention not in _CONVENTIONS:
        raise DataError(f"unknown convention {convention!r}; use one of {sorted(_CONVENTIONS)}")
    base = _CONVENTIONS[convention]
    s = singletons or base["singletons"]
    v = lambda_variance or base["lambda_variance"]
    if s not in ("keep", "drop"):
        raise DataError(f"singletons must be 'keep' or 'drop', got {s!r}")
    if v not in ("sample", "population"):
        raise DataError(f"lambda_variance must be 'sample' or 'population', got {v!r}")
    label = convention if (s, v) == (base["singletons"], base["lambda_variance"]) else "custom"
    return s, v, label


def _ssb(count: NDArray, total: NDArray) -> tuple[float, float]:
    """Between-strata sum of squares and the grand mean (shifted frame) of non-empty strata."""
    n = count.sum()
    if n == 0:
        return 0.0, float("nan")
    grand = total.sum() / n
    nz = count > 0
    mean_h = total[nz] / count[nz]
    d = mean_h - grand
    return float(np.dot(count[nz], d * d)), float(grand)


class _FactorParts(NamedTuple):
    """A factor detector up to its p-values (filled by :func:`_with_pvalues`, many at once)."""

    q: float
    f_stat: float
    dfn: float
    dfd: float
    lam: float
    common: dict
    p: float | None  # set where the F test is not run (None: non-central F of f_stat)
    pc: float | None


def factor_from_stats(
    stats: StratumStats,
    *,
    sst: float | None = None,
    convention: Convention = "R",
    singletons: Literal["keep", "drop"] | None = None,
    lambda_variance: Literal["sample", "population"] | None = None,
    warn: bool = True,
) -> FactorResult:
    """Finalize the factor detector from per-stratum statistics.

    Parameters
    ----------
    stats : StratumStats
        Statistics of y by stratum (from :func:`stratum_stats` or a Dask reduction).
    sst : float, optional
        Total sum of squares of the same samples. Required when ``stats.m2`` is None; otherwise
        ``SST = sum(m2) + SSB`` is used.
    convention : {"R", "pypi"}
        Preset for ``singletons`` and ``lambda_variance`` (see the module docstring).
    singletons : {"keep", "drop"}, optional
        Override: keep strata with one sample (R) or drop them and their samples (PyPI).
    lambda_variance : {"sample", "population"}, optional
        Override: variance of y in lambda (R: sample; PyPI, GD, gdverse: population).
    warn : bool
        Emit :class:`~ncp_subsidence.errors.DataWarning` for undefined results.

    Returns
    -------
    FactorResult
    """
    modes = _resolve(convention, singletons, lambda_variance)
    parts = _factor_parts(stats, sst, convention, modes, warn, stacklevel=3)
    return _with_pvalues([parts])[0]


def factor_q(
    stats: StratumStats,
    *,
    sst: float | None = None,
    convention: Convention = "R",
    singletons: Literal["keep", "drop"] | None = None,
    lambda_variance: Literal["sample", "population"] | None = None,
) -> float:
    """q of :func:`factor_from_stats` (the same number), without its F test.

    For many q where nothing else is wanted (the sensitivity sweep): the tail probabilities
    are the costly part of :func:`factor_from_stats`. No warnings.
    """
    modes = _resolve(convention, singletons, lambda_variance)
    return _factor_parts(stats, sst, convention, modes, False).q


def q_needs_m2(convention: Convention = "R", singletons: str | None = None) -> bool:
    """Whether q needs the per-stratum M2 (for :func:`factor_q`).

    Only when singletons are dropped (the PyPI convention): SST is then rebuilt from the SSW and
    SSB of the strata that stay. Otherwise counts, sums and the samples' SST suffice.
    """
    return _resolve(convention, singletons, None)[0] == "drop"


def _factor_parts(
    stats: StratumStats,
    sst: float | None,
    convention: str,
    modes: tuple[str, str, str],
    warn: bool,
    stacklevel: int = 2,
) -> _FactorParts:
    """Everything of :func:`factor_from_stats` but the F-test tail probabilities."""
    s_mode, v_mode, label = modes
    count = np.asarray(stats.count, dtype=np.float64)
    total = np.asarray(stats.total, dtype=np.float64)
    n_single = int(np.count_nonzero(count == 1))
    ssb_all, _ = _ssb(count, total)
    if stats.m2 is not None:
        ssw = float(np.sum(stats.m2))
        sst_all = ssw + ssb_all if sst is None else float(sst)
    else:
        if sst is None:
            raise DataError("factor_from_stats needs sst when the statistics carry no m2")
        sst_all = float(sst)
        ssw = max(sst_all - ssb_all, 0.0)
    nan = float("nan")
    if s_mode == "drop":
        keep = count >= 2
        count_u, total_u = count[keep], total[keep]
        ssb, _ = _ssb(count_u, total_u)
        sst_u = ssw + ssb  # singletons contribute nothing to SSW
    else:
        count_u, total_u = count[count > 0], total[count > 0]
        ssb, sst_u = ssb_all, sst_all
    n = int(count_u.sum())
    n_strata = int(count_u.size)
    common = dict(
        n_strata=n_strata,
        n_samples=n,
        n_dropped=int(stats.n_dropped),
        n_singleton=n_single,
        convention=label,
    )
    if n == 0 or not sst_u > 0.0:
        if warn:
            why = "no valid samples" if n == 0 else "y is constant (total sum of squares is 0)"
            warnings.warn(
                f"factor detector: q is undefined because {why}; returning NaN. "
                "Check the sample selection and the response variable.",
                DataWarning,
                stacklevel=stacklevel,
            )
        return _FactorParts(nan, nan, nan, nan, nan, common, nan, nan)
    if n_strata < 2:
        if warn:
            warnings.warn(
                f"factor detector: only {n_strata} stratum with samples "
                f"({'after dropping singletons' if s_mode == 'drop' else 'in the factor'}); "
                "q = 0 and the F test is undefined. Use more classes or another factor.",
                DataWarning,
                stacklevel=stacklevel,
            )
        p = 1.0 if s_mode == "drop" else nan
        return _FactorParts(0.0, nan, nan, nan, nan, common, p, p)
    q = min(max(ssb / sst_u, 0.0), 1.0)
    dfn, dfd = n_strata - 1, n - n_strata
    ssw_u = sst_u - ssb if stats.m2 is None else ssw
    if dfd <= 0:
        f_stat = nan
    elif ssw_u <= 0.0:
        f_stat = float("inf")
    else:
        f_stat = (dfd / dfn) * (ssb / ssw_u)
    mean_h = total_u / count_u + stats.shift
    var_y = sst_u / (n - 1) if v_mode == "sample" else sst_u / n
    lam_num = float(np.dot(mean_h, mean_h) - np.dot(np.sqrt(count_u), mean_h) ** 2 / n)
    lam = max(lam_num, 0.0) / var_y if var_y > 0 else nan
    p_fixed = None
    if convention == "pypi" and s_mode == "drop" and q <= 0.0:
        p_fixed = 1.0
    elif convention == "pypi" and s_mode == "drop" and q >= 1.0:
        p_fixed = 0.0
    return _FactorParts(q, float(f_stat), dfn, dfd, float(lam), common, p_fixed, None)


def _with_pvalues(parts: Sequence[_FactorParts]) -> list[FactorResult]:
    """:class:`FactorResult` of many factor detectors, their F tails in one vectorised call each.

    The tails are those of :func:`noncentral_f_pvalue` (non-central) and ``scipy.stats.f.sf``
    (central), element by element: one call over many detectors instead of one per detector.
    """
    todo = [i for i, pt in enumerate(parts) if pt.pc is None]
    p_val = [pt.p for pt in parts]
    pc_val = [pt.pc for pt in parts]
    if todo:
        f = np.array([parts[i].f_stat for i in todo], dtype=np.float64)
        dfn = np.array([parts[i].dfn for i in todo], dtype=np.float64)
        dfd = np.array([parts[i].dfd for i in todo], dtype=np.float64)
        lam = np.array([parts[i].lam for i in todo], dtype=np.float64)
        p = _noncentral_f_pvalues(f, dfn, dfd, lam)
        pc = np.full(f.shape, np.nan)
        pc[np.isinf(f)] = 0.0
        fin = np.isfinite(f)
        if fin.any():
            pc[fin] = _sps.f.sf(f[fin], dfn[fin], dfd[fin])
        for a, i in enumerate(todo):
            if p_val[i] is None:
                p_val[i] = float(p[a])
            pc_val[i] = float(pc[a])
    return [
        FactorResult(pt.q, pt.f_stat, p_val[i], pc_val[i], pt.lam, **pt.common)  # type: ignore[arg-type]
        for i, pt in enumerate(parts)
    ]


def _noncentral_f_pvalues(
    f_stat: NDArray[np.float64],
    dfn: NDArray[np.float64],
    dfd: NDArray[np.float64],
    noncentrality: NDArray[np.float64],
) -> NDArray[np.float64]:
    """:func:`noncentral_f_pvalue` element by element, in one call of ``scipy.stats.ncf.sf``."""
    ok = np.isfinite(dfn) & np.isfinite(dfd) & (dfn > 0) & (dfd > 0) & ~np.isnan(f_stat)
    p = np.full(f_stat.shape, np.nan)
    p[ok & np.isinf(f_stat)] = 0.0
    run = ok & np.isfinite(f_stat)
    if run.any():
        p[run] = _sps.ncf.sf(f_stat[run], dfn[run], dfd[run], np.maximum(noncentrality[run], 0.0))
    return p


def encode_strata(x: ArrayLike) -> tuple[NDArray[np.intp], NDArray]:
    """Encode stratum labels as integer codes, with -1 for missing values.

    Parameters
    ----------
    x : array_like, shape (n,)
        Category labels: integers (negative values mean missing), floats (NaN means missing) or
        strings.

    Returns
    -------
    codes : ndarray of intp, shape (n,)
        Code of each sample in ``[0, n_labels)``; -1 where missing.
    labels : ndarray, shape (n_labels,)
        Sorted distinct labels; ``labels[codes[i]] == x[i]``.
    """
    arr = np.asarray(x).ravel()
    if arr.dtype.kind == "f":
        valid = np.isfinite(arr)
    elif arr.dtype.kind in "iu":
        valid = arr >= 0
    elif arr.dtype.kind == "b":
        valid = np.ones(arr.shape, dtype=bool)
    else:
        valid = np.array([v is not None and v == v for v in arr], dtype=bool)
    labels, inv = np.unique(arr[valid], return_inverse=True)
    codes = np.full(arr.shape, -1, dtype=np.intp)
    codes[valid] = inv
    return codes, labels


def factor_detector(
    y: ArrayLike,
    x: ArrayLike,
    *,
    convention: Convention = "R",
    singletons: Literal["keep", "drop"] | None = None,
    lambda_variance: Literal["sample", "population"] | None = None,
) -> FactorResult:
    """Factor detector: how much of the variance of y the strata of x explain (q-statistic).

    Parameters
    ----------
    y : array_like of float, shape (n,)
        Response (e.g. vertical velocity, mm/a). Non-finite values are dropped and counted.
    x : array_like, shape (n,)
        Stratum label of each sample (categorical or already discretized; see
        :func:`encode_strata` for missing values).
    convention, singletons, lambda_variance
        See :func:`factor_from_stats` and the module docstring.

    Returns
    -------
    FactorResult

    References
    ----------
    Wang et al. (2010) Eq. 1 (q); Wang, Zhang & Fu (2016) Eq. 6-7 (non-central F test).
    """
    y = np.asarray(y, dtype=np.float64).ravel()
    codes, labels = encode_strata(x)
    if y.shape != codes.shape:
        raise DataError(f"y and x differ in size: {y.size} vs {codes.size}")
    finite = y[np.isfinite(y)]
    shift = float(finite.mean()) if finite.size else 0.0
    st = stratum_stats(y, codes, max(labels.size, 1), shift=shift)
    return factor_from_stats(
        st, convention=convention, singletons=singletons, lambda_variance=lambda_variance
    )


# --------------------------------------------------------------------------------------------
# Interaction detector
# --------------------------------------------------------------------------------------------


def classify_interaction(
    q12: float,
    q1: float,
    q2: float,
    *,
    convention: InteractionConvention = "R",
    tol: float | None = None,
) -> int:
    """Classify the interaction of two factors (Wang et al. 2010, Table 1).

    Parameters
    ----------
    q12, q1, q2 : float
        q of the crossed strata and of each factor alone.
    convention : {"R", "pypi", "wang2010"}
        How boundary cases are resolved (see the module docstring). ``"wang2010"`` is the table of
        docs/science.md 7.4: nonlinear weaken if ``q12 < min``, uni-variable weaken if ``min <= q12 <=
        max``, independent if ``|q12 - (q1 + q2)| <= tol``, bi-variable enhance if ``q12 < q1 +
        q2``, nonlinear enhance otherwise.
    tol : float, optional
        Tolerance of the independence test: ``"wang2010"`` default 1e-3, ``"pypi"`` 1e-10. Not
        used by ``"R"``, which tests exact equality and then lets its bi-variable test
        (``q12 >= max``) override it, so R never reports "independent".

    Returns
    -------
    int
        Key of :data:`INTERACTION_LABELS` (0-4), or -1 if any q is NaN.
    """
    if np.isnan(q12) or np.isnan(q1) or np.isnan(q2):
        return -1
    lo, hi, both = min(q1, q2), max(q1, q2), q1 + q2
    if convention == "R":
        # R geodetector, interaction_detector.r, statement by statement (later ones override).
        out = -1
        if q12 <= q1 and q12 <= q2:
            out = 0
        if lo < q12 < hi:
            out = 1
        if q12 == both:
            out = 3
        nonlinear = q12 > both
        if nonlinear:
            out = 4
        if not nonlinear and q12 >= hi:
            out = 2
        return out
    if convention == "pypi":
        t = 1e-10 if tol is None else tol
        if q12 < lo:
            return 0
        if q12 <= hi:
            return 1
        if q12 < both:
            return 2
        if abs(q12 - both) < t:
            return 3
        return 4
    if convention == "wang2010":
        t = 1e-3 if tol is None else tol
        if q12 < lo:
            return 0
        if q12 <= hi:
            return 1
        if abs(q12 - both) <= t:
            return 3
        if q12 < both:
            return 2
        return 4
    raise DataError(f"unknown interaction convention {convention!r}; use 'R', 'pypi' or 'wang2010'")


@dataclass(frozen=True)
class InteractionResult:
    """Result of the interaction detector for one pair of factors.

    Attributes
    ----------
    q12, q1, q2 : float
        q of the crossed strata (X1 ∩ X2) and of each factor, on the same samples.
    interaction_type : int
        Key of :data:`INTERACTION_LABELS`; -1 if undefined.
    label : str
        Its text.
    n_strata12 : int
        Non-empty crossed strata entering q12.
    n_samples : int
        Samples used (valid in y and both factors).
    n_dropped : int
        Samples dropped because y or a factor was missing.
    factor12 : FactorResult
        Full factor-detector result of the crossed strata (F and p-values).
    """

    q12: float
    q1: float
    q2: float
    interaction_type: int
    label: str
    n_strata12: int
    n_samples: int
    n_dropped: int
    factor12: FactorResult | None = field(default=None, repr=False)


def interaction_from_stats(
    stats1: StratumStats,
    stats2: StratumStats,
    stats12: StratumStats,
    *,
    sst: float | None = None,
    convention: Convention = "R",
    interaction_convention: InteractionConvention | None = None,
    tol: float | None = None,
    singletons: Literal["keep", "drop"] | None = None,
    lambda_variance: Literal["sample", "population"] | None = None,
    warn: bool = True,
) -> InteractionResult:
    """Finalize the interaction detector from the statistics of X1, X2 and X1 ∩ X2.

    All three must be over the same samples. ``sst`` is required when ``stats12.m2`` is None.
    ``interaction_convention`` defaults to ``convention``. See :func:`classify_interaction`.
    """
    if sst is None:
        base = stats1 if stats1.m2 is not None else stats2
        if base.m2 is None:
            raise DataError("interaction_from_stats needs sst or statistics that carry m2")
        ssb, _ = _ssb(base.count.astype(np.float64), base.total)
        sst = float(np.sum(base.m2)) + ssb
    kw = dict(convention=convention, singletons=singletons, lambda_variance=lambda_variance)
    r1 = factor_from_stats(stats1, sst=sst, warn=warn, **kw)
    r2 = factor_from_stats(stats2, sst=sst, warn=False, **kw)
    r12 = factor_from_stats(stats12, sst=sst, warn=False, **kw)
    t = classify_interaction(
        r12.q, r1.q, r2.q, convention=interaction_convention or convention, tol=tol
    )
    return InteractionResult(
        q12=r12.q,
        q1=r1.q,
        q2=r2.q,
        interaction_type=t,
        label=INTERACTION_LABELS.get(t, "Undefined"),
        n_strata12=r12.n_strata,
        n_samples=r12.n_samples,
        n_dropped=int(stats12.n_dropped),
        factor12=r12,
    )


def interaction_detector(
    y: ArrayLike,
    x1: ArrayLike,
    x2: ArrayLike,
    *,
    convention: Convention = "R",
    interaction_convention: InteractionConvention | None = None,
    tol: float | None = None,
    singletons: Literal["keep", "drop"] | None = None,
    lambda_variance: Literal["sample", "population"] | None = None,
) -> InteractionResult:
    """Interaction detector: q of the crossed strata X1 ∩ X2 against q of X1 and of X2.

    Parameters
    ----------
    y : array_like of float, shape (n,)
        Response; samples where y, x1 or x2 is missing are dropped from all three q (as PyPI
        ``geodetector`` does) and counted.
    x1, x2 : array_like, shape (n,)
        Stratum labels of the two factors.
    convention, interaction_convention, tol, singletons, lambda_variance
        See :func:`interaction_from_stats`.

    Returns
    -------
    InteractionResult

    References
    ----------
    Wang et al. (2010), Section 2.4 and Table 1.
    """
    y = np.asarray(y, dtype=np.float64).ravel()
    c1, l1 = encode_strata(x1)
    c2, l2 = encode_strata(x2)
    if not (y.shape == c1.shape == c2.shape):
        raise DataError(f"y, x1, x2 differ in size: {y.size}, {c1.size}, {c2.size}")
    n1, n2 = max(l1.size, 1), max(l2.size, 1)
    bs = batch_stats(y, [c1, c2], [n1, n2], pairs=[(0, 1)])
    return finalize_batch(
        bs,
        convention=convention,
        interaction_convention=interaction_convention,
        tol=tol,
        singletons=singletons,
        lambda_variance=lambda_variance,
    ).interactions[0]


# --------------------------------------------------------------------------------------------
# Risk detector
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RiskResult:
    """Risk detector: stratum means and Welch t-tests between every pair of strata.

    Attributes
    ----------
    strata : ndarray of int, shape (L,)
        Codes of the non-empty strata.
    count : ndarray of int, shape (L,)
    mean : ndarray of float, shape (L,)
        Mean of y in each stratum (units of y).
    variance : ndarray of float, shape (L,)
        Sample variance (ddof=1) of y in each stratum; NaN for a single sample.
    t_stat, df, p_value : ndarray of float, shape (L, L)
        Welch t statistic ``(mean_i - mean_j) / sqrt(v_i/n_i + v_j/n_j)``, Welch-Satterthwaite
        degrees of freedom, two-sided p-value. NaN on the diagonal and where a stratum has one
        sample or both variances are 0.
    significant : ndarray of bool, shape (L, L)
        ``p_value < alpha``.
    alpha : float
    """

    strata: NDArray[np.intp]
    count: NDArray[np.int64]
    mean: NDArray[np.float64]
    variance: NDArray[np.float64]
    t_stat: NDArray[np.float64]
    df: NDArray[np.float64]
    p_value: NDArray[np.float64]
    significant: NDArray[np.bool_]
    alpha: float


def risk_from_stats(
    stats: StratumStats, *, alpha: float = 0.05, round_df: bool = False
) -> RiskResult:
    """Finalize the risk detector from per-stratum statistics (which must carry m2).

    Parameters
    ----------
    stats : StratumStats
    alpha : float
        Significance level of the two-sided tests.
    round_df : bool
        Round the Welch degrees of freedom to integers, as the R package does (it then compares
        ``t`` with ``qt(0.975, df)``); scipy and PyPI ``geodetector`` do not round.

    Returns
    -------
    RiskResult

    References
    ----------
    Wang et al. (2010), Section 2.1 (risk detector, Eq. 2); Welch (1947).
    """
    if stats.m2 is None:
        raise DataError("the risk detector needs per-stratum m2; compute stats with with_m2=True")
    nz = np.flatnonzero(stats.count > 0)
    n = stats.count[nz].astype(np.float64)
    mean = stats.total[nz] / n + stats.shift
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.where(n > 1, stats.m2[nz] / (n - 1), np.nan)
        se2 = var / n
        s = se2[:, None] + se2[None, :]
        t = (mean[:, None] - mean[None, :]) / np.sqrt(s)
        df = s**2 / (se2[:, None] ** 2 / (n[:, None] - 1) + se2[None, :] ** 2 / (n[None, :] - 1))
    bad = ~np.isfinite(t) | ~np.isfinite(df) | (s <= 0)
    np.fill_diagonal(bad, True)
    t = np.where(bad, np.nan, t)
    df = np.where(bad, np.nan, df)
    if round_df:
        df = np.round(df)
    p = np.full(t.shape, np.nan)
    ok = ~bad
    p[ok] = 2.0 * _sps.t.sf(np.abs(t[ok]), df[ok])
    return RiskResult(
        strata=nz.astype(np.intp),
        count=stats.count[nz].astype(np.int64),
        mean=mean,
        variance=var,
        t_stat=t,
        df=df,
        p_value=p,
        significant=np.where(ok, p < alpha, False),
        alpha=float(alpha),
    )


def risk_detector(
    y: ArrayLike, x: ArrayLike, *, alpha: float = 0.05, round_df: bool = False
) -> RiskResult:
    """Risk detector on plain arrays; ``strata`` index the sorted distinct labels of x.

    See :func:`risk_from_stats`.
    """
    y = np.asarray(y, dtype=np.float64).ravel()
    codes, labels = encode_strata(x)
    finite = y[np.isfinite(y)]
    st = stratum_stats(
        y, codes, max(labels.size, 1), shift=float(finite.mean()) if finite.size else 0.0
    )
    return risk_from_stats(st, alpha=alpha, round_df=round_df)


# --------------------------------------------------------------------------------------------
# Ecological detector
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EcologicalResult:
    """Ecological detector: do two factors differ in their effect on y?

    Attributes
    ----------
    f_stat : float
        Test statistic (see :func:`ecological_from_ssw` for each convention).
    df1, df2 : int
        Degrees of freedom.
    p_value : float
        Upper-tail (one-sided) or two-sided p-value.
    significant : bool
    convention : str
    """

    f_stat: float
    df1: int
    df2: int
    p_value: float
    significant: bool
    convention: str


def ecological_from_ssw(
    ssw_a: float,
    n_a: int,
    ssw_b: float,
    n_b: int,
    *,
    q_a: float | None = None,
    q_b: float | None = None,
    alpha: float = 0.05,
    convention: Literal["wang2010", "pypi", "R"] = "wang2010",
) -> EcologicalResult:
    """Ecological detector from the within-strata sums of squares of two factors.

    Parameters
    ----------
    ssw_a, ssw_b : float
        Within-strata sums of squares of y under factor A and factor B (units of y squared).
    n_a, n_b : int
        Samples behind each.
    q_a, q_b : float, optional
        q of each factor; needed only for ``convention="R"``.
    alpha : float
        Significance level.
    convention : {"wang2010", "pypi", "R"}
        ``"wang2010"`` (default; also gdverse): ``F = [N_a (N_b - 1) SSW_a] / [N_b (N_a - 1)
        SSW_b]`` with F(N_a - 1, N_b - 1), one-sided upper-tail p (A explains less than B).
        ``"pypi"``: the same F on the same samples, two-sided p. ``"R"`` (R ``geodetector``):
        ``F = q_b / q_a`` or its inverse, whichever is larger, significant if above
        ``qf(0.9, N - 1, N - 1)``; the p-value reported is the upper tail of that ratio.

    Returns
    -------
    EcologicalResult

    References
    ----------
    Wang et al. (2010), Section 2.3 (ecological detector, Eq. 5).
    """
    df1, df2 = int(n_a) - 1, int(n_b) - 1
    nan = float("nan")
    if df1 <= 0 or df2 <= 0:
        return EcologicalResult(nan, df1, df2, nan, False, convention)
    if convention == "R":
        if q_a is None or q_b is None:
            raise DataError("the R convention of the ecological detector needs q_a and q_b")
        with np.errstate(divide="ignore", invalid="ignore"):
            f_stat = float(max(np.float64(q_b) / q_a, np.float64(q_a) / q_b))
        if np.isnan(f_stat):
            return EcologicalResult(nan, df1, df2, nan, False, convention)
        p = float(_sps.f.sf(f_stat, df1, df2))
        return EcologicalResult(f_stat, df1, df2, p, bool(f_stat > _sps.f.ppf(0.9, df1, df2)), "R")
    num = n_a * (n_b - 1) * float(ssw_a)
    den = n_b * (n_a - 1) * float(ssw_b)
    if den == 0.0 and num == 0.0:
        return EcologicalResult(nan, df1, df2, nan, False, convention)
    f_stat = float("inf") if den == 0.0 else num / den
    if convention == "wang2010":
        p = float(_sps.f.sf(f_stat, df1, df2)) if np.isfinite(f_stat) else 0.0
    elif convention == "pypi":
        if not np.isfinite(f_stat):
            p = 0.0
        elif f_stat >= 1:
            p = min(2.0 * float(_sps.f.sf(f_stat, df1, df2)), 1.0)
        else:
            p = min(2.0 * float(_sps.f.cdf(f_stat, df1, df2)), 1.0)
    else:
        raise DataError(
            f"unknown ecological convention {convention!r}; use 'wang2010', 'pypi' or 'R'"
        )
    return EcologicalResult(f_stat, df1, df2, p, bool(p < alpha), convention)


def ecological_detector(
    y: ArrayLike,
    x_a: ArrayLike,
    x_b: ArrayLike,
    *,
    alpha: float = 0.05,
    convention: Literal["wang2010", "pypi", "R"] = "wang2010",
) -> EcologicalResult:
    """Ecological detector on plain arrays (samples missing in y, x_a or x_b are dropped).

    See :func:`ecological_from_ssw`.
    """
    y = np.asarray(y, dtype=np.float64).ravel()
    ca, la = encode_strata(x_a)
    cb, lb = encode_strata(x_b)
    bs = batch_stats(y, [ca, cb], [max(la.size, 1), max(lb.size, 1)], pairs=[])
    fa, fb = bs.factor_stats
    n = fa.n_samples
    qa = factor_from_stats(fa, sst=bs.sst, warn=False).q
    qb = factor_from_stats(fb, sst=bs.sst, warn=False).q
    return ecological_from_ssw(
        float(np.sum(fa.m2)),  # type: ignore[arg-type]
        n,
        float(np.sum(fb.m2)),  # type: ignore[arg-type]
        n,
        q_a=qa,
        q_b=qb,
        alpha=alpha,
        convention=convention,
    )


# --------------------------------------------------------------------------------------------
# Batch: many factors and pairs in one pass (the chunk step of the Dask reduction)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchStats:
    """Statistics of y for several factors and crossed pairs over one common sample set.

    A sample is used only if y and *every* factor are valid (listwise deletion, docs/science.md 7.2
    step 3), so all q share one SST.

    Attributes
    ----------
    n_codes : tuple of int
        Codes per factor.
    pairs : tuple of (int, int)
        Factor index pairs; crossed code ``c_i * n_codes[j] + c_j``.
    y_count, y_total, y_m2 : float
        Statistics of all used samples (``y_m2`` is SST).
    factor_stats : tuple of StratumStats
        Per factor, with m2 (unless computed with ``with_m2=False``).
    pair_count, pair_total : tuple of ndarray, shape (n_codes[i] * n_codes[j],)
        Per pair, counts and sums only.
    n_dropped : int
    shift : float
    """

    n_codes: tuple[int, ...]
    pairs: tuple[tuple[int, int], ...]
    y_count: float
    y_total: float
    y_m2: float
    factor_stats: tuple[StratumStats, ...]
    pair_count: tuple[NDArray[np.int64], ...]
    pair_total: tuple[NDArray[np.float64], ...]
    n_dropped: int
    shift: float

    @property
    def sst(self) -> float:
        """Total sum of squares of y over the used samples."""
        return float(self.y_m2)

    def pair_stats(self, k: int) -> StratumStats:
        """Crossed statistics of pair ``k`` as a :class:`StratumStats` (no m2)."""
        return StratumStats(
            self.pair_count[k], self.pair_total[k], None, n_dropped=self.n_dropped, shift=self.shift
        )

    # packing into one flat float64 vector, for the Dask reduction --------------------------
    def pack(self) -> NDArray[np.float64]:
        """Flatten into one float64 vector (layout fixed by ``n_codes`` and ``pairs``)."""
        parts = [np.array([self.n_dropped, self.y_count, self.y_total, self.y_m2], np.float64)]
        for st in self.factor_stats:
            parts += [st.count.astype(np.float64), st.total, st.m2]  # type: ignore[list-item]
        for c, t in zip(self.pair_count, self.pair_total):
            parts += [c.astype(np.float64), t]
        return np.concatenate(parts)


def packed_size(n_codes: Sequence[int], pairs: Sequence[tuple[int, int]]) -> int:
    """Length of :meth:`BatchStats.pack` for a layout."""
    return 4 + 3 * int(sum(n_codes)) + 2 * int(sum(n_codes[i] * n_codes[j] for i, j in pairs))


def _unpack_many(
    packed: NDArray[np.float64], n_codes: Sequence[int], pairs: Sequence[tuple[int, int]]
) -> dict[str, list[NDArray] | NDArray]:
    """Split packed vectors of shape (m, size) into their fields (views, shape (m, ...))."""
    pos = 4
    head = packed[:, :4]
    fac = []
    for n in n_codes:
        fac.append(
            (
                packed[:, pos : pos + n],
                packed[:, pos + n : pos + 2 * n],
                packed[:, pos + 2 * n : pos + 3 * n],
            )
        )
        pos += 3 * n
    pr = []
    for i, j in pairs:
        m = n_codes[i] * n_codes[j]
        pr.append((packed[:, pos : pos + m], packed[:, pos + m : pos + 2 * m]))
        pos += 2 * m
    return {"head": head, "factors": fac, "pairs": pr}


def combine_packed(
    packed: NDArray[np.float64], n_codes: Sequence[int], pairs: Sequence[tuple[int, int]]
) -> NDArray[np.float64]:
    """Exactly combine packed batch statistics stacked along axis 0; returns one packed vector.

    Counts and sums add; M2 combine by Chan et al. (1979). Associative, so any tree of partial
    combines gives the same result up to rounding.
    """
    packed = np.asarray(packed, dtype=np.float64).reshape(-1, packed.shape[-1])
    u = _unpack_many(packed, n_codes, pairs)
    head = u["head"]
    n, s, m2 = _chan_merge(head[:, 1:2], head[:, 2:3], head[:, 3:4])
    out = [np.array([head[:, 0].sum(), n[0], s[0], m2[0]])]  # type: ignore[index]
    for c, t, m in u["factors"]:
        n, s, m2 = _chan_merge(c, t, m)
        out += [n, s, m2]  # type: ignore[list-item]
    for c, t in u["pairs"]:
        out += [c.sum(axis=0), t.sum(axis=0)]
    return np.concatenate(out)


def unpack_batch(
    packed: NDArray[np.float64],
    n_codes: Sequence[int],
    pairs: Sequence[tuple[int, int]],
    shift: float,
) -> BatchStats:
    """Inverse of :meth:`BatchStats.pack` (one vector, or several that are combined first)."""
    packed = np.asarray(packed, dtype=np.float64)
    if packed.ndim > 1 and packed.reshape(-1, packed.shape[-1]).shape[0] > 1:
        packed = combine_packed(packed, n_codes, pairs)
    packed = packed.reshape(1, -1)
    u = _unpack_many(packed, n_codes, pairs)
    head = u["head"][0]
    nd = int(np.rint(head[0]))
    fstats = tuple(
        StratumStats(
            np.rint(c[0]).astype(np.int64), t[0].copy(), m[0].copy(), n_dropped=nd, shift=shift
        )
        for c, t, m in u["factors"]
    )
    return BatchStats(
        n_codes=tuple(int(n) for n in n_codes),
        pairs=tuple((int(i), int(j)) for i, j in pairs),
        y_count=float(head[1]),
        y_total=float(head[2]),
        y_m2=float(head[3]),
        factor_stats=fstats,
        pair_count=tuple(np.rint(c[0]).astype(np.int64) for c, _ in u["pairs"]),
        pair_total=tuple(t[0].copy() for _, t in u["pairs"]),
        n_dropped=nd,
        shift=float(shift),
    )


def factor_pairs(k: int, pairs: Sequence[tuple[int, int]] | None = None) -> list[tuple[int, int]]:
    """The crossed factor pairs of the interaction detector (one definition for every caller).

    Parameters
    ----------
    k : int
        Number of factors.
    pairs : sequence of (i, j), optional
        Pairs asked for; returned as a list of ``(int, int)``. Default: all ``k (k - 1) / 2``
        pairs ``i < j`` in lexicographic order (``itertools.combinations``).

    Returns
    -------
    list of (int, int)
        Factor index pairs; the crossed stratum code of pair ``(i, j)`` is
        ``c_i * n_codes[j] + c_j``.
    """
    if pairs is None:
        return list(itertools.combinations(range(int(k)), 2))
    return [(int(i), int(j)) for i, j in pairs]


def batch_stats(
    y: ArrayLike,
    codes: Sequence[ArrayLike] | NDArray,
    n_codes: Sequence[int],
    *,
    pairs: Sequence[tuple[int, int]] | None = None,
    shift: float | None = None,
    with_m2: bool = True,
    blas_sst: bool = True,
) -> BatchStats:
    """Statistics for several factors and their crossed pairs in one pass over the samples.

    This is the chunk step of the Dask reduction and the core of :func:`geodetector_batch`.

    Parameters
    ----------
    y : array_like of float, shape (n,) or any shape
        Response.
    codes : sequence of k arrays of int, each shaped like y (or an array of shape (k, ...))
        Stratum codes per factor; codes outside ``[0, n_codes[i])`` are missing.
    n_codes : sequence of int, length k
    pairs : sequence of (i, j), optional
        Factor pairs to cross; default all ``k (k - 1) / 2`` pairs.
    shift : float, optional
        Constant subtracted from y before summing; default the mean of the used samples (use a
        fixed value when partial results are to be combined).
    with_m2 : bool, optional
        Also the per-stratum M2 of every factor (default). False keeps counts and sums only,
        which is all q needs under singletons kept (SSB and SST); such statistics cannot be
        packed for the Dask reduction, and the F test falls back to ``SST - SSB``.
    blas_sst : bool, optional
        The total sum of squares SST as a BLAS dot product (default), or single-threaded
        (``numpy.einsum``): the same sum up to its last bits (a threaded BLAS splits long sums
        over its threads), without the BLAS threads, which a busy machine makes wait
        milliseconds for every call.

    Returns
    -------
    BatchStats
    """
    part = _response_part(y, codes, n_codes, shift, blas_sst)
    return _strata_part(part, n_codes, factor_pairs(len(part.codes), pairs), with_m2)


def batch_stats_many(
    ys: Sequence[ArrayLike],
    codes: Sequence[Sequence[ArrayLike] | NDArray],
    n_codes: Sequence[int],
    *,
    pairs: Sequence[tuple[int, int]] | None = None,
    with_m2: bool = True,
    blas_sst: bool = True,
) -> list[BatchStats]:
    """:func:`batch_stats` of many sample sets with one layout (e.g. the draws of a design).

    Equal, set by set, to ``[batch_stats(y, c, n_codes, pairs=pairs, with_m2=with_m2) for y, c
    in zip(ys, codes)]``: the same arithmetic on each set. The response part of every set (its
    shift and its total sum of squares, a BLAS dot product) is done first, set after set, then
    the strata of every set: one run of BLAS calls keeps its threads at work instead of waking
    them for each set in turn (milliseconds each on a busy machine).

    Parameters
    ----------
    ys : sequence of m array_like of float
        Response of each set.
    codes : sequence of m sequences of k int arrays
        Stratum codes of each set, each shaped like its y.
    n_codes, pairs, with_m2, blas_sst
        As :func:`batch_stats`, for every set.

    Returns
    -------
    list of BatchStats
        One per set, in order.
    """
    if len(ys) != len(codes):
        raise DataError(f"{len(ys)} response arrays but {len(codes)} sets of codes")
    parts = [_response_part(y, c, n_codes, None, blas_sst) for y, c in zip(ys, codes)]
    pl = factor_pairs(len(parts[0].codes) if parts else len(n_codes), pairs)
    return [_strata_part(part, n_codes, pl, with_m2) for part in parts]


@dataclass
class _ResponsePart:
    """The valid samples of one set, shifted, with their sums (the first half of batch_stats)."""

    yc: NDArray[np.float64]
    work: NDArray[np.float64]
    codes: list[NDArray]
    n_valid: int
    n_dropped: int
    shift: float
    y_m2: float
    y_total: float


def _response_part(
    y: ArrayLike,
    codes: Sequence[ArrayLike] | NDArray,
    n_codes: Sequence[int],
    shift: float | None,
    blas_sst: bool = True,
) -> _ResponsePart:
    y = np.asarray(y, dtype=np.float64).ravel()
    cl = [np.asarray(c).ravel() for c in codes]
    k = len(cl)
    if len(n_codes) != k:
        raise DataError(f"{k} code arrays but {len(n_codes)} entries in n_codes")
    for i, c in enumerate(cl):
        if c.dtype.kind not in "iub":
            raise DataError(
                f"codes[{i}] must be integers, got dtype {c.dtype}; "
                "encode categories with encode_strata() or discretize() first"
            )
        if c.shape != y.shape:
            raise DataError(f"codes[{i}] has {c.size} samples, y has {y.size}")
    valid = np.isfinite(y)
    for c, n in zip(cl, n_codes):
        if c.size and (c.min() < 0 or c.max() >= n):
            valid &= (c >= 0) & (c < n)
    n_valid = int(np.count_nonzero(valid))
    n_dropped = int(y.size - n_valid)
    if n_dropped:
        y = y[valid]
        cl = [c[valid] for c in cl]
    if shift is None:
        shift = float(y.mean()) if y.size else 0.0
    yc = y - shift if shift else y
    if yc.size:
        work = yc - yc.mean()
        y_m2 = float(np.dot(work, work) if blas_sst else np.einsum("i,i->", work, work))
    else:
        work = np.empty(0)
        y_m2 = 0.0
    y_total = float(yc.sum())
    return _ResponsePart(yc, work, cl, n_valid, n_dropped, float(shift), y_m2, y_total)


def _strata_part(
    part: _ResponsePart,
    n_codes: Sequence[int],
    pairs: list[tuple[int, int]],
    with_m2: bool,
) -> BatchStats:
    cl, n_dropped, shift = part.codes, part.n_dropped, part.shift
    yz = _with_ones(part.yc)
    work = part.work
    # Small unsigned codes make the crossed keys cheap; add.at wants intp indices.
    small = max(n_codes, default=1) <= 256 and all(
        n_codes[i] * n_codes[j] <= 65536 for i, j in pairs
    )
    idx = np.empty(yz.shape, dtype=np.intp)
    fstats = []
    for c, n in zip(cl, n_codes):
        if c.dtype == np.intp:
            ci = c
        else:
            idx[...] = c
            ci = idx
        cnt, tot, m2 = _group_stats(yz, ci, int(n), with_m2=with_m2, work=work)
        fstats.append(StratumStats(cnt, tot, m2, n_dropped=n_dropped, shift=shift))
    if small and pairs:
        cl = [c.astype(np.uint16, copy=False) for c in cl]
    key16 = np.empty(yz.shape, dtype=np.uint16) if small and pairs else None
    pc, pt = [], []
    for i, j in pairs:
        nj = int(n_codes[j])
        if key16 is not None:
            np.multiply(cl[i], nj, out=key16)
            np.add(key16, cl[j], out=key16)
            idx[...] = key16
        else:
            idx[...] = cl[i]
            idx *= nj
            idx += cl[j]
        cnt, tot, _ = _group_stats(yz, idx, int(n_codes[i]) * nj, with_m2=False)
        pc.append(cnt)
        pt.append(tot)
    return BatchStats(
        n_codes=tuple(int(n) for n in n_codes),
        pairs=tuple(pairs),
        y_count=float(part.n_valid),
        y_total=part.y_total,
        y_m2=part.y_m2,
        factor_stats=tuple(fstats),
        pair_count=tuple(pc),
        pair_total=tuple(pt),
        n_dropped=n_dropped,
        shift=shift,
    )


def combine_batch_stats(*parts: BatchStats) -> BatchStats:
    """Combine :class:`BatchStats` of disjoint sample sets (same layout and shift) exactly."""
    if not parts:
        raise DataError("combine_batch_stats needs at least one BatchStats")
    p0 = parts[0]
    for p in parts[1:]:
        if (p.n_codes, p.pairs, p.shift) != (p0.n_codes, p0.pairs, p0.shift):
            raise DataError("cannot combine BatchStats with different layouts or shifts")
    packed = np.stack([p.pack() for p in parts])
    return unpack_batch(
        combine_packed(packed, p0.n_codes, p0.pairs), p0.n_codes, p0.pairs, p0.shift
    )


@dataclass(frozen=True)
class GeodetectorResult:
    """Factor, interaction and (optionally) risk and ecological results over one sample set.

    Attributes
    ----------
    factors : tuple of FactorResult
        One per factor, in input order.
    interactions : tuple of InteractionResult
        One per pair, in the order of ``pairs``.
    pairs : tuple of (int, int)
    risk : tuple of RiskResult
        One per factor.
    ecological : dict of (int, int) -> EcologicalResult
        For each ordered pair (i, j), i != j: does factor i explain less than factor j?
    n_samples, n_dropped : int
    """

    factors: tuple[FactorResult, ...]
    interactions: tuple[InteractionResult, ...]
    pairs: tuple[tuple[int, int], ...]
    risk: tuple[RiskResult, ...]
    ecological: dict[tuple[int, int], EcologicalResult]
    n_samples: int
    n_dropped: int


def finalize_batch(
    bs: BatchStats,
    *,
    convention: Convention = "R",
    interaction_convention: InteractionConvention | None = None,
    tol: float | None = None,
    singletons: Literal["keep", "drop"] | None = None,
    lambda_variance: Literal["sample", "population"] | None = None,
    risk: bool = False,
    ecological: bool = False,
    alpha: float = 0.05,
    ecological_convention: Literal["wang2010", "pypi", "R"] = "wang2010",
) -> GeodetectorResult:
    """Finalize all detectors from :class:`BatchStats` (the finalize step of the reduction)."""
    return finalize_batches(
        [bs],
        convention=convention,
        interaction_convention=interaction_convention,
        tol=tol,
        singletons=singletons,
        lambda_variance=lambda_variance,
        risk=risk,
        ecological=ecological,
        alpha=alpha,
        ecological_convention=ecological_convention,
        _stacklevel=3,
    )[0]


def finalize_batches(
    batches: Sequence[BatchStats],
    *,
    convention: Convention = "R",
    interaction_convention: InteractionConvention | None = None,
    tol: float | None = None,
    singletons: Literal["keep", "drop"] | None = None,
    lambda_variance: Literal["sample", "population"] | None = None,
    risk: bool | Sequence[bool] = False,
    ecological: bool | Sequence[bool] = False,
    alpha: float = 0.05,
    ecological_convention: Literal["wang2010", "pypi", "R"] = "wang2010",
    _stacklevel: int = 2,
) -> list[GeodetectorResult]:
    """:func:`finalize_batch` of many sample sets (e.g. the repeated draws of the design) at once.

    Equal, result by result, to ``[finalize_batch(bs, ...) for bs in batches]``: the same
    arithmetic per detector, but the F-test tails of every factor and crossed pair of every set
    are computed in one vectorised call (``scipy.stats`` has a large cost per call and there are
    ``len(batches) * (k + k (k - 1) / 2)`` detectors).

    Parameters
    ----------
    batches : sequence of BatchStats
        One per sample set (layouts may differ).
    risk, ecological : bool or sequence of bool
        Run the risk / ecological detectors on every set, or on the sets flagged (one flag per
        set, e.g. only on the first draw).
    convention, interaction_convention, tol, singletons, lambda_variance, alpha, ecological_convention
        As :func:`finalize_batch`.

    Returns
    -------
    list of GeodetectorResult
        One per set, in order.
    """
    m = len(batches)
    risk_on = [bool(risk)] * m if isinstance(risk, bool) else [bool(r) for r in risk]
    eco_on = (
        [bool(ecological)] * m if isinstance(ecological, bool) else [bool(e) for e in ecological]
    )
    if len(risk_on) != m or len(eco_on) != m:
        raise DataError(f"risk and ecological flags must number {m}, one per set")
    modes = _resolve(convention, singletons, lambda_variance)
    parts: list[_FactorParts] = []
    layout = []
    for bs in batches:
        n_used = int(np.rint(bs.y_count))
        if n_used > 0 and not bs.sst > 0:
            warnings.warn(
                "geodetector: y is constant over the used samples; every q is NaN.",
                DataWarning,
                stacklevel=_stacklevel,
            )
        first = len(parts)
        parts += [_factor_parts(st, bs.sst, convention, modes, False) for st in bs.factor_stats]
        parts += [
            _factor_parts(bs.pair_stats(k), bs.sst, convention, modes, False)
            for k in range(len(bs.pairs))
        ]
        layout.append(first)
    done = _with_pvalues(parts)
    out = []
    for b, bs in enumerate(batches):
        first = layout[b]
        k = len(bs.factor_stats)
        frs = tuple(done[first : first + k])
        irs = []
        for kk, (i, j) in enumerate(bs.pairs):
            r12 = done[first + k + kk]
            t = classify_interaction(
                r12.q, frs[i].q, frs[j].q, convention=interaction_convention or convention, tol=tol
            )
            irs.append(
                InteractionResult(
                    q12=r12.q,
                    q1=frs[i].q,
                    q2=frs[j].q,
                    interaction_type=t,
                    label=INTERACTION_LABELS.get(t, "Undefined"),
                    n_strata12=r12.n_strata,
                    n_samples=r12.n_samples,
                    n_dropped=bs.n_dropped,
                    factor12=r12,
                )
            )
        n_used = int(np.rint(bs.y_count))
        rks = (
            tuple(risk_from_stats(st, alpha=alpha) for st in bs.factor_stats) if risk_on[b] else ()
        )
        eco: dict[tuple[int, int], EcologicalResult] = {}
        if eco_on[b]:
            for i in range(k):
                for j in range(k):
                    if i == j:
                        continue
                    eco[(i, j)] = ecological_from_ssw(
                        float(np.sum(bs.factor_stats[i].m2)),  # type: ignore[arg-type]
                        n_used,
                        float(np.sum(bs.factor_stats[j].m2)),  # type: ignore[arg-type]
                        n_used,
                        q_a=frs[i].q,
                        q_b=frs[j].q,
                        alpha=alpha,
                        convention=ecological_convention,
                    )
        out.append(
            GeodetectorResult(
                factors=frs,
                interactions=tuple(irs),
                pairs=bs.pairs,
                risk=rks,
                ecological=eco,
                n_samples=n_used,
                n_dropped=bs.n_dropped,
            )
        )
    return out


def geodetector_batch(
    y: ArrayLike,
    codes: Sequence[ArrayLike] | NDArray,
    n_codes: Sequence[int],
    *,
    pairs: Sequence[tuple[int, int]] | None = None,
    **finalize_kwargs,
) -> GeodetectorResult:
    """All factor detectors and pairwise interactions over one sample set, in memory.

    Parameters
    ----------
    y : array_like of float
        Response (e.g. vertical velocity, mm/a).
    codes : sequence of int arrays shaped like y
        Stratum codes per factor (-1 or out of range = missing; such samples are dropped from
        every detector and counted).
    n_codes : sequence of int
    pairs : sequence of (i, j), optional
        Default: all pairs.
    **finalize_kwargs
        Passed to :func:`finalize_batch` (``convention``, ``risk``, ``ecological``, ...).

    Returns
    -------
    GeodetectorResult
    """
    return finalize_batch(batch_stats(y, codes, n_codes, pairs=pairs), **finalize_kwargs)
