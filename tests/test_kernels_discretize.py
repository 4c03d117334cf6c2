"""Discretisation: exact Fisher-Jenks against brute force, the other methods, merging, OPGD."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ncp_subsidence.errors import DataError
from ncp_subsidence.kernels.discretize import (
    DISCRETIZERS,
    METHODS,
    apply_breaks,
    discretize,
    discretizer,
    equal_interval_breaks,
    factor_breaks,
    geometric_breaks,
    merge_small_strata,
    natural_breaks,
    optimal_discretization,
    quantile_breaks,
    std_breaks,
)
from ncp_subsidence.kernels.geodetector import factor_detector


def _ssd_of_partition(sorted_x, starts):
    bounds = [*starts, sorted_x.size]
    return sum(
        ((sorted_x[a:b] - sorted_x[a:b].mean()) ** 2).sum() for a, b in itertools.pairwise(bounds)
    )


def _brute_force(sorted_distinct, weights, k):
    """Best partition of sorted distinct values (with multiplicities) over all compositions."""
    expanded = np.repeat(sorted_distinct, weights)
    first = np.concatenate([[0], np.cumsum(weights)[:-1]])  # start of each distinct value
    best = (np.inf, None)
    for cut in itertools.combinations(range(1, sorted_distinct.size), k - 1):
        ssd = _ssd_of_partition(expanded, [0, *[int(first[c]) for c in cut]])
        if ssd < best[0] - 1e-12:
            best = (ssd, cut)
    return best


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [2, 3, 4])
def test_fisher_jenks_is_exact_against_brute_force(seed, k):
    rng = np.random.default_rng(seed)
    x = np.round(rng.gamma(1.5, 2.0, 11), 1)  # rounding makes ties (weighted distinct values)
    values, counts = np.unique(x, return_counts=True)
    if values.size < k:
        pytest.skip("too few distinct values")
    ssd_best, cut = _brute_force(values, counts, k)
    edges = natural_breaks(x, k, sample_size=None)
    codes = apply_breaks(x, edges)
    got = sum(((x[codes == h] - x[codes == h].mean()) ** 2).sum() for h in np.unique(codes))
    assert got == pytest.approx(ssd_best, rel=1e-10, abs=1e-12)
    expected_uppers = [values[c - 1] for c in cut]
    np.testing.assert_array_equal(edges[1:-1], expected_uppers)
    assert edges[0] == x.min() and edges[-1] == x.max()


@pytest.mark.filterwarnings("ignore:Numba not installed:UserWarning")
def test_fisher_jenks_matches_mapclassify():
    from mapclassify import FisherJenks

    x = np.random.default_rng(20).normal(size=120)
    edges = natural_breaks(x, 6, sample_size=None)
    np.testing.assert_allclose(edges[1:], FisherJenks(x, k=6).bins, rtol=0, atol=0)


def test_natural_breaks_on_a_sample_apply_to_all():
    rng = np.random.default_rng(21)
    x = np.concatenate([rng.normal(0, 1, 200_000), rng.normal(10, 1, 200_000)])
    d = discretize(x, "natural", 2, sample_size=2000, seed=3)
    assert d.n_strata == 2
    # the break is the largest sampled value of the lower mode (about 3 sd above its mean)
    assert 2.0 < d.edges[1] < 7.0
    assert (d.codes[x < 2.0] == 0).all() and (d.codes[x > 7.0] == 1).all()
    assert d.codes.shape == x.shape and set(np.unique(d.codes)) == {0, 1}
    assert d.edges[0] == x.min() and d.edges[-1] == x.max()
    again = discretize(x, "natural", 2, sample_size=2000, seed=3)
    np.testing.assert_array_equal(d.edges, again.edges)
    other = natural_breaks(x, 2, sample_size=2000, seed=4)
    assert other[1] != d.edges[1]  # the sample, hence the break, depends on the seed


def test_fewer_distinct_values_than_classes():
    x = np.array([1.0, 1.0, 2.0, 2.0, 3.0, 3.0])
    d = discretize(x, "natural", 5)
    assert d.n_strata == 3
    np.testing.assert_array_equal(d.codes, [0, 0, 1, 1, 2, 2])


def test_other_methods_breaks():
    rng = np.random.default_rng(22)
    x = rng.lognormal(0, 1, 10_000)
    eq = equal_interval_breaks(x, 5)
    np.testing.assert_allclose(np.diff(eq), (x.max() - x.min()) / 5, rtol=1e-12)
    qu = quantile_breaks(x, 4)
    counts = np.bincount(apply_breaks(x, qu))
    assert counts.min() >= 2499 and counts.max() <= 2501
    ge = geometric_breaks(x, 6)
    ratios = ge[1:] / ge[:-1]
    np.testing.assert_allclose(ratios[1:-1], ratios[1], rtol=1e-9)
    z = rng.normal(5, 2, 10_000)
    sd = std_breaks(z, 4)
    inner = sd[1:-1]
    np.testing.assert_allclose(np.diff(inner), z.std(), rtol=1e-9)
    assert inner[1] == pytest.approx(z.mean(), rel=1e-12)  # even k: the mean is a limit
    g0 = geometric_breaks(np.array([-3.0, 0.0, 5.0, 20.0]), 3)
    assert g0[0] == -3.0 and g0[-1] == 20.0 and np.all(np.diff(g0) > 0)


def test_missing_values_get_code_minus_one():
    x = np.array([0.1, np.nan, 0.5, 0.9, np.nan, 0.3])
    for m in METHODS:
        d = discretize(x, m, 2, min_stratum_size=1)
        assert list(np.flatnonzero(d.codes == -1)) == [1, 4]
        assert (d.codes[np.isfinite(x)] >= 0).all()
    with pytest.raises(DataError):
        discretize(np.full(4, np.nan), "quantile", 3)


def test_singleton_class_merges_into_the_neighbour_with_the_closer_mean():
    x = np.array([0.0, 0.1, 0.2, 3.5, 4.0, 4.1, 9.0, 9.1])
    edges = np.array([0.0, 0.2, 3.5, 4.1, 9.1])  # classes: {0,.1,.2} {3.5} {4,4.1} {9,9.1}
    merged, n = merge_small_strata(x, edges, min_size=2)
    assert n == 1
    np.testing.assert_array_equal(merged, [0.0, 0.2, 4.1, 9.1])  # 3.5 joins {4, 4.1}
    kept, n0 = merge_small_strata(x, edges, min_size=1)
    assert n0 == 0 and np.array_equal(kept, edges)
    d = discretize(x, "equal", 10)
    assert np.bincount(d.codes).min() >= 2
    d1 = discretize(x, "equal", 10, min_stratum_size=1)
    assert np.bincount(d1.codes).min() == 1  # singletons kept, empty classes removed
    assert (np.bincount(d1.codes) > 0).all()


def test_categorical_factor_as_it_is():
    x = np.array([3, 3, 7, 1, 7, -1])
    d = discretize(x, "categorical")
    np.testing.assert_array_equal(d.codes, [1, 1, 2, 0, 2, -1])
    np.testing.assert_array_equal(d.edges, [1, 3, 7])
    assert d.n_strata == 3


def test_optimal_discretization_picks_the_largest_q():
    rng = np.random.default_rng(23)
    x = rng.uniform(0, 1, 4000)
    y = np.where(x > 0.37, 5.0, 0.0) + rng.normal(0, 1, 4000)
    o = optimal_discretization(y, x, k_range=range(3, 9))
    assert o.q_table.shape == (len(METHODS), 6)
    assert o.q == np.nanmax(o.q_table)
    a, b = np.unravel_index(np.nanargmax(o.q_table), o.q_table.shape)
    assert (o.method, o.k) == (METHODS[a], int(o.ks[b]))
    assert o.q == pytest.approx(factor_detector(y, o.discretization.codes).q, abs=1e-12)
    assert o.q > 0.8
    assert o.discretization.codes.shape == x.shape


@pytest.mark.slow
def test_natural_breaks_ten_million_values_is_fast():
    """Issue 8 target: 20 natural-breaks classes over 10 million values in under 5 s."""
    import time

    x = np.random.default_rng(24).normal(size=10_000_000)
    t0 = time.perf_counter()
    d = discretize(x, "natural", 20)
    elapsed = time.perf_counter() - t0
    assert d.n_strata == 20 and d.codes.shape == x.shape
    assert elapsed < 10.0, f"{elapsed:.1f} s (target 5 s on an idle 2-core machine)"


def test_registry_names_aliases_and_unknown_methods():
    rng = np.random.default_rng(24)
    x = rng.lognormal(0, 1, 3000)
    assert METHODS == ("natural_breaks", "quantile", "equal_interval", "geometric", "std")
    for name, alias in (("natural_breaks", "natural"), ("equal_interval", "equal"), ("std", "sd")):
        assert discretizer(alias) is DISCRETIZERS[name]
        a, b = discretize(x, name, 7), discretize(x, alias, 7)
        np.testing.assert_array_equal(a.edges, b.edges)
        np.testing.assert_array_equal(a.codes, b.codes)
    np.testing.assert_array_equal(
        discretize(x, "natural_breaks", 5, sample_size=None, min_stratum_size=1).edges,
        natural_breaks(x, 5, sample_size=None),
    )
    with pytest.raises(DataError, match="unknown discretization method"):
        discretize(x, "jenks", 5)
    with pytest.raises(DataError, match="chooses its strata from the response"):
        discretize(x, "optimal", 5)  # needs y: factor_breaks or optimal_discretization


def test_factor_breaks_follow_the_registry():
    rng = np.random.default_rng(25)
    x = rng.uniform(0, 1, (2, 1500))
    y = np.where(x[0] > 0.6, 3.0, 0.0) + rng.normal(0, 0.5, 1500)
    for name, spec in DISCRETIZERS.items():
        edges = factor_breaks(y, x, method=name, n_strata=6, sample_size=500, seed=1)
        assert len(edges) == 2
        if spec.fit is not None:
            expected = optimal_discretization(y, x[1], sample_size=500, seed=1).discretization
        else:
            expected = discretize(x[1], name, 6, sample_size=500, seed=1)
        np.testing.assert_array_equal(edges[1], expected.edges)
    with pytest.raises(DataError, match="unknown discretization"):
        factor_breaks(y, x, method="jenks")


def _plain_fisher_jenks(values, weights, k_max):
    """Fisher's programme one value at a time over every start (no pruning, no blocks)."""
    n = values.size
    mu = np.average(values, weights=weights)
    scale = np.sqrt(np.average((values - mu) ** 2, weights=weights)) or 1.0
    v = (values - mu) / scale
    w = weights.astype(np.float64)
    cw = np.concatenate([[0.0], np.cumsum(w)])
    cwx = np.concatenate([[0.0], np.cumsum(w * v)])
    cwx2 = np.concatenate([[0.0], np.cumsum(w * v * v)])
    cost = np.full((k_max, n), np.inf)
    start = np.zeros((k_max, n), dtype=np.intp)
    for i in range(n):
        sw = cw[i + 1] - cw[: i + 1]
        sx = cwx[i + 1] - cwx[: i + 1]
        sx2 = cwx2[i + 1] - cwx2[: i + 1]
        ssd = np.maximum(sx2 - sx * sx / sw, 0.0)
        cost[0, i] = ssd[0]
        if k_max > 1 and i > 0:
            cand = cost[:-1, :i] + ssd[1:]
            best = np.argmin(cand, axis=1)
            cost[1:, i] = cand[np.arange(k_max - 1), best]
            start[1:, i] = best + 1
    return cost * scale * scale, start


