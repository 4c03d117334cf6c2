"""Trend kernels against analytic truth and independent slow references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from ncp_subsidence.kernels import trends

N_MONTHS = 60
T = 2018.0 + (np.arange(N_MONTHS) + 0.5) / 12.0
MONTH = np.arange(N_MONTHS) % 12 + 1


# ---------------------------------------------------------------- slow references (loops)


def slow_sen(y, t):
    slopes = [
        (y[j] - y[i]) / (t[j] - t[i])
        for i, j in itertools.combinations(range(len(y)), 2)
        if np.isfinite(y[i]) and np.isfinite(y[j])
    ]
    return float(np.median(slopes)) if slopes else np.nan


def slow_mk(y):
    x = [v for v in y if np.isfinite(v)]
    n = len(x)
    s = 0
    for i in range(n - 1):
        for j in range(i + 1, n):
            s += int(x[j] > x[i]) - int(x[j] < x[i])
    ties = {}
    for v in x:
        ties[v] = ties.get(v, 0) + 1
    var = (n * (n - 1) * (2 * n + 5) - sum(c * (c - 1) * (2 * c + 5) for c in ties.values())) / 18
    return s, var


def pairwise_reference(y, t):
    """Sen's slope (np.median of every pairwise slope), S and the tie sum of one series, formed
    densely with numpy: the definition, independent of the kernels' counting."""
    keep = np.isfinite(y)
    yc, tc = y[keep], t[keep]
    i, j = np.triu_indices(yc.size, 1)
    d = yc[j] - yc[i]
    sen = float(np.median(d / (tc[j] - tc[i]))) if d.size else np.nan
    counts = np.unique(yc, return_counts=True)[1]
    ties = int(np.sum(counts * (counts - 1) * (2 * counts + 5)))
    return sen, int(np.sign(d).sum()), ties


def rank_hamed_rao_factor(y, t, slope, alpha=0.05, max_lag=3):
    """Hamed-Rao factor with scipy's average ranks, vectorised over lags (one series)."""
    x = y - slope * t
    x = x[~np.isnan(x)]
    n = x.size
    if n < 3:
        return np.nan
    c = stats.rankdata(x) - (n + 1) / 2
    lags = np.arange(1, min(max_lag, n - 1) + 1)
    rho = np.array([np.sum(c[k:] * c[:-k]) for k in lags]) / np.sum(c * c)
    use = np.abs(rho) > stats.norm.ppf(1 - alpha / 2) / np.sqrt(n)
    terms = np.where(use, (n - lags) * (n - lags - 1.0) * (n - lags - 2) * rho, 0.0)
    return 1 + 2 / (n * (n - 1) * (n - 2)) * np.sum(terms)


def grace_like(n_series, seed, n=245):
    """Deseasonalised-GWSA-like monthly series (trend + AR(1) + noise) with the GRACE gap."""
    rng = np.random.default_rng(seed)
    t = 2002.29 + np.arange(n) / 12.0
    e = rng.normal(size=(n_series, n)) * 8
    ar = np.zeros_like(e)
    for k in range(1, n):
        ar[:, k] = 0.7 * ar[:, k - 1] + e[:, k]
    y = rng.normal(-15, 10, size=(n_series, 1)) * (t - 2012) + ar + rng.normal(size=(n_series, n))
    y[:, 183:194] = np.nan  # 2017-07 .. 2018-05
    return y, t


def slow_hamed_rao_factor(y, t, alpha=0.05):
    """Hamed & Rao (1998) Eq. 15-18, written from the paper with explicit loops."""
    slope = slow_sen(y, t)
    keep = np.isfinite(y)
    x = (y - slope * t)[keep]
    n = len(x)
    ranks = stats.rankdata(x)
    mean = sum(ranks) / n
    c0 = sum((r - mean) ** 2 for r in ranks)
    bound = stats.norm.ppf(1 - alpha / 2) / np.sqrt(n)
    total = 0.0
    for lag in range(1, n):
        rho = sum((ranks[i] - mean) * (ranks[i + lag] - mean) for i in range(n - lag)) / c0
        if abs(rho) > bound:
            total += (n - lag) * (n - lag - 1) * (n - lag - 2) * rho
    return 1 + 2 / (n * (n - 1) * (n - 2)) * total


def slow_hac_var(y, t, lags):
    """Newey-West variance of the OLS slope, written with explicit matrices per series."""
    x = trends.harmonic_design(t)
    keep = np.isfinite(y)
    u = np.zeros(len(y))
    beta = np.linalg.lstsq(x[keep], y[keep], rcond=None)[0]
    u[keep] = y[keep] - x[keep] @ beta
    xk = np.where(keep[:, None], x, 0.0)
    bread = np.linalg.inv(xk.T @ xk)
    meat = np.zeros((x.shape[1], x.shape[1]))
    for i in range(len(y)):
        meat += u[i] ** 2 * np.outer(x[i], x[i])
    for lag in range(1, lags + 1):
        w = 1 - lag / (lags + 1)
        for i in range(lag, len(y)):
            g = u[i] * u[i - lag] * np.outer(x[i], x[i - lag])
            meat += w * (g + g.T)
    m, p = keep.sum(), x.shape[1]
    return (bread @ meat @ bread)[1, 1] * m / (m - p)


