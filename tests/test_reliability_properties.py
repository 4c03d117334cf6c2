"""Reliability: property tests of every kernel with NaN, inf, empty and degenerate inputs.

Each property asks two things: the kernel does not crash (a clear ``ValueError`` /
:class:`~ncp_subsidence.errors.DataError` for wholly invalid input is accepted, a numpy
``IndexError`` or ``LinAlgError`` from deep inside is not), and a value that is undefined (no
finite input, too few samples, a constant series) comes back NaN rather than a number.
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
        with np.errstate(all="raise"):  # a silent NaN from 0/0 deep in a kernel fails the test
            yield


def _rejects_cleanly(fn, *args, **kwargs):
    """Call ``fn``; a ValueError (DataError, ConfigError) is an acceptable answer."""
    try:
        return fn(*args, **kwargs)
    except ValueError as err:
        assert str(err), "a rejection must say why"
        return None


# -- sbas --------------------------------------------------------------------------------------


@PROPERTY
@given(ifg_networks(inf=False))
def test_invert_network_nan_where_undefined(network):
    phase, pairs, dates = network
    with np.errstate(all="ignore"):
        out = _rejects_cleanly(ksbas.invert_network, phase, pairs, dates, min_pairs=1)
    if out is None:
        return
    n_pixel, n_date = phase.shape[0], len(dates)
    assert out.displacement.shape == (n_pixel, n_date)
    assert out.velocity.shape == (n_pixel,)
    no_data = np.isnan(phase).all(axis=-1)
    assert np.isnan(out.velocity[no_data]).all()
    assert np.isnan(out.displacement[no_data]).all()
    assert (out.n_pairs_used[no_data] == 0).all()
    solved = np.isfinite(out.velocity)
    assert np.isfinite(out.displacement[solved]).all()
    assert np.all(out.n_pairs_used <= np.isfinite(phase).sum(axis=-1))


@PROPERTY
@given(ifg_networks(inf=True))
def test_invert_network_inf_is_no_data_or_clear_error(network):
    phase, pairs, dates = network
    with np.errstate(all="ignore"):
        out = _rejects_cleanly(ksbas.invert_network, phase, pairs, dates, min_pairs=1)
    if out is None:
        return
    # an inf phase never turns into a finite displacement by accident: it is no data or NaN
    assert not np.isinf(out.displacement).any()
    assert not np.isinf(out.velocity).any()


@PROPERTY
@given(st.integers(0, 3), st.integers(0, 3))
def test_invert_network_degenerate_networks(n_date, n_pair):
    dates = np.datetime64("2017-01-01") + 12 * np.arange(n_date).astype("timedelta64[D]")
    pairs = np.zeros((n_pair, 2), dtype=np.int64)
    phase = np.zeros((2, n_pair))
    with np.errstate(all="ignore"):
        out = _rejects_cleanly(ksbas.invert_network, phase, pairs, dates)
    if out is not None:  # a degenerate (self-)pair network cannot give a velocity
        assert np.isnan(out.velocity).all()


# -- geodetector -------------------------------------------------------------------------------


@PROPERTY
@given(st.integers(0, 30).flatmap(lambda n: st.tuples(float_arrays((n,)), strata_codes(n))))
def test_factor_detector_q_in_unit_interval_or_nan(data):
    y, x = data
    with np.errstate(all="ignore"):
        res = _rejects_cleanly(kgeodetector.factor_detector, y, x)
    if res is None:
        return
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
    with np.errstate(all="ignore"):
        inter = _rejects_cleanly(kgeodetector.interaction_detector, y, x1, x2)
        risk = _rejects_cleanly(kgeodetector.risk_detector, y, x1)
    if inter is not None and np.isfinite(inter.q12):
        assert 0.0 <= inter.q12 <= 1.0 + 1e-12
    if risk is not None:
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
    with np.errstate(all="ignore"):
        out = _rejects_cleanly(kdiscretize.discretize, x, method, k, sample_size=None)
    if out is None:
        return
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
    with np.errstate(all="ignore"):
        draw = _rejects_cleanly(ksampling.draw_sample, y, lat, lon, threshold=-15.0, seed=1)
    if draw is None:
        return
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
    with np.errstate(all="ignore"):
        unit = kgeometry.los_unit_vector(incidence, heading)
        vertical = _rejects_cleanly(kgeometry.los_to_vertical, d_los, unit)
    bad_incidence = ~np.isfinite(incidence)
    assert np.isnan(unit[bad_incidence]).all()
    assert np.isnan(unit[~np.isfinite(heading), :2]).all()  # the up component needs no heading
    if vertical is not None:
        assert np.isnan(vertical[np.isnan(d_los) | bad_incidence]).all()
        assert not np.isfinite(vertical[~np.isfinite(d_los)]).any()


@PROPERTY
@given(st.integers(0, 6).flatmap(lambda n: st.tuples(float_arrays((n,)), float_arrays((n,)))))
def test_fit_euler_pole_few_or_bad_stations(v):
    ve, vn = v
    n = ve.size
    lon, lat = 114.0 + np.arange(n) * 0.5, 36.0 + np.arange(n) * 0.3
    with np.errstate(all="ignore"):
        fit = _rejects_cleanly(kgeometry.fit_euler_pole, lon, lat, ve, vn)
    if fit is None:
        return
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
    with np.errstate(all="ignore"):
        out = _rejects_cleanly(kadjust.blend_frames, values, feather, sigma)
    if out is None:
        return
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
    with np.errstate(all="ignore"):
        coef = _rejects_cleanly(kadjust.fit_polynomial, x, y, values, degree=degree)
    if coef is not None:
        assert coef.shape == (kadjust.polynomial_n_terms(degree),)
        assert not np.isinf(coef).any()


# -- vector, aggregate -------------------------------------------------------------------------


@PROPERTY
@given(st.lists(float_arrays((3, 2), low=110.0, high=120.0, inf=False), max_size=3))
def test_line_length_per_cell_with_nan_vertices(lines):
    with np.errstate(all="ignore"):
        km = _rejects_cleanly(kvector.line_length_per_cell, lines, 114.0, 40.0, 0.5, (4, 6))
    if km is not None:
        assert km.shape == (4, 6)
        assert np.isfinite(km).all() and (km >= 0).all()


@PROPERTY
@given(float_arrays((4, 6)), st.sampled_from(["median", "mean", "count"]))
def test_cell_reduce_nan_where_no_finite_value(values, how):
    rows, cols = np.array([0, 0, 1, -1]), np.array([0, 0, 1, 1, 2, -1])
    with np.errstate(all="ignore"):
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
    with np.errstate(all="ignore"):
        out = kanalysis.region_mean(values, weights)
    assert out.shape == (3,)
    usable = (np.isfinite(values) & (weights > 0)).any(axis=(-2, -1))
    assert np.isnan(out[~usable]).all()


@PROPERTY
@given(monthly_series(max_len=40), st.sampled_from(["none", "linear", "seasonal", "diff"]))
def test_lagged_cross_correlation_short_or_nan_series(series, detrend):
    y, t = series
    x = np.roll(y, 1)
    with np.errstate(all="ignore"):
        res = _rejects_cleanly(
            kanalysis.lagged_cross_correlation, x, y, t, max_lag=3, detrend=detrend, min_months=6
        )
    if res is None:
        return
    assert res["r"].shape == (4,)
    r = res["r"][np.isfinite(res["r"])]
    assert ((-1 - 1e-9 <= r) & (r <= 1 + 1e-9)).all()
    if np.isfinite(y).sum() < 6:
        assert np.isnan(res["r"]).all() and res["lag"] == -1


@PROPERTY
@given(monthly_series(min_len=0, max_len=36))
def test_yearly_velocity_nan_for_sparse_years(series):
    d, t = series
    with np.errstate(all="ignore"):
        v = kanalysis.yearly_velocity(d[None, :], t, [2015, 2016, 2017], min_months=6)
    assert v.shape == (3, 1)
    for k, year in enumerate((2015, 2016, 2017)):
        inside = (t >= year) & (t < year + 1)
        if np.isfinite(d[inside]).sum() < 6:
            assert np.isnan(v[k, 0])


# -- trends, downscale (called, not edited) ----------------------------------------------------


@PROPERTY
@given(monthly_series(max_len=30, inf=False))
def test_sens_slope_and_mann_kendall_nan_when_undefined(series):
    y, t = series
    with np.errstate(all="ignore"):
        slope = _rejects_cleanly(ktrends.sens_slope, y, t)
        mk = _rejects_cleanly(ktrends.mann_kendall, y, t)
    if np.isfinite(y).sum() < 2:
        if slope is not None:
            assert np.isnan(slope)
    if mk is not None:
        assert int(mk["n_valid"]) == np.isfinite(y).sum()
        if np.isfinite(y).sum() < 3:  # no test with fewer than 3 values
            assert np.isnan(mk["z"]) and np.isnan(mk["p"])


@PROPERTY
@given(float_arrays((12, 2, 2), inf=False))
def test_anomaly_nan_where_baseline_empty(x):
    in_baseline = np.zeros(12, dtype=bool)
    in_baseline[:6] = True
    with np.errstate(all="ignore"):
        out = kdownscale.anomaly(x, in_baseline)
    empty = ~np.isfinite(x[:6]).any(axis=0)
    assert np.isnan(out[:, empty]).all()


@PROPERTY
@given(special_floats())
def test_unit_conversions_keep_nan(value):
    arr = np.array([value, 1.0])
    with np.errstate(all="ignore"):
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
