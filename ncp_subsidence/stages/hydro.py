"""Stage ``hydro``: GRACE downscaling to 0.01 deg, GWSA and per-pixel trends (graph building only).

This module is the xarray/dask wrapper layer over :mod:`ncp_subsidence.kernels.downscale` and
:mod:`ncp_subsidence.kernels.trends`: it checks grids and times, decides chunks, and maps the
kernels over chunks with explicit dims, dtypes and sizes. No number is computed here and no graph
is computed while it is built.

The graph builders live in private modules and are re-exported here:

* :mod:`._hydro_grids`: :func:`nest_grids`, :func:`fine_cell_weight`, :func:`regrid_to_fine`
  (grids, baselines, chunks, model fields onto the fine grid);
* :mod:`._hydro_downscale`: :func:`downscale_twsa` (Eq. 6-9 and the mass-conserving options) and
  :func:`coarse_mass_diagnostic`;
* :mod:`._hydro_balance`: :func:`gwsa_water_balance` (Eq. 10) and :func:`trend_dataset`.

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
from typing import Any

import numpy as np
import xarray as xr

from ncp_subsidence.errors import DataError

from ..pipeline import Stage, StageContext
from ..progress import readable
from ._hydro_balance import gwsa_water_balance, trend_dataset
from ._hydro_downscale import coarse_mass_diagnostic, downscale_twsa
from ._hydro_grids import (
    REFERENCE,
    NestedGrids,
    _baseline,
    fine_cell_weight,
    nest_grids,
    regrid_to_fine,
)

__all__ = [
    "REFERENCE",
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

_INPUTS = ("hydro/grace", "hydro/fldas", "hydro/gldas")


class HydroStage(Stage):
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

    def run(self, ctx: StageContext) -> None:
        from ncp_subsidence.io.cube import with_crs

        opts = ctx.options
        months, grace_months, soil, swe, canopy, land = _fine_inputs(ctx)
        model_total = (soil + swe + canopy).rename("model_storage")
        twsa = downscale_twsa(
            grace_months,
            model_total,
            mode=opts.mode,
            interpolation=opts.interpolation,
            baseline=opts.baseline,
            land_mask=land,
            gap_fill=opts.gap_fill,
            chunk_cells=opts.chunk_cells,
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
        ctx.write("mass_diagnostic", _mass_diagnostic(ctx, grace_months, months, land))


def _fine_inputs(ctx: Any) -> tuple[Any, ...]:
    """The common months, GRACE on them (gaps NaN), the model storages on the fine grid (soil
    moisture, snow water, canopy water; lazy) and the fine land mask (where FLDAS has data)."""
    from ncp_subsidence.io.readers import factor_grid

    opts = ctx.options
    available = set(ctx.upstream_datasets("ingest"))
    missing = set(_INPUTS) - available
    if missing:
        raise DataError(
            f"hydro needs ingest datasets {sorted(missing)}; configure sources grace, fldas and gldas"
        )
    grace = ctx.open("ingest", "hydro/grace")["grace_twsa"].load()
    fldas = ctx.open("ingest", "hydro/fldas")
    gldas = ctx.open("ingest", "hydro/gldas")
    months = np.intersect1d(fldas["time"].values, gldas["time"].values)
    if months.size < 24:
        raise DataError(f"FLDAS and GLDAS share only {months.size} months; hydro needs at least 24")
    factors = ctx.config.factors.model_copy(update={"resolution_deg": opts.resolution_deg})
    grid = factor_grid(ctx.config.model_copy(update={"factors": factors}))
    lat, lon = grid.coords()

    def fine(field: xr.DataArray) -> xr.DataArray:
        return regrid_to_fine(
            field.sel(time=months),
            lat,
            lon,
            method=opts.interpolation,
            chunk_cells=opts.chunk_cells,
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
    grace_months = grace.reindex(time=months)  # GRACE gaps become NaN months
    return months, grace_months, soil, swe, canopy, land


def _mass_diagnostic(
    ctx: Any, grace_months: xr.DataArray, months: np.ndarray, land: xr.DataArray
) -> xr.Dataset:
    """How far the written TWSA departs from GRACE's coarse-cell means (0 for the conserving
    modes), computed from the written cube so nothing is computed twice."""
    opts = ctx.options
    written = ctx.store.open(ctx.stage, version=ctx.version)
    in_baseline = xr.DataArray(
        _baseline(months, opts.baseline), dims="time", coords={"time": months}
    )
    # same baseline as twsa
    grace_anomaly = grace_months - grace_months.where(in_baseline).mean("time")
    diagnostic = coarse_mass_diagnostic(written["twsa"], grace_anomaly, land_mask=land).compute()
    scalars = {k: float(v) for k, v in diagnostic.data_vars.items() if v.ndim == 0}
    diagnostic = diagnostic.drop_vars(list(scalars)).astype("float32")
    diagnostic.attrs.update(scalars)
    log.info("hydro mass diagnostic (%s mode): %s", opts.mode, readable(scalars))
    return diagnostic


STAGE = HydroStage()
