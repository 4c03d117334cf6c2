"""SBAS network inversion: design matrices, connectivity, batched per-pixel inversion.

Pure numpy/scipy on plain arrays with the pair axis last. The pixel-wise solver never loops over
pixels in Python: every pixel is solved with its own valid interferograms through batched,
banded normal equations (see :func:`invert_network`).

Conventions (docs/design.md section 3): interferogram phase ``phi = phase(secondary) -
phase(reference)`` in radians; LOS displacement ``d = -lambda / (4 pi) * phi`` in mm, positive
toward the satellite, relative to the first date; velocities in mm/yr with 365.25-day years.

References
----------
.. [1] Berardino P, Fornaro G, Lanari R, Sansosti E (2002). A new algorithm for surface
   deformation monitoring based on small baseline differential SAR interferograms. IEEE TGRS
   40(11):2375-2383, Eq. 3-5 (velocity parameterisation, SVD minimum-norm solution).
.. [2] Pepe A, Lanari R (2006). On the extension of the minimum cost flow algorithm for phase
   unwrapping of multitemporal differential SAR interferograms. IEEE TGRS 44(9):2374-2383
   (temporal coherence).
.. [3] López-Quiroz P, Doin M-P, Tupin F, Briole P, Nicolas J-M (2009). Time series analysis of
   Mexico City subsidence constrained by radar interferometry. J. Appl. Geophys. 69(1):1-15;
   Doin M-P et al. (2011). Presentation of the small baseline NSBAS processing chain. Fringe 2011
   (NSBAS temporal constraint).
.. [4] Yunjun Z, Fattahi H, Amelung F (2019). Small baseline InSAR time series analysis:
   unwrapping error correction and noise reduction. Computers & Geosciences 133:104331
   (weights, temporal coherence, triplet closure, reference point).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import scipy.sparse

from ncp_subsidence.choices import SBAS_WEIGHTS
from ncp_subsidence.errors import ConfigError, DataError

__all__ = [
    "SENTINEL1_WAVELENGTH",
    "WEIGHTINGS",
    "NetworkInversion",
    "NetworkPruning",
    "Weighting",
    "closure_phase",
    "decimal_year_offsets",
    "default_min_pairs",
    "design_matrix_phase",
    "design_matrix_velocity",
    "invert_network",
    "network_components",
    "nsbas_basis",
    "pair_weights",
    "prune_network",
    "reference_phase",
    "select_reference",
    "unwrapping_error_mask",
    "validate_network",
    "weighting",
]

#: Sentinel-1 C-band wavelength in metres.
SENTINEL1_WAVELENGTH = 0.05546576
#: Days per year for velocities (docs/design.md section 3).
DAYS_PER_YEAR = 365.25
#: Coherence is clipped to this range before it becomes a weight (docs/science.md 1.2).
COHERENCE_CLIP = (0.05, 0.99)

Method = Literal["svd", "nsbas"]
#: A name of :data:`WEIGHTINGS` (the config's ``sbas.weights``).
Weights = Literal[SBAS_WEIGHTS]


class NetworkInversion(NamedTuple):
    """Result of :func:`invert_network`; leading shape ``...`` is that of the input pixels.

    Attributes
    ----------
    displacement : ndarray, shape (..., n_date), float32, mm
        LOS displacement relative to the first date, positive toward the satellite.
    velocity : ndarray, shape (...), float32, mm/yr
        OLS slope of ``displacement`` against time in years.
    velocity_std : ndarray, shape (...), float32, mm/yr
        Standard error of that slope from the fit residuals.
    temporal_coherence : ndarray, shape (...), float32, 0-1
        ``|mean_j exp(i (dphi_j - dphi_hat_j))|`` over the pixel's valid pairs.
    rms_residual : ndarray, shape (...), float32, radians
        Root-mean-square interferogram residual over the pixel's valid pairs.
    n_pairs_used : ndarray, shape (...), int32
        Number of valid interferograms of the pixel.
    n_components : ndarray, shape (...), int32
        Connected components of the pixel's valid network (1 = connected).
    """

    displacement: np.ndarray
    velocity: np.ndarray
    velocity_std: np.ndarray
    temporal_coherence: np.ndarray
    rms_residual: np.ndarray
    n_pairs_used: np.ndarray
    n_components: np.ndarray


# ---------------------------------------------------------------------------------------------
# network description
# ---------------------------------------------------------------------------------------------


def decimal_year_offsets(dates: np.ndarray) -> np.ndarray:
    """Time of each acquisition in years (365.25 days) since the first one.

    Parameters
    ----------
    dates : ndarray of datetime64, shape (n_date,)
        Acquisition times, strictly increasing.

    Returns
    -------
    ndarray, shape (n_date,), float64, years
    """
    dates = np.asarray(dates)
    seconds = (dates - dates[0]) / np.timedelta64(1, "s")
    return seconds.astype(np.float64) / (DAYS_PER_YEAR * 86400.0)


def validate_network(
    pairs: np.ndarray, dates: np.ndarray, n_pair: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Check a pair network and return it in canonical form.

    Parameters
    ----------
    pairs : array_like of int, shape (n_pair, 2)
        Indices into ``dates`` of the reference and secondary acquisition of each pair.
    dates : array_like of datetime64, shape (n_date,)
        Acquisition times; must be strictly increasing.
    n_pair : int, optional
        Length of the phase stack's pair axis, checked against ``pairs``.

    Returns
    -------
    pairs : ndarray, shape (n_pair, 2), int64
        Each row ordered (earlier, later).
    sign : ndarray, shape (n_pair,), float64
        ``-1`` where a row was reversed (its phase must be negated), else ``+1``.

    Raises
    ------
    DataError
        For an empty network, a malformed pair array, unknown dates, a pair of one date with
        itself, duplicate pairs, dates that are not datetime64 or not strictly increasing.
    """
    dates = np.asarray(dates)
    if not np.issubdtype(dates.dtype, np.datetime64):
        raise DataError(
            f"dates must be numpy datetime64, got dtype {dates.dtype}; convert with "
            "np.asarray(dates, dtype='datetime64[s]')"
        )
    if dates.ndim != 1 or dates.size < 2:
        raise DataError(
            f"dates must be a 1-D array of at least 2 acquisitions, got shape {dates.shape}"
        )
    if np.any(np.isnat(dates)):
        raise DataError("dates contain NaT; drop the acquisitions without a time")
    steps = np.diff(dates)
    if np.any(steps <= np.timedelta64(0, "s")):
        bad = int(np.argmax(steps <= np.timedelta64(0, "s")))
        raise DataError(
            f"dates must be strictly increasing, but dates[{bad}]={dates[bad]} >= "
            f"dates[{bad + 1}]={dates[bad + 1]}; sort the dates (and remap the pair indices) "
            "and drop duplicates"
        )
    pairs_arr = np.asarray(pairs)
    if pairs_arr.size == 0:
        raise DataError(
            "the interferogram network is empty (0 pairs); at least one pair per date is needed"
        )
    if pairs_arr.ndim != 2 or pairs_arr.shape[1] != 2:
        raise DataError(f"pairs must have shape (n_pair, 2), got {pairs_arr.shape}")
    if not np.issubdtype(pairs_arr.dtype, np.integer):
        raise DataError(
            f"pairs must be integer indices into dates, got dtype {pairs_arr.dtype}; "
            "map acquisition times to indices with np.searchsorted(dates, times)"
        )
    pairs_arr = pairs_arr.astype(np.int64)
    n_date = dates.size
    outside = (pairs_arr < 0) | (pairs_arr >= n_date)
    if np.any(outside):
        row = int(np.argmax(outside.any(axis=1)))
        raise DataError(
            f"pair {row} = {pairs_arr[row].tolist()} names a date outside 0..{n_date - 1}; "
            "every pair must index into dates (add the missing acquisitions to dates)"
        )
    same = pairs_arr[:, 0] == pairs_arr[:, 1]
    if np.any(same):
        row = int(np.argmax(same))
        raise DataError(f"pair {row} = {pairs_arr[row].tolist()} joins a date with itself; drop it")
    sign = np.where(pairs_arr[:, 0] > pairs_arr[:, 1], -1.0, 1.0)
    ordered = np.sort(pairs_arr, axis=1)
    _, first, counts = np.unique(ordered, axis=0, return_index=True, return_counts=True)
    if np.any(counts > 1):
        dup = ordered[first[counts > 1][0]]
        raise DataError(
            f"duplicate pair {dup.tolist()} ({dates[dup[0]]} - {dates[dup[1]]}) appears "
            f"{int(counts[counts > 1][0])} times; keep one interferogram per pair of dates"
        )
    if n_pair is not None and n_pair != ordered.shape[0]:
        raise DataError(
            f"the phase stack has {n_pair} pairs along its last axis but pairs lists "
            f"{ordered.shape[0]}; pass the pair axis last and one row of pairs per interferogram"
        )
    return ordered, sign


