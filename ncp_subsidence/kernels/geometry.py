"""Earth and radar geometry: WGS84, ENU frames, plate motion and line-of-sight (LOS) vectors.

Pure numpy kernels (docs/science.md stage 2 and 4.2). Conventions used throughout:

- Angles in degrees unless a name says ``_rad``; longitudes east-positive, latitudes north-positive.
- ENU vectors have the component axis **last**: ``(..., 3)`` ordered (east, north, up).
- Velocities in mm/yr; Euler (rotation) vectors in mas/yr, Cartesian ECEF components.
- LOS unit vectors point from the **ground to the satellite**, so ``d_los = u . d_enu`` is positive
  for motion toward the satellite (range decrease), the MintPy convention.

LOS vector conventions accepted
-------------------------------
``incidence`` + ``heading`` (docs/science.md 2.2)
    ``theta`` measured from the local vertical at the ground point; ``h`` the satellite heading,
    clockwise from north (Sentinel-1 ascending about -12 deg, descending about -168 deg);
    right-looking. ``u = [-sin(theta) cos(h), sin(theta) sin(h), cos(theta)]``.
MintPy / ISCE-2 ``azimuthAngle`` (``az_los``)
    azimuth of the ground-to-satellite vector's horizontal projection, from north,
    anticlockwise positive: ``az_los = 90 - h``.
    ``u = [-sin(theta) sin(az_los), sin(theta) cos(az_los), cos(theta)]``.
ASF HyP3 (GAMMA) ``lv_theta`` / ``lv_phi`` GeoTIFFs, in **radians**
    ``lv_theta`` is the elevation angle of the ground-to-sensor look vector above the local
    horizontal (``-pi/2`` down to ``+pi/2`` up; positive when the sensor is above the surface),
    so ``incidence = 90 deg - lv_theta``. ``lv_phi`` is the orientation of the look vector's
    horizontal projection measured from **east**, anticlockwise (east 0, north ``+pi/2``,
    south ``-pi/2``). Hence ``u = [cos(lv_theta) cos(lv_phi), cos(lv_theta) sin(lv_phi),
    sin(lv_theta)]`` and ``az_los = lv_phi - 90 deg`` (what MintPy's ``geometryDict`` applies when
    loading HyP3, ``data * 180 / pi - 90``). A value of exactly 0 is HyP3's no-data and becomes
    NaN. For a Sentinel-1 ascending track (h = -12 deg) ``lv_phi`` is about -168 deg (the vector
    points west-south-west toward the satellite); descending (h = -168 deg) about -12 deg.

References
----------
Altamimi, Z., Métivier, L., Rebischung, P., Rouby, H., Collilieux, X. (2017). ITRF2014 plate
motion model. Geophys. J. Int. 209(3), 1906-1912. doi:10.1093/gji/ggx136.
Stephenson, O. L., Liu, Y.-K., Yunjun, Z., Simons, M., Rosen, P., Xu, X. (2022). The impact of
plate motions on long-wavelength InSAR-derived velocity fields. Geophys. Res. Lett. 49,
e2022GL099835. doi:10.1029/2022GL099835.
Yunjun, Z., Fattahi, H., Amelung, F. (2019). Small baseline InSAR time series analysis:
unwrapping error correction and noise reduction. Comput. Geosci. 133, 104331 (MintPy;
``mintpy.utils.utils0.get_unit_vector4component_of_interest``, ``objects/stackDict.py``).
ASF HyP3 InSAR product guide (GAMMA): ``lv_theta`` and ``lv_phi`` look-vector maps.
Mi, J., Wu, Z., Wang, X., Bai, L., Li, Z., Lu, Z. (2026). Mapping wide-area land subsidence from
groundwater use in the North China plain by machine learning-based InSAR adjustment. Remote Sens.
Environ. doi:10.1016/j.rse.2025.115226.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ncp_subsidence.errors import DataError

__all__ = [
    "INCIDENCE_RANGE_DEG",
    "ITRF2014_EURASIA_MAS_PER_YR",
    "MAS_TO_RAD",
    "PLATE_MODELS",
    "WGS84_A",
    "WGS84_F",
    "EulerPoleFit",
    "check_incidence",
    "decompose_two_geometries",
    "enu_rotation",
    "enu_to_los",
    "euler_vector_to_pole",
    "fit_euler_pole",
    "geodetic_to_ecef",
    "hyp3_to_incidence_heading",
    "los_to_vertical",
    "los_unit_vector",
    "los_unit_vector_from_az_los",
    "los_unit_vector_from_hyp3",
    "plate_motion_los_referenced",
    "plate_velocity_enu",
    "plate_velocity_los",
    "resolve_euler_vector",
    "swath_plate_ramp",
]

WGS84_A = 6378137.0
"""WGS84 semi-major axis, m."""
WGS84_F = 1.0 / 298.257223563
"""WGS84 flattening."""
_WGS84_E2 = WGS84_F * (2.0 - WGS84_F)

MAS_TO_RAD = np.pi / (180.0 * 3.6e6)
"""One milliarcsecond in radians."""

ITRF2014_EURASIA_MAS_PER_YR = (-0.085, -0.531, 0.770)
"""ITRF2014-PMM Eurasia Euler vector (omega_x, omega_y, omega_z), mas/yr (Altamimi et al. 2017)."""

PLATE_MODELS: dict[str, tuple[float, float, float]] = {
    "ITRF2014_EURA": ITRF2014_EURASIA_MAS_PER_YR,
}
"""Named Euler vectors in mas/yr, ECEF components."""

INCIDENCE_RANGE_DEG = (20.0, 50.0)
"""Plausible ellipsoidal incidence for Sentinel-1 IW; values outside mean a broken geometry file."""


def _f64(a: ArrayLike) -> NDArray[np.float64]:
    return np.asarray(a, dtype=np.float64)


def check_incidence(
    incidence_deg: ArrayLike, valid_range: tuple[float, float] = INCIDENCE_RANGE_DEG
) -> NDArray[np.float64]:
    """Validate incidence angles; NaN (no geometry) passes through.

    Parameters
    ----------
    incidence_deg : array_like, any shape, degrees from the local vertical
    valid_range : (float, float), degrees
        Inclusive bounds (docs/science.md 2.4: [20, 50]).

    Returns
    -------
    ndarray, float64, same shape

    Raises
    ------
    DataError
        If any finite value lies outside ``valid_range``.
    """
    inc = _f64(incidence_deg)
    finite = np.isfinite(inc)
    bad = finite & ((inc < valid_range[0]) | (inc > valid_range[1]))
    if np.any(bad):
        values = inc[bad]
        raise DataError(
            f"incidence angle outside [{valid_range[0]}, {valid_range[1]}] deg: {int(bad.sum())} "
            f"values, e.g. {values.ravel()[0]:.3f} (min {np.min(values):.3f}, max "
            f"{np.max(values):.3f}); the geometry file is broken or not in degrees from the "
            "vertical (HyP3 lv_theta is an elevation angle in radians: use "
            "los_unit_vector_from_hyp3)"
        )
    return inc


def geodetic_to_ecef(
    lon_deg: ArrayLike, lat_deg: ArrayLike, height_m: ArrayLike = 0.0
) -> NDArray[np.float64]:
    """WGS84 geodetic coordinates to Earth-centred, Earth-fixed Cartesian coordinates.

    Parameters
    ----------
    lon_deg, lat_deg : array_like, broadcastable, degrees
    height_m : array_like, broadcastable, m above the ellipsoid

    Returns
    -------
    xyz : ndarray, shape (..., 3), m
    """
    lam = np.radians(_f64(lon_deg))
    phi = np.radians(_f64(lat_deg))
    h = _f64(height_m)
    lam, phi, h = np.broadcast_arrays(lam, phi, h)
    sin_phi = np.sin(phi)
    n = WGS84_A / np.sqrt(1.0 - _WGS84_E2 * sin_phi**2)
    x = (n + h) * np.cos(phi) * np.cos(lam)
    y = (n + h) * np.cos(phi) * np.sin(lam)
    z = (n * (1.0 - _WGS84_E2) + h) * sin_phi
    return np.stack([x, y, z], axis=-1)


def enu_rotation(lon_deg: ArrayLike, lat_deg: ArrayLike) -> NDArray[np.float64]:
    """Rotation matrices from ECEF vector components to local (east, north, up).

    Parameters
    ----------
    lon_deg, lat_deg : array_like, broadcastable, degrees (geodetic latitude)

    Returns
    -------
    rot : ndarray, shape (..., 3, 3)
        Rows are the unit vectors e, n, u in ECEF, so ``v_enu = rot @ v_xyz``.
    """
    lam = np.radians(_f64(lon_deg))
    phi = np.radians(_f64(lat_deg))
    lam, phi = np.broadcast_arrays(lam, phi)
    sl, cl, sp, cp = np.sin(lam), np.cos(lam), np.sin(phi), np.cos(phi)
    zero = np.zeros_like(lam)
    east = np.stack([-sl, cl, zero], axis=-1)
    north = np.stack([-sp * cl, -sp * sl, cp], axis=-1)
    up = np.stack([cp * cl, cp * sl, sp], axis=-1)
    return np.stack([east, north, up], axis=-2)


def resolve_euler_vector(pole: str | ArrayLike = "ITRF2014_EURA") -> NDArray[np.float64]:
    """Return an Euler vector in mas/yr from a model name or three components.

    Parameters
    ----------
    pole : str or array_like, shape (3,)
        A key of :data:`PLATE_MODELS` (``"ITRF2014_EURA"``) or (omega_x, omega_y, omega_z) in
        mas/yr, ECEF.

    Returns
    -------
    ndarray, shape (3,), mas/yr
    """
    if isinstance(pole, str):
        try:
            return np.asarray(PLATE_MODELS[pole], dtype=np.float64)
        except KeyError:
            raise DataError(
                f"unknown plate motion model {pole!r}; choose one of {sorted(PLATE_MODELS)} or "
                "pass (omega_x, omega_y, omega_z) in mas/yr (e.g. from fit_euler_pole)"
            ) from None
    omega = _f64(pole)
    if omega.shape != (3,):
        raise DataError(f"an Euler vector needs 3 components in mas/yr, got shape {omega.shape}")
    return omega


def plate_velocity_enu(
    lon_deg: ArrayLike,
    lat_deg: ArrayLike,
    pole: str | ArrayLike = "ITRF2014_EURA",
    height_m: ArrayLike = 0.0,
) -> NDArray[np.float64]:
    """Rigid-plate velocity ``v = omega x X`` in local ENU (docs/science.md 4.2).

    Parameters
    ----------
    lon_deg, lat_deg : array_like, broadcastable, degrees
    pole : str or array_like, shape (3,)
        Plate model name or Euler vector in mas/yr (see :func:`resolve_euler_vector`).
    height_m : array_like, m above the ellipsoid

    Returns
    -------
    v_enu : ndarray, shape (..., 3), mm/yr
        At (38 N, 116 E) for ITRF2014-PMM Eurasia: (+27.1, -9.5, -0.03).

    References
    ----------
    Altamimi et al. (2017), ITRF2014 plate motion model, GJI 209(3):1906-1912.
    """
    omega = resolve_euler_vector(pole) * MAS_TO_RAD  # rad/yr
    xyz = geodetic_to_ecef(lon_deg, lat_deg, height_m)
    v_xyz = np.cross(np.broadcast_to(omega, xyz.shape), xyz) * 1000.0  # mm/yr
    rot = enu_rotation(lon_deg, lat_deg)
    rot = np.broadcast_to(rot, (*xyz.shape[:-1], 3, 3))
    return np.einsum("...ij,...j->...i", rot, v_xyz)


def euler_vector_to_pole(omega_mas_per_yr: ArrayLike) -> tuple[float, float, float]:
    """Convert a Cartesian Euler vector to pole latitude, longitude and rate.

    Parameters
    ----------
    omega_mas_per_yr : array_like, shape (3,), mas/yr

    Returns
    -------
    lat_deg, lon_deg, rate_deg_per_myr : float
        For ITRF2014-PMM Eurasia: 55.07, -99.10, 0.261.
    """
    om = _f64(omega_mas_per_yr)
    norm = float(np.linalg.norm(om))
    lat = float(np.degrees(np.arcsin(om[2] / norm)))
    lon = float(np.degrees(np.arctan2(om[1], om[0])))
    rate = norm / 3.6e6 * 1e6  # mas/yr -> deg/yr -> deg/Myr
    return lat, lon, rate


@dataclass(frozen=True)
class EulerPoleFit:
    """Result of :func:`fit_euler_pole`.

    Attributes
    ----------
    omega : ndarray, shape (3,), mas/yr
        Fitted Euler vector (ECEF components); pass it as ``pole=`` to
        :func:`plate_velocity_enu`.
    covariance : ndarray, shape (3, 3), (mas/yr)^2
        Formal covariance scaled by the reduced chi-square when ``scale_covariance``.
    residual_enu : ndarray, shape (n, 2), mm/yr
        Observed minus fitted horizontal velocity per station.
    wrms_east, wrms_north : float, mm/yr
    chi2_reduced : float
    """

    omega: NDArray[np.float64]
    covariance: NDArray[np.float64]
    residual_enu: NDArray[np.float64]
    wrms_east: float
    wrms_north: float
    chi2_reduced: float

    @property
    def pole(self) -> tuple[float, float, float]:
        """(lat_deg, lon_deg, rate_deg_per_myr) of the fitted pole."""
        return euler_vector_to_pole(self.omega)


def fit_euler_pole(
    lon_deg: ArrayLike,
    lat_deg: ArrayLike,
    v_east: ArrayLike,
    v_north: ArrayLike,
    sigma_east: ArrayLike | None = None,
    sigma_north: ArrayLike | None = None,
    *,
    scale_covariance: bool = True,
) -> EulerPoleFit:
    """Fit a rigid-rotation Euler vector to GNSS horizontal velocities by weighted LS.

    Solves ``[v_e, v_n]_i = (R_i (-[X_i]_x)) omega`` (rows e, n of the ENU rotation of
    ``omega x X_i``) for the three ECEF components of omega. Use stations outside subsidence
    zones (docs/science.md 4.2, option ``'GNSS_regional'``).

    Parameters
    ----------
    lon_deg, lat_deg : array_like, shape (n,), degrees
    v_east, v_north : array_like, shape (n,), mm/yr
    sigma_east, sigma_north : array_like, shape (n,), mm/yr, optional
        One-sigma uncertainties (default 1 mm/yr).
    scale_covariance : bool
        Scale the formal covariance by the reduced chi-square.

    Returns
    -------
    EulerPoleFit

    Raises
    ------
    DataError
        Fewer than 2 stations, or the stations do not constrain all three components.
    """
    lon = _f64(lon_deg).ravel()
    lat = _f64(lat_deg).ravel()
    ve = _f64(v_east).ravel()
    vn = _f64(v_north).ravel()
    n = lon.size
    if n < 2 or not (lat.size == ve.size == vn.size == n):
        raise DataError(
            f"fit_euler_pole needs >= 2 stations with matching lon/lat/v_east/v_north, got {n}"
        )
    se = np.ones(n) if sigma_east is None else _f64(sigma_east).ravel()
    sn = np.ones(n) if sigma_north is None else _f64(sigma_north).ravel()
    xyz = geodetic_to_ecef(lon, lat)  # (n, 3) m
    rot = enu_rotation(lon, lat)[:, :2, :]  # (n, 2, 3)
    # omega x X = -[X]_x omega  ->  design per station = rot @ (-[X]_x)
    skew = np.zeros((n, 3, 3))
    skew[:, 0, 1], skew[:, 0, 2] = -xyz[:, 2], xyz[:, 1]
    skew[:, 1, 0], skew[:, 1, 2] = xyz[:, 2], -xyz[:, 0]
    skew[:, 2, 0], skew[:, 2, 1] = -xyz[:, 1], xyz[:, 0]
    design = -np.einsum("nij,njk->nik", rot, skew) * (MAS_TO_RAD * 1000.0)  # mm/yr per mas/yr
    a = design.reshape(2 * n, 3)
    obs = np.stack([ve, vn], axis=-1).reshape(2 * n)
    sig = np.stack([se, sn], axis=-1).reshape(2 * n)
    aw = a / sig[:, None]
    bw = obs / sig
    normal = aw.T @ aw
    if np.linalg.cond(normal) > 1e12:
        raise DataError(
            f"Euler pole is not constrained by {n} stations (condition number "
            f"{np.linalg.cond(normal):.3g}); use stations spread over a wider area"
        )
    omega = np.linalg.solve(normal, aw.T @ bw)
    resid = (obs - a @ omega).reshape(n, 2)
    dof = max(2 * n - 3, 1)
    chi2 = float(np.sum(((obs - a @ omega) / sig) ** 2) / dof)
    cov = np.linalg.inv(normal) * (chi2 if scale_covariance else 1.0)
    we, wn = 1.0 / se**2, 1.0 / sn**2
    wrms_e = float(np.sqrt(np.sum(we * resid[:, 0] ** 2) / np.sum(we)))
    wrms_n = float(np.sqrt(np.sum(wn * resid[:, 1] ** 2) / np.sum(wn)))
    return EulerPoleFit(omega, cov, resid, wrms_e, wrms_n, chi2)


def los_unit_vector(incidence_deg: ArrayLike, heading_deg: ArrayLike) -> NDArray[np.float64]:
    """Ground-to-satellite LOS unit vector in ENU from incidence and heading (docs/science.md 2.2).

    Parameters
    ----------
    incidence_deg : array_like, degrees from the local vertical, in [20, 50] or NaN
    heading_deg : array_like, broadcastable, satellite heading clockwise from north

    Returns
    -------
    u : ndarray, shape (..., 3), (east, north, up); NaN where the incidence is NaN

    Raises
    ------
    DataError
        Incidence outside [20, 50] deg.

    References
    ----------
    Yunjun et al. (2019), MintPy ``get_unit_vector4component_of_interest``.
    """
    theta = np.radians(check_incidence(incidence_deg))
    h = np.radians(_f64(heading_deg))
    theta, h = np.broadcast_arrays(theta, h)
    return np.stack([-np.sin(theta) * np.cos(h), np.sin(theta) * np.sin(h), np.cos(theta)], axis=-1)


def los_unit_vector_from_az_los(
    incidence_deg: ArrayLike, az_los_deg: ArrayLike
) -> NDArray[np.float64]:
    """LOS unit vector from MintPy/ISCE-2 ``incidenceAngle`` and ``azimuthAngle``.

    Parameters
    ----------
    incidence_deg : array_like, degrees from the vertical
    az_los_deg : array_like, azimuth of the ground-to-satellite vector from north,
        anticlockwise positive, degrees (``az_los = 90 - heading``)

    Returns
    -------
    u : ndarray, shape (..., 3), ENU
    """
    theta = np.radians(check_incidence(incidence_deg))
    az = np.radians(_f64(az_los_deg))
    theta, az = np.broadcast_arrays(theta, az)
    return np.stack([-np.sin(theta) * np.sin(az), np.sin(theta) * np.cos(az), np.cos(theta)], -1)


def _hyp3_nodata(a: ArrayLike, nodata: float | None) -> NDArray[np.float64]:
    arr = _f64(a).copy()
    if nodata is not None:
        arr[arr == nodata] = np.nan
    return arr


def los_unit_vector_from_hyp3(
    lv_theta_rad: ArrayLike, lv_phi_rad: ArrayLike, *, nodata: float | None = 0.0
) -> NDArray[np.float64]:
    """LOS unit vector from ASF HyP3 (GAMMA) ``lv_theta`` / ``lv_phi`` maps.

    Parameters
    ----------
    lv_theta_rad : array_like, radians
        Elevation of the ground-to-sensor look vector above the horizontal (incidence =
        90 deg - lv_theta).
    lv_phi_rad : array_like, radians
        Orientation of the look vector's horizontal projection from east, anticlockwise
        (north = +pi/2).
    nodata : float or None
        HyP3 writes 0 for no data; those pixels become NaN.

    Returns
    -------
    u : ndarray, shape (..., 3), ENU, ground to satellite

    Raises
    ------
    DataError
        Incidence (90 deg - lv_theta) outside [20, 50] deg, e.g. degrees passed for radians.

    References
    ----------
    HyP3 InSAR product guide; MintPy ``objects/stackDict.py`` (``geometryDict.write2hdf5``,
    HyP3 -> MintPy conversion ``inc = 90 - lv_theta``, ``az_los = lv_phi - 90``).
    """
    lv_theta = _hyp3_nodata(lv_theta_rad, nodata)
    lv_phi = _hyp3_nodata(lv_phi_rad, nodata)
    check_incidence(90.0 - np.degrees(lv_theta))
    lv_theta, lv_phi = np.broadcast_arrays(lv_theta, lv_phi)
    return np.stack(
        [np.cos(lv_theta) * np.cos(lv_phi), np.cos(lv_theta) * np.sin(lv_phi), np.sin(lv_theta)],
        axis=-1,
    )


def hyp3_to_incidence_heading(
    lv_theta_rad: ArrayLike, lv_phi_rad: ArrayLike, *, nodata: float | None = 0.0
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Convert HyP3 ``lv_theta``/``lv_phi`` to incidence and heading, degrees.

    Parameters
    ----------
    lv_theta_rad, lv_phi_rad : array_like, radians (see :func:`los_unit_vector_from_hyp3`)
    nodata : float or None

    Returns
    -------
    incidence_deg : ndarray, degrees from the vertical (``90 - lv_theta``)
    heading_deg : ndarray, degrees clockwise from north in (-180, 180]
        ``h = 90 - az_los = 180 - lv_phi`` (wrapped).
    """
    lv_theta = _hyp3_nodata(lv_theta_rad, nodata)
    lv_phi = _hyp3_nodata(lv_phi_rad, nodata)
    inc = check_incidence(90.0 - np.degrees(lv_theta))
    heading = 180.0 - np.degrees(lv_phi)
    heading = -((-heading + 180.0) % 360.0 - 180.0)  # wrap to (-180, 180]
    return inc, heading