# ---------------------------------------------------------------- time helpers


def test_decimal_year_and_month():
    times = np.array(["2018-01-01", "2018-07-02", "2020-12-31"], dtype="datetime64[ns]")
    np.testing.assert_allclose(
        trends.decimal_year(times), [2018 + 0.5 / 365, 2018 + 182.5 / 365, 2020 + 365.5 / 366]
    )
    np.testing.assert_array_equal(trends.month_of_year(times), [1, 7, 12])


# ---------------------------------------------------------------- OLS with harmonics


def test_ols_recovers_exact_harmonic_model():
    slope, amp, peak_month = -18.69, 25.0, 3.5  # mid-April peak
    y = 4.0 + slope * (T - 2020) + amp * np.cos(2 * np.pi * (T - peak_month / 12))
    y = y + 3.0 * np.sin(4 * np.pi * T)
    fit = trends.fit_harmonic_trend(np.stack([y, 2 * y]), T, hac_lags=0, min_valid=24)
    np.testing.assert_allclose(fit["slope"], [slope, 2 * slope], rtol=1e-10)
    np.testing.assert_allclose(fit["annual_amplitude"], [amp, 2 * amp], rtol=1e-10)
    np.testing.assert_allclose(fit["annual_phase"], [peak_month, peak_month], atol=1e-9)
    np.testing.assert_allclose(fit["slope_stderr"], 0.0, atol=1e-9)


def test_ols_standard_errors_match_slow_references():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(6, N_MONTHS)).cumsum(axis=-1) * 0.3 + rng.normal(size=(6, N_MONTHS))
    y[2, [5, 6, 30]] = np.nan
    classic = trends.fit_harmonic_trend(y, T, hac_lags=0, min_valid=24)
    hac = trends.fit_harmonic_trend(y, T, hac_lags=3, min_valid=24)
    for k in range(6):
        keep = np.isfinite(y[k])
        x = trends.harmonic_design(T)[keep]
        beta, rss, *_ = np.linalg.lstsq(x, y[k][keep], rcond=None)
        cov = rss[0] / (keep.sum() - x.shape[1]) * np.linalg.inv(x.T @ x)
        np.testing.assert_allclose(classic["slope"][k], beta[1], rtol=1e-10)
        np.testing.assert_allclose(classic["slope_stderr"][k], np.sqrt(cov[1, 1]), rtol=1e-8)
        np.testing.assert_allclose(
            hac["slope_stderr"][k], np.sqrt(slow_hac_var(y[k], T, 3)), rtol=1e-8
        )


def test_ols_too_few_months_is_nan():
    y = np.full((2, N_MONTHS), np.nan)
    y[0, :30] = np.arange(30.0)
    y[1, :20] = np.arange(20.0)
    fit = trends.fit_harmonic_trend(y, T, min_valid=24)
    assert np.isfinite(fit["slope"][0]) and np.isnan(fit["slope"][1])
    np.testing.assert_array_equal(fit["n_valid"], [30, 20])


# ---------------------------------------------------------------- Sen's slope


def test_sen_slope_of_linear_series_is_the_slope():
    y = np.stack([3.0 - 7.25 * T, 1.5 * T, 0 * T])
    y[0, [3, 17, 40]] = np.nan
    np.testing.assert_allclose(trends.sens_slope(y, T), [-7.25, 1.5, 0.0], rtol=1e-12, atol=1e-12)


def test_sen_slope_matches_slow_reference_and_scipy():
    rng = np.random.default_rng(2)
    n = 23
    t = np.sort(rng.uniform(0, 5, n))
    y = rng.normal(size=(40, n)) + rng.normal(size=(40, 1)) * t
    y[::3, rng.integers(0, n, 4)] = np.nan  # varying counts of valid pairs
    y[5] = np.nan
    y[6, 1:] = np.nan  # a single value: no pair
    got = trends.sens_slope(y, t)
    ref = np.array([slow_sen(row, t) for row in y])
    np.testing.assert_allclose(got, ref, rtol=1e-12, equal_nan=True)
    full = 1
    np.testing.assert_allclose(got[full], stats.theilslopes(y[full], t).slope, rtol=1e-12)


