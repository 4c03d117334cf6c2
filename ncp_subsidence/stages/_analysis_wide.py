"""Stage ``analysis`` (private): wide-area statistics (docs/science.md 8).

Wide-area sums are Dask reductions: :func:`~ncp_subsidence.kernels.analysis.wide_area_partials`
per spatial block (whole time axis), folded pairwise in a tree by
:func:`~ncp_subsidence.kernels.analysis.combine_partials`, finished by
:func:`~ncp_subsidence.kernels.analysis.finalize_partials` (:func:`wide_area_graph`);
:func:`wide_area_tables` picks the epochs and years, computes the graph and lays the numbers out
as the summary, the ``wide_area`` dataset and the yearly / volume tables.
"""

from __future__ import annotations

import logging
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from ..kernels import analysis as kan
from ..kernels import trends as ktr
from ..progress import readable
from ._analysis_regions import _mid_month, _months, _north_up

__all__ = ["wide_area_graph", "wide_area_tables"]

log = logging.getLogger(__name__)


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


def wide_area_tables(
    mosaic: xr.Dataset, opts: Any
) -> tuple[dict, xr.Dataset, pd.DataFrame, pd.DataFrame]:
    """The wide-area numbers of the mosaic: the summary dict, the ``wide_area`` dataset, the
    yearly-rate table and the volume table."""
    v = _north_up(mosaic["vertical_velocity"])
    d = _north_up(mosaic["vertical_displacement"])
    months = _months(d["time"].values)
    pair_idx, pair_used, clamped = [], [], []
    for a, b in opts.volume_epochs:
        (ia, ca), (ib, cb) = kan.epoch_index(months, a), kan.epoch_index(months, b)
        pair_idx.append((ia, ib))
        pair_used.append((str(months[ia]), str(months[ib])))
        clamped.append(ca or cb)
    (c0, k0), (c1, k1) = (kan.epoch_index(months, e) for e in opts.cumulative_epochs)
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
    headline = res["volume_m3"] if opts.volume_mode == "subsidence_only" else res["volume_net_m3"]
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
                np.stack([res["volume_m3"], res["volume_net_m3"], res["volume_trend_m3"]], axis=-1)
                / 1e9,
                {"units": "km3"},
            ),
            "groundwater_loss": (
                ("epoch", "variant"),
                np.stack([opts.kappa * headline, res["groundwater_loss_trend_m3"]], axis=-1) / 1e9,
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
        attrs={"sign_convention": "rates, cumulative and volumes are subsidence (positive down)"},
    )
    log.info(
        "analysis: %.0f km2 subsiding faster than %g mm/yr, peak year %s, volumes %s km3",
        wide["area_above_threshold_km2"],
        opts.area_threshold_mm_yr,
        wide["peak_year"],
        readable(wide["volumes_km3"]),
    )
    return wide, ds, yearly_df, volume_df
