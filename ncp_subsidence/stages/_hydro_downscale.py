"""Stage ``hydro`` (private): GRACE TWSA downscaled to the fine grid (Eq. 6-9), lazily, and
the coarse-cell mass diagnostic.

Chunking: the fine grid is cut in spatial chunks of ``chunk_cells`` fine cells, a multiple of the
nesting ratio (25 for 0.01 deg in 0.25 deg) and aligned to coarse-cell edges, so a coarse cell is
never split across chunks; the whole time axis is in every chunk. The coarse GRACE field (28 x 32
cells x 245 months for the plain, under 2 MB) is one chunk, handed whole to every fine chunk.
"""

from __future__ import annotations

import logging
from typing import Literal

import dask.array as da
import numpy as np
import xarray as xr

from ncp_subsidence.errors import DataError
from ncp_subsidence.kernels import downscale as kds
from ncp_subsidence.kernels import trends as ktr
from ncp_subsidence.progress import readable

from ._hydro_grids import (
    _SPATIAL,
    REFERENCE,
    _baseline,
    _months,
    _require_dims,
    _spatial_chunks,
    fine_cell_weight,
    nest_grids,
)

__all__ = ["coarse_mass_diagnostic", "downscale_twsa"]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Downscaling (Eq. 6-9 and the options)
# --------------------------------------------------------------------------------------------


def _downscale_block(
    tf: np.ndarray,
    tg: np.ndarray,
    tg_filled: np.ndarray,
    m_lat: np.ndarray,
    m_lon: np.ndarray,
    parent_lat: np.ndarray,
    parent_lon: np.ndarray,
    weight: np.ndarray,
    *,
    month: np.ndarray,
    in_baseline: np.ndarray,
    ratio: int,
    mode: str,
    eps_mm: float,
    weight_clamp: tuple[float, float],
    out_dtype: np.dtype,
) -> np.ndarray:
    out = kds.downscale(
        tg, tf, month, in_baseline, m_lat, m_lon, parent_lat, parent_lon, weight,
        ratio=ratio, mode=mode, tg_filled=tg_filled, eps_mm=eps_mm, weight_clamp=weight_clamp,
    )  # fmt: skip
    return out.astype(out_dtype, copy=False)


def _gap_fill_block(tg: np.ndarray, *, t_years: np.ndarray, min_valid: int) -> np.ndarray:
    filled, was_filled = kds.harmonic_gap_fill(tg, t_years, min_valid=min_valid)
    return np.stack([filled, was_filled.astype(np.float64)])