def test_sen_and_mk_exact_on_grace_like_series_with_gaps():
    y, t = grace_like(120, 11)
    rng = np.random.default_rng(12)
    y[rng.random(y.shape) < 0.05] = np.nan  # scattered missing months too
    for row, m in zip(range(6), [0, 1, 2, 3, 64, 65]):  # around the sampled path's threshold
        y[row, np.flatnonzero(np.isfinite(y[row]))[m:]] = np.nan
    y[6] = np.round(y[6])  # tied values
    y[7] = -3.0 * t  # a line: every slope equal
    y[8] = 4.0  # flat: every slope zero
    sen = trends.sens_slope(y, t)
    mk = trends.mann_kendall(y, t, hamed_rao=False)
    for k in range(len(y)):
        ref_sen, ref_s, ref_ties = pairwise_reference(y[k], t)
        np.testing.assert_array_equal(sen[k], ref_sen)
        assert mk["s"][k] == ref_s
        m = np.isfinite(y[k]).sum()
        np.testing.assert_array_equal(mk["var_s"][k], (m * (m - 1) * (2 * m + 5) - ref_ties) / 18)
    np.testing.assert_array_equal(sen[7], -3.0)
    keep = np.isfinite(y[20])
    assert stats.theilslopes(y[20][keep], t[keep]).slope == sen[20]


def test_sen_exact_on_heavily_tied_slopes_and_float32():
    rng = np.random.default_rng(13)
    n = 150
    t = np.arange(n) / 12.0  # regular steps: many slopes coincide exactly
    y = np.round(rng.normal(size=(60, n)) * 1.5 + rng.normal(size=(60, 1)) * np.arange(n) / 40)
    y[::4, 50:60] = np.nan
    y32 = (rng.normal(size=(20, n)) * 10 + np.arange(n)).astype(np.float32)
    got = trends.sens_slope(y, t)
    got32 = trends.sens_slope(y32, t)
    np.testing.assert_array_equal(got, [pairwise_reference(row, t)[0] for row in y])
    ref32 = [pairwise_reference(row.astype(np.float64), t)[0] for row in y32]
    np.testing.assert_array_equal(got32, ref32)
    scores = trends.mann_kendall(y32, hamed_rao=False)["s"]
    np.testing.assert_array_equal(scores, [pairwise_reference(row, t)[1] for row in y32])


def test_sen_counting_path_is_taken_and_fallback_stays_exact():
    # The kernel certifies its bracket or forms every slope; both paths must give the reference.
    y, t = grace_like(200, 14)
    slope, _, _, _, n_fallback = trends._rank_rows(y, t, True, False, 1.96, 3)
    assert n_fallback <= 2  # the counting path did the work here
    np.testing.assert_array_equal(slope, [pairwise_reference(row, t)[0] for row in y])
    flat = np.tile(np.where(np.arange(245) % 2, 1.0, 2.0), (3, 1))  # median slope 0, tied
    flat[1] = 5.0  # constant: every sampled slope is 0, no threshold to bracket with
    flat[2, ::3] = -2.0
    slope, _, _, _, n_fallback = trends._rank_rows(flat, t, True, False, 1.96, 3)
    assert n_fallback == 1
    np.testing.assert_array_equal(slope, [pairwise_reference(row, t)[0] for row in flat])


def test_sen_exact_when_slopes_differ_only_by_rounding():
    # Every slope within a few ulps of 3 (or of each other): thresholds and the median sit
    # inside the rounding band of the counting, which must then fall back, never guess.
    rng = np.random.default_rng(18)
    t = 2002.29 + np.arange(245) / 12.0
    y = np.concatenate(
        [
            3.0 * t + rng.normal(size=(20, 245)) * 1e-12 * 6000,
            1e6 + 3.0 * t + rng.normal(size=(20, 245)) * 1e-9,
        ]
    )
    np.testing.assert_array_equal(
        trends.sens_slope(y, t), [pairwise_reference(row, t)[0] for row in y]
    )


def test_sen_of_each_series_does_not_depend_on_the_batch():
    y, t = grace_like(30, 15)
    batch = trends.sens_slope(y, t)
    alone = [trends.sens_slope(y[k : k + 1], t)[0] for k in range(len(y))]
    np.testing.assert_array_equal(batch, alone)
    np.testing.assert_array_equal(trends.sens_slope(y[::-1], t), batch[::-1])


