"""Truth fields of the NCP twin, as pure numpy functions of (lon, lat, time).

Everything here is deterministic given a seed and callable at arbitrary points, so tests can
evaluate the truth wherever a product has a pixel. Units: mm, mm/yr, degrees, decimal years.

Generating model
----------------
GWSA trend (mm/yr), the first driving factor::

    K(x)   = min(1, sum_i w_i exp(-r_i^2 / (2 (2.5 sigma_i)^2)))      groundwater funnels
    R(x)   = exp(-dx^2/(2*210^2) - dy^2/(2*160^2)), dx, dy in km from (116.2 E, 37.9 N)
    depl   = clip(A_K K + A_R R, 0, 1)
    G(x)   = 1.2 - 38.5 * depl                                        (about -37 to +1.2)

Secular vertical rate (mm/yr), built from the factors so the geodetector ranking is known
(GWSA first, population last; GWSA x precipitation is a multiplicative, nonlinear interaction)::

    s      = (1.2 - G) / 38.5                                         in [0, 1]
    Pn     = (P - 430) / 300                                          precipitation, 0..1
    v_sec  = 2.0 - V0 * s**3 * (1.25 - 0.7 Pn) - 4 * building - 6 * fault / (fault + 0.05)
             + 1.5 * tanh(dem / 200)

Population and GDP do not enter ``v_sec`` (their q comes only from spatial coincidence).
Vertical displacement relative to ``T0`` (2014-12-01)::

    d_up(x, t) = v_sec(x) * M(t) + a_s(x) * [S(t - lag(x)/12) - S(T0 - lag(x)/12)]
    M(t)       = int_T0^t m(t') dt',  m piecewise linear through the knots RATE_KNOTS, scaled to
                 mean 1 over [T0, T1]: the plain-wide rate peaks mid-2018 and eases after 2021
    S(t)       = seasonal GWSA shape: +1 January-March, falling to -1 mid-August, recovering by
                 mid-January (drawdown March-August, recovery August-January)
    a_s(x)     = 1.5 + 0.06 |v_sec(x)|                               seasonal amplitude, mm

``vertical_velocity`` (the truth a user compares with) is the OLS slope of ``d_up`` over the
monthly mid-month epochs January 2015 - December 2022 (``truth_velocity_epochs``).

GWSA anomaly (mm, relative to the 2004.000-2009.999 mean, CSR convention)::

    gwsa(x, t) = G(x) * [H(t) - H_B] + A_g(x) * [S(t) - S_B],   A_g = 15 + 0.6 |G|

with ``H`` slope 1 until 2021.0 and recovering (slope -0.8) afterwards, scaled so that its OLS slope
over the months of 2002-2022 is exactly 1 (so ``gwsa_trend`` is the 2002-2022 GWSA trend up to the
small seasonal leakage). TWSA = GWSA + SM + SWE + CW, each term an anomaly on the same baseline.

Plate motion: ITRF2014-PMM Eurasia, omega = (-0.085, -0.531, 0.770) mas/yr (Altamimi et al. 2017).
LOS (docs/science.md 2.2): ``u = (-sin(inc) cos(h), sin(inc) sin(h), cos(inc))`` ground -> satellite.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

__all__ = [
    "BOWLS",
    "CITIES",
    "FLDAS_LAYERS_MM",
    "NCP_BBOX",
    "T0",
    "T1",
    "WAVELENGTH_M",
    "Bowl",
    "FaultLine",
    "SmoothField",
    "TwinTruth",
    "cell_centres",
    "decimal_year",
    "los_unit_vector",
    "monthly_times",
    "ols_slope",
    "plate_motion_enu",
    "seasonal_shape",
]

WAVELENGTH_M = 0.05546576
NCP_BBOX = (113.5, 34.5, 119.5, 40.5)
KM_PER_DEG_LAT = 110.574
KM_PER_DEG_LON_38 = 111.320 * np.cos(np.deg2rad(38.0))
FLDAS_LAYERS_MM = (100.0, 300.0, 600.0, 1000.0)
#: reference epoch of displacements (2014-12-01) and end of the InSAR period, decimal years
T0 = 2014.0 + (335 - 0.5) / 365.0
T1 = 2023.0
RATE_KNOTS = ((T0, 0.75), (2016.5, 1.0), (2018.5, 1.3), (2021.0, 1.05), (T1, 0.5))
MAS_TO_RAD = np.pi / (180.0 * 3.6e6)
ITRF2014_EURASIA_MAS = (-0.085, -0.531, 0.770)
WGS84_A = 6378137.0
WGS84_F = 1.0 / 298.257223563


@dataclass(frozen=True)
class Bowl:
    """A subsidence bowl and its groundwater funnel.

    Parameters
    ----------
    name : str
        Region name (also the city polygon name).
    lon, lat : float
        Bowl centre, degrees.
    weight : float
        Relative depletion intensity (0-1.2).
    sigma_km : float
        Gaussian radius of the bowl, km (the GWSA funnel is 2.5 times wider).
    lag_months : int
        Lag of the seasonal deformation behind GWSA, months.
    """

    name: str
    lon: float
    lat: float
    weight: float
    sigma_km: float
    lag_months: int


BOWLS: tuple[Bowl, ...] = (
    Bowl("beijing_north", 116.62, 40.02, 1.05, 11.0, 0),
    Bowl("beijing_south", 116.35, 39.70, 0.85, 9.0, 0),
    Bowl("tianjin", 116.98, 39.30, 1.05, 13.0, 1),
    Bowl("langfang", 116.62, 39.40, 0.80, 9.0, 1),
    Bowl("cangzhou", 116.70, 38.38, 0.95, 13.0, 1),
    Bowl("hengshui", 115.85, 37.85, 0.90, 14.0, 2),
    Bowl("dezhou", 116.50, 37.52, 0.80, 11.0, 2),
    Bowl("baoding", 115.62, 38.80, 0.75, 10.0, 1),
    Bowl("xingtai_handan", 114.95, 36.95, 0.85, 16.0, 2),
)

#: city cores (name, lon, lat, core population density persons/km2, urban radius km)
CITIES: tuple[tuple[str, float, float, float, float], ...] = (
    ("beijing", 116.40, 39.90, 12000.0, 14.0),
    ("tianjin", 117.20, 39.13, 9000.0, 12.0),
    ("langfang", 116.70, 39.52, 3000.0, 6.0),
    ("cangzhou", 116.84, 38.30, 3500.0, 6.0),
    ("hengshui", 115.67, 37.74, 3000.0, 5.0),
    ("dezhou", 116.36, 37.44, 3000.0, 5.0),
    ("baoding", 115.46, 38.87, 4500.0, 7.0),
    ("xingtai", 114.50, 37.07, 3500.0, 6.0),
    ("handan", 114.49, 36.61, 4000.0, 7.0),
    ("shijiazhuang", 114.51, 38.04, 6000.0, 9.0),
    ("jinan", 117.00, 36.65, 6000.0, 9.0),
)

#: Bohai Sea polygon (lon, lat), pixels inside are water (decorrelated, no land factors)
BOHAI_SEA = (
    (117.75, 38.25),
    (117.62, 38.70),
    (117.80, 39.05),
    (118.30, 39.12),
    (118.90, 39.10),
    (119.60, 39.35),
    (119.60, 37.35),
    (119.00, 37.25),
    (118.55, 37.70),
    (118.05, 38.00),
)


@dataclass(frozen=True)
class FaultLine:
    """A synthetic fault trace.

    Parameters
    ----------
    name : str
        Fault name.
    coords : tuple of (lon, lat)
        Vertices, degrees.
    """

    name: str
    coords: tuple[tuple[float, float], ...]


def decimal_year(times: np.ndarray) -> np.ndarray:
    """Decimal years ``year + (doy - 0.5) / days_in_year`` of datetime64 values.

    Parameters
    ----------
    times : ndarray of datetime64
        Times (any resolution); the time of day is added as a day fraction.

    Returns
    -------
    ndarray of float64
        Decimal years.
    """
    t = np.asarray(times, dtype="datetime64[s]")
    years = t.astype("datetime64[Y]")
    start = years.astype("datetime64[s]")
    next_start = (years + 1).astype("datetime64[s]")
    days_in_year = (next_start - start).astype(np.float64) / 86400.0
    day_of_year = (t - start).astype(np.float64) / 86400.0  # 0-based, with fraction
    # (doy - 0.5) with doy 1-based at noon equals the 0-based fraction at noon
    return years.astype(np.int64) + 1970 + day_of_year / days_in_year


def monthly_times(first: str, last: str) -> np.ndarray:
    """Mid-month datetimes (day 15, 00:00) for every month from ``first`` to ``last``.

    Parameters
    ----------
    first, last : str
        Months as ``"YYYY-MM"``, inclusive.

    Returns
    -------
    ndarray of datetime64[s]
    """
    months = np.arange(np.datetime64(first, "M"), np.datetime64(last, "M") + 1)
    return months.astype("datetime64[D]").astype("datetime64[s]") + np.timedelta64(14, "D")


def ols_slope(t: np.ndarray, y: np.ndarray) -> np.ndarray:
    """OLS slope of ``y`` against ``t`` along the last axis.

    Parameters
    ----------
    t : ndarray, shape (n,)
        Abscissa (decimal years).
    y : ndarray, shape (..., n)
        Values.

    Returns
    -------
    ndarray, shape (...)
        Slope, units of y per unit of t.
    """
    tc = t - t.mean()
    return (y * tc).sum(axis=-1) / (tc * tc).sum()


def cell_centres(bbox: tuple[float, float, float, float], res: float):
    """Cell-centre coordinates of a north-up cell-registered grid.

    Parameters
    ----------
    bbox : (west, south, east, north)
        Outer bounds, degrees; must be multiples of ``res`` apart.
    res : float
        Cell size, degrees.

    Returns
    -------
    lon : ndarray, shape (nx,)
        Increasing longitudes.
    lat : ndarray, shape (ny,)
        Decreasing latitudes (row 0 is north).
    """
    west, south, east, north = bbox
    nx = round((east - west) / res)
    ny = round((north - south) / res)
    lon = west + (np.arange(nx) + 0.5) * res
    lat = north - (np.arange(ny) + 0.5) * res
    return lon, lat


def seasonal_shape(t: np.ndarray) -> np.ndarray:
    """Seasonal GWSA shape, dimensionless in [-1, 1].

    +1 from mid-January to March 1, linear drawdown to -1 on August 15, linear recovery to +1 by
    January 15.

    Parameters
    ----------
    t : ndarray
        Decimal years.

    Returns
    -------
    ndarray
    """
    f = np.mod(t, 1.0)
    xp = np.array([0.0, 0.0375, 0.1625, 0.6208, 1.0375])
    # the recovery from Aug 15 (0.6208) to Jan 15 (1.0375) wraps through January 1
    f0 = -1.0 + 2.0 * (1.0 - 0.6208) / (1.0375 - 0.6208)
    fp = np.array([f0, 1.0, 1.0, -1.0, 1.0])
    return np.interp(f, xp, fp)


def _rate_multiplier_integral(t: np.ndarray) -> np.ndarray:
    """``M(t) = int_T0^t m``, m piecewise linear through RATE_KNOTS, mean 1 on [T0, T1]."""
    kt = np.array([k[0] for k in RATE_KNOTS])
    km = np.array([k[1] for k in RATE_KNOTS])
    seg = 0.5 * (km[1:] + km[:-1]) * np.diff(kt)
    scale = (kt[-1] - kt[0]) / seg.sum()
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.asarray(t, dtype=np.float64)
    tt = np.clip(t, kt[0], kt[-1])
    i = np.clip(np.searchsorted(kt, tt, side="right") - 1, 0, len(kt) - 2)
    dt = tt - kt[i]
    slope = (km[i + 1] - km[i]) / (kt[i + 1] - kt[i])
    val = cum[i] + km[i] * dt + 0.5 * slope * dt * dt
    # linear extrapolation outside the knots with the end rates
    val = val + np.where(t > kt[-1], (t - kt[-1]) * km[-1], 0.0)
    val = val + np.where(t < kt[0], (t - kt[0]) * km[0], 0.0)
    return scale * val


def rate_multiplier(t: np.ndarray) -> np.ndarray:
    """Plain-wide rate multiplier ``m(t)`` (mean 1 over [T0, T1]), dimensionless."""
    kt = np.array([k[0] for k in RATE_KNOTS])
    km = np.array([k[1] for k in RATE_KNOTS])
    seg = 0.5 * (km[1:] + km[:-1]) * np.diff(kt)
    return np.interp(t, kt, km) * (kt[-1] - kt[0]) / seg.sum()


def _gwsa_time(t: np.ndarray) -> np.ndarray:
    """GWSA trend time function ``H(t)``: OLS slope exactly 1 over the months of 2002-2022."""
    t = np.asarray(t, dtype=np.float64)
    raw = np.where(t < 2021.0, t - 2021.0, -0.8 * (t - 2021.0))
    tm = decimal_year(monthly_times("2002-01", "2022-12"))
    rawm = np.where(tm < 2021.0, tm - 2021.0, -0.8 * (tm - 2021.0))
    return raw / ols_slope(tm, rawm)


def plate_motion_enu(lon, lat, omega_mas=ITRF2014_EURASIA_MAS):
    """Plate velocity ``omega x X`` in local ENU, mm/yr.

    Parameters
    ----------
    lon, lat : array_like
        Geodetic coordinates, degrees (height 0 on WGS84).
    omega_mas : tuple of 3 float
        Euler vector (x, y, z), mas/yr. Default ITRF2014-PMM Eurasia.

    Returns
    -------
    ve, vn, vu : ndarray
        mm/yr.

    References
    ----------
    Altamimi Z et al. 2017, GJI 209(3):1906-1912 (ITRF2014-PMM).
    """
    lam = np.deg2rad(np.asarray(lon, dtype=np.float64))
    phi = np.deg2rad(np.asarray(lat, dtype=np.float64))
    e2 = WGS84_F * (2 - WGS84_F)
    n = WGS84_A / np.sqrt(1 - e2 * np.sin(phi) ** 2)
    x = n * np.cos(phi) * np.cos(lam)
    y = n * np.cos(phi) * np.sin(lam)
    z = n * (1 - e2) * np.sin(phi)
    wx, wy, wz = (w * MAS_TO_RAD for w in omega_mas)
    vx = (wy * z - wz * y) * 1e3
    vy = (wz * x - wx * z) * 1e3
    vz = (wx * y - wy * x) * 1e3
    ve = -np.sin(lam) * vx + np.cos(lam) * vy
    vn = -np.sin(phi) * np.cos(lam) * vx - np.sin(phi) * np.sin(lam) * vy + np.cos(phi) * vz
    vu = np.cos(phi) * np.cos(lam) * vx + np.cos(phi) * np.sin(lam) * vy + np.sin(phi) * vz
    return ve, vn, vu


def los_unit_vector(incidence_deg, heading_deg):
    """Ground -> satellite unit vector (E, N, U) of a right-looking SAR (docs/science.md 2.2).

    Parameters
    ----------
    incidence_deg, heading_deg : array_like
        Incidence from the vertical and heading clockwise from north, degrees.

    Returns
    -------
    ue, un, uu : ndarray
    """
    inc = np.deg2rad(np.asarray(incidence_deg, dtype=np.float64))
    h = np.deg2rad(np.asarray(heading_deg, dtype=np.float64))
    return -np.sin(inc) * np.cos(h), np.sin(inc) * np.sin(h), np.cos(inc)


def _xy_km(lon, lat, lon0: float, lat0: float):
    return (np.asarray(lon) - lon0) * KM_PER_DEG_LON_38, (np.asarray(lat) - lat0) * KM_PER_DEG_LAT


@dataclass(frozen=True)
class SmoothField:
    """A smooth random field: a sum of random cosines, callable anywhere.

    Parameters
    ----------
    kx, ky : ndarray, shape (n,)
        Wave numbers, rad/km.
    phase : ndarray, shape (n,)
        Phases, rad.
    amp : ndarray, shape (n,)
        Amplitudes; the field has standard deviation about ``sqrt(sum(amp**2) / 2)``.
    """

    kx: np.ndarray
    ky: np.ndarray
    phase: np.ndarray
    amp: np.ndarray

    @classmethod
    def random(cls, rng: np.random.Generator, length_km: float, std: float, n: int = 24):
        """Draw a field with correlation length about ``length_km`` and std ``std``."""
        k = rng.normal(0.0, 1.0 / length_km, size=(n, 2))
        phase = rng.uniform(0, 2 * np.pi, n)
        amp = np.full(n, std * np.sqrt(2.0 / n))
        return cls(k[:, 0], k[:, 1], phase, amp)

    def __call__(self, lon, lat) -> np.ndarray:
        x, y = _xy_km(lon, lat, 116.5, 37.5)
        x = np.asarray(x, dtype=np.float64)[..., None]
        y = np.asarray(y, dtype=np.float64)[..., None]
        return (self.amp * np.cos(self.kx * x + self.ky * y + self.phase)).sum(axis=-1)


def _point_in_polygon(lon, lat, poly) -> np.ndarray:
    """Even-odd rule, vectorised over points."""
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    inside = np.zeros(np.broadcast(lon, lat).shape, dtype=bool)
    pts = list(poly)
    for (x1, y1), (x2, y2) in zip(pts, pts[1:] + pts[:1]):
        cond = (y1 > lat) != (y2 > lat)
        xint = x1 + (lat - y1) * (x2 - x1) / (y2 - y1 + 1e-300)
        inside ^= cond & (lon < xint)
    return inside


def _seed(seed: int, purpose: str) -> np.random.Generator:
    words = [int(b) for b in purpose.encode()]
    return np.random.default_rng(np.random.SeedSequence([int(seed), *words]))


@dataclass
class TwinTruth:
    """All truth functions of one twin realisation.

    Parameters
    ----------
    seed : int
        Seed; every random draw uses ``SeedSequence([seed, *purpose bytes])``.
    """

    seed: int = 0
    faults: tuple[FaultLine, ...] = field(init=False)

    # calibrated so that G spans about -37..+1.2 mm/yr with a plain mean near -19
    A_K: float = 0.7
    A_R: float = 0.9
    S0: float = 0.55
    V0: float = 98.0

    def __post_init__(self) -> None:
        rng = _seed(self.seed, "fields")
        self._dem_noise = SmoothField.random(rng, 30.0, 4.0)
        self._precip_noise = SmoothField.random(rng, 60.0, 25.0)
        self._ndvi_noise = SmoothField.random(rng, 15.0, 0.05)
        self._et_noise = SmoothField.random(rng, 40.0, 20.0)
        self._pop_noise = SmoothField.random(rng, 8.0, 0.6, n=48)
        self._gdp_noise = SmoothField.random(rng, 10.0, 0.3)
        self._sm_noise = SmoothField.random(rng, 80.0, 0.03)
        towns = rng.uniform([113.8, 34.8], [119.2, 40.2], size=(40, 2))
        self._towns = towns[~_point_in_polygon(towns[:, 0], towns[:, 1], BOHAI_SEA)]
        self.faults = self._make_faults(_seed(self.seed, "faults"))
        pts = []
        for f in self.faults:
            c = np.asarray(f.coords)
            for a, b in itertools.pairwise(c):
                seg_km = np.hypot(*_xy_km(b[0], b[1], a[0], a[1]))
                n = max(int(seg_km / 1.0), 1)
                s = (np.arange(n) + 0.5) / n
                pts.append(
                    np.column_stack(
                        [a[0] + s * (b[0] - a[0]), a[1] + s * (b[1] - a[1]), np.full(n, seg_km / n)]
                    )
                )
        self._fault_pts = np.concatenate(pts)

    # ------------------------------------------------------------------ static geometry
    @staticmethod
    def _make_faults(rng: np.random.Generator) -> tuple[FaultLine, ...]:
        # NE-SW trending faults, like the Cangdong, Xinhe, Taihang piedmont and Xiadian faults
        starts = [
            ("taihang_piedmont", 113.9, 35.0, 40.0),
            ("xinhe", 114.9, 36.6, 35.0),
            ("cangdong", 116.2, 37.4, 30.0),
            ("xiadian", 116.6, 39.2, 45.0),
            ("huanghua", 117.0, 37.6, 35.0),
            ("baxian", 115.9, 38.6, 40.0),
            ("liaocheng_lankao", 115.4, 35.2, 25.0),
            ("ninghe_changli", 117.7, 39.3, 55.0),
        ]
        faults = []
        for name, lon, lat, az in starts:
            coords = [(lon, lat)]
            for _ in range(6):
                az_j = np.deg2rad(az + rng.normal(0, 6))
                step = rng.uniform(0.2, 0.35)
                lon += step * np.sin(az_j) / np.cos(np.deg2rad(lat))
                lat += step * np.cos(az_j)
                coords.append((round(float(lon), 5), round(float(lat), 5)))
            faults.append(
                FaultLine(name, tuple((round(float(a), 5), round(float(b), 5)) for a, b in coords))
            )
        return tuple(faults)

    @staticmethod
    def is_sea(lon, lat) -> np.ndarray:
        """True where (lon, lat) lies in the Bohai Sea."""
        return _point_in_polygon(lon, lat, BOHAI_SEA)

    # ------------------------------------------------------------------ factors
    def depletion(self, lon, lat) -> np.ndarray:
        """Groundwater depletion intensity ``clip(A_K K + A_R R, 0, 1)``, dimensionless."""
        lon = np.asarray(lon, dtype=np.float64)
        lat = np.asarray(lat, dtype=np.float64)
        k = np.zeros(np.broadcast(lon, lat).shape)
        for b in BOWLS:
            x, y = _xy_km(lon, lat, b.lon, b.lat)
            k = k + b.weight * np.exp(-(x * x + y * y) / (2 * (2.5 * b.sigma_km) ** 2))
        k = np.minimum(k, 1.0)
        x, y = _xy_km(lon, lat, 116.2, 37.9)
        r = np.exp(-(x * x) / (2 * 210.0**2) - (y * y) / (2 * 160.0**2))
        return np.clip(self.A_K * k + self.A_R * r, 0.0, 1.0)

    def gwsa_trend(self, lon, lat) -> np.ndarray:
        """GWSA trend 2002-2022 ``G``, mm/yr."""
        return 1.2 - 38.5 * self.depletion(lon, lat)

    def dem(self, lon, lat) -> np.ndarray:
        """Elevation, m: plain 2-70 m rising to the Taihang (west) and Yanshan (north)."""
        lon = np.asarray(lon, dtype=np.float64)
        lat = np.asarray(lat, dtype=np.float64)
        base = 2.0 + 7.0 * (119.5 - lon) + 3.0 * (lat - 34.5)
        mountains = 900.0 / (1 + np.exp(-(114.15 - lon) / 0.08)) + 700.0 / (
            1 + np.exp(-(lat - 40.2) / 0.06)
        )
        return np.maximum(base + mountains + self._dem_noise(lon, lat), 0.0)

    def precipitation(self, lon, lat) -> np.ndarray:
        """Annual precipitation, mm/yr (wetter to the south and at the coast)."""
        lon = np.asarray(lon, dtype=np.float64)
        lat = np.asarray(lat, dtype=np.float64)
        p = 690.0 - 40.0 * (lat - 34.5) + 12.0 * (lon - 113.5) + self._precip_noise(lon, lat)
        return np.clip(p, 430.0, 730.0)

    def building_density(self, lon, lat) -> np.ndarray:
        """Built-up fraction of a cell, 0-1."""
        lon = np.asarray(lon, dtype=np.float64)
        lat = np.asarray(lat, dtype=np.float64)
        b = np.zeros(np.broadcast(lon, lat).shape)
        for _, clon, clat, _, radius in CITIES:
            x, y = _xy_km(lon, lat, clon, clat)
            b = b + 0.85 * np.exp(-(x * x + y * y) / (2 * radius**2))
        for tlon, tlat in self._towns:
            x, y = _xy_km(lon, lat, tlon, tlat)
            b = b + 0.3 * np.exp(-(x * x + y * y) / (2 * 2.5**2))
        return np.clip(b + 0.03, 0.0, 1.0)

    def population(self, lon, lat) -> np.ndarray:
        """Population density, persons/km2 (city cores plus a lognormal rural field)."""
        lon = np.asarray(lon, dtype=np.float64)
        lat = np.asarray(lat, dtype=np.float64)
        p = 450.0 * np.exp(self._pop_noise(lon, lat))
        for _, clon, clat, core, radius in CITIES:
            x, y = _xy_km(lon, lat, clon, clat)
            p = p + core * np.exp(-(x * x + y * y) / (2 * (0.5 * radius) ** 2))
        return p

    def gdp(self, lon, lat) -> np.ndarray:
        """GDP density, 1e4 CNY/km2."""
        return (
            3.0
            * self.population(lon, lat)
            * np.exp(self._gdp_noise(lon, lat))
            * (1 + 2 * self.building_density(lon, lat))
        )

    def ndvi(self, lon, lat) -> np.ndarray:
        """Annual mean NDVI, dimensionless."""
        v = 0.62 - 0.45 * self.building_density(lon, lat) + self._ndvi_noise(lon, lat)
        return np.clip(v, 0.05, 0.9)

    def evapotranspiration(self, lon, lat) -> np.ndarray:
        """Annual evapotranspiration, mm/yr."""
        return (
            0.55 * self.precipitation(lon, lat)
            + 250.0 * self.ndvi(lon, lat)
            + self._et_noise(lon, lat)
        )

    def fault_density(self, lon, lat) -> np.ndarray:
        """Fault-line density (Gaussian kernel, sigma 3 km), km of fault per km2."""
        lon = np.asarray(lon, dtype=np.float64)
        lat = np.asarray(lat, dtype=np.float64)
        shape = np.broadcast(lon, lat).shape
        x, y = _xy_km(
            np.broadcast_to(lon, shape).ravel(), np.broadcast_to(lat, shape).ravel(), 116.5, 37.5
        )
        fx, fy = _xy_km(self._fault_pts[:, 0], self._fault_pts[:, 1], 116.5, 37.5)
        sigma = 3.0
        tree_p = cKDTree(np.column_stack([x, y]))
        tree_f = cKDTree(np.column_stack([fx, fy]))
        sdm = tree_p.sparse_distance_matrix(tree_f, 4 * sigma, output_type="coo_matrix")
        w = (
            self._fault_pts[sdm.col, 2]
            * np.exp(-(sdm.data**2) / (2 * sigma**2))
            / (2 * np.pi * sigma**2)
        )
        out = np.bincount(sdm.row, weights=w, minlength=x.size)
        return out.reshape(shape)

    def factors(self, lon, lat) -> dict[str, np.ndarray]:
        """Every driving factor at (lon, lat) (broadcast), as a dict of float64 arrays."""
        return {
            "gwsa_trend": self.gwsa_trend(lon, lat),
            "dem": self.dem(lon, lat),
            "precipitation": self.precipitation(lon, lat),
            "evapotranspiration": self.evapotranspiration(lon, lat),
            "ndvi": self.ndvi(lon, lat),
            "fault_density": self.fault_density(lon, lat),
            "building_density": self.building_density(lon, lat),
            "population": self.population(lon, lat),
            "gdp": self.gdp(lon, lat),
        }

    # ------------------------------------------------------------------ deformation
    def secular_rate(self, lon, lat, factors: dict | None = None) -> np.ndarray:
        """Secular vertical rate ``v_sec``, mm/yr (see module docstring)."""
        f = factors if factors is not None else self.factors(lon, lat)
        s = (1.2 - f["gwsa_trend"]) / 38.5
        fs = np.clip((s - self.S0) / (1.0 - self.S0), 0.0, 1.0) ** 2
        pn = (f["precipitation"] - 430.0) / 300.0
        fd = f["fault_density"]
        return (
            2.0
            - self.V0 * fs * (1.25 - 0.7 * pn)
            - 4.0 * f["building_density"]
            - 6.0 * fd / (fd + 0.05)
            + 1.5 * np.tanh(f["dem"] / 200.0)
        )

    def lag_months(self, lon, lat) -> np.ndarray:
        """Lag of seasonal deformation behind GWSA: that of the nearest bowl (1 if > 80 km)."""
        lon = np.asarray(lon, dtype=np.float64)
        lat = np.asarray(lat, dtype=np.float64)
        return BOWL_LAGS[self.region(lon, lat)]

    def region(self, lon, lat) -> np.ndarray:
        """Index into BOWLS of the nearest bowl within 80 km, else ``len(BOWLS)`` ("plain")."""
        lon = np.asarray(lon, dtype=np.float64)
        lat = np.asarray(lat, dtype=np.float64)
        d = np.stack([np.hypot(*_xy_km(lon, lat, b.lon, b.lat)) for b in BOWLS])
        idx = d.argmin(axis=0)
        return np.where(d.min(axis=0) <= 80.0, idx, len(BOWLS))

    def vertical_displacement(self, lon, lat, t, rate=None, lag=None) -> np.ndarray:
        """Vertical displacement relative to T0, mm, shape ``broadcast(lon, lat) + (nt,)``.

        Parameters
        ----------
        lon, lat : array_like
            Degrees.
        t : array_like, shape (nt,)
            Decimal years.
        rate, lag : ndarray, optional
            Precomputed ``secular_rate`` and ``lag_months`` at (lon, lat).
        """
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        v = self.secular_rate(lon, lat) if rate is None else rate
        lg = self.lag_months(lon, lat) if lag is None else lag
        amp = 1.5 + 0.06 * np.abs(v)
        tl = t - lg[..., None] / 12.0
        t0l = T0 - lg[..., None] / 12.0
        return v[..., None] * _rate_multiplier_integral(t) + amp[..., None] * (
            seasonal_shape(tl) - seasonal_shape(t0l)
        )

    # ------------------------------------------------------------------ hydrology
    def gwsa(self, lon, lat, t, trend=None) -> np.ndarray:
        """GWSA anomaly w.r.t. 2004.000-2009.999, mm, shape ``broadcast(lon, lat) + (nt,)``."""
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        g = self.gwsa_trend(lon, lat) if trend is None else trend
        tb = decimal_year(monthly_times("2004-01", "2009-12"))
        h = _gwsa_time(t) - _gwsa_time(tb).mean()
        s = seasonal_shape(t) - seasonal_shape(tb).mean()
        ag = 15.0 + 0.6 * np.abs(g)
        return g[..., None] * h + ag[..., None] * s

    def soil_moisture_layers(self, lon, lat, t) -> np.ndarray:
        """Volumetric soil moisture of the FLDAS layers, m3/m3, shape ``(..., nt, 4)``."""
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        base = 0.27 + self._sm_noise(lon, lat)[..., None, None]
        # wetter in late summer (monsoon), slow drying trend of 0.0005 /yr
        season = np.cos(2 * np.pi * (t - 0.62))[:, None]
        amp = np.array([0.08, 0.06, 0.03, 0.015])
        trend = -0.0005 * (t - 2012.0)[:, None]
        return base + amp * season + trend + np.zeros(4)

    def soil_moisture(self, lon, lat, t) -> np.ndarray:
        """Soil moisture 0-2 m, mm (absolute storage)."""
        return (self.soil_moisture_layers(lon, lat, t) * np.asarray(FLDAS_LAYERS_MM)).sum(-1)

    def swe(self, lon, lat, t) -> np.ndarray:
        """Snow water equivalent, mm (absolute): winter only, more to the north."""
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        lat = np.asarray(lat, dtype=np.float64)
        f = np.mod(t, 1.0)
        winter = np.clip(np.cos(2 * np.pi * (f - 0.04)), 0.0, None) ** 4 * (f < 0.25) + np.clip(
            np.cos(2 * np.pi * (f - 1.04)), 0.0, None
        ) ** 4 * (f > 0.9)
        scale = np.clip((np.broadcast_to(lat, np.broadcast(lon, lat).shape) - 35.0) * 1.5, 0, 10)
        return scale[..., None] * winter

    def canopy_water(self, lon, lat, t) -> np.ndarray:
        """Canopy interception storage, mm (absolute): NDVI-scaled, summer peak."""
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        nd = self.ndvi(lon, lat)
        return nd[..., None] * (0.25 + 0.2 * np.cos(2 * np.pi * (t - 0.58)))

    def monthly_precipitation(self, lon, lat, t) -> np.ndarray:
        """Precipitation rate of the month at ``t``, mm/month (summer monsoon)."""
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        annual = self.precipitation(lon, lat)
        w = np.exp(3.0 * np.cos(2 * np.pi * (t - 0.55)))
        wn = np.exp(3.0 * np.cos(2 * np.pi * ((np.arange(12) + 0.5) / 12 - 0.55))).sum()
        year_factor = 1.0 + 0.15 * np.sin(2 * np.pi * t / 3.7)
        return annual[..., None] * (w / wn) * year_factor

    def monthly_et(self, lon, lat, t) -> np.ndarray:
        """Evapotranspiration rate of the month at ``t``, mm/month."""
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        annual = self.evapotranspiration(lon, lat)
        w = 1.0 + 0.8 * np.cos(2 * np.pi * (t - 0.55))
        return annual[..., None] * w / 12.0

    def twsa_components(self, lon, lat, t) -> dict[str, np.ndarray]:
        """GWSA and the SM, SWE, CW anomalies on the 2004-2009 baseline, and TWSA, mm."""
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        tb = decimal_year(monthly_times("2004-01", "2009-12"))
        sm = self.soil_moisture(lon, lat, t) - self.soil_moisture(lon, lat, tb).mean(-1)[..., None]
        sw = self.swe(lon, lat, t) - self.swe(lon, lat, tb).mean(-1)[..., None]
        cw = self.canopy_water(lon, lat, t) - self.canopy_water(lon, lat, tb).mean(-1)[..., None]
        gw = self.gwsa(lon, lat, t)
        return {
            "gwsa": gw,
            "soil_moisture": sm,
            "swe": sw,
            "canopy_water": cw,
            "twsa": gw + sm + sw + cw,
        }


BOWL_LAGS = np.array([b.lag_months for b in BOWLS] + [1])