def enu_to_los(d_enu: ArrayLike, unit_vector: ArrayLike) -> NDArray[np.float64]:
    """Project ENU displacement or velocity onto the LOS.

    Parameters
    ----------
    d_enu : array_like, shape (..., 3), mm or mm/yr
    unit_vector : array_like, shape (..., 3), ground-to-satellite ENU unit vector

    Returns
    -------
    d_los : ndarray, shape (...), positive toward the satellite
    """
    return np.sum(_f64(d_enu) * _f64(unit_vector), axis=-1)


def los_to_vertical(
    d_los: ArrayLike,
    unit_vector: ArrayLike,
    horizontal_enu: ArrayLike | None = None,
) -> NDArray[np.float64]:
    """Vertical-only conversion ``d_U = (d_LOS - u_E d_E - u_N d_N) / u_U`` (docs/science.md 2.2).

    Apply only after the known horizontal signals (plate motion, optionally GNSS-interpolated
    horizontal velocities) have been removed, or pass them as ``horizontal_enu``.

    Parameters
    ----------
    d_los : array_like, shape (...), mm or mm/yr, positive toward the satellite
    unit_vector : array_like, shape (..., 3), ENU
    horizontal_enu : array_like, shape (..., 2) or (..., 3), optional
        Known east/north motion to remove first (a third component is ignored).

    Returns
    -------
    d_up : ndarray, shape (...), positive up
    """
    u = _f64(unit_vector)
    d = _f64(d_los)
    if horizontal_enu is not None:
        hor = _f64(horizontal_enu)
        d = d - u[..., 0] * hor[..., 0] - u[..., 1] * hor[..., 1]
    return d / u[..., 2]


