"""Kernels of stage ``analysis`` against closed forms and independent implementations."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.path import Path as MplPath

from ncp_subsidence.kernels import analysis as kan

R = 6371007.181


def test_cell_area_closed_forms():
    # docs/science.md 8.2: a 0.01 deg cell at 38 N is about 0.974 km2, a 0.25 deg one about 609 km2
    assert kan.spherical_cell_area_m2(37.995, 38.005, 116.0, 116.01) / 1e6 == pytest.approx(
        0.974, abs=5e-4
    )
    assert kan.spherical_cell_area_m2(37.875, 38.125, 116.0, 116.25) / 1e6 == pytest.approx(
        609.0, rel=2e-3
    )
    # a 1 deg global grid sums to the sphere's area 4 pi R^2
    lat = np.arange(-89.5, 90.0, 1.0)
    lon = np.arange(0.5, 360.0, 1.0)
    area = kan.grid_cell_area_m2(lat, lon) * np.ones(lon.size)
    assert area.sum() == pytest.approx(4 * np.pi * R**2, rel=1e-12)
    # latitude order does not matter
    assert np.allclose(kan.grid_cell_area_m2(lat[::-1], lon)[::-1], kan.grid_cell_area_m2(lat, lon))
    with pytest.raises(ValueError, match="regular"):
        kan.grid_cell_area_m2(np.array([38.0, 38.01, 38.03]), lon)


def _cone(radius_m=5000.0, depth_mm=1000.0, res=0.001, lat0=38.0, lon0=116.0):
    """A cone-shaped bowl on an equal-area frame: u = R cos(lat0) dlon, v = R (sin lat - sin lat0) / cos(lat0)."""
    half = 0.06
    lat = np.arange(lat0 + half, lat0 - half, -res) - res / 2
    lon = np.arange(lon0 - half, lon0 + half, res) + res / 2
    c0 = np.cos(np.deg2rad(lat0))
    u = R * c0 * np.deg2rad(lon - lon0)[None, :]
    v = R * (np.sin(np.deg2rad(lat)) - np.sin(np.deg2rad(lat0)))[:, None] / c0
    r = np.hypot(u, v)
    depth = np.maximum(0.0, depth_mm * (1.0 - r / radius_m))  # mm, positive down
    return lat, lon, depth


def _partials(lat, lon, depth, threshold, **kw):
    disp = np.stack([np.zeros_like(depth), -depth], axis=-1)  # (ny, nx, 2), positive up
    return kan.wide_area_partials(
        -depth,  # velocity over one year, mm/yr
        disp,
        kan.grid_cell_area_m2(lat, lon),
        t=np.array([2018.0, 2019.0]),
        threshold=threshold,
        years=[],
        epoch_pairs=[(0, 1)],
        cumulative_epochs=(0, 1),
        top_k=kan.cumulative_top_k(depth.size),
        trend_only=False,
        **kw,
    )


def test_cone_volume_and_area_against_closed_form():
    radius, h_mm, tau = 5000.0, 1000.0, 200.0
    lat, lon, depth = _cone(radius, h_mm)
    out = kan.finalize_partials(_partials(lat, lon, depth, tau), kappa=0.8)
    volume = np.pi * radius**2 * (h_mm / 1000.0) / 3.0  # m3
    assert out["volume_m3"][0] == pytest.approx(volume, rel=0.005)
    assert out["groundwater_loss_m3"][0] == pytest.approx(0.8 * volume, rel=0.005)
    r_tau = radius * (1.0 - tau / h_mm)  # depth > tau inside this radius
    assert out["area_above_threshold_m2"] == pytest.approx(np.pi * r_tau**2, rel=0.01)
    # the apex lies between cell centres: within one cell diagonal (~140 m) of the cone's slope
    assert h_mm * (1 - 140.0 / radius) < out["cumulative_max_mm"] <= h_mm


def test_net_volume_counts_uplift_negatively():
    lat, lon, depth = _cone()
    uplift = depth[:, ::-1] * 0.0 + np.where(np.arange(lon.size) < 10, 5.0, 0.0)[None, :]
    signed = depth - uplift  # subsidence positive, a strip of 5 mm uplift
    p = kan.wide_area_partials(
        -signed,
        np.stack([np.zeros_like(signed), -signed], axis=-1),
        kan.grid_cell_area_m2(lat, lon),
        t=np.array([2018.0, 2019.0]),
        threshold=20.0,
        years=[],
        epoch_pairs=[(0, 1)],
        cumulative_epochs=(0, 1),
        top_k=10,
        trend_only=False,
    )
    area = kan.grid_cell_area_m2(lat, lon) * np.ones(lon.size)
    up = (area * np.where(signed < 0, -signed, 0.0)).sum() * 1e-3
    assert p["volume_net"][0] == pytest.approx(p["volume"][0] - up, rel=1e-9)
    assert up > 0


def test_chunked_combine_equals_whole_and_exact_percentile():
    rng = np.random.default_rng(3)
    lat = 38.0 - 0.01 * (np.arange(40) + 0.5)
    lon = 116.0 + 0.01 * (np.arange(30) + 0.5)
    t = 2015.0 + (np.arange(36) + 0.5) / 12.0
    rate = rng.normal(-20.0, 15.0, (40, 30))
    disp = (
        rate[..., None] * (t - t[0]) + 3.0 * np.sin(2 * np.pi * t) + rng.normal(0, 1, (40, 30, 36))
    )
    rate[rng.random(rate.shape) < 0.1] = np.nan
    disp[np.isnan(rate)] = np.nan
    area = kan.grid_cell_area_m2(lat, lon)
    kw = dict(
        t=t,
        threshold=20.0,
        years=[2015, 2016, 2017],
        epoch_pairs=[(0, 35), (11, 23)],
        cumulative_epochs=(0, 35),
        top_k=kan.cumulative_top_k(rate.size),
    )
    whole = kan.finalize_partials(kan.wide_area_partials(rate, disp, area, **kw))
    parts = [
        kan.wide_area_partials(
            rate[i : i + 13, j : j + 7], disp[i : i + 13, j : j + 7], area[i : i + 13], **kw
        )
        for i in range(0, 40, 13)
        for j in range(0, 30, 7)
    ]
    acc = parts[0]
    for p in parts[1:]:
        acc = kan.combine_partials(acc, p)
    chunked = kan.finalize_partials(acc)
    for key in ("area_above_threshold_m2", "cumulative_max_mm", "cumulative_p999_mm"):
        assert chunked[key] == pytest.approx(whole[key], rel=1e-12)
    for key in ("volume_m3", "volume_trend_m3", "yearly_velocity_omega", "yearly_velocity_all"):
        np.testing.assert_allclose(chunked[key], whole[key], rtol=1e-10)
    sub = -(disp[..., 35] - disp[..., 0])
    assert chunked["cumulative_p999_mm"] == pytest.approx(np.nanpercentile(sub, 99.9), rel=1e-12)
    # the yearly velocity over Omega is the area-weighted OLS slope per calendar year
    omega = np.isfinite(rate) & (rate < -20.0)
    a2 = area * np.ones(lon.size)
    sel = (t >= 2016) & (t < 2017)
    slope = np.polyfit(t[sel], disp[omega][:, sel].T, 1)[0]
    assert chunked["yearly_velocity_omega"][1] == pytest.approx(
        -(slope * a2[omega]).sum() / a2[omega].sum(), rel=1e-9
    )


def test_polygon_mask_matches_matplotlib_with_hole_and_multipolygon():
    # cell centres never on an edge (boundary points are ambiguous in every implementation)
    lon = np.linspace(115.0, 118.0, 61) + 0.0137
    lat = np.linspace(39.0, 36.0, 57) + 0.0071
    outer = [[115.3, 36.2], [117.8, 36.5], [117.2, 38.9], [116.0, 38.2], [115.3, 36.2]]
    hole = [[116.2, 37.0], [117.0, 37.0], [116.6, 37.8], [116.2, 37.0]]
    other = [[115.05, 38.5], [115.5, 38.5], [115.5, 38.95], [115.05, 38.95], [115.05, 38.5]]
    geom = {"type": "MultiPolygon", "coordinates": [[outer, hole], [other]]}
    got = kan.polygon_mask(lon, lat, geom)
    pts = np.column_stack([np.repeat(lon[None], lat.size, 0).ravel(), np.repeat(lat, lon.size)])
    expected = (
        MplPath(outer).contains_points(pts) & ~MplPath(hole).contains_points(pts)
    ) | MplPath(other).contains_points(pts)
    assert got.sum() > 100
    np.testing.assert_array_equal(got.ravel(), expected)
    with pytest.raises(ValueError, match="Polygon"):
        kan.polygon_mask(lon, lat, {"type": "Point", "coordinates": [116, 37]})


def test_region_mean_is_area_weighted_and_skips_nan():
    values = np.array([[[1.0, np.nan], [3.0, 5.0]]])
    weights = np.array([[1.0, 2.0], [0.0, 3.0]])
    assert kan.region_mean(values, weights)[0] == pytest.approx((1.0 + 15.0) / 4.0)
    assert np.isnan(kan.region_mean(np.full((1, 2, 2), np.nan), weights)[0])


def _months(n=120):
    return 2010.0 + (np.arange(n) + 0.5) / 12.0


@pytest.mark.parametrize("detrend", ["linear", "diff", "moving_average"])
def test_lag_recovery_on_synthetic_series(detrend):
    rng = np.random.default_rng(0)
    t = _months(132)
    season = np.sin(2 * np.pi * t) + 0.4 * np.cos(4 * np.pi * t)
    gwsa = -15.0 * (t - t[0]) + 30.0 * season + rng.normal(0, 2.0, t.size)
    lagged = np.roll(gwsa, 2)  # D(t) = alpha * GWSA(t - 2 months) + noise
    disp = 0.2 * lagged + rng.normal(0, 0.3, t.size)
    disp[:2] = np.nan
    out = kan.lagged_cross_correlation(gwsa, disp, t, max_lag=12, detrend=detrend)
    assert out["lag"] == 2
    assert out["r_lag"] > 0.8
    assert out["r_lag"] == pytest.approx(np.nanmax(out["r"]))
    # Bretherton et al. 1999 effective sample size from the lag-1 autocorrelations
    prod = out["rho_x"] * out["rho_y"]
    assert out["n_eff"] == pytest.approx(np.clip(out["n"] * (1 - prod) / (1 + prod), 3, out["n"]))
    assert out["n_eff"] < out["n"]
    assert out["p_value"] < 0.01


def test_centred_moving_average_removes_the_cycle_and_keeps_the_trend():
    t = _months(60)
    line = 3.0 - 12.0 * (t - t[0])
    cycle = 5.0 * np.cos(2 * np.pi * t) + 2.0 * np.sin(4 * np.pi * t)
    ma = kan.centred_moving_average(line + cycle, 12)
    assert np.isnan(ma[:6]).all() and np.isnan(ma[-6:]).all()
    np.testing.assert_allclose(ma[6:-6], line[6:-6], atol=1e-9)  # the cycle averages out
    z = kan.preprocess_series(line + cycle, t, "moving_average")
    ref = (cycle[6:-6] - cycle[6:-6].mean()) / cycle[6:-6].std()
    np.testing.assert_allclose(z[6:-6], ref, atol=1e-9)
    # a missing month leaves every window that holds it undefined, nothing else
    y = line + cycle
    y[30] = np.nan
    ma = kan.centred_moving_average(y, 12)
    assert (
        np.isnan(ma[24:37]).all() and np.isfinite(ma[6:24]).all() and np.isfinite(ma[37:-6]).all()
    )
    # odd periods take a plain mean
    np.testing.assert_allclose(
        kan.centred_moving_average(np.arange(7.0), 3)[1:-1], np.arange(1.0, 6.0)
    )
    with pytest.raises(ValueError, match="period"):
        kan.centred_moving_average(y, 1)


def test_moving_average_finds_the_seasonal_lag_where_a_line_cannot():
    """Interannual rate changes (a peak year, a recovery) dominate linearly detrended series.

    The twin's regions: GWSA falls, then recovers after 2021; deformation's rate peaks in 2018;
    the seasonal deformation follows the seasonal GWSA by 2 months. Removing the 2 x 12-month
    trend-cycle leaves the seasonal coupling, whose lag is the one asked for.
    """
    rng = np.random.default_rng(3)
    t = 2015.0 + (np.arange(96) + 0.5) / 12.0
    season = np.interp(np.mod(t, 1.0), [0.0, 0.16, 0.62, 1.0], [1.0, 1.0, -1.0, 1.0])
    lag2 = np.interp(np.mod(t - 2 / 12, 1.0), [0.0, 0.16, 0.62, 1.0], [1.0, 1.0, -1.0, 1.0])
    gwsa = np.where(t < 2021, -20 * (t - 2021), 16 * (t - 2021)) + 30 * season
    rate = np.interp(t, [2015, 2018.5, 2023], [0.8, 1.3, 0.4])
    disp = -60 * np.cumsum(rate) / 12 + 5 * lag2 + rng.normal(0, 1.0, t.size)
    got = {
        d: kan.lagged_cross_correlation(gwsa, disp, t, detrend=d)["lag"]
        for d in ("linear", "moving_average")
    }
    assert got["moving_average"] == 2
    assert got["linear"] != 2


def test_lag_p_value_equals_t_test_when_series_are_white():
    from scipy import stats

    rng = np.random.default_rng(1)
    t = _months(300)
    x = rng.normal(size=t.size)
    y = 0.3 * x + rng.normal(size=t.size)
    out = kan.lagged_cross_correlation(x, y, t, max_lag=0, detrend="none")
    r = stats.pearsonr(x, y)[0]
    assert out["r0"] == pytest.approx(r, rel=1e-10)
    n_eff = out["n_eff"]
    tstat = r * np.sqrt((n_eff - 2) / (1 - r * r))
    assert out["p_value"] == pytest.approx(2 * stats.t.sf(abs(tstat), n_eff - 2), rel=1e-10)
    assert abs(n_eff - t.size) < 0.1 * t.size  # nearly white: n_eff close to n


def test_lag_edge_cases_flat_short_and_annual_alias():
    t = _months(60)
    flat = np.ones(t.size)
    out = kan.lagged_cross_correlation(flat, np.sin(2 * np.pi * t), t)
    assert out["lag"] == -1 and np.isnan(out["r_lag"])
    short = kan.lagged_cross_correlation(np.sin(t[:10]), np.cos(t[:10]), t[:10], min_months=24)
    assert short["lag"] == -1
    # a pure annual cycle correlates equally at 0 and 12 months: the shorter lag is reported
    s = np.sin(2 * np.pi * t)
    assert kan.lagged_cross_correlation(s, s, t, detrend="diff")["lag"] == 0
    assert kan.lagged_cross_correlation(s, s, t, detrend="diff", period_tolerance=0.0)["lag"] in (
        0,
        12,
    )


def test_yearly_velocity_and_seasonal_component():
    t = 2015.0 + (np.arange(48) + 0.5) / 12.0
    rates = np.array([-10.0, -30.0, -50.0, -20.0])
    year = np.floor(t).astype(int) - 2015
    start = np.concatenate([[0.0], np.cumsum(rates)[:-1]])
    d = start[year] + rates[year] * (t - np.floor(t))  # piecewise linear, rate per calendar year
    vy = kan.yearly_velocity(d, t, [2015, 2016, 2017, 2018, 2019])
    np.testing.assert_allclose(vy[:4], rates, rtol=1e-10)
    assert np.isnan(vy[4])  # no month in 2019
    seasonal = 4.0 * np.cos(2 * np.pi * t) - 1.5 * np.sin(4 * np.pi * t)
    line = -25.0 * (t - 2015.0) + 3.0
    np.testing.assert_allclose(kan.seasonal_component(line + seasonal, t), seasonal, atol=1e-9)


def test_region_cell_weights_whole_grid_and_polygon():
    lat = 38.0 - 0.01 * (np.arange(6) + 0.5)
    lon = 116.0 + 0.01 * (np.arange(8) + 0.5)
    square = {
        "type": "Polygon",
        "coordinates": [[[116.0, 37.97], [116.04, 37.97], [116.04, 38.0], [116.0, 38.0]]],
    }
    w = kan.region_cell_weights(lat, lon, (None, square), 0.01, 0.01)
    assert w.shape == (2, 6, 8)
    np.testing.assert_allclose(w[0], kan.grid_cell_area_m2(lat, lon) * np.ones(lon.size), rtol=1e-9)
    inside = kan.polygon_mask(lon, lat, square)
    assert inside.any() and not inside.all()
    np.testing.assert_array_equal(w[1], np.where(inside, w[0], 0.0))


def test_epoch_index_exact_and_clamped():
    months = np.arange("2015-01", "2016-01", dtype="datetime64[M]")
    assert kan.epoch_index(months, "2015-03") == (2, False)
    assert kan.epoch_index(months, "2014-06") == (0, True)
    assert kan.epoch_index(months, "2017-01") == (11, True)
    gappy = months[[0, 1, 5, 6]]
    assert kan.epoch_index(gappy, "2015-05") == (2, True)  # nearest month in the gap
