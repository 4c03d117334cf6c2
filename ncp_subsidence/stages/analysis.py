"""Stage ``analysis``: region time series, trends, lags and wide-area statistics (docs/science.md 6, 8).

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

The pieces live in private modules and are re-exported here: :mod:`._analysis_regions` (inputs,
regions, region series), :mod:`._analysis_tables` (trends, lags, file encodings),
:mod:`._analysis_wide` (wide-area statistics); observed series are read by
:func:`ncp_subsidence.io.observed.read_observed_series`.

References
----------
Huang ZH, Huo ZB, et al. 2025. J. Groundwater Sci. Eng. 13(1):74-89.
Mi J, Wu Z, Wang X, Bai L, Li Z, Lu Z. 2026. Remote Sens. Environ., doi:10.1016/j.rse.2025.115226.
Bretherton CS et al. 1999. J. Climate 12:1990-2009.
Riley FS 1969; Galloway DL, Burbey TJ 2011. Hydrogeol. J. 19:1459-1486.
"""

from __future__ import annotations

import logging

from ..errors import DataError
from ..kernels.analysis import epoch_index
from ..pipeline import Stage, StageContext
from ._analysis_regions import (
    Region,
    _find,
    load_regions,
    region_series,
    region_series_dataset,
    region_weights,
)
from ._analysis_tables import lags_table, object_strings, summary_json, to_csv, trends_table
from ._analysis_wide import wide_area_graph, wide_area_tables

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


class AnalysisStage(Stage):
    """Region series, trends, lags and wide-area statistics (see the module docstring)."""

    name = "analysis"
    reads: tuple[str, ...] = ("discover", "ingest", "mosaic", "hydro")

    def run(self, ctx: StageContext) -> None:
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

        series = region_series_dataset(mosaic, hydro, imerg, regions, opts)
        ctx.write("regions", object_strings(series))
        stats_ds, trends_df = trends_table(series, opts)
        ctx.write("region_statistics", object_strings(stats_ds))
        lags_ds, lags_df = lags_table(series, opts)
        ctx.write("lags", object_strings(lags_ds))

        wide, wide_ds, yearly_df, volume_df = wide_area_tables(mosaic, opts)
        ctx.write("wide_area", object_strings(wide_ds))

        ctx.write_file("region_series.csv", to_csv(series.to_dataframe().reset_index()))
        ctx.write_file("region_trends.csv", to_csv(trends_df))
        ctx.write_file("lags.csv", to_csv(lags_df))
        ctx.write_file("yearly_velocity.csv", to_csv(yearly_df))
        ctx.write_file("volumes.csv", to_csv(volume_df))
        summary = {
            "regions": [r.name for r in regions],
            "wide_area": wide,
            "lags": lags_df[lags_df["detrend"] == opts.detrend].to_dict(orient="records"),
            "trends": trends_df.to_dict(orient="records"),
        }
        ctx.write_file("summary.json", summary_json(summary))


STAGE = AnalysisStage()
