"""Geodetector stage: the [H25] sampling design on the velocity and the driving factors.

The pipeline stage :class:`GeodetectorStage` (``STAGE``) builds the work and writes the products;
the pieces live beside it:

* :mod:`ncp_subsidence.kernels.discretize`: class limits of every factor
  (:func:`~ncp_subsidence.kernels.discretize.factor_breaks`; the methods of
  ``geodetector.discretization`` are its registry ``DISCRETIZERS``);
* :mod:`ncp_subsidence.kernels.sampling`: the repeated draws with every detector
  (:func:`~ncp_subsidence.kernels.sampling.run_draws`), the permutation nulls and the threshold x
  ratio sensitivity sweep (:func:`~ncp_subsidence.kernels.sampling.sweep_draws`, q only) on the
  velocity aggregated to the factor grid, all on one
  :class:`~ncp_subsidence.kernels.sampling.DrawFrame` (what no seed changes, computed once);
* :mod:`ncp_subsidence.kernels.geodetector`: the detectors themselves;
* ``_geodetector_grid``: the mosaic cut into blocks whose edges fall on factor-cell edges
  (:func:`cell_blocks`), so the per-cell median (:func:`aggregate_to_factor_grid`) and the lookup
  of factor strata per pixel (:func:`codes_on_mosaic`) are exact per block and memory is bounded
  by the block size;
* ``_geodetector_reduce``: the whole-plain pass over every mosaic pixel as a Dask chunk ->
  combine -> finalize reduction (:func:`geodetector_dask`; the stage starts it with
  ``start_geodetector`` so a cluster's workers run it while the draws run on the client);
* ``_geodetector_tables`` and ``_geodetector_datasets``: the pandas tables, xarray datasets and
  JSON summary written here.

References
----------
Huang ZH, Huo ZB, et al. 2025. J. Groundwater Sci. Eng. 13(1):74-89 (design and results).
Wang JF et al. 2010. Int. J. Geogr. Inf. Sci. 24(1):107-127 (detectors).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import dask
import numpy as np
import xarray as xr

from ncp_subsidence.choices import FACTOR_NAMES
from ncp_subsidence.errors import DataError
from ncp_subsidence.io.cube import with_crs
from ncp_subsidence.kernels.discretize import apply_breaks, factor_breaks
from ncp_subsidence.kernels.sampling import (
    DrawFrame,
    SweepDraws,
    permutation_nulls,
    run_draws,
    sweep_draws,
)
from ncp_subsidence.progress import steps
from ncp_subsidence.stages._geodetector_datasets import (
    draws_dataset,
    json_default,
    object_strings,
    summary,
    to_dataset,
)
from ncp_subsidence.stages._geodetector_grid import (
    CellBlocks,
    aggregate_to_factor_grid,
    aligned_mosaic,
    cell_blocks,
    codes_on_mosaic,
    north_up,
)
from ncp_subsidence.stages._geodetector_reduce import (
    PendingReduction,
    factor_detector_dask,
    geodetector_dask,
    geodetector_stats_dask,
    interaction_detector_dask,
    start_geodetector,
)
from ncp_subsidence.stages._geodetector_tables import (
    breaks_table,
    draws_factor_table,
    draws_interaction_table,
    ecological_table,
    factor_table,
    interaction_matrices,
    interaction_table,
    mean_interaction_matrix,
    risk_table,
    samples_table,
    sensitivity_table,
    sweep_table,
    to_csv,
)

from ..pipeline import Stage, StageContext

__all__ = [
    "STAGE",
    "CellBlocks",
    "GeodetectorStage",
    "aggregate_to_factor_grid",
    "aligned_mosaic",
    "breaks_table",
    "cell_blocks",
    "codes_on_mosaic",
    "draws_dataset",
    "draws_factor_table",
    "draws_interaction_table",
    "ecological_table",
    "mean_interaction_matrix",
    "sweep_table",
    "factor_detector_dask",
    "factor_table",
    "geodetector_dask",
    "geodetector_stats_dask",
    "interaction_detector_dask",
    "interaction_matrices",
    "interaction_table",
    "risk_table",
    "sensitivity_table",
    "to_dataset",
]


log = logging.getLogger(__name__)


class GeodetectorStage(Stage):
    """Geodetector of [H25] on the mosaic velocity and the driving factors (docs/science.md 7).

    Reads ``mosaic`` (``vertical_velocity``) and ``factors``; writes ``geodetector/<version>/``:

    * Zarr datasets ``detectors`` (:func:`draws_dataset`: mean and per-draw q, first-draw F and
      p, interaction q and types), ``whole_plain`` (:func:`to_dataset` of the pass over every
      mosaic pixel) and ``response`` (the velocity on the factor grid that was sampled);
    * ``factor.csv`` (:func:`draws_factor_table`), ``interaction.csv``
      (:func:`draws_interaction_table`), ``interaction_matrix.csv`` (mean q),
      ``risk.csv`` and ``ecological.csv`` (first draw), ``sensitivity.csv`` (thresholds x
      ratios), ``breaks.csv``, ``samples.csv`` (counts and seed per draw),
      ``whole_plain_factor.csv``, ``whole_plain_interaction.csv`` and ``summary.json``.

    Design: the velocity is brought to the factor grid by ``geodetector.aggregation`` (default:
    the median of the mosaic pixels of each cell, computed block by block); cells are then drawn
    with :func:`~ncp_subsidence.kernels.sampling.draw_sample` (threshold, ratio, spacing, cap)
    ``draws`` times with seeds ``seed, seed + 1, ...``. Factor class limits are computed once from
    every valid cell (a ``breaks_sample_size`` sample for natural breaks) and re-merged on each
    draw, or from each draw's sample when ``breaks_per_draw``. The whole-plain pass applies the
    same once-computed limits to every mosaic pixel and reduces chunk -> combine -> finalize.

    The sweep's setting equal to the design's (``threshold_mm_yr``, ``ratio``) is the design's
    own draws; the other settings keep q only. The draws and the permutations log a progress
    line every progress interval (:mod:`ncp_subsidence.progress`).
    """

    name = "geodetector"
    reads: tuple[str, ...] = ("mosaic", "factors")

    def run(self, ctx: StageContext) -> None:
        """Run the detectors and write the tables and datasets."""
        opts = ctx.options
        velocity = ctx.find_variable("mosaic", "vertical_velocity")
        fds = north_up(ctx.open("factors", "factors"))
        names = _factor_names(fds)
        lat, lon = fds["lat"].values, fds["lon"].values
        lazy = aggregate_to_factor_grid(
            velocity, lat, lon, how=opts.aggregation, block=int(opts.chunk_cells)
        ).rename("vertical_velocity")
        # one compute for the sampled velocity and every factor (one round trip to a cluster);
        # the response written below is this computed grid, not a second aggregation
        response, fvals = dask.compute(lazy, fds[names])
        x_grid = np.stack([np.asarray(fvals[n].values, dtype=np.float64) for n in names])
        y, flat_lat, flat_lon, factors, valid = _cells(response, x_grid, lat, lon)
        seed = int(opts.seed)
        edges = factor_breaks(
            y[valid],
            factors[:, valid],
            method=opts.discretization,
            n_strata=opts.n_strata,
            sample_size=opts.breaks_sample_size,
            seed=seed,
            min_stratum_size=opts.min_stratum_size,
        )
        # the whole-plain pass needs only the limits: started now, it runs on a cluster's
        # workers while the draws run here
        pending = self._start_whole_plain(velocity, lat, lon, x_grid, edges, opts)
        design = _design(opts, None if opts.breaks_per_draw else edges)
        # what no draw's seed changes (valid cells, thinning per threshold, strata of every cell)
        # is prepared once for the design's draws and the whole sensitivity sweep
        frame = DrawFrame(
            y, flat_lat, flat_lon, factors, design["edges"], min_spacing=opts.min_spacing_deg
        )
        main_setting = (float(opts.threshold_mm_yr), float(opts.ratio))
        settings = [
            (float(t), float(r))
            for t in opts.sensitivity_thresholds
            for r in opts.sensitivity_ratios
        ]
        # the sweep's setting equal to the design's is the design's own draws (same seeds)
        n_runs = 1 + len(set(settings) - {main_setting})

        with steps(
            "geodetector: sampling draws", total=n_runs * int(opts.draws), logger=log, unit="draws"
        ) as tick:
            common = dict(frame=frame, on_draw=tick, **design)
            draws, n_short = run_draws(
                y,
                flat_lat,
                flat_lon,
                factors,
                threshold=main_setting[0],
                ratio=main_setting[1],
                detail_first=True,
                **common,
            )
            if not draws:
                raise DataError(
                    f"no draw has 3 or more points at threshold {opts.threshold_mm_yr} mm/yr; "
                    "lower the threshold or check the velocity units (mm/yr, subsidence negative)"
                )
            # the sweep tabulates q only: the same draws without interactions and F tests
            sweep: dict[tuple[float, float], SweepDraws] = {
                main_setting: SweepDraws.from_draws(draws, n_short, len(names))
            }
            for t, r in settings:
                if (t, r) not in sweep:
                    sweep[(t, r)] = sweep_draws(
                        y, flat_lat, flat_lon, factors, threshold=t, ratio=r, **common
                    )
            sweep = {st: sweep[st] for st in settings}
        first = draws[0]
        fac_null, int_null = ([], [])
        if opts.permutations > 0:
            with steps(
                "geodetector: permutation nulls",
                total=int(opts.permutations),
                logger=log,
                unit="permutations",
            ) as tick_perm:
                fac_null, int_null = permutation_nulls(
                    y[first.draw.index],
                    first.codes,
                    first.n_codes,
                    first.result.pairs,
                    n_perm=opts.permutations,
                    seed=seed,
                    on_perm=tick_perm,
                )
        whole, n_pixels = None, 0
        if pending is not None:
            whole = pending[0].result(
                convention=opts.convention, interaction_convention=opts.interaction_convention
            )
            n_pixels = pending[1]
        factor_df = draws_factor_table(draws, names, fac_null, whole)
        inter_df = draws_interaction_table(
            draws, names, int_null, whole, interaction_convention=opts.interaction_convention
        )
        sens_df = sweep_table(sweep, names)
        self._write_tables(ctx, names, edges, draws, factor_df, inter_df, sens_df, whole)
        attrs = _attrs(opts, n_short)
        self._write_datasets(ctx, names, draws, factor_df, inter_df, whole, n_pixels, attrs)
        self._write_response(ctx, response, opts)
        options = {**attrs, "seed": seed, "draws": int(opts.draws)}
        info = summary(
            draws,
            n_short,
            int(valid.sum()),
            names,
            edges,
            factor_df,
            inter_df,
            whole,
            n_pixels,
            options,
        )
        ctx.write_file("summary.json", json.dumps(info, indent=2, default=json_default))
        top = info["top_interaction"]
        log.info(
            "geodetector: ranking %s; top interaction %s x %s q=%.3f (%s)",
            ", ".join(f"{n} {q:.3f}" for n, q in info["q_mean"].items()),
            *top["factors"],
            top["q_12_mean"],
            top["type"],
        )

    @staticmethod
    def _write_tables(ctx, names, edges, draws, factor_df, inter_df, sens_df, whole) -> None:
        """The CSV tables: draws (first draw for risk, ecological), sweep, whole plain."""
        first = draws[0].result
        matrix = mean_interaction_matrix(factor_df, inter_df, names)
        ctx.write_file("factor.csv", to_csv(factor_df))
        ctx.write_file("interaction.csv", to_csv(inter_df))
        ctx.write_file("interaction_matrix.csv", to_csv(matrix, index=True))
        ctx.write_file("risk.csv", to_csv(risk_table(first, names)))
        ctx.write_file("ecological.csv", to_csv(ecological_table(first, names)))
        ctx.write_file("sensitivity.csv", to_csv(sens_df))
        # limits are data values: full precision, so they reproduce the strata
        ctx.write_file("breaks.csv", to_csv(breaks_table(edges, names), digits=17))
        ctx.write_file("samples.csv", to_csv(samples_table(draws)))
        if whole is not None:
            ctx.write_file("whole_plain_factor.csv", to_csv(factor_table(whole, names)))
            ctx.write_file("whole_plain_interaction.csv", to_csv(interaction_table(whole, names)))

    @staticmethod
    def _write_datasets(ctx, names, draws, factor_df, inter_df, whole, n_pixels, attrs) -> None:
        """Zarr ``detectors`` (the draws) and ``whole_plain``."""
        ds = draws_dataset(draws, names, factor_df, inter_df)
        ds.attrs.update(attrs)
        ctx.write("detectors", object_strings(ds))
        if whole is not None:
            wds = to_dataset(whole, names)
            wds.attrs["n_pixels"] = int(n_pixels)
            ctx.write("whole_plain", object_strings(wds))

    @staticmethod
    def _write_response(ctx, response: xr.DataArray, opts: Any) -> None:
        """Zarr ``response``: the velocity on the factor grid that was sampled."""
        resp = with_crs(response.to_dataset())
        resp["vertical_velocity"].attrs.update(
            {
                "units": "mm/yr",
                "long_name": f"vertical velocity per factor cell ({opts.aggregation} of mosaic)",
            }
        )
        block = int(opts.chunk_cells)
        if resp["vertical_velocity"].chunks is None:  # in memory: written with the template
            resp["vertical_velocity"].encoding["chunks"] = tuple(
                min(block, resp.sizes[d]) for d in ("lat", "lon")
            )
            ctx.write("response", resp)
        else:
            ctx.write("response", resp.chunk({"lat": block, "lon": block}), region_dim="lat")

    @staticmethod
    def _start_whole_plain(
        velocity: xr.DataArray,
        lat: np.ndarray,
        lon: np.ndarray,
        x_grid: np.ndarray,
        edges: Sequence[np.ndarray],
        opts: Any,
    ) -> tuple[PendingReduction, int] | None:
        """Start the factor and interaction detectors over every mosaic pixel.

        Chunk -> combine -> finalize (:func:`start_geodetector`); None when
        ``geodetector.whole_plain`` is off. Returns the pending reduction and the pixel count.
        """
        if not opts.whole_plain:
            return None
        data, plan = aligned_mosaic(velocity, lat, lon, int(opts.chunk_cells))
        codes, n_codes = [], []
        for x, e in zip(x_grid, edges):
            c = apply_breaks(x, e)
            codes.append(codes_on_mosaic(data, plan, c))
            n_codes.append(int(e.size - 1))
        return start_geodetector(data, codes, n_codes), int(data.size)


def _factor_names(fds: xr.Dataset) -> list[str]:
    """Factors of the product, [H25] Table 1 order first; at least two."""
    names = [n for n in FACTOR_NAMES if n in fds.data_vars] + [
        n for n in fds.data_vars if n not in FACTOR_NAMES
    ]
    if len(names) < 2:
        raise DataError(f"the factors product has {names}; the geodetector needs two or more")
    return names


def _cells(response: xr.DataArray, x_grid: np.ndarray, lat: np.ndarray, lon: np.ndarray):
    """Flattened factor cells: y (computed), lat, lon, factors (k, n) and the valid mask."""
    y_grid = np.asarray(response.compute().values, dtype=np.float64)
    glat, glon = np.meshgrid(lat, lon, indexing="ij")
    y, flat_lat, flat_lon = y_grid.ravel(), glat.ravel(), glon.ravel()
    factors = x_grid.reshape(x_grid.shape[0], -1)
    valid = np.isfinite(y) & np.all(np.isfinite(factors), axis=0)
    if valid.sum() < 3:
        raise DataError(
            f"only {int(valid.sum())} factor cells have both a velocity and every factor; "
            "check that the mosaic and the factors overlap"
        )
    return y, flat_lat, flat_lon, factors, valid


def _design(opts: Any, edges: Sequence[np.ndarray] | None) -> dict[str, Any]:
    """Keywords of :func:`~ncp_subsidence.kernels.sampling.run_draws` from the options."""
    return dict(
        edges=edges,
        min_spacing=opts.min_spacing_deg,
        cap=opts.max_subsidence_samples,
        n_draws=opts.draws,
        seed=int(opts.seed),
        method=opts.discretization,
        n_strata=opts.n_strata,
        sample_size=opts.breaks_sample_size,
        min_stratum_size=opts.min_stratum_size,
        convention=opts.convention,
        interaction_convention=opts.interaction_convention,
    )


def _attrs(opts: Any, n_short: int) -> dict[str, Any]:
    """The design options recorded in ``detectors`` and ``summary.json``."""
    return {
        "threshold_mm_yr": float(opts.threshold_mm_yr),
        "ratio": float(opts.ratio),
        "min_spacing_deg": float(opts.min_spacing_deg),
        "aggregation": opts.aggregation,
        "discretization": opts.discretization,
        "breaks_per_draw": int(opts.breaks_per_draw),
        "n_short_draws": int(n_short),
    }


STAGE = GeodetectorStage()