def design_matrix_phase(pairs: np.ndarray, n_date: int) -> np.ndarray:
    """Phase-history design matrix ``A`` of ``A phi = dphi`` with ``phi_0 = 0``.

    Parameters
    ----------
    pairs : ndarray of int, shape (n_pair, 2)
        (earlier, later) date indices.
    n_date : int
        Number of acquisitions.

    Returns
    -------
    ndarray, shape (n_pair, n_date - 1), float64
        ``-1`` at the reference date, ``+1`` at the secondary date; the first date's column is
        dropped (docs/science.md 1.2, [H25] Eq. 1-2).
    """
    pairs = np.asarray(pairs)
    a = np.zeros((pairs.shape[0], n_date), dtype=np.float64)
    rows = np.arange(pairs.shape[0])
    a[rows, pairs[:, 0]] -= 1.0
    a[rows, pairs[:, 1]] += 1.0
    return a[:, 1:]


def design_matrix_velocity(pairs: np.ndarray, dates: np.ndarray) -> np.ndarray:
    """Berardino's velocity design matrix ``B`` of ``B v = dphi``.

    Parameters
    ----------
    pairs : ndarray of int, shape (n_pair, 2)
        (earlier, later) date indices.
    dates : ndarray of datetime64, shape (n_date,)
        Acquisition times, strictly increasing.

    Returns
    -------
    ndarray, shape (n_pair, n_date - 1), float64, years
        ``B[j, k] = t_{k+1} - t_k`` if ``s_j <= k < e_j`` else 0, so that ``v`` is the mean phase
        velocity (rad/yr) between consecutive acquisitions.

    References
    ----------
    Berardino et al. (2002), Eq. 3-4.
    """
    pairs = np.asarray(pairs)
    dt = np.diff(decimal_year_offsets(dates))
    k = np.arange(dt.size)
    inside = (k[None, :] >= pairs[:, :1]) & (k[None, :] < pairs[:, 1:2])
    return inside * dt[None, :]


def network_components(pairs: np.ndarray, n_date: int, valid: np.ndarray | None = None):
    """Connected components of each pixel's network of valid pairs, all pixels at once.

    Label propagation with pointer jumping (min-label hooking), vectorised over pixels; the
    number of sweeps grows with the logarithm of the network diameter, not with the pixels.

    Parameters
    ----------
    pairs : ndarray of int, shape (n_pair, 2)
        (earlier, later) date indices.
    n_date : int
        Number of acquisitions.
    valid : ndarray of bool, shape (..., n_pair), optional
        Which pairs each pixel has; all pairs when omitted.

    Returns
    -------
    labels : ndarray of int64, shape (..., n_date)
        For every date, the smallest date index of its component.
    n_components : ndarray of int32, shape (...)
        Number of components (isolated dates count as one each).
    """
    pairs = np.asarray(pairs, dtype=np.int64)
    if valid is None:
        valid = np.ones(pairs.shape[0], dtype=bool)
    valid = np.asarray(valid, dtype=bool)
    lead = valid.shape[:-1]
    v = valid.reshape(-1, valid.shape[-1])
    n_pix = v.shape[0]
    labels = np.broadcast_to(np.arange(n_date, dtype=np.int64), (n_pix, n_date)).copy()
    s, e = pairs[:, 0], pairs[:, 1]
    rows = np.arange(n_pix)[:, None]
    while True:
        low = np.minimum(labels[:, s], labels[:, e])
        low = np.where(v, low, n_date)
        new = labels.copy()
        np.minimum.at(new, (rows, s[None, :]), low)
        np.minimum.at(new, (rows, e[None, :]), low)
        while True:  # pointer jumping: follow labels to their roots
            jumped = np.take_along_axis(new, new, axis=1)
            if np.array_equal(jumped, new):
                break
            new = jumped
        if np.array_equal(new, labels):
            break
        labels = new
    n_comp = (labels == np.arange(n_date)).sum(axis=1).astype(np.int32)
    return labels.reshape(*lead, n_date), n_comp.reshape(lead)


class NetworkPruning(NamedTuple):
    """Result of :func:`prune_network`.

    Attributes
    ----------
    kept : ndarray of int64, shape (n_kept,)
        Indices of the pairs left in the network, in input order.
    dropped : ndarray of int64, shape (n_dropped,)
        Indices of the pairs removed (unusable).
    lost_dates : ndarray of int64, shape (n_lost,)
        Dates that no kept pair touches any more (they leave the network).
    labels : ndarray of int64, shape (n_date,)
        Component of every date in the kept network: the smallest date index of its component
        (a lost date is its own label).
    n_components : int
        Connected components of the kept network over the dates it still has (1 = connected).
    """

    kept: np.ndarray
    dropped: np.ndarray
    lost_dates: np.ndarray
    labels: np.ndarray
    n_components: int


def prune_network(pairs: np.ndarray, n_date: int, usable: np.ndarray) -> NetworkPruning:
    """Remove unusable pairs (e.g. interferograms with no valid pixel) from a network and
    re-check what is left: the dates it loses and whether it is still connected.

    Parameters
    ----------
    pairs : ndarray of int, shape (n_pair, 2)
        Indices into the dates of each pair's reference and secondary acquisition.
    n_date : int
        Number of acquisitions.
    usable : ndarray of bool, shape (n_pair,)
        False for a pair to remove.

    Returns
    -------
    NetworkPruning
        Kept and dropped pair indices, the dates left without any pair, the component label of
        every date in the kept network and the number of components over the remaining dates.
    """
    pairs = np.asarray(pairs, dtype=np.int64)
    usable = np.asarray(usable, dtype=bool)
    if usable.shape != (pairs.shape[0],):
        raise DataError(
            f"usable has shape {usable.shape} but the network has {pairs.shape[0]} pairs; give "
            "one flag per pair"
        )
    kept = np.flatnonzero(usable)
    dropped = np.flatnonzero(~usable)
    touched = np.zeros(n_date, dtype=bool)
    touched[pairs[kept].ravel()] = True
    labels, n_comp = network_components(pairs, n_date, usable)
    lost = np.flatnonzero(~touched)
    return NetworkPruning(kept, dropped, lost, labels, int(n_comp) - lost.size)


def default_min_pairs(n_date: int, n_pair: int, fraction: float = 0.5) -> int:
    """Minimum number of valid pairs per pixel, ``max(N, ceil(fraction M))`` (docs/science.md 1.3).

    ``N = n_date - 1`` unknowns, ``M = n_pair`` interferograms; the default ``fraction`` 0.5 is
    docs/science.md's ``max(N, 0.5 M)`` (``sbas.min_pairs_fraction``).
    """
    return int(max(n_date - 1, math.ceil(fraction * n_pair)))


# ---------------------------------------------------------------------------------------------
# interferogram weightings (one entry per choice of ncp_subsidence.choices.SBAS_WEIGHTS)
# ---------------------------------------------------------------------------------------------


def _coherence_in_place(gamma: np.ndarray, looks: float) -> None:
    """``w = gamma``: the clipped coherence is the weight (nothing to do)."""


def _fisher_in_place(gamma: np.ndarray, looks: float) -> None:
    """``gamma <- 2 L gamma^2 / (1 - gamma^2)`` for clipped coherence, in place."""
    np.square(gamma, out=gamma)
    denom = 1.0 - gamma
    np.multiply(gamma, 2.0 * looks, out=gamma)
    np.divide(gamma, denom, out=gamma)