def test_hamed_rao_fused_and_standalone_equal_the_rank_reference():
    y, t = grace_like(40, 16)
    y[3, ::5] = np.nan
    y[4] = np.round(y[4] / 10)  # tied ranks
    y[5, 2:] = np.nan  # too few values
    y[6, [10, 50]], y[7, 100] = np.inf, -np.inf  # missing for S and Sen, ranked by Hamed-Rao
    fused = trends.mann_kendall(y, t, hamed_rao=True)  # slope and factor from one pass
    slope = trends.sens_slope(y, t)
    factor = trends.hamed_rao_variance_factor(y, t, slope, max_lag=3)
    ref = np.array([rank_hamed_rao_factor(y[k], t, slope[k]) for k in range(len(y))])
    np.testing.assert_array_equal(factor, ref)
    plain = trends.mann_kendall(y, t, hamed_rao=False)
    np.testing.assert_array_equal(fused["var_s"], plain["var_s"] * ref)
    given = trends.mann_kendall(y, t, hamed_rao=True, slope=slope)
    np.testing.assert_array_equal(given["z"], fused["z"])


# ---------------------------------------------------------------- Mann-Kendall


def test_mk_score_and_variance_match_slow_reference_with_ties():
    rng = np.random.default_rng(3)
    y = np.round(rng.normal(size=(30, 25)) + np.linspace(0, 1, 25), 0)  # many ties
    y[4, [0, 7]] = np.nan
    res = trends.mann_kendall(y, hamed_rao=False)
    for k in range(len(y)):
        s, var = slow_mk(y[k])
        assert res["s"][k] == s
        np.testing.assert_allclose(res["var_s"][k], var, rtol=1e-12)
        z = (s - np.sign(s)) / np.sqrt(var)
        np.testing.assert_allclose(res["z"][k], z, rtol=1e-12)
        np.testing.assert_allclose(res["p"][k], 2 * stats.norm.sf(abs(z)), rtol=1e-10)


def test_mk_score_is_kendall_tau_times_pairs():
    rng = np.random.default_rng(4)
    y = rng.normal(size=(10, 40))
    res = trends.mann_kendall(y, hamed_rao=False)
    for k in range(len(y)):
        tau = stats.kendalltau(np.arange(40), y[k]).statistic  # no ties: tau_a = tau_b
        assert res["s"][k] == round(tau * 40 * 39 / 2)


def test_hamed_rao_matches_slow_reference():
    rng = np.random.default_rng(5)
    e = rng.normal(size=(12, 48))
    ar = np.zeros_like(e)
    for i in range(1, 48):  # AR(1), phi = 0.6: correlated, so lags get selected
        ar[:, i] = 0.6 * ar[:, i - 1] + e[:, i]
    y = ar + 0.05 * np.arange(48)
    y[3, [10, 11]] = np.nan
    t = np.arange(48.0)
    slope = trends.sens_slope(y, t)
    got = trends.hamed_rao_variance_factor(y, t, slope)
    ref = np.array([slow_hamed_rao_factor(row, t) for row in y])
    np.testing.assert_allclose(got, ref, rtol=1e-10)
    assert np.all(got[np.arange(12) != 3] != 1.0)  # the correction did something


def test_hamed_rao_matches_pymannkendall():
    pymannkendall = pytest.importorskip("pymannkendall")
    rng = np.random.default_rng(6)
    y = rng.normal(size=(8, 60)).cumsum(axis=-1) * 0.5 + rng.normal(size=(8, 60))
    t = np.arange(60.0)  # pymannkendall detrends with slope * index
    res = trends.mann_kendall(y, t, hamed_rao=True, hamed_rao_max_lag=None)
    lag3 = trends.mann_kendall(y, t, hamed_rao=True, hamed_rao_max_lag=3)
    for k in range(len(y)):
        ref3 = pymannkendall.hamed_rao_modification_test(y[k], lag=3)
        np.testing.assert_allclose(lag3["var_s"][k], ref3.var_s, rtol=1e-9)
        ref = pymannkendall.hamed_rao_modification_test(y[k])
        assert res["s"][k] == ref.s
        np.testing.assert_allclose(res["var_s"][k], ref.var_s, rtol=1e-9)
        np.testing.assert_allclose(res["z"][k], ref.z, rtol=1e-9)
        np.testing.assert_allclose(res["p"][k], ref.p, rtol=1e-7, atol=1e-14)


def test_mk_rejection_rate_on_white_noise_is_five_percent():
    n_series, n = 2000, 245
    y = np.random.default_rng(7).normal(size=(n_series, n))
    t = np.arange(n, dtype=float)
    sd = np.sqrt(0.05 * 0.95 / n_series)  # binomial sd of the rejection rate: 0.49 %
    plain = np.mean(trends.mann_kendall(y, hamed_rao=False)["p"] < 0.05)
    assert abs(plain - 0.05) < 3 * sd, plain
    # Hamed-Rao on the first 3 lags (the trend default) keeps the nominal size.
    slope = trends.sens_slope(y, t)
    corrected = trends.mann_kendall(y, t, slope=slope, hamed_rao_max_lag=3)
    assert abs(np.mean(corrected["p"] < 0.05) - 0.05) < 3 * sd
    # With all lags (pymannkendall's default) lags selected by chance inflate the size
    # (9.4 % measured here); this is why trend_statistics defaults to 3 lags.
    all_lags = trends.mann_kendall(y, t, slope=slope, hamed_rao_max_lag=None)
    assert np.mean(all_lags["p"] < 0.05) > 0.05 + 3 * sd