def downscale_twsa(
    twsa_coarse: xr.DataArray,
    model_fine: xr.DataArray,
    *,
    mode: Literal["paper", "ratio", "remove_restore"] = "paper",
    interpolation: Literal["cubic", "bilinear", "nearest"] = "cubic",
    baseline: str | tuple[str, str] | None = "study",
    land_mask: xr.DataArray | None = None,
    gap_fill: Literal["none", "harmonic"] = "none",
    gap_fill_min_months: int = 24,
    eps_mm: float = 1.0,
    weight_clamp: tuple[float, float] = (0.0, 5.0),
    chunk_cells: int = 250,
    dtype: np.dtype | type = np.float32,
) -> xr.DataArray:
    """Downscale GRACE TWSA from 0.25 deg to the fine model grid (lazy).

    Parameters
    ----------
    twsa_coarse : xr.DataArray, dims (time, lat, lon), mm
        GRACE TWSA on the coarse grid (convert cm with
        :func:`~ncp_subsidence.kernels.downscale.grace_cm_to_mm`); NaN for missing months.
    model_fine : xr.DataArray, dims (time, lat, lon), mm
        Model total water storage (TF, Eq. 7) on the fine grid, nested in the coarse grid, on the
        same calendar months as ``twsa_coarse``. Absolute storages for ``mode="ratio"``.
    mode : {"paper", "ratio", "remove_restore"}
        Eq. 6-9 as the paper writes them (default), or a mass-conserving option
        (:func:`~ncp_subsidence.kernels.downscale.downscale`).
    interpolation : {"cubic", "bilinear", "nearest"}
        Coarse-to-fine interpolation ``f``: cubic spline (default), bilinear, parent cell.
    baseline : "study", "YYYY-MM/YYYY-MM", (start, end) or None
        Months of the climatology (Eq. 6-7) and of the model anomaly (remove_restore).
        ``"study"``/None: all months (docs/science.md 5.2 default).
    land_mask : xr.DataArray of bool, dims (lat, lon), optional
        On the fine grid; sea cells come out NaN and are left out of every area mean.
    gap_fill : {"none", "harmonic"}
        Missing GRACE months stay NaN, or are filled per coarse cell from a fitted trend +
        annual + semi-annual model (kept out of the climatology) and flagged.
    gap_fill_min_months : int
        Coarse cells with fewer valid months are not filled.
    eps_mm, weight_clamp
        Ratio-mode edge cases (docs/science.md 5.5).
    chunk_cells : int
        Spatial chunk edge in fine cells; a multiple of the nesting ratio.
    dtype
        Output dtype (float32 for cubes; the kernels compute in float64).

    Returns
    -------
    xr.DataArray, dims (time, lat, lon), ``dtype``, mm, named ``twsa``
        Chunked ``{time: -1, lat: chunk_cells, lon: chunk_cells}``, with the coordinate
        ``filled_flag(time)`` (True where any coarse cell was gap-filled) and provenance attrs.

    Raises
    ------
    DataError
        Wrong dims, grids that do not nest, different months, a chunk that is not a multiple of
        the ratio, an unknown option.
    """
    _require_dims(twsa_coarse, ("time", *_SPATIAL), "twsa_coarse")
    _require_dims(model_fine, ("time", *_SPATIAL), "model_fine")
    if mode not in ("paper", "ratio", "remove_restore"):
        raise DataError(f"mode {mode!r} is unknown; choose 'paper', 'ratio' or 'remove_restore'.")
    if interpolation not in ("cubic", "bilinear", "nearest"):
        raise DataError(
            f"interpolation {interpolation!r} is unknown; choose 'cubic', 'bilinear' or 'nearest'."
        )
    if gap_fill not in ("none", "harmonic"):
        raise DataError(f"gap_fill {gap_fill!r} is unknown; choose 'none' or 'harmonic'.")
    twsa_coarse = twsa_coarse.transpose("time", *_SPATIAL)
    model_fine = model_fine.transpose("time", *_SPATIAL)
    months = _months(model_fine["time"])
    if not np.array_equal(_months(twsa_coarse["time"]), months):
        raise DataError(
            f"twsa_coarse has {twsa_coarse.sizes['time']} months and model_fine "
            f"{model_fine.sizes['time']}, or they differ; select the same calendar months in both."
        )
    nest = nest_grids(twsa_coarse, model_fine)
    ratio = nest.ratio
    if chunk_cells % ratio:
        raise DataError(
            f"chunk_cells={chunk_cells} is not a multiple of the nesting ratio {ratio}; a coarse "
            f"cell would be split across chunks. Use a multiple of {ratio}."
        )
    lat_chunks = _spatial_chunks(model_fine.sizes["lat"], chunk_cells)
    lon_chunks = _spatial_chunks(model_fine.sizes["lon"], chunk_cells)
    log.info(
        "hydro: downscaling %s -> %s (ratio %d, mode=%s, %s), chunks time=-1, lat=%s, lon=%s",
        readable(dict(twsa_coarse.sizes)), readable(dict(model_fine.sizes)), ratio, mode,
        interpolation,
        lat_chunks[0], lon_chunks[0],
    )  # fmt: skip

    times = np.asarray(model_fine["time"].values, dtype="datetime64[ns]")
    month = ktr.month_of_year(times)
    in_baseline = _baseline(times, baseline)

    tf = model_fine.chunk({"time": -1, "lat": lat_chunks, "lon": lon_chunks}).data
    coarse = nest.coarse
    tg = da.asarray(coarse.data).astype(np.float64).rechunk(-1)
    if gap_fill == "harmonic":
        stacked = da.map_blocks(
            _gap_fill_block, tg, t_years=ktr.decimal_year(times), min_valid=gap_fill_min_months,
            new_axis=0, chunks=((2,), *tg.chunks), dtype=np.float64,
        )  # fmt: skip
        tg_filled = stacked[0]
        filled_flag = (stacked[1] > 0).any(axis=(1, 2))
    else:
        tg_filled = tg
        filled_flag = np.zeros(times.size, dtype=bool)

    m_lat = kds.interpolation_matrix(coarse["lat"].values, model_fine["lat"].values, interpolation)
    m_lon = kds.interpolation_matrix(coarse["lon"].values, model_fine["lon"].values, interpolation)
    weight = fine_cell_weight(model_fine, land_mask)
    weight_data = da.asarray(weight.data).rechunk((lat_chunks, lon_chunks))
    data = da.blockwise(
        _downscale_block, "tyx",
        tf, "tyx",
        tg, "tYX",
        tg_filled, "tYX",
        da.from_array(m_lat, chunks=(lat_chunks, -1)), "yY",
        da.from_array(m_lon, chunks=(lon_chunks, -1)), "xX",
        da.from_array(nest.parent_lat, chunks=(lat_chunks,)), "y",
        da.from_array(nest.parent_lon, chunks=(lon_chunks,)), "x",
        weight_data, "yx",
        concatenate=True,
        dtype=np.dtype(dtype),
        meta=np.empty((0, 0, 0), dtype=dtype),
        month=month, in_baseline=in_baseline, ratio=ratio, mode=mode, eps_mm=eps_mm,
        weight_clamp=weight_clamp, out_dtype=np.dtype(dtype),
    )  # fmt: skip
    out = xr.DataArray(
        data,
        dims=("time", *_SPATIAL),
        coords={
            "time": model_fine["time"],
            "lat": model_fine["lat"],
            "lon": model_fine["lon"],
            "filled_flag": ("time", filled_flag),
        },
        name="twsa",
        attrs={
            "units": "mm",
            "long_name": "terrestrial water storage anomaly downscaled from GRACE",
            "downscaling_mode": mode,
            "interpolation": interpolation,
            "baseline": str(baseline),
            "gap_fill": gap_fill,
            "nesting_ratio": ratio,
            "references": REFERENCE,
        },
    )
    out["filled_flag"].attrs = {"long_name": "GRACE month filled by the gap-fill model"}
    return out