def plate_velocity_los(
    lon_deg: ArrayLike,
    lat_deg: ArrayLike,
    unit_vector: ArrayLike,
    pole: str | ArrayLike = "ITRF2014_EURA",
) -> NDArray[np.float64]:
    """Plate-motion velocity projected into the LOS, mm/yr (docs/science.md 2.5, 4.2).

    Parameters
    ----------
    lon_deg, lat_deg : array_like, degrees
    unit_vector : array_like, shape (..., 3), ENU
    pole : str or array_like, shape (3,), mas/yr

    Returns
    -------
    ndarray, shape (...), mm/yr, positive toward the satellite
        At (38 N, 116 E), Eurasia, ascending h = -12: -12.3 (theta 30), -17.7 (theta 46).
    """
    return enu_to_los(plate_velocity_enu(lon_deg, lat_deg, pole), unit_vector)


def plate_motion_los_referenced(
    lon_deg: ArrayLike,
    lat_deg: ArrayLike,
    unit_vector: ArrayLike,
    ref_lon_deg: float,
    ref_lat_deg: float,
    ref_unit_vector: ArrayLike,
    pole: str | ArrayLike = "ITRF2014_EURA",
) -> NDArray[np.float64]:
    """Plate-motion LOS term relative to the reference pixel, mm/yr (docs/science.md 3.2 step 1).

    ``v_LOS,EF(p) = v_LOS(p) - plate_motion_los_referenced(...)``, i.e. the term is
    ``u(p) . v_PMM(p) - u(ref) . v_PMM(ref)``, which keeps the zero at the reference.

    Parameters
    ----------
    lon_deg, lat_deg : array_like, shape (...), degrees
    unit_vector : array_like, shape (..., 3), ENU
    ref_lon_deg, ref_lat_deg : float, degrees, the reference pixel
    ref_unit_vector : array_like, shape (3,), ENU, at the reference pixel
    pole : str or array_like, shape (3,), mas/yr

    Returns
    -------
    ndarray, shape (...), mm/yr; exactly 0 at the reference
    """
    here = plate_velocity_los(lon_deg, lat_deg, unit_vector, pole)
    ref = plate_velocity_los(ref_lon_deg, ref_lat_deg, ref_unit_vector, pole)
    return here - ref