def test_mk_flags_a_real_trend_and_flat_series_is_nan():
    rng = np.random.default_rng(8)
    y = np.stack([np.linspace(0, 5, N_MONTHS) + rng.normal(size=N_MONTHS), np.full(N_MONTHS, 2.0)])
    res = trends.mann_kendall(y, T)
    assert res["p"][0] < 1e-6 and res["z"][0] > 0
    assert np.isnan(res["z"][1]) and np.isnan(res["p"][1])


# ---------------------------------------------------------------- combined kernel


def _series(n_pixels, seed):
    rng = np.random.default_rng(seed)
    y = (
        -12.0 * (T - 2020)
        + 20 * np.cos(2 * np.pi * T)
        + rng.normal(size=(n_pixels, N_MONTHS)) * 5
        + rng.normal(size=(n_pixels, 1)) * 3 * (T - 2020)
    )
    y[:, 4:9] = np.nan  # a common gap (GRACE-like)
    y[0] = np.nan  # sea pixel
    y[1, 20:] = np.nan  # too short
    return y


def test_trend_statistics_layout_and_values():
    y = _series(16, 9)
    out = trends.trend_statistics(y.reshape(4, 4, N_MONTHS), T, MONTH)
    assert out.shape == (4, 4, len(trends.TREND_STATISTICS))
    flat = out.reshape(16, -1)
    names = list(trends.TREND_STATISTICS)
    assert np.all(np.isnan(flat[:2, : names.index("mk_s") + 1]))
    np.testing.assert_array_equal(flat[:, names.index("n_valid")], (~np.isnan(y)).sum(-1))
    ols = trends.fit_harmonic_trend(y[2:], T)
    np.testing.assert_array_equal(flat[2:, 0], ols["slope"])
    sen = trends.sens_slope(trends.deseasonalise(y[2:], MONTH), T)
    np.testing.assert_array_equal(flat[2:, names.index("sen_slope")], sen)
    deseasonalised = trends.deseasonalise(y[2:], MONTH)
    s_ref = [slow_mk(row)[0] for row in deseasonalised]  # S from the pairs of Sen's slope
    np.testing.assert_array_equal(flat[2:, names.index("mk_s")], s_ref)
    z_ref = trends.mann_kendall(deseasonalised, T)["z"]
    np.testing.assert_array_equal(flat[2:, names.index("mk_z")], z_ref)
    assert np.all(np.abs(flat[2:, names.index("annual_amplitude")] - 20) < 5)


