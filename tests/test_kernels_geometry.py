"""Tests of ncp_subsidence.kernels.geometry against docs/science.md 2.5 and 4.2 numbers."""

from __future__ import annotations

import numpy as np
import pytest

from ncp_subsidence.errors import DataError
from ncp_subsidence.kernels import geometry as g

ASC, DSC = -12.0, -168.0


@pytest.mark.parametrize(
    ("lat", "lon", "east", "north"),
    [(38.0, 116.0, 27.1, -9.6), (40.0, 117.0, 26.9, -9.8), (36.0, 114.0, 27.4, -9.1)],
)
def test_itrf2014_eurasia_plate_velocity_matches_science_table(lat, lon, east, north):
    v = g.plate_velocity_enu(lon, lat)
    assert v.shape == (3,)
    assert v[0] == pytest.approx(east, abs=0.1)
    assert v[1] == pytest.approx(north, abs=0.1)
    assert abs(v[2]) < 0.1  # rigid rotation is horizontal (up to the ellipsoid normal)


def test_itrf2014_eurasia_pole_location_and_rate():
    lat, lon, rate = g.euler_vector_to_pole(g.ITRF2014_EURASIA_MAS_PER_YR)
    assert lat == pytest.approx(55.070, abs=0.01)
    assert lon == pytest.approx(-99.095, abs=0.01)
    assert rate == pytest.approx(0.261, abs=0.001)


def test_plate_velocity_broadcasts_over_grids():
    lon, lat = np.meshgrid(np.linspace(114, 118, 5), np.linspace(36, 40, 4))
    v = g.plate_velocity_enu(lon, lat)
    assert v.shape == (4, 5, 3)
    np.testing.assert_allclose(v[1, 2], g.plate_velocity_enu(lon[1, 2], lat[1, 2]))


def test_ecef_and_enu_rotation_known_values():
    xyz = g.geodetic_to_ecef(0.0, 0.0)
    np.testing.assert_allclose(xyz, [g.WGS84_A, 0.0, 0.0], atol=1e-6)
    pole = g.geodetic_to_ecef(0.0, 90.0)
    b = g.WGS84_A * (1 - g.WGS84_F)
    np.testing.assert_allclose(pole, [0.0, 0.0, b], atol=1e-6)
    rot = g.enu_rotation(116.0, 38.0)
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
    # 'up' is the outward ellipsoid normal: at (0, 0) it is +x
    np.testing.assert_allclose(g.enu_rotation(0.0, 0.0)[2], [1.0, 0.0, 0.0], atol=1e-12)


@pytest.mark.parametrize(
    ("heading", "theta", "expected"),
    [(ASC, 30.0, -12.3), (ASC, 46.0, -17.7), (DSC, 30.0, 14.3), (DSC, 46.0, 20.5)],
)
def test_plate_motion_in_los_matches_science_2_5(heading, theta, expected):
    u = g.los_unit_vector(theta, heading)
    assert g.plate_velocity_los(116.0, 38.0, u) == pytest.approx(expected, abs=0.1)


def test_swath_ramp_matches_science_4_2():
    # docs/science.md 4.2 quotes 5.4 (asc) and 6.3 (dsc): the differences of the 2.5 numbers (30-46 deg)
    assert g.swath_plate_ramp(116.0, 38.0, ASC, 30.0, 46.0) == pytest.approx(5.4, abs=0.1)
    assert g.swath_plate_ramp(116.0, 38.0, DSC, 30.0, 46.0) == pytest.approx(6.3, abs=0.1)
    # the full 29-46 deg span is slightly larger
    assert g.swath_plate_ramp(116.0, 38.0, ASC, 29.0, 46.0) > 5.4


def test_los_unit_vector_conventions():
    u = g.los_unit_vector(np.array([30.0, 46.0]), ASC)
    np.testing.assert_allclose(np.linalg.norm(u, axis=-1), 1.0)
    # ascending right-looking: the satellite is to the west (and slightly south) of the ground
    assert np.all(u[:, 0] < 0) and np.all(u[:, 1] < 0) and np.all(u[:, 2] > 0)
    # MintPy az_los = 90 - heading gives the same vector
    np.testing.assert_allclose(g.los_unit_vector_from_az_los([30.0, 46.0], 90.0 - ASC), u)
    # a subsiding point moves away from the satellite: negative LOS
    assert g.enu_to_los([0.0, 0.0, -10.0], u[0]) < 0


def test_hyp3_look_vector_convention():
    theta = np.array([30.0, 38.0, 46.0])
    for heading in (ASC, DSC):
        u_ref = g.los_unit_vector(theta, heading)
        # the HyP3 maps this geometry would carry: elevation above horizontal, azimuth from east
        lv_theta = np.arcsin(u_ref[:, 2])
        lv_phi = np.arctan2(u_ref[:, 1], u_ref[:, 0])
        np.testing.assert_allclose(np.degrees(lv_theta), 90.0 - theta)
        u = g.los_unit_vector_from_hyp3(lv_theta, lv_phi)
        np.testing.assert_allclose(u, u_ref, atol=1e-12)
        inc, head = g.hyp3_to_incidence_heading(lv_theta, lv_phi)
        np.testing.assert_allclose(inc, theta)
        np.testing.assert_allclose(head, heading)
    # ascending: the look vector points west-south-west, lv_phi about -168 deg (MintPy az = 102)
    u_asc = g.los_unit_vector(30.0, ASC)
    assert np.degrees(np.arctan2(u_asc[1], u_asc[0])) == pytest.approx(-168.0)
    # HyP3 no-data (0) becomes NaN instead of a horizontal look vector
    u0 = g.los_unit_vector_from_hyp3(np.array([0.0, np.radians(55.0)]), np.array([0.0, 0.3]))
    assert np.all(np.isnan(u0[0])) and np.all(np.isfinite(u0[1]))


