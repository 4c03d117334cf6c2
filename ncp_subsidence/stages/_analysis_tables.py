"""Stage ``analysis`` (private): region trends and lags tables, and the files' encodings.

Runs :func:`ncp_subsidence.kernels.trends.trend_statistics` and
:func:`ncp_subsidence.kernels.analysis.lagged_cross_correlation` over the (small, computed)
region series and lays the results out as datasets and tables; CSV / JSON / Zarr encodings of
the stage's outputs.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..kernels import analysis as kan
from ..kernels import trends as ktr

__all__ = ["lags_table", "object_strings", "summary_json", "to_csv", "trends_table"]

_SERIES = ("gwsa", "vertical_displacement", "precipitation", "observed")


def trends_table(series: xr.Dataset, opts: Any) -> tuple[xr.Dataset, pd.DataFrame]:
    """Trend statistics of every region series over its own window of data, as a
    ``(region, series, statistic)`` dataset and a table."""
    t = ktr.decimal_year(series["time"].values)
    month = ktr.month_of_year(series["time"].values)
    stats_arr = np.full((series.sizes["region"], len(_SERIES), len(ktr.TREND_STATISTICS)), np.nan)
    rows = []
    for j, key in enumerate(_SERIES):
        y = series[key].values
        have = np.isfinite(y).any(axis=0)
        if not have.any():
            continue
        first, last = np.flatnonzero(have)[[0, -1]]
        window = slice(first, last + 1)
        stats_arr[:, j] = ktr.trend_statistics(
            y[:, window], t[window], month[window], min_valid=opts.min_months
        )
        for i, region in enumerate(series["region"].values):
            row = {
                "region": str(region),
                "series": key,
                "first": str(series["time"].values[first])[:7],
                "last": str(series["time"].values[last])[:7],
            }
            row.update(dict(zip(ktr.TREND_STATISTICS, stats_arr[i, j].tolist())))
            rows.append(row)
    ds = xr.Dataset(
        {"value": (("region", "series", "statistic"), stats_arr)},
        coords={
            "region": series["region"].values,
            "series": list(_SERIES),
            "statistic": list(ktr.TREND_STATISTICS),
        },
        attrs={
            "slopes": "per year in the series' units",
            "annual_phase": "month of the annual peak, [0, 12) from 1 January",
        },
    )
    return ds, pd.DataFrame(rows)


def lags_table(series: xr.Dataset, opts: Any) -> tuple[xr.Dataset, pd.DataFrame]:
    """Lagged cross-correlation of each pair of region series under each detrending, as a
    ``(region, pair, detrend[, lag])`` dataset and a table."""
    t = ktr.decimal_year(series["time"].values)
    pairs = {
        "gwsa->vertical_displacement": ("gwsa", "vertical_displacement"),
        "precipitation->gwsa": ("precipitation", "gwsa"),
        "gwsa->observed": ("gwsa", "observed"),
    }
    methods = list(dict.fromkeys([opts.detrend, "diff", "linear"]))
    nr, np_, nm, nk = series.sizes["region"], len(pairs), len(methods), opts.max_lag_months + 1
    r = np.full((nr, np_, nm, nk), np.nan)
    scalars = {
        k: np.full((nr, np_, nm), np.nan)
        for k in ("lag", "r0", "r_lag", "n", "n_eff", "p_value", "filled_fraction")
    }
    rows = []
    for i, region in enumerate(series["region"].values):
        for j, (pname, (xk, yk)) in enumerate(pairs.items()):
            x, y = series[xk].values[i], series[yk].values[i]
            if not np.isfinite(x).any() or not np.isfinite(y).any():
                continue
            span = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
            if span.size == 0:
                continue
            window = slice(span[0], span[-1] + 1)
            filled = 1.0 - float((np.isfinite(x[window]) & np.isfinite(y[window])).mean())
            for m, method in enumerate(methods):
                res = kan.lagged_cross_correlation(
                    x[window],
                    y[window],
                    t[window],
                    max_lag=opts.max_lag_months,
                    detrend=method,
                    min_months=opts.min_months if yk != "observed" else 3,
                    period_tolerance=opts.lag_period_tolerance,
                )
                r[i, j, m, : res["r"].size] = res["r"]
                for key in ("lag", "r0", "r_lag", "n", "n_eff", "p_value"):
                    scalars[key][i, j, m] = res[key] if res["lag"] >= 0 or key == "r0" else np.nan
                scalars["filled_fraction"][i, j, m] = filled
                rows.append(
                    {
                        "region": str(region),
                        "pair": pname,
                        "detrend": method,
                        "lag_months": res["lag"] if res["lag"] >= 0 else None,
                        "r0": res["r0"],
                        "r_lag": res["r_lag"],
                        "n": res["n"],
                        "n_eff": res["n_eff"],
                        "p_value": res["p_value"],
                        "missing_fraction": filled,
                        "reliable": bool(res["lag"] >= 0 and filled <= 0.2),
                    }
                )
    coords = {"region": series["region"].values, "pair": list(pairs), "detrend": methods}
    ds = xr.Dataset(
        {
            "r": (
                ("region", "pair", "detrend", "lag"),
                r,
                {"long_name": "corr(x(t), y(t + lag))"},
            )
        },
        coords={**coords, "lag": np.arange(nk)},
    )
    for key, arr in scalars.items():
        ds["lag_months" if key == "lag" else key] = (("region", "pair", "detrend"), arr)
    ds.attrs["reliable"] = "lags with more than 20 % missing months in the overlap are unreliable"
    ds.attrs["significance"] = (
        "two-sided t test of r at the lag with n_eff - 2 dof (Bretherton et al. 1999)"
    )
    return ds, pd.DataFrame(rows)


def to_csv(df: pd.DataFrame, index: bool = False) -> str:
    return df.to_csv(index=index, float_format="%.10g")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return str(obj)


def _clean(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    return x


def summary_json(summary: dict[str, Any]) -> str:
    """``summary.json``: numpy values as plain JSON, non-finite floats as null."""
    return json.dumps(_clean(json.loads(json.dumps(summary, default=_json_default))), indent=2)


def object_strings(ds: xr.Dataset) -> xr.Dataset:
    """String coordinates as variable-length UTF-8 (a Zarr v3 data type with a spec)."""
    return ds.assign_coords(
        {c: ds[c].astype(object) for c in ds.coords if ds[c].dtype.kind in "UO"}
    )
