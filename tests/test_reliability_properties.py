"""Reliability: property tests of every kernel with NaN, inf, empty and degenerate inputs.

Each property separates valid from invalid inputs itself, from the documented contract of the
kernel, and asserts both sides: a valid input (NaN and inf are *missing data*, not invalid
input, unless the kernel says otherwise) must be accepted, with no exception at all, and meet
the property, with a value that is undefined (no finite input, too few samples, a constant
series) coming back NaN; an invalid input (an empty or degenerate network, no finite value at
all, fewer stations than unknowns) must be rejected with the specific class,
:class:`~ncp_subsidence.errors.DataError`, not any ``ValueError``. The strategies
(:mod:`ncp_subsidence.testing.strategies`) draw mostly valid inputs.

Floating-point errors: an input with only finite values is run under ``np.errstate(all="raise")``
(:func:`fp_guard`), so a silent 0/0 or overflow deep in a kernel fails the test; with NaN or
inf in the input, numpy's invalid-value flags are expected and ignored.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ncp_subsidence.errors import DataError, DataWarning
from ncp_subsidence.kernels import adjust as kadjust
from ncp_subsidence.kernels import aggregate as kaggregate
from ncp_subsidence.kernels import analysis as kanalysis
from ncp_subsidence.kernels import discretize as kdiscretize
from ncp_subsidence.kernels import downscale as kdownscale
from ncp_subsidence.kernels import geodetector as kgeodetector
from ncp_subsidence.kernels import geometry as kgeometry
from ncp_subsidence.kernels import sampling as ksampling
from ncp_subsidence.kernels import sbas as ksbas
from ncp_subsidence.kernels import trends as ktrends
from ncp_subsidence.kernels import vector as kvector
from ncp_subsidence.testing.strategies import (
    float_arrays,
    ifg_networks,
    monthly_series,
    pair_lists,
    polylines,
    special_floats,
    strata_codes,
)

PROPERTY = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(autouse=True)
def _quiet_expected_warnings():
    """Typed DataWarnings (e.g. 'no finite value') are the documented signal; numpy's are not."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        yield


def fp_guard(*arrays):
    """``np.errstate(all="raise")`` (gradual underflow allowed) when every input is finite, else
    ignore numpy's flags."""
    finite = all(np.isfinite(np.asarray(a, dtype=float)).all() for a in arrays)
    return np.errstate(all="raise", under="ignore") if finite else np.errstate(all="ignore")


# -- sbas --------------------------------------------------------------------------------------


@PROPERTY
@given(ifg_networks(inf=False))
def test_invert_network_nan_where_undefined(network):
    """A valid network with NaN phases is accepted; pixels without data are NaN.

    Mutation caught: SBAS refusing any NaN phase (a DataError on a valid input fails here).
    """
    phase, pairs, dates = network
    with fp_guard(phase):
        out = ksbas.invert_network(phase, pairs, dates, min_pairs=1)
    n_pixel, n_date = phase.shape[0], len(dates)
    assert out.displacement.shape == (n_pixel, n_date)
    assert out.velocity.shape == (n_pixel,)
    no_data = np.isnan(phase).all(axis=-1)
    assert np.isnan(out.velocity[no_data]).all()
    assert np.isnan(out.displacement[no_data]).all()
    assert (out.n_pairs_used[no_data] == 0).all()
    # every pixel with at least one pair is solved (min_pairs=1): min-norm on any network
    assert np.isfinite(out.velocity[~no_data]).all()
    assert np.isfinite(out.displacement[~no_data]).all()
    assert np.all(out.n_pairs_used == np.isfinite(phase).sum(axis=-1))


@PROPERTY
@given(ifg_networks(inf=True))
def test_invert_network_inf_is_no_data(network):
    """inf is missing data like NaN: accepted, never a finite answer from it, never inf."""
    phase, pairs, dates = network
    with fp_guard(phase):
        out = ksbas.invert_network(phase, pairs, dates, min_pairs=1)
    as_nan = np.where(np.isfinite(phase), phase, np.nan)
    with fp_guard(as_nan):
        ref = ksbas.invert_network(as_nan, pairs, dates, min_pairs=1)
    assert not np.isinf(out.displacement).any()
    assert not np.isinf(out.velocity).any()
    np.testing.assert_array_equal(out.velocity, ref.velocity)
    np.testing.assert_array_equal(out.n_pairs_used, ref.n_pairs_used)


