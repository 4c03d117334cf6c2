"""GRACE downscaling (0.25 deg -> 0.01 deg) and groundwater storage anomalies: numpy kernels.

Pure numpy/scipy on plain arrays. Cubes keep the store's layout ``(time, lat, lon)``: the
spatial core dimensions are last, time (batched, or the axis of the climatology) first. Every
kernel works on a *block* of the fine grid made of whole coarse cells: ``ratio`` fine cells per
coarse cell along each axis (25 for 0.01 deg in 0.25 deg), the block's fine rows and columns
given with the coarse row/column that holds each of them (``parent_lat``, ``parent_lon``), and
the whole (small) coarse field. A block's numbers therefore do not depend on how the fine grid is
cut into blocks: the interpolation runs as fixed-shape GEMMs per coarse cell, and every float
sum runs along a contiguous last axis of a fixed length.

Grids are EPSG:4326 and cell-registered (coordinates are cell centres); latitude may ascend or
descend (the interpolation operators are built from the coordinates, in whatever order they
come). Storages are in mm of equivalent water height.

References
----------
Huang ZH, Huo ZB, et al. 2025. J. Groundwater Sci. Eng. 13(1):74-89, Eq. 6-10 (monthly-climatology
downscaling and the groundwater water balance).
Save H, Bettadpur S, Tapley BD. 2016. High-resolution CSR GRACE RL05 mascons. J. Geophys. Res.
Solid Earth 121:7547-7569 (the 0.25 deg mascon grid, cm of EWH).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from scipy import ndimage
from scipy.interpolate import CubicSpline

from ncp_subsidence.kernels.trends import fit_harmonic_trend, harmonic_design

__all__ = [
    "EARTH_RADIUS_M",
    "FLDAS_LAYER_THICKNESS_MM",
    "anomaly",
    "baseline_mask",
    "cell_area_m2",
    "coarse_cell_mean",
    "days_in_month",
    "downscale",
    "expand_to_fine",
    "fldas_soil_moisture_mm",
    "grace_cm_to_mm",
    "groundwater_storage_anomaly",
    "harmonic_gap_fill",
    "interpolate_separable",
    "interpolation_matrix",
    "fill_nearest",
    "regrid_separable",
    "kg_per_m2_per_s_to_mm_per_month",
    "kg_per_m2_to_mm",
    "mm_per_hour_to_mm_per_month",
    "monthly_climatology",
    "monthly_deviation",
    "nesting_ratio",
    "ratio_weights",
    "spherical_cell_area_m2",
    "volume_fraction_to_mm",
    "water_balance_anomalies",
]

#: Authalic sphere radius for cell areas, m (docs/science.md, global conventions).
EARTH_RADIUS_M = 6371007.181
#: FLDAS Noah soil layers 0-10, 10-40, 40-100, 100-200 cm: thicknesses in mm (docs/science.md 5.1).
FLDAS_LAYER_THICKNESS_MM: tuple[float, ...] = (100.0, 300.0, 600.0, 1000.0)

Interpolation = Literal["cubic", "bilinear", "nearest"]
Mode = Literal["paper", "ratio", "remove_restore"]


# --------------------------------------------------------------------------------------------
# Units (docs/science.md 5.1-5.2)
# --------------------------------------------------------------------------------------------


def grace_cm_to_mm(lwe_thickness_cm: np.ndarray) -> np.ndarray:
    """GRACE ``lwe_thickness`` in cm of EWH to mm: ``TWSA_mm = 10 * lwe_thickness_cm``."""
    return np.asarray(lwe_thickness_cm, dtype=np.float64) * 10.0


def volume_fraction_to_mm(fraction: np.ndarray, thickness_mm: float) -> np.ndarray:
    """Volumetric soil moisture (m3/m3) of a layer ``thickness_mm`` thick to mm of water."""
    return np.asarray(fraction, dtype=np.float64) * float(thickness_mm)


def fldas_soil_moisture_mm(
    layers: Sequence[np.ndarray], thickness_mm: Sequence[float] = FLDAS_LAYER_THICKNESS_MM
) -> np.ndarray:
    """Soil moisture 0-2 m in mm from FLDAS volume fractions of the four layers.

    Parameters
    ----------
    layers : sequence of ndarray, each of the same shape, m3/m3
        ``SoilMoi00_10cm_tavg``, ``SoilMoi10_40cm_tavg``, ``SoilMoi40_100cm_tavg``,
        ``SoilMoi100_200cm_tavg``.
    thickness_mm : sequence of float
        Layer thicknesses (default 100, 300, 600, 1000 mm).

    Returns
    -------
    ndarray, mm
    """
    if len(layers) != len(thickness_mm):
        raise ValueError(
            f"got {len(layers)} soil layers but {len(thickness_mm)} thicknesses; pass one "
            "thickness per layer."
        )
    total = np.zeros(np.shape(layers[0]))
    for layer, dz in zip(layers, thickness_mm, strict=True):
        total = total + volume_fraction_to_mm(layer, dz)
    return total


def kg_per_m2_to_mm(x: np.ndarray) -> np.ndarray:
    """Water mass per area (kg/m2, GLDAS storages) to mm: 1 kg/m2 of water is 1 mm."""
    return np.asarray(x, dtype=np.float64).copy()


def days_in_month(times: np.ndarray) -> np.ndarray:
    """Number of days in the calendar month of each ``datetime64`` time, shape (n,), float64."""
    months = np.asarray(times, dtype="datetime64[ns]").astype("datetime64[M]")
    return ((months + 1).astype("datetime64[D]") - months.astype("datetime64[D]")) / np.timedelta64(
        1, "D"
    )


def mm_per_hour_to_mm_per_month(rate: np.ndarray, n_days: np.ndarray) -> np.ndarray:
    """Precipitation rate (IMERG, mm/hr) to a monthly total: ``rate * 24 * days``, mm/month.

    ``n_days`` broadcasts against ``rate`` (put time last, or reshape it).
    """
    return np.asarray(rate, dtype=np.float64) * 24.0 * np.asarray(n_days, dtype=np.float64)


def kg_per_m2_per_s_to_mm_per_month(rate: np.ndarray, n_days: np.ndarray) -> np.ndarray:
    """Flux (FLDAS ``Rainf_f_tavg``, kg/m2/s) to a monthly total: ``rate * 86400 * days``."""
    return np.asarray(rate, dtype=np.float64) * 86400.0 * np.asarray(n_days, dtype=np.float64)


# --------------------------------------------------------------------------------------------
# Baselines and climatologies (docs/science.md 5.2; Huang et al. 2025 Eq. 6-8)
# --------------------------------------------------------------------------------------------


def baseline_mask(
    times: np.ndarray,
    start: str | np.datetime64 | None = None,
    end: str | np.datetime64 | None = None,
) -> np.ndarray:
    """Months inside the baseline ``[start, end]`` (inclusive, compared by calendar month).

    ``None`` on either side leaves it open, so ``baseline_mask(times)`` is the study-period
    baseline (docs/science.md 5.2 default); ``("2004-01", "2009-12")`` is the CSR baseline.

    Returns
    -------
    ndarray of bool, shape (n,)
    """
    months = np.asarray(times, dtype="datetime64[ns]").astype("datetime64[M]")
    keep = np.ones(months.shape, dtype=bool)
    if start is not None:
        keep &= months >= np.datetime64(start, "M")
    if end is not None:
        keep &= months <= np.datetime64(end, "M")
    return keep


def _time_mean(x: np.ndarray, select: np.ndarray) -> np.ndarray:
    """NaN-aware mean over the selected entries of axis 0; NaN where none is valid, float64.

    Summed one selected slice after the other in float64 (the order of ``sum(axis=0)``), so no
    float64 copy of the whole selection is formed; ``x`` may be of any float dtype.
    """
    shape = x.shape[1:]
    total = np.zeros(shape)
    count = np.zeros(shape, dtype=np.intp)
    value = np.empty(shape)
    valid = np.empty(shape, dtype=bool)
    for t in np.flatnonzero(select):
        np.copyto(value, x[t])
        np.isfinite(value, out=valid)
        count += valid
        np.copyto(value, 0.0, where=~valid)
        total += value
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def anomaly(x: np.ndarray, in_baseline: np.ndarray, axis: int = 0) -> np.ndarray:
    """Anomaly relative to the mean over the baseline months (NaN months left out).

    Parameters
    ----------
    x : ndarray, time along ``axis``, mm
    in_baseline : ndarray of bool, shape (n_time,)
    axis : int
        The time axis.

    Returns
    -------
    ndarray, same shape as ``x``, float64: ``x - mean_B(x)`` (docs/science.md 5.2).
    """
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, 0)
    out = x - _time_mean(x, np.asarray(in_baseline, dtype=bool))
    return np.moveaxis(out, 0, axis)


def water_balance_anomalies(
    twsa: np.ndarray,
    smsa: np.ndarray,
    swesa: np.ndarray,
    cwsa: np.ndarray,
    in_baseline: np.ndarray,
    *,
    terms: Sequence[str] = ("twsa", "smsa", "swesa", "cwsa", "gwsa"),
    dtype: np.dtype | type = np.float32,
) -> np.ndarray:
    """Anomalies of the four storages on one baseline and GWSA (Eq. 10), time on axis 0.

    The same numbers as :func:`anomaly` of each storage and
    :func:`groundwater_storage_anomaly` of the four anomalies, in float64, then cast to
    ``dtype``; computed one month at a time, so no float64 cube is formed.

    Parameters
    ----------
    twsa, smsa, swesa, cwsa : ndarray, shape (n_time, ...), mm, same shape
        Storages (absolute or anomalies; any float dtype).
    in_baseline : ndarray of bool, shape (n_time,)
    terms : sequence of {"twsa", "smsa", "swesa", "cwsa", "gwsa"}
        The outputs, in this order.
    dtype
        Output dtype.

    Returns
    -------
    ndarray, shape (len(terms), n_time, ...), ``dtype``
    """
    names = ("twsa", "smsa", "swesa", "cwsa")
    inputs = dict(zip(names, (twsa, smsa, swesa, cwsa), strict=True))
    unknown = set(terms) - {*names, "gwsa"}
    if unknown:
        raise ValueError(f"unknown water-balance terms {sorted(unknown)}")
    needed = names if "gwsa" in terms else tuple(n for n in names if n in terms)
    in_baseline = np.asarray(in_baseline, dtype=bool)
    means = {n: _time_mean(inputs[n], in_baseline) for n in needed}
    shape = np.shape(inputs[needed[0]])
    out = np.empty((len(terms), *shape), dtype=dtype)
    slot = {n: i for i, n in enumerate(terms)}
    anom = {n: np.empty(shape[1:]) for n in needed}
    gwsa = np.empty(shape[1:])
    for t in range(shape[0]):
        for n in needed:
            np.copyto(anom[n], inputs[n][t])
            anom[n] -= means[n]
            if n in slot:
                out[slot[n], t] = anom[n]
        if "gwsa" in slot:
            np.subtract(anom["twsa"], anom["smsa"], out=gwsa)
            gwsa -= anom["swesa"]
            gwsa -= anom["cwsa"]
            out[slot["gwsa"], t] = gwsa
    return out


def monthly_climatology(x: np.ndarray, month: np.ndarray, in_baseline: np.ndarray) -> np.ndarray:
    """Mean over the baseline years for each calendar month (Huang et al. 2025, Eq. 6 and 7).

    ``TG_m(X) = mean_y TG_{y,m}(X)`` and ``TF_m(x) = mean_y TF_{y,m}(x)``: missing (NaN) months
    are left out of the mean.

    Parameters
    ----------
    x : ndarray, shape (n_time, ...), mm
    month : ndarray of int, shape (n_time,), calendar month 1-12
    in_baseline : ndarray of bool, shape (n_time,)

    Returns
    -------
    ndarray, shape (12, ...), mm; NaN for a calendar month with no valid baseline value.
    """
    x = np.asarray(x)
    month = np.asarray(month)
    in_baseline = np.asarray(in_baseline, dtype=bool)
    out = np.full((12, *x.shape[1:]), np.nan)
    for m in range(1, 13):
        sel = in_baseline & (month == m)
        if sel.any():
            out[m - 1] = _time_mean(x, sel)
    return out


def monthly_deviation(x: np.ndarray, month: np.ndarray, climatology: np.ndarray) -> np.ndarray:
    """Deviation from the monthly climatology (Huang et al. 2025, Eq. 8).

    ``E_{y,m}(X) = TG_{y,m}(X) - TG_m(X)``.

    Parameters
    ----------
    x : ndarray, shape (n_time, ...), mm
    month : ndarray of int, shape (n_time,), 1-12
    climatology : ndarray, shape (12, ...), mm

    Returns
    -------
    ndarray, shape (n_time, ...), mm
    """
    return np.asarray(x, dtype=np.float64) - climatology[np.asarray(month) - 1]


# --------------------------------------------------------------------------------------------
# Grids and interpolation operators
# --------------------------------------------------------------------------------------------


def spherical_cell_area_m2(lat1: Any, lat2: Any, lon1: Any, lon2: Any) -> np.ndarray:
    """Exact area of a latitude-longitude cell on the authalic sphere (docs/science.md 8.2).

    ``A = R^2 (sin phi2 - sin phi1) (lambda2 - lambda1)``, angles in radians. The one cell-area
    formula of the package (:func:`cell_area_m2` and
    :func:`ncp_subsidence.kernels.analysis.grid_cell_area_m2` call it).

    Parameters
    ----------
    lat1, lat2 : array_like, degrees
        Southern and northern edges (the order does not matter).
    lon1, lon2 : array_like, degrees
        Western and eastern edges.

    Returns
    -------
    ndarray, m2, the broadcast shape of the inputs (R = 6371007.181 m)

    Examples
    --------
    >>> round(float(spherical_cell_area_m2(37.995, 38.005, 116.0, 116.01)) / 1e6, 3)
    0.974
    """
    p1 = np.deg2rad(np.asarray(lat1, dtype=np.float64))
    p2 = np.deg2rad(np.asarray(lat2, dtype=np.float64))
    dlon = np.deg2rad(np.abs(np.asarray(lon2, dtype=np.float64) - np.asarray(lon1)))
    return EARTH_RADIUS_M**2 * np.abs(np.sin(p2) - np.sin(p1)) * dlon


def cell_area_m2(lat: np.ndarray, lat_step_deg: float, lon_step_deg: float) -> np.ndarray:
    """Exact spherical area of cell-registered cells, ``R^2 (sin phi2 - sin phi1) dlon``.

    Parameters
    ----------
    lat : ndarray, shape (n,), cell-centre latitudes, degrees
    lat_step_deg, lon_step_deg : float
        Cell sizes in degrees (the sign is ignored).

    Returns
    -------
    ndarray, shape (n,), m2 (authalic sphere R = 6371007.181 m)
    """
    lat = np.asarray(lat, dtype=np.float64)
    half = abs(lat_step_deg) / 2.0
    south = np.clip(lat - half, -90.0, 90.0)
    north = np.clip(lat + half, -90.0, 90.0)
    return spherical_cell_area_m2(south, north, 0.0, lon_step_deg)


def nesting_ratio(coarse_step_deg: float, fine_step_deg: float, *, rtol: float = 1e-6) -> int:
    """Integer number of fine cells per coarse cell along one axis (25 for 0.25 / 0.01).

    Raises
    ------
    ValueError
        If the coarse step is not an integer multiple of the fine step.
    """
    value = abs(coarse_step_deg) / abs(fine_step_deg)
    ratio = round(value)
    if ratio < 1 or abs(value - ratio) > rtol * value:
        raise ValueError(
            f"coarse step {coarse_step_deg} deg is not an integer multiple of fine step "
            f"{fine_step_deg} deg (ratio {value}); regrid the fine field onto a nested grid."
        )
    return int(ratio)


def interpolation_matrix(
    coarse_centres: np.ndarray, fine_centres: np.ndarray, method: Interpolation = "cubic"
) -> np.ndarray:
    """Linear operator that interpolates a coarse 1-D field onto fine cell centres.

    The 2-D interpolation is separable: ``fine = M_lat @ coarse @ M_lon.T``, which is exactly
    the tensor-product (``RectBivariateSpline``-type) interpolant for ``cubic`` and the bilinear
    interpolant for ``bilinear``.

    Parameters
    ----------
    coarse_centres : ndarray, shape (n_coarse,), degrees, monotonic (either direction)
    fine_centres : ndarray, shape (n_fine,), degrees, any order
    method : {"cubic", "bilinear", "nearest"}
        ``cubic``: not-a-knot cubic spline through the coarse centres (scipy ``CubicSpline``),
        extended beyond the outer centres with the end polynomials; ``bilinear``: piecewise
        linear, extended linearly beyond the outer centres (so a linear field stays exact);
        ``nearest``: the coarse cell whose centre is nearest, which is the parent cell on nested
        grids (piecewise constant).

    Returns
    -------
    ndarray, shape (n_fine, n_coarse), float64
        Each row sums to 1.
    """
    xc = np.asarray(coarse_centres, dtype=np.float64)
    xf = np.asarray(fine_centres, dtype=np.float64)
    n_c = xc.size
    order = np.argsort(xc)
    xs = xc[order]
    if n_c > 1 and not np.all(np.diff(xs) > 0):
        raise ValueError("coarse_centres must be strictly monotonic (no duplicate coordinates).")
    if method == "nearest" or n_c == 1:
        idx = np.abs(xf[:, None] - xs[None, :]).argmin(axis=1)
        sorted_matrix = np.zeros((xf.size, n_c))
        sorted_matrix[np.arange(xf.size), idx] = 1.0
    elif method == "bilinear":
        k = np.clip(np.searchsorted(xs, xf, side="right") - 1, 0, n_c - 2)
        a = (xf - xs[k]) / (xs[k + 1] - xs[k])
        sorted_matrix = np.zeros((xf.size, n_c))
        rows = np.arange(xf.size)
        sorted_matrix[rows, k] = 1.0 - a
        sorted_matrix[rows, k + 1] += a
    elif method == "cubic":
        spline = CubicSpline(xs, np.eye(n_c), axis=0, bc_type="not-a-knot", extrapolate=True)
        sorted_matrix = spline(xf)
    else:
        raise ValueError(
            f"unknown interpolation {method!r}; choose 'cubic', 'bilinear' or 'nearest'."
        )
    matrix = np.empty_like(sorted_matrix)
    matrix[:, order] = sorted_matrix
    return matrix


def interpolate_separable(
    coarse: np.ndarray, m_lat: np.ndarray, m_lon: np.ndarray, block: int
) -> np.ndarray:
    """Apply separable interpolation operators: ``out[t] = m_lat @ coarse[t] @ m_lon.T``.

    Computed block by block, ``block x block`` fine cells at a time, with GEMMs whose shapes do
    not depend on the size of the fine array. A fine cell's value is therefore bit-identical
    whatever part of the fine grid it is computed with (BLAS may sum in a different order for
    a different matrix size).

    Parameters
    ----------
    coarse : ndarray, shape (n_time, n_lat_coarse, n_lon_coarse), finite
    m_lat : ndarray, shape (n_lat_fine, n_lat_coarse), rows of :func:`interpolation_matrix`
    m_lon : ndarray, shape (n_lon_fine, n_lon_coarse)
    block : int
        Block edge in fine cells (the nesting ratio); must divide ``n_lat_fine`` and
        ``n_lon_fine``.

    Returns
    -------
    ndarray, shape (n_time, n_lat_fine, n_lon_fine), float64
    """
    coarse = np.ascontiguousarray(coarse, dtype=np.float64)
    nt, ny_c, nx_c = coarse.shape
    ny, nx = m_lat.shape[0], m_lon.shape[0]
    if ny % block or nx % block:
        raise ValueError(
            f"fine block of {ny} x {nx} cells is not made of whole {block} x {block} coarse cells;"
            " chunk the fine grid in multiples of the nesting ratio."
        )
    m_lat = np.ascontiguousarray(m_lat, dtype=np.float64)
    m_lon = np.ascontiguousarray(m_lon, dtype=np.float64)
    flat = coarse.reshape(nt * ny_c, nx_c)
    out = np.empty((nt, ny, nx))
    for j0 in range(0, nx, block):
        along_lon = flat @ np.ascontiguousarray(m_lon[j0 : j0 + block].T)  # (nt*Y, b)
        along_lon = np.ascontiguousarray(
            along_lon.reshape(nt, ny_c, block).transpose(1, 0, 2)
        ).reshape(ny_c, nt * block)
        for i0 in range(0, ny, block):
            cell = m_lat[i0 : i0 + block] @ along_lon  # (b, nt*b)
            out[:, i0 : i0 + block, j0 : j0 + block] = cell.reshape(block, nt, block).transpose(
                1, 0, 2
            )
    return out


def fill_nearest(values: np.ndarray) -> np.ndarray:
    """Fill NaN cells of each (lat, lon) slice with the nearest valid cell (for interpolation).

    ``values`` has shape ``(n_time, n_lat, n_lon)``; a cell is invalid when any of its months is
    not finite. Returned unchanged when no cell, or every cell, is invalid.
    """
    invalid = ~np.isfinite(values).all(axis=0)
    if not invalid.any() or invalid.all():
        return values
    _, (rows, cols) = ndimage.distance_transform_edt(invalid, return_indices=True)
    return values[:, rows, cols]


def regrid_separable(coarse: np.ndarray, m_lat: np.ndarray, m_lon: np.ndarray) -> np.ndarray:
    """A whole coarse field ``(time, lat, lon)`` on fine cell centres, float32.

    NaN cells are first filled from the nearest valid cell (:func:`fill_nearest`), so sea does
    not spread; then ``m_lat @ field @ m_lon.T`` per month with the operators of
    :func:`interpolation_matrix` (rows: the fine cells of one chunk).
    """
    filled = fill_nearest(np.asarray(coarse, dtype=np.float64))
    return np.einsum("ij,tjk,lk->til", m_lat, filled, m_lon, optimize=True).astype(np.float32)


def expand_to_fine(coarse: np.ndarray, ratio: int) -> np.ndarray:
    """Repeat each coarse cell ``ratio x ratio`` times over its fine cells (last two axes)."""
    return np.repeat(np.repeat(coarse, ratio, axis=-2), ratio, axis=-1)


def coarse_cell_mean(fine: np.ndarray, weight: np.ndarray, ratio: int) -> np.ndarray:
    """Weighted mean of the fine cells of each coarse cell (``areamean_X`` of docs/science.md 5.3).

    Parameters
    ----------
    fine : ndarray, shape (..., n_lat_fine, n_lon_fine)
        Fine field (a block made of whole coarse cells); NaN cells are left out.
    weight : ndarray, shape (n_lat_fine, n_lon_fine)
        Cell weights, e.g. cell area (m2) times the land mask; 0 leaves a cell out.
    ratio : int
        Fine cells per coarse cell along each axis.

    Returns
    -------
    ndarray, shape (..., n_lat_fine / ratio, n_lon_fine / ratio), float64
        NaN where a coarse cell has no valid fine cell.
    """
    fine = np.asarray(fine, dtype=np.float64)
    *lead, ny, nx = fine.shape
    yb, xb = ny // ratio, nx // ratio
    if yb * ratio != ny or xb * ratio != nx:
        raise ValueError(
            f"fine block {ny} x {nx} is not made of whole coarse cells of {ratio} x {ratio}."
        )
    f = fine.reshape(*lead, yb, ratio, xb, ratio)
    f = np.ascontiguousarray(np.moveaxis(f, -3, -2)).reshape(*lead, yb, xb, ratio * ratio)
    w = np.asarray(weight, dtype=np.float64).reshape(yb, ratio, xb, ratio)
    w = np.ascontiguousarray(w.transpose(0, 2, 1, 3)).reshape(yb, xb, ratio * ratio)
    valid = np.isfinite(f) & (w > 0)
    num = np.where(valid, f * w, 0.0).sum(axis=-1)
    den = np.where(valid, w, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _block_ratio(parent_lat: np.ndarray, parent_lon: np.ndarray, ratio: int) -> None:
    for name, parent in (("parent_lat", parent_lat), ("parent_lon", parent_lon)):
        parent = np.asarray(parent)
        if parent.size % ratio or np.any(parent.reshape(-1, ratio) != parent[::ratio, None]):
            raise ValueError(
                f"{name} does not cover whole coarse cells of {ratio} fine cells; chunk the fine "
                "grid in multiples of the nesting ratio, aligned to coarse-cell edges."
            )


def ratio_weights(
    climatology: np.ndarray,
    cell_weight: np.ndarray,
    ratio: int,
    *,
    eps_mm: float = 1.0,
    clamp: tuple[float, float] = (0.0, 5.0),
) -> np.ndarray:
    """Downscaling weights of the ``ratio`` mode, ``w(x, m) = TF_m(x) / areamean_X(TF_m)``.

    Edge cases of docs/science.md 5.5: the area mean is over land cells only; where it is ``<= eps``
    the weight falls back to 1; weights are clamped to ``clamp`` and then re-normalised to an
    area mean of exactly 1 per coarse cell and month (a coarse cell whose clamped weights are all
    0 falls back to 1).

    Parameters
    ----------
    climatology : ndarray, shape (12, n_lat_fine, n_lon_fine), mm
        Model monthly climatology ``TF_m`` (Eq. 7) of absolute storages.
    cell_weight : ndarray, shape (n_lat_fine, n_lon_fine)
        Area times land mask (0 on sea).
    ratio : int
    eps_mm : float
    clamp : (float, float)

    Returns
    -------
    ndarray, shape (12, n_lat_fine, n_lon_fine), dimensionless; NaN on sea cells.
    """
    clim = np.asarray(climatology, dtype=np.float64)
    land = np.asarray(cell_weight) > 0
    mean = expand_to_fine(coarse_cell_mean(clim, cell_weight, ratio), ratio)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.where(mean > eps_mm, clim / np.where(mean > eps_mm, mean, 1.0), 1.0)
        w = np.where(np.isnan(clim), np.nan, np.clip(w, clamp[0], clamp[1]))
        norm = expand_to_fine(coarse_cell_mean(w, cell_weight, ratio), ratio)
        w = np.where(norm > 0, w / np.where(norm > 0, norm, 1.0), np.where(np.isnan(w), w, 1.0))
    return np.where(land, w, np.nan)


def _interpolate_masked(
    field: np.ndarray,
    m_lat: np.ndarray,
    m_lon: np.ndarray,
    parent_lat: np.ndarray,
    parent_lon: np.ndarray,
    ratio: int,
) -> np.ndarray:
    """Interpolate a coarse field with NaN: NaN cells enter as 0; children of NaN cells are NaN."""
    finite = np.isfinite(field)
    fine = interpolate_separable(np.where(finite, field, 0.0), m_lat, m_lon, ratio)
    if not finite.all():
        parent_ok = finite[:, parent_lat][:, :, parent_lon]
        np.copyto(fine, np.nan, where=~parent_ok)
    return fine


def _conserve(
    fine: np.ndarray, target: np.ndarray, cell_weight: np.ndarray, ratio: int
) -> np.ndarray:
    """Add to each coarse cell's fine cells the constant that makes their area mean ``target``."""
    correction = target - coarse_cell_mean(fine, cell_weight, ratio)
    return fine + expand_to_fine(correction, ratio)


