"""Sentinel-1 frames, acquisition dates, small-baseline networks and interferogram phase.

Frames are north-up cell-registered rectangles; the incidence angle grows linearly with longitude
from 29 deg (west, near range) to 46 deg (east, far range), heading -12 deg (ascending,
right-looking, so the radar looks east). A frame is laid out on EPSG:4326 (the plain COGs and
LiCSAR, :func:`frame_geometry`) or, as HyP3 delivers it, natively on UTM zone 50N
(:func:`utm_frame_geometry`: a whole-pixel UTM rectangle from the frame's west edge to inside
its other edges, pixel origins multiples of the pixel size, every field evaluated at the lon/lat
of the UTM pixel centres).
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
    "UTM_CRS",
    "FrameSpec",
    "acquisition_dates",
    "frame_error_field",
    "frame_geometry",
    "licsar_frame_id",
    "pair_network",
    "product_name",
    "sample_lonlat",
    "utm_frame_geometry",
    "utm_posting_m",
]

#: HyP3 projects the NCP's products to WGS 84 / UTM zone 50N (114-120 E).
UTM_CRS = "EPSG:32650"


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


def licsar_frame_id(frame: FrameSpec) -> str:
    """A LiCSAR-style frame id ``<relorb:03d><A|D>_<5 digits>_<6 digits>`` of a frame.

    The middle number is LiCSAR's frame counter along the track, the last the bursts per
    sub-swath (``131313``: 13 bursts in each of IW1-IW3); both are made up but stable.
    """
    direction = "A" if abs(frame.heading_deg) < 90 else "D"
    counter = 5000 + (37 * frame.relative_orbit) % 400
    return f"{frame.relative_orbit:03d}{direction}_{counter:05d}_131313"


def utm_posting_m(posting_deg: float) -> float:
    """UTM pixel size (m) matching an EPSG:4326 posting: ``posting_deg * 111.195 km``, to 10 m."""
    return float(round(posting_deg * 111195.0 / 10.0) * 10.0)


def utm_frame_geometry(
    frame: FrameSpec, posting_m: float, crs: str = UTM_CRS
) -> dict[str, np.ndarray]:
    """Grid and LOS geometry of a frame laid out natively on a UTM grid.

    The grid is a rectangle of whole ``posting_m`` pixels (edges on multiples of the pixel
    size, as HyP3's pixel lattice) that reaches the frame's west edge at every latitude (so the
    overlap with the western frame is at least as wide as the lon/lat boxes') and stays inside
    its south, east and north edges; in lon/lat it is a slightly rotated quadrilateral (meridian
    convergence), up to 0.06 deg west of the box at 34.5 N. Incidence and heading follow the
    same law as :func:`frame_geometry`, evaluated at the longitude of each pixel centre.

    Parameters
    ----------
    frame : FrameSpec
    posting_m : float
        Pixel size, m.
    crs : str
        Projected CRS (default UTM zone 50N).

    Returns
    -------
    dict
        ``x`` (nx,) easting and ``y`` (ny,) northing of the cell centres (m, y descending),
        ``lon``, ``lat`` (ny, nx) degrees of the cell centres, ``incidence``, ``heading``
        (ny, nx) deg, ``los_east``, ``los_north``, ``los_up`` (ny, nx) ground -> satellite unit
        vector (geographic east/north/up), ``lv_theta``, ``lv_phi`` (ny, nx) radians,
        ``transform`` (GDAL 6-tuple, m), ``crs``.
    """
    import pyproj

    to_xy = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    to_ll = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    west, south, east, north = frame.bbox
    s = np.linspace(0.0, 1.0, 101)
    xw, _ = to_xy.transform(np.full_like(s, west), south + (north - south) * s)
    xe, _ = to_xy.transform(np.full_like(s, east), south + (north - south) * s)
    _, ys = to_xy.transform(west + (east - west) * s, np.full_like(s, south))
    _, yn = to_xy.transform(west + (east - west) * s, np.full_like(s, north))
    x0 = np.floor(np.min(xw) / posting_m) * posting_m
    x1 = np.floor(np.min(xe) / posting_m) * posting_m
    y0 = np.ceil(np.max(ys) / posting_m) * posting_m
    y1 = np.floor(np.min(yn) / posting_m) * posting_m
    nx, ny = round((x1 - x0) / posting_m), round((y1 - y0) / posting_m)
    x = x0 + posting_m * (np.arange(nx) + 0.5)
    y = y1 - posting_m * (np.arange(ny) + 0.5)
    lon, lat = to_ll.transform(*np.meshgrid(x, y))
    lon, lat = np.asarray(lon, np.float64), np.asarray(lat, np.float64)
    frac = (lon - west) / (east - west)
    inc = frame.incidence_near + (frame.incidence_far - frame.incidence_near) * frac
    head = np.full_like(inc, frame.heading_deg)
    ue, un, uu = los_unit_vector(inc, head)
    return {
        "x": x,
        "y": y,
        "lon": lon,
        "lat": lat,
        "incidence": inc,
        "heading": head,
        "los_east": ue,
        "los_north": un,
        "los_up": uu,
        "lv_theta": np.pi / 2 - np.deg2rad(inc),
        "lv_phi": np.arctan2(un, ue),
        "transform": (float(x0), posting_m, 0.0, float(y1), 0.0, -posting_m),
        "crs": crs,
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
    """Interferometric phase ``-4 pi / lambda * (d_sec - d_ref)``, radians (docs/design.md 3)."""
    return (-4.0 * np.pi / WAVELENGTH_M * 1e-3) * (d_sec_mm.astype(np.float64) - d_ref_mm)


def turbulence(rng: np.random.Generator, shape: tuple[int, int], posting: float, std_mm: float):
    """Turbulent tropospheric delay (power-law spectrum, -8/3), mm, float64.

    Drawn on an EPSG:4326 grid of ``posting`` degrees; a frame on another grid samples it
    (:func:`sample_lonlat`), so the atmosphere of a date is a field of lon/lat whatever the
    product grid.
    """
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


def sample_lonlat(
    field: np.ndarray, lon: np.ndarray, lat: np.ndarray, lon_pts: np.ndarray, lat_pts: np.ndarray
) -> np.ndarray:
    """Bilinear value of a field on a regular lon/lat grid at arbitrary points.

    Parameters
    ----------
    field : ndarray, shape (ny, nx)
    lon : ndarray, shape (nx,), increasing; lat : ndarray, shape (ny,), decreasing or increasing
    lon_pts, lat_pts : ndarray, same shape, degrees; points off the grid take the nearest edge

    Returns
    -------
    ndarray, shape of ``lon_pts``, float64
    """
    z = np.asarray(field, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    if lat[0] > lat[-1]:
        lat, z = lat[::-1], z[::-1]
    x = np.clip(lon_pts, lon[0], lon[-1])
    y = np.clip(lat_pts, lat[0], lat[-1])
    ix = np.clip(np.searchsorted(lon, x) - 1, 0, lon.size - 2)
    iy = np.clip(np.searchsorted(lat, y) - 1, 0, lat.size - 2)
    fx = (x - lon[ix]) / (lon[ix + 1] - lon[ix])
    fy = (y - lat[iy]) / (lat[iy + 1] - lat[iy])
    return (
        z[iy, ix] * (1 - fy) * (1 - fx)
        + z[iy, ix + 1] * (1 - fy) * fx
        + z[iy + 1, ix] * fy * (1 - fx)
        + z[iy + 1, ix + 1] * fy * fx
    )