@dataclass(frozen=True)
class Weighting:
    """One interferogram weighting of the inversion (a small object per choice, after flox's
    ``Aggregation``).

    Attributes
    ----------
    name : str
        The choice, as in :data:`ncp_subsidence.choices.SBAS_WEIGHTS` (``sbas.weights``).
    needs_coherence : bool
        Weights from the coherence stack; False: unit weights (no coherence read).
    uses_looks : bool
        The weight depends on the number of looks ``L`` (which must then be >= 1).
    apply : callable ``(gamma, looks) -> None`` or None
        Turns coherence clipped to :data:`COHERENCE_CLIP` (float64, any shape) into the weights,
        in place; None for unit weights.
    """

    name: str
    needs_coherence: bool
    uses_looks: bool = False
    apply: Callable[[np.ndarray, float], None] | None = None


#: The weightings by name (docs/science.md 1.2): ``none``: ``w = 1`` (Berardino); ``coherence``:
#: ``w = gamma``; ``fisher``: ``w = 2 L gamma^2 / (1 - gamma^2)`` (the inverse Cramér-Rao phase
#: variance). A new weighting is one entry here (and its name in ``choices.SBAS_WEIGHTS``).
WEIGHTINGS: dict[str, Weighting] = {
    w.name: w
    for w in (
        Weighting("none", needs_coherence=False),
        Weighting("coherence", needs_coherence=True, apply=_coherence_in_place),
        Weighting("fisher", needs_coherence=True, uses_looks=True, apply=_fisher_in_place),
    )
}


def weighting(name: str, *, has_coherence: bool = True, looks: float = 1.0) -> Weighting:
    """The :class:`Weighting` called ``name``, checked against the data and options at hand.

    Raises
    ------
    ConfigError
        For an unknown name, a coherence weighting without the coherence stack
        (``has_coherence`` False), or ``looks < 1`` for a weighting that uses the looks.
    """
    found = WEIGHTINGS.get(name)
    if found is None:
        names = [repr(n) for n in WEIGHTINGS]
        raise ConfigError(
            f"weights={name!r} is not known; use {', '.join(names[:-1])} or {names[-1]}"
        )
    if found.needs_coherence and not has_coherence:
        raise ConfigError(
            f"weights={name!r} needs the coherence stack; pass coherence= or use weights='none'"
        )
    if found.uses_looks and not looks >= 1:
        raise ConfigError(f"looks={looks} must be >= 1 for {name.capitalize()} weights")
    return found


def _weights_in_place(gamma: np.ndarray, how: Weighting, looks: float) -> None:
    """Coherence ``gamma`` (float64, any shape) into ``how``'s weights, in place.

    ``gamma`` is clipped to :data:`COHERENCE_CLIP` first; fmax maps NaN (and anything below) to
    the lower clip (as MintPy does). The bounds are given as rows of the last axis: numpy's
    fmax / minimum against a scalar are several times slower than against an array.
    """
    width = gamma.shape[-1:]
    np.fmax(gamma, np.full(width, COHERENCE_CLIP[0]), out=gamma)
    np.minimum(gamma, np.full(width, COHERENCE_CLIP[1]), out=gamma)
    how.apply(gamma, looks)


def pair_weights(
    coherence: np.ndarray | None,
    weights: Weights = "none",
    looks: float = 1.0,
) -> np.ndarray | None:
    """Interferogram weights from spatial coherence (docs/science.md 1.2).

    Parameters
    ----------
    coherence : ndarray, shape (..., n_pair), 0-1, or None
        Spatial coherence; NaN is taken as the lower clip (as MintPy does).
    weights : {"none", "coherence", "fisher"}
        A name of :data:`WEIGHTINGS`. ``none``: ``w = 1`` (Berardino); ``coherence``:
        ``w = gamma``; ``fisher``: ``w = 2 L gamma^2 / (1 - gamma^2)`` (the inverse Cramér-Rao
        phase variance). ``gamma`` is clipped to [0.05, 0.99] first.
    looks : float
        Number of looks ``L`` for ``fisher``.

    Returns
    -------
    ndarray, shape (..., n_pair), float64, or None for ``none``.
    """
    how = weighting(weights, has_coherence=coherence is not None, looks=looks)
    if not how.needs_coherence:
        return None
    gamma = np.array(coherence, dtype=np.float64)  # one float64 copy, then in place
    _weights_in_place(gamma, how, looks)
    return gamma


# ---------------------------------------------------------------------------------------------
# banded LDL^T, vectorised over pixels (pixel axis last)
# ---------------------------------------------------------------------------------------------


def _sum_rows(x: np.ndarray) -> np.ndarray:
    """Sum over the first axis in place by halving (``ceil(log2 k)`` calls); returns ``x[0]``."""
    m = x.shape[0]
    while m > 1:
        h = m // 2
        x[:h] += x[m - h : m]
        m -= h
    return x[0]


def _band_ldl(band: np.ndarray, tol: float, rhs: np.ndarray | None = None):
    """Semidefinite banded LDL^T of many symmetric matrices, vectorised over the last axis.

    ``band[a, i, p]`` holds entry ``(a, a - i)`` of pixel ``p``'s matrix (``i = 0`` is the
    diagonal). The factorisation overwrites ``band``: on return ``band[a, i] = L[a, a - i]`` for
    ``i >= 1`` (unit diagonal implied; the diagonal ``band[:, 0]`` is kept). A pivot
    ``<= tol * diagonal`` is taken as zero: its multipliers and ``inv_d`` are set to zero, which
    yields a least-squares particular solution for consistent systems (``rhs`` in the range of
    the matrix).

    If ``rhs`` (n, m, P) is given, it is overwritten by the solution of ``L z = rhs`` (forward
    substitution done row by row with the factorisation, while the rows are in cache); finish
    with :func:`_band_back`.

    Returns ``inv_d`` (n, P) and ``n_zero`` (P,), the number of zero pivots.
    """
    n, bw1, n_pix = band.shape
    bw = bw1 - 1
    inv_d = np.empty((n, n_pix))
    thresh = np.multiply(band[:, 0], tol)
    zero = np.empty(n_pix, dtype=bool)
    prod = np.empty((bw, n_pix))
    lrow = np.empty((bw, n_pix))
    zprod = None if rhs is None else np.empty((bw, *rhs.shape[1:]))
    for a in range(n):
        k = min(a, bw)
        row = band[a]
        # row[i] <- ld[a, i] = L[a, a-i] D[a-i] = A[a, a-i] - sum_{j=i+1..k} ld[a, j] L[a-i, j-i],
        # for i = k-1 .. 1 (row[k] already is ld[a, k])
        for i in range(k - 1, 0, -1):
            m = k - i
            np.multiply(row[i + 1 : k + 1], band[a - i, 1 : m + 1], out=prod[:m])
            row[i] -= _sum_rows(prod[:m])
        d = inv_d[a]
        if k:
            # L[a, a-i] = ld[a, i] / D[a-i];  D[a] = A[a, a] - sum_i L[a, a-i] ld[a, i]
            lk = np.multiply(row[1 : k + 1], inv_d[a - 1 :: -1][:k], out=lrow[:k])
            np.multiply(lk, row[1 : k + 1], out=prod[:k])
            np.subtract(row[0], _sum_rows(prod[:k]), out=d)
            row[1 : k + 1] = lk
        else:
            d[...] = row[0]
        # a zero pivot gets inv_d = 0, hence zero multipliers below it; its ld entries are then
        # only ever multiplied by those zeros
        np.less_equal(d, thresh[a], out=zero)
        np.copyto(d, np.inf, where=zero)
        np.divide(1.0, d, out=d)
        if zprod is not None and k:
            # z[a] = rhs[a] - sum_i L[a, a-i] z[a-i]
            zk = np.multiply(row[1 : k + 1, None, :], rhs[a - 1 :: -1][:k], out=zprod[:k])
            rhs[a] -= _sum_rows(zk)
    n_zero = np.count_nonzero(inv_d == 0.0, axis=0).astype(np.int32)
    return inv_d, n_zero