@PROPERTY
@given(st.integers(0, 4).flatmap(lambda n: st.tuples(st.just(n), pair_lists(n))))
def test_invert_network_degenerate_networks(data):
    """Valid networks (>= 2 dates, >= 1 pair, no self or duplicate pair) are accepted and a
    zero phase gives a zero velocity; every other network is a DataError."""
    n_date, pairs = data
    dates = np.datetime64("2017-01-01") + 12 * np.arange(n_date).astype("timedelta64[D]")
    phase = np.zeros((2, len(pairs)))
    ordered = {tuple(sorted(p)) for p in pairs.tolist()}
    valid = (
        n_date >= 2
        and len(pairs) >= 1
        and all(a != b for a, b in pairs.tolist())
        and len(ordered) == len(pairs)
    )
    if not valid:
        with pytest.raises(DataError):
            ksbas.invert_network(phase, pairs, dates, min_pairs=1)
        return
    with np.errstate(all="raise"):
        out = ksbas.invert_network(phase, pairs, dates, min_pairs=1)
    np.testing.assert_array_equal(out.velocity, 0.0)
    np.testing.assert_array_equal(out.displacement, 0.0)


# -- geodetector -------------------------------------------------------------------------------


@PROPERTY
@given(st.integers(0, 30).flatmap(lambda n: st.tuples(float_arrays((n,)), strata_codes(n))))
def test_factor_detector_q_in_unit_interval_or_nan(data):
    y, x = data
    with fp_guard(y):
        res = kgeodetector.factor_detector(y, x)
    finite = y[np.isfinite(y)]
    if finite.size < 2 or np.ptp(finite) == 0:
        assert np.isnan(res.q)  # no variance to explain: undefined
    else:
        assert np.isnan(res.q) or 0.0 <= res.q <= 1.0 + 1e-12
    assert res.n_samples + res.n_dropped == y.size


@PROPERTY
@given(
    st.integers(0, 30).flatmap(
        lambda n: st.tuples(float_arrays((n,)), strata_codes(n), strata_codes(n))
    )
)
def test_interaction_and_risk_detectors_survive(data):
    y, x1, x2 = data
    with fp_guard(y):
        inter = kgeodetector.interaction_detector(y, x1, x2)
        risk = kgeodetector.risk_detector(y, x1)
    if np.isfinite(inter.q12):
        assert 0.0 <= inter.q12 <= 1.0 + 1e-12
    assert risk.mean.shape == risk.count.shape
    assert np.isnan(risk.mean[risk.count == 0]).all()


# -- discretize --------------------------------------------------------------------------------


@PROPERTY
@given(
    float_arrays(max_dims=1, max_side=40),
    st.sampled_from(["natural", "quantile", "equal", "geometric", "sd"]),
    st.integers(2, 8),
)
def test_discretize_codes_missing_as_minus_one(x, method, k):
    """A factor with a finite value is classified (NaN -> -1); one with none is a DataError."""
    if not np.isfinite(x).any():
        with pytest.raises(DataError, match="no finite values"):
            kdiscretize.discretize(x, method, k, sample_size=None)
        return
    with fp_guard(x):
        out = kdiscretize.discretize(x, method, k, sample_size=None)
    assert out.codes.shape == x.shape
    assert (out.codes[np.isnan(x)] == -1).all()
    assert out.codes.max(initial=-1) < max(out.n_strata, 0) or out.n_strata == 0


# -- sampling ----------------------------------------------------------------------------------


@PROPERTY
@given(st.integers(0, 40).flatmap(lambda n: float_arrays((n,), low=-60.0, high=20.0)))
def test_draw_sample_never_draws_nan(y):
    n = y.size
    lat = 38.0 + 0.013 * np.arange(n)
    lon = 116.0 + 0.007 * np.arange(n)
    with fp_guard(y):
        draw = ksampling.draw_sample(y, lat, lon, threshold=-15.0, seed=1)
    assert np.isfinite(y[draw.index]).all()
    assert (y[draw.index][draw.is_subsidence] <= -15.0).all()


# -- geometry ----------------------------------------------------------------------------------


@PROPERTY
@given(
    float_arrays((5,), low=-100.0, high=100.0),
    float_arrays((5,), low=20.0, high=50.0, inf=False),
    float_arrays((5,), low=-180.0, high=180.0, inf=False),
)
def test_los_projection_propagates_nan(d_los, incidence, heading):
    with fp_guard(d_los, incidence, heading):
        unit = kgeometry.los_unit_vector(incidence, heading)
        vertical = kgeometry.los_to_vertical(d_los, unit)
    bad_incidence = ~np.isfinite(incidence)
    assert np.isnan(unit[bad_incidence]).all()
    assert np.isnan(unit[~np.isfinite(heading), :2]).all()  # the up component needs no heading
    assert np.isnan(vertical[np.isnan(d_los) | bad_incidence]).all()
    assert not np.isfinite(vertical[~np.isfinite(d_los)]).any()
    ok = np.isfinite(d_los) & ~bad_incidence
    np.testing.assert_allclose(vertical[ok], d_los[ok] / unit[ok, 2])


