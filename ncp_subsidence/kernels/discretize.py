"""Discretisation of continuous factors into strata for the geodetector (docs/science.md 7.3).

Methods (:data:`DISCRETIZERS`, keyed by the names of
:data:`ncp_subsidence.choices.DISCRETIZATIONS`, the config's ``geodetector.discretization``):
exact Fisher-Jenks natural breaks (``"natural_breaks"``), ``"quantile"``, ``"equal_interval"``,
``"geometric"`` (geometric progression of class limits), ``"std"`` (standard deviation classes)
and ``"optimal"`` (OPGD: the method and k with the largest q); :func:`discretize` also takes
``"categorical"`` (the values are the strata) and the older short names ``"natural"``,
``"equal"`` and ``"sd"``. All return integer codes (-1 for a missing value) and the class limits,
so the same breaks can be applied to any array with :func:`apply_breaks` (e.g. breaks computed on
a sample, applied to every pixel). :func:`factor_breaks` gives the limits of every factor of the
geodetector design, :func:`sample_codes` the codes of one factor at a draw's points.

Natural breaks are Fisher's (1958) optimal partition of sorted values into k contiguous classes
minimising the total within-class sum of squares, solved exactly by dynamic programming over the
distinct values (weighted by their counts). For more than ``sample_size`` values the breaks are
computed on a random sample of the values and applied to all (docs/science.md 7.3: 5000).

Class intervals are right-closed: class h holds ``edges[h] < x <= edges[h + 1]`` (the first
class also holds its lower edge), as in mapclassify / PyPI ``geodetector``.

References
----------
Fisher WD. 1958. On grouping for maximum homogeneity. J. Am. Stat. Assoc. 53(284):789-798.

Jenks GF. 1967. The data model concept in statistical mapping. Int. Yearb. Cartogr. 7:186-190.

Song Y, Wang J, Ge Y, Xu C. 2020. An optimal parameters-based geographical detector model
enhances geographic characteristics of explanatory variables for spatial heterogeneity analysis:
cases with different types of spatial data. GIScience & Remote Sensing 57(5):593-610 (OPGD).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ncp_subsidence.errors import DataError
from ncp_subsidence.kernels.geodetector import factor_from_stats, stratum_stats

__all__ = [
    "DISCRETIZERS",
    "METHODS",
    "Discretization",
    "Discretizer",
    "OptimalDiscretization",
    "apply_breaks",
    "discretize",
    "discretizer",
    "equal_interval_breaks",
    "factor_breaks",
    "geometric_breaks",
    "merge_small_strata",
    "natural_breaks",
    "optimal_discretization",
    "quantile_breaks",
    "sample_codes",
    "std_breaks",
]


@dataclass(frozen=True)
class Discretization:
    """Strata of one factor.

    Attributes
    ----------
    codes : ndarray of int32, shape like x
        Stratum of each value in ``[0, n_strata)``; -1 where x is missing (NaN).
    edges : ndarray of float64, shape (n_strata + 1,)
        Class limits ``[min, b_1, ..., b_{L-1}, max]`` (right-closed classes). For
        ``"categorical"``: the category values, shape (n_strata,).
    n_strata : int
        Effective number of strata (after removing empty classes and merging small ones).
    method : str
    k_requested : int
        Number of classes asked for.
    n_merged : int
        Classes removed because they were empty or smaller than ``min_stratum_size``.
    """

    codes: NDArray[np.int32]
    edges: NDArray[np.float64]
    n_strata: int
    method: str
    k_requested: int
    n_merged: int = 0


# --------------------------------------------------------------------------------------------
# Fisher-Jenks
# --------------------------------------------------------------------------------------------


def _fisher_jenks_table(
    values: NDArray[np.float64], weights: NDArray[np.float64], k_max: int, *, block: int = 0
) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """Fisher's dynamic programme on sorted distinct values with weights.

    ``cost[j, i]`` is the least within-class sum of squares of ``values[:i + 1]`` in ``j + 1``
    classes; ``start[j, i]`` the index where the last of those classes starts (the first, i.e.
    smallest, of the best starts). O(k_max n^2) arithmetic at most, O(k_max n) memory.

    The values ``i`` are taken ``block`` at a time (at most 64): class count ``j`` after class
    count, the candidates of every ``i`` of the block are one array operation. Candidates that
    cannot be best are skipped without changing any result, against a cost some candidate
    achieves (``bound``): a candidate costs at least the sum of squares of its last class, which
    (exactly) does not decrease when that class gains a value at its start, so once the computed
    sum of squares of a class exceeds the bound by more than twice the rounding bound ``delta``
    (of the prefix-sum formula, from the data's sums), every longer class is out too; and a
    candidate costs at least the cost of its first ``j`` classes, so the starts after which that
    cost stays above the bound are out. The candidates that remain are computed as every
    candidate would be, so ``cost`` and ``start`` are bit for bit those of the plain programme
    (one pass per ``i`` over every start; ``tests/test_kernels_discretize.py`` checks it).
    """
    n = values.size
    # Centre and scale: the prefix-sum cost below is then well conditioned.
    mu = np.average(values, weights=weights)
    scale = np.sqrt(np.average((values - mu) ** 2, weights=weights)) or 1.0
    v = (values - mu) / scale
    w = weights.astype(np.float64)
    wv = w * v
    wv2 = wv * v
    cw = np.concatenate([[0.0], np.cumsum(w)])
    cwx = np.concatenate([[0.0], np.cumsum(wv)])
    cwx2 = np.concatenate([[0.0], np.cumsum(wv2)])
    cost = np.full((k_max, n), np.inf)
    start = np.zeros((k_max, n), dtype=np.intp)
    delta = _ssd_rounding_bound(wv, wv2, n)
    b = int(block) if block > 0 else max(16, min(64, 2**21 // max(n, 1)))
    # work arrays of a block, allocated once (fresh large arrays cost page faults every time)
    buf_w, buf_x, buf_s, buf_c = (np.empty(min(b, n) * n) for _ in range(4))

    def ssd_of(m, i):
        """Sum of squares of values[m..i]: the table's formula, element by element."""
        sw = cw[i + 1] - cw[m]
        sx = cwx[i + 1] - cwx[m]
        sx2 = cwx2[i + 1] - cwx2[m]
        return np.maximum(sx2 - sx * sx / sw, 0.0)

    for i0 in range(0, n, b):
        i1 = min(i0 + b, n)
        ii = np.arange(i0, i1)
        rows = np.arange(i1 - i0)
        cost[0, i0:i1] = ssd_of(0, ii)
        if k_max < 2 or i1 < 2:
            continue
        # an achieved cost per class count j over the block: the candidate m = i, and the best
        # start of the previous block's last i
        live = ii[ii >= 1]
        bound = np.full(k_max, np.inf)
        for j in range(1, k_max):
            prev = cost[j - 1]
            ub = prev[live - 1] + ssd_of(live, live)
            if i0 >= 1 and start[j, i0 - 1] >= 1:
                m0 = start[j, i0 - 1]
                ub = np.minimum(ub, prev[m0 - 1] + ssd_of(m0, live))
            bound[j] = ub.max()
        first = np.ones(k_max, dtype=np.intp)  # first start m worth computing, per j
        if i0 >= 1:
            # running max from the right of ssd(m, i0), m = 1..i0 (non-increasing in m): the
            # starts before the first m where it is <= bound + 2 delta are out for every i >= i0
            neg_run = -np.maximum.accumulate(ssd_of(np.arange(1, i0 + 1), i0)[::-1])[::-1]
            cut = np.searchsorted(neg_run, -(bound[1:] + 2.0 * delta), side="left") + 1
            first[1:] = np.where(np.isfinite(bound[1:]), cut, 1)
        lo = int(first[1:].min())
        nb, width = i1 - i0, i1 - lo
        sw, sx, ssd = (buf[: nb * width].reshape(nb, width) for buf in (buf_w, buf_x, buf_s))
        with np.errstate(divide="ignore", invalid="ignore"):
            np.subtract(cw[i0 + 1 : i1 + 1, None], cw[None, lo:i1], out=sw)
            np.subtract(cwx[i0 + 1 : i1 + 1, None], cwx[None, lo:i1], out=sx)
            np.subtract(cwx2[i0 + 1 : i1 + 1, None], cwx2[None, lo:i1], out=ssd)
            np.multiply(sx, sx, out=sx)
            np.divide(sx, sw, out=sx)
            np.subtract(ssd, sx, out=ssd)
            np.maximum(ssd, 0.0, out=ssd)
        c0 = max(i0 + 1, lo)  # only starts m > i0 can lie beyond a row's i: no such class
        tail = ssd[:, c0 - lo :]
        tail[np.arange(c0, i1)[None, :] > ii[:, None]] = np.inf
        for j in range(1, k_max):
            # j + 1 classes: the first j cover values[:m], the last covers values[m..i]
            a = int(first[j])
            prev = cost[j - 1, a - 1 : i1 - 1]
            z = i1 - a
            if np.isfinite(bound[j]):
                # a start whose first j classes already cost more than the bound is out too:
                # cut the starts from the first m after which the running min exceeds it
                run = np.minimum.accumulate(prev[::-1])[::-1]  # non-decreasing
                z = max(1, int(np.searchsorted(run, bound[j], side="right")))
            out = buf_c[: nb * z].reshape(nb, z)
            cand = np.add(prev[:z], ssd[:, a - lo : a - lo + z], out=out)
            best = np.argmin(cand, axis=1)
            cost[j, i0:i1] = cand[rows, best]
            start[j, i0:i1] = best + a
    if k_max > 1:  # one value: no second class
        cost[1:, 0] = np.inf
        start[1:, 0] = 0
    return cost * scale * scale, start


def _ssd_rounding_bound(wv: NDArray[np.float64], wv2: NDArray[np.float64], n: int) -> float:
    """A bound on |computed - exact| sum of squares of any class, ``sx2 - sx^2 / sw``.

    The prefix sums (recursive summation) err by at most ``(n + 2) u`` times the sum of the
    magnitudes of their terms (``S1 = sum |w v|``, ``S2 = sum w v^2``), a difference of two by
    twice that; the class weights are exact integers. Then ``|d(sx^2 / sw)| <= e1 (2 S1 + e1)``
    (``sw >= 1``) and the last roundings add ``u (S1^2 + S2)`` each. A factor 16 covers the terms
    dropped here; the bound is still far below the costs that are compared with it.
    """
    u = float(np.finfo(np.float64).eps)
    s1 = float(np.sum(np.abs(wv))) * (1.0 + 1e-6) + 1.0
    s2 = float(np.sum(wv2)) * (1.0 + 1e-6) + 1.0
    e1 = 2.0 * (n + 4) * u * s1
    e2 = 4.0 * (n + 4) * u * s2
    return 16.0 * (e2 + e1 * (2.0 * s1 + e1) + 4.0 * u * (s1 * s1 + s2))


def _backtrack(start: NDArray[np.intp], k: int, n: int) -> list[int]:
    """Start indices of the k classes (first is 0)."""
    starts = []
    i = n - 1
    for j in range(k - 1, 0, -1):
        m = int(start[j, i])
        starts.append(m)
        i = m - 1
    starts.append(0)
    return starts[::-1]


def _sample_values(
    x: NDArray[np.float64], sample_size: int | None, rng: np.random.Generator
) -> NDArray[np.float64]:
    if sample_size is None or x.size <= sample_size:
        return x
    return x[rng.choice(x.size, size=sample_size, replace=False)]


def _natural_edges_all_k(
    x: NDArray[np.float64], ks: Sequence[int], sample_size: int | None, seed: int | None
) -> dict[int, NDArray[np.float64]]:
    rng = np.random.default_rng(seed)
    sample = _sample_values(x, sample_size, rng)
    values, counts = np.unique(sample, return_counts=True)
    lo, hi = float(x.min()), float(x.max())
    out: dict[int, NDArray[np.float64]] = {}
    k_max = min(max(ks), values.size)
    if k_max < 1:
        raise DataError("natural breaks need at least one finite value")
    _, start = _fisher_jenks_table(values, counts.astype(np.float64), k_max)
    for k in ks:
        kk = min(k, values.size)
        starts = _backtrack(start, kk, values.size)
        # class upper limits are the largest value of each class (Jenks / mapclassify)
        uppers = [float(values[s - 1]) for s in starts[1:]]
        out[k] = np.array([lo, *uppers, hi], dtype=np.float64)
    return out


def natural_breaks(
    x: ArrayLike,
    k: int,
    *,
    sample_size: int | None = 5000,
    seed: int | None = 0,
) -> NDArray[np.float64]:
    """Exact Fisher-Jenks natural breaks.

    Parameters
    ----------
    x : array_like of float
        Values (NaN ignored).
    k : int
        Number of classes (fewer if x has fewer distinct values).
    sample_size : int or None
        If x has more finite values, the breaks are computed on a random sample of this many
        values (without replacement) and apply to all; None uses every value. The sample keeps
        the frequency of repeated values (the DP weights each distinct value by its count).
    seed : int or None
        Seed of the sample.

    Returns
    -------
    ndarray of float64, shape (k + 1,)
        Edges ``[min, b_1, ..., b_{k-1}, max]`` over all of x; ``b_h`` is the largest sampled
        value of class h.

    References
    ----------
    Fisher (1958); Jenks (1967).
    """
    xf = _finite(x)
    return _natural_edges_all_k(xf, [int(k)], sample_size, seed)[int(k)]


# --------------------------------------------------------------------------------------------
# Other methods
# --------------------------------------------------------------------------------------------


def _finite(x: ArrayLike) -> NDArray[np.float64]:
    arr = np.asarray(x, dtype=np.float64).ravel()
    fin = np.isfinite(arr)
    if not fin.all():
        arr = arr[fin]
    if arr.size == 0:
        raise DataError("cannot discretize: no finite values")
    return arr


def quantile_breaks(x: ArrayLike, k: int) -> NDArray[np.float64]:
    """Edges at the 1/k, 2/k, ... quantiles (linear interpolation); duplicates removed."""
    xf = _finite(x)
    return np.unique(np.quantile(xf, np.linspace(0.0, 1.0, int(k) + 1)))


def equal_interval_breaks(x: ArrayLike, k: int) -> NDArray[np.float64]:
    """k classes of equal width between the minimum and the maximum."""
    xf = _finite(x)
    return np.unique(np.linspace(xf.min(), xf.max(), int(k) + 1))


def geometric_breaks(x: ArrayLike, k: int) -> NDArray[np.float64]:
    """Class limits in geometric progression from the minimum to the maximum.

    For non-positive data the values are shifted by ``1 - min`` before the progression and the
    limits shifted back, so the classes are narrow near the minimum and widen by a constant
    ratio towards the maximum.
    """
    xf = _finite(x)
    lo, hi = float(xf.min()), float(xf.max())
    off = 0.0 if lo > 0 else 1.0 - lo
    edges = np.geomspace(lo + off, hi + off, int(k) + 1) - off
    edges[0], edges[-1] = lo, hi
    return np.unique(edges)


def std_breaks(x: ArrayLike, k: int) -> NDArray[np.float64]:
    """Classes one standard deviation wide, centred on the mean, outer classes open.

    Inner limits at ``mean + sd * (h - k / 2)`` for h = 1..k-1 (the mean is a limit for even k
    and the centre of the middle class for odd k), kept within the data range.
    """
    xf = _finite(x)
    lo, hi = float(xf.min()), float(xf.max())
    mu, sd = float(xf.mean()), float(xf.std())
    inner = mu + sd * (np.arange(1, int(k)) - int(k) / 2.0)
    inner = inner[(inner > lo) & (inner < hi)]
    return np.unique(np.concatenate([[lo], inner, [hi]]))


# --------------------------------------------------------------------------------------------
# The registry: one entry per method
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Discretizer:
    """One discretization method: its function and its properties (after flox's ``Aggregation``).

    Attributes
    ----------
    name : str
        One of :data:`ncp_subsidence.choices.DISCRETIZATIONS` (the config's name).
    breaks : callable or None
        ``breaks(x, k) -> edges``: class limits ``[min, b_1, ..., max]`` of the finite values x
        for k classes (fewer where limits coincide); takes ``sample_size`` and ``seed`` keywords
        when ``sampled``. None for a method that fits its strata to the response (``fit``).
    fit : callable or None
        ``fit(y, x, *, sample_size, seed, min_stratum_size) -> Discretization`` for a method
        that chooses its strata from the response y as well (OPGD); None otherwise.
    alias : str or None
        The kernel's older short name (``"natural"``, ``"equal"``, ``"sd"``), still accepted.
    sampled : bool
        The limits are computed on a random sample of ``sample_size`` values (``seed``).
    searched : bool
        A candidate of the OPGD search (:data:`METHODS`, in registry order).
    """

    name: str
    breaks: Callable[..., NDArray[np.float64]] | None = None
    fit: Callable[..., Discretization] | None = None
    alias: str | None = None
    sampled: bool = False
    searched: bool = True

    def edges(
        self, x: NDArray[np.float64], k: int, *, sample_size: int | None, seed: int | None
    ) -> NDArray[np.float64]:
        """Class limits of the finite values x (a method with ``breaks`` only)."""
        if self.breaks is None:
            raise DataError(
                f"discretization {self.name!r} chooses its strata from the response; "
                "use factor_breaks() or optimal_discretization()"
            )
        if self.sampled:
            return self.breaks(x, k, sample_size=sample_size, seed=seed)
        return self.breaks(x, k)


def _optimal_strata(
    y: ArrayLike, x: ArrayLike, *, sample_size: int | None, seed: int | None, min_stratum_size: int
) -> Discretization:
    """Strata chosen by :func:`optimal_discretization` (every method of :data:`METHODS`, k 3..20)."""
    return optimal_discretization(
        y, x, sample_size=sample_size, seed=seed, min_stratum_size=min_stratum_size
    ).discretization


#: The discretizations, keyed by :data:`ncp_subsidence.choices.DISCRETIZATIONS` (a test checks
#: that the keys and the config's choices agree). A new method: its function, one entry here and
#: its name in ``choices.DISCRETIZATIONS``.
DISCRETIZERS: dict[str, Discretizer] = {
    d.name: d
    for d in (
        Discretizer("natural_breaks", natural_breaks, alias="natural", sampled=True),
        Discretizer("quantile", quantile_breaks),
        Discretizer("equal_interval", equal_interval_breaks, alias="equal"),
        Discretizer("geometric", geometric_breaks),
        Discretizer("std", std_breaks, alias="sd"),
        Discretizer("optimal", fit=_optimal_strata, searched=False),
    )
}
_ALIASES: dict[str, Discretizer] = {d.alias: d for d in DISCRETIZERS.values() if d.alias}

#: Methods for continuous factors, in the order OPGD tries them.
METHODS: tuple[str, ...] = tuple(n for n, d in DISCRETIZERS.items() if d.searched)


def discretizer(method: str) -> Discretizer:
    """The :class:`Discretizer` of a method name (or of its older short alias)."""
    spec = DISCRETIZERS.get(method) or _ALIASES.get(method)
    if spec is None:
        raise DataError(
            f"unknown discretization method {method!r}; use one of {[*DISCRETIZERS, 'categorical']}"
        )
    return spec


def apply_breaks(x: ArrayLike, edges: ArrayLike) -> NDArray[np.int32]:
    """Codes of x under right-closed class limits; values outside fall in the end classes.

    Parameters
    ----------
    x : array_like of float, any shape
    edges : array_like of float, shape (L + 1,)

    Returns
    -------
    ndarray of int32, shape like x
        ``[0, L)``; -1 where x is NaN.
    """
    arr = np.asarray(x, dtype=np.float64)
    inner = np.asarray(edges, dtype=np.float64)[1:-1]
    if inner.size <= 64:
        # code = number of inner limits strictly below x; a few branch-free passes beat the
        # binary search of searchsorted on unsorted data
        acc = np.zeros(arr.shape, dtype=np.uint8)
        tmp = np.empty(arr.shape, dtype=bool)
        for b in inner:
            np.greater(arr, b, out=tmp)
            acc += tmp.view(np.uint8)
        codes = acc.astype(np.int32)
    else:
        codes = np.searchsorted(inner, arr, side="left").astype(np.int32)
    codes[~np.isfinite(arr)] = -1
    return codes


# --------------------------------------------------------------------------------------------
# Merging, discretize, OPGD
# --------------------------------------------------------------------------------------------


def _merge_classes(
    cnt: NDArray[np.float64], sums: NDArray[np.float64], min_size: int
) -> tuple[NDArray[np.intp], int]:
    """Merge adjacent classes in class space; returns the old -> new class map and removals."""
    cnt = cnt.astype(np.float64).copy()
    sums = sums.astype(np.float64).copy()
    groups = [[h] for h in range(cnt.size)]
    removed = 0
    while len(groups) > 1:
        small = np.flatnonzero(cnt < max(min_size, 1))
        if small.size == 0:
            break
        h = int(small[np.argmin(cnt[small])])
        last = cnt.size - 1
        if cnt[h] == 0:
            g = h - 1 if h == last else h + 1  # an empty class joins its upper neighbour
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                means = sums / cnt
            d_lo = abs(means[h] - means[h - 1]) if h > 0 and cnt[h - 1] > 0 else np.inf
            d_hi = abs(means[h + 1] - means[h]) if h < last and cnt[h + 1] > 0 else np.inf
            if np.isinf(d_lo) and np.isinf(d_hi):
                g = h - 1 if h == last else h + 1
            else:
                g = h - 1 if d_lo <= d_hi else h + 1
        lo, hi = min(g, h), max(g, h)
        cnt[lo] += cnt[hi]
        sums[lo] += sums[hi]
        groups[lo] += groups[hi]
        cnt = np.delete(cnt, hi)
        sums = np.delete(sums, hi)
        del groups[hi]
        removed += 1
    lut = np.empty(sum(len(g) for g in groups), dtype=np.intp)
    for new, g in enumerate(groups):
        lut[g] = new
    return lut, removed


def _merge_on_codes(
    xf: NDArray[np.float64], codes: NDArray, edges: NDArray[np.float64], min_size: int
) -> tuple[NDArray[np.float64], NDArray[np.intp], int]:
    L = edges.size - 1
    c = codes.astype(np.intp, copy=False)
    if c.size and c.min() < 0:
        ok = c >= 0
        c, xf = c[ok], xf[ok]
    cnt = np.bincount(c, minlength=L).astype(np.float64)
    if cnt.size == L and bool(np.all(cnt >= max(min_size, 1))):
        # nothing to merge (the common case on a draw): the limits stand, no class sums needed
        return edges.astype(np.float64, copy=True), np.arange(L, dtype=np.intp), 0
    sums = np.bincount(c, weights=xf, minlength=L)
    lut, removed = _merge_classes(cnt, sums, min_size)
    # keep the upper limit of each merged group (its last old class)
    last_of = np.array([np.flatnonzero(lut == g).max() for g in range(lut.max() + 1)])
    new_edges = np.concatenate([[edges[0]], edges[1:][last_of]])
    return new_edges, lut, removed


def merge_small_strata(
    x: ArrayLike, edges: ArrayLike, *, min_size: int = 2
) -> tuple[NDArray[np.float64], int]:
    """Remove empty classes and merge classes with fewer than ``min_size`` values.

    A small class is merged into the adjacent class whose mean of x is closer to its own
    (docs/science.md 7.3), by deleting the limit between them; the smallest class goes first, and
    this repeats until every class has at least ``min_size`` values or one class is left. Empty
    classes are always removed. Works on class counts and sums: one pass over x.

    Returns
    -------
    edges : ndarray of float64
        New limits.
    n_merged : int
        Classes removed.
    """
    xf = _finite(x)
    e = np.asarray(edges, dtype=np.float64)
    codes = np.searchsorted(e[1:-1], xf, side="left")
    new_edges, _, removed = _merge_on_codes(xf, codes, e, min_size)
    return new_edges, removed


def discretize(
    x: ArrayLike,
    method: str = "natural_breaks",
    k: int = 20,
    *,
    sample_size: int | None = 5000,
    seed: int | None = 0,
    min_stratum_size: int = 2,
) -> Discretization:
    """Discretize a factor into strata.

    Parameters
    ----------
    x : array_like, any shape
        Factor values; NaN marks a missing value (code -1).
    method : str
        A method of :data:`DISCRETIZERS` with class limits (``"natural_breaks"``,
        ``"quantile"``, ``"equal_interval"``, ``"geometric"``, ``"std"``, or the short names
        ``"natural"``, ``"equal"``, ``"sd"``); ``"categorical"`` uses the distinct values as
        strata.
    k : int
        Number of classes requested (ignored for ``"categorical"``).
    sample_size, seed
        Sampling for natural breaks (see :func:`natural_breaks`).
    min_stratum_size : int
        Classes with fewer values are merged into a neighbour (:func:`merge_small_strata`);
        ``0`` or ``1`` keeps singletons (empty classes are always removed). Not applied to
        categorical factors, whose classes have no neighbours.

    Returns
    -------
    Discretization
    """
    arr = np.asarray(x)
    if method == "categorical":
        from ncp_subsidence.kernels.geodetector import encode_strata

        codes, labels = encode_strata(arr)
        return Discretization(
            codes.reshape(arr.shape).astype(np.int32),
            np.asarray(labels),
            int(labels.size),
            method,
            int(labels.size),
        )
    if int(k) < 1:
        raise DataError(f"k must be at least 1, got {k}")
    xf = _finite(arr)
    edges = discretizer(method).edges(xf, k, sample_size=sample_size, seed=seed)
    if edges.size < 2:  # constant factor
        edges = np.array([edges[0], edges[0]])
    codes = apply_breaks(arr, edges)
    edges, lut, n_merged = _merge_on_codes(
        np.asarray(arr, dtype=np.float64).ravel(),
        codes.ravel(),
        edges,
        max(int(min_stratum_size), 1),
    )
    if n_merged:
        codes = np.where(codes >= 0, lut.astype(np.int32)[np.maximum(codes, 0)], -1).astype(
            np.int32
        )
    return Discretization(codes, edges, int(edges.size - 1), method, int(k), n_merged)


@dataclass(frozen=True)
class OptimalDiscretization:
    """Result of the OPGD search.

    Attributes
    ----------
    method : str
        Method with the largest q.
    k : int
        Number of classes requested for it.
    q : float
    discretization : Discretization
        The chosen strata of x.
    methods : tuple of str
    ks : ndarray of int, shape (n_k,)
    q_table : ndarray of float, shape (n_methods, n_k)
        q of every (method, k); NaN where undefined.
    """

    method: str
    k: int
    q: float
    discretization: Discretization
    methods: tuple[str, ...]
    ks: NDArray[np.int64]
    q_table: NDArray[np.float64]


def optimal_discretization(
    y: ArrayLike,
    x: ArrayLike,
    methods: Sequence[str] = METHODS,
    k_range: Sequence[int] = range(3, 21),
    *,
    sample_size: int | None = 5000,
    seed: int | None = 0,
    min_stratum_size: int = 2,
) -> OptimalDiscretization:
    """Optimal-parameter geographical detector (OPGD): method and k with the largest q.

    Parameters
    ----------
    y : array_like of float, shape (n,)
        Response.
    x : array_like of float, shape (n,)
        Continuous factor.
    methods : sequence of str
        Methods to try (default :data:`METHODS`: natural_breaks, quantile, equal_interval,
        geometric, std; the short names work too).
    k_range : sequence of int
        Numbers of classes to try (default 3..20, as docs/science.md 7.3).
    sample_size, seed, min_stratum_size
        See :func:`discretize`.

    Returns
    -------
    OptimalDiscretization
        Ties go to the first method in ``methods`` and then the smallest k.

    References
    ----------
    Song et al. (2020).
    """
    yv = np.asarray(y, dtype=np.float64).ravel()
    xv = np.asarray(x, dtype=np.float64).ravel()
    if yv.shape != xv.shape:
        raise DataError(f"y and x differ in size: {yv.size} vs {xv.size}")
    ks = np.asarray(list(k_range), dtype=np.int64)
    ok = np.isfinite(yv) & np.isfinite(xv)
    yv, xv = yv[ok], xv[ok]
    if yv.size == 0:
        raise DataError("optimal_discretization: no sample has both y and x finite")
    shift = float(yv.mean())
    q_table = np.full((len(methods), ks.size), np.nan)
    best: tuple[float, int, int] | None = None
    natural = [discretizer(m).name == "natural_breaks" for m in methods]
    nat = _natural_edges_all_k(xv, [int(k) for k in ks], sample_size, seed) if any(natural) else {}
    cache: dict[tuple[int, int], Discretization] = {}
    for a, m in enumerate(methods):
        for b, k in enumerate(ks):
            if natural[a]:  # one dynamic programme gives the limits for every k
                edges, n_merged = merge_small_strata(xv, nat[int(k)], min_size=min_stratum_size)
                d = Discretization(
                    apply_breaks(xv, edges), edges, edges.size - 1, m, int(k), n_merged
                )
            else:
                d = discretize(xv, m, int(k), min_stratum_size=min_stratum_size)
            st = stratum_stats(yv, d.codes, max(d.n_strata, 1), shift=shift)
            q = factor_from_stats(st, warn=False).q
            q_table[a, b] = q
            cache[(a, b)] = d
            if np.isfinite(q) and (best is None or q > best[0]):
                best = (q, a, b)
    if best is None:
        raise DataError("optimal_discretization: q is undefined for every candidate (constant y?)")
    q, a, b = best
    d = cache[(a, b)]
    full = apply_breaks(np.asarray(x, dtype=np.float64), d.edges)
    chosen = Discretization(
        full.reshape(np.shape(x)), d.edges, d.n_strata, d.method, d.k_requested, d.n_merged
    )
    return OptimalDiscretization(
        methods[a], int(ks[b]), float(q), chosen, tuple(methods), ks, q_table
    )


# --------------------------------------------------------------------------------------------
# Class limits of the geodetector design
# --------------------------------------------------------------------------------------------


def factor_breaks(
    y: np.ndarray,
    factors: np.ndarray,
    *,
    method: str = "natural_breaks",
    n_strata: int = 20,
    sample_size: int = 5000,
    seed: int = 0,
    min_stratum_size: int = 2,
) -> list[np.ndarray]:
    """Class limits of every factor from the valid cells (docs/science.md 7.3).

    Parameters
    ----------
    y : ndarray of float, shape (n,)
        Response at the cells (used only by a method that fits the response: ``"optimal"``).
    factors : ndarray of float, shape (k, n)
        Factor values at the same cells (every value finite).
    method : str
        A key of :data:`DISCRETIZERS` (``geodetector.discretization``).
    n_strata, sample_size, seed, min_stratum_size
        See :func:`discretize`.

    Returns
    -------
    list of ndarray of float64
        Class limits ``[min, b_1, ..., max]`` per factor (after merging small classes).
    """
    spec = discretizer(method)
    out = []
    for x in factors:
        if spec.fit is not None:
            d = spec.fit(
                y, x, sample_size=sample_size, seed=seed, min_stratum_size=min_stratum_size
            )
        else:
            d = discretize(
                x,
                spec.name,
                n_strata,
                sample_size=sample_size,
                seed=seed,
                min_stratum_size=min_stratum_size,
            )
        out.append(np.asarray(d.edges, dtype=np.float64))
    return out


def sample_codes(
    y: np.ndarray,
    x: np.ndarray,
    edges: np.ndarray | None,
    *,
    method: str,
    n_strata: int,
    sample_size: int,
    seed: int,
    min_stratum_size: int,
    codes: np.ndarray | None = None,
) -> tuple[np.ndarray, int, np.ndarray]:
    """Codes of one factor at the drawn points: given limits (merged on the sample) or new ones.

    Parameters
    ----------
    y : ndarray of float, shape (m,)
        Response at the points (used only when ``edges`` is None and the method fits y).
    x : ndarray of float, shape (m,)
        Factor values at the points.
    edges : ndarray of float64, shape (L + 1,), or None
        Class limits computed once (non-decreasing, as :func:`factor_breaks` gives them), merged
        again on the sample (:func:`merge_small_strata`); None computes new limits from the
        sample.
    method, n_strata, sample_size, seed, min_stratum_size
        See :func:`factor_breaks`.
    codes : ndarray of int, shape (m,), optional
        ``apply_breaks(x, edges)`` when already known (the codes of every cell looked up at the
        points): the merge then works on them and the merged codes are a lookup, with the same
        result as recomputing them (a merged class is a run of adjacent old classes).

    Returns
    -------
    codes : ndarray of int32, shape like x
    n_codes : int
        Number of strata.
    edges : ndarray of float64
        The limits used.
    """
    if edges is None:
        (e,) = factor_breaks(
            y,
            x[None, :],
            method=method,
            n_strata=n_strata,
            sample_size=sample_size,
            seed=seed,
            min_stratum_size=min_stratum_size,
        )
    elif codes is not None and np.asarray(edges).size >= 2:
        e0 = np.asarray(edges, dtype=np.float64)
        xv = np.asarray(x, dtype=np.float64).ravel()
        c = np.asarray(codes).ravel()
        if not np.isfinite(xv[c >= 0]).any():
            raise DataError("cannot discretize: no finite values")
        e, lut, _ = _merge_on_codes(xv, c, e0, min_stratum_size)
        if e.size == e0.size:  # nothing merged: the codes stand
            out = c.astype(np.int32, copy=True)
        else:
            out = np.where(c >= 0, lut.astype(np.int32)[np.maximum(c, 0)], -1).astype(np.int32)
        return out.reshape(np.shape(x)), int(e.size - 1), e
    else:
        e, _ = merge_small_strata(x, edges, min_size=min_stratum_size)
    if e.size < 2:
        e = np.array([e[0], e[0]])
    return apply_breaks(x, e), int(e.size - 1), e