def downscale(
    tg: np.ndarray,
    tf: np.ndarray,
    month: np.ndarray,
    in_baseline: np.ndarray,
    m_lat: np.ndarray,
    m_lon: np.ndarray,
    parent_lat: np.ndarray,
    parent_lon: np.ndarray,
    cell_weight: np.ndarray,
    *,
    ratio: int,
    mode: Mode = "paper",
    tg_filled: np.ndarray | None = None,
    eps_mm: float = 1.0,
    weight_clamp: tuple[float, float] = (0.0, 5.0),
) -> np.ndarray:
    """Downscale GRACE TWSA to the fine grid on one block of whole coarse cells.

    ``mode="paper"`` (Huang et al. 2025, Eq. 6-9, as written):

    - (6) ``TG_m(X) = mean_y TG_{y,m}(X)``; (7) ``TF_m(x) = mean_y TF_{y,m}(x)``, both over the
      baseline months with missing months left out;
    - (8) ``E_{y,m}(X) = TG_{y,m}(X) - TG_m(X)``;
    - (9) ``TD_{y,m}(x) = TF_m(x) + f(E_{y,m})(x)``, ``f`` the interpolation ``m_lat``/``m_lon``.

    The mean over the baseline years of ``TD`` for each calendar month is ``TF_m`` (the
    deviations average to zero), when all coarse cells share the same missing months.

    ``mode="ratio"``: ``TD(x, t) = w(x, m) f(TG)(x, t)`` with :func:`ratio_weights`, then a
    constant per coarse cell and month is added so that the land-area mean equals ``TG(X, t)``
    exactly (zero with ``nearest``, where ``f(TG)`` is the parent value).

    ``mode="remove_restore"``: ``TD(x, t) = f(TG)(x, t) + TF_anom(x, t)`` (``TF_anom`` the model
    anomaly relative to its baseline mean), plus the constant per coarse cell and month that makes
    the land-area mean equal ``TG(X, t)``; with ``nearest`` this is
    ``TG(X, t) + TF_anom(x, t) - areamean_X(TF_anom)(t)`` of docs/science.md 5.3.

    Parameters
    ----------
    tg : ndarray, shape (n_time, n_lat_coarse, n_lon_coarse), mm
        GRACE TWSA on the whole coarse grid; NaN for missing months or cells.
    tf : ndarray, shape (n_time, n_lat_fine, n_lon_fine), mm
        Model total water storage on the block of the fine grid.
    month : ndarray of int, shape (n_time,), calendar month 1-12
    in_baseline : ndarray of bool, shape (n_time,), months of the climatology / anomaly baseline
    m_lat : ndarray, shape (n_lat_fine, n_lat_coarse); m_lon : (n_lon_fine, n_lon_coarse)
        The block's rows of :func:`interpolation_matrix`.
    parent_lat : ndarray of int, shape (n_lat_fine,); parent_lon : (n_lon_fine,)
        Index of the coarse row / column that contains each fine row / column.
    cell_weight : ndarray, shape (n_lat_fine, n_lon_fine)
        Cell area times the land mask (0: sea, output NaN). Used by the area means.
    ratio : int
        Fine cells per coarse cell along each axis (:func:`nesting_ratio`).
    mode : {"paper", "ratio", "remove_restore"}
    tg_filled : ndarray, shape like ``tg``, optional
        Gap-filled GRACE (:func:`harmonic_gap_fill`): it supplies the values of missing months,
        which stay out of the climatology (Eq. 6).
    eps_mm, weight_clamp
        Ratio-mode edge cases (docs/science.md 5.5).

    Returns
    -------
    ndarray, shape (n_time, n_lat_fine, n_lon_fine), float64, mm

    References
    ----------
    Huang et al. 2025, Eq. 6-9; docs/science.md 5.3-5.5.
    """
    tg = np.asarray(tg, dtype=np.float64)
    tf = np.asarray(tf)  # converted to float64 month by month where it is used
    if not np.issubdtype(tf.dtype, np.floating):
        tf = tf.astype(np.float64)
    month = np.asarray(month)
    in_baseline = np.asarray(in_baseline, dtype=bool)
    parent_lat = np.asarray(parent_lat, dtype=np.intp)
    parent_lon = np.asarray(parent_lon, dtype=np.intp)
    cell_weight = np.asarray(cell_weight, dtype=np.float64)
    _block_ratio(parent_lat, parent_lon, ratio)
    values = tg if tg_filled is None else np.where(np.isnan(tg), tg_filled, tg)

    if mode == "paper":
        tg_clim = monthly_climatology(tg, month, in_baseline)  # Eq. 6
        tf_clim = monthly_climatology(tf, month, in_baseline)  # Eq. 7
        deviation = monthly_deviation(values, month, tg_clim)  # Eq. 8
        # Eq. 9, TF_m + f(E), summed in place month by month (no further float64 cube)
        td = _interpolate_masked(deviation, m_lat, m_lon, parent_lat, parent_lon, ratio)
        for t, m in enumerate(month):
            td[t] += tf_clim[m - 1]
        np.copyto(td, np.nan, where=~(cell_weight > 0))
        return td
    elif mode in ("ratio", "remove_restore"):
        parent = values[:, parent_lat[::ratio]][:, :, parent_lon[::ratio]]
        smooth = _interpolate_masked(values, m_lat, m_lon, parent_lat, parent_lon, ratio)
        if mode == "ratio":
            tf_clim = monthly_climatology(tf, month, in_baseline)
            weights = ratio_weights(tf_clim, cell_weight, ratio, eps_mm=eps_mm, clamp=weight_clamp)
            first = weights[month - 1] * smooth
        else:
            first = smooth + anomaly(tf, in_baseline, axis=0)
        td = _conserve(first, parent, cell_weight, ratio)
    else:
        raise ValueError(
            f"unknown downscaling mode {mode!r}; choose 'paper', 'ratio' or 'remove_restore'."
        )
    return np.where(cell_weight > 0, td, np.nan)


