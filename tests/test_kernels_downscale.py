"""Downscaling and water-balance kernels against analytic truth and their defining identities."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.interpolate import RectBivariateSpline

from ncp_subsidence.kernels import downscale as ds
from ncp_subsidence.kernels.trends import decimal_year, month_of_year

RATIO = 5
NY_C, NX_C = 4, 5
NY, NX = NY_C * RATIO, NX_C * RATIO
FINE_STEP = 0.05
COARSE_STEP = FINE_STEP * RATIO
LAT_C = 40.0 - COARSE_STEP * (np.arange(NY_C) + 0.5)  # north-up (descending)
LON_C = 114.0 + COARSE_STEP * (np.arange(NX_C) + 0.5)
LAT_F = 40.0 - FINE_STEP * (np.arange(NY) + 0.5)
LON_F = 114.0 + FINE_STEP * (np.arange(NX) + 0.5)
TIMES = np.arange("2015-01", "2021-01", dtype="datetime64[M]").astype(
    "datetime64[ns]"
) + np.timedelta64(14, "D")
MONTH = month_of_year(TIMES)
N_T = TIMES.size


def _grid_operators(method):
    m_lat = ds.interpolation_matrix(LAT_C, LAT_F, method)
    m_lon = ds.interpolation_matrix(LON_C, LON_F, method)
    parent_lat = np.repeat(np.arange(NY_C), RATIO)
    parent_lon = np.repeat(np.arange(NX_C), RATIO)
    return m_lat, m_lon, parent_lat, parent_lon


def _land_weight(partly_sea=True):
    area = ds.cell_area_m2(LAT_F, FINE_STEP, FINE_STEP)[:, None] * np.ones((1, NX))
    land = np.ones((NY, NX), dtype=bool)
    if partly_sea:
        yy, xx = np.meshgrid(np.arange(NY), np.arange(NX), indexing="ij")
        land &= xx + 0.6 * yy < 24  # a diagonal coastline through several coarse cells
        land[:RATIO, -RATIO:] = False  # a coarse cell all sea
    return area * land, land


def _fields(seed=0, gap=True):
    rng = np.random.default_rng(seed)
    phase = 2 * np.pi * (MONTH - 1) / 12
    tg = (
        40 * np.cos(phase)[:, None, None]
        - 2.0 * np.arange(N_T)[:, None, None] / 12
        + rng.normal(size=(N_T, NY_C, NX_C)) * 10
    )
    tf = (
        300
        + 30 * np.cos(phase)[:, None, None] * rng.uniform(0.5, 1.5, (1, NY, NX))
        + rng.normal(size=(N_T, NY, NX)) * 5
        + rng.uniform(-50, 50, (1, NY, NX))
    )
    if gap:
        tg[30:41] = np.nan  # a GRACE / GRACE-FO-like gap of 11 months
    return tg, tf


# ---------------------------------------------------------------- units


def test_unit_conversions():
    np.testing.assert_allclose(ds.grace_cm_to_mm(np.array([1.5, -2.0])), [15.0, -20.0])
    layers = [np.array([0.3]), np.array([0.25]), np.array([0.2]), np.array([0.1])]
    np.testing.assert_allclose(ds.fldas_soil_moisture_mm(layers), [30 + 75 + 120 + 100])
    with pytest.raises(ValueError, match="thickness"):
        ds.fldas_soil_moisture_mm(layers[:3])
    np.testing.assert_allclose(ds.kg_per_m2_to_mm(np.array([12.5])), [12.5])
    days = ds.days_in_month(
        np.array(["2020-02-10", "2021-02-01", "2021-07-31"], dtype="datetime64[ns]")
    )
    np.testing.assert_array_equal(days, [29, 28, 31])
    np.testing.assert_allclose(
        ds.mm_per_hour_to_mm_per_month(np.array([0.1]), days[:1]), [0.1 * 24 * 29]
    )
    np.testing.assert_allclose(
        ds.kg_per_m2_per_s_to_mm_per_month(np.array([1e-5]), days[2:]), [1e-5 * 86400 * 31]
    )


def test_cell_area():
    # 0.01 deg cell at 38 N is about 0.974 km2 (docs/science.md validation target 22)
    np.testing.assert_allclose(
        ds.cell_area_m2(np.array([38.005]), 0.01, 0.01) / 1e6, 0.974, atol=5e-4
    )
    lat = np.arange(-89.5, 90, 1.0)
    total = ds.cell_area_m2(lat, 1.0, 1.0).sum() * 360
    np.testing.assert_allclose(total, 4 * np.pi * ds.EARTH_RADIUS_M**2, rtol=1e-12)


def test_baseline_mask_and_anomaly():
    keep = ds.baseline_mask(TIMES, "2016-01", "2017-12")
    assert keep.sum() == 24 and keep[12] and not keep[36]
    assert ds.baseline_mask(TIMES).all()
    x = np.arange(N_T, dtype=float)[:, None] * np.ones((1, 3))
    x[13, 1] = np.nan
    a = ds.anomaly(x, keep, axis=0)
    np.testing.assert_allclose(a[keep][:, 0].mean(), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.nanmean(a[keep][:, 1]), 0.0, atol=1e-12)


def test_nesting_ratio():
    assert ds.nesting_ratio(0.25, 0.01) == 25
    with pytest.raises(ValueError, match="integer multiple"):
        ds.nesting_ratio(0.25, 0.03)


# ---------------------------------------------------------------- interpolation operators


def test_interpolation_rows_sum_to_one_and_nearest_is_parent():
    for method in ("cubic", "bilinear", "nearest"):
        m = ds.interpolation_matrix(LAT_C, LAT_F, method)
        np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-12)
    coarse = np.random.default_rng(1).normal(size=(2, NY_C, NX_C))
    m_lat, m_lon, *_ = _grid_operators("nearest")
    fine = ds.interpolate_separable(coarse, m_lat, m_lon, RATIO)
    np.testing.assert_array_equal(fine, ds.expand_to_fine(coarse, RATIO))


def test_cubic_and_bilinear_reproduce_polynomials():
    yc, xc = np.meshgrid(LAT_C, LON_C, indexing="ij")
    yf, xf = np.meshgrid(LAT_F, LON_F, indexing="ij")

    def cubic(y, x):
        return 0.3 * (y - 39) ** 3 - 2 * (x - 114.6) ** 3 + (y - 39) * (x - 114.6) + 5

    def linear(y, x):
        return 3 * y - 2 * x + 0.5 * (y - 39) * (x - 114.6)  # bilinear

    m_lat, m_lon, *_ = _grid_operators("cubic")
    got = ds.interpolate_separable(cubic(yc, xc)[None], m_lat, m_lon, RATIO)[0]
    np.testing.assert_allclose(got, cubic(yf, xf), atol=1e-9)  # not-a-knot: cubics are exact
    m_lat, m_lon, *_ = _grid_operators("bilinear")
    got = ds.interpolate_separable(linear(yc, xc)[None], m_lat, m_lon, RATIO)[0]
    np.testing.assert_allclose(got, linear(yf, xf), atol=1e-9)


def test_cubic_equals_rect_bivariate_spline_inside_the_grid():
    coarse = np.random.default_rng(2).normal(size=(NY_C + 3, NX_C + 2))
    lat_c = 36.0 + 0.25 * np.arange(NY_C + 3) + 0.125
    lon_c = 114.0 + 0.25 * np.arange(NX_C + 2) + 0.125
    lat_f = np.linspace(lat_c[0], lat_c[-1], 31)
    lon_f = np.linspace(lon_c[0], lon_c[-1], 29)
    ref = RectBivariateSpline(lat_c, lon_c, coarse, kx=3, ky=3, s=0)(lat_f, lon_f)
    got = ds.interpolation_matrix(lat_c, lat_f) @ coarse @ ds.interpolation_matrix(lon_c, lon_f).T
    np.testing.assert_allclose(got, ref, atol=1e-10)


def test_descending_and_ascending_grids_give_the_same_operator():
    up = ds.interpolation_matrix(LAT_C[::-1], LAT_F[::-1], "cubic")
    down = ds.interpolation_matrix(LAT_C, LAT_F, "cubic")
    np.testing.assert_allclose(up, down[::-1, ::-1], atol=1e-14)


def test_coarse_cell_mean_matches_a_loop():
    weight, _ = _land_weight()
    fine = np.random.default_rng(3).normal(size=(3, NY, NX))
    fine[1, 2, 3] = np.nan
    got = ds.coarse_cell_mean(fine, weight, RATIO)
    for t, i, j in itertools.product(range(3), range(NY_C), range(NX_C)):
        blk = fine[t, i * RATIO : (i + 1) * RATIO, j * RATIO : (j + 1) * RATIO]
        w = weight[i * RATIO : (i + 1) * RATIO, j * RATIO : (j + 1) * RATIO] * np.isfinite(blk)
        ref = np.nansum(blk * w) / w.sum() if w.sum() > 0 else np.nan
        np.testing.assert_allclose(got[t, i, j], ref, rtol=1e-12, equal_nan=True)


# ---------------------------------------------------------------- Eq. 6-9 and the options


def _run(mode, method, tg, tf, weight, in_baseline, **kw):
    m_lat, m_lon, parent_lat, parent_lon = _grid_operators(method)
    return ds.downscale(
        tg, tf, MONTH, in_baseline, m_lat, m_lon, parent_lat, parent_lon, weight, ratio=RATIO,
        mode=mode, **kw,
    )  # fmt: skip


@pytest.mark.parametrize("method", ["cubic", "bilinear", "nearest"])
def test_paper_mode_baseline_identity(method):
    tg, tf = _fields(4)
    weight, land = _land_weight()
    in_baseline = ds.baseline_mask(TIMES, "2015-01", "2019-12")
    td = _run("paper", method, tg, tf, weight, in_baseline)
    tf_clim = ds.monthly_climatology(tf, MONTH, in_baseline)
    valid_months = in_baseline & np.isfinite(tg).all(axis=(1, 2))
    for m in range(1, 13):
        sel = valid_months & (MONTH == m)
        mean_td = td[sel].mean(axis=0)
        assert np.all(np.isnan(mean_td[~land]))
        np.testing.assert_allclose(mean_td[land], tf_clim[m - 1][land], rtol=0, atol=1e-4)
        assert np.max(np.abs(mean_td[land] - tf_clim[m - 1][land])) < 1e-9
    assert np.all(np.isnan(td[30:41]))  # the gap stays NaN without a fill


def test_paper_mode_with_gap_fill_keeps_identity_and_flags():
    tg, tf = _fields(5)
    t_years = decimal_year(TIMES)
    filled, was_filled = ds.harmonic_gap_fill(tg, t_years)
    assert was_filled[30:41].all() and not was_filled[:30].any()
    weight, land = _land_weight()
    in_baseline = np.ones(N_T, dtype=bool)
    td = _run("paper", "cubic", tg, tf, weight, in_baseline, tg_filled=filled)
    assert np.isfinite(td[30:41][:, land]).all()
    tf_clim = ds.monthly_climatology(tf, MONTH, in_baseline)
    for m in (1, 7, 12):
        sel = (MONTH == m) & ~was_filled.any(axis=(1, 2))
        np.testing.assert_allclose(td[sel].mean(axis=0)[land], tf_clim[m - 1][land], atol=1e-4)


def test_harmonic_gap_fill_recovers_a_harmonic_series():
    t_years = decimal_year(TIMES)
    truth = (
        3 - 2.5 * (t_years - 2018) + 10 * np.sin(2 * np.pi * t_years) + np.cos(4 * np.pi * t_years)
    )
    x = np.stack([truth, truth * 2], axis=-1)
    gappy = x.copy()
    gappy[30:41] = np.nan
    filled, was_filled = ds.harmonic_gap_fill(gappy, t_years)
    np.testing.assert_allclose(filled, x, atol=1e-9)
    np.testing.assert_array_equal(was_filled, np.isnan(gappy))


@pytest.mark.parametrize("mode", ["ratio", "remove_restore"])
@pytest.mark.parametrize("method", ["cubic", "bilinear", "nearest"])
def test_mass_conservation(mode, method):
    tg, tf = _fields(6)
    weight, land = _land_weight()
    in_baseline = np.ones(N_T, dtype=bool)
    td = _run(mode, method, tg, tf, weight, in_baseline)
    assert np.all(np.isnan(td[:, ~land]))
    mean = ds.coarse_cell_mean(td, weight, RATIO)
    has_land = ds.coarse_cell_mean(np.ones((NY, NX)), weight, RATIO) > 0
    ok = np.isfinite(tg) & has_land
    assert ok.sum() > 0.8 * np.isfinite(tg).sum() * has_land.mean()
    np.testing.assert_allclose(mean[ok], tg[ok], rtol=0, atol=1e-4)
    assert np.all(np.isnan(mean[~ok]))
    # A constant-per-coarse-cell answer would also conserve mass: the fine structure is real.
    assert np.nanstd(td - ds.expand_to_fine(mean, RATIO)) > 1.0


def test_paper_mode_is_not_mass_conserving():
    tg, tf = _fields(7)
    weight, _ = _land_weight(partly_sea=False)
    td = _run("paper", "cubic", tg, tf, weight, np.ones(N_T, dtype=bool))
    mean = ds.coarse_cell_mean(td, weight, RATIO)
    assert np.nanmax(np.abs(mean - tg)) > 1.0  # the paper's form departs from TG (a result)


def test_nearest_options_equal_the_written_formulas():
    tg, tf = _fields(8, gap=False)
    weight, land = _land_weight()
    in_baseline = np.ones(N_T, dtype=bool)
    parent = ds.expand_to_fine(tg, RATIO)
    clim = ds.monthly_climatology(tf, MONTH, in_baseline)
    w = ds.ratio_weights(clim, weight, RATIO)
    td = _run("ratio", "nearest", tg, tf, weight, in_baseline)
    np.testing.assert_allclose(td[:, land], (w[MONTH - 1] * parent)[:, land], atol=1e-9)
    anom = ds.anomaly(tf, in_baseline)
    expected = parent + anom - ds.expand_to_fine(ds.coarse_cell_mean(anom, weight, RATIO), RATIO)
    td = _run("remove_restore", "nearest", tg, tf, weight, in_baseline)
    np.testing.assert_allclose(td[:, land], expected[:, land], atol=1e-9)


def test_ratio_weights_edge_cases():
    weight, land = _land_weight()
    clim = np.random.default_rng(9).uniform(50, 150, (12, NY, NX))
    clim[:, 0, 0] = 5000.0  # a huge weight, clamped to 5 before re-normalisation
    clim[3, RATIO : 2 * RATIO, :RATIO] = 0.5  # coarse-cell mean below eps = 1 mm: w = 1
    w = ds.ratio_weights(clim, weight, RATIO, eps_mm=1.0, clamp=(0.0, 5.0))
    assert np.all(np.isnan(w[:, ~land]))
    mean = ds.coarse_cell_mean(w, weight, RATIO)
    has_land = np.isfinite(mean[0])
    np.testing.assert_allclose(mean[:, has_land], 1.0, atol=1e-12)
    np.testing.assert_array_equal(w[3, RATIO : 2 * RATIO, :RATIO], 1.0)
    # The first coarse cell, by hand: ratio to the land-area mean, clamp to [0, 5], re-normalise.
    blk, wb = clim[0, :RATIO, :RATIO], weight[:RATIO, :RATIO]
    raw = blk / (np.sum(blk * wb) / wb.sum())
    assert raw[0, 0] > 5
    clamped = np.clip(raw, 0, 5)
    expected = clamped / (np.sum(clamped * wb) / wb.sum())
    np.testing.assert_allclose(w[0, :RATIO, :RATIO], expected, rtol=1e-12)


def test_groundwater_water_balance_closes():
    rng = np.random.default_rng(10)
    twsa, smsa, swesa, cwsa = (rng.normal(size=(N_T, 7, 9)) * s for s in (100, 50, 3, 0.5))
    gwsa = ds.groundwater_storage_anomaly(twsa, smsa, swesa, cwsa)
    np.testing.assert_allclose(
        gwsa + smsa + swesa + cwsa, twsa, rtol=0, atol=4 * np.finfo(float).eps * 200
    )
    np.testing.assert_array_equal(gwsa, twsa - smsa - swesa - cwsa)


def _reference_time_mean(x, select):
    """The plain formulation: NaN-aware mean over the selected months, float64."""
    sub = np.asarray(x, dtype=np.float64)[select]
    valid = np.isfinite(sub)
    count = valid.sum(axis=0)
    total = np.where(valid, sub, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_water_balance_anomalies_equal_the_plain_formulas_bit_for_bit(dtype):
    rng = np.random.default_rng(21)
    cubes = [(rng.normal(size=(N_T, 6, 7)) * s + 300).astype(dtype) for s in (100, 50, 3, 0.5)]
    cubes[0][5:9] = np.nan  # a gap in every cell
    cubes[1][:, 0, 0] = np.nan  # a cell with no data
    cubes[2][rng.random(cubes[2].shape) < 0.1] = np.nan
    base = np.zeros(N_T, dtype=bool)
    base[3:40] = True
    terms = [c.astype(np.float64) - _reference_time_mean(c, base) for c in cubes]
    gwsa = ds.groundwater_storage_anomaly(*terms)
    for out_dtype in (np.float32, np.float64):
        out = ds.water_balance_anomalies(*cubes, base, dtype=out_dtype)
        assert out.shape == (5, *cubes[0].shape) and out.dtype == out_dtype
        for got, want in zip(out, [*terms, gwsa], strict=True):
            np.testing.assert_array_equal(got, want.astype(out_dtype))
    only = ds.water_balance_anomalies(*cubes, base, terms=("gwsa", "swesa"), dtype=np.float64)
    np.testing.assert_array_equal(only[0], gwsa)
    np.testing.assert_array_equal(only[1], terms[2])
    month = np.arange(N_T) % 12 + 1
    for c, term in zip(cubes, terms, strict=True):
        np.testing.assert_array_equal(ds.anomaly(c, base), term)
        clim = ds.monthly_climatology(c, month, base)
        for m in range(1, 13):
            sel = base & (month == m)
            np.testing.assert_array_equal(clim[m - 1], _reference_time_mean(c, sel))
    with pytest.raises(ValueError, match="unknown"):
        ds.water_balance_anomalies(*cubes, base, terms=("tws",))


# ---------------------------------------------------------------- block invariance


@settings(max_examples=12, deadline=None)
@given(
    mode=st.sampled_from(["paper", "ratio", "remove_restore"]),
    method=st.sampled_from(["cubic", "bilinear", "nearest"]),
    cut_y=st.integers(1, NY_C - 1),
    cut_x=st.integers(1, NX_C - 1),
)
def test_blocks_of_whole_coarse_cells_give_identical_numbers(mode, method, cut_y, cut_x):
    tg, tf = _fields(11)
    weight, _ = _land_weight()
    in_baseline = np.ones(N_T, dtype=bool)
    m_lat, m_lon, parent_lat, parent_lon = _grid_operators(method)
    whole = _run(mode, method, tg, tf, weight, in_baseline)
    for ys, xs in itertools.product(
        (slice(0, cut_y * RATIO), slice(cut_y * RATIO, NY)),
        (slice(0, cut_x * RATIO), slice(cut_x * RATIO, NX)),
    ):
        part = ds.downscale(
            tg, tf[:, ys, xs], MONTH, in_baseline, m_lat[ys], m_lon[xs], parent_lat[ys],
            parent_lon[xs], weight[ys, xs], ratio=RATIO, mode=mode,
        )  # fmt: skip
        np.testing.assert_array_equal(part, whole[:, ys, xs])


def test_blocks_that_split_a_coarse_cell_are_refused():
    tg, tf = _fields(12)
    weight, _ = _land_weight()
    m_lat, m_lon, parent_lat, parent_lon = _grid_operators("cubic")
    ys = slice(0, RATIO + 2)
    with pytest.raises(ValueError, match="whole coarse cells"):
        ds.downscale(
            tg, tf[:, ys], MONTH, np.ones(N_T, bool), m_lat[ys], m_lon, parent_lat[ys], parent_lon,
            weight[ys], ratio=RATIO,
        )  # fmt: skip


def test_cell_area_is_the_one_edge_formula():
    """cell_area_m2 (centres and steps) is spherical_cell_area_m2 on the cell edges, bit for bit,
    and kernels.analysis re-exports the same function (one cell-area formula in the package)."""
    from ncp_subsidence.kernels import analysis as kan

    lat = np.array([-89.995, 0.005, 38.005, 41.995])
    edges = ds.spherical_cell_area_m2(lat - 0.005, lat + 0.005, 0.0, 0.02)
    assert np.array_equal(ds.cell_area_m2(lat, 0.01, 0.02), edges)
    assert np.array_equal(ds.cell_area_m2(lat, -0.01, -0.02), edges)
    assert kan.spherical_cell_area_m2 is ds.spherical_cell_area_m2


def test_regrid_separable_fills_sea_from_the_nearest_land_cell():
    coarse = np.full((2, 3, 4), 7.0)
    coarse[:, 0, 0] = np.nan  # a sea cell
    filled = ds.fill_nearest(coarse)
    assert np.isfinite(filled).all() and np.all(filled == 7.0)
    assert ds.fill_nearest(np.full((1, 2, 2), np.nan)).shape == (1, 2, 2)  # all sea: unchanged
    lat_c, lon_c = 40.0 - 0.25 * (np.arange(3) + 0.5), 114.0 + 0.25 * (np.arange(4) + 0.5)
    lat_f, lon_f = 40.0 - 0.05 * (np.arange(15) + 0.5), 114.0 + 0.05 * (np.arange(20) + 0.5)
    m_lat = ds.interpolation_matrix(lat_c, lat_f, "bilinear")
    m_lon = ds.interpolation_matrix(lon_c, lon_f, "bilinear")
    out = ds.regrid_separable(coarse, m_lat, m_lon)
    assert out.dtype == np.float32 and out.shape == (2, 15, 20)
    np.testing.assert_allclose(out, 7.0, rtol=1e-6)
