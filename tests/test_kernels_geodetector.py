"""Geodetector kernels against published R results, PyPI geodetector, and independent oracles."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ncp_subsidence.errors import DataError, DataWarning
from ncp_subsidence.kernels.geodetector import (
    INTERACTION_LABELS,
    classify_interaction,
    combine_stats,
    ecological_detector,
    ecological_from_ssw,
    factor_detector,
    factor_from_stats,
    factor_pairs,
    geodetector_batch,
    interaction_detector,
    risk_detector,
    stratum_stats,
)

# Published results of the CRAN R package `geodetector` (Xu, Hou, Wang & Yin) on its example data
# `CollectData` (neural-tube defects, Heshun; Wang et al. 2010), as printed by
# `geodetector::factor_detector("incidence", c("soiltype", "watershed", "elevation"), CollectData)`
# and, for the R packages `GD` and `gdverse` (population variance in lambda), `GD::gd(...)`. Source:
# gdverse vignette "Consistency With the Results of Existing GDM R Packages" (CRAN,
# https://stat.ethz.ch/CRAN/web/packages/gdverse/vignettes/consistency.Rmd). PyPI `geodetector`
# ships the same 185 rows as `load_disease()` with the columns renamed:
# soiltype -> type, watershed -> region, elevation -> level.
R_GEODETECTOR = {  # column: (q, p)
    "type": (0.3857168, 0.3632363),
    "region": (0.6377737, 0.0001169914),
    "level": (0.6067087, 0.04080407),
}
R_GD_GDVERSE = {
    "type": (0.3857168, 0.372145486),
    "region": (0.6377737, 0.000128803),
    "level": (0.6067087, 0.043382244),
}


@pytest.fixture(scope="module")
def disease() -> pd.DataFrame:
    from geodetector.dataset import load_disease

    df = load_disease()
    assert list(df.columns) == ["incidence", "type", "region", "level"]
    assert len(df) == 185
    return df


@pytest.mark.parametrize("column", sorted(R_GEODETECTOR))
def test_matches_published_r_geodetector(disease, column):
    q_pub, p_pub = R_GEODETECTOR[column]
    r = factor_detector(disease["incidence"].to_numpy(), disease[column].to_numpy())
    # published to 7 significant digits: rounding error at most 5e-8
    assert abs(r.q - q_pub) < 1e-7
    assert abs(r.p_value - p_pub) < 1e-6
    assert r.convention == "R"
    assert r.n_samples == 185


@pytest.mark.parametrize("column", sorted(R_GD_GDVERSE))
def test_matches_published_gd_gdverse_with_population_variance(disease, column):
    q_pub, p_pub = R_GD_GDVERSE[column]
    r = factor_detector(
        disease["incidence"].to_numpy(), disease[column].to_numpy(), convention="pypi"
    )
    assert abs(r.q - q_pub) < 1e-7
    assert abs(r.p_value - p_pub) < 1e-6


def test_matches_pypi_geodetector_on_disease(disease):
    from geodetector import GeoDetector

    gd = GeoDetector(factors=["type", "region", "level"], target="incidence")
    gd.fit(disease)
    res = geodetector_batch(
        disease["incidence"].to_numpy(),
        [disease[c].to_numpy() - disease[c].min() for c in ("type", "region", "level")],
        [int(disease[c].max() - disease[c].min() + 1) for c in ("type", "region", "level")],
        convention="pypi",
    )
    for row, r in zip(gd.q_values_.itertuples(), res.factors):
        assert abs(row.q_value - r.q) < 1e-12
        assert abs(row.p_value - r.p_value) < 1e-9
    names = ["type", "region", "level"]
    for (i, j), ir in zip(res.pairs, res.interactions):
        assert abs(gd.interaction_q_.loc[names[i], names[j]] - ir.q12) < 1e-12
        assert gd.interaction_type_.loc[names[i], names[j]] == ir.interaction_type


def _random_strata(rng, n, k_codes, *, singletons):
    x = rng.integers(0, k_codes, n)
    if singletons:
        x[:singletons] = np.arange(k_codes, k_codes + singletons)  # one sample each
    return x


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_pypi_geodetector_on_random_data(seed):
    """Random data with singleton strata: PyPI drops them, convention='pypi' must agree."""
    from geodetector import FactorDetector, InteractionDetector
    from geodetector._stats import q_significance_test, q_statistic

    rng = np.random.default_rng(seed)
    n = 600
    x1 = _random_strata(rng, n, 8, singletons=2)
    x2 = _random_strata(rng, n, 6, singletons=1)
    y = 0.4 * x1 + np.sin(x2) + rng.normal(0, 1.5, n) + 50.0
    for x in (x1, x2):
        ours = factor_detector(y, x, convention="pypi")
        assert abs(ours.q - q_statistic(y, x)) < 1e-12
        assert abs(ours.p_value - q_significance_test(y, x)) < 1e-9
        fd = FactorDetector().fit(pd.DataFrame({"x": x}), y)
        assert abs(ours.q - fd.q_value_) < 1e-12
        assert ours.n_strata == fd.n_strata_
    idet = InteractionDetector().fit(pd.DataFrame({"a": x1, "b": x2}), y)
    pair = idet.pairs_[0]
    ours = interaction_detector(y, x1, x2, convention="pypi")
    assert abs(ours.q12 - pair["q_12"]) < 1e-12
    assert abs(ours.q1 - pair["q_1_pair"]) < 1e-12
    assert abs(ours.q2 - pair["q_2_pair"]) < 1e-12
    assert ours.interaction_type == pair["interaction_type"]


def _pandas_oracle(y, x):
    """Straightforward q, F and lambda (R convention) with pandas groupby."""
    df = pd.DataFrame({"y": y, "x": x})
    g = df.groupby("x")["y"]
    n_h, mean_h, var_h = g.count(), g.mean(), g.var(ddof=0)
    n, L = len(df), len(n_h)
    q = 1.0 - (n_h * var_h).sum() / (n * df["y"].var(ddof=0))
    f = (n - L) / (L - 1) * q / (1 - q)
    lam = ((mean_h**2).sum() - (np.sqrt(n_h) * mean_h).sum() ** 2 / n) / df["y"].var(ddof=1)
    return q, f, lam, L


@pytest.mark.parametrize("seed", [3, 4])
def test_matches_pandas_groupby_oracle(seed):
    rng = np.random.default_rng(seed)
    n = 5000
    x = rng.integers(0, 17, n)
    y = np.cos(x) * 3 + rng.gamma(2.0, 2.0, n) - 20.0
    q, f, lam, L = _pandas_oracle(y, x)
    r = factor_detector(y, x)
    assert abs(r.q - q) < 1e-12
    assert r.f_stat == pytest.approx(f, rel=1e-10)
    assert r.noncentrality == pytest.approx(lam, rel=1e-10)
    assert r.n_strata == L
    assert r.p_value == pytest.approx(stats.ncf.sf(f, L - 1, n - L, lam), rel=1e-8, abs=1e-14)
    assert r.p_value_central == pytest.approx(stats.f.sf(f, L - 1, n - L), rel=1e-8, abs=1e-300)


def test_synthetic_step_function_recovers_analytic_q():
    """docs/science.md 7.6 synthetic 1: Y = 10 * 1[X > 0.5] + N(0, 3^2); q = 25 / 34 ~ 0.735.

    With n = 40000 the sampling s.d. of q is about (1 - q) * sqrt(4 q / n) ~ 0.0023 (delta method
    on SSB/SST); the tolerance 0.012 is five of them. Twenty quantile strata put one break within
    a stratum width of 0.5, so their q may fall short by at most the share of one straddling
    stratum; we require it within [0.70, q_true + 0.012].
    """
    rng = np.random.default_rng(7)
    n = 40_000
    x = rng.uniform(0, 1, n)
    y = 10.0 * (x > 0.5) + rng.normal(0, 3, n)
    q_true = 25.0 / 34.0
    r = factor_detector(y, (x > 0.5).astype(int))
    assert abs(r.q - q_true) < 0.012
    from ncp_subsidence.kernels.discretize import discretize

    d = discretize(x, "quantile", 20)
    r20 = factor_detector(y, d.codes)
    assert 0.70 < r20.q < q_true + 0.012
    assert r20.p_value_central < 1e-300 or r20.p_value_central == 0.0


def test_synthetic_product_interaction_enhances():
    """docs/science.md 7.6 synthetic 2: Y = f(X1) g(X2) must enhance (q12 > max(q1, q2))."""
    rng = np.random.default_rng(8)
    n = 20_000
    x1, x2 = rng.uniform(0, 1, n), rng.uniform(0, 1, n)
    y = np.sin(3 * x1) * (x2 > 0.5) * 10 + rng.normal(0, 1, n)
    c1 = np.minimum((x1 * 5).astype(int), 4)
    c2 = np.minimum((x2 * 5).astype(int), 4)
    for conv in ("R", "pypi", "wang2010"):
        r = interaction_detector(y, c1, c2, interaction_convention=conv)  # type: ignore[arg-type]
        assert r.q12 > max(r.q1, r.q2) + 0.1
        assert r.interaction_type in (2, 4)
        assert r.label == INTERACTION_LABELS[r.interaction_type]


def test_chan_combine_is_exact_and_associative():
    rng = np.random.default_rng(9)
    y = rng.normal(1e3, 1.0, 3001)  # large offset: the naive sum-of-squares formula loses digits
    c = rng.integers(0, 7, y.size)
    whole = stratum_stats(y, c, 7, shift=1e3)
    parts = [stratum_stats(y[s], c[s], 7, shift=1e3) for s in np.array_split(np.arange(y.size), 5)]
    left = combine_stats(combine_stats(*parts[:2]), combine_stats(*parts[2:]))
    right = combine_stats(parts[0], combine_stats(parts[1], combine_stats(*parts[2:])))
    for got in (left, right):
        np.testing.assert_array_equal(got.count, whole.count)
        np.testing.assert_allclose(got.total, whole.total, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(got.m2, whole.m2, rtol=1e-12)
    # M2 is the two-pass sum of squared deviations per stratum
    oracle = pd.Series(y).groupby(c).apply(lambda s: ((s - s.mean()) ** 2).sum()).to_numpy()
    np.testing.assert_allclose(whole.m2, oracle, rtol=1e-12)


def test_nan_in_y_and_x_are_dropped_and_counted():
    rng = np.random.default_rng(10)
    y = rng.normal(size=200)
    x = rng.integers(0, 4, 200).astype(float)
    y[[1, 5, 9]] = np.nan
    x[[5, 20, 30, 40]] = np.nan
    r = factor_detector(y, x)
    keep = np.isfinite(y) & np.isfinite(x)
    ref = factor_detector(y[keep], x[keep])
    assert r.n_dropped == 6
    assert r.n_samples == 194
    assert abs(r.q - ref.q) < 1e-14  # same samples; the summing shift may differ by rounding
    ir = interaction_detector(y, x, rng.integers(0, 3, 200))
    assert ir.n_dropped == 6 and ir.n_samples == 194


def test_constant_y_gives_nan_and_a_warning():
    with pytest.warns(DataWarning, match="constant"):
        r = factor_detector(np.full(50, 3.0), np.arange(50) % 5)
    assert np.isnan(r.q) and np.isnan(r.p_value) and np.isnan(r.f_stat)


def test_single_stratum_gives_q_zero_and_a_warning():
    y = np.random.default_rng(11).normal(size=40)
    with pytest.warns(DataWarning, match="only 1 stratum"):
        r = factor_detector(y, np.zeros(40, dtype=int))
    assert r.q == 0.0 and np.isnan(r.p_value) and r.n_strata == 1
    with pytest.warns(DataWarning):
        rp = factor_detector(y, np.zeros(40, dtype=int), convention="pypi")
    assert rp.q == 0.0 and rp.p_value == 1.0


def test_one_sample_strata_kept_by_r_dropped_by_pypi():
    rng = np.random.default_rng(12)
    y = rng.normal(size=100)
    x = rng.integers(0, 4, 100)
    x[:3] = [10, 11, 12]  # three singleton strata
    r = factor_detector(y, x)
    p = factor_detector(y, x, convention="pypi")
    assert r.n_singleton == 3 and p.n_singleton == 3
    assert r.n_strata == 7 and r.n_samples == 100
    assert p.n_strata == 4 and p.n_samples == 97
    q_dropped, _, _, _ = _pandas_oracle(y[3:], x[3:])
    assert abs(p.q - q_dropped) < 1e-12
    q_kept, _, _, _ = _pandas_oracle(y, x)
    assert abs(r.q - q_kept) < 1e-12
    # the options can be set one by one
    mixed = factor_detector(y, x, singletons="drop")
    assert mixed.convention == "custom" and abs(mixed.q - p.q) < 1e-15


def test_p_value_depends_on_offset_of_y_not_on_scale():
    rng = np.random.default_rng(13)
    x = rng.integers(0, 5, 300)
    y = 0.3 * x + rng.normal(size=300)
    base = factor_detector(y, x)
    scaled = factor_detector(1000.0 * y, x)
    shifted = factor_detector(y + 50.0, x)
    for other in (scaled, shifted):
        assert other.q == pytest.approx(base.q, abs=1e-12)
        assert other.f_stat == pytest.approx(base.f_stat, rel=1e-9)
        assert other.p_value_central == pytest.approx(base.p_value_central, rel=1e-8)
    assert scaled.p_value == pytest.approx(base.p_value, rel=1e-8, abs=1e-15)
    assert abs(shifted.p_value - base.p_value) > 1e-3


@pytest.mark.parametrize(
    ("q12", "q1", "q2", "r", "pypi", "wang"),
    [
        (0.1, 0.2, 0.3, 0, 0, 0),  # below min
        (0.2, 0.2, 0.3, 0, 1, 1),  # equal to min: R says nonlinear weaken
        (0.25, 0.2, 0.3, 1, 1, 1),  # between
        (0.3, 0.2, 0.3, 2, 1, 1),  # equal to max: R says bi-variable enhance
        (0.4, 0.2, 0.3, 2, 2, 2),
        (0.5, 0.2, 0.3, 2, 3, 3),  # equal to the sum: R never reports independent
        (0.5004, 0.2, 0.3, 4, 4, 3),  # within wang2010's 1e-3
        (0.7, 0.2, 0.3, 4, 4, 4),
        (0.3, 0.3, 0.3, 2, 1, 1),  # all equal
    ],
)
def test_interaction_classes_and_ties(q12, q1, q2, r, pypi, wang):
    assert classify_interaction(q12, q1, q2, convention="R") == r
    assert classify_interaction(q12, q1, q2, convention="pypi") == pypi
    assert classify_interaction(q12, q1, q2, convention="wang2010") == wang
    assert classify_interaction(np.nan, q1, q2) == -1


def test_risk_detector_matches_scipy_welch():
    rng = np.random.default_rng(14)
    x = rng.integers(0, 4, 400)
    y = x * 0.2 + rng.normal(0, 1 + x, 400)
    r = risk_detector(y, x)
    for i in range(4):
        assert r.mean[i] == pytest.approx(y[x == i].mean(), rel=1e-12)
        for j in range(4):
            if i == j:
                assert np.isnan(r.p_value[i, j])
                continue
            t, p = stats.ttest_ind(y[x == i], y[x == j], equal_var=False)
            assert r.t_stat[i, j] == pytest.approx(t, rel=1e-10)
            assert r.p_value[i, j] == pytest.approx(p, rel=1e-8)
            assert r.significant[i, j] == (p < 0.05)


def test_ecological_detector_formula_and_conventions():
    rng = np.random.default_rng(15)
    n = 500
    xa, xb = rng.integers(0, 5, n), rng.integers(0, 5, n)
    y = 0.8 * xa + 0.1 * xb + rng.normal(size=n)
    ssw = {
        k: sum(((y[x == h] - y[x == h].mean()) ** 2).sum() for h in range(5))
        for k, x in (("a", xa), ("b", xb))
    }
    e = ecological_detector(y, xa, xb)
    assert e.f_stat == pytest.approx(ssw["a"] / ssw["b"], rel=1e-12)
    assert e.p_value == pytest.approx(stats.f.sf(e.f_stat, n - 1, n - 1), rel=1e-10)
    assert e.p_value > 0.5  # A explains more: SSW_a < SSW_b, no evidence that A explains less
    e2 = ecological_detector(y, xb, xa)
    assert e2.significant and e2.p_value < 1e-6
    ep = ecological_detector(y, xb, xa, convention="pypi")
    assert ep.p_value == pytest.approx(min(2 * e2.p_value, 1.0), rel=1e-10)
    er = ecological_detector(y, xa, xb, convention="R")
    qa, qb = factor_detector(y, xa).q, factor_detector(y, xb).q
    assert er.f_stat == pytest.approx(max(qa / qb, qb / qa), rel=1e-10)
    assert er.significant == (er.f_stat > stats.f.ppf(0.9, n - 1, n - 1))
    # unequal sample sizes follow Wang et al. (2010) Eq. 5
    got = ecological_from_ssw(10.0, 100, 8.0, 50)
    assert got.f_stat == pytest.approx(100 * 49 * 10.0 / (50 * 99 * 8.0))
    assert (got.df1, got.df2) == (99, 49)


def test_batch_equals_single_detectors_and_stats_route():
    rng = np.random.default_rng(16)
    n = 3000
    codes = [rng.integers(0, 6, n), rng.integers(0, 4, n), rng.integers(0, 9, n)]
    y = codes[0] - 0.5 * codes[1] * codes[2] + rng.normal(size=n)
    res = geodetector_batch(y, codes, [6, 4, 9], risk=True, ecological=True)
    for c, r in zip(codes, res.factors):
        single = factor_detector(y, c)
        assert abs(single.q - r.q) < 1e-13
        assert single.p_value == pytest.approx(r.p_value, rel=1e-9, abs=1e-15)
    for (i, j), ir in zip(res.pairs, res.interactions):
        single = interaction_detector(y, codes[i], codes[j])
        assert abs(single.q12 - ir.q12) < 1e-13
        assert single.interaction_type == ir.interaction_type
    assert len(res.risk) == 3 and len(res.ecological) == 6
    # factor_from_stats without m2 needs SST and then agrees with the m2 route
    st = stratum_stats(y, codes[0], 6)
    nom2 = stratum_stats(y, codes[0], 6, with_m2=False)
    sst = float(((y - y.mean()) ** 2).sum())
    assert factor_from_stats(nom2, sst=sst).q == pytest.approx(factor_from_stats(st).q, abs=1e-13)


def test_factor_pairs_default_and_given():
    assert factor_pairs(4) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    assert factor_pairs(1) == [] and factor_pairs(0) == []
    assert factor_pairs(3, [(np.int64(2), 0)]) == [(2, 0)]
    assert all(type(i) is int for pair in factor_pairs(3, np.array([[0, 2]])) for i in pair)
    assert factor_pairs(5, []) == []
    res = geodetector_batch(np.arange(6.0), [np.arange(6) % 2] * 3, [2, 2, 2])
    assert list(res.pairs) == factor_pairs(3)


def test_crossing_with_a_constant_factor_ties_exactly():
    """A constant second factor leaves the strata unchanged: q12 must equal q1 to the bit."""
    rng = np.random.default_rng(17)
    y = rng.normal(size=1000)
    x = rng.integers(0, 5, 1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # q of the constant factor alone is 0
        res = geodetector_batch(y, [x, np.zeros(1000, dtype=int)], [5, 1])
    ir = res.interactions[0]
    assert ir.q12 == ir.q1
    assert ir.interaction_type == 2  # R: q12 == max -> "Enhance, bi-variable"


def _same(a, b, where="result"):
    """Equal field by field, arrays and floats exactly (NaN equal to NaN)."""
    import dataclasses

    if dataclasses.is_dataclass(a):
        assert type(a) is type(b), where
        for f in dataclasses.fields(a):
            _same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _same(a[key], b[key], f"{where}[{key}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, z) in enumerate(zip(a, b)):
            _same(x, z, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, float):
        assert (np.isnan(a) and np.isnan(b)) or a == b, f"{where}: {a!r} != {b!r}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _sets(seed=21):
    """Sample sets with one layout: ordinary, with missing values, a constant factor, a set
    with as many strata as samples (no F test), and a set with singletons."""
    rng = np.random.default_rng(seed)
    out = []
    for n in (400, 250, 5, 60):
        codes = [rng.integers(0, 5, n), rng.integers(0, 3, n), rng.integers(0, 4, n)]
        y = 1.5 * codes[0] - codes[1] * codes[2] + rng.normal(size=n) + 1e3
        if n == 250:
            y[rng.random(n) < 0.05] = np.nan
            codes[2][rng.random(n) < 0.05] = -1
        if n == 5:
            codes[0] = np.arange(5)
        if n == 60:
            codes[1] = np.zeros(n, dtype=int)  # constant: one stratum
        out.append((y, codes))
    return out


@pytest.mark.parametrize("convention", ["R", "pypi"])
def test_finalize_batches_equal_one_set_and_one_tail_at_a_time(convention):
    from ncp_subsidence.kernels.geodetector import (
        batch_stats,
        finalize_batch,
        finalize_batches,
        noncentral_f_pvalue,
    )

    sets = _sets()
    batches = [batch_stats(y, c, [5, 3, 4]) for y, c in sets]
    flags = [True, False, True, False]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        many = finalize_batches(batches, risk=flags, ecological=flags, convention=convention)
        one = [
            finalize_batch(bs, risk=f, ecological=f, convention=convention)
            for bs, f in zip(batches, flags)
        ]
    _same(many, one)
    # the vectorised tails are those of one scipy call per detector
    checked = 0
    for res in many:
        for r in [*res.factors, *(i.factor12 for i in res.interactions)]:
            dfn, dfd = r.n_strata - 1, r.n_samples - r.n_strata
            if not np.isfinite(r.f_stat):
                continue
            if not (convention == "pypi" and (r.q <= 0.0 or r.q >= 1.0)):
                assert r.p_value == noncentral_f_pvalue(r.f_stat, dfn, dfd, r.noncentrality)
            assert r.p_value_central == float(stats.f.sf(r.f_stat, dfn, dfd))
            checked += 1
    assert checked >= 15
    assert any(np.isnan(r.p_value) for r in many[2].factors)  # as many strata as samples


def test_batch_stats_many_equals_batch_stats_set_by_set():
    from ncp_subsidence.kernels.geodetector import batch_stats, batch_stats_many

    sets = _sets(22)
    ys, codes = [y for y, _ in sets], [c for _, c in sets]
    for kw in ({}, {"pairs": []}, {"with_m2": False}, {"pairs": [(2, 0)], "with_m2": False}):
        many = batch_stats_many(ys, codes, [5, 3, 4], **kw)
        _same(many, [batch_stats(y, c, [5, 3, 4], **kw) for y, c in sets])
    nom2 = batch_stats_many(ys, codes, [5, 3, 4], with_m2=False)
    assert all(st.m2 is None for bs in nom2 for st in bs.factor_stats)
    # SST single-threaded: the same sum up to its last bits
    one = batch_stats_many(ys, codes, [5, 3, 4], blas_sst=False)
    for a, b in zip(one, batch_stats_many(ys, codes, [5, 3, 4])):
        assert a.sst == pytest.approx(b.sst, rel=1e-13)
        _same(a.factor_stats, b.factor_stats)
    with pytest.raises(DataError):
        batch_stats_many(ys, codes[:2], [5, 3, 4])


@pytest.mark.parametrize("convention", ["R", "pypi"])
def test_factor_q_is_the_q_of_the_full_detector(convention):
    from ncp_subsidence.kernels.geodetector import batch_stats, factor_q, q_needs_m2

    for y, codes in _sets(23):
        bs = batch_stats(y, codes, [5, 3, 4], with_m2=q_needs_m2(convention))
        full = batch_stats(y, codes, [5, 3, 4])
        for st, st_full in zip(bs.factor_stats, full.factor_stats):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DataWarning)
                ref = factor_from_stats(st_full, sst=full.sst, convention=convention).q
            _same(factor_q(st, sst=bs.sst, convention=convention), ref)
    assert q_needs_m2("pypi") and not q_needs_m2("R") and q_needs_m2("R", "drop")