# --------------------------------------------------------------------------------------------
# Water balance and gaps
# --------------------------------------------------------------------------------------------


def groundwater_storage_anomaly(
    twsa: np.ndarray, smsa: np.ndarray, swesa: np.ndarray, cwsa: np.ndarray
) -> np.ndarray:
    """Groundwater storage anomaly by water balance (Huang et al. 2025, Eq. 10).

    ``GWSA = TWSA - SMSA - SWESA - CWSA``, all anomalies in mm on one baseline (surface water
    neglected, as in the paper).

    Parameters
    ----------
    twsa, smsa, swesa, cwsa : ndarray, broadcastable shapes, mm

    Returns
    -------
    ndarray, mm
    """
    return (
        np.asarray(twsa, dtype=np.float64)
        - np.asarray(smsa, dtype=np.float64)
        - np.asarray(swesa, dtype=np.float64)
        - np.asarray(cwsa, dtype=np.float64)
    )


def harmonic_gap_fill(
    x: np.ndarray, t_years: np.ndarray, *, min_valid: int = 24
) -> tuple[np.ndarray, np.ndarray]:
    """Fill missing months from a fitted trend + annual + semi-annual model (docs/science.md 5.2 b).

    Parameters
    ----------
    x : ndarray, shape (n_time, ...), mm
    t_years : ndarray, shape (n_time,), decimal years
    min_valid : int
        Series with fewer valid months are not filled.

    Returns
    -------
    filled : ndarray, shape like ``x``, float64
    was_filled : ndarray of bool, shape like ``x``
        True where a missing value was replaced (the ``filled_flag`` of docs/science.md 5.6 is its
        any() over space).
    """
    x = np.asarray(x, dtype=np.float64)
    moved = np.moveaxis(x, 0, -1)
    fit = fit_harmonic_trend(moved, t_years, hac_lags=0, min_valid=min_valid)
    design = harmonic_design(np.asarray(t_years, dtype=np.float64))
    coef = fit["coefficients"]
    model = np.zeros(moved.shape)
    for k in range(design.shape[1]):
        model += coef[..., k, None] * design[:, k]
    missing = np.isnan(moved) & np.isfinite(model)
    filled = np.where(missing, model, moved)
    return np.moveaxis(filled, -1, 0), np.moveaxis(missing, -1, 0)
