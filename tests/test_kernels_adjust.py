"""Tests of ncp_subsidence.kernels.adjust: station windows, outliers, overlaps, blending."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ncp_subsidence.errors import DataError
from ncp_subsidence.kernels import adjust as a
from ncp_subsidence.kernels.geometry import los_unit_vector
from ncp_subsidence.models.selection import select_and_fit

LON0, LAT0 = 116.0, 38.0


def _grid(half_deg: float, step: float) -> tuple[np.ndarray, np.ndarray]:
    lon = np.arange(LON0 - half_deg, LON0 + half_deg + step / 2, step)
    lat = np.arange(LAT0 + half_deg, LAT0 - half_deg - step / 2, -step)  # north-up
    return lon, lat


def _bowl(x_km, y_km, x0, y0, sigma_km, peak):
    return peak * np.exp(-((x_km - x0) ** 2 + (y_km - y0) ** 2) / (2 * sigma_km**2))


# ------------------------------------------------------------------------------ coordinates


def test_local_coordinates_round_trip_and_distance():
    lon = np.array([114.0, 116.0, 118.5, 116.0])
    lat = np.array([36.0, 38.0, 40.0, 39.0])
    x, y = a.local_coordinates_km(lon, lat, LON0, LAT0)
    lon2, lat2 = a.lonlat_from_local_km(x, y, LON0, LAT0)
    np.testing.assert_allclose(lon2, lon, atol=1e-9)
    np.testing.assert_allclose(lat2, lat, atol=1e-9)
    # due north by one degree: about 111.2 km on the authalic sphere
    assert x[3] == pytest.approx(0.0, abs=1e-9)
    assert y[3] == pytest.approx(a.EARTH_RADIUS_KM * np.pi / 180, rel=1e-12)


def test_gaussian_smooth_sigma_is_in_km_per_axis():
    lon, lat = _grid(1.5, 0.01)
    z = np.zeros((lat.size, lon.size))
    iy, ix = lat.size // 2, lon.size // 2
    z[iy, ix] = 1.0
    s = a.gaussian_smooth_km(z, 20.0, lon_deg=lon, lat_deg=lat)
    dy_km, dx_km = a.grid_spacing_km(lon, lat)
    assert dx_km < 0.8 * dy_km  # anisotropic pixels at 38 N
    xs = (np.arange(lon.size) - ix) * dx_km
    ys = (np.arange(lat.size) - iy) * dy_km
    sx = np.sqrt(np.sum(s.sum(0) * xs**2) / s.sum())
    sy = np.sqrt(np.sum(s.sum(1) * ys**2) / s.sum())
    assert sx == pytest.approx(20.0, rel=0.02)
    assert sy == pytest.approx(20.0, rel=0.02)


def test_gaussian_smooth_keeps_nan_and_constant():
    z = np.full((50, 60), 4.0)
    z[10:15, 20:30] = np.nan
    s = a.gaussian_smooth_km(z, 5.0, dy_km=1.0, dx_km=1.0)
    assert np.all(np.isnan(s[10:15, 20:30]))
    np.testing.assert_allclose(s[np.isfinite(z)], 4.0)


def test_gaussian_smooth_matrix_is_the_separable_filter():
    """G_y @ z @ G_x.T is gaussian_smooth_km's output, edges included (nearest folding), for
    anisotropic cells and a grid smaller than the kernel."""
    rng = np.random.default_rng(3)
    for ny, nx, dy, dx in [(41, 57, 4.0, 3.0), (9, 12, 4.0, 4.0)]:
        z = rng.normal(size=(ny, nx))
        gy = a.gaussian_smooth_matrix(ny, 20.0, dy)
        gx = a.gaussian_smooth_matrix(nx, 20.0, dx)
        np.testing.assert_allclose(
            gy @ z @ gx.T, a.gaussian_smooth_km(z, 20.0, dy_km=dy, dx_km=dx), rtol=0, atol=1e-13
        )
        np.testing.assert_allclose(gy.sum(axis=1), 1.0, rtol=0, atol=1e-13)
        radius = int(4.0 * 20.0 / dy + 0.5)
        assert np.all(np.triu(gy, radius + 1)[: ny - radius - 1] == 0.0)  # compact support


# ------------------------------------------------------------------------------ station windows


def test_station_window_median_mad_and_min_pixels():
    lon, lat = _grid(0.05, 0.001)
    x, y = a.local_coordinates_km(lon[None, :], lat[:, None], LON0, LAT0)
    rng = np.random.default_rng(0)
    vel = 2.0 * x - 1.0 * y + rng.normal(0, 1.0, x.shape)  # mm/yr, gentle ramp
    vel[rng.random(vel.shape) < 0.02] = 500.0  # unwrapping-error-like spikes: median ignores them
    vel[:, lon > LON0 + 0.03] = np.nan  # decorrelated strip
    coh = np.ones_like(vel)
    coh[lat < LAT0 - 0.03, :] = 0.3
    st_lon = np.array([LON0, LON0 + 0.04, LON0, LON0 + 0.2])
    st_lat = np.array([LAT0, LAT0, LAT0 - 0.04, LAT0])
    out = a.sample_station_windows(vel, lon, lat, st_lon, st_lat, radius_m=200, quality=coh)
    # about pi * 0.2^2 / (0.111 * 0.0876) = 13 pixels
    assert 9 <= out.n_pixels[0] <= 17
    assert out.valid.tolist() == [True, False, False, False]
    assert out.median[0] == pytest.approx(0.0, abs=1.0)
    assert 0.0 < out.sigma[0] < 1.0  # 1.4826 MAD / sqrt(n) of unit noise
    assert out.max_gradient[0] < 20.0
    with pytest.raises(DataError, match="shape"):
        a.sample_station_windows(vel[:-1], lon, lat, st_lon, st_lat)


def test_residuals_at_stations_sign_and_sigma():
    u = los_unit_vector(np.array([35.0, 35.0]), -12.0)
    v = np.array([[0.0, 0.0, -20.0], [0.0, 0.0, 5.0]])
    s = np.full((2, 3), 1.0)
    insar = np.array([-20.0 * u[0, 2] - 3.0, 5.0 * u[1, 2]])
    r, sig = a.residuals_at_stations(
        v, s, u, insar, np.array([0.5, 0.5]), epoch_mismatch=[False, True]
    )
    np.testing.assert_allclose(r, [3.0, 0.0], atol=1e-12)  # c = +3 brings InSAR onto GNSS
    assert sig[0] == pytest.approx(np.sqrt(1.0 + 0.25))
    assert sig[1] == pytest.approx(2 * np.sqrt(1.0 + 0.25))


def test_stations_in_steep_bowl_and_monument_outlier_rejected():
    lon, lat = _grid(0.3, 0.001)
    x, y = a.local_coordinates_km(lon[None, :], lat[:, None], LON0, LAT0)
    vel = _bowl(x, y, 0.0, 0.0, 2.5, -150.0)  # steep: max gradient ~36 mm/yr/km
    rng = np.random.default_rng(4)
    sx = np.concatenate([[2.5, -2.0], rng.uniform(-25, 25, 14)])
    sy = np.concatenate([[0.0, 1.0], rng.uniform(-25, 25, 14)])
    far = np.hypot(sx, sy) > 10
    sx, sy = sx[np.r_[True, True, far[2:]]], sy[np.r_[True, True, far[2:]]]
    st_lon, st_lat = a.lonlat_from_local_km(sx, sy, LON0, LAT0)
    samp = a.sample_station_windows(vel, lon, lat, st_lon, st_lat, radius_m=200)
    assert np.all(samp.valid)
    assert samp.max_gradient[0] > 20 and samp.max_gradient[1] > 20
    assert np.all(samp.max_gradient[2:] < 20)
    n = sx.size
    r = 2.0 + 0.05 * sx - 0.03 * sy + rng.normal(0, 0.5, n)
    r[2] += 25.0  # local monument motion
    keep = a.reject_outliers(
        r, x=sx / 30, y=sy / 30, k=3.0, max_gradient=samp.max_gradient, sigma_floor=0.5
    )
    expected = np.ones(n, dtype=bool)
    expected[[0, 1, 2]] = False
    np.testing.assert_array_equal(keep, expected)
    # and the selection layer applies the same rule
    fit = select_and_fit(
        sx, sy, r, np.full(n, 0.5), candidates=["P0", "P1"], max_gradient=samp.max_gradient
    )
    np.testing.assert_array_equal(fit.keep, expected)
    assert fit.to_attrs()["n_gnss_rejected"] == 3


def test_reject_outliers_keeps_a_clean_plane():
    rng = np.random.default_rng(5)
    x, y = rng.uniform(-1, 1, 30), rng.uniform(-1, 1, 30)
    r = 10 * x - 8 * y + rng.normal(0, 0.3, 30)  # a strong plane is not an outlier pattern
    assert a.reject_outliers(r, x=x, y=y, sigma_floor=0.3).all()


# ------------------------------------------------------------------------------ overlap adjustment


def _three_frames(seed: int = 0):
    """Three frames along x (150 km wide, 30 km overlaps) over a truth with bowls."""
    rng = np.random.default_rng(seed)

    def truth(x, y):
        return (
            _bowl(x, y, 120.0, 10.0, 8.0, -80.0)  # bowl inside the first overlap
            + _bowl(x, y, 240.0, -20.0, 12.0, -40.0)  # bowl inside the second overlap
            + 2.0 * np.sin(x / 90.0)
        )

    frames = [(0.0, 150.0), (120.0, 270.0), (240.0, 390.0)]
    err_params = [(6.0, 0.0, 0.0), (-4.0, 2.5, -1.5), (-5.0, 0.0, 0.0)]  # (a, b, c) per 100 km

    def err(f, x, y):
        a0, b0, c0 = err_params[f]
        return a0 + b0 * x / 100.0 + c0 * y / 100.0

    overlaps = []
    for f, g in [(0, 1), (1, 2)]:
        x0, x1 = frames[g][0], frames[f][1]
        gx, gy = np.meshgrid(np.arange(x0 + 0.5, x1, 1.0), np.arange(-50.0, 50.0, 1.0))
        gx, gy = gx.ravel(), gy.ravel()
        t = truth(gx, gy)
        overlaps.append(
            a.OverlapSamples(
                f,
                g,
                gx,
                gy,
                t + err(f, gx, gy) + rng.normal(0, 0.3, gx.size),
                t + err(g, gx, gy) + rng.normal(0, 0.3, gx.size),
                np.full(gx.size, 1.0 / (0.3**2 + 0.3**2)),
            )
        )
    ties = []
    for f in (0, 2):  # frame 1 has no GNSS
        sx = rng.uniform(frames[f][0] + 5, frames[f][1] - 5, 12)
        sy = rng.uniform(-45, 45, 12)
        t = truth(sx, sy)
        ties.append(
            a.GnssTies(
                f,
                sx,
                sy,
                t + err(f, sx, sy) + rng.normal(0, 0.3, 12),
                t + rng.normal(0, 1.0, 12),
                np.full(12, 1.0),
            )
        )
    return truth, err, overlaps, ties


def test_overlap_adjustment_recovers_truth_in_overlaps():
    truth, _, overlaps, ties = _three_frames()
    res = a.adjust_overlaps(3, overlaps, ties)
    assert res.models == ["offset", "plane", "offset"]
    assert res.unconstrained_components == []
    for edge in res.edges:
        assert edge["used"]
        assert edge["rms_before"] > 3.0
        assert edge["rms_after"] < 1.0
    for ov in overlaps:
        t = truth(ov.x_km, ov.y_km)
        for f, v in ((ov.frame_a, ov.v_a), (ov.frame_b, ov.v_b)):
            corrected = v + res.correction(f, ov.x_km, ov.y_km)
            assert np.sqrt(np.mean((corrected - t) ** 2)) < 0.5
            # the bowl in the overlap is unchanged in shape: its peak is within 5 %
            assert np.min(corrected) == pytest.approx(np.min(t), rel=0.05)
    # the corrections are the negative of the injected errors
    assert res.params[0, 0] == pytest.approx(-6.0, abs=0.5)
    assert res.params[2, 0] == pytest.approx(5.0, abs=0.5)
    np.testing.assert_allclose(res.params[1], [4.0, -2.5, 1.5], atol=0.5)
    json.dumps(res.to_attrs(), allow_nan=False)


def test_overlap_adjustment_without_gnss_fixes_one_frame_and_flags():
    _, _, overlaps, _ = _three_frames()
    res = a.adjust_overlaps(3, overlaps, [], models=["offset", "plane", "offset"])
    assert res.unconstrained_components == [0]
    assert res.models[0] == "fixed"
    np.testing.assert_array_equal(res.params[0], 0.0)
    assert all(e["rms_after"] < 1.0 for e in res.edges)  # still mutually consistent


def test_overlap_with_few_samples_is_dropped():
    _, _, overlaps, ties = _three_frames()
    o = overlaps[1]
    small = a.OverlapSamples(o.frame_a, o.frame_b, o.x_km[:50], o.y_km[:50], o.v_a[:50], o.v_b[:50])
    res = a.adjust_overlaps(3, [overlaps[0], small], ties)
    assert res.edges[1]["used"] is False and res.edges[1]["n"] == 50
    assert res.edges[0]["used"] is True


def test_adjust_overlaps_rejects_unknown_model():
    with pytest.raises(DataError, match="offset"):
        a.adjust_overlaps(2, [], [], models=["offset", "quadratic"])


def _strip(seed: int = 0, along_error=None):
    """Two frames overlapping in a 30 km wide N-S strip 600 km long; GNSS in both frames."""
    rng = np.random.default_rng(seed)
    gx, gy = np.meshgrid(np.arange(120.5, 150.0, 3.0), np.arange(-300.0, 300.0, 3.0))
    gx, gy = gx.ravel(), gy.ravel()
    truth = _bowl(gx, gy, 135.0, 40.0, 12.0, -60.0) + 1.0
    err_b = 0.8 + (along_error(gy) if along_error is not None else 0.0)
    noise = 0.25
    overlap = a.OverlapSamples(
        0,
        1,
        gx,
        gy,
        truth + rng.normal(0, noise, gx.size),
        truth + err_b + rng.normal(0, noise, gx.size),
        np.full(gx.size, 1.0 / (2 * noise**2)),
    )
    ties = []
    for f, (x0, x1) in enumerate([(0.0, 150.0), (120.0, 270.0)]):
        sx, sy = rng.uniform(x0 + 5, x1 - 5, 25), rng.uniform(-290, 290, 25)
        e = 0.0 if f == 0 else 0.8 + (along_error(sy) if along_error is not None else 0.0)
        ties.append(
            a.GnssTies(f, sx, sy, 1.0 + e + rng.normal(0, 0.3, 25), np.ones(25), np.ones(25))
        )
    return overlap, ties, truth


def _smooth_along(y):
    return 1.5 * np.sin(y / 110.0) + 0.7 * np.cos(y / 60.0)


def test_along_track_spline_takes_out_what_an_offset_leaves():
    overlap, ties, truth = _strip(along_error=_smooth_along)
    extents = [(-300.0, 300.0), (-300.0, 300.0)]
    kw = {"extents_km": extents, "knot_spacing_km": 100.0}
    offset = a.adjust_overlaps(2, [overlap], ties, models=["offset", "offset"], **kw)
    spline = a.adjust_overlaps(2, [overlap], ties, models=["along_track", "along_track"], **kw)
    assert offset.edges[0]["rms_after"] > 0.9  # the along-track error is ~1.2 mm/yr rms
    noise_floor = np.sqrt(2) * 0.25
    assert spline.edges[0]["rms_after"] < 1.15 * noise_floor
    # the error is taken out of the frame that has it: GNSS ties decide the split
    for f, v in ((0, overlap.v_a), (1, overlap.v_b)):
        corrected = v + spline.correction(f, overlap.x_km, overlap.y_km)
        assert np.sqrt(np.mean((corrected - truth) ** 2)) < 0.45
    # the product attrs hold the basis and coefficients, and the spec evaluates to the same
    attrs = spline.to_attrs()
    json.dumps(attrs, allow_nan=False)
    assert set(attrs["along_track"]) == {"0", "1"}
    spec = spline.frame_spec(1)
    np.testing.assert_allclose(
        a.evaluate_correction(spec, overlap.x_km, overlap.y_km),
        spline.correction(1, overlap.x_km, overlap.y_km),
    )


def test_along_track_spline_bridges_a_stretch_without_overlap_samples():
    overlap, _, _ = _strip(along_error=lambda y: 0.02 * y)  # a ramp: 12 mm/yr end to end
    gap = (overlap.y_km > -50) & (overlap.y_km < 50)
    holed = a.OverlapSamples(
        0,
        1,
        overlap.x_km[~gap],
        overlap.y_km[~gap],
        overlap.v_a[~gap],
        overlap.v_b[~gap],
        overlap.weight[~gap],
    )
    kw = {"extents_km": [(-300.0, 300.0)] * 2, "knot_spacing_km": 50.0}
    res = a.adjust_overlaps(2, [holed], [], models=["along_track"] * 2, **kw)
    d = (overlap.v_a + res.correction(0, overlap.x_km, overlap.y_km)) - (
        overlap.v_b + res.correction(1, overlap.x_km, overlap.y_km)
    )
    assert np.sqrt(np.mean(d[gap] ** 2)) < 0.5  # carried across the hole by the roughness rows


def test_along_track_needs_the_frame_extents():
    overlap, ties, _ = _strip()
    with pytest.raises(DataError, match="extents_km"):
        a.adjust_overlaps(2, [overlap], ties, models=["along_track", "offset"])
    with pytest.raises(DataError, match="knot spacing"):
        a.AlongTrackBasis.over(0.0, 100.0, 0.0)


# ------------------------------------------------------------------------------ common mode


def _frame_series(n_pixel=3000, seed=0):
    """Pixels with linear + seasonal + slow non-linear motion, and a common noise per date."""
    rng = np.random.default_rng(seed)
    t = 2015.0 + np.sort(rng.uniform(0, 8, 60))
    t[0] = 2015.0
    v = np.where(
        rng.random(n_pixel) < 0.3, rng.uniform(-120, -20, n_pixel), rng.normal(0, 2, n_pixel)
    )
    slow = np.interp(t, [2015, 2018.5, 2023], [0.0, 0.25, 0.1])  # rate peaks mid-2018
    season = np.sin(2 * np.pi * (t - 0.2))
    signal = (
        v[:, None] * (t - t[0])
        + v[:, None] * 8 * (slow - slow[0])
        + (1.5 + 0.05 * np.abs(v))[:, None] * (season - season[0])
    )
    common = rng.normal(0, 6.0, t.size)
    common -= common[0]
    pixel = rng.normal(0, 1.0, (n_pixel, t.size))
    pixel[:, 0] = 0.0
    return t, signal + pixel, signal + pixel + common[None, :], common


def test_common_mode_removes_the_reference_noise_and_keeps_velocities():
    t, clean, noisy, common = _frame_series()
    mode, n = a.common_mode_series(noisy, t)
    assert n == noisy.shape[0]
    assert mode[0] == 0.0
    filtered = noisy - mode
    # the per-date noise shared by every pixel drops from 6 mm to the part the smooth
    # interannual basis (knots every 2 years, 7 functions of 60 dates) cannot tell from motion,
    # and the median pixel's own seasonal cycle (1.6 mm amplitude) goes with it
    basis = a.smooth_trend_design(t, 2.0)
    kept = basis @ np.linalg.lstsq(basis, common, rcond=None)[0]
    left = np.median(filtered - clean, axis=0)
    assert np.std(np.median(noisy - clean, axis=0)) > 5.0
    assert np.std(left) < 0.45 * np.std(common)
    assert np.std(left - (kept - kept[0])) < 1.3
    # OLS velocities and first dates unchanged, to rounding
    tc = t - t.mean()
    np.testing.assert_allclose(
        filtered @ tc, noisy @ tc, rtol=0, atol=1e-8 * np.abs(noisy @ tc).max()
    )
    np.testing.assert_array_equal(filtered[:, 0], noisy[:, 0])
    # no slow motion leaks in: up to its shift to 0 at the first date, the mode is orthogonal
    # to the smooth basis (so its projection on it is a constant)
    fit = basis @ np.linalg.lstsq(basis, mode, rcond=None)[0]
    assert np.ptp(fit) < 1e-9 * np.abs(mode).max()


def test_common_mode_ignores_pixel_order_incomplete_pixels_and_needs_enough_pixels():
    t, _, noisy, _ = _frame_series(n_pixel=800, seed=1)
    mode, _ = a.common_mode_series(noisy, t)
    shuffled = np.random.default_rng(2).permutation(noisy)
    np.testing.assert_array_equal(a.common_mode_series(shuffled, t)[0], mode)
    holed = noisy.copy()
    holed[::7, 5] = np.nan
    got, n = a.common_mode_series(holed, t)
    assert n == 800 - len(range(0, 800, 7))
    assert np.abs(got - mode).max() < 1.0
    zeros, n = a.common_mode_series(noisy[:50], t)
    assert n == 0 and not zeros.any()
    with pytest.raises(ValueError, match="n_pixel, n_date"):
        a.common_mode_series(noisy[:, :-1], t)


# ------------------------------------------------------------------------------ blending


def test_feather_weights_distance_and_cap():
    fp = np.zeros((40, 100), dtype=bool)
    fp[5:35, 10:90] = True
    w = a.feather_weights(fp, dy_km=1.0, dx_km=1.0, cap_km=10.0)
    assert w[20, 50] == 10.0  # capped in the interior
    assert w[20, 10] == pytest.approx(0.5)  # edge pixel: half a pixel from the edge
    assert w[20, 14] == pytest.approx(4.5)
    assert np.all(w[~fp] == 0)


def test_feathered_blending_is_continuous_across_the_seam():
    ny, nx = 20, 200  # 1 km pixels; frame A x < 120, frame B x >= 80
    fa = np.zeros((ny, nx), bool)
    fb = np.zeros((ny, nx), bool)
    fa[:, :120] = True
    fb[:, 80:] = True
    va = np.where(fa, 1.0, np.nan)  # the frames disagree by 1 mm/yr
    vb = np.where(fb, 0.0, np.nan)
    wa = a.feather_weights(fa, dy_km=1, dx_km=1)
    wb = a.feather_weights(fb, dy_km=1, dx_km=1)
    v, s, n = a.blend_frames(
        np.stack([va, vb]), np.stack([wa, wb]), np.array([1.0, 1.0])[:, None, None]
    )
    jumps = np.abs(np.diff(v[10]))
    assert jumps.max() < 0.15  # feathered: no step at either frame edge
    hard, _, _ = a.blend_frames(np.stack([va, vb]), np.stack([fa, fb]).astype(float), 1.0)
    assert np.abs(np.diff(hard[10])).max() == pytest.approx(0.5)  # plain mean steps by half
    assert n[10, 100] == 2 and n[10, 10] == 1 and n[10, 190] == 1
    assert v[10, 10] == 1.0 and v[10, 190] == 0.0
    # equal feathers in the middle of the overlap: sigma / sqrt(2)
    assert s[10, 100] == pytest.approx(1 / np.sqrt(2))


def test_resample_to_monthly_epochs():
    t = 2017.0 + np.arange(0, 60) * 12 / 365.25
    series = np.stack([3.0 * (t - 2017.0), -2.0 * (t - 2017.0)])  # (2, n_time), linear in time
    months = 2017.0 + (np.arange(-2, 26) + 0.5) / 12
    out = a.resample_to_epochs(series, t, months)
    inside = (months >= t[0]) & (months <= t[-1])
    np.testing.assert_allclose(out[0, inside], 3.0 * (months[inside] - 2017.0), atol=1e-12)
    beyond = (months < t[0] - 12 / 365.25) | (months > t[-1] + 12 / 365.25)
    assert beyond.any() and np.all(np.isnan(out[:, beyond]))


# ------------------------------------------------------------------------------ bowls survive


def test_bowl_survives_the_frame_correction():
    """Full Stage-3 chain on a 2.5 deg frame: sampling, residuals, selection, grid correction."""
    lon, lat = _grid(1.25, 0.01)
    x, y = a.local_coordinates_km(lon[None, :], lat[:, None], LON0, LAT0)
    truth = _bowl(x, y, 20.0, -10.0, 12.0, -120.0) + _bowl(x, y, -60.0, 50.0, 20.0, -45.0)
    error = 4.0 + 6.0 * x / 110.0 - 3.0 * y / 110.0 + 6.0 * (x / 100.0) ** 2  # long wavelength
    u_up = np.cos(np.radians(38.0))
    vel_los = (truth + error) * u_up  # vertical-only frame, plate motion already removed
    rng = np.random.default_rng(11)
    sx, sy = rng.uniform(-130, 130, 40), rng.uniform(-130, 130, 40)
    st_lon, st_lat = a.lonlat_from_local_km(sx, sy, LON0, LAT0)
    samp = a.sample_station_windows(vel_los, lon, lat, st_lon, st_lat, radius_m=1500, min_pixels=5)
    gnss_up = _bowl(sx, sy, 20.0, -10.0, 12.0, -120.0) + _bowl(sx, sy, -60.0, 50.0, 20.0, -45.0)
    gnss_up = gnss_up + rng.normal(0, 1.0, sx.size)
    u = np.tile([0.0, 0.0, u_up], (sx.size, 1))
    gnss = np.column_stack([np.zeros(sx.size), np.zeros(sx.size), gnss_up])
    r, sig = a.residuals_at_stations(gnss, np.full((sx.size, 3), 1.0), u, samp.median, samp.sigma)
    ok = samp.valid
    fit = select_and_fit(
        sx[ok],
        sy[ok],
        r[ok],
        sig[ok],
        candidates=["P0", "P1", "P2", "GP"],
        origin=(LON0, LAT0),
        max_gradient=samp.max_gradient[ok],
        cv="kfold",
        settings=_fast_settings(),
    )
    corr, extrap = fit.predict_grid(lon, lat)
    v_up = (vel_los + corr) / u_up
    assert fit.model_id in ("P2", "GP")
    assert extrap.any() and not extrap.all()
    for x0, y0, peak in ((20.0, -10.0, -120.0), (-60.0, 50.0, -45.0)):
        near = np.hypot(x - x0, y - y0) < 3.0
        assert np.min(v_up[near]) == pytest.approx(peak, rel=0.05)
    before = np.sqrt(np.mean((vel_los / u_up - truth) ** 2))
    after = np.sqrt(np.mean((v_up - truth)[~extrap] ** 2))
    assert before > 4.0 and after < 1.0


def _fast_settings():
    from ncp_subsidence.models.selection import ModelSettings

    return ModelSettings(kfold_repeats=2, gp_restarts=0)


def test_resample_surface_is_exact_for_planes_and_blockwise_consistent():
    lon_c = np.linspace(115.0, 117.0, 21)
    lat_c = np.linspace(39.0, 37.0, 21)  # north-up source grid
    plane = 3.0 + 2.0 * (lon_c[None, :] - 116.0) - 4.0 * (lat_c[:, None] - 38.0)
    lon_f = np.arange(115.2, 116.8, 0.013)
    lat_f = np.arange(38.7, 37.3, -0.017)
    fine = a.resample_surface(plane, lon_c, lat_c, lon_f, lat_f)
    expected = 3.0 + 2.0 * (lon_f[None, :] - 116.0) - 4.0 * (lat_f[:, None] - 38.0)
    np.testing.assert_allclose(fine, expected, atol=1e-12)
    block = a.resample_surface(plane, lon_c, lat_c, lon_f[10:30], lat_f[5:25])
    np.testing.assert_array_equal(block, fine[5:25, 10:30])
