"""Stage ``analysis``: region time series, trends, lags and wide-area statistics (SCIENCE.md 6, 8).

Graph building over :mod:`ncp_subsidence.kernels.analysis` and
:mod:`ncp_subsidence.kernels.trends`; no number is computed here.

Reads
-----
* ``mosaic``: ``vertical_velocity(lat, lon)`` mm/yr and ``vertical_displacement(time, lat, lon)``
  mm (positive up) from whichever dataset of the product holds them;
* ``hydro``: ``gwsa(time, lat, lon)`` mm;
* ``ingest``: ``hydro/imerg`` ``precipitation(time, lat, lon)`` mm/month, when ingested;
* ``discover``: the ``regions`` source items, whose ``data`` asset is a GeoJSON of region
  polygons (property ``analysis.region_names_property`` names them). The whole grid is one more
  region, ``analysis.whole_plain_name``.

Writes ``analysis/<version>/``
------------------------------
* ``regions`` (region, time): area-weighted monthly ``gwsa`` (mm), ``vertical_displacement``
  (mm), ``precipitation`` (mm/month), and ``observed`` (the optional observed series);
* ``region_statistics`` (region, series, statistic): OLS trend (+ HAC error), Sen's slope,
  Mann-Kendall Z/p (Hamed-Rao), annual amplitude and phase (:data:`~ncp_subsidence.kernels.
  trends.TREND_STATISTICS`) of each region series;
* ``lags`` (region, pair, detrend[, lag]): ``r(k)`` for ``k = 0..K`` and the lag k*, ``r0``,
  ``r_lag``, ``n``, ``n_eff``, ``p_value``, ``reliable`` for GWSA -> deformation,
  precipitation -> GWSA and GWSA -> observed, under the configured detrending and ``diff``;
* ``wide_area``: area above tau, coverage, yearly mean subsidence rate per calendar year over
  Omega = {v < -tau} and over every valid cell, cumulative subsidence max / percentile, volumes
  per epoch pair (subsidence-only, net, trend-only), groundwater loss = kappa x volume;
* files: ``region_series.csv``, ``region_trends.csv``, ``lags.csv``, ``yearly_velocity.csv``,
  ``volumes.csv``, ``summary.json``.

Wide-area sums are Dask reductions: :func:`~ncp_subsidence.kernels.analysis.wide_area_partials`
per spatial block (whole time axis), folded pairwise in a tree by
:func:`~ncp_subsidence.kernels.analysis.combine_partials`, finished by
:func:`~ncp_subsidence.kernels.analysis.finalize_partials` (:func:`wide_area_graph`).

References
----------
Huang ZH, Huo ZB, et al. 2025. J. Groundwater Sci. Eng. 13(1):74-89.
Mi J, Wu Z, Wang X, Bai L, Li Z, Lu Z. 2026. Remote Sens. Environ., doi:10.1016/j.rse.2025.115226.
Bretherton CS et al. 1999. J. Climate 12:1990-2009.
Riley FS 1969; Galloway DL, Burbey TJ 2011. Hydrogeol. J. 19:1459-1486.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from ..errors import DataError, StoreError
from ..kernels import analysis as kan
from ..kernels import trends as ktr

__all__ = [
    "STAGE",
    "AnalysisStage",
    "Region",
    "epoch_index",
    "load_regions",
    "region_series",
    "region_weights",
    "wide_area_graph",
]

log = logging.getLogger(__name__)

_SERIES = ("gwsa", "vertical_displacement", "precipitation", "observed")
_UNITS = {
    "gwsa": "mm",
    "vertical_displacement": "mm",
    "precipitation": "mm/month",
    "observed": "as given",
}


@dataclass(frozen=True)
class Region:
    """A named region: a GeoJSON (Multi)Polygon geometry, or None for the whole grid."""

    name: str
    geometry: dict[str, Any] | None
    properties: dict[str, Any]


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def _find(ctx: Any, stage: str, variable: str, required: bool = True) -> xr.Dataset | None:
    """The first dataset of ``stage`` that holds ``variable``."""
    try:
        names = ctx.upstream_datasets(stage)
    except StoreError:
        if required:
            raise
        return None
    for name in names:
        ds = ctx.open(stage, None if name == "." else name)
        if variable in ds.data_vars:
            return ds
    if required:
        raise DataError(
            f"no dataset of product {stage!r} holds {variable!r} (datasets: {list(names)}); "
            f"rerun stage {stage!r}"
        )
    return None


def load_regions(store: Any, name_property: str = "name", config: Any = None) -> list[Region]:
    """Region polygons of the ``regions`` source saved by ``discover`` (empty if none)."""
    from ..io.readers import read_geojson
    from ..sources import load_items, source_names

    if "regions" not in source_names(store):
        return []  # no regions source configured: no region series (any other failure raises)
    items = load_items(store, "regions", config=config)
    out: list[Region] = []
    for item in items:
        asset = item.assets.get("data")
        if asset is None:
            continue
        for i, feature in enumerate(read_geojson(asset.get_absolute_href())):
            props = dict(feature.get("properties") or {})
            geom = feature.get("geometry") or {}
            if geom.get("type") not in ("Polygon", "MultiPolygon"):
                continue
            out.append(Region(str(props.get(name_property, f"region_{i}")), geom, props))
    return out


def _north_up(da_: xr.DataArray) -> xr.DataArray:
    return da_.sortby("lat", ascending=False).sortby("lon")


# --------------------------------------------------------------------------------------------
# Region series
# --------------------------------------------------------------------------------------------


def _weights_block(
    lat: np.ndarray, lon: np.ndarray, *, regions: tuple[Region, ...], dlat: float, dlon: float
) -> np.ndarray:
    from ..kernels.downscale import cell_area_m2

    area = cell_area_m2(lat, dlat, dlon)[:, None] * np.ones((1, lon.size))
    out = np.empty((len(regions), lat.size, lon.size))
    for i, region in enumerate(regions):
        mask = (
            np.ones(area.shape, bool)
            if region.geometry is None
            else kan.polygon_mask(lon, lat, region.geometry)
        )
        out[i] = np.where(mask, area, 0.0)
    return out


def region_weights(grid: xr.DataArray, regions: list[Region]) -> xr.DataArray:
    """Lazy ``(region, lat, lon)`` weights: cell area (m2) inside each region, 0 outside.

    Built block by block on ``grid``'s spatial chunks, so the weights of a whole-plain 0.001 deg
    grid are never held in memory at once.
    """
    lat = grid["lat"].values
    lon = grid["lon"].values
    dlat = float(np.median(np.abs(np.diff(lat)))) if lat.size > 1 else 0.0
    dlon = float(np.median(np.abs(np.diff(lon)))) if lon.size > 1 else 0.0
    chunks = dict(zip(grid.dims, grid.chunks)) if grid.chunks else {}
    lat_d = da.from_array(lat, chunks=chunks.get("lat", (lat.size,)))
    lon_d = da.from_array(lon, chunks=chunks.get("lon", (lon.size,)))
    data = da.blockwise(
        _weights_block,
        "rij",
        lat_d,
        "i",
        lon_d,
        "j",
        new_axes={"r": len(regions)},
        dtype=np.float64,
        meta=np.empty((0, 0, 0)),
        regions=tuple(regions),
        dlat=dlat,
        dlon=dlon,
    )
    return xr.DataArray(
        data,
        dims=("region", "lat", "lon"),
        coords={"region": [r.name for r in regions], "lat": lat, "lon": lon},
        attrs={"units": "m2", "long_name": "cell area inside the region"},
    )


def region_series(values: xr.DataArray, regions: list[Region]) -> xr.DataArray:
    """Lazy area-weighted mean over each region, ``(region, time)``, NaN cells skipped."""
    values = _north_up(values)
    w = region_weights(values.isel(time=0, drop=True), regions)
    num = xr.dot(values.fillna(0.0), w, dim=["lat", "lon"])
    den = xr.dot(values.notnull().astype(np.float64), w, dim=["lat", "lon"])
    out = (num / den.where(den > 0)).transpose("region", "time")
    out.attrs = {"units": values.attrs.get("units", ""), "cell_methods": "area: mean"}
    return out


def _months(times: Any) -> np.ndarray:
    return np.asarray(
        pd.to_datetime(np.asarray(times)).to_period("M").to_timestamp(), "datetime64[M]"
    )


def _mid_month(months: np.ndarray) -> np.ndarray:
    start = months.astype("datetime64[ns]")
    end = (months + 1).astype("datetime64[ns]")
    return start + (end - start) // 2


def epoch_index(months: np.ndarray, epoch: str) -> tuple[int, bool]:
    """Index of month ``epoch`` (``YYYY-MM``) in ``months``; clamped to the window.

    Returns
    -------
    (int, bool)
        The index and whether it was clamped (the requested month lies outside the series:
        SCIENCE.md 8.5, the common window is used and reported).
    """
    want = np.datetime64(epoch, "M")
    months = np.asarray(months, dtype="datetime64[M]")
    hit = np.flatnonzero(months == want)
    if hit.size:
        return int(hit[0]), False
    if want < months[0]:
        return 0, True
    if want > months[-1]:
        return months.size - 1, True
    return int(np.argmin(np.abs((months - want).astype(np.int64)))), True


def _read_observed(url: str) -> pd.Series:
    import fsspec

    try:
        with fsspec.open(url, "rt") as f:
            df = pd.read_csv(f)
    except FileNotFoundError as err:
        raise DataError(f"observed series {url!r} not found (analysis.observed_series)") from err
    cols = {c.lower().strip(): c for c in df.columns}
    if "date" not in cols or "value" not in cols:
        raise DataError(
            f"observed series {url!r} has columns {list(df.columns)}; expected 'date,value'"
        )
    s = pd.Series(
        df[cols["value"]].astype(float).values, index=pd.to_datetime(df[cols["date"]])
    ).dropna()
    return s.groupby(s.index.to_period("M")).mean()


# --------------------------------------------------------------------------------------------
# Wide-area statistics
# --------------------------------------------------------------------------------------------


def wide_area_graph(
    velocity: xr.DataArray,
    displacement: xr.DataArray,
    *,
    threshold: float,
    epoch_pairs: list[tuple[int, int]],
    cumulative_epochs: tuple[int, int],
    years: list[int],
    chunk_cells: int = 256,
    percentile: float = 99.9,
    kappa: float = 1.0,
) -> Any:
    """A dask ``Delayed`` of the wide-area numbers: chunk -> pairwise tree combine -> finalize.

    Parameters
    ----------
    velocity : DataArray (lat, lon), mm/yr
    displacement : DataArray (time, lat, lon), mm; same lat/lon as ``velocity``
    threshold : float, mm/yr (tau)
    epoch_pairs : list of (int, int), time indices of each volume
    cumulative_epochs : (int, int), time indices of the cumulative subsidence
    years : list of int, calendar years of the yearly mean velocity
    chunk_cells : int, cells per block side
    percentile, kappa : float

    Returns
    -------
    dask.delayed.Delayed
        Computes to the dict of :func:`~ncp_subsidence.kernels.analysis.finalize_partials`.
        Building it computes nothing.
    """
    velocity = velocity.transpose("lat", "lon")
    displacement = displacement.transpose("lat", "lon", "time")
    lat = velocity["lat"].values
    lon = velocity["lon"].values
    t = ktr.decimal_year(displacement["time"].values)
    area = kan.grid_cell_area_m2(lat, lon)
    v = da.asarray(velocity.data).rechunk((chunk_cells, chunk_cells))
    d = da.asarray(displacement.data).rechunk((chunk_cells, chunk_cells, -1))
    a = da.from_array(area, chunks=(chunk_cells, 1))
    top_k = kan.cumulative_top_k(v.size, percentile)
    vb, db, ab = v.to_delayed(), d.to_delayed(), a.to_delayed()
    partial = dask.delayed(kan.wide_area_partials, pure=True)
    parts = [
        partial(
            vb[i, j],
            db[i, j, 0],
            ab[i, 0],
            t=t,
            threshold=threshold,
            years=years,
            epoch_pairs=epoch_pairs,
            cumulative_epochs=cumulative_epochs,
            top_k=top_k,
        )
        for i in range(vb.shape[0])
        for j in range(vb.shape[1])
    ]
    combine = dask.delayed(kan.combine_partials, pure=True)
    while len(parts) > 1:
        parts = [
            combine(*parts[k : k + 2]) if k + 1 < len(parts) else parts[k]
            for k in range(0, len(parts), 2)
        ]
    return dask.delayed(kan.finalize_partials, pure=True)(parts[0], q=percentile, kappa=kappa)


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------


def _to_csv(df: pd.DataFrame, index: bool = False) -> str:
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


class AnalysisStage:
    """Region series, trends, lags and wide-area statistics (see the module docstring)."""

    name = "analysis"
    reads: tuple[str, ...] = ("discover", "ingest", "mosaic", "hydro")

    def run(self, ctx: Any) -> None:
        opts = ctx.options
        mosaic = _find(ctx, "mosaic", "vertical_velocity")
        if "vertical_displacement" not in mosaic.data_vars:
            raise DataError("the mosaic product has no vertical_displacement; rerun stage 'mosaic'")
        hydro = _find(ctx, "hydro", "gwsa")
        imerg = None
        if "hydro/imerg" in ctx.upstream_datasets("ingest"):
            imerg = ctx.open("ingest", "hydro/imerg")
        regions = load_regions(ctx.store, opts.region_names_property, ctx.config)
        regions.append(Region(opts.whole_plain_name, None, {}))
        log.info("analysis: %d regions (%s)", len(regions), ", ".join(r.name for r in regions))

        series = self._region_series(ctx, mosaic, hydro, imerg, regions, opts)
        ctx.write("regions", _object_strings(series))
        stats_ds, trends_df = self._trends(series, opts)
        ctx.write("region_statistics", _object_strings(stats_ds))
        lags_ds, lags_df = self._lags(series, opts)
        ctx.write("lags", _object_strings(lags_ds))

        wide, wide_ds, yearly_df, volume_df = self._wide_area(mosaic, opts)
        ctx.write("wide_area", _object_strings(wide_ds))

        ctx.write_file("region_series.csv", _to_csv(series.to_dataframe().reset_index()))
        ctx.write_file("region_trends.csv", _to_csv(trends_df))
        ctx.write_file("lags.csv", _to_csv(lags_df))
        ctx.write_file("yearly_velocity.csv", _to_csv(yearly_df))
        ctx.write_file("volumes.csv", _to_csv(volume_df))
        summary = {
            "regions": [r.name for r in regions],
            "wide_area": wide,
            "lags": lags_df[lags_df["detrend"] == opts.detrend].to_dict(orient="records"),
            "trends": trends_df.to_dict(orient="records"),
        }
        ctx.write_file(
            "summary.json",
            json.dumps(_clean(json.loads(json.dumps(summary, default=_json_default))), indent=2),
        )

    # ----------------------------------------------------------------------------------------

    @staticmethod
    def _region_series(ctx, mosaic, hydro, imerg, regions, opts) -> xr.Dataset:
        parts = {
            "gwsa": region_series(hydro["gwsa"], regions),
            "vertical_displacement": region_series(mosaic["vertical_displacement"], regions),
        }
        if imerg is not None:
            parts["precipitation"] = region_series(imerg["precipitation"], regions)
        (computed,) = dask.compute(parts)
        months = np.unique(np.concatenate([_months(v["time"].values) for v in computed.values()]))
        months = np.arange(months[0], months[-1] + 1)
        out = xr.Dataset(coords={"region": [r.name for r in regions], "time": _mid_month(months)})
        for key in ("gwsa", "vertical_displacement", "precipitation"):
            arr = np.full((len(regions), months.size), np.nan)
            if key in computed:
                src = computed[key]
                idx = np.searchsorted(months, _months(src["time"].values))
                arr[:, idx] = src.values
            out[key] = (
                ("region", "time"),
                arr,
                {"units": _UNITS[key], "long_name": f"area-weighted regional mean {key}"},
            )
        obs = np.full((len(regions), months.size), np.nan)
        names = [r.name for r in regions]
        for region, url in opts.observed_series.items():
            if region not in names:
                raise DataError(
                    f"analysis.observed_series names region {region!r}, which is not one of {names}"
                )
            s = _read_observed(url)
            key = np.asarray(s.index.to_timestamp(), "datetime64[M]")
            inside = (key >= months[0]) & (key <= months[-1])
            obs[names.index(region), np.searchsorted(months, key[inside])] = s.values[inside]
        out["observed"] = (
            ("region", "time"),
            obs,
            {"units": "as given", "long_name": "observed series"},
        )
        out["time"].attrs["long_name"] = "mid-month"
        out.attrs.update(
            {
                "sign_convention": "vertical positive up: subsidence is negative",
                "weights": "exact spherical cell areas, R = 6371007.181 m",
            }
        )
        return out

    @staticmethod
    def _trends(series: xr.Dataset, opts) -> tuple[xr.Dataset, pd.DataFrame]:
        t = ktr.decimal_year(series["time"].values)
        month = ktr.month_of_year(series["time"].values)
        stats_arr = np.full(
            (series.sizes["region"], len(_SERIES), len(ktr.TREND_STATISTICS)), np.nan
        )
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

    @staticmethod
    def _lags(series: xr.Dataset, opts) -> tuple[xr.Dataset, pd.DataFrame]:
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
                        scalars[key][i, j, m] = (
                            res[key] if res["lag"] >= 0 or key == "r0" else np.nan
                        )
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
        ds.attrs["reliable"] = (
            "lags with more than 20 % missing months in the overlap are unreliable"
        )
        ds.attrs["significance"] = (
            "two-sided t test of r at the lag with n_eff - 2 dof (Bretherton et al. 1999)"
        )
        return ds, pd.DataFrame(rows)

    @staticmethod
    def _wide_area(mosaic: xr.Dataset, opts) -> tuple[dict, xr.Dataset, pd.DataFrame, pd.DataFrame]:
        v = _north_up(mosaic["vertical_velocity"])
        d = _north_up(mosaic["vertical_displacement"])
        months = _months(d["time"].values)
        pair_idx, pair_used, clamped = [], [], []
        for a, b in opts.volume_epochs:
            (ia, ca), (ib, cb) = epoch_index(months, a), epoch_index(months, b)
            pair_idx.append((ia, ib))
            pair_used.append((str(months[ia]), str(months[ib])))
            clamped.append(ca or cb)
        (c0, k0), (c1, k1) = (epoch_index(months, e) for e in opts.cumulative_epochs)
        years_all = months.astype("datetime64[Y]").astype(int) + 1970
        years = [int(y) for y in np.unique(years_all) if (years_all == y).sum() >= 6]
        graph = wide_area_graph(
            v,
            d,
            threshold=opts.area_threshold_mm_yr,
            epoch_pairs=pair_idx,
            cumulative_epochs=(c0, c1),
            years=years,
            chunk_cells=opts.chunk_cells,
            percentile=opts.cumulative_percentile,
            kappa=opts.kappa,
        )
        (res,) = dask.compute(graph)
        dt_years = [
            float(
                ktr.decimal_year(_mid_month(np.array([months[b]])))[0]
                - ktr.decimal_year(_mid_month(np.array([months[a]])))[0]
            )
            for a, b in pair_idx
        ]
        headline = (
            res["volume_m3"] if opts.volume_mode == "subsidence_only" else res["volume_net_m3"]
        )
        epochs = [f"{a}/{b}" for a, b in pair_used]
        wide = {
            "threshold_mm_yr": opts.area_threshold_mm_yr,
            "area_above_threshold_km2": res["area_above_threshold_m2"] / 1e6,
            "area_valid_km2": res["area_valid_m2"] / 1e6,
            "area_total_km2": res["area_total_m2"] / 1e6,
            "coverage": res["coverage"],
            "yearly_mean_subsidence_rate_mm_yr": dict(
                zip(map(str, years), res["yearly_velocity_omega"].tolist())
            ),
            "yearly_mean_subsidence_rate_all_mm_yr": dict(
                zip(map(str, years), res["yearly_velocity_all"].tolist())
            ),
            "peak_year": int(years[int(np.nanargmax(res["yearly_velocity_omega"]))])
            if np.isfinite(res["yearly_velocity_omega"]).any()
            else None,
            "cumulative_epochs": [str(months[c0]), str(months[c1])],
            "cumulative_epochs_clamped": bool(k0 or k1),
            "cumulative_max_mm": res["cumulative_max_mm"],
            f"cumulative_p{opts.cumulative_percentile:g}_mm": res["cumulative_p999_mm"],
            "volume_mode": opts.volume_mode,
            "kappa": opts.kappa,
            "volumes_km3": dict(zip(epochs, (headline / 1e9).tolist())),
            "groundwater_loss_km3": dict(zip(epochs, (opts.kappa * headline / 1e9).tolist())),
            "groundwater_loss_trend_km3": dict(
                zip(epochs, (res["groundwater_loss_trend_m3"] / 1e9).tolist())
            ),
            "volume_bias_sensitivity_km3_per_mm_yr": dict(
                zip(epochs, [res["area_valid_m2"] * dt * 1e-3 / 1e9 for dt in dt_years])
            ),
        }
        yearly_df = pd.DataFrame(
            {
                "year": years,
                "mean_subsidence_rate_omega_mm_yr": res["yearly_velocity_omega"],
                "mean_subsidence_rate_all_mm_yr": res["yearly_velocity_all"],
                "omega_area_km2": res["yearly_area_omega_m2"] / 1e6,
            }
        )
        volume_df = pd.DataFrame(
            {
                "epoch_start": [p[0] for p in pair_used],
                "epoch_end": [p[1] for p in pair_used],
                "clamped": clamped,
                "years": dt_years,
                "volume_subsidence_only_km3": res["volume_m3"] / 1e9,
                "volume_net_km3": res["volume_net_m3"] / 1e9,
                "volume_trend_km3": res["volume_trend_m3"] / 1e9,
                "groundwater_loss_km3": opts.kappa * headline / 1e9,
                "groundwater_loss_trend_km3": res["groundwater_loss_trend_m3"] / 1e9,
                "loss_rate_km3_yr": opts.kappa * headline / 1e9 / np.maximum(dt_years, 1e-9),
            }
        )
        ds = xr.Dataset(
            {
                "area_above_threshold": (
                    (),
                    res["area_above_threshold_m2"] / 1e6,
                    {
                        "units": "km2",
                        "long_name": f"area with v_up < -{opts.area_threshold_mm_yr:g} mm/yr",
                    },
                ),
                "area_valid": ((), res["area_valid_m2"] / 1e6, {"units": "km2"}),
                "coverage": ((), res["coverage"], {"units": "1"}),
                "cumulative_max": (
                    (),
                    res["cumulative_max_mm"],
                    {"units": "mm", "long_name": "maximum cumulative subsidence (positive down)"},
                ),
                "cumulative_percentile": (
                    (),
                    res["cumulative_p999_mm"],
                    {"units": "mm", "percentile": opts.cumulative_percentile},
                ),
                "yearly_mean_subsidence_rate": (
                    ("domain", "year"),
                    np.stack([res["yearly_velocity_omega"], res["yearly_velocity_all"]]),
                    {
                        "units": "mm/yr",
                        "long_name": "area-weighted mean subsidence rate (positive down)",
                    },
                ),
                "volume": (
                    ("epoch", "mode"),
                    np.stack(
                        [res["volume_m3"], res["volume_net_m3"], res["volume_trend_m3"]], axis=-1
                    )
                    / 1e9,
                    {"units": "km3"},
                ),
                "groundwater_loss": (
                    ("epoch", "variant"),
                    np.stack([opts.kappa * headline, res["groundwater_loss_trend_m3"]], axis=-1)
                    / 1e9,
                    {"units": "km3", "kappa": opts.kappa},
                ),
            },
            coords={
                "domain": ["subsiding_tau", "all_valid"],
                "year": years,
                "epoch": epochs,
                "mode": ["subsidence_only", "net", "trend_only"],
                "variant": ["total", "trend_only"],
            },
            attrs={
                "sign_convention": "rates, cumulative and volumes are subsidence (positive down)"
            },
        )
        log.info(
            "analysis: %.0f km2 subsiding faster than %g mm/yr, peak year %s, volumes %s km3",
            wide["area_above_threshold_km2"],
            opts.area_threshold_mm_yr,
            wide["peak_year"],
            wide["volumes_km3"],
        )
        return wide, ds, yearly_df, volume_df


def _object_strings(ds: xr.Dataset) -> xr.Dataset:
    """String coordinates as variable-length UTF-8 (a Zarr v3 data type with a spec)."""
    return ds.assign_coords(
        {c: ds[c].astype(object) for c in ds.coords if ds[c].dtype.kind in "UO"}
    )


STAGE = AnalysisStage()