@PROPERTY
@given(st.integers(0, 6).flatmap(lambda n: st.tuples(float_arrays((n,)), float_arrays((n,)))))
def test_fit_euler_pole_few_or_bad_stations(v):
    ve, vn = v
    n = ve.size
    lon, lat = 114.0 + np.arange(n) * 0.5, 36.0 + np.arange(n) * 0.3
    if n < 2:  # fewer stations than the 3 unknowns need: invalid, whatever the values
        with pytest.raises(DataError, match=">= 2 stations"):
            kgeometry.fit_euler_pole(lon, lat, ve, vn)
        return
    with fp_guard(ve, vn):
        fit = kgeometry.fit_euler_pole(lon, lat, ve, vn)
    usable = (np.isfinite(ve) & np.isfinite(vn)).sum()
    if usable < 2:  # 2 * usable equations for 3 unknowns: undefined
        assert np.isnan(fit.omega).all()
    assert np.isfinite(fit.omega).all() or np.isnan(fit.omega).all()  # never half a pole
    assert not np.isinf(fit.omega).any()


# -- adjust ------------------------------------------------------------------------------------


@PROPERTY
@given(
    st.integers(1, 3).flatmap(
        lambda f: st.tuples(
            float_arrays((f, 4, 3)), float_arrays((f, 4, 3), low=0.0, high=1.0, inf=False)
        )
    )
)
def test_blend_frames_nan_where_no_frame(data):
    values, feather = data
    sigma = np.ones(values.shape[0])[:, None, None]
    with fp_guard(values, feather):
        out = kadjust.blend_frames(values, feather, sigma)
    blended, _sigma_blended, n_frames = out
    none = n_frames == 0
    assert np.isnan(blended[none]).all()
    assert not np.isinf(blended).any()


@PROPERTY
@given(
    st.integers(0, 8).flatmap(lambda n: float_arrays((n,), low=-50.0, high=50.0)),
    st.integers(0, 2),
)
def test_fit_polynomial_underdetermined_or_nan(values, degree):
    n = values.size
    x, y = np.linspace(0, 100, n), np.linspace(-50, 30, n) ** 2 / 50
    with fp_guard(values):
        coef = kadjust.fit_polynomial(x, y, values, degree=degree)
    assert coef.shape == (kadjust.polynomial_n_terms(degree),)
    assert not np.isinf(coef).any()


# -- vector, aggregate -------------------------------------------------------------------------


@PROPERTY
@given(st.lists(polylines(), max_size=3))
def test_line_length_per_cell_adds_up_to_the_lines(lines):
    """Finite polylines inside the grid: every kilometre lands in some cell, none twice."""
    with np.errstate(all="raise"):
        km = kvector.line_length_per_cell(lines, 114.0, 40.0, 0.5, (4, 6))
    assert km.shape == (4, 6)
    assert np.isfinite(km).all() and (km >= 0).all()
    total = sum(
        float(kvector._great_circle_km(a[:-1, 0], a[:-1, 1], a[1:, 0], a[1:, 1]).sum())
        for a in lines
    )
    # the kernel sums great circles of the pieces of each lon/lat-straight segment cut at the
    # 0.5 deg cell edges, this the great circle of the whole segment: the path lengths differ
    # by at most ~ dlon^2 sin^2(lat) cos^2(lat) / 24 ~ 3e-5 for the longest (3 deg) segments
    assert km.sum() == pytest.approx(total, rel=1e-4, abs=1e-9)


def test_line_length_nan_vertex_drops_its_segments_with_a_warning():
    """A NaN vertex between two segments: both add nothing (here the whole line), counted."""
    line = np.array([[114.1, 39.9], [np.nan, 39.5], [115.0, 39.0]])
    with pytest.warns(DataWarning, match=r"2 segment\(s\) .*by line index: 0: 2\)"):
        km = kvector.line_length_per_cell([line], 114.0, 40.0, 0.5, (4, 6))
    np.testing.assert_array_equal(km, 0.0)


