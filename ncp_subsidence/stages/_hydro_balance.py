"""Stage ``hydro`` (private): GWSA by water balance (Eq. 10) and per-pixel trends, lazily."""

from __future__ import annotations

import dask.array as da
import numpy as np
import xarray as xr

from ncp_subsidence.errors import DataError
from ncp_subsidence.kernels import downscale as kds
from ncp_subsidence.kernels import trends as ktr

from ._hydro_grids import _SPATIAL, REFERENCE, _baseline, _require_dims

__all__ = ["gwsa_water_balance", "trend_dataset"]


# --------------------------------------------------------------------------------------------
# Water balance (Eq. 10)
# --------------------------------------------------------------------------------------------


def _balance_block(
    twsa: np.ndarray,
    sm: np.ndarray,
    swe: np.ndarray,
    cw: np.ndarray,
    *,
    in_baseline,
    term,
    out_dtype,
) -> np.ndarray:
    out = kds.water_balance_anomalies(
        twsa, sm, swe, cw, in_baseline, terms=(term,), dtype=out_dtype
    )
    return out[0]


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

    Every term is turned into an anomaly on **one** common baseline (docs/science.md 5.2), TWSA
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
    arrays = [
        a.drop_vars("filled_flag", errors="ignore").transpose("time", *_SPATIAL).chunk(chunks)
        for a in arrays
    ]
    # one task per term and chunk, in the cubes' own (time, lat, lon) layout (no transposes);
    # a term that is not written is not computed (gwsa computes the four anomalies it needs)
    layout = "tyx"
    inputs = [x for a in arrays for x in (a.data, layout)]
    outputs = [
        da.blockwise(
            _balance_block,
            layout,
            *inputs,
            dtype=np.dtype(dtype),
            meta=np.empty((0, 0, 0), dtype=dtype),
            in_baseline=in_baseline,
            term=term,
            out_dtype=np.dtype(dtype),
        )
        for term in ("twsa", "smsa", "swesa", "cwsa", "gwsa")
    ]
    template = arrays[0]
    names = {
        "twsa": "terrestrial water storage anomaly",
        "smsa": "soil moisture storage anomaly (0-2 m)",
        "swesa": "snow water equivalent storage anomaly",
        "cwsa": "canopy water storage anomaly",
        "gwsa": "groundwater storage anomaly (water balance)",
    }
    result = xr.Dataset(
        {
            name: xr.DataArray(
                out,
                dims=("time", *_SPATIAL),
                coords=template.coords,
                attrs={"units": "mm", "long_name": long_name, "baseline": str(baseline)},
            )
            for (name, long_name), out in zip(names.items(), outputs, strict=True)
        }
    )
    if "filled_flag" in twsa.coords:
        result = result.assign_coords(filled_flag=twsa["filled_flag"])
    result.attrs["references"] = REFERENCE + " (Eq. 10)"
    return result


# --------------------------------------------------------------------------------------------
# Trends (docs/science.md 6.2)
# --------------------------------------------------------------------------------------------


def _trend_block(y: np.ndarray, **kwargs) -> np.ndarray:
    dtype = kwargs.pop("dtype")
    # the block is a (lat, lon, time) view of a (time, lat, lon) chunk: one transposing copy
    # into float64 series that are contiguous in time (the kernels' layout) instead of
    # strided reads of every series
    y = np.ascontiguousarray(y, dtype=np.float64)
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