def _band_back(lower: np.ndarray, inv_d: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Finish solving ``L D L^T x = rhs`` in place, ``z`` (n, m, P) holding ``L^-1 rhs``.

    ``lower`` and ``inv_d`` are the factors from :func:`_band_ldl`. The back substitution is
    column-oriented (once ``x[a]`` is final it is removed from the rows above), so that ``L``
    is read row by row without copies. Returns ``z``, now ``x``.
    """
    n, bw1, _ = lower.shape
    bw = bw1 - 1
    z *= inv_d[:, None, :]
    prod = np.empty((bw, *z.shape[1:]))
    for a in range(n - 1, 0, -1):
        k = min(bw, a)
        zk = np.multiply(lower[a, 1 : k + 1, None, :], z[a], out=prod[:k])
        z[a - 1 :: -1][:k] -= zk
    return z


# ---------------------------------------------------------------------------------------------
# inversion
# ---------------------------------------------------------------------------------------------


def _cumulative_dt(dt: np.ndarray) -> np.ndarray:
    """(n_date, n_date - 1) matrix T with ``phi = T v`` (``phi_k = sum_{i<k} dt_i v_i``)."""
    n = dt.size
    return np.vstack([np.zeros((1, n)), np.tril(np.ones((n, n))) * dt[None, :]])


def _full_network_operator(
    pairs: np.ndarray,
    t: np.ndarray,
    method: str,
    rcond: float,
    kappa: float,
    seasonal: bool,
) -> np.ndarray:
    """Linear map (n_date, n_pair) from a complete, unit-weight stack to the phase history."""
    n_date = t.size
    dt = np.diff(t)
    inside = (np.arange(n_date - 1)[None, :] >= pairs[:, :1]) & (
        np.arange(n_date - 1)[None, :] < pairs[:, 1:2]
    )
    if method == "svd":
        b = inside * dt[None, :]
        return _cumulative_dt(dt) @ np.linalg.pinv(b, rcond=rcond)
    a = design_matrix_phase(pairs, n_date)
    n = n_date - 1
    model = nsbas_basis(t, seasonal)
    q = model.shape[1]
    k2 = kappa * kappa
    normal = np.zeros((n + q, n + q))
    normal[:n, :n] = a.T @ a + k2 * np.eye(n)
    normal[:n, n:] = -k2 * model[1:]
    normal[n:, :n] = -k2 * model[1:].T
    normal[n:, n:] = k2 * model.T @ model
    rhs = np.zeros((n + q, pairs.shape[0]))
    rhs[:n] = a.T
    sol = np.linalg.solve(normal, rhs)
    return np.vstack([np.zeros((1, pairs.shape[0])), sol[:n]])


def nsbas_basis(t: np.ndarray, seasonal: bool = True) -> np.ndarray:
    """Temporal model of the NSBAS constraint: columns ``t, 1`` (and ``sin 2 pi t, cos 2 pi t``).

    Parameters
    ----------
    t : ndarray, shape (n_date,), years
    seasonal : bool

    Returns
    -------
    ndarray, shape (n_date, 2 or 4)
    """
    cols = [t, np.ones_like(t)]
    if seasonal:
        cols += [np.sin(2 * np.pi * t), np.cos(2 * np.pi * t)]
    return np.stack(cols, axis=1)


def _min_norm_offsets(phi: np.ndarray, labels: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """Per-component offsets that turn an LS solution into the minimum-norm-velocity one.

    Parameters
    ----------
    phi : ndarray, shape (n_date, P)
        A least-squares phase history with ``phi_0 = 0`` (any offset per component).
    labels : ndarray, shape (P, n_date)
        Component label (smallest date index) of every date, from :func:`network_components`.
    dt : ndarray, shape (n_date - 1,)
        Time steps.

    Returns
    -------
    ndarray, shape (n_date, P): ``phi`` plus the offsets ``c`` minimising
    ``sum_k ((phi_k - phi_{k-1} + c_{m(k)} - c_{m(k-1)}) / dt_k)^2`` with the first date's
    component fixed, i.e. Berardino's SVD solution for a disconnected network.
    """
    n_pix, n_date = labels.shape
    is_root = labels == np.arange(n_date)
    rank = np.cumsum(is_root, axis=1) - 1
    cid = np.take_along_axis(rank, labels, axis=1)  # (P, n_date), 0 for the first date's
    n_c = int(cid.max()) + 1
    step = cid[:, 1:] != cid[:, :-1]  # (P, n_date - 1)
    pix, k = np.nonzero(step)
    i, j = cid[pix, k], cid[pix, k + 1]
    w = 1.0 / dt[k] ** 2
    g = phi[k + 1, pix] - phi[k, pix]
    lap = np.zeros((n_pix, n_c, n_c))
    rhs = np.zeros((n_pix, n_c))
    np.add.at(lap, (pix, i, i), w)
    np.add.at(lap, (pix, j, j), w)
    np.add.at(lap, (pix, i, j), -w)
    np.add.at(lap, (pix, j, i), -w)
    np.add.at(rhs, (pix, j), -w * g)
    np.add.at(rhs, (pix, i), w * g)
    sub = lap[:, 1:, 1:]
    unused = np.arange(1, n_c)[None, :] >= (cid.max(axis=1) + 1)[:, None]
    diag = np.einsum("pii->pi", sub)
    diag += unused
    offsets = np.zeros((n_pix, n_c))
    if n_c > 1:
        offsets[:, 1:] = np.linalg.solve(sub, rhs[:, 1:, None])[..., 0]
    return phi + np.take_along_axis(offsets, cid, axis=1).T


#: Pixel columns per tile of the element-wise work (weights, right-hand sides, residuals,
#: velocity fit): the (n_pair, tile) temporaries (about 1-2 MB for 470 pairs) then stay in
#: cache, which whole blocks do not; the banded solve runs on whole blocks, since its Python
#: loop over dates costs per call.
_TILE = 512
#: Tile of the complete-pixel fast path (transpose, GEMM and residuals of a tile in cache).
_FAST_TILE = 256


class _Scratch:
    """Named work arrays reused from block to block and tile to tile.

    Fresh large temporaries cost a page fault per 4 KiB on every block (a large share of a
    memory-bound pass); these are allocated once, at the size of the largest request.
    """

    def __init__(self) -> None:
        self._bufs: dict[str, np.ndarray] = {}

    def __call__(self, name: str, shape: tuple[int, ...], dtype=np.float64) -> np.ndarray:
        """A C-contiguous array of ``shape`` and ``dtype`` (uninitialised) backed by ``name``."""
        dtype = np.dtype(dtype)
        size = math.prod(shape)
        buf = self._bufs.get(name)
        if buf is None or buf.dtype != dtype or buf.size < size:
            buf = self._bufs[name] = np.empty(size, dtype=dtype)
        return buf[:size].reshape(shape)


def _transpose_into(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out[...] = x.T`` for ``x`` (P, M), copied in cache-sized strips of ``_TILE`` rows."""
    for i in range(0, x.shape[0], _TILE):
        out[:, i : i + _TILE] = x[i : i + _TILE].T
    return out


def _zero_invalid(x: np.ndarray, valid: np.ndarray) -> None:
    """``x[~valid] = 0`` for float ``x``, branch-free (a masked copy is slow on scattered NaN).

    ANDs the bit patterns with ``-valid`` (all ones or all zeros): +0.0 where invalid.
    """
    bits = x.view(np.int32 if x.dtype == np.float32 else np.int64)
    np.bitwise_and(bits, np.negative(valid.view(np.int8)), out=bits)


def _weights_into(
    coherence: np.ndarray, how: Weighting, looks: float, out: np.ndarray, scratch: _Scratch
) -> None:
    """:func:`pair_weights` of ``coherence`` (T, n_pair), written transposed into ``out``."""
    if coherence.dtype == np.float64:
        out[...] = coherence.T
    else:  # transposing in the input dtype, then casting, is faster than both at once
        tmp = scratch("tile_coherence", out.shape, coherence.dtype)
        tmp[...] = coherence.T
        np.copyto(out, tmp)
    _weights_in_place(out, how, looks)


@dataclass(frozen=True, eq=False)
class _Network:
    """What :func:`invert_network` fixes once for all blocks: the network, its banded normal
    equations' layout, the options and the time axis.

    Attributes
    ----------
    n_date : int
    pairs : ndarray of int64, shape (n_pair, 2), (earlier, later) date indices
    bandwidth : int, the longest pair span in acquisitions (``b``)
    incidence_t, incidence_abs_t : scipy.sparse matrix, shape (n_date, n_pair)
        Transposed incidence matrix (-1 reference, +1 secondary) and its absolute value.
    inner_pairs : ndarray of int, pairs not starting at the first date
    inner_row, inner_offset : ndarray of int, band slot ``(a, i)`` of each inner pair
    empty_row, empty_offset : ndarray of int, band slots no pair fills (zero in every matrix)
    rcond : float
    method : {"svd", "nsbas"}
    weighting : Weighting
    looks : float
    kappa : float, NSBAS ``kappa``
    model : ndarray, shape (n_date, q), the NSBAS temporal model (:func:`nsbas_basis`)
    t : ndarray, shape (n_date,), years since the first date
    dt : ndarray, shape (n_date - 1,), years
    to_mm : float, phase (rad) to LOS displacement (mm)
    tc : ndarray, shape (n_date,), ``t`` less its mean (for the velocity fit)
    work_dtype : numpy dtype of the phase work arrays (float32 or float64)
    """

    n_date: int
    pairs: np.ndarray
    bandwidth: int
    incidence_t: scipy.sparse.csr_matrix
    incidence_abs_t: scipy.sparse.csr_matrix
    inner_pairs: np.ndarray
    inner_row: np.ndarray
    inner_offset: np.ndarray
    empty_row: np.ndarray
    empty_offset: np.ndarray
    rcond: float
    method: str
    weighting: Weighting
    looks: float
    kappa: float
    model: np.ndarray
    t: np.ndarray
    dt: np.ndarray
    to_mm: float
    tc: np.ndarray
    work_dtype: type


def _solve_block(
    phase: np.ndarray,
    valid: np.ndarray,
    coherence: np.ndarray | None,
    count: np.ndarray,
    net: _Network,
    scratch: _Scratch,
) -> tuple[np.ndarray, np.ndarray]:
    """Phase histories of one block of pixels through banded normal equations.

    ``phase`` (n_pair, P) float32 or float64 with zeros where invalid, ``valid`` (n_pair, P),
    ``coherence`` (P, n_pair) for the weights (``net.weighting``) or None for unit weights,
    ``count`` (P,) valid pairs. Returns ``phi`` (n_date, P) float64 and the number of
    components (P,).
    """
    n_date, pairs, bw = net.n_date, net.pairs, net.bandwidth
    n_pair = pairs.shape[0]
    n = n_date - 1
    n_pix = phase.shape[1]
    nsbas = net.method == "nsbas"
    all_valid = bool(count.min() == n_pair)
    inc_abs, inc = net.incidence_abs_t, net.incidence_t
    inner, slot_row, slot_off = net.inner_pairs, net.inner_row, net.inner_offset
    empty_row, empty_off = net.empty_row, net.empty_offset
    # normal equations A^T W A phi = A^T W dphi, built tile by tile: band[a, i] = entry
    # (a, a - i) of the weighted graph Laplacian without the first date, rhs its right side
    band = scratch("band", (n, bw + 1, n_pix))
    rhs = scratch("rhs", (n, 1, n_pix))
    wsum = np.empty(n_pix) if nsbas and coherence is not None else None
    for a in range(0, n_pix, _TILE):
        b = min(a + _TILE, n_pix)
        wv = scratch("tile_w", (n_pair, b - a))
        wp = scratch("tile_wp", (n_pair, b - a))
        if coherence is None:
            np.copyto(wv, valid[:, a:b])
            np.copyto(wp, phase[:, a:b])  # zero where invalid: no weighting needed
        else:
            _weights_into(coherence[a:b], net.weighting, net.looks, wv, scratch)
            if not all_valid:
                np.multiply(wv, valid[:, a:b], out=wv)
            np.multiply(wv, phase[:, a:b], out=wp)
            if wsum is not None:
                wsum[a:b] = wv.sum(axis=0)
        band[:, 0, a:b] = (inc_abs @ wv)[1:]
        rhs[:, 0, a:b] = (inc @ wp)[1:]
        np.negative(wv, out=wv)
        band[slot_row, slot_off, a:b] = wv[inner]
        if empty_row.size:
            band[empty_row, empty_off, a:b] = 0.0
    if not nsbas:
        inv_d, n_zero = _band_ldl(band, net.rcond, rhs)
        phi = np.empty((n_date, n_pix))
        phi[0] = 0.0
        phi[1:] = _band_back(band, inv_d, rhs)[:, 0]
        deficient = np.flatnonzero(n_zero > 0)
        if deficient.size:
            labels, _ = network_components(pairs, n_date, valid[:, deficient].T)
            phi[:, deficient] = _min_norm_offsets(phi[:, deficient], labels, net.dt)
        return phi, (1 + n_zero).astype(np.int32)
    # NSBAS: append kappa * (phi_k - F_k theta) = 0 for every date (F: the temporal model),
    # kappa relative to the pixel's mean interferogram weight; the bordered system
    # [[L + k2 I, -k2 F1], [-k2 F1^T, k2 F^T F]] is solved through its Schur complement.
    laplacian = band.copy()
    _, n_zero = _band_ldl(band, net.rcond)  # components of the data network alone
    band = laplacian
    model = net.model
    q = model.shape[1]
    mean_w = (
        np.ones(n_pix) if wsum is None else np.where(count > 0, wsum / np.maximum(count, 1), 1.0)
    )
    k2 = net.kappa**2 * mean_w
    band[:, 0] += k2
    x = np.empty((n, 1 + q, n_pix))
    x[:, 0] = rhs[:, 0]
    x[:, 1:] = model[1:, :, None]  # k2 cancels: solve with F1, scale below
    inv_d, _ = _band_ldl(band, 0.0, x)
    _band_back(band, inv_d, x)
    x0, xf = x[:, 0], x[:, 1:]  # (n, P), (n, q, P) with L x = F1 (not k2 F1)
    # S = k2 F^T F - k2^2 F1^T K^-1 F1 ; b = k2 F1^T K^-1 r
    schur = k2[:, None, None] * (model.T @ model)[None] - (k2 * k2)[:, None, None] * np.einsum(
        "nq,nrp->pqr", model[1:], xf
    )
    b = k2[:, None] * np.einsum("nq,np->pq", model[1:], x0)
    theta = np.linalg.solve(schur, b[..., None])[..., 0]  # (P, q)
    phi = np.zeros((n_date, n_pix))
    phi[1:] = x0 + k2 * np.einsum("nqp,pq->np", xf, theta)
    return phi, (1 + n_zero).astype(np.int32)


def _finish_tile(
    x: np.ndarray,
    valid: np.ndarray | None,
    n_valid: np.ndarray,
    phi32: np.ndarray,
    d: np.ndarray,
    target,
    res: dict,
    net: _Network,
    scratch: _Scratch,
) -> None:
    """Quality and velocity of one tile of solved pixels, written to ``res[...][target]``.

    ``x`` (n_pair, T) the phase (zero where invalid), ``valid`` its mask (None: all valid),
    ``n_valid`` (T,) float, ``phi32`` (n_date, T) the solution in the working dtype and ``d``
    (T, n_date) the same in float64, pixel-major (overwritten).
    """
    pairs = net.pairs
    n_pair = pairs.shape[0]
    n_date = net.n_date
    width = x.shape[1]
    # residuals on each pixel's valid pairs (float32 is ample for coherence)
    resid = scratch("tile_resid", x.shape, x.dtype)
    buf = scratch("tile_buf", x.shape, x.dtype)
    np.take(phi32, pairs[:, 1], axis=0, out=buf, mode="clip")
    np.subtract(x, buf, out=resid)
    np.take(phi32, pairs[:, 0], axis=0, out=buf, mode="clip")
    resid += buf
    if valid is not None:
        np.multiply(resid, valid, out=resid)
    # column sums through BLAS (a matrix-vector product is several times faster than sum(axis=0))
    ones = np.ones(n_pair, dtype=x.dtype)
    # invalid pairs have resid = 0: each adds exactly 1 to the cosine sum
    csum = (ones @ np.cos(resid, out=buf)).astype(np.float64) - (n_pair - n_valid)
    ssum = (ones @ np.sin(resid, out=buf)).astype(np.float64)
    res["temporal_coherence"][target] = np.hypot(csum, ssum) / n_valid
    ssq = (ones @ np.square(resid, out=resid)).astype(np.float64)
    res["rms_residual"][target] = np.sqrt(ssq / n_valid)

    # displacement and the OLS velocity, pixel-major (reductions along contiguous rows)
    tc = net.tc
    sxx = float(tc @ tc)
    d *= net.to_mm
    res["displacement"][target] = d
    slope = (d @ tc) / sxx
    res["velocity"][target] = slope
    if n_date > 2:
        d -= d.mean(axis=1)[:, None]
        d -= np.multiply.outer(slope, tc, out=scratch("tile_fit", (width, n_date)))
        rss = np.einsum("ij,ij->i", d, d)
        res["velocity_std"][target] = np.sqrt(rss / (n_date - 2) / sxx)


def _invert_complete_tiles(
    phase: np.ndarray,
    operator: np.ndarray,
    flip: np.ndarray | None,
    res: dict,
    p0: int,
    net: _Network,
    scratch: _Scratch,
) -> int:
    """Fast path for unit weights: invert the leading tiles of ``phase`` (P, n_pair) whose pixels
    all have every pair, with the full-network ``operator`` (n_date, n_pair).

    Each tile is transposed, checked, put through one GEMM and finished while in cache; the
    first tile holding a non-finite value stops the fast path. Returns the number of pixels done
    (a multiple of the tile, or P).
    """
    n_pix, n_pair = phase.shape
    n_date = operator.shape[0]
    work_dtype = net.work_dtype
    n_valid = None
    for a in range(0, n_pix, _FAST_TILE):
        b = min(a + _FAST_TILE, n_pix)
        x = scratch("tile_x", (n_pair, b - a), work_dtype)
        x[...] = phase[a:b].T
        if not np.isfinite(x.sum()):  # a finite sum means no NaN or inf in the tile
            return a
        if flip is not None:
            x *= flip
        x64 = x
        if work_dtype != np.float64:
            x64 = scratch("tile_x64", x.shape)
            np.copyto(x64, x)
        # pixel-major phase history (T, n_date) straight from BLAS, and date-major for residuals
        d = np.matmul(x64.T, operator.T, out=scratch("tile_d", (b - a, n_date)))
        phi32 = scratch("tile_phi32", (n_date, b - a), work_dtype)
        np.copyto(phi32, d.T)
        if n_valid is None or n_valid.size != b - a:
            n_valid = np.full(b - a, float(n_pair))
        _finish_tile(x, None, n_valid, phi32, d, slice(p0 + a, p0 + b), res, net, scratch)
    return n_pix


def _network_state(
    pairs: np.ndarray,
    t: np.ndarray,
    *,
    method: str,
    weighting: Weighting,
    looks: float,
    rcond: float,
    kappa: float,
    seasonal: bool,
    wavelength: float,
    work_dtype: type,
) -> _Network:
    """The :class:`_Network` of a canonical network ``pairs`` (n_pair, 2) at times ``t``."""
    n_date, n_pair = t.size, pairs.shape[0]
    s_idx, e_idx = pairs[:, 0], pairs[:, 1]
    rows = np.arange(n_pair)
    inc = scipy.sparse.csr_matrix(
        (
            np.concatenate([-np.ones(n_pair), np.ones(n_pair)]),
            (np.r_[s_idx, e_idx], np.r_[rows, rows]),
        ),
        shape=(n_date, n_pair),
    )
    bw = int(np.max(e_idx - s_idx))
    inner = np.flatnonzero(s_idx > 0)
    # band slots (a, i), 1 <= i <= min(a, bw), that no pair fills: zero in every matrix
    slots = np.zeros((n_date - 1, bw + 1), dtype=bool)
    slots[e_idx[inner] - 1, e_idx[inner] - s_idx[inner]] = True
    empty = ~slots & (np.arange(bw + 1)[None, :] <= np.arange(n_date - 1)[:, None])
    empty[:, 0] = False
    empty_row, empty_offset = np.nonzero(empty)
    return _Network(
        n_date=n_date,
        pairs=pairs,
        bandwidth=bw,
        incidence_t=inc,
        incidence_abs_t=abs(inc),
        inner_pairs=inner,
        inner_row=e_idx[inner] - 1,
        inner_offset=e_idx[inner] - s_idx[inner],
        empty_row=empty_row,
        empty_offset=empty_offset,
        rcond=rcond,
        method=method,
        weighting=weighting,
        looks=looks,
        kappa=kappa,
        model=nsbas_basis(t, seasonal),
        t=t,
        dt=np.diff(t),
        to_mm=-wavelength / (4.0 * np.pi) * 1000.0,
        tc=t - t.mean(),
        work_dtype=work_dtype,
    )


def invert_network(
    unw_phase: np.ndarray,
    pairs: np.ndarray,
    dates: np.ndarray,
    *,
    coherence: np.ndarray | None = None,
    weights: Weights = "none",
    method: Method = "svd",
    wavelength: float = SENTINEL1_WAVELENGTH,
    rcond: float = 1e-10,
    min_pairs: int | None = None,
    looks: float = 1.0,
    nsbas_kappa: float = 1e-2,
    nsbas_seasonal: bool = True,
    closure_threshold: float | None = None,
    block_size: int = 8192,
) -> NetworkInversion:
    """Invert a stack of unwrapped interferograms into LOS displacement time series.

    Every pixel is solved with its own valid (non-NaN) interferograms. Pixels that have every
    pair and unit weights share one operator (the SVD pseudo-inverse of Berardino's ``B``,
    applied as one GEMM per tile of pixels). All other pixels are solved together through their weighted
    normal equations ``A_p^T W_p A_p phi = A_p^T W_p dphi`` in the phase parameterisation
    (``phi_0 = 0``): the matrices are graph Laplacians, banded when the network links near
    dates, built for all pixels with sparse products and factorised by a semidefinite banded
    LDL^T vectorised over pixels. Zero pivots count the extra connected components; for those
    rare pixels the per-component offsets are set to Berardino's minimum-norm velocity solution,
    so the result equals ``pinv(W^{1/2} B) W^{1/2} dphi`` for every pixel.

    Parameters
    ----------
    unw_phase : ndarray, shape (..., n_pair), radians
        Unwrapped interferometric phase ``phase(secondary) - phase(reference)``; NaN = no data.
    pairs : ndarray of int, shape (n_pair, 2)
        Indices into ``dates`` of each pair's reference and secondary acquisition. A row given
        as (later, earlier) is reversed and its phase negated.
    dates : ndarray of datetime64, shape (n_date,)
        Acquisition times, strictly increasing.
    coherence : ndarray, shape (..., n_pair), 0-1, optional
        Spatial coherence, needed for ``weights`` other than ``none``.
    weights : {"none", "coherence", "fisher"}
        Interferogram weights, see :func:`pair_weights`.
    method : {"svd", "nsbas"}
        ``svd``: Berardino's minimum-norm solution (gap velocities go to zero on disconnected
        networks). ``nsbas``: adds ``kappa (phi_k - v t_k - c - s sin 2 pi t_k - r cos 2 pi t_k)
        = 0`` for every date, so a temporal model bridges gaps.
    wavelength : float, metres
        Radar wavelength (Sentinel-1 by default).
    rcond : float
        Relative cut-off: a pivot of the normal equations at or below ``rcond`` times its
        diagonal counts as zero (a new component); the full-network pseudo-inverse truncates
        singular values below ``rcond * sigma_max``.
    min_pairs : int, optional
        Pixels with fewer valid pairs are NaN. Default :func:`default_min_pairs`.
    looks : float
        Number of looks for Fisher weights.
    nsbas_kappa : float
        Weight of the NSBAS temporal rows relative to the pixel's mean interferogram weight.
    nsbas_seasonal : bool
        Whether the NSBAS temporal model has an annual sine and cosine besides the rate and
        offset (:func:`nsbas_basis`); without them a seasonal signal biases the rate that bridges
        a gap.
    closure_threshold : float, optional, radians
        If given, pairs whose median absolute triplet closure exceeds it are dropped per pixel
        (see :func:`unwrapping_error_mask`). Off by default.
    block_size : int
        Pixels solved together; bounds the temporaries to about
        ``block_size * (9 n_pair + 8 (b + 5) n_date)`` bytes, ``b`` being the longest pair span
        in acquisitions (NSBAS adds ``block_size * 8 (b + 6) n_date``), plus about
        ``20 n_pair`` kB of per-tile buffers (some 100 MB in all at 8192 pixels, 470 pairs,
        120 dates, ``b = 4``).

    Returns
    -------
    NetworkInversion
        ``displacement`` (..., n_date) mm, ``velocity`` (...) mm/yr, ``velocity_std`` mm/yr,
        ``temporal_coherence``, ``rms_residual`` rad, ``n_pairs_used``, ``n_components``. Pixels
        with fewer than ``min_pairs`` valid pairs are NaN (counts are still given).

    Raises
    ------
    DataError
        If the network or the arrays are inconsistent (see :func:`validate_network`), or the
        dates are too few for the NSBAS temporal model (fewer than its parameters).
    ConfigError
        For an unknown method or weighting, or a weighting without coherence.

    References
    ----------
    Berardino et al. (2002) Eq. 3-5; Pepe & Lanari (2006); López-Quiroz et al. (2009) and Doin
    et al. (2011); Yunjun et al. (2019).
    """
    if method not in ("svd", "nsbas"):
        raise ConfigError(f"method={method!r} is not known; use 'svd' or 'nsbas'")
    if not 0.0 < rcond < 1.0:
        raise ConfigError(f"rcond={rcond} must lie in (0, 1); 1e-10 is the default")
    if method == "nsbas" and not nsbas_kappa > 0:
        raise ConfigError(f"nsbas_kappa={nsbas_kappa} must be > 0 (1e-2 is the default)")
    unw_phase = np.asarray(unw_phase)
    if unw_phase.ndim < 1:
        raise DataError("unw_phase must have the pair axis last, got a scalar")
    pairs_c, sign = validate_network(pairs, dates, unw_phase.shape[-1])
    dates = np.asarray(dates)
    n_date, n_pair = dates.size, pairs_c.shape[0]
    if coherence is not None:
        coherence = np.asarray(coherence)
        if coherence.shape != unw_phase.shape:
            raise DataError(
                f"coherence has shape {coherence.shape} but unw_phase has {unw_phase.shape}; "
                "they must match"
            )
    how = weighting(weights, has_coherence=coherence is not None, looks=looks)
    coherence_used = coherence if how.needs_coherence else None
    lead = unw_phase.shape[:-1]
    n_pix = int(np.prod(lead, dtype=np.int64))
    phase2d = unw_phase.reshape(n_pix, n_pair)
    coh2d = None if coherence_used is None else coherence_used.reshape(n_pix, n_pair)
    if min_pairs is None:
        min_pairs = default_min_pairs(n_date, n_pair)

    t = decimal_year_offsets(dates)
    if method == "nsbas":
        model = nsbas_basis(t, nsbas_seasonal)
        if np.linalg.matrix_rank(model) < model.shape[1]:  # the bordered system is singular
            raise DataError(
                f"the NSBAS temporal model has {model.shape[1]} parameters (rate, offset"
                f"{', annual sine and cosine' if nsbas_seasonal else ''}) but the {n_date} dates "
                f"({dates[0]} .. {dates[-1]}) cannot determine them; use method='svd'"
                + (", or nsbas_seasonal=False" if nsbas_seasonal else "")
                + ", or add acquisitions"
            )
    # float32 stacks are read as float32 (their residuals too); anything else as float64
    work_dtype = np.float32 if phase2d.dtype == np.float32 else np.float64
    net = _network_state(
        pairs_c,
        t,
        method=method,
        weighting=how,
        looks=looks,
        rcond=rcond,
        kappa=nsbas_kappa,
        seasonal=nsbas_seasonal,
        wavelength=wavelength,
        work_dtype=work_dtype,
    )
    _, full_components = network_components(pairs_c, n_date)
    full_operator = None
    if coh2d is None:
        full_operator = _full_network_operator(
            pairs_c, t, method, rcond, nsbas_kappa, nsbas_seasonal
        )

    disp = np.full((n_pix, n_date), np.nan, dtype=np.float32)
    res = {
        name: np.full(n_pix, np.nan, dtype=np.float32)
        for name in ("velocity", "velocity_std", "temporal_coherence", "rms_residual")
    }
    res["displacement"] = disp
    n_used = np.zeros(n_pix, dtype=np.int32)
    n_comp = np.zeros(n_pix, dtype=np.int32)
    scratch = _Scratch()
    flip = sign[:, None] if np.any(sign < 0) else None
    # unweighted, unscreened stacks start each block with the complete-pixel fast path
    fast = full_operator is not None and closure_threshold is None and n_pair >= min_pairs

    for p0 in range(0, n_pix, block_size):
        p1 = min(p0 + block_size, n_pix)
        if fast:
            done = _invert_complete_tiles(
                phase2d[p0:p1], full_operator, flip, res, p0, net, scratch
            )
            n_used[p0 : p0 + done] = n_pair
            n_comp[p0 : p0 + done] = full_components
            p0 += done
            if p0 == p1:
                continue
        phase32 = _transpose_into(phase2d[p0:p1], scratch("phase", (n_pair, p1 - p0), work_dtype))
        if flip is not None:
            phase32 *= flip
        valid = np.isfinite(phase32, out=scratch("valid", phase32.shape, bool))
        if closure_threshold is not None:
            valid &= ~unwrapping_error_mask(phase32.T, pairs_c, closure_threshold).T
        count = valid.sum(axis=0, dtype=np.int32)
        n_used[p0:p1] = count
        all_valid = count.min() == n_pair
        if not all_valid:
            _zero_invalid(phase32, valid)
        coh_rows = None if coh2d is None else coh2d[p0:p1]
        ok = count >= max(min_pairs, 1)
        solve = None  # every pixel of the block is solved
        if not ok.all():  # undefined pixels: counts only
            skipped = np.flatnonzero(~ok)
            n_comp[p0 + skipped] = network_components(pairs_c, n_date, valid[:, skipped].T)[1]
            solve = np.flatnonzero(ok)
            if solve.size == 0:
                continue
            phase32, valid, count = phase32[:, solve], valid[:, solve], count[solve]
            coh_rows = None if coh_rows is None else coh_rows[solve]
        n_solve = count.size
        target = np.arange(p0, p1) if solve is None else p0 + solve

        # phase histories: unweighted pixels with every pair share the full-network operator
        complete = count == n_pair if full_operator is not None else np.zeros(n_solve, bool)
        n_complete = int(complete.sum())
        if n_complete > n_solve // 2:
            # mostly complete pixels: the banded solve only for the others
            phi = scratch("phi", (n_date, n_solve))
            comp = np.empty(n_solve, dtype=np.int32)
            rest = np.flatnonzero(~complete)
            if rest.size:
                phi[:, rest], comp[rest] = _solve_block(
                    phase32[:, rest], valid[:, rest], None, count[rest], net, scratch
                )
        else:
            # mostly incomplete: solve all (no copies), complete pixels are overwritten below
            phi, comp = _solve_block(phase32, valid, coh_rows, count, net, scratch)
        if n_complete:
            phi[:, complete] = full_operator @ phase32[:, complete].astype(np.float64)
            comp[complete] = full_components
        n_comp[target] = comp

        # quality and velocity, tile by tile so that the temporaries stay in cache
        nv_all = count.astype(np.float64)
        for a in range(0, n_solve, _TILE):
            b = min(a + _TILE, n_solve)
            ph_tile = phi[:, a:b]
            phi32 = scratch("tile_phi32", ph_tile.shape, work_dtype)
            np.copyto(phi32, ph_tile)
            d = scratch("tile_d", ph_tile.shape[::-1])
            np.copyto(d, ph_tile.T)
            _finish_tile(
                phase32[:, a:b],
                None if all_valid else valid[:, a:b],
                nv_all[a:b],
                phi32,
                d,
                slice(p0 + a, p0 + b) if solve is None else target[a:b],
                res,
                net,
                scratch,
            )

    return NetworkInversion(
        displacement=disp.reshape(*lead, n_date),
        velocity=res["velocity"].reshape(lead),
        velocity_std=res["velocity_std"].reshape(lead),
        temporal_coherence=res["temporal_coherence"].reshape(lead),
        rms_residual=res["rms_residual"].reshape(lead),
        n_pairs_used=n_used.reshape(lead),
        n_components=n_comp.reshape(lead),
    )


# ---------------------------------------------------------------------------------------------
# unwrapping-error check and reference point
# ---------------------------------------------------------------------------------------------


def _triplets(pairs: np.ndarray) -> np.ndarray:
    """Pair-index triplets (ij, jk, ik) of a network, shape (n_triplet, 3)."""
    index = {(int(a), int(b)): n for n, (a, b) in enumerate(pairs)}
    out = [
        (index[(i, j)], index[(j, k)], index[(i, k)])
        for (i, j) in index
        for (jj, k) in index
        if jj == j and (i, k) in index
    ]
    return np.asarray(out, dtype=np.int64).reshape(-1, 3)


def closure_phase(unw_phase: np.ndarray, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Triplet closure phase ``C_ijk = dphi_ij + dphi_jk - dphi_ik`` (Yunjun et al. 2019).

    Parameters
    ----------
    unw_phase : ndarray, shape (..., n_pair), radians
    pairs : ndarray of int, shape (n_pair, 2)
        (earlier, later) date indices.

    Returns
    -------
    closure : ndarray, shape (..., n_triplet), radians
        A multiple of ``2 pi`` (non-zero) flags an unwrapping error in one of the three pairs.
    triplets : ndarray, shape (n_triplet, 3)
        Pair indices (ij, jk, ik) of each triplet.
    """
    trip = _triplets(np.asarray(pairs))
    x = np.asarray(unw_phase)
    return x[..., trip[:, 0]] + x[..., trip[:, 1]] - x[..., trip[:, 2]], trip


def unwrapping_error_mask(
    unw_phase: np.ndarray, pairs: np.ndarray, threshold: float = np.pi / 2
) -> np.ndarray:
    """Pairs to drop: median ``|C|`` over the pair's triplets above ``threshold`` (docs/science.md 1.3).

    Parameters
    ----------
    unw_phase : ndarray, shape (..., n_pair), radians
    pairs : ndarray of int, shape (n_pair, 2)
    threshold : float, radians

    Returns
    -------
    ndarray of bool, shape (..., n_pair)
        True where the pair is flagged. Pairs in no triplet (or with only NaN closures) are kept.
    """
    closure, trip = closure_phase(unw_phase, pairs)
    n_pair = np.asarray(pairs).shape[0]
    lead = closure.shape[:-1]
    if trip.shape[0] == 0:
        return np.zeros((*lead, n_pair), dtype=bool)
    member = np.concatenate([trip[:, 0], trip[:, 1], trip[:, 2]])
    which = np.tile(np.arange(trip.shape[0]), 3)
    order = np.argsort(member, kind="stable")
    member, which = member[order], which[order]
    counts = np.bincount(member, minlength=n_pair)
    width = int(counts.max())
    slot = np.arange(member.size) - np.repeat(np.cumsum(counts) - counts, counts)
    table = np.full((n_pair, width), -1, dtype=np.int64)
    table[member, slot] = which
    absc = np.abs(closure)
    padded = np.concatenate([absc, np.full((*lead, 1), np.nan)], axis=-1)
    gathered = padded[..., np.where(table < 0, trip.shape[0], table)]  # (..., n_pair, width)
    has = ~np.all(np.isnan(gathered), axis=-1)
    med = np.full((*lead, n_pair), 0.0)
    if np.any(has):
        med[has] = np.nanmedian(gathered[has], axis=-1)
    return med > threshold


def select_reference(
    mean_coherence: np.ndarray,
    complete: np.ndarray,
    temporal_coherence: np.ndarray | None = None,
    *,
    min_coherence: float = 0.85,
    min_temporal_coherence: float = 0.95,
    window: int = 3,
) -> tuple[int, int]:
    """Choose the reference pixel (docs/science.md 1.2).

    A candidate is the centre of a ``window x window`` box in which every pixel has every
    interferogram, mean spatial coherence >= ``min_coherence`` and (if given) temporal coherence
    >= ``min_temporal_coherence``. The candidate with the highest window-mean coherence wins (ties:
    the first in row-major order).

    Parameters
    ----------
    mean_coherence : ndarray, shape (ny, nx), 0-1
        Mean spatial coherence over the interferograms.
    complete : ndarray of bool, shape (ny, nx)
        True where the pixel has no NaN in any interferogram.
    temporal_coherence : ndarray, shape (ny, nx), optional
    min_coherence, min_temporal_coherence : float
    window : int
        Odd window size in pixels.

    Returns
    -------
    (row, col) : tuple of int
        Index of the window centre.

    Raises
    ------
    DataError
        If no pixel qualifies.
    """
    if window < 1 or window % 2 == 0:
        raise ConfigError(f"window={window} must be a positive odd number of pixels")
    coh = np.asarray(mean_coherence, dtype=np.float64)
    ok = np.asarray(complete, dtype=bool) & (np.nan_to_num(coh, nan=-1.0) >= min_coherence)
    if temporal_coherence is not None:
        ok &= np.nan_to_num(np.asarray(temporal_coherence), nan=-1.0) >= min_temporal_coherence
    h = window // 2
    ny, nx = coh.shape
    if ny < window or nx < window:
        raise DataError(f"the scene ({ny} x {nx}) is smaller than the reference window {window}")
    view = np.lib.stride_tricks.sliding_window_view
    all_ok = view(ok, (window, window)).all(axis=(-1, -2))
    score = view(np.nan_to_num(coh), (window, window)).mean(axis=(-1, -2))
    score = np.where(all_ok, score, -np.inf)
    if not np.isfinite(score).any():
        raise DataError(
            f"no {window}x{window} window has every interferogram, mean coherence >= "
            f"{min_coherence}"
            + (
                ""
                if temporal_coherence is None
                else f" and temporal coherence >= {min_temporal_coherence}"
            )
            + "; lower the thresholds or give the reference point explicitly"
        )
    r, c = np.unravel_index(int(np.argmax(score)), score.shape)
    return int(r + h), int(c + h)


def reference_phase(unw_phase: np.ndarray, row: int, col: int, window: int = 3) -> np.ndarray:
    """Mean phase of the reference window, to subtract from every interferogram.

    Parameters
    ----------
    unw_phase : ndarray, shape (ny, nx, n_pair), radians
    row, col : int
        Window centre.
    window : int
        Odd window size.

    Returns
    -------
    ndarray, shape (n_pair,), radians

    Raises
    ------
    DataError
        If the window leaves the scene or holds NaN in some interferogram.
    """
    x = np.asarray(unw_phase)
    h = window // 2
    ny, nx = x.shape[:2]
    if not (h <= row < ny - h and h <= col < nx - h):
        raise DataError(
            f"reference window of size {window} at ({row}, {col}) leaves the {ny} x {nx} scene"
        )
    box = x[row - h : row + h + 1, col - h : col + h + 1].reshape(-1, x.shape[-1])
    if np.isnan(box).any():
        raise DataError(
            f"the reference window at ({row}, {col}) has NaN in some interferograms; choose a "
            "point with data in every interferogram (select_reference does)"
        )
    return box.astype(np.float64).mean(axis=0)