def swath_plate_ramp(
    lon_deg: float,
    lat_deg: float,
    heading_deg: float,
    incidence_near_deg: float = 30.0,
    incidence_far_deg: float = 46.0,
    pole: str | ArrayLike = "ITRF2014_EURA",
) -> float:
    """Plate-motion LOS ramp across a swath: |v_los(far) - v_los(near)|, mm/yr.

    Parameters
    ----------
    lon_deg, lat_deg : float, degrees
    heading_deg : float, degrees clockwise from north
    incidence_near_deg, incidence_far_deg : float, degrees

    Returns
    -------
    float, mm/yr
        About 5.4 (ascending) and 6.3 (descending) at (38 N, 116 E) for 30-46 deg (docs/science.md
        2.5 and 4.2; the stated 29-46 deg span gives 5.7 and 6.7).

    References
    ----------
    Stephenson et al. (2022), GRL 49, e2022GL099835.
    """
    u = los_unit_vector([incidence_near_deg, incidence_far_deg], heading_deg)
    v = plate_velocity_los(lon_deg, lat_deg, u, pole)
    return float(abs(v[1] - v[0]))


def decompose_two_geometries(
    d_los_a: ArrayLike,
    d_los_b: ArrayLike,
    unit_vector_a: ArrayLike,
    unit_vector_b: ArrayLike,
    *,
    cond_max: float = 10.0,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Solve east and up from two LOS geometries, neglecting north (docs/science.md 2.2).

    Per pixel ``[[u_E^a, u_U^a], [u_E^b, u_U^b]] [d_E, d_U] = [d_a, d_b]`` in closed form
    (batched, no loops). Pixels with ``cond > cond_max`` (2-norm condition number) are NaN.

    Parameters
    ----------
    d_los_a, d_los_b : array_like, shape (...), mm or mm/yr
    unit_vector_a, unit_vector_b : array_like, shape (..., 3), ENU
    cond_max : float
        Default 10 (range 5-50).

    Returns
    -------
    d_east, d_up : ndarray, shape (...)
    cond : ndarray, shape (...), condition number of each 2x2 system
    """
    ua = _f64(unit_vector_a)
    ub = _f64(unit_vector_b)
    da, db = np.broadcast_arrays(_f64(d_los_a), _f64(d_los_b))
    m = np.stack(
        [np.stack([ua[..., 0], ua[..., 2]], -1), np.stack([ub[..., 0], ub[..., 2]], -1)], -2
    )
    m = np.broadcast_to(m, (*da.shape, 2, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        cond = np.linalg.cond(m)
        det = m[..., 0, 0] * m[..., 1, 1] - m[..., 0, 1] * m[..., 1, 0]
        d_east = (m[..., 1, 1] * da - m[..., 0, 1] * db) / det
        d_up = (-m[..., 1, 0] * da + m[..., 0, 0] * db) / det
    bad = ~(cond <= cond_max)
    d_east = np.where(bad, np.nan, d_east)
    d_up = np.where(bad, np.nan, d_up)
    return d_east, d_up, cond