def test_hyp3_degrees_by_mistake_raise():
    with pytest.raises(DataError, match="incidence"):
        g.los_unit_vector_from_hyp3(np.array([55.0]), np.array([-168.0]))


@pytest.mark.parametrize("bad", [15.0, 55.0, 90.0])
def test_bad_incidence_raises(bad):
    with pytest.raises(DataError, match="outside"):
        g.los_unit_vector(np.array([30.0, bad]), ASC)


def test_nan_incidence_passes_as_nan():
    u = g.los_unit_vector(np.array([np.nan, 35.0]), ASC)
    assert np.all(np.isnan(u[0])) and np.all(np.isfinite(u[1]))


def test_enu_los_vertical_round_trip_is_exact():
    rng = np.random.default_rng(0)
    theta = rng.uniform(29, 46, 500)
    u = g.los_unit_vector(theta, rng.choice([ASC, DSC], 500))
    d_up = rng.normal(0, 50, 500)
    d_enu = np.column_stack([np.zeros(500), np.zeros(500), d_up])
    np.testing.assert_allclose(g.los_to_vertical(g.enu_to_los(d_enu, u), u), d_up, rtol=1e-13)


def test_vertical_after_removing_horizontal_plate_motion():
    lon, lat = np.array([115.0, 116.5]), np.array([37.0, 39.0])
    u = g.los_unit_vector(np.array([31.0, 44.0]), ASC)
    v_plate = g.plate_velocity_enu(lon, lat)
    v_true = v_plate.copy()
    v_true[:, 2] = [-40.0, -5.0]
    d_los = g.enu_to_los(v_true, u)
    np.testing.assert_allclose(g.los_to_vertical(d_los, u, v_plate), [-40.0, -5.0], atol=1e-9)
    # ignoring the plate motion is wrong by several mm/yr (the reason for docs/science.md 4.3)
    naive = g.los_to_vertical(d_los, u)
    assert np.all(np.abs(naive - [-40.0, -5.0]) > 10.0)


def test_two_geometry_decomposition_and_condition():
    u_a = g.los_unit_vector(np.array([34.0, 40.0]), ASC)
    u_b = g.los_unit_vector(np.array([39.0, 40.0]), DSC)
    d = np.array([[3.0, 0.0, -25.0], [-2.0, 0.0, -8.0]])
    east, up, cond = g.decompose_two_geometries(
        g.enu_to_los(d, u_a), g.enu_to_los(d, u_b), u_a, u_b
    )
    np.testing.assert_allclose(east, d[:, 0], atol=1e-10)
    np.testing.assert_allclose(up, d[:, 2], atol=1e-10)
    assert np.all(cond < 10)
    # two near-identical geometries are ill-conditioned and masked
    u_c = g.los_unit_vector(np.array([34.0]), ASC)
    u_d = g.los_unit_vector(np.array([35.0]), ASC)
    e2, u2, c2 = g.decompose_two_geometries(np.array([1.0]), np.array([1.0]), u_c, u_d)
    assert c2[0] > 10 and np.isnan(e2[0]) and np.isnan(u2[0])


def test_fit_euler_pole_recovers_known_pole():
    rng = np.random.default_rng(3)
    lon = rng.uniform(110, 122, 40)
    lat = rng.uniform(33, 42, 40)
    omega_true = np.array([-0.3, -0.45, 0.9])  # a regional block rotation, mas/yr
    v = g.plate_velocity_enu(lon, lat, omega_true)
    noise = rng.normal(0, 0.2, (40, 2))
    fit = g.fit_euler_pole(
        lon, lat, v[:, 0] + noise[:, 0], v[:, 1] + noise[:, 1], 0.2 * np.ones(40), 0.2 * np.ones(40)
    )
    # predicted velocities over the network agree to well below the noise
    v_fit = g.plate_velocity_enu(lon, lat, fit.omega)
    assert np.max(np.abs(v_fit[:, :2] - v[:, :2])) < 0.2
    assert fit.wrms_east < 0.3 and fit.wrms_north < 0.3
    assert fit.chi2_reduced == pytest.approx(1.0, abs=0.5)
    # noise-free data recover the vector itself
    exact = g.fit_euler_pole(lon, lat, v[:, 0], v[:, 1])
    np.testing.assert_allclose(exact.omega, omega_true, atol=1e-8)


def test_fit_euler_pole_needs_two_stations():
    with pytest.raises(DataError):
        g.fit_euler_pole([116.0], [38.0], [27.0], [-9.5])


def test_unknown_plate_model_raises():
    with pytest.raises(DataError, match="ITRF2014_EURA"):
        g.plate_velocity_enu(116.0, 38.0, "ITRF2099_MARS")


def test_plate_motion_los_referenced_is_zero_at_reference_and_ramps_across_swath():
    u_ref = g.los_unit_vector(30.0, ASC)
    u = g.los_unit_vector(np.array([30.0, 46.0]), ASC)
    term = g.plate_motion_los_referenced(
        np.array([116.0, 116.0]), np.array([38.0, 38.0]), u, 116.0, 38.0, u_ref
    )
    assert term[0] == 0.0
    assert term[1] == pytest.approx(-17.67 + 12.30, abs=0.05)