def test_pruned_fisher_jenks_table_is_the_plain_programme_bit_for_bit():
    from ncp_subsidence.kernels.discretize import _fisher_jenks_table

    rng = np.random.default_rng(26)
    makers = [
        lambda n: rng.gamma(1.5, 2.0, n),
        lambda n: np.round(rng.normal(0, 1, n), 1),  # ties: weights > 1
        lambda n: np.r_[rng.normal(0, 1, n), 1e6 + rng.normal(0, 1, 4)],  # far outliers
        lambda n: 1e4 + rng.normal(0, 1e-3, n),  # large offset, tiny spread
        lambda n: rng.integers(0, 7, n).astype(float),  # few distinct values
    ]
    for trial in range(60):
        x = makers[trial % len(makers)](int(rng.integers(2, 400)))
        values, counts = np.unique(x, return_counts=True)
        k = int(min(rng.integers(1, 21), values.size))
        block = int(rng.choice([0, 1, 3, 16]))
        got = _fisher_jenks_table(values, counts.astype(np.float64), k, block=block)
        ref = _plain_fisher_jenks(values, counts.astype(np.float64), k)
        np.testing.assert_array_equal(got[1], ref[1], err_msg=f"start, trial {trial}")
        np.testing.assert_array_equal(got[0], ref[0], err_msg=f"cost, trial {trial}")


def test_sample_codes_from_looked_up_codes_equal_classifying_again():
    from ncp_subsidence.kernels.discretize import sample_codes

    rng = np.random.default_rng(27)
    x_all = rng.gamma(0.7, 2.0, 4000)
    edges = discretize(x_all, "natural_breaks", 12, sample_size=800).edges
    kw = dict(method="natural_breaks", n_strata=12, sample_size=800, seed=0)
    merged = 0
    for size in (15, 40, 300, 2000):
        x = x_all[rng.choice(x_all.size, size, replace=False)]
        for least in (1, 2, 5):
            ref = sample_codes(None, x, edges, min_stratum_size=least, **kw)
            got = sample_codes(
                None, x, edges, min_stratum_size=least, codes=apply_breaks(x, edges), **kw
            )
            np.testing.assert_array_equal(got[0], ref[0])
            assert got[0].dtype == ref[0].dtype == np.int32
            assert got[1] == ref[1]
            np.testing.assert_array_equal(got[2], ref[2])
            merged += ref[1] < edges.size - 1
    assert merged >= 3  # small classes were merged on the small samples
