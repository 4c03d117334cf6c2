"""Stage ``hydro`` (private): grids, times, baselines, chunks and model regridding.

Checks that the fine grid nests in GRACE's coarse grid, weights fine cells by area and land,
turns the ``hydro.baseline`` option into a month mask, and interpolates model fields onto the
fine grid lazily (:func:`regrid_to_fine`). Graph building only: the numbers are computed by
:mod:`ncp_subsidence.kernels.downscale`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import dask.array as da
import numpy as np
import xarray as xr

from ncp_subsidence.errors import DataError
from ncp_subsidence.kernels import downscale as kds

__all__ = [
    "REFERENCE",
    "NestedGrids",
    "fine_cell_weight",
    "nest_grids",
    "regrid_to_fine",
]

REFERENCE = "Huang et al. 2025, J. Groundwater Sci. Eng. 13(1):74-89, Eq. 6-10"
_SPATIAL = ("lat", "lon")


# --------------------------------------------------------------------------------------------
# Grids, times, baselines
# --------------------------------------------------------------------------------------------


def _require_dims(arr: xr.DataArray, dims: tuple[str, ...], name: str) -> None:
    if set(arr.dims) != set(dims):
        raise DataError(
            f"{name} has dims {arr.dims}; expected {dims}. Rename or transpose the input "
            "(dims are time, lat, lon on EPSG:4326 cell centres)."
        )


def _step(coord: xr.DataArray, name: str) -> float:
    values = np.asarray(coord.values, dtype=np.float64)
    if values.size < 2:
        raise DataError(
            f"{name} has {values.size} cell(s); a grid needs at least 2 along each axis."
        )
    diffs = np.diff(values)
    step = float(np.mean(diffs))
    if not np.allclose(diffs, step, rtol=1e-6, atol=1e-9):
        raise DataError(
            f"{name} is not a regular grid (steps from {diffs.min()} to {diffs.max()} deg); "
            "regrid onto a regular cell-registered grid first."
        )
    return step


@dataclass(frozen=True)
class NestedGrids:
    """How a fine grid nests in a coarse grid.

    Attributes
    ----------
    ratio : int
        Fine cells per coarse cell along each axis.
    parent_lat, parent_lon : ndarray of int, shapes (n_lat_fine,), (n_lon_fine,)
        Coarse row / column holding each fine row / column, in the coarse grid as given to the
        kernels (``coarse``, re-oriented like the fine grid).
    coarse : xr.DataArray
        The coarse field, its lat/lon flipped if needed so that both grids run the same way.
    """

    ratio: int
    parent_lat: np.ndarray
    parent_lon: np.ndarray
    coarse: xr.DataArray


def nest_grids(coarse: xr.DataArray, fine: xr.DataArray) -> NestedGrids:
    """Check that ``fine`` nests in ``coarse`` (whole coarse cells) and index the parents.

    Either grid may have descending latitude (north-up); the coarse field is flipped to run like
    the fine grid. The fine grid may cover a window of the coarse grid, provided its edges are
    coarse-cell edges.

    Raises
    ------
    DataError
        If the steps are not integer multiples, the edges do not line up, or the fine grid
        reaches outside the coarse grid.
    """
    parents = {}
    ratio = None
    for dim in _SPATIAL:
        step_c, step_f = _step(coarse[dim], f"coarse {dim}"), _step(fine[dim], f"fine {dim}")
        if np.sign(step_c) != np.sign(step_f):
            coarse = coarse.isel({dim: slice(None, None, -1)})
            step_c = -step_c
        try:
            r = kds.nesting_ratio(step_c, step_f)
        except ValueError as err:
            raise DataError(str(err)) from err
        if ratio is not None and r != ratio:
            raise DataError(f"nesting ratio {r} along {dim} differs from {ratio} along lat.")
        ratio = r
        edge_c = float(coarse[dim].values[0]) - step_c / 2
        edge_f = float(fine[dim].values[0]) - step_f / 2
        offset = (edge_f - edge_c) / step_c
        k = round(offset)
        n_f = fine.sizes[dim]
        if abs(offset - k) > 1e-3 / r or k < 0 or n_f % r or k + n_f // r > coarse.sizes[dim]:
            raise DataError(
                f"the fine {dim} grid (first edge {edge_f}, {n_f} cells) is not made of whole "
                f"coarse cells inside the coarse grid (first edge {edge_c}, step {step_c}); "
                "crop or pad the fine grid to coarse-cell edges."
            )
        parents[dim] = k + np.arange(n_f) // r
    assert ratio is not None
    return NestedGrids(ratio, parents["lat"], parents["lon"], coarse)


def fine_cell_weight(fine: xr.DataArray, land_mask: xr.DataArray | None = None) -> xr.DataArray:
    """Cell area (m2, exact spherical) times the land mask on the fine grid, dims (lat, lon).

    This is the weighting of every coarse-cell area mean of the stage (ratio weights,
    mass-conserving corrections, the mass diagnostic). Sea cells weigh 0.
    """
    step_lat, step_lon = _step(fine["lat"], "fine lat"), _step(fine["lon"], "fine lon")
    area = kds.cell_area_m2(fine["lat"].values, step_lat, step_lon)
    weight = xr.DataArray(area, dims="lat", coords={"lat": fine["lat"]}) * xr.ones_like(
        fine["lon"], dtype=np.float64
    )
    if land_mask is not None:
        _require_dims(land_mask, _SPATIAL, "land_mask")
        land_mask = land_mask.transpose(*_SPATIAL)
        for dim in _SPATIAL:
            if land_mask.sizes[dim] != fine.sizes[dim] or not np.allclose(
                land_mask[dim].values, fine[dim].values, rtol=0, atol=1e-6
            ):
                raise DataError(
                    f"land_mask {dim} does not match the fine grid ({land_mask.sizes[dim]} vs "
                    f"{fine.sizes[dim]} cells); pass the mask on the fine grid."
                )
        land = land_mask.astype(bool).assign_coords(lat=fine["lat"], lon=fine["lon"])
        weight = weight * land
    return weight.transpose("lat", "lon").rename("cell_weight")


def _months(time: xr.DataArray) -> np.ndarray:
    return np.asarray(time.values, dtype="datetime64[ns]").astype("datetime64[M]")


def _baseline(times: np.ndarray, baseline: str | tuple[str, str] | None) -> np.ndarray:
    if baseline is None or baseline == "study":
        return kds.baseline_mask(times)
    if isinstance(baseline, str):
        if "/" not in baseline:
            raise DataError(
                f"baseline {baseline!r} is neither 'study' nor a range like '2004-01/2009-12'."
            )
        start, end = baseline.split("/", 1)
    else:
        start, end = baseline
    keep = kds.baseline_mask(times, start or None, end or None)
    if not keep.any():
        raise DataError(
            f"baseline {baseline!r} holds none of the months {times[0]}..{times[-1]}; choose a "
            "baseline inside the data, or 'study'."
        )
    return keep


def _spatial_chunks(n: int, chunk_cells: int) -> tuple[int, ...]:
    full, rest = divmod(n, chunk_cells)
    return (chunk_cells,) * full + ((rest,) if rest else ())


# --------------------------------------------------------------------------------------------
# Model fields onto the fine grid
# --------------------------------------------------------------------------------------------


def regrid_to_fine(
    coarse: xr.DataArray,
    lat: np.ndarray,
    lon: np.ndarray,
    *,
    method: Literal["cubic", "bilinear", "nearest"] = "cubic",
    chunk_cells: int = 250,
) -> xr.DataArray:
    """Interpolate a model field ``(time, lat, lon)`` onto fine cell centres, lazily.

    [H25] interpolate each land-surface-model component to 0.01 deg with cubic splines; the
    separable operators of :func:`ncp_subsidence.kernels.downscale.interpolation_matrix` are
    applied per fine chunk, each chunk reading the whole coarse field (a few MB) from its source
    (no data are embedded in the graph). NaN cells (sea) are filled from the nearest valid cell
    first so they do not spread; mask the result afterwards.
    """
    _require_dims(coarse, ("time", *_SPATIAL), coarse.name or "model field")
    coarse = coarse.transpose("time", "lat", "lon")
    source = coarse.data if isinstance(coarse.data, da.Array) else da.from_array(coarse.values)
    source = source.rechunk(-1)
    rows = _spatial_chunks(lat.size, chunk_cells)
    cols = _spatial_chunks(lon.size, chunk_cells)
    m_lat = da.from_array(
        kds.interpolation_matrix(coarse["lat"].values, lat, method), chunks=(rows, -1)
    )
    m_lon = da.from_array(
        kds.interpolation_matrix(coarse["lon"].values, lon, method), chunks=(cols, -1)
    )
    data = da.blockwise(
        kds.regrid_separable, "tyx",
        source, "tab",
        m_lat, "ya",
        m_lon, "xb",
        concatenate=True, dtype=np.float32, meta=np.empty((0, 0, 0), np.float32),
    )  # fmt: skip
    return xr.DataArray(
        data,
        dims=("time", "lat", "lon"),
        coords={"time": coarse["time"].values, "lat": lat, "lon": lon},
        name=coarse.name,
        attrs=dict(coarse.attrs),
    )
