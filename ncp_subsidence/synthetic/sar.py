"""Sentinel-1 frames, acquisition dates, small-baseline networks and interferogram phase.

Frames are north-up EPSG:4326 cell-registered rectangles; the incidence angle grows linearly with
longitude from 29 deg (west, near range) to 46 deg (east, far range), heading -12 deg (ascending,
right-looking, so the radar looks east).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ncp_subsidence.synthetic.truth import (
    KM_PER_DEG_LAT,
    KM_PER_DEG_LON_38,
    T0,
    WAVELENGTH_M,
    SmoothField,
    TwinTruth,
    _seed,
    cell_centres,
    decimal_year,
    los_unit_vector,
    plate_motion_enu,
)

__all__ = [
    "FRAMES",
    "FrameSpec",
    "acquisition_dates",
    "frame_error_field",
    "frame_geometry",
    "pair_network",
    "product_name",
]


@dataclass(frozen=True)
class FrameSpec:
    """One Sentinel-1 frame of the twin.

    Parameters
    ----------
    name : str
        Frame name.
    relative_orbit : int
        Sentinel-1 relative orbit (track).
    bbox : (west, south, east, north)
        Frame bounds, degrees.
    heading_deg : float
        Satellite heading, clockwise from north, degrees.
    incidence_near, incidence_far : float
        Incidence angle at the west (near range) and east (far range) edge, degrees.
    first_date : str
        First acquisition date, ``YYYY-MM-DD``.
    acquisition_time : str
        Acquisition time of day (UTC), ``HHMMSS``.
    """

    name: str
    relative_orbit: int
    bbox: tuple[float, float, float, float]
    heading_deg: float
    incidence_near: float
    incidence_far: float
    first_date: str
    acquisition_time: str


FRAMES: tuple[FrameSpec, ...] = (
    FrameSpec("A040", 40, (113.5, 34.5, 116.7, 40.5), -12.0, 29.0, 46.0, "2014-11-29", "102431"),
    FrameSpec("A142", 142, (116.3, 34.5, 119.5, 40.5), -12.0, 29.0, 46.0, "2014-12-05", "101652"),
)


def acquisition_dates(frame: FrameSpec, date_step: int, drop_fraction: float, seed: int):
    """Acquisition datetimes of a frame (12-day repeat, thinned, with seeded gaps).

    Parameters
    ----------
    frame : FrameSpec
    date_step : int
        Keep every ``date_step``-th 12-day slot.
    drop_fraction : float
        Fraction of the kept slots (never the first or last) dropped at random.
    seed : int

    Returns
    -------
    ndarray of datetime64[s]
        Increasing acquisition datetimes up to 2022-12-31.
    """
    first = np.datetime64(frame.first_date, "D")
    n_slots = int((np.datetime64("2022-12-31", "D") - first).astype(int) // 12) + 1
    slots = np.arange(0, n_slots, date_step)
    rng = _seed(seed, f"dates-{frame.name}")
    n_drop = round(drop_fraction * (len(slots) - 2))
    drop = rng.choice(np.arange(1, len(slots) - 1), size=n_drop, replace=False)
    slots = np.delete(slots, drop)
    hh, mm, ss = (int(frame.acquisition_time[i : i + 2]) for i in (0, 2, 4))
    tod = np.timedelta64(hh * 3600 + mm * 60 + ss, "s")
    return (first + 12 * slots).astype("datetime64[s]") + tod


def pair_network(n_dates: int, neighbours: int) -> np.ndarray:
    """Small-baseline network: each date paired with its ``neighbours`` next dates.

    Returns
    -------
    ndarray of int, shape (n_pairs, 2)
        (reference index, secondary index), reference < secondary, sorted.
    """
    pairs = [(i, j) for i in range(n_dates) for j in range(i + 1, min(i + 1 + neighbours, n_dates))]
    return np.asarray(pairs, dtype=np.int64)


def product_name(frame: FrameSpec, reference, secondary) -> str:
    """HyP3 INSAR_GAMMA-style product name of a pair."""
    ref = np.datetime64(reference, "s").astype(object)
    sec = np.datetime64(secondary, "s").astype(object)
    days = round((secondary - reference) / np.timedelta64(1, "D"))
    digest = hashlib.sha1(f"{frame.name}{ref}{sec}".encode()).hexdigest()[:4].upper()
    return f"S1AA_{ref:%Y%m%dT%H%M%S}_{sec:%Y%m%dT%H%M%S}_VVP{days:03d}_INT80_G_ueF_{digest}"


def frame_geometry(frame: FrameSpec, posting: float) -> dict[str, np.ndarray]:
    """Grid and LOS geometry of a frame.

    Returns
    -------
    dict
        ``lon`` (nx,), ``lat`` (ny,), ``incidence`` (ny, nx) deg, ``heading`` (ny, nx) deg,
        ``los_east``, ``los_north``, ``los_up`` (ny, nx) ground -> satellite unit vector,
        ``lv_theta``, ``lv_phi`` (ny, nx) radians (GAMMA/HyP3 convention), ``transform``
        (GDAL 6-tuple).
    """
    lon, lat = cell_centres(frame.bbox, posting)
    west, _, east, north = frame.bbox
    frac = (lon - west) / (east - west)
    inc1 = frame.incidence_near + (frame.incidence_far - frame.incidence_near) * frac
    inc = np.broadcast_to(inc1, (lat.size, lon.size)).astype(np.float64)
    head = np.full_like(inc, frame.heading_deg)
    ue, un, uu = los_unit_vector(inc, head)
    lv_theta = np.pi / 2 - np.deg2rad(inc)
    lv_phi = np.arctan2(un, ue)
    return {
        "lon": lon,
        "lat": lat,
        "incidence": inc,
        "heading": head,
        "los_east": ue,
        "los_north": un,
        "los_up": uu,
        "lv_theta": lv_theta,
        "lv_phi": lv_phi,
        "transform": (west, posting, 0.0, north, 0.0, -posting),
    }


def frame_error_field(frame_index: int, frame: FrameSpec, seed: int):
    """Injected long-wavelength LOS error of a frame, mm/yr, as a callable of (lon, lat).

    Frame 0, 2, ...: a random plane (about +-10 mm/yr per 250 km). Frame 1, 3, ...: a plane, a
    quadratic (about +-5 mm/yr over the frame) and a smooth random field (length 150 km,
    amplitude 3 mm/yr).
    """
    rng = _seed(seed, f"frame-error-{frame.name}")
    lon0 = 0.5 * (frame.bbox[0] + frame.bbox[2])
    lat0 = 0.5 * (frame.bbox[1] + frame.bbox[3])
    a = rng.uniform(-3, 3)
    b, c = rng.uniform(-10, 10, 2) / 250.0
    quad = rng.uniform(-5, 5, 3) / 200.0**2 if frame_index % 2 == 1 else np.zeros(3)
    gp = SmoothField.random(rng, 150.0, 3.0) if frame_index % 2 == 1 else None

    def error(lon, lat) -> np.ndarray:
        x = (np.asarray(lon, dtype=np.float64) - lon0) * KM_PER_DEG_LON_38
        y = (np.asarray(lat, dtype=np.float64) - lat0) * KM_PER_DEG_LAT
        e = a + b * x + c * y + quad[0] * x * x + quad[1] * x * y + quad[2] * y * y
        if gp is not None:
            e = e + gp(lon, lat)
        return e

    return error


def los_displacement(
    truth: TwinTruth, geom: dict, times: np.ndarray, error, rate, lag
) -> np.ndarray:
    """Truth LOS displacement (relative to T0) at decimal years ``times``, mm, (nt, ny, nx).

    ``u . (plate motion (t - T0)) + u_up * d_up(t) + error (t - T0)``; float32.
    """
    lon2, lat2 = np.meshgrid(geom["lon"], geom["lat"])
    ve, vn, vu = plate_motion_enu(lon2, lat2)
    pl = geom["los_east"] * ve + geom["los_north"] * vn + geom["los_up"] * vu
    rate_los = pl + error
    out = np.empty((len(times), *lon2.shape), dtype=np.float32)
    for k, t in enumerate(times):
        d_up = truth.vertical_displacement(lon2, lat2, np.array([t]), rate=rate, lag=lag)[..., 0]
        out[k] = geom["los_up"] * d_up + rate_los * (t - T0)
    return out


def phase_from_los(d_ref_mm: np.ndarray, d_sec_mm: np.ndarray) -> np.ndarray:
    """Interferometric phase ``-4 pi / lambda * (d_sec - d_ref)``, radians (DESIGN.md 3)."""
    return (-4.0 * np.pi / WAVELENGTH_M * 1e-3) * (d_sec_mm.astype(np.float64) - d_ref_mm)


def turbulence(rng: np.random.Generator, shape: tuple[int, int], posting: float, std_mm: float):
    """Turbulent tropospheric delay (power-law spectrum, -8/3), mm, float64."""
    ny, nx = shape
    fy = np.fft.fftfreq(ny, d=posting * KM_PER_DEG_LAT)
    fx = np.fft.rfftfreq(nx, d=posting * KM_PER_DEG_LON_38)
    k = np.hypot(fy[:, None], fx[None, :])
    k[0, 0] = np.inf
    amp = np.maximum(k, 1.0 / 400.0) ** (-8.0 / 6.0)
    amp[0, 0] = 0.0
    spec = amp * (rng.standard_normal(amp.shape) + 1j * rng.standard_normal(amp.shape))
    field = np.fft.irfft2(spec, s=(ny, nx))
    sd = field.std()
    return field * (std_mm / sd) if sd > 0 else field


def dates_decimal(dates: np.ndarray) -> np.ndarray:
    """Decimal years of acquisition datetimes."""
    return decimal_year(dates)
