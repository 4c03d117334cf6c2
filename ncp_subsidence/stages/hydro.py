"""Stage ``hydro``: GRACE downscaling to 0.01 deg, GWSA and per-pixel trends (graph building only).

This module is the xarray/dask wrapper layer over :mod:`ncp_subsidence.kernels.downscale` and
:mod:`ncp_subsidence.kernels.trends`: it checks grids and times, decides chunks, and maps the
kernels over chunks with explicit dims, dtypes and sizes. No number is computed here and no graph
is computed while it is built.

Chunking: the fine grid is cut in spatial chunks of ``chunk_cells`` fine cells, a multiple of the
nesting ratio (25 for 0.01 deg in 0.25 deg) and aligned to coarse-cell edges, so a coarse cell is
never split across chunks; the whole time axis is in every chunk. The coarse GRACE field (28 x 32
cells x 245 months for the plain, under 2 MB) is one chunk, handed whole to every fine chunk.

References
----------
Huang ZH, Huo ZB, et al. 2025. J. Groundwater Sci. Eng. 13(1):74-89, Eq. 6-10.
Save H, Bettadpur S, Tapley BD. 2016. J. Geophys. Res. Solid Earth 121:7547-7569.
Mann 1945; Kendall 1975; Sen 1968; Hamed & Rao 1998 (trend statistics, see the kernels).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import dask.array as da
import numpy as np
import xarray as xr

from ncp_subsidence.errors import DataError
from ncp_subsidence.kernels import downscale as kds
from ncp_subsidence.kernels import trends as ktr

__all__ = [
    "STAGE",
    "HydroStage",
    "regrid_to_fine",
    "NestedGrids",
    "coarse_mass_diagnostic",
    "downscale_twsa",
    "fine_cell_weight",
    "gwsa_water_balance",
    "nest_grids",
    "trend_dataset",
]

log = logging.getLogger(__name__)

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
        ``"study"``/None: all months (SCIENCE.md 5.2 default).
    land_mask : xr.DataArray of bool, dims (lat, lon), optional
        On the fine grid; sea cells come out NaN and are left out of every area mean.
    gap_fill : {"none", "harmonic"}
        Missing GRACE months stay NaN, or are filled per coarse cell from a fitted trend +
        annual + semi-annual model (kept out of the climatology) and flagged.
    gap_fill_min_months : int
        Coarse cells with fewer valid months are not filled.
    eps_mm, weight_clamp
        Ratio-mode edge cases (SCIENCE.md 5.5).
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
        dict(twsa_coarse.sizes), dict(model_fine.sizes), ratio, mode, interpolation,
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
# Water balance (Eq. 10)
# --------------------------------------------------------------------------------------------


def _balance_block(
    twsa: np.ndarray, sm: np.ndarray, swe: np.ndarray, cw: np.ndarray, *, in_baseline, dtype
) -> tuple[np.ndarray, ...]:
    terms = [kds.anomaly(x, in_baseline, axis=-1) for x in (twsa, sm, swe, cw)]
    gwsa = kds.groundwater_storage_anomaly(*terms)
    return tuple(x.astype(dtype, copy=False) for x in (*terms, gwsa))


def gwsa_water_balance(
    twsa: xr.DataArray,
    soil_moisture: xr.DataArray,
    swe: xr.DataArray,
    canopy_water: xr.DataArray,
    *,
    baseline: str | tuple[str, str] | None = "study",
    dtype: np.dtype | type = np.float32,
) -> xr.Dataset:
    """Groundwater storage anomaly by water balance (Huang et al. 2025, Eq. 10), lazy.

    Every term is turned into an anomaly on **one** common baseline (SCIENCE.md 5.2), TWSA
    included, then ``GWSA = TWSA - SMSA - SWESA - CWSA``.

    Parameters
    ----------
    twsa : xr.DataArray, dims (time, lat, lon), mm
        Downscaled TWSA (:func:`downscale_twsa`).
    soil_moisture, swe, canopy_water : xr.DataArray, dims (time, lat, lon), mm
        Model storages on the same fine grid and months (soil moisture 0-2 m, snow water
        equivalent, canopy water), absolute or anomalies.
    baseline : "study", "YYYY-MM/YYYY-MM", (start, end) or None
    dtype
        Output dtype.

    Returns
    -------
    xr.Dataset, dims (time, lat, lon), mm
        ``twsa``, ``smsa``, ``swesa``, ``cwsa``, ``gwsa``, chunked like ``twsa`` in space with
        the whole time axis.
    """
    arrays = [twsa, soil_moisture, swe, canopy_water]
    for arr, name in zip(arrays, ("twsa", "soil_moisture", "swe", "canopy_water"), strict=True):
        _require_dims(arr, ("time", *_SPATIAL), name)
    try:
        arrays = list(xr.align(*arrays, join="exact"))
    except ValueError as err:
        raise DataError(
            "twsa and the model storages are not on the same grid and months; regrid them to "
            "the fine grid first."
        ) from err
    times = np.asarray(arrays[0]["time"].values, dtype="datetime64[ns]")
    in_baseline = _baseline(times, baseline)
    chunks = {"time": -1}
    if arrays[0].chunks is not None:
        chunks.update({d: c for d, c in arrays[0].chunksizes.items() if d in _SPATIAL})
    arrays = [a.drop_vars("filled_flag", errors="ignore").chunk(chunks) for a in arrays]
    outputs = xr.apply_ufunc(
        _balance_block,
        *arrays,
        input_core_dims=[["time"]] * 4,
        output_core_dims=[["time"]] * 5,
        dask="parallelized",
        output_dtypes=[np.dtype(dtype)] * 5,
        kwargs={"in_baseline": in_baseline, "dtype": np.dtype(dtype)},
    )
    names = {
        "twsa": "terrestrial water storage anomaly",
        "smsa": "soil moisture storage anomaly (0-2 m)",
        "swesa": "snow water equivalent storage anomaly",
        "cwsa": "canopy water storage anomaly",
        "gwsa": "groundwater storage anomaly (water balance)",
    }
    result = xr.Dataset(
        {
            name: out.transpose("time", *_SPATIAL).assign_attrs(
                units="mm", long_name=long_name, baseline=str(baseline)
            )
            for (name, long_name), out in zip(names.items(), outputs, strict=True)
        }
    )
    if "filled_flag" in twsa.coords:
        result = result.assign_coords(filled_flag=twsa["filled_flag"])
    result.attrs["references"] = REFERENCE + " (Eq. 10)"
    return result


# --------------------------------------------------------------------------------------------
# Trends (SCIENCE.md 6.2)
# --------------------------------------------------------------------------------------------


def _trend_block(y: np.ndarray, **kwargs) -> np.ndarray:
    dtype = kwargs.pop("dtype")
    return ktr.trend_statistics(y, **kwargs).astype(dtype, copy=False)


def trend_dataset(
    series: xr.DataArray,
    *,
    prefix: str = "gwsa",
    hac_lags: int = 3,
    min_months: int = 24,
    deseasonalise: bool = True,
    hamed_rao: bool = True,
    hamed_rao_max_lag: int | None = 3,
    alpha: float = 0.05,
    dtype: np.dtype | type = np.float32,
) -> xr.Dataset:
    """Per-pixel trend, seasonality and Mann-Kendall statistics of a monthly cube (lazy).

    Parameters
    ----------
    series : xr.DataArray, dims (time, ...), e.g. GWSA (time, lat, lon) in mm
        Monthly values on mid-month (or any within-month) time stamps; NaN = missing.
    prefix : str
        Name stem of the OLS trend variables (``{prefix}_trend``, ``{prefix}_trend_stderr``).
    hac_lags, min_months, deseasonalise, hamed_rao, hamed_rao_max_lag, alpha
        See :func:`ncp_subsidence.kernels.trends.trend_statistics`.
    dtype
        Output dtype.

    Returns
    -------
    xr.Dataset, dims of ``series`` without time
        ``{prefix}_trend`` and ``{prefix}_trend_stderr`` (OLS with annual + semi-annual terms,
        units/yr, Newey-West SE), ``sen_slope`` (units/yr, deseasonalised), ``mk_z``, ``mk_p``
        (Mann-Kendall, Hamed-Rao corrected), ``annual_amplitude`` (units),
        ``annual_phase`` (month of peak, 0-12 from 1 January), ``mk_s``, ``n_valid``.
    """
    if "time" not in series.dims:
        raise DataError(f"series has dims {series.dims}; it needs a 'time' dimension.")
    times = np.asarray(series["time"].values, dtype="datetime64[ns]")
    if times.size > 1 and not np.all(np.diff(times) > np.timedelta64(0, "ns")):
        raise DataError("series time stamps are not strictly increasing; sort by time first.")
    if series.chunks is not None:
        series = series.chunk({"time": -1})
    series = series.drop_vars("filled_flag", errors="ignore")
    n_stats = len(ktr.TREND_STATISTICS)
    stacked = xr.apply_ufunc(
        _trend_block,
        series,
        input_core_dims=[["time"]],
        output_core_dims=[["statistic"]],
        dask="parallelized",
        output_dtypes=[np.dtype(dtype)],
        dask_gufunc_kwargs={"output_sizes": {"statistic": n_stats}},
        kwargs={
            "t": ktr.decimal_year(times),
            "month": ktr.month_of_year(times),
            "hac_lags": hac_lags,
            "min_valid": min_months,
            "deseasonalise_first": deseasonalise,
            "hamed_rao": hamed_rao,
            "hamed_rao_max_lag": hamed_rao_max_lag,
            "alpha": alpha,
            "dtype": np.dtype(dtype),
        },
    )
    units = series.attrs.get("units", "")
    rate = f"{units}/yr" if units else "1/yr"
    meta = {
        "ols_slope": (f"{prefix}_trend", rate, "OLS trend with annual and semi-annual terms"),
        "ols_slope_stderr": (
            f"{prefix}_trend_stderr",
            rate,
            f"standard error of the OLS trend (Newey-West, {hac_lags} lags)"
            if hac_lags > 0
            else "standard error of the OLS trend",
        ),
        "sen_slope": ("sen_slope", rate, "Sen's slope of the deseasonalised series"),
        "mk_z": (
            "mk_z",
            "1",
            "Mann-Kendall Z (Hamed-Rao corrected)" if hamed_rao else "Mann-Kendall Z",
        ),
        "mk_p": ("mk_p", "1", "Mann-Kendall two-sided p-value"),
        "annual_amplitude": ("annual_amplitude", units, "amplitude of the annual term"),
        "annual_phase": ("annual_phase", "month", "month of the annual peak, 0-12 from 1 January"),
        "mk_s": ("mk_s", "1", "Mann-Kendall S"),
        "n_valid": ("n_valid", "1", "number of valid months"),
    }
    data_vars = {}
    for i, key in enumerate(ktr.TREND_STATISTICS):
        name, unit, long_name = meta[key]
        data_vars[name] = stacked.isel(statistic=i, drop=True).assign_attrs(
            units=unit, long_name=long_name
        )
    out = xr.Dataset(data_vars)
    out.attrs.update(
        references="Mann 1945; Kendall 1975; Sen 1968; Hamed & Rao 1998; Newey & West 1987; "
        + REFERENCE,
        min_months=min_months,
        deseasonalised=int(deseasonalise),
    )
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
    from it, and by how much is a result worth reporting (SCIENCE.md 5.3).

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


# --------------------------------------------------------------------------------------------
# The pipeline stage
# --------------------------------------------------------------------------------------------


def _fill_nearest(values: np.ndarray) -> np.ndarray:
    """Fill NaN cells of each (lat, lon) slice with the nearest valid cell (for interpolation)."""
    from scipy import ndimage

    invalid = ~np.isfinite(values).all(axis=0)
    if not invalid.any() or invalid.all():
        return values
    _, (rows, cols) = ndimage.distance_transform_edt(invalid, return_indices=True)
    return values[:, rows, cols]


def _regrid_block(coarse: np.ndarray, m_lat: np.ndarray, m_lon: np.ndarray) -> np.ndarray:
    filled = _fill_nearest(np.asarray(coarse, dtype=np.float64))
    return np.einsum("ij,tjk,lk->til", m_lat, filled, m_lon, optimize=True).astype(np.float32)


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
        _regrid_block, "tyx",
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


class HydroStage:
    """Pipeline stage ``hydro``: TWSA downscaled to the fine grid, GWSA and per-pixel trends.

    Reads ``ingest`` (``hydro/grace``, ``hydro/fldas``, ``hydro/gldas``). The model storage TF
    (Eq. 7) is FLDAS soil moisture 0-2 m + FLDAS snow water + GLDAS canopy water, each
    interpolated to the fine grid (``hydro.interpolation``); GRACE is put on the model's months
    (its gaps NaN, or filled per ``hydro.gap_fill``); then :func:`downscale_twsa` (Eq. 6-9, or the
    ``ratio``/``remove_restore`` modes), :func:`gwsa_water_balance` (Eq. 10) on one common
    baseline, and :func:`trend_dataset`. The fine grid is ``sources.bbox`` at
    ``hydro.resolution_deg``, north-up. Cells where the model has no data (sea) are masked.

    Writes ``hydro/<version>`` (one dataset): ``twsa``, ``gwsa``, ``smsa``, ``swesa``, ``cwsa``
    ``(time, lat, lon)`` mm, ``gwsa_trend`` and the other trend statistics ``(lat, lon)``; coord
    ``filled_flag(time)``; attrs with the mode, the baseline and the coarse-cell mass diagnostic.
    """

    name = "hydro"
    reads: tuple[str, ...] = ("ingest",)

    def run(self, ctx) -> None:
        from ncp_subsidence.io.cube import with_crs
        from ncp_subsidence.io.readers import factor_grid

        opts = ctx.options
        available = set(ctx.upstream_datasets("ingest"))
        missing = {"hydro/grace", "hydro/fldas", "hydro/gldas"} - available
        if missing:
            raise DataError(
                f"hydro needs ingest datasets {sorted(missing)}; configure sources grace, fldas and gldas"
            )
        grace = ctx.open("ingest", "hydro/grace")["grace_twsa"].load()
        fldas = ctx.open("ingest", "hydro/fldas")
        gldas = ctx.open("ingest", "hydro/gldas")
        months = np.intersect1d(fldas["time"].values, gldas["time"].values)
        if months.size < 24:
            raise DataError(
                f"FLDAS and GLDAS share only {months.size} months; hydro needs at least 24"
            )
        grid = factor_grid(
            ctx.config.model_copy(
                update={
                    "factors": ctx.config.factors.model_copy(
                        update={"resolution_deg": opts.resolution_deg}
                    )
                }
            )
        )
        lat, lon = grid.coords()
        chunk = opts.chunk_cells

        def fine(field: xr.DataArray) -> xr.DataArray:
            return regrid_to_fine(
                field.sel(time=months),
                lat,
                lon,
                method=opts.interpolation,
                chunk_cells=chunk,
            )

        soil, swe, canopy = (
            fine(fldas["soil_moisture"]),
            fine(fldas["swe"]),
            fine(gldas["canopy_water"]),
        )
        land = xr.DataArray(
            np.isfinite(
                fldas["soil_moisture"].isel(time=0).sel(lat=lat, lon=lon, method="nearest").values
            ),
            dims=("lat", "lon"),
            coords={"lat": lat, "lon": lon},
        )
        model_total = (soil + swe + canopy).rename("model_storage")
        grace_months = grace.reindex(time=months)  # GRACE gaps become NaN months
        twsa = downscale_twsa(
            grace_months,
            model_total,
            mode=opts.mode,
            interpolation=opts.interpolation,
            baseline=opts.baseline,
            land_mask=land,
            gap_fill=opts.gap_fill,
            chunk_cells=chunk,
        )
        balance = gwsa_water_balance(
            twsa, soil.where(land), swe.where(land), canopy.where(land), baseline=opts.baseline
        )
        trends = trend_dataset(balance["gwsa"])
        out = xr.merge([balance, trends], compat="override", join="exact")
        out.attrs.update(
            {
                "mode": opts.mode,
                "interpolation": opts.interpolation,
                "baseline": opts.baseline,
                "gap_fill": opts.gap_fill,
                "resolution_deg": opts.resolution_deg,
                "n_grace_months": int(np.isfinite(grace_months.values).any(axis=(1, 2)).sum()),
                "n_months": int(months.size),
                "references": "Huang et al. 2025 Eq. 6-10; Save et al. 2016",
            }
        )
        ctx.write(None, with_crs(out), region_dim="lat")
        # how far the result departs from GRACE's coarse-cell means (0 for the conserving modes),
        # from the written cube so nothing is computed twice
        written = ctx.store.open(ctx.stage, version=ctx.version)
        in_baseline = xr.DataArray(
            _baseline(months, opts.baseline), dims="time", coords={"time": months}
        )
        grace_anomaly = grace_months - grace_months.where(in_baseline).mean(
            "time"
        )  # same baseline as twsa
        diagnostic = coarse_mass_diagnostic(
            written["twsa"], grace_anomaly, land_mask=land
        ).compute()
        scalars = {k: float(v) for k, v in diagnostic.data_vars.items() if v.ndim == 0}
        diagnostic = diagnostic.drop_vars(list(scalars)).astype("float32")
        diagnostic.attrs.update(scalars)
        log.info("hydro mass diagnostic (%s mode): %s", opts.mode, scalars)
        ctx.write("mass_diagnostic", diagnostic)


STAGE = HydroStage()