# --------------------------------------------------------------------------------------------
# Diagnostic: coarse-cell area mean of TD against TG, per mode
# --------------------------------------------------------------------------------------------


def _cell_mean_block(fine: np.ndarray, weight: np.ndarray, *, ratio: int) -> np.ndarray:
    return kds.coarse_cell_mean(fine, weight, ratio)


def coarse_mass_diagnostic(
    twsa_fine: xr.DataArray,
    twsa_coarse: xr.DataArray,
    *,
    land_mask: xr.DataArray | None = None,
) -> xr.Dataset:
    """Coarse-cell land-area mean of the downscaled field against GRACE (lazy).

    The mass-conserving modes give ``difference == 0`` (to rounding); the paper's form departs
    from it, and by how much is a result worth reporting (docs/science.md 5.3).

    Parameters
    ----------
    twsa_fine : xr.DataArray, dims (time, lat, lon), mm
        Output of :func:`downscale_twsa`, chunked in multiples of the nesting ratio.
    twsa_coarse : xr.DataArray, dims (time, lat, lon), mm
        The GRACE field it was downscaled from.
    land_mask : xr.DataArray of bool, dims (lat, lon), optional
        The mask used for downscaling (the weighting is cell area times land).

    Returns
    -------
    xr.Dataset
        ``fine_mean`` and ``grace`` (time, lat, lon on the coarse cells the fine grid covers),
        ``difference = fine_mean - grace``, and the scalars ``max_abs_difference`` and
        ``rms_difference`` (mm).
    """
    nest = nest_grids(twsa_coarse.transpose("time", *_SPATIAL), twsa_fine)
    r = nest.ratio
    fine = twsa_fine.transpose("time", *_SPATIAL)
    if fine.chunks is None or any(c % r for dim in _SPATIAL for c in fine.chunksizes[dim][:-1]):
        fine = fine.chunk({"time": -1, "lat": 10 * r, "lon": 10 * r})
    weight = fine_cell_weight(fine, land_mask)
    weight_data = da.asarray(weight.data).rechunk((fine.chunks[1], fine.chunks[2]))
    means = da.blockwise(
        _cell_mean_block, "tyx",
        fine.data, "tyx",
        weight_data, "yx",
        adjust_chunks={"y": lambda c: c // r, "x": lambda c: c // r},
        dtype=np.float64, meta=np.empty((0, 0, 0)), ratio=r,
    )  # fmt: skip
    grace = nest.coarse.isel(lat=nest.parent_lat[::r], lon=nest.parent_lon[::r])
    fine_mean = xr.DataArray(
        means, dims=grace.dims, coords=grace.coords, name="fine_mean", attrs={"units": "mm"}
    )
    difference = (fine_mean - grace).assign_attrs(units="mm")
    return xr.Dataset(
        {
            "fine_mean": fine_mean,
            "grace": grace.astype(np.float64),
            "difference": difference,
            "max_abs_difference": abs(difference).max().assign_attrs(units="mm"),
            "rms_difference": np.sqrt((difference**2).mean()).assign_attrs(units="mm"),
        },
        attrs={"downscaling_mode": twsa_fine.attrs.get("downscaling_mode", "unknown")},
    )