@settings(max_examples=15, deadline=None)
@given(cuts=st.lists(st.integers(1, 39), max_size=5, unique=True))
def test_trend_statistics_are_identical_whatever_the_batching(cuts):
    y = _series(40, 10)
    whole = trends.trend_statistics(y, T, MONTH)
    edges = [0, *sorted(cuts), 40]
    parts = [trends.trend_statistics(y[a:b], T, MONTH) for a, b in itertools.pairwise(edges)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_trend_statistics_do_not_depend_on_the_row_blocks(monkeypatch):
    y, t = grace_like(50, 17)
    y[:, :30] += 40 * np.cos(2 * np.pi * t[:30])
    month = np.arange(245) % 12 + 1
    whole = trends.trend_statistics(y, t, month)
    monkeypatch.setattr(trends, "_ROW_BLOCK", 7)
    np.testing.assert_array_equal(trends.trend_statistics(y, t, month), whole)
    names = list(trends.TREND_STATISTICS)
    deseasonalised = trends.deseasonalise(y, month)
    sen_ref = [pairwise_reference(row, t)[0] for row in deseasonalised]
    np.testing.assert_array_equal(whole[:, names.index("sen_slope")], sen_ref)


# ---------------------------------------------------------------- compiled paths, bit for bit


def numpy_ols_reference(y, t, hac_lags, min_valid, n_harmonics=2):
    """The OLS fit as vectorised numpy over the rows (the formulation the compiled kernel
    repeats one row at a time): slope, its HAC standard error and the coefficients."""
    design = trends.harmonic_design(t, n_harmonics=n_harmonics)
    n, p = design.shape
    valid = np.isfinite(y)
    yz = np.where(valid, y, 0.0)
    n_valid = valid.sum(axis=-1)
    ok = n_valid >= max(min_valid, p + 1)
    ginv = np.full((len(y), p, p), np.nan)
    for k in np.flatnonzero(ok):
        w = valid[k].astype(np.float64)
        gram = np.empty((p, p))
        for i in range(p):
            for j in range(i, p):
                gram[i, j] = gram[j, i] = np.sum(w * (design[:, i] * design[:, j]))
        ginv[k] = np.linalg.pinv(gram[None], hermitian=True)[0]
    rhs = np.stack([(yz * design[:, i]).sum(axis=-1) for i in range(p)], axis=-1)
    beta = (ginv * rhs[:, None, :]).sum(axis=-1)
    fitted = np.zeros_like(y)
    for k in range(p):
        fitted += beta[:, k, None] * design[:, k]
    resid = np.where(valid, y - fitted, 0.0)
    dof = n_valid - p
    with np.errstate(divide="ignore", invalid="ignore"):
        if hac_lags <= 0:
            var = (resid * resid).sum(axis=-1) / dof * ginv[:, 1, 1]
        else:
            xh = np.zeros_like(y)
            for k in range(p):
                xh += ginv[:, 1, k, None] * design[:, k]
            z = resid * xh
            var = (z * z).sum(axis=-1)
            for lag in range(1, min(hac_lags, n - 1) + 1):
                weight = 1.0 - lag / (hac_lags + 1.0)
                var = var + 2.0 * weight * (z[:, lag:] * z[:, :-lag]).sum(axis=-1)
            var = var * n_valid / dof
        stderr = np.sqrt(np.maximum(var, 0.0))
    nan = np.nan
    return (
        np.where(ok, beta[:, 1], nan),
        np.where(ok, stderr, nan),
        np.where(ok[:, None], beta, nan),
    )


def numpy_deseasonalise_reference(y, month):
    out = np.array(y, copy=True)
    for m in np.unique(month):
        sel = month == m
        block = np.ascontiguousarray(y[..., sel])
        valid = np.isfinite(block)
        count = valid.sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            clim = np.where(count > 0, np.where(valid, block, 0.0).sum(axis=-1) / count, np.nan)
        out[..., sel] = block - clim[..., None]
    return out


def gappy_rows(seed, n=245):
    """Series with the GRACE gap, scattered and long gaps, infinities, too few or no values."""
    y, t = grace_like(24, seed, n=n)
    y = y + 40 * np.cos(2 * np.pi * t)
    rng = np.random.default_rng(seed)
    y[1, rng.random(n) < 0.4] = np.nan
    y[2, 20:150] = np.nan
    y[3, [5, 77]] = np.inf
    y[4, 30:] = np.nan  # 30 values
    y[5] = np.nan
    y[6] = 1e5 + y[6] * 1e-6
    y[7] = np.round(y[7] / 25)
    y[8, ::2] = np.nan
    return y, t


def bits(a):
    """The float64 bit patterns of ``a`` (NaN as 0): equal only if equal to the last bit and in
    the sign of zero."""
    a = np.asarray(a, dtype=np.float64)
    return np.where(np.isnan(a), 0.0, a).view(np.int64)


@pytest.mark.parametrize("hac_lags", [0, 1, 3, 400])
@pytest.mark.parametrize("n_harmonics", [1, 2, 3])
def test_ols_is_the_vectorised_numpy_formulation_bit_for_bit(hac_lags, n_harmonics):
    y, t = gappy_rows(20)
    fit = trends.fit_harmonic_trend(y, t, hac_lags=hac_lags, n_harmonics=n_harmonics)
    slope, stderr, beta = numpy_ols_reference(y, t, hac_lags, 24, n_harmonics)
    np.testing.assert_array_equal(bits(fit["slope"]), bits(slope))
    np.testing.assert_array_equal(bits(fit["slope_stderr"]), bits(stderr))
    np.testing.assert_array_equal(bits(fit["coefficients"]), bits(beta))
    short = trends.fit_harmonic_trend(y[:, :40].astype(np.float32), t[:40], min_valid=9)
    ref = numpy_ols_reference(y[:, :40].astype(np.float32).astype(np.float64), t[:40], 3, 9)
    np.testing.assert_array_equal(bits(short["slope_stderr"]), bits(ref[1]))


def test_deseasonalise_is_the_vectorised_numpy_formulation_bit_for_bit():
    y, _ = gappy_rows(21)
    month = np.arange(245) % 12 + 1
    y[9, month == 3] = np.nan  # a month without any value
    np.testing.assert_array_equal(
        bits(trends.deseasonalise(y, month)), bits(numpy_deseasonalise_reference(y, month))
    )
    odd = np.arange(245) % 5 * 10  # any labels, unordered groups
    np.testing.assert_array_equal(
        bits(trends.deseasonalise(y, odd)), bits(numpy_deseasonalise_reference(y, odd))
    )


def test_pairwise_sum_is_numpys_sum_bit_for_bit():
    rng = np.random.default_rng(22)
    work = np.empty(trends._PAIRWISE_WORK)
    for n in [*range(0, 300), 383, 384, 385, 1000, 4097, 100_003]:
        x = rng.normal(size=n + 3) * 10.0 ** rng.integers(-12, 12, size=n + 3)
        assert bits(0.0 + trends._pairwise_sum(x, 3, n, work)) == bits(x[3:].sum())


def test_pair_counts_compare_every_pair():
    rng = np.random.default_rng(23)
    for m in [*range(0, 20), 63, 234]:
        u = np.round(rng.normal(size=m) * 3)  # ties
        i, j = np.triu_indices(m, 1)
        assert trends._count_below(u, m) == np.sum(u[j] < u[i])
        assert trends._count_below_equal(u, m) == (np.sum(u[j] < u[i]), np.sum(u[j] == u[i]))


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(24).normal(size=234),
        np.round(np.random.default_rng(25).normal(size=234)),  # ties stay in time order
        np.r_[np.random.default_rng(26).normal(size=233), 1e12],  # clustered: the merge finish
        np.full(50, 3.0),
        np.array([0.0, 5e-324, 0.0, 5e-324, 1e-323]),  # a subnormal range: infinite scale
        np.array([1e307, -1e307, 0.0, 1.0]),
        np.array([7.0]),
    ],
)
def test_bucket_sort_is_a_stable_sort(values):
    m = values.size
    key, idx = np.empty(m), np.empty(m, dtype=np.int64)
    tmp_k, tmp_i = np.empty(m), np.empty(m, dtype=np.int64)
    counts = np.empty(trends._BUCKETS * m + 1, dtype=np.int64)
    trends._bucket_sort(values.copy(), key, idx, tmp_k, tmp_i, counts, m)
    order = np.argsort(values, kind="stable")
    np.testing.assert_array_equal(idx, order)
    np.testing.assert_array_equal(key, values[order])