@PROPERTY
@given(
    st.lists(polylines(), min_size=1, max_size=3),
    st.data(),
    st.sampled_from([np.nan, np.inf, -np.inf]),
)
def test_line_length_non_finite_vertex_splits_its_line(lines, data, bad):
    """A NaN or inf vertex is a gap in its line: the result is exactly that of the line split
    there (the segments touching the vertex dropped, the rest kept), and one DataWarning counts
    the dropped segments per line.

    Mutations caught: dropping the whole line at a bad vertex (its other segments are missing),
    keeping a segment with one finite end (a NaN or inf in the cells, or a floating-point error
    under ``errstate(all="raise")``), a silent drop (no warning) or a wrong count.
    """
    k = data.draw(st.integers(0, len(lines) - 1), label="line")
    v = data.draw(st.integers(0, len(lines[k]) - 1), label="vertex")
    broken = [a.copy() for a in lines]
    broken[k][v, data.draw(st.integers(0, 1), label="coordinate")] = bad
    # the same segments in the same order, the bad vertex's neighbours cut away
    pieces = [*lines[:k], lines[k][:v], lines[k][v + 1 :], *lines[k + 1 :]]
    n_dropped = int(v > 0) + int(v < len(lines[k]) - 1)
    with np.errstate(all="raise"):
        with warnings.catch_warnings():
            warnings.simplefilter("error", DataWarning)  # the split lines are clean
            expected = kvector.line_length_per_cell(pieces, 114.0, 40.0, 0.5, (4, 6))
        with pytest.warns(DataWarning, match=rf" {n_dropped} segment.*line index: {k}: "):
            km = kvector.line_length_per_cell(broken, 114.0, 40.0, 0.5, (4, 6))
    np.testing.assert_array_equal(km, expected)


@PROPERTY
@given(float_arrays((4, 6)), st.sampled_from(["median", "mean", "count"]))
def test_cell_reduce_nan_where_no_finite_value(values, how):
    rows, cols = np.array([0, 0, 1, -1]), np.array([0, 0, 1, 1, 2, -1])
    with fp_guard(values):
        out = kaggregate.cell_reduce(values, rows, cols, (2, 3), how)
    counts = kaggregate.cell_reduce(values, rows, cols, (2, 3), "count")
    if how == "count":
        assert (out >= 0).all()
    else:
        assert np.isnan(out[counts == 0]).all()
        assert np.isfinite(out[counts > 0]).all() or np.isinf(values).any()


# -- analysis ----------------------------------------------------------------------------------


@PROPERTY
@given(float_arrays((3, 4, 5)), float_arrays((4, 5), low=0.0, high=1e6, inf=False))
def test_region_mean_nan_where_no_finite_cell(values, weights):
    weights = np.nan_to_num(weights)
    with fp_guard(values):
        out = kanalysis.region_mean(values, weights)
    assert out.shape == (3,)
    usable = (np.isfinite(values) & (weights > 0)).any(axis=(-2, -1))
    assert np.isnan(out[~usable]).all()


@PROPERTY
@given(monthly_series(max_len=40), st.sampled_from(["none", "linear", "seasonal", "diff"]))
def test_lagged_cross_correlation_short_or_nan_series(series, detrend):
    y, t = series
    x = np.roll(y, 1)
    with fp_guard(y):
        res = kanalysis.lagged_cross_correlation(x, y, t, max_lag=3, detrend=detrend, min_months=6)
    assert res["r"].shape == (4,)
    r = res["r"][np.isfinite(res["r"])]
    assert ((-1 - 1e-9 <= r) & (r <= 1 + 1e-9)).all()
    if np.isfinite(y).sum() < 6:
        assert np.isnan(res["r"]).all() and res["lag"] == -1


