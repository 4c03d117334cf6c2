"""Kernels of the GNSS-based long-wavelength adjustment and of the wide-area mosaic.

Pure numpy/scipy (docs/science.md stages 3 and 4). The per-frame model selection lives in
:mod:`ncp_subsidence.models.selection`; this module holds the numerical pieces it and the
``adjust``/``mosaic`` stages share:

- sampling a velocity grid in a window around each GNSS station (robust median, MAD sigma,
  local gradient) and the InSAR-minus-GNSS residuals;
- frame-local azimuthal-equidistant coordinates in km;
- weighted polynomial surfaces (P0-P3) with ridge;
- iterative MAD outlier rejection and the steep-gradient test;
- Gaussian low-pass of a surface with sigma in km; convex-hull extrapolation mask and clamping;
- the overlap adjustment across frames (sparse weighted LS with GNSS ties, LSQR), with
  offset, plane or along-track spline corrections;
- feather weights, weighted blending with propagated uncertainty, and monthly resampling;
- the common mode of a frame's time series (re-referencing to the frame's median pixel);
- GNSS daily position series against InSAR displacement series at stations: window means of
  the GNSS days around each SAR date, the window median series of the InSAR pixels, and the
  RMSE of the two with each series' mean over their common dates removed.

Grids are cell-registered, arrays ``(..., lat, lon)`` with 1-D ``lat`` and ``lon`` coordinate
vectors: EPSG:4326 degrees, or, where a function takes ``projected=True``, a projected frame grid
(``y`` northing, ``x`` easting, metres; HyP3's UTM frames). Velocities are mm/yr.

References
----------
Mi, J., Wu, Z., Wang, X., Bai, L., Li, Z., Lu, Z. (2026). Mapping wide-area land subsidence from
groundwater use in the North China plain by machine learning-based InSAR adjustment. Remote Sens.
Environ. doi:10.1016/j.rse.2025.115226.
Yunjun, Z., Fattahi, H., Amelung, F. (2019). Small baseline InSAR time series analysis:
unwrapping error correction and noise reduction. Comput. Geosci. 133, 104331 (MintPy).
Paige, C. C., Saunders, M. A. (1982). LSQR: an algorithm for sparse linear equations and sparse
least squares. ACM TOMS 8(1), 43-71.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.ndimage as ndi
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import lsqr
from scipy.spatial import ConvexHull, QhullError

from ncp_subsidence.errors import DataError

__all__ = [
    "EARTH_RADIUS_KM",
    "MAD_TO_SIGMA",
    "AlongTrackBasis",
    "ConvexHull2D",
    "GnssTies",
    "OverlapAdjustment",
    "OverlapSamples",
    "SeriesComparison",
    "StationSamples",
    "adjust_overlaps",
    "bilinear_regrid",
    "bilinear_sample",
    "blend_frames",
    "blend_series",
    "coarse_axis",
    "common_mode_series",
    "compare_series",
    "evaluate_correction",
    "feather_weights",
    "fit_polynomial",
    "gaussian_smooth_km",
    "gaussian_smooth_matrix",
    "grid_spacing_km",
    "holdout_rmse_scores",
    "local_coordinates_km",
    "lonlat_from_local_km",
    "overlap_cell_medians",
    "polynomial_design",
    "polynomial_n_terms",
    "projected_spacing_km",
    "reject_outliers",
    "resample_surface",
    "resample_to_epochs",
    "residuals_at_stations",
    "sample_station_windows",
    "smooth_trend_design",
    "station_window_series",
    "station_window_slices",
    "window_means",
]

EARTH_RADIUS_KM = 6371.007181
"""Authalic sphere radius, km (docs/science.md global conventions)."""
MAD_TO_SIGMA = 1.4826
"""Scale of the median absolute deviation to a Gaussian standard deviation."""


def _f64(a: ArrayLike) -> NDArray[np.float64]:
    return np.asarray(a, dtype=np.float64)


# --------------------------------------------------------------------------------------------
# coordinates
# --------------------------------------------------------------------------------------------


def local_coordinates_km(
    lon_deg: ArrayLike, lat_deg: ArrayLike, lon0_deg: float, lat0_deg: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Azimuthal-equidistant (spherical) coordinates centred on (lon0, lat0), km.

    Parameters
    ----------
    lon_deg, lat_deg : array_like, broadcastable, degrees
    lon0_deg, lat0_deg : float, degrees, projection centre (the frame centroid)

    Returns
    -------
    x_km, y_km : ndarray, east and north of the centre, km; distances from the centre are exact
        on the authalic sphere.

    References
    ----------
    Snyder, J. P. (1987). Map projections: a working manual. USGS PP 1395, eq. 25-2 to 25-4.
    """
    lam = np.radians(_f64(lon_deg))
    phi = np.radians(_f64(lat_deg))
    lam0, phi0 = np.radians(lon0_deg), np.radians(lat0_deg)
    dlam = lam - lam0
    cos_c = np.sin(phi0) * np.sin(phi) + np.cos(phi0) * np.cos(phi) * np.cos(dlam)
    c = np.arccos(np.clip(cos_c, -1.0, 1.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        k = np.where(c < 1e-12, 1.0, c / np.sin(c))
    x = EARTH_RADIUS_KM * k * np.cos(phi) * np.sin(dlam)
    y = (
        EARTH_RADIUS_KM
        * k
        * (np.cos(phi0) * np.sin(phi) - np.sin(phi0) * np.cos(phi) * np.cos(dlam))
    )
    return x, y


def lonlat_from_local_km(
    x_km: ArrayLike, y_km: ArrayLike, lon0_deg: float, lat0_deg: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Inverse of :func:`local_coordinates_km`.

    Parameters
    ----------
    x_km, y_km : array_like, km
    lon0_deg, lat0_deg : float, degrees

    Returns
    -------
    lon_deg, lat_deg : ndarray, degrees
    """
    x, y = _f64(x_km), _f64(y_km)
    phi0, lam0 = np.radians(lat0_deg), np.radians(lon0_deg)
    rho = np.hypot(x, y)
    c = rho / EARTH_RADIUS_KM
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(rho > 0, y * np.sin(c) * np.cos(phi0) / rho, 0.0)
    phi = np.arcsin(np.clip(np.cos(c) * np.sin(phi0) + ratio, -1.0, 1.0))
    lam = lam0 + np.arctan2(
        x * np.sin(c), rho * np.cos(phi0) * np.cos(c) - y * np.sin(phi0) * np.sin(c)
    )
    return np.degrees(lam), np.degrees(phi)


def grid_spacing_km(lon_deg: ArrayLike, lat_deg: ArrayLike) -> tuple[float, float]:
    """Pixel size of a regular lat/lon grid at its mean latitude, km.

    Parameters
    ----------
    lon_deg : array_like, shape (nx,), degrees, regular
    lat_deg : array_like, shape (ny,), degrees, regular

    Returns
    -------
    dy_km, dx_km : float
    """
    lon, lat = _f64(lon_deg), _f64(lat_deg)
    dlon = abs(float(np.mean(np.diff(lon)))) if lon.size > 1 else 0.0
    dlat = abs(float(np.mean(np.diff(lat)))) if lat.size > 1 else 0.0
    km_per_deg = EARTH_RADIUS_KM * np.pi / 180.0
    return dlat * km_per_deg, dlon * km_per_deg * float(np.cos(np.radians(np.mean(lat))))


def projected_spacing_km(x_m: ArrayLike, y_m: ArrayLike) -> tuple[float, float]:
    """Pixel size of a regular projected grid (x easting, y northing in metres), km.

    Parameters
    ----------
    x_m : array_like, shape (nx,), m, regular
    y_m : array_like, shape (ny,), m, regular

    Returns
    -------
    dy_km, dx_km : float
        Grid spacing; the map scale of UTM (0.9996-1.0010 over a zone) is ignored.
    """
    x, y = _f64(x_m), _f64(y_m)
    dx = abs(float(np.mean(np.diff(x)))) if x.size > 1 else 0.0
    dy = abs(float(np.mean(np.diff(y)))) if y.size > 1 else 0.0
    return dy / 1000.0, dx / 1000.0


# --------------------------------------------------------------------------------------------
# station windows and residuals
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StationSamples:
    """InSAR samples around each GNSS station (:func:`sample_station_windows`).

    Attributes
    ----------
    median : ndarray, shape (n_station,), mm/yr; NaN where fewer than ``min_pixels``
    sigma : ndarray, shape (n_station,), mm/yr
        Standard error of the window median: ``1.4826 * MAD / sqrt(n_pixels)``.
    n_pixels : ndarray, shape (n_station,), int
    max_gradient : ndarray, shape (n_station,), mm/yr/km
        Velocity gradient magnitude within the window: the least-squares plane through the
        window's pixels (spikes beyond 5 robust sigmas trimmed), so pixel noise does not
        masquerade as a gradient (steep-bowl test, docs/science.md 3.4).
    valid : ndarray, shape (n_station,), bool
    """

    median: NDArray[np.float64]
    sigma: NDArray[np.float64]
    n_pixels: NDArray[np.int64]
    max_gradient: NDArray[np.float64]
    valid: NDArray[np.bool_]


def station_window_slices(
    lon_deg: ArrayLike,
    lat_deg: ArrayLike,
    station_lon: ArrayLike,
    station_lat: ArrayLike,
    radius_m: float = 200.0,
    *,
    projected: bool = False,
) -> list[tuple[slice, slice] | None]:
    """Index boxes (one pixel wider than the window) around each station.

    A stage can cut these boxes out of a lazy array, compute only them, and pass each box with
    its coordinates to :func:`sample_station_windows`.

    Parameters
    ----------
    lon_deg : array_like, shape (nx,), degrees, monotonic
    lat_deg : array_like, shape (ny,), degrees, monotonic (either direction)
    station_lon, station_lat : array_like, shape (n_station,), degrees
    radius_m : float, m
    projected : bool
        The grid and the stations are in projected metres (x easting, y northing) instead of
        degrees (``lon_deg`` then holds x, ``lat_deg`` y, and the stations their x, y).

    Returns
    -------
    list of (slice_y, slice_x) or None (station off the grid)
    """
    lon, lat = _f64(lon_deg), _f64(lat_deg)
    slon, slat = _f64(station_lon).ravel(), _f64(station_lat).ravel()
    dy_km, dx_km = projected_spacing_km(lon, lat) if projected else grid_spacing_km(lon, lat)
    out: list[tuple[slice, slice] | None] = []
    for lo, la in zip(slon, slat, strict=True):
        iy = int(np.argmin(np.abs(lat - la)))
        ix = int(np.argmin(np.abs(lon - lo)))
        if abs(lat[iy] - la) > abs(lat[1] - lat[0]) or abs(lon[ix] - lo) > abs(lon[1] - lon[0]):
            out.append(None)
            continue
        ry = int(np.ceil(radius_m / 1000.0 / max(dy_km, 1e-12))) + 1
        rx = int(np.ceil(radius_m / 1000.0 / max(dx_km, 1e-12))) + 1
        out.append(
            (
                slice(max(iy - ry, 0), min(iy + ry + 1, lat.size)),
                slice(max(ix - rx, 0), min(ix + rx + 1, lon.size)),
            )
        )
    return out


def _window_gradient(
    vals: NDArray[np.float64],
    x_km: NDArray[np.float64],
    y_km: NDArray[np.float64],
    median: float,
    mad: float,
) -> float:
    """Magnitude of the LS-plane gradient of the window pixels (spikes trimmed), mm/yr/km."""
    trim = (
        np.abs(vals - median) <= 5.0 * MAD_TO_SIGMA * mad if mad > 0 else np.ones(vals.size, bool)
    )
    if trim.sum() < 3:
        return float("nan")
    design = np.column_stack([np.ones(int(trim.sum())), x_km[trim], y_km[trim]])
    coef, _, rank, _ = np.linalg.lstsq(design, vals[trim], rcond=None)
    return float(np.hypot(coef[1], coef[2])) if rank == 3 else float("nan")


def sample_station_windows(
    velocity: ArrayLike,
    lon_deg: ArrayLike,
    lat_deg: ArrayLike,
    station_lon: ArrayLike,
    station_lat: ArrayLike,
    *,
    radius_m: float = 200.0,
    min_pixels: int = 5,
    quality: ArrayLike | None = None,
    min_quality: float = 0.7,
    projected: bool = False,
) -> StationSamples:
    """Robust median of valid pixels within ``radius_m`` of each station (docs/science.md 3.2 step 2).

    Parameters
    ----------
    velocity : array_like, shape (ny, nx), mm/yr, NaN = no data
    lon_deg : array_like, shape (nx,), degrees, cell centres
    lat_deg : array_like, shape (ny,), degrees, cell centres
    station_lon, station_lat : array_like, shape (n_station,), degrees
    radius_m : float
        Window radius, m (default 200, range 50-500), great-circle distance on the sphere.
    min_pixels : int
        Fewer valid pixels in the window -> NaN median and ``valid = False``.
    quality : array_like, shape (ny, nx), optional
        Temporal coherence; pixels below ``min_quality`` are ignored.
    min_quality : float
    projected : bool
        The grid and the stations are in projected metres (``lon_deg`` holds x easting,
        ``lat_deg`` y northing, the stations their x, y): distances are planar, in the
        projection's metres.

    Returns
    -------
    StationSamples
    """
    vel = _f64(velocity)
    lon, lat = _f64(lon_deg), _f64(lat_deg)
    if vel.shape != (lat.size, lon.size):
        raise DataError(
            f"velocity grid shape {vel.shape} does not match (lat, lon) = ({lat.size}, "
            f"{lon.size}); pass 1-D cell-centre coordinates of the same grid"
        )
    ok = np.isfinite(vel)
    if quality is not None:
        ok &= _f64(quality) >= min_quality
    slon, slat = _f64(station_lon).ravel(), _f64(station_lat).ravel()
    n = slon.size
    med = np.full(n, np.nan)
    sig = np.full(n, np.nan)
    npix = np.zeros(n, dtype=np.int64)
    grad = np.full(n, np.nan)
    boxes = station_window_slices(lon, lat, slon, slat, radius_m, projected=projected)
    for i, box in enumerate(boxes):
        if box is None:
            continue
        sy, sx = box
        sub_lon, sub_lat = lon[sx], lat[sy]
        if projected:
            x_km, y_km = np.broadcast_arrays(
                (sub_lon[None, :] - slon[i]) / 1000.0, (sub_lat[:, None] - slat[i]) / 1000.0
            )
        else:
            x_km, y_km = local_coordinates_km(sub_lon[None, :], sub_lat[:, None], slon[i], slat[i])
        inside = np.hypot(x_km, y_km) <= radius_m / 1000.0
        sel = inside & ok[sy, sx]
        vals = vel[sy, sx][sel]
        npix[i] = vals.size
        if vals.size < min_pixels:
            continue
        m = float(np.median(vals))
        mad = float(np.median(np.abs(vals - m)))
        med[i] = m
        sig[i] = MAD_TO_SIGMA * mad / np.sqrt(vals.size)
        grad[i] = _window_gradient(vals, x_km[sel], y_km[sel], m, mad)
    valid = np.isfinite(med)
    return StationSamples(med, sig, npix, grad, valid)


def residuals_at_stations(
    gnss_enu: ArrayLike,
    gnss_sigma_enu: ArrayLike,
    unit_vector: ArrayLike,
    insar_los: ArrayLike,
    insar_sigma: ArrayLike,
    *,
    epoch_mismatch: ArrayLike | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """InSAR-minus-GNSS residuals ``r = u . v_GNSS - v_InSAR`` and their sigma (docs/science.md 3.2).

    Both inputs must be in the same (Eurasia-fixed) frame. The correction surface fitted to
    ``r`` is *added* to InSAR: ``v_adj = v_LOS + c``.

    Parameters
    ----------
    gnss_enu : array_like, shape (n, 3), mm/yr
    gnss_sigma_enu : array_like, shape (n, 3), mm/yr
    unit_vector : array_like, shape (n, 3), ENU LOS unit vector at each station
    insar_los : array_like, shape (n,), mm/yr, the window median
    insar_sigma : array_like, shape (n,), mm/yr, standard error of the window median
    epoch_mismatch : array_like of bool, shape (n,), optional
        Stations whose GNSS window does not match the InSAR window: sigma x 2 (docs/science.md 3.4).

    Returns
    -------
    residual : ndarray, shape (n,), mm/yr
    sigma : ndarray, shape (n,), mm/yr, ``sqrt(sum_k u_k^2 s_k^2 + s_window^2)``
    """
    u = _f64(unit_vector)
    v = _f64(gnss_enu)
    s = _f64(gnss_sigma_enu)
    r = np.sum(u * v, axis=-1) - _f64(insar_los)
    sigma = np.sqrt(np.sum((u * s) ** 2, axis=-1) + _f64(insar_sigma) ** 2)
    if epoch_mismatch is not None:
        sigma = np.where(np.asarray(epoch_mismatch, dtype=bool), 2.0 * sigma, sigma)
    return r, sigma


# --------------------------------------------------------------------------------------------
# polynomial surfaces
# --------------------------------------------------------------------------------------------


def polynomial_n_terms(degree: int) -> int:
    """Number of terms of a full 2-D polynomial of ``degree`` (1, 3, 6, 10 for 0-3)."""
    return (degree + 1) * (degree + 2) // 2


def polynomial_design(x: ArrayLike, y: ArrayLike, degree: int) -> NDArray[np.float64]:
    """Design matrix of a full 2-D polynomial.

    Parameters
    ----------
    x, y : array_like, shape (n,), scaled coordinates (ideally in [-1, 1])
    degree : int, 0-3 (any non-negative value works)

    Returns
    -------
    ndarray, shape (n, (degree+1)(degree+2)/2)
        Columns ordered by total degree, then by decreasing power of x: 1, x, y, x^2, xy, y^2, ...
    """
    x, y = _f64(x).ravel(), _f64(y).ravel()
    cols = [x ** (d - j) * y**j for d in range(degree + 1) for j in range(d + 1)]
    return np.stack(cols, axis=-1)


def fit_polynomial(
    x: ArrayLike,
    y: ArrayLike,
    values: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    degree: int = 1,
    ridge: float = 0.0,
) -> NDArray[np.float64]:
    """Weighted ridge least-squares polynomial surface.

    Minimises ``sum_i w_i (v_i - A_i c)^2 + ridge * sum_w * ||c_{1:}||^2`` (the constant term is
    not penalised; the penalty scales with the total weight so ``ridge`` is dimensionless).

    Parameters
    ----------
    x, y : array_like, shape (n,), scaled coordinates
    values : array_like, shape (n,)
    weights : array_like, shape (n,), optional, ``1 / sigma^2``
    degree : int
    ridge : float
        docs/science.md 3.2: 0 for P0/P1, 1e-6 for P2, 1e-3 for P3.

    Returns
    -------
    coefficients : ndarray, shape (n_terms,), ordered as :func:`polynomial_design`
    """
    a = polynomial_design(x, y, degree)
    v = _f64(values).ravel()
    w = np.ones_like(v) if weights is None else _f64(weights).ravel()
    aw = a * w[:, None]
    normal = a.T @ aw
    pen = np.full(a.shape[1], ridge * float(np.sum(w)))
    pen[0] = 0.0
    normal = normal + np.diag(pen)
    rhs = aw.T @ v
    coef, *_ = np.linalg.lstsq(normal, rhs, rcond=None)
    return coef


# --------------------------------------------------------------------------------------------
# outliers
# --------------------------------------------------------------------------------------------


def reject_outliers(
    residual: ArrayLike,
    *,
    x: ArrayLike | None = None,
    y: ArrayLike | None = None,
    weights: ArrayLike | None = None,
    k: float = 3.0,
    max_iter: int = 10,
    detrend_degree: int | None = None,
    min_keep: int = 3,
    sigma_floor: float = 0.0,
    max_gradient: ArrayLike | None = None,
    gradient_max: float = 20.0,
) -> NDArray[np.bool_]:
    """Iterative MAD rejection of GNSS residuals plus the steep-gradient test (docs/science.md 3.4).

    Each iteration fits the trend (the weighted median for degree 0, a weighted polynomial
    otherwise) to the kept stations and rejects every station with
    ``|r - trend| > k * max(1.4826 * MAD, sigma_floor)``; the MAD is that of the kept stations.
    Stops when the kept set no longer changes.

    Parameters
    ----------
    residual : array_like, shape (n,), mm/yr
    x, y : array_like, shape (n,), optional, scaled coordinates (needed for detrending)
    weights : array_like, shape (n,), optional
    k : float
        Default 3.
    max_iter : int
    detrend_degree : int or None
        None: 1 (a plane) when n >= 6 and coordinates are given, else 0.
    min_keep : int
        Never keep fewer stations than this (the most deviant are rejected first).
    sigma_floor : float, mm/yr
        Lower bound of the robust scale, e.g. the typical GNSS sigma, so near-identical
        residuals do not reject good stations.
    max_gradient : array_like, shape (n,), optional, mm/yr/km
        From :class:`StationSamples`; stations above ``gradient_max`` are rejected
        (inside steep bowls the window median is not comparable with the GNSS).
    gradient_max : float, mm/yr/km (default 20)

    Returns
    -------
    keep : ndarray of bool, shape (n,)
    """
    r = _f64(residual).ravel()
    n = r.size
    keep = np.isfinite(r)
    if max_gradient is not None:
        g = _f64(max_gradient).ravel()
        keep &= ~(g > gradient_max)
    has_xy = x is not None and y is not None
    if detrend_degree is None:
        detrend_degree = 1 if (has_xy and n >= 6) else 0
    if detrend_degree > 0 and not has_xy:
        raise DataError("reject_outliers with detrend_degree > 0 needs the x and y coordinates")
    w = np.ones(n) if weights is None else _f64(weights).ravel()
    xs = _f64(x).ravel() if has_xy else np.zeros(n)
    ys = _f64(y).ravel() if has_xy else np.zeros(n)
    for _ in range(max_iter):
        if keep.sum() < max(min_keep, polynomial_n_terms(detrend_degree) + 1):
            break
        if detrend_degree == 0:
            trend = np.full(n, float(np.median(r[keep])))
        else:
            coef = fit_polynomial(
                xs[keep], ys[keep], r[keep], w[keep], degree=detrend_degree, ridge=1e-9
            )
            trend = polynomial_design(xs, ys, detrend_degree) @ coef
        dev = r - trend
        scale = max(
            MAD_TO_SIGMA * float(np.median(np.abs(dev[keep] - np.median(dev[keep])))), sigma_floor
        )
        base = np.isfinite(r)
        if max_gradient is not None:
            base &= ~(_f64(max_gradient).ravel() > gradient_max)
        new_keep = base & (np.abs(dev) <= k * scale) if scale > 0 else keep.copy()
        if new_keep.sum() < min_keep:
            order = np.argsort(np.where(base, np.abs(dev), np.inf))
            new_keep = np.zeros(n, dtype=bool)
            new_keep[order[: min(min_keep, int(base.sum()))]] = True
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    return keep


# --------------------------------------------------------------------------------------------
# smoothing and the convex hull
# --------------------------------------------------------------------------------------------


def gaussian_smooth_km(
    surface: ArrayLike,
    sigma_km: float,
    *,
    dy_km: float | None = None,
    dx_km: float | None = None,
    lon_deg: ArrayLike | None = None,
    lat_deg: ArrayLike | None = None,
    truncate: float = 4.0,
) -> NDArray[np.float64]:
    """Gaussian low-pass of a gridded surface with sigma in km, NaN-aware.

    Sigma is converted to pixels per axis (``sigma_km / dy_km``, ``sigma_km / dx_km``); give
    either the pixel sizes or the 1-D lon/lat coordinates of a regular grid. NaNs are handled by
    normalised convolution (smooth(v * m) / smooth(m)) and stay NaN. Edges use ``mode='nearest'``.

    Parameters
    ----------
    surface : array_like, shape (ny, nx)
    sigma_km : float, km (docs/science.md 3.2: 20 km for tree models)
    dy_km, dx_km : float, optional, pixel size in km
    lon_deg, lat_deg : array_like, shape (nx,) and (ny,), optional, degrees
    truncate : float, kernel half-width in sigmas

    Returns
    -------
    ndarray, shape (ny, nx)
    """
    z = _f64(surface)
    if dy_km is None or dx_km is None:
        if lon_deg is None or lat_deg is None:
            raise DataError("gaussian_smooth_km needs dy_km and dx_km or the lon/lat coordinates")
        dy_km, dx_km = grid_spacing_km(lon_deg, lat_deg)
    sig_px = (sigma_km / dy_km, sigma_km / dx_km)
    mask = np.isfinite(z)
    if mask.all():
        return ndi.gaussian_filter(z, sig_px, mode="nearest", truncate=truncate)
    num = ndi.gaussian_filter(np.where(mask, z, 0.0), sig_px, mode="nearest", truncate=truncate)
    den = ndi.gaussian_filter(mask.astype(np.float64), sig_px, mode="nearest", truncate=truncate)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    return np.where(mask, out, np.nan)


def gaussian_smooth_matrix(
    n: int, sigma_km: float, step_km: float, *, truncate: float = 4.0
) -> NDArray[np.float64]:
    """The Gaussian low-pass of :func:`gaussian_smooth_km` along one axis, as a matrix.

    For a finite surface ``z`` of shape (ny, nx) on a grid of ``dy_km`` by ``dx_km`` cells,
    ``gaussian_smooth_km(z, s, dy_km=dy_km, dx_km=dx_km)`` equals ``G_y @ z @ G_x.T`` (to
    rounding) with ``G_y = gaussian_smooth_matrix(ny, s, dy_km)`` and
    ``G_x = gaussian_smooth_matrix(nx, s, dx_km)``: the filter is separable and linear, edges
    included (``mode='nearest'`` folds the kernel's tails onto the edge cells). Row ``i`` holds
    the weights of output cell ``i`` (they sum to 1; at most ``2 * radius + 1`` are non-zero,
    ``radius = int(truncate * sigma_km / step_km + 0.5)`` cells).

    Used where a smoothed surface is needed at a few cells only and the surface is a sum of
    boxes (tree models in cross-validation): a box's contribution is then a difference of
    prefix sums of these rows.

    Parameters
    ----------
    n : int, number of cells along the axis
    sigma_km : float, km
    step_km : float, km, cell size along the axis
    truncate : float, kernel half-width in sigmas (as in :func:`gaussian_smooth_km`)

    Returns
    -------
    ndarray, shape (n, n)
    """
    eye = np.eye(int(n), dtype=np.float64)
    return ndi.gaussian_filter1d(eye, sigma_km / step_km, axis=0, mode="nearest", truncate=truncate)


class ConvexHull2D:
    """Convex hull of station coordinates: inside test and nearest boundary point.

    Parameters
    ----------
    x, y : array_like, shape (n,), km

    Notes
    -----
    Fewer than 3 stations, or collinear stations, give a degenerate hull: every point counts as
    extrapolated and :meth:`nearest_boundary` returns the nearest station.
    """

    def __init__(self, x: ArrayLike, y: ArrayLike) -> None:
        pts = np.column_stack([_f64(x).ravel(), _f64(y).ravel()])
        self.points = pts
        self._equations: NDArray[np.float64] | None = None
        self.vertices = pts
        if pts.shape[0] >= 3:
            try:
                hull = ConvexHull(pts)
                self._equations = hull.equations  # (m, 3): outward normal, offset
                self.vertices = pts[hull.vertices]  # counter-clockwise
            except QhullError:
                self._equations = None

    @property
    def degenerate(self) -> bool:
        """True when the stations do not span an area."""
        return self._equations is None

    def contains(self, x: ArrayLike, y: ArrayLike) -> NDArray[np.bool_]:
        """Inside-or-on-boundary test, shape of ``x``."""
        xx, yy = np.broadcast_arrays(_f64(x), _f64(y))
        if self._equations is None:
            return np.zeros(xx.shape, dtype=bool)
        eq = self._equations
        q = np.column_stack([xx.ravel(), yy.ravel()])
        tol = 1e-9 * max(1.0, float(np.abs(self.points).max()))
        return np.all(q @ eq[:, :2].T + eq[:, 2] <= tol, axis=1).reshape(xx.shape)

    def nearest_boundary(
        self, x: ArrayLike, y: ArrayLike
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Nearest point on the hull boundary (on the nearest station if degenerate)."""
        xx, yy = np.broadcast_arrays(_f64(x), _f64(y))
        q = np.column_stack([xx.ravel(), yy.ravel()])
        v = self.vertices
        if self._equations is None:
            d2 = ((q[:, None, :] - v[None, :, :]) ** 2).sum(-1)
            best = v[np.argmin(d2, axis=1)]
            return best[:, 0].reshape(xx.shape), best[:, 1].reshape(xx.shape)
        a = v
        b = np.roll(v, -1, axis=0)
        ab = b - a  # (m, 2)
        out = np.empty_like(q)
        best_d2 = np.full(q.shape[0], np.inf)
        for j in range(a.shape[0]):  # loop over hull edges (few), vectorised over points
            t = ((q - a[j]) @ ab[j]) / max(float(ab[j] @ ab[j]), 1e-300)
            p = a[j] + np.clip(t, 0.0, 1.0)[:, None] * ab[j]
            d2 = ((q - p) ** 2).sum(-1)
            better = d2 < best_d2
            out[better] = p[better]
            best_d2[better] = d2[better]
        return out[:, 0].reshape(xx.shape), out[:, 1].reshape(xx.shape)


# --------------------------------------------------------------------------------------------
# overlap adjustment (docs/science.md 4.3 step 2)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OverlapSamples:
    """Samples of one overlap O_fg on a common grid (docs/science.md 4.3 step 2.1).

    Attributes
    ----------
    frame_a, frame_b : int, frame indices
    x_km, y_km : ndarray, shape (m,), mosaic-local coordinates, km
    v_a, v_b : ndarray, shape (m,), vertical velocity of each frame at the samples, mm/yr
    weight : ndarray, shape (m,), ``1 / (sigma_a^2 + sigma_b^2)``; None means 1
    """

    frame_a: int
    frame_b: int
    x_km: NDArray[np.float64]
    y_km: NDArray[np.float64]
    v_a: NDArray[np.float64]
    v_b: NDArray[np.float64]
    weight: NDArray[np.float64] | None = None


@dataclass(frozen=True)
class GnssTies:
    """GNSS vertical velocities tied to one frame.

    Attributes
    ----------
    frame : int
    x_km, y_km : ndarray, shape (k,), km
    v_frame : ndarray, shape (k,), the frame's vertical velocity at the stations, mm/yr
    v_gnss : ndarray, shape (k,), GNSS vertical velocity (Eurasia-fixed), mm/yr
    sigma : ndarray, shape (k,), mm/yr
    """

    frame: int
    x_km: NDArray[np.float64]
    y_km: NDArray[np.float64]
    v_frame: NDArray[np.float64]
    v_gnss: NDArray[np.float64]
    sigma: NDArray[np.float64]


def _clamped_cubic_knots(lo: float, hi: float, spacing: float) -> NDArray[np.float64]:
    """Knot vector of a cubic B-spline on ``[lo, hi]``: ends repeated four times, the interior
    knots evenly spaced, about ``spacing`` apart (none when the span is under 1.5 spacings)."""
    n_interior = max(int(np.floor((hi - lo) / spacing + 0.5)) - 1, 0)
    inner = lo + (hi - lo) * np.arange(1, n_interior + 1) / (n_interior + 1)
    return np.concatenate([[lo] * 4, inner, [hi] * 4])


@dataclass(frozen=True)
class AlongTrackBasis:
    """Cubic B-spline basis of a frame's along-track (north) coordinate, km.

    Attributes
    ----------
    knots : ndarray, shape (n_basis + 4,)
        Full knot vector (end knots repeated four times), km in the mosaic-local north axis.
    """

    knots: NDArray[np.float64]

    @classmethod
    def over(cls, y_min_km: float, y_max_km: float, spacing_km: float) -> AlongTrackBasis:
        """Knots every ~``spacing_km`` over ``[y_min_km, y_max_km]`` (at least a cubic)."""
        if not spacing_km > 0:
            raise DataError(f"along-track knot spacing must be > 0 km; got {spacing_km}")
        if not y_max_km > y_min_km:
            raise DataError(f"along-track extent must grow northward; got {y_min_km}..{y_max_km}")
        return cls(_clamped_cubic_knots(y_min_km, y_max_km, spacing_km))

    @property
    def n_basis(self) -> int:
        return int(self.knots.size - 4)

    def design(self, y_km: ArrayLike) -> NDArray[np.float64]:
        """Basis values at ``y_km`` (clamped to the extent), shape ``(n, n_basis)``."""
        from scipy.interpolate import BSpline

        y = np.clip(_f64(y_km).ravel(), self.knots[0], self.knots[-1])
        return BSpline.design_matrix(y, self.knots, 3).toarray()


def evaluate_correction(spec: dict[str, object], x_km: ArrayLike, y_km: ArrayLike) -> NDArray:
    """Correction ``k_f`` of one frame from its :meth:`OverlapAdjustment.frame_spec`, mm/yr.

    ``a + b x / L + c y / L`` plus, for the ``along_track`` model, the B-spline
    ``sum_j B_j(y) coef_j``; the result has the broadcast shape of ``x_km`` and ``y_km``.
    """
    x, y = np.broadcast_arrays(_f64(x_km), _f64(y_km))
    L = float(spec["L"])  # type: ignore[arg-type]
    out = float(spec["a"]) + float(spec["b"]) * x / L + float(spec["c"]) * y / L  # type: ignore[arg-type]
    knots = spec.get("knots")
    if knots is not None:
        basis = AlongTrackBasis(_f64(knots))
        out = out + (basis.design(y) @ _f64(spec["coef"])).reshape(y.shape)
    return out


@dataclass(frozen=True)
class OverlapAdjustment:
    """Result of :func:`adjust_overlaps`.

    Attributes
    ----------
    params : ndarray, shape (n_frames, 3)
        (a_f, b_f, c_f) of ``k_f = a_f + b_f * x / L + c_f * y / L`` in mm/yr, ``L = length_scale_km``
        (zeros for ``along_track`` frames, whose correction is in ``splines``).
    models : list of str, 'offset' | 'plane' | 'along_track' | 'fixed' per frame
    length_scale_km : float
    edges : list of dict
        Per overlap: frames, n, rms_before, rms_after (mm/yr), used (False when dropped).
    components : ndarray, shape (n_frames,), int, connected component of each frame
    unconstrained_components : list of int
        Components without GNSS ties; one frame in each was fixed (k = 0).
    splines : dict of int -> (AlongTrackBasis, ndarray)
        For ``along_track`` frames: the basis and its coefficients (mm/yr).
    """

    params: NDArray[np.float64]
    models: list[str]
    length_scale_km: float
    edges: list[dict[str, object]]
    components: NDArray[np.int64]
    unconstrained_components: list[int] = field(default_factory=list)
    splines: dict[int, tuple[AlongTrackBasis, NDArray[np.float64]]] = field(default_factory=dict)

    def frame_spec(self, frame: int) -> dict[str, object]:
        """Plain numbers that :func:`evaluate_correction` turns into ``k_f`` (picklable)."""
        a, b, c = (float(v) for v in self.params[frame])
        spec: dict[str, object] = {"a": a, "b": b, "c": c, "L": self.length_scale_km}
        if frame in self.splines:
            basis, coef = self.splines[frame]
            spec["knots"] = basis.knots.tolist()
            spec["coef"] = coef.tolist()
        return spec

    def correction(self, frame: int, x_km: ArrayLike, y_km: ArrayLike) -> NDArray[np.float64]:
        """Correction ``k_f`` (add it to the frame's vertical velocity), mm/yr, shape of x."""
        return evaluate_correction(self.frame_spec(frame), x_km, y_km)

    def frame_attrs(self, frame: int) -> dict[str, object]:
        """JSON-able record of one frame's correction: model, plane parameters, any spline."""
        out: dict[str, object] = {
            "model": self.models[frame],
            "params_mm_per_yr": self.params[frame].tolist(),
        }
        if frame in self.splines:
            basis, coef = self.splines[frame]
            out["along_track"] = {"knots_km": basis.knots.tolist(), "coef_mm_per_yr": coef.tolist()}
        return out

    def to_attrs(self) -> dict[str, object]:
        """JSON-able summary for product attrs."""
        return {
            "frame_corrections_mm_per_yr": self.params.tolist(),
            "frame_correction_models": list(self.models),
            "correction_length_scale_km": self.length_scale_km,
            "along_track": {str(f): self.frame_attrs(f)["along_track"] for f in self.splines},
            "overlap_edges": [dict(e) for e in self.edges],
            "unconstrained_components": list(self.unconstrained_components),
        }


_N_PAR = {"offset": 1, "plane": 3, "fixed": 0}
_MODELS = ("offset", "plane", "along_track")


def adjust_overlaps(
    n_frames: int,
    overlaps: Sequence[OverlapSamples],
    ties: Sequence[GnssTies] = (),
    *,
    models: Sequence[str] | None = None,
    lambda_gnss: float = 1.0,
    damping: float = 1e-6,
    min_samples: int = 100,
    length_scale_km: float = 100.0,
    extents_km: Sequence[tuple[float, float]] | None = None,
    knot_spacing_km: float = 100.0,
    roughness: float = 1.0,
) -> OverlapAdjustment:
    """Per-frame corrections from overlaps and GNSS ties (docs/science.md 4.3 step 2).

    Minimises, with LSQR on a sparse system,
    ``sum_(f,g) sum_q w_q [v_f + k_f - v_g - k_g]^2 + lambda_G sum_i [v_f(x_i) + k_f(x_i) -
    v_GNSS,i]^2 / sigma_i^2 + mu sum_f ||k_f||^2`` (+ a roughness penalty on along-track
    splines).

    Parameters
    ----------
    n_frames : int
    overlaps : sequence of OverlapSamples
        Overlaps with fewer than ``min_samples`` finite samples are dropped from the graph.
    ties : sequence of GnssTies
    models : sequence of str, optional
        Per frame 'offset' (the reference model of docs/science.md 4.3 for frames GNSS-adjusted in Stage 3), 'plane'
        (frames without GNSS), or 'along_track': a cubic B-spline of the along-track (north)
        coordinate with knots every ``knot_spacing_km``, which follows the slowly varying
        residual of a frame's GNSS adjustment along its overlaps (constant across track).
        Default: 'offset' for frames with ties, 'plane' for the others.
    lambda_gnss : float (default 1)
    damping : float, mu (default 1e-6), applied as LSQR ``damp = sqrt(mu)``
    min_samples : int (default 100)
    length_scale_km : float
        Coordinates are divided by this so a, b, c share units (mm/yr).
    extents_km : sequence of (y_min, y_max), optional
        Along-track extent of each frame, km (mosaic-local north); needed for 'along_track'.
    knot_spacing_km : float
        Knot spacing of the along-track splines (default 100 km).
    roughness : float
        Weight of the second differences of consecutive spline coefficients (rows ``sqrt(r)
        (c_(j-1) - 2 c_j + c_(j+1)) = 0``), which carry the spline across stretches without
        overlap samples instead of letting it fall to zero.

    Returns
    -------
    OverlapAdjustment

    Notes
    -----
    A connected component of the overlap graph without any GNSS tie has a free datum: its first
    frame is fixed (k = 0) and the component is reported in ``unconstrained_components``.
    """
    if models is None:
        tied = {t.frame for t in ties if np.isfinite(_f64(t.v_gnss)).any()}
        models = ["offset" if f in tied else "plane" for f in range(n_frames)]
    models = list(models)
    if len(models) != n_frames or any(m not in _MODELS for m in models):
        raise DataError(
            f"models must list one of {_MODELS} for each of {n_frames} frames, got {models}"
        )
    bases: dict[int, AlongTrackBasis] = {}
    if "along_track" in models:
        if extents_km is None or len(extents_km) != n_frames:
            raise DataError(
                "the along_track model needs extents_km: the (south, north) extent in km of "
                f"each of the {n_frames} frames"
            )
        for f, m in enumerate(models):
            if m == "along_track":
                bases[f] = AlongTrackBasis.over(*extents_km[f], knot_spacing_km)
    L = float(length_scale_km)

    # graph of usable overlaps
    usable: list[tuple[OverlapSamples, NDArray[np.bool_]]] = []
    edges: list[dict[str, object]] = []
    for ov in overlaps:
        fin = np.isfinite(_f64(ov.v_a)) & np.isfinite(_f64(ov.v_b))
        w = np.ones(fin.size) if ov.weight is None else _f64(ov.weight)
        fin &= np.isfinite(w) & (w > 0)
        diff = _f64(ov.v_a)[fin] - _f64(ov.v_b)[fin]
        used = int(fin.sum()) >= min_samples
        edges.append(
            {
                "frames": [int(ov.frame_a), int(ov.frame_b)],
                "n": int(fin.sum()),
                "rms_before": float(np.sqrt(np.mean(diff**2))) if diff.size else None,
                "used": bool(used),
            }
        )
        if used:
            usable.append((ov, fin))
    rows = [ov.frame_a for ov, _ in usable]
    cols = [ov.frame_b for ov, _ in usable]
    adj = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_frames, n_frames))
    n_comp, comp = connected_components(adj, directed=False)
    tied_frames = {t.frame for t in ties if np.isfinite(_f64(t.v_gnss)).any()}
    unconstrained = []
    for c in range(n_comp):
        members = np.flatnonzero(comp == c)
        if not tied_frames.intersection(members.tolist()):
            unconstrained.append(int(c))
            models[int(members[0])] = "fixed"
            bases.pop(int(members[0]), None)

    # parameter layout
    n_of = [bases[f].n_basis if m == "along_track" else _N_PAR[m] for f, m in enumerate(models)]
    offsets = np.cumsum([0, *n_of])
    n_par = int(offsets[-1])

    def frame_block(f: int, x: NDArray[np.float64], y: NDArray[np.float64]):
        m = models[f]
        if m == "fixed":
            return np.empty((x.size, 0)), []
        cols_f = list(range(offsets[f], offsets[f + 1]))
        if m == "offset":
            return np.ones((x.size, 1)), cols_f
        if m == "along_track":
            return bases[f].design(y), cols_f
        return np.column_stack([np.ones(x.size), x / L, y / L]), cols_f

    data: list[NDArray[np.float64]] = []
    ri: list[NDArray[np.int64]] = []
    ci: list[NDArray[np.int64]] = []
    rhs: list[NDArray[np.float64]] = []
    row0 = 0

    def add(block: NDArray[np.float64], cols_: list[int], sw: NDArray[np.float64], r0: int) -> None:
        if not cols_:
            return
        m = block.shape[0]
        rr = np.repeat(np.arange(r0, r0 + m), len(cols_))
        cc = np.tile(np.asarray(cols_), m)
        data.append((block * sw[:, None]).ravel())
        ri.append(rr)
        ci.append(cc)

    for ov, fin in usable:
        x, y = _f64(ov.x_km)[fin], _f64(ov.y_km)[fin]
        w = np.ones(fin.size)[fin] if ov.weight is None else _f64(ov.weight)[fin]
        sw = np.sqrt(w)
        ba, ca = frame_block(ov.frame_a, x, y)
        bb, cb = frame_block(ov.frame_b, x, y)
        add(ba, ca, sw, row0)
        add(-bb, cb, sw, row0)
        rhs.append(sw * (_f64(ov.v_b)[fin] - _f64(ov.v_a)[fin]))
        row0 += x.size
    for t in ties:
        vg, vf = _f64(t.v_gnss), _f64(t.v_frame)
        fin = np.isfinite(vg) & np.isfinite(vf)
        if not fin.any() or models[t.frame] == "fixed":
            continue
        x, y = _f64(t.x_km)[fin], _f64(t.y_km)[fin]
        sw = np.sqrt(lambda_gnss) / _f64(t.sigma)[fin]
        b, c = frame_block(t.frame, x, y)
        add(b, c, sw, row0)
        rhs.append(sw * (vg[fin] - vf[fin]))
        row0 += x.size
    for f, basis in bases.items():
        n_b = basis.n_basis
        if n_b < 3 or roughness <= 0:
            continue
        second = np.zeros((n_b - 2, n_b))
        idx = np.arange(n_b - 2)
        second[idx, idx], second[idx, idx + 1], second[idx, idx + 2] = 1.0, -2.0, 1.0
        add(
            second,
            list(range(offsets[f], offsets[f + 1])),
            np.full(n_b - 2, np.sqrt(roughness)),
            row0,
        )
        rhs.append(np.zeros(n_b - 2))
        row0 += n_b - 2

    params = np.zeros((n_frames, 3))
    splines: dict[int, tuple[AlongTrackBasis, NDArray[np.float64]]] = {}
    if n_par > 0 and row0 > 0:
        a_mat = sp.csr_matrix(
            (
                np.concatenate(data) if data else np.empty(0),
                (
                    np.concatenate(ri) if ri else np.empty(0, int),
                    np.concatenate(ci) if ci else np.empty(0, int),
                ),
            ),
            shape=(row0, n_par),
        )
        sol = lsqr(a_mat, np.concatenate(rhs), damp=np.sqrt(damping), atol=1e-12, btol=1e-12)[0]
        for f, m in enumerate(models):
            p = sol[offsets[f] : offsets[f + 1]]
            if m == "offset":
                params[f, 0] = p[0]
            elif m == "plane":
                params[f] = p
            elif m == "along_track":
                splines[f] = (bases[f], p.copy())
    else:
        splines = {f: (basis, np.zeros(basis.n_basis)) for f, basis in bases.items()}
    result = OverlapAdjustment(
        params, models, L, edges, comp.astype(np.int64), unconstrained, splines
    )
    for e, ov in zip(edges, overlaps, strict=True):
        x, y = _f64(ov.x_km), _f64(ov.y_km)
        d = (_f64(ov.v_a) + result.correction(ov.frame_a, x, y)) - (
            _f64(ov.v_b) + result.correction(ov.frame_b, x, y)
        )
        d = d[np.isfinite(d)]
        e["rms_after"] = float(np.sqrt(np.mean(d**2))) if d.size else None
    return result


# --------------------------------------------------------------------------------------------
# blending
# --------------------------------------------------------------------------------------------


def feather_weights(
    footprint: ArrayLike,
    *,
    dy_km: float,
    dx_km: float,
    cap_km: float = 10.0,
    edge_at_border: bool = False,
) -> NDArray[np.float64]:
    """Feather weight = distance to the frame edge, capped, km (docs/science.md 4.3 step 3).

    Parameters
    ----------
    footprint : array_like of bool, shape (ny, nx)
        The frame's footprint on the output grid (filled; holes of decorrelated pixels should not
        be cut out, or the feather would dip around them).
    dy_km, dx_km : float, pixel size, km
    cap_km : float (default 10)
    edge_at_border : bool
        Count the array border as a frame edge (False: a frame touching the border is not
        feathered there, e.g. at the mosaic boundary).

    Returns
    -------
    ndarray, shape (ny, nx), km in [0, cap_km]; 0 outside the footprint

    Notes
    -----
    Exact Euclidean distance (``scipy.ndimage.distance_transform_edt`` with per-axis sampling).
    A blockwise stage gets identical values with an overlap depth of
    ``ceil(cap_km / pixel size) + 1`` pixels (``dask.array.map_overlap``).
    """
    fp = np.asarray(footprint, dtype=bool)
    if edge_at_border:
        fp_p = np.pad(fp, 1, constant_values=False)
        dist = ndi.distance_transform_edt(fp_p, sampling=(dy_km, dx_km))[1:-1, 1:-1]
    else:
        dist = ndi.distance_transform_edt(fp, sampling=(dy_km, dx_km))
    # distance_transform_edt measures to the nearest False cell centre; the edge is half a pixel
    # closer, so subtract half a pixel on the pixel's own axis scale (keeps inside values > 0).
    dist = np.where(fp, np.maximum(dist - 0.5 * min(dy_km, dx_km), 0.5 * min(dy_km, dx_km)), 0.0)
    return np.minimum(dist, cap_km)


def blend_frames(
    values: ArrayLike,
    feather: ArrayLike,
    sigma: ArrayLike,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]:
    """Weighted blending ``v = sum_f W_f v_f / sum_f W_f``, ``W_f = feather_f / sigma_f^2``.

    Parameters
    ----------
    values : array_like, shape (n_frames, ...), mm/yr (or mm), NaN = no data
    feather : array_like, shape (n_frames, ...), from :func:`feather_weights`
    sigma : array_like, broadcastable to values, mm/yr, per-frame (or per-pixel) uncertainty

    Returns
    -------
    blended : ndarray, shape (...), NaN where no frame has data
    sigma_blended : ndarray, shape (...), ``sqrt(sum W^2 s^2) / sum W`` (independent frames)
    n_frames : ndarray of int, shape (...), frames contributing
    """
    v = _f64(values)
    s = np.broadcast_to(_f64(sigma), v.shape)
    fw = np.broadcast_to(_f64(feather), v.shape)
    ok = np.isfinite(v) & np.isfinite(s) & (s > 0) & (fw > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(ok, fw / s**2, 0.0)
    wsum = w.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        blended = np.where(wsum > 0, (w * np.where(ok, v, 0.0)).sum(0) / wsum, np.nan)
        sig = np.where(wsum > 0, np.sqrt((w**2 * np.where(ok, s, 0.0) ** 2).sum(0)) / wsum, np.nan)
    return blended, sig, ok.sum(axis=0).astype(np.int64)


def resample_surface(
    surface: ArrayLike,
    lon_src: ArrayLike,
    lat_src: ArrayLike,
    lon_out: ArrayLike,
    lat_out: ArrayLike,
) -> NDArray[np.float64]:
    """Bilinear resampling of a smooth coarse surface to (a block of) the product grid.

    For applying a correction surface computed small on the client (e.g. on a 0.01 deg grid with
    :meth:`~ncp_subsidence.models.selection.FittedCorrection.predict_grid`) blockwise: each output
    block depends only on its own coordinates, so blocks are independent. Points outside the
    source grid take the nearest edge value.

    Parameters
    ----------
    surface : array_like, shape (ny_src, nx_src)
    lon_src : array_like, shape (nx_src,), degrees, monotonic
    lat_src : array_like, shape (ny_src,), degrees, monotonic (either direction)
    lon_out : array_like, shape (nx,), degrees
    lat_out : array_like, shape (ny,), degrees

    Returns
    -------
    ndarray, shape (ny, nx)
    """
    z = _f64(surface)
    lon_s, lat_s = _f64(lon_src), _f64(lat_src)
    if lon_s[0] > lon_s[-1]:
        lon_s, z = lon_s[::-1], z[:, ::-1]
    if lat_s[0] > lat_s[-1]:
        lat_s, z = lat_s[::-1], z[::-1, :]
    lo = np.clip(_f64(lon_out), lon_s[0], lon_s[-1])
    la = np.clip(_f64(lat_out), lat_s[0], lat_s[-1])
    ix = np.clip(np.searchsorted(lon_s, lo) - 1, 0, lon_s.size - 2)
    iy = np.clip(np.searchsorted(lat_s, la) - 1, 0, lat_s.size - 2)
    fx = (lo - lon_s[ix]) / (lon_s[ix + 1] - lon_s[ix])
    fy = (la - lat_s[iy]) / (lat_s[iy + 1] - lat_s[iy])
    fx, fy = fx[None, :], fy[:, None]
    iy2, ix2 = iy[:, None], ix[None, :]
    return (
        z[iy2, ix2] * (1 - fy) * (1 - fx)
        + z[iy2, ix2 + 1] * (1 - fy) * fx
        + z[iy2 + 1, ix2] * fy * (1 - fx)
        + z[iy2 + 1, ix2 + 1] * fy * fx
    )


def bilinear_sample(
    values: ArrayLike,
    y_src: ArrayLike,
    x_src: ArrayLike,
    y_points: ArrayLike,
    x_points: ArrayLike,
) -> NDArray[np.float64]:
    """Bilinear interpolation of a regular cell-registered grid at scattered points.

    For resampling a frame on its own grid (e.g. UTM metres) onto the product grid: the product
    cells' centres, transformed to the frame's coordinates, are the points. Same rules as a
    regular-to-regular regrid: points more than half a source cell outside the grid are NaN;
    inside the outer half cell the edge value is held; NaN inputs propagate to the outputs that
    use them.

    Parameters
    ----------
    values : array_like, shape (..., ny, nx)
    y_src : array_like, shape (ny,), monotonic (either direction), regular
    x_src : array_like, shape (nx,), monotonic (either direction), regular
    y_points, x_points : array_like, same shape ``P`` (any), the points' source coordinates

    Returns
    -------
    ndarray, shape (..., *P), float64
    """
    z = _f64(values)
    ys, xs = _f64(y_src), _f64(x_src)
    yp, xp = np.broadcast_arrays(_f64(y_points), _f64(x_points))
    if ys.size > 1 and ys[0] > ys[-1]:
        ys, z = ys[::-1], z[..., ::-1, :]
    if xs.size > 1 and xs[0] > xs[-1]:
        xs, z = xs[::-1], z[..., :, ::-1]
    out_shape = (*z.shape[:-2], *yp.shape)
    if ys.size < 2 or xs.size < 2:
        return np.full(out_shape, np.nan)
    hy, hx = abs(ys[1] - ys[0]) / 2, abs(xs[1] - xs[0]) / 2
    outside = (yp < ys[0] - hy) | (yp > ys[-1] + hy) | (xp < xs[0] - hx) | (xp > xs[-1] + hx)
    outside |= ~(np.isfinite(yp) & np.isfinite(xp))
    yc = np.clip(np.nan_to_num(yp, nan=ys[0]), ys[0], ys[-1])
    xc = np.clip(np.nan_to_num(xp, nan=xs[0]), xs[0], xs[-1])
    iy = np.clip(np.searchsorted(ys, yc) - 1, 0, ys.size - 2)
    ix = np.clip(np.searchsorted(xs, xc) - 1, 0, xs.size - 2)
    fy = (yc - ys[iy]) / (ys[iy + 1] - ys[iy])
    fx = (xc - xs[ix]) / (xs[ix + 1] - xs[ix])
    out = (
        z[..., iy, ix] * (1 - fy) * (1 - fx)
        + z[..., iy, ix + 1] * (1 - fy) * fx
        + z[..., iy + 1, ix] * fy * (1 - fx)
        + z[..., iy + 1, ix + 1] * fy * fx
    )
    out[..., outside] = np.nan
    return out


def resample_to_epochs(
    series: ArrayLike,
    t: ArrayLike,
    t_out: ArrayLike,
    *,
    max_extrapolation: float | None = None,
) -> NDArray[np.float64]:
    """Linear interpolation of time series to new epochs, time axis last (docs/science.md 4.3).

    Parameters
    ----------
    series : array_like, shape (..., n_time), mm
    t : array_like, shape (n_time,), decimal years, increasing
    t_out : array_like, shape (n_out,), decimal years (e.g. mid-month dates)
    max_extrapolation : float or None, years
        Epochs further than this outside [t[0], t[-1]] are NaN; inside that margin the end
        values are held. None: the median sampling interval (one revisit).

    Returns
    -------
    ndarray, shape (..., n_out)
        NaNs in the input propagate to the output intervals that use them.
    """
    y = _f64(series)
    t = _f64(t)
    to = _f64(t_out)
    if max_extrapolation is None:
        max_extrapolation = float(np.median(np.diff(t))) if t.size > 1 else 0.0
    idx = np.clip(np.searchsorted(t, to, side="right") - 1, 0, t.size - 2)
    t0, t1 = t[idx], t[idx + 1]
    frac = np.clip((to - t0) / (t1 - t0), 0.0, 1.0)
    out = y[..., idx] * (1.0 - frac) + y[..., idx + 1] * frac
    outside = (to < t[0] - max_extrapolation) | (to > t[-1] + max_extrapolation)
    out[..., outside] = np.nan
    return out


def smooth_trend_design(t: ArrayLike, knot_spacing: float) -> NDArray[np.float64]:
    """Cubic B-spline basis with knots every ``knot_spacing`` years, shape (n_date, n_basis).

    The basis spans every cubic polynomial (so a constant and a line) and every smooth
    interannual curve with features no closer than about a knot spacing; an annual cycle is
    outside it for spacings of a year or more. Fewer dates than the basis needs fall back to a
    cubic polynomial, and fewer than 5 to a line.

    Parameters
    ----------
    t : array_like, shape (n_date,)
        Decimal years, increasing.
    knot_spacing : float
        Years between interior knots (> 0).
    """
    from scipy.interpolate import BSpline

    tt = _f64(t)
    span = float(tt[-1] - tt[0]) if tt.size else 0.0
    if span > 0:
        knots = _clamped_cubic_knots(float(tt[0]), float(tt[-1]), knot_spacing)
        if tt.size >= knots.size - 4 + 2:  # two more dates than basis functions
            return BSpline.design_matrix(tt, knots, 3).toarray()
    tc = (tt - tt.mean()) / max(span, 1e-9)
    degree = 3 if tt.size >= 5 else 1
    return np.vander(tc, degree + 1, increasing=True)


def common_mode_series(
    displacement: ArrayLike,
    t: ArrayLike,
    *,
    knot_spacing: float = 2.0,
    min_pixels: int = 100,
) -> tuple[NDArray[np.float64], int]:
    """Per-date common mode of a frame's displacement time series (network common-mode filter).

    A time series referenced to one pixel carries that pixel's own noise at every date (mostly its
    turbulent tropospheric delay) into every other pixel of the frame. The common-mode filter
    re-references the date-to-date part of every series to the frame's median pixel instead:
    each pixel's OLS line is removed, the median across pixels per date is the common mode, and
    the common mode's smooth interannual trend (:func:`smooth_trend_design`) is removed from it,
    so what is subtracted from every pixel is the reference's date-to-date and seasonal noise and
    not the median pixel's slow non-linear motion. Each pixel's OLS velocity and its value at the
    first date are unchanged.

    Parameters
    ----------
    displacement : array_like, shape (n_pixel, n_date)
        Displacement time series (mm) of a spatial sample of the frame's pixels, relative to the
        first date. Pixels with a NaN at any date are left out.
    t : array_like, shape (n_date,)
        Acquisition times, decimal years, increasing.
    knot_spacing : float
        Years between the knots of the smooth trend kept in every series (default 2).
    min_pixels : int
        Fewer complete pixels than this give no filter (zeros): a median of a handful of pixels
        is no common mode.

    Returns
    -------
    common_mode : ndarray, shape (n_date,), mm
        Zero at the first date, orthogonal to every cubic polynomial of ``t`` (so zero OLS
        slope); subtract it from every pixel.
    n_used : int
        Complete pixels the median was taken over (0 when below ``min_pixels``).

    Notes
    -----
    The median pixel's own seasonal motion stays in the common mode, as the reference pixel's
    did before: relative series cannot tell it from the atmosphere without GNSS time series.
    Velocities are untouched, so the GNSS adjustment and the mosaic's velocity are unaffected;
    displacements between epochs, annual velocities and the phase of seasonal cycles gain.

    References
    ----------
    Wdowinski, S., Bock, Y., Zhang, J., Fang, P., Genrich, J. (1997). Southern California
    Permanent GPS Geodetic Array: spatial filtering of daily positions for estimating coseismic
    and postseismic displacements. J. Geophys. Res. 102(B8), 18057-18070 (stacking).
    Dong, D. et al. (2006). Spatiotemporal filtering using principal component analysis and
    Karhunen-Loeve expansion approaches for regional GPS network analysis. J. Geophys. Res. 111,
    B03405.
    """
    d = _f64(displacement)
    tt = _f64(t)
    if d.ndim != 2 or d.shape[1] != tt.size:
        raise ValueError(
            f"displacement must be (n_pixel, n_date) with n_date = len(t) = {tt.size}; "
            f"got shape {d.shape}"
        )
    if not knot_spacing > 0:
        raise ValueError(f"knot_spacing must be > 0 years; got {knot_spacing}")
    zero = np.zeros(tt.size)
    if tt.size < 3:
        return zero, 0
    complete = np.isfinite(d).all(axis=1)
    n_used = int(complete.sum())
    if n_used < min_pixels:
        return zero, 0
    tc = tt - tt.mean()
    line = np.column_stack([np.ones_like(tc), tc])
    sample = d[complete]
    residual = sample - (line @ np.linalg.lstsq(line, sample.T, rcond=None)[0]).T
    mode = np.median(residual, axis=0)
    smooth = smooth_trend_design(tt, knot_spacing)
    mode = mode - smooth @ np.linalg.lstsq(smooth, mode, rcond=None)[0]
    return mode - mode[0], n_used


# --------------------------------------------------------------------------------------------
# GNSS position series against InSAR displacement series
# --------------------------------------------------------------------------------------------


def window_means(
    t: ArrayLike,
    values: ArrayLike,
    t_out: ArrayLike,
    half_window: float,
    *,
    min_samples: int = 1,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Mean of the samples within ``half_window`` of each output epoch (NaN samples ignored).

    Aligns a daily GNSS series to SAR acquisition dates: each date gets the mean of the GNSS
    days at most ``half_window`` away (both ends included), which also averages down the
    daily noise (white noise by ``1/sqrt(count)``).

    Parameters
    ----------
    t : array_like, shape (n_sample,)
        Sample times, increasing (any unit; e.g. days).
    values : array_like, shape (n_series, n_sample) or (n_sample,)
        Values (e.g. mm), NaN = no sample.
    t_out : array_like, shape (n_out,)
        Output epochs, same unit as ``t``.
    half_window : float
        Half width of the window, unit of ``t`` (>= 0).
    min_samples : int
        Fewer finite samples in a window give NaN.

    Returns
    -------
    means : ndarray, shape (n_series, n_out) (or (n_out,) for 1-D ``values``)
    counts : ndarray of int64, same shape, finite samples averaged
    """
    tt, to = _f64(t).ravel(), _f64(t_out).ravel()
    v = _f64(values)
    one = v.ndim == 1
    v = np.atleast_2d(v)
    if v.shape[-1] != tt.size:
        raise ValueError(f"values have {v.shape[-1]} samples along the last axis; t has {tt.size}")
    if not half_window >= 0:
        raise ValueError(f"half_window must be >= 0; got {half_window}")
    if tt.size > 1 and np.any(np.diff(tt) <= 0):
        raise ValueError("t must be strictly increasing")
    finite = np.isfinite(v)
    zeros = np.zeros((v.shape[0], 1))
    csum = np.concatenate([zeros, np.cumsum(np.where(finite, v, 0.0), axis=1)], axis=1)
    ccount = np.concatenate([zeros, np.cumsum(finite, axis=1)], axis=1)
    lo = np.searchsorted(tt, to - half_window, side="left")
    hi = np.searchsorted(tt, to + half_window, side="right")
    counts = (ccount[:, hi] - ccount[:, lo]).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (csum[:, hi] - csum[:, lo]) / counts
    means[counts < max(min_samples, 1)] = np.nan
    return (means[0], counts[0]) if one else (means, counts)


def station_window_series(
    cube: ArrayLike,
    lon_deg: ArrayLike,
    lat_deg: ArrayLike,
    station_lon: float,
    station_lat: float,
    *,
    radius_m: float,
    min_pixels: int = 5,
    quality: ArrayLike | None = None,
    min_quality: float = 0.7,
    projected: bool = False,
) -> NDArray[np.float64]:
    """Per-date median of the pixels within ``radius_m`` of one station (its InSAR series).

    The window is the one :func:`sample_station_windows` takes for velocities: pixels within
    ``radius_m`` of the station (great-circle, or planar on a projected grid) whose quality is
    at least ``min_quality``.

    Parameters
    ----------
    cube : array_like, shape (n_time, ny, nx)
        Displacement (mm) on a box of the grid around the station (e.g. one of
        :func:`station_window_slices`), NaN = no data.
    lon_deg, lat_deg : array_like, shapes (nx,), (ny,)
        Cell centres of the box: degrees, or metres with ``projected``.
    station_lon, station_lat : float
        The station, degrees (metres with ``projected``).
    radius_m : float
    min_pixels : int
        A date with fewer finite window pixels is NaN.
    quality : array_like, shape (ny, nx), optional
        Temporal coherence of the box.
    min_quality : float
    projected : bool

    Returns
    -------
    ndarray, shape (n_time,), mm
    """
    d = _f64(cube)
    lon, lat = _f64(lon_deg), _f64(lat_deg)
    if d.ndim != 3 or d.shape[1:] != (lat.size, lon.size):
        raise ValueError(
            f"cube shape {d.shape} does not match (n_time, {lat.size}, {lon.size}) of the box"
        )
    if projected:
        x_km, y_km = np.broadcast_arrays(
            (lon[None, :] - station_lon) / 1000.0, (lat[:, None] - station_lat) / 1000.0
        )
    else:
        x_km, y_km = local_coordinates_km(lon[None, :], lat[:, None], station_lon, station_lat)
    inside = np.hypot(x_km, y_km) <= radius_m / 1000.0
    if quality is not None:
        inside &= _f64(quality) >= min_quality
    pixels = d[:, inside]  # (n_time, n_pixel)
    out = np.full(d.shape[0], np.nan)
    enough = np.isfinite(pixels).sum(axis=1) >= max(min_pixels, 1)
    if enough.any():
        out[enough] = np.nanmedian(pixels[enough], axis=1)
    return out


@dataclass
class SeriesComparison:
    """Two sets of series compared over their common dates (arrays (n_station, n_time), mm).

    Attributes
    ----------
    first, second : ndarray
        Each series less its mean over the dates both have (NaN elsewhere).
    rmse : ndarray, shape (n_station,), mm
        RMS of ``first - second`` over the common dates; NaN with fewer than ``min_common``.
    n_common : ndarray of int64, shape (n_station,)
    """

    first: NDArray[np.float64]
    second: NDArray[np.float64]
    rmse: NDArray[np.float64]
    n_common: NDArray[np.int64]

    def pooled_rmse(self, among: ArrayLike | None = None) -> float:
        """RMS over stations of the per-station RMSE (each station weighs the same), mm; NaN
        when no station has one. ``among``: bool mask of the stations to pool."""
        r = self.rmse if among is None else self.rmse[np.asarray(among, dtype=bool)]
        r = r[np.isfinite(r)]
        return float(np.sqrt(np.mean(r**2))) if r.size else float("nan")


def compare_series(first: ArrayLike, second: ArrayLike, *, min_common: int = 5) -> SeriesComparison:
    """RMSE of two series per station after removing each one's mean over their common dates.

    Series referenced to different epochs (InSAR to its first date, GNSS to its first day)
    differ by a constant; removing each series' mean over the dates both have takes it out
    without favouring one date.

    Parameters
    ----------
    first, second : array_like, shape (n_station, n_time) (or (n_time,)), mm, NaN = no value
    min_common : int
        Stations with fewer common dates get a NaN RMSE.

    Returns
    -------
    SeriesComparison
    """
    a, b = np.atleast_2d(_f64(first)), np.atleast_2d(_f64(second))
    if a.shape != b.shape:
        raise ValueError(f"series shapes differ: {a.shape} vs {b.shape}")
    common = np.isfinite(a) & np.isfinite(b)
    n = common.sum(axis=1).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        ma = np.where(common, a, 0.0).sum(axis=1) / n
        mb = np.where(common, b, 0.0).sum(axis=1) / n
        a0 = np.where(common, a - ma[:, None], np.nan)
        b0 = np.where(common, b - mb[:, None], np.nan)
        rmse = np.sqrt(np.where(common, (a0 - b0) ** 2, 0.0).sum(axis=1) / n)
    rmse[n < max(min_common, 1)] = np.nan
    return SeriesComparison(a0, b0, rmse, n)


# --------------------------------------------------------------------------------------------
# pieces of the adjust and mosaic stages (moved here: plain numpy)
# --------------------------------------------------------------------------------------------


def coarse_axis(v: ArrayLike, spacing: float) -> NDArray[np.float64]:
    """An evenly spaced axis from ``min(v)`` to ``max(v)``, steps at most ``spacing`` (>= 2 points).

    The coarse grid on which the adjust stage predicts the correction before resampling it
    bilinearly onto the frame.
    """
    lo, hi = float(np.min(v)), float(np.max(v))
    n = max(int(np.ceil((hi - lo) / spacing)) + 1, 2)
    return np.linspace(lo, hi, n)


def _finite_or_none(v: float | None) -> float | None:
    return float(v) if v is not None and np.isfinite(v) else None


def holdout_rmse_scores(
    resid_los: ArrayLike,
    gnss_up: ArrayLike,
    insar_los: ArrayLike,
    u_up: ArrayLike,
    correction_los: ArrayLike,
    test: ArrayLike,
) -> dict[str, float | None]:
    """RMSE at the held-out stations before and after the correction, LOS and vertical-only.

    LOS: the residuals ``r = u . v_GNSS,EF - v_EF`` against the correction ``c``; vertical: the
    GNSS up velocity against the InSAR LOS window median divided by ``u_up``, against ``c / u_up``.

    Parameters
    ----------
    resid_los : array_like, shape (n,), mm/yr
    gnss_up : array_like, shape (n,), mm/yr, Eurasia-fixed GNSS up velocity
    insar_los : array_like, shape (n,), mm/yr, window median of the Eurasia-fixed LOS velocity
    u_up : array_like, shape (n,), up component of the LOS unit vector (window median)
    correction_los : array_like, shape (n,), mm/yr, the correction at the stations
    test : array_like of bool, shape (n,), the held-out stations scored

    Returns
    -------
    dict
        ``holdout_rmse_{los,vertical}_{before,after}``, mm/yr; None without a held-out station
        (or where not finite).
    """
    resid, c_st, u_up = np.asarray(resid_los), np.asarray(correction_los), np.asarray(u_up)
    test = np.asarray(test, dtype=bool)
    vertical = np.asarray(gnss_up) - np.asarray(insar_los) / np.where(
        np.isfinite(u_up), u_up, np.nan
    )
    scores: dict[str, float | None] = {}
    for kind, r in (("los", resid), ("vertical", vertical)):
        cr = c_st if kind == "los" else c_st / u_up
        scores[f"holdout_rmse_{kind}_before"] = (
            _finite_or_none(np.sqrt(np.mean(r[test] ** 2))) if test.any() else None
        )
        scores[f"holdout_rmse_{kind}_after"] = (
            _finite_or_none(np.sqrt(np.mean((r[test] - cr[test]) ** 2))) if test.any() else None
        )
    return scores


def overlap_cell_medians(
    lat_px: ArrayLike,
    lon_px: ArrayLike,
    ok: ArrayLike,
    layers: Sequence[ArrayLike],
    *,
    south: float,
    west: float,
    dlat: float,
    dlon: float,
    nlat: int,
    nlon: int,
) -> list[NDArray[np.float64]]:
    """Medians of pixel layers over the cells of a regular lon/lat grid (an overlap's samples).

    Parameters
    ----------
    lat_px, lon_px : array_like, shape (ny, nx) (or broadcastable), degrees of the pixel centres
    ok : array_like of bool, the pixels to use (valid and coherent)
    layers : sequence of array_like, shape (ny, nx), e.g. velocity and its sigma, mm/yr
    south, west : float, degrees, the corner of the cell grid
    dlat, dlon : float, degrees, the cell size
    nlat, nlon : int, cells along each axis

    Returns
    -------
    list of ndarray, shape (nlat * nlon,), one per layer, row-major over the cells; NaN in a cell
    without a usable pixel.
    """
    iy = np.floor((np.asarray(lat_px) - south) / dlat).astype(int)
    ix = np.floor((np.asarray(lon_px) - west) / dlon).astype(int)
    inside = np.asarray(ok, dtype=bool) & (iy >= 0) & (iy < nlat) & (ix >= 0) & (ix < nlon)
    labels = np.where(inside, iy * nlon + ix + 1, 0)
    index = np.arange(1, nlat * nlon + 1)
    count = ndi.sum(inside, labels, index)
    return [
        np.where(count > 0, ndi.median(np.nan_to_num(layer), labels, index), np.nan)
        for layer in layers
    ]


def bilinear_regrid(values, y_src, x_src, y_out, x_out):
    """Bilinear resampling of a cell-registered grid to new cell centres, NaN off the grid.

    Parameters
    ----------
    values : ndarray, shape (..., ny, nx)
    y_src : ndarray, shape (ny,), monotonic (either direction); x_src : shape (nx,), monotonic
    y_out : ndarray, shape (my,); x_out : shape (mx,)

    Returns
    -------
    ndarray, shape (..., my, mx), float64
        Points more than half a source cell outside the source grid are NaN; inside the outer
        half cell the edge value is held. NaN inputs propagate to the outputs that use them.
    """
    z = np.asarray(values, dtype=np.float64)
    ys, xs = np.asarray(y_src, float), np.asarray(x_src, float)
    if ys.size > 1 and ys[0] > ys[-1]:
        ys, z = ys[::-1], z[..., ::-1, :]
    if xs.size > 1 and xs[0] > xs[-1]:
        xs, z = xs[::-1], z[..., :, ::-1]
    out_shape = (*z.shape[:-2], np.size(y_out), np.size(x_out))
    if ys.size < 2 or xs.size < 2:
        return np.full(out_shape, np.nan)
    hy, hx = abs(ys[1] - ys[0]) / 2, abs(xs[1] - xs[0]) / 2
    yo, xo = np.asarray(y_out, float), np.asarray(x_out, float)
    out_y = (yo < ys[0] - hy) | (yo > ys[-1] + hy)
    out_x = (xo < xs[0] - hx) | (xo > xs[-1] + hx)
    yc, xc = np.clip(yo, ys[0], ys[-1]), np.clip(xo, xs[0], xs[-1])
    iy = np.clip(np.searchsorted(ys, yc) - 1, 0, ys.size - 2)
    ix = np.clip(np.searchsorted(xs, xc) - 1, 0, xs.size - 2)
    fy = ((yc - ys[iy]) / (ys[iy + 1] - ys[iy]))[:, None]
    fx = ((xc - xs[ix]) / (xs[ix + 1] - xs[ix]))[None, :]
    iy2, ix2 = iy[:, None], ix[None, :]
    out = (
        z[..., iy2, ix2] * (1 - fy) * (1 - fx)
        + z[..., iy2, ix2 + 1] * (1 - fy) * fx
        + z[..., iy2 + 1, ix2] * fy * (1 - fx)
        + z[..., iy2 + 1, ix2 + 1] * fy * fx
    )
    out[..., out_y, :] = np.nan
    out[..., :, out_x] = np.nan
    return out


def blend_series(series, feathers, sigmas) -> np.ndarray:
    """Blend displacement series (time, lat, lon) of several frames with the velocity weights.

    The same weights as :func:`blend_frames` (feather / sigma^2 where both are valid, and the
    value finite), accumulated frame by frame in float32, so memory stays a few series in size.
    """
    num = np.zeros(series[0].shape, np.float32)
    den = np.zeros(series[0].shape, np.float32)
    for ts, fw, sg in zip(series, feathers, sigmas):
        w = np.where(
            np.isfinite(sg) & (sg > 0) & (fw > 0), fw / np.where(sg > 0, sg, 1.0) ** 2, 0.0
        )
        ok = np.isfinite(ts)
        num += np.where(ok, ts, 0.0).astype(np.float32) * w.astype(np.float32)
        den += ok * w.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, np.nan)