def _sen_forced(y, t, s_first, density_first):
    """Sen's counting kernel on one series from a forced first threshold and density."""
    keep = np.isfinite(y)
    yc, tc = np.ascontiguousarray(y[keep]), np.ascontiguousarray(t[keep])
    m = yc.size
    return trends._sen_counting(
        yc, tc, m, np.empty(m), np.empty(m, dtype=np.int64), np.empty(m),
        np.empty(m, dtype=np.int64), np.empty(trends._BUCKETS * m + 1, dtype=np.int64),
        np.empty(m), np.empty(m * (m - 1) // 2), s_first, density_first,
    )  # fmt: skip


def test_sen_walk_is_exact_from_any_first_threshold_and_step():
    # The first threshold and step only steer the walk: forced onto the median itself, its
    # neighbours, far away, with steps from tiny (many steps, widening of a bracket on a tied
    # median) to huge, every certified result is the order statistic, bit for bit, and the
    # rest fall back. The series: noisy, tied, alternating (a median of 0 amid tied zeros), a
    # line and slopes equal to the last bits, an even pair count (the walk may start between
    # the two middle ranks) and more values than the every-pair count takes (a merge sort).
    rng = np.random.default_rng(27)
    y, t = grace_like(3, 28)
    series = [(row, t) for row in y]
    n = t.size
    series += [(np.round(rng.normal(size=n) * 0.6 + 0.02 * np.arange(n)), t)]
    series += [(np.where(np.arange(n) % 2, 1.0, 2.0), t), (-3.0 * t, t)]
    series += [(1e6 + 3.0 * t + rng.normal(size=n) * 1e-9, t)]
    series += [(np.r_[rng.normal(size=n - 1), np.nan], t)]  # 244 values: an even pair count
    t_long = np.arange(1100) / 12.0
    series += [(rng.normal(size=1100) + 0.01 * np.arange(1100), t_long)]
    certified = 0
    for row, tt in series:
        keep = np.isfinite(row)
        i, j = np.triu_indices(keep.sum(), 1)
        slopes = np.sort((row[keep][j] - row[keep][i]) / (tt[keep][j] - tt[keep][i]))
        hi = slopes.size // 2
        median = 0.5 * (slopes[hi - 1] + slopes[hi]) if slopes.size % 2 == 0 else slopes[hi]
        median = median + 0.0
        firsts = [np.nan, slopes[hi], slopes[hi - 1], slopes[hi + 1], slopes[hi // 3]]
        firsts += [np.nextafter(slopes[hi], np.inf), slopes[0] - 1.0, 1e-17, -1e-17]
        for s_first in firsts:
            for density in [np.nan, 1e-30, 1.0, 1e3, 1e12, 1e17, 1e18, 1e300]:
                value, ok = _sen_forced(row, tt, s_first, density)
                if ok:
                    certified += 1
                    assert bits(value) == bits(median), (s_first, density, value, median)
    assert certified > 400  # of 648


def test_sen_median_of_signed_zeros_is_positive_zero_on_every_path():
    # Rounded noise holds -0.0 and +0.0, so zero slopes of both signs sit at the median: the
    # counting walk and the all-pairs fallback both give +0.0.
    rng = np.random.default_rng(29)
    t = 2002.29 + np.arange(245) / 12.0
    y = np.round(rng.normal(size=(200, 245)) * 0.4)
    assert np.any(np.signbit(y) & (y == 0))
    slope, _, _, _, n_fallback = trends._rank_rows(y, t, True, False, 1.96, 3)
    assert n_fallback < 20  # mostly the counting path
    np.testing.assert_array_equal(slope, 0.0)
    assert not np.any(np.signbit(slope))
    short = trends.sens_slope(y[:, :40], t[:40])  # fewer pairs: all slopes formed
    np.testing.assert_array_equal(short, [pairwise_reference(row, t[:40])[0] for row in y[:, :40]])
    assert not np.any(np.signbit(short[short == 0]))


def test_mk_score_and_ties_on_every_sort_path():
    # Trending series sort by insertion (from either end), trendless ones past the budget of
    # moves count every pair (with ties: then sorted for the tie groups), long ones merge.
    rng = np.random.default_rng(30)
    n = 245
    t = np.arange(n) / 12.0
    y = np.stack(
        [
            -3.0 * t + rng.normal(size=n),  # descending
            3.0 * t + rng.normal(size=n),  # ascending
            rng.normal(size=n),  # trendless
            np.round(rng.normal(size=n) * 2),  # trendless, tied
            np.round(-3.0 * t + rng.normal(size=n)),  # descending, tied
            np.full(n, 1.0),
        ]
    )
    y[2, ::9] = np.nan
    long = np.round(rng.normal(size=(2, 1100)) * 3)
    long[0] += np.arange(1100) * 0.1
    for rows, tt in [(y, t), (long, np.arange(1100.0))]:
        for hamed_rao in (False, True):
            res = trends.mann_kendall(rows, tt, hamed_rao=hamed_rao)
            for k, row in enumerate(rows):
                _, ref_s, ref_ties = pairwise_reference(row, tt)
                m = np.isfinite(row).sum()
                assert res["s"][k] == ref_s
                var = (m * (m - 1) * (2 * m + 5) - ref_ties) / 18
                if not hamed_rao:
                    assert res["var_s"][k] == var


def test_hamed_rao_beyond_exact_integer_sums_keeps_time_order_float_sums():
    # Above _EXACT_RANK_SUMS values the sums are floats in time order (as before): the
    # reference sums left to right (np.cumsum) with scipy's ranks.
    rng = np.random.default_rng(31)
    n = trends._EXACT_RANK_SUMS + 5
    t = np.arange(n) / 12.0
    y = np.cumsum(rng.normal(size=n)) * 0.05 + rng.normal(size=n)
    slope = trends.sens_slope(y[None, :2000], t[:2000])[0]
    got = trends.hamed_rao_variance_factor(y, t, slope, max_lag=3)
    ranks = stats.rankdata(y - slope * t)
    c = ranks - np.cumsum(ranks)[-1] / n
    acov0 = np.cumsum(c * c)[-1]
    total = 0.0
    for lag in (1, 2, 3):
        rho = np.cumsum(c[lag:] * c[:-lag])[-1] / acov0
        if abs(rho) > stats.norm.ppf(0.975) / np.sqrt(n):
            total += (n - lag) * (n - lag - 1.0) * (n - lag - 2.0) * rho
    assert got == 1.0 + 2.0 / (n * (n - 1.0) * (n - 2.0)) * total


def test_trend_statistics_on_adversarial_rows_match_the_references():
    y, t = gappy_rows(32)
    month = np.arange(245) % 12 + 1
    y[10] = 5.0  # flat
    y[11] = np.where(np.arange(245) % 2, 1.0, 2.0)
    y[12, :200] = np.nan  # 45 values: all slopes formed
    out = trends.trend_statistics(y, t, month)
    names = list(trends.TREND_STATISTICS)
    slope, stderr, _ = numpy_ols_reference(y, t, 3, 24)
    np.testing.assert_array_equal(bits(out[:, names.index("ols_slope")]), bits(slope))
    np.testing.assert_array_equal(bits(out[:, names.index("ols_slope_stderr")]), bits(stderr))
    ok = np.isfinite(y).sum(-1) >= 24
    deseasonalised = numpy_deseasonalise_reference(y, month)
    for k in range(len(y)):
        sen, s, _ = pairwise_reference(deseasonalised[k], t)
        if not ok[k]:
            assert np.all(np.isnan(out[k, : names.index("mk_s") + 1]))
            continue
        np.testing.assert_array_equal(out[k, names.index("sen_slope")], sen)
        assert out[k, names.index("mk_s")] == s