def test_lagged_cross_correlation_of_a_series_constant_after_one_month():
    """Hypothesis found it: y = [0, 1, 1, 1, 1, 1] has a constant lag-1 neighbour series, whose
    autocorrelation is undefined (NaN, which n_eff treats as no autocorrelation), not a
    division by a zero spread."""
    y = np.array([0.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    t = 2015.0 + (np.arange(6) + 0.5) / 12.0
    with np.errstate(all="raise"):
        res = kanalysis.lagged_cross_correlation(
            np.roll(y, 1), y, t, max_lag=3, detrend="none", min_months=6
        )
    assert np.isnan(res["rho_y"]) and np.isfinite(res["rho_x"])
    assert res["lag"] >= 0 and -1.0 <= res["r_lag"] <= 1.0
    assert res["n_eff"] == res["n"]  # no autocorrelation correction from an undefined rho
    # where both sides vary, the lag-1 autocorrelation is numpy's Pearson r
    z = np.array([0.3, -1.2, 2.0, np.nan, 0.7, 1.1, -0.4])
    a, b = z[:-1], z[1:]
    ok = np.isfinite(a) & np.isfinite(b)
    np.testing.assert_allclose(kanalysis._lag1(z), np.corrcoef(a[ok], b[ok])[0, 1], rtol=1e-14)


@PROPERTY
@given(monthly_series(min_len=0, max_len=36))
def test_yearly_velocity_nan_for_sparse_years(series):
    d, t = series
    with fp_guard(d):
        v = kanalysis.yearly_velocity(d[None, :], t, [2015, 2016, 2017], min_months=6)
    assert v.shape == (3, 1)
    for k, year in enumerate((2015, 2016, 2017)):
        inside = (t >= year) & (t < year + 1)
        if np.isfinite(d[inside]).sum() < 6:
            assert np.isnan(v[k, 0])


# -- trends, downscale (called, not edited) ----------------------------------------------------


def test_sens_slope_and_mann_kendall_of_an_empty_series():
    """Zero-length series are too short for any statistic: NaN, counts 0, batched as well."""
    empty = np.array([], dtype=float)
    with np.errstate(all="raise"):
        slope, mk = ktrends.sens_slope(empty, empty), ktrends.mann_kendall(empty, empty)
        batch = ktrends.sens_slope(np.zeros((3, 0)), empty)
        mk_batch = ktrends.mann_kendall(np.zeros((3, 0)), empty, hamed_rao=False)
        stats = ktrends.trend_statistics(np.zeros((2, 0)), empty, empty.astype(int))
    assert slope.shape == () and np.isnan(slope)
    assert int(mk["n_valid"]) == 0 and int(mk["s"]) == 0
    assert np.isnan(mk["z"]) and np.isnan(mk["p"])
    assert batch.shape == (3,) and np.isnan(batch).all()
    assert mk_batch["z"].shape == (3,) and np.isnan(mk_batch["p"]).all()
    assert (mk_batch["n_valid"] == 0).all()
    assert stats.shape == (2, len(ktrends.TREND_STATISTICS))
    assert np.isnan(stats[:, :-1]).all() and (stats[:, -1] == 0).all()


@PROPERTY
@given(monthly_series(min_len=0, max_len=30, inf=False))
def test_sens_slope_and_mann_kendall_nan_when_undefined(series):
    y, t = series
    with fp_guard(y):
        slope = ktrends.sens_slope(y, t)
        mk = ktrends.mann_kendall(y, t)
    if np.isfinite(y).sum() < 2:
        assert np.isnan(slope)
    assert int(mk["n_valid"]) == np.isfinite(y).sum()
    if np.isfinite(y).sum() < 3:  # no test with fewer than 3 values
        assert np.isnan(mk["z"]) and np.isnan(mk["p"])


@PROPERTY
@given(float_arrays((12, 2, 2), inf=False))
def test_anomaly_nan_where_baseline_empty(x):
    in_baseline = np.zeros(12, dtype=bool)
    in_baseline[:6] = True
    with fp_guard(x):
        out = kdownscale.anomaly(x, in_baseline)
    empty = ~np.isfinite(x[:6]).any(axis=0)
    assert np.isnan(out[:, empty]).all()


@PROPERTY
@given(special_floats())
def test_unit_conversions_keep_nan(value):
    arr = np.array([value, 1.0])
    with fp_guard(arr):
        for out in (kdownscale.grace_cm_to_mm(arr), kdownscale.kg_per_m2_to_mm(arr)):
            assert np.isnan(out[0]) == np.isnan(value)
            assert np.isfinite(out[1])


def test_empty_inputs_are_answered_not_crashed():
    """Zero-length inputs to the reductions: empty results or NaN, never an IndexError."""
    empty = np.array([], dtype=float)
    assert np.isnan(kgeodetector.factor_detector(empty, empty.astype(int)).q)
    with pytest.raises(DataError, match="no finite values"):
        kdiscretize.discretize(empty, "quantile", 4)
    assert kvector.line_length_per_cell([], 114.0, 40.0, 0.5, (2, 2)).sum() == 0
    assert np.isnan(kanalysis.region_mean(np.zeros((2, 0, 0)), np.zeros((0, 0)))).all()
    draw = ksampling.draw_sample(empty, empty, empty)
    assert draw.index.size == 0
