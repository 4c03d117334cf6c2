"""Geodetector stage, Dask layer: chunk -> combine -> finalize reductions and result tables.

The numbers live in :mod:`ncp_subsidence.kernels.geodetector`. Here:

* chunk: :func:`~ncp_subsidence.kernels.geodetector.batch_stats` on each block of y and the
  factor codes (``map_blocks``), packed into one float64 vector per block: per-factor counts,
  sums and M2, per-pair crossed counts and sums (crossed code ``c1 * n2 + c2``), and y's own
  count, sum and M2;
* combine: :func:`~ncp_subsidence.kernels.geodetector.combine_packed`, exact and associative
  (counts and sums add, M2 by Chan et al. 1979), applied as a tree by ``dask.array.reduction``;
* finalize: :func:`~ncp_subsidence.kernels.geodetector.finalize_batch` on the driver.

Every block sums ``y - shift`` with one common ``shift`` (by default the mean of the first block,
taken lazily), so sums stay accurate for data with a large offset. Samples with y or any factor
missing are dropped from every detector and counted (listwise, SCIENCE.md 7.2 step 3).

Also here: table builders that turn results into pandas DataFrames and an xarray Dataset, and
the pipeline stage :class:`GeodetectorStage` (``STAGE``): the [H25] sampling design with repeated
draws, permutation nulls and the threshold x ratio sensitivity sweep on the velocity aggregated to
the factor grid, plus the whole-plain pass over every mosaic pixel. The mosaic is cut into blocks
whose edges fall on factor-cell edges (:func:`cell_blocks`), so the per-cell median
(:func:`aggregate_to_factor_grid`) and the lookup of factor strata per pixel
(:func:`codes_on_mosaic`) are exact per block and memory is bounded by the block size.

References
----------
Huang ZH, Huo ZB, et al. 2025. J. Groundwater Sci. Eng. 13(1):74-89 (design and results).
Wang JF et al. 2010. Int. J. Geogr. Inf. Sci. 24(1):107-127 (detectors).
"""

from __future__ import annotations

import itertools
import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from ncp_subsidence.choices import FACTOR_NAMES
from ncp_subsidence.errors import DataError, DataWarning
from ncp_subsidence.io.cube import with_crs
from ncp_subsidence.kernels.aggregate import cell_of, cell_reduce
from ncp_subsidence.kernels.discretize import (
    apply_breaks,
    discretize,
    merge_small_strata,
    optimal_discretization,
)
from ncp_subsidence.kernels.geodetector import (
    INTERACTION_LABELS,
    BatchStats,
    FactorResult,
    GeodetectorResult,
    InteractionResult,
    batch_stats,
    classify_interaction,
    combine_packed,
    finalize_batch,
    geodetector_batch,
    packed_size,
    unpack_batch,
)
from ncp_subsidence.kernels.sampling import (
    PermutationNull,
    SampleDraw,
    cell_index,
    draw_sample,
    permutation_null,
    sweep_columns,
)

__all__ = [
    "DISCRETIZATION_METHODS",
    "STAGE",
    "CellBlocks",
    "DrawResult",
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
    "factor_breaks",
    "mean_interaction_matrix",
    "permutation_nulls",
    "run_draws",
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


def _first_block_mean(block: np.ndarray) -> np.ndarray:
    v = np.asarray(block, dtype=np.float64)
    f = v[np.isfinite(v)]
    return np.full((1,) * v.ndim, f.mean() if f.size else 0.0)


def _block_stats(y_block, *code_blocks, n_codes, pairs, shift, ndim):
    bs = batch_stats(y_block, list(code_blocks), n_codes, pairs=pairs, shift=float(shift))
    return bs.pack().reshape((1,) * ndim + (-1,))


def geodetector_stats_dask(
    y: da.Array,
    codes: Sequence[da.Array | np.ndarray],
    n_codes: Sequence[int],
    *,
    pairs: Sequence[tuple[int, int]] | None = None,
    shift: float | da.Array | None = None,
    split_every: int | None = None,
) -> tuple[da.Array, float | da.Array]:
    """Build (lazily) the reduction of y by every factor and every crossed pair.

    Parameters
    ----------
    y : dask.array.Array of float, any shape
        Response (e.g. vertical velocity, mm/a), chunked as it is stored.
    codes : sequence of k arrays shaped like y
        Integer stratum codes per factor (-1 = missing); rechunked to y's chunks if needed.
    n_codes : sequence of int, length k
    pairs : sequence of (i, j), optional
        Pairs to cross; default all ``k (k - 1) / 2``.
    shift : float or 0-d dask array, optional
        Constant subtracted from y in every block; default the mean of y's first block (lazy).
    split_every : int, optional
        Fan-in of the combine tree.

    Returns
    -------
    packed : dask.array.Array of float64, shape (packed_size,)
        Combined statistics; unpack with
        :func:`~ncp_subsidence.kernels.geodetector.unpack_batch`.
    shift : float or 0-d dask array
        The shift the blocks used (compute it together with ``packed``).
    """
    y = da.asarray(y)
    k = len(codes)
    if len(n_codes) != k:
        raise DataError(f"{k} code arrays but {len(n_codes)} entries in n_codes")
    n_codes = [int(n) for n in n_codes]
    pairs = (
        list(itertools.combinations(range(k), 2))
        if pairs is None
        else [(int(i), int(j)) for i, j in pairs]
    )
    cl = []
    for i, c in enumerate(codes):
        c = da.asarray(c) if isinstance(c, da.Array) else da.from_array(np.asarray(c), y.chunks)
        if c.shape != y.shape:
            raise DataError(
                f"codes[{i}] has shape {c.shape} but y has {y.shape}; "
                "factor codes must be on the grid of y"
            )
        if c.chunks != y.chunks:
            c = c.rechunk(y.chunks)
        cl.append(c)
    if shift is None:
        first = y.blocks[(0,) * y.ndim] if y.ndim else y
        shift = first.map_blocks(
            _first_block_mean, dtype=np.float64, chunks=(1,) * y.ndim, token="geodetector-shift"
        ).reshape(())
    size = packed_size(n_codes, pairs)
    nd = max(y.ndim, 1)
    if y.ndim == 0:
        y = y.reshape((1,))
        cl = [c.reshape((1,)) for c in cl]
    out_chunks = (*((1,) * nb for nb in y.numblocks), (size,))
    per_block = da.map_blocks(
        _block_stats,
        y,
        *cl,
        n_codes=n_codes,
        pairs=pairs,
        shift=shift,
        ndim=nd,
        chunks=out_chunks,
        new_axis=[nd],
        dtype=np.float64,
        meta=np.empty((0,) * (nd + 1), dtype=np.float64),
        token="geodetector-chunk",
    )

    def _identity(x, axis=None, keepdims=True):
        return x

    def _combine(x, axis=None, keepdims=True):
        res = combine_packed(np.asarray(x).reshape(-1, size), n_codes, pairs)
        return res.reshape((1,) * nd + (size,)) if keepdims else res

    packed = da.reduction(
        per_block,
        chunk=_identity,
        combine=_combine,
        aggregate=_combine,
        axis=tuple(range(nd)),
        keepdims=False,
        dtype=np.float64,
        split_every=split_every,
        concatenate=True,
        meta=np.empty((0,), dtype=np.float64),
        name="geodetector-combine",
    )
    return packed, shift


def _compute_batch(
    y, codes, n_codes, *, pairs, shift, split_every, scheduler
) -> tuple[BatchStats, list[tuple[int, int]]]:
    k = len(codes)
    pairs = (
        list(itertools.combinations(range(k), 2))
        if pairs is None
        else [(int(i), int(j)) for i, j in pairs]
    )
    packed, sh = geodetector_stats_dask(
        y, codes, n_codes, pairs=pairs, shift=shift, split_every=split_every
    )
    packed_v, shift_v = dask.compute(packed, sh, scheduler=scheduler)
    return unpack_batch(np.asarray(packed_v), n_codes, pairs, float(shift_v)), pairs


def geodetector_dask(
    y: da.Array,
    codes: Sequence[da.Array | np.ndarray],
    n_codes: Sequence[int],
    *,
    pairs: Sequence[tuple[int, int]] | None = None,
    shift: float | da.Array | None = None,
    split_every: int | None = None,
    scheduler: str | None = None,
    **finalize_kwargs,
) -> GeodetectorResult:
    """Compute every factor detector and crossed pair in one pass over the data.

    Parameters are those of :func:`geodetector_stats_dask`; ``scheduler`` is passed to
    ``dask.compute``; ``finalize_kwargs`` to
    :func:`~ncp_subsidence.kernels.geodetector.finalize_batch` (``convention``, ``risk``,
    ``ecological``, ...).

    Returns
    -------
    GeodetectorResult
        Equal, up to floating-point rounding, to
        :func:`~ncp_subsidence.kernels.geodetector.geodetector_batch` on the same data, whatever
        the chunking.
    """
    bs, _ = _compute_batch(
        y, codes, n_codes, pairs=pairs, shift=shift, split_every=split_every, scheduler=scheduler
    )
    return finalize_batch(bs, **finalize_kwargs)


def factor_detector_dask(
    y: da.Array,
    codes: da.Array,
    n_codes: int,
    *,
    shift: float | da.Array | None = None,
    split_every: int | None = None,
    scheduler: str | None = None,
    **finalize_kwargs,
) -> FactorResult:
    """Factor detector of one factor over Dask arrays (chunk -> combine -> finalize)."""
    res = geodetector_dask(
        y,
        [codes],
        [n_codes],
        pairs=[],
        shift=shift,
        split_every=split_every,
        scheduler=scheduler,
        **finalize_kwargs,
    )
    return res.factors[0]


def interaction_detector_dask(
    y: da.Array,
    codes1: da.Array,
    codes2: da.Array,
    n_codes1: int,
    n_codes2: int,
    *,
    shift: float | da.Array | None = None,
    split_every: int | None = None,
    scheduler: str | None = None,
    **finalize_kwargs,
) -> InteractionResult:
    """Interaction detector of two factors over Dask arrays (crossed code ``c1 * n2 + c2``)."""
    res = geodetector_dask(
        y,
        [codes1, codes2],
        [n_codes1, n_codes2],
        pairs=[(0, 1)],
        shift=shift,
        split_every=split_every,
        scheduler=scheduler,
        **finalize_kwargs,
    )
    return res.interactions[0]


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def _names(result: GeodetectorResult, names: Sequence[str] | None) -> list[str]:
    k = len(result.factors)
    names = [f"x{i}" for i in range(k)] if names is None else list(names)
    if len(names) != k:
        raise DataError(f"{len(names)} names for {k} factors")
    return names


def factor_table(result: GeodetectorResult, names: Sequence[str] | None = None) -> pd.DataFrame:
    """Factor detector table, one row per factor, sorted by q (largest first).

    Columns: ``factor``, ``q``, ``f_stat``, ``p_value`` (non-central F), ``p_value_central``,
    ``noncentrality``, ``n_strata`` (effective L), ``n_samples``, ``n_dropped``, ``n_singleton``,
    ``rank``, ``convention``.
    """
    names = _names(result, names)
    df = pd.DataFrame(
        {
            "factor": names,
            "q": [r.q for r in result.factors],
            "f_stat": [r.f_stat for r in result.factors],
            "p_value": [r.p_value for r in result.factors],
            "p_value_central": [r.p_value_central for r in result.factors],
            "noncentrality": [r.noncentrality for r in result.factors],
            "n_strata": [r.n_strata for r in result.factors],
            "n_samples": [r.n_samples for r in result.factors],
            "n_dropped": [r.n_dropped for r in result.factors],
            "n_singleton": [r.n_singleton for r in result.factors],
            "convention": [r.convention for r in result.factors],
        }
    )
    df = df.sort_values("q", ascending=False, kind="stable", na_position="last")
    df.insert(df.columns.get_loc("convention"), "rank", np.arange(1, len(df) + 1))
    return df.reset_index(drop=True)


def interaction_table(
    result: GeodetectorResult, names: Sequence[str] | None = None
) -> pd.DataFrame:
    """Interaction detector table, one row per pair.

    Columns: ``factor_1``, ``factor_2``, ``q_12``, ``q_1``, ``q_2``, ``interaction_type``,
    ``interaction_label``, ``n_strata_12``, ``n_samples``, ``p_value_12``.
    """
    names = _names(result, names)
    rows = []
    for (i, j), r in zip(result.pairs, result.interactions):
        rows.append(
            {
                "factor_1": names[i],
                "factor_2": names[j],
                "q_12": r.q12,
                "q_1": r.q1,
                "q_2": r.q2,
                "interaction_type": r.interaction_type,
                "interaction_label": r.label,
                "n_strata_12": r.n_strata12,
                "n_samples": r.n_samples,
                "p_value_12": r.factor12.p_value if r.factor12 is not None else np.nan,
            }
        )
    return pd.DataFrame(rows)


def interaction_matrices(
    result: GeodetectorResult, names: Sequence[str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Symmetric matrices of q (factor q on the diagonal) and interaction types (-1 diagonal)."""
    names = _names(result, names)
    k = len(names)
    q = np.full((k, k), np.nan)
    t = np.full((k, k), -1, dtype=np.int64)
    for i, r in enumerate(result.factors):
        q[i, i] = r.q
    for (i, j), r in zip(result.pairs, result.interactions):
        q[i, j] = q[j, i] = r.q12
        t[i, j] = t[j, i] = r.interaction_type
    return pd.DataFrame(q, index=names, columns=names), pd.DataFrame(t, index=names, columns=names)


def risk_table(result: GeodetectorResult, names: Sequence[str] | None = None) -> pd.DataFrame:
    """Risk detector, long format: one row per factor and pair of strata (i < j).

    Columns: ``factor``, ``stratum_1``, ``stratum_2``, ``mean_1``, ``mean_2``, ``n_1``, ``n_2``,
    ``t_stat``, ``df``, ``p_value``, ``significant``. Empty if the risk detector was not run.
    """
    names = _names(result, names)
    frames = []
    for name, r in zip(names, result.risk):
        i, j = np.triu_indices(r.strata.size, k=1)
        frames.append(
            pd.DataFrame(
                {
                    "factor": name,
                    "stratum_1": r.strata[i],
                    "stratum_2": r.strata[j],
                    "mean_1": r.mean[i],
                    "mean_2": r.mean[j],
                    "n_1": r.count[i],
                    "n_2": r.count[j],
                    "t_stat": r.t_stat[i, j],
                    "df": r.df[i, j],
                    "p_value": r.p_value[i, j],
                    "significant": r.significant[i, j],
                }
            )
        )
    if not frames:
        return pd.DataFrame(
            columns=[
                "factor",
                "stratum_1",
                "stratum_2",
                "mean_1",
                "mean_2",
                "n_1",
                "n_2",
                "t_stat",
                "df",
                "p_value",
                "significant",
            ]
        )
    return pd.concat(frames, ignore_index=True)


def ecological_table(result: GeodetectorResult, names: Sequence[str] | None = None) -> pd.DataFrame:
    """Ecological detector: one row per ordered pair (does factor_1 explain less than factor_2?).

    Columns: ``factor_1``, ``factor_2``, ``f_stat``, ``df1``, ``df2``, ``p_value``,
    ``significant``, ``convention``.
    """
    names = _names(result, names)
    rows = [
        {
            "factor_1": names[i],
            "factor_2": names[j],
            "f_stat": e.f_stat,
            "df1": e.df1,
            "df2": e.df2,
            "p_value": e.p_value,
            "significant": e.significant,
            "convention": e.convention,
        }
        for (i, j), e in sorted(result.ecological.items())
    ]
    return pd.DataFrame(
        rows,
        columns=[
            "factor_1",
            "factor_2",
            "f_stat",
            "df1",
            "df2",
            "p_value",
            "significant",
            "convention",
        ],
    )


def sensitivity_table(sweep: dict[str, np.ndarray], names: Sequence[str]) -> pd.DataFrame:
    """DataFrame of :func:`ncp_subsidence.kernels.sampling.sensitivity_sweep` with factor names."""
    df = pd.DataFrame({k: np.asarray(v) for k, v in sweep.items()})
    names = list(names)
    df["factor"] = [names[int(i)] for i in df["factor"]]
    return df


def to_dataset(result: GeodetectorResult, names: Sequence[str] | None = None) -> xr.Dataset:
    """Factor and interaction results as one xarray Dataset (for Zarr).

    Variables on ``factor``: ``q``, ``f_stat``, ``p_value``, ``p_value_central``,
    ``noncentrality``, ``n_strata``; on ``(factor_1, factor_2)``: ``interaction_q`` and
    ``interaction_type`` (codes of ``INTERACTION_LABELS``, stored in the attrs).
    """
    names = _names(result, names)
    qm, tm = interaction_matrices(result, names)
    f = result.factors
    ds = xr.Dataset(
        {
            "q": ("factor", [r.q for r in f], {"long_name": "geodetector q-statistic"}),
            "f_stat": ("factor", [r.f_stat for r in f]),
            "p_value": (
                "factor",
                [r.p_value for r in f],
                {"long_name": "p-value, non-central F (Wang, Zhang & Fu 2016)"},
            ),
            "p_value_central": ("factor", [r.p_value_central for r in f]),
            "noncentrality": ("factor", [r.noncentrality for r in f]),
            "n_strata": ("factor", np.array([r.n_strata for r in f], dtype=np.int64)),
            "interaction_q": (("factor_1", "factor_2"), qm.to_numpy()),
            "interaction_type": (
                ("factor_1", "factor_2"),
                tm.to_numpy(),
                {
                    "flag_values": list(INTERACTION_LABELS),
                    "flag_meanings": " ".join(
                        v.lower().replace(", ", "_").replace("-", "_").replace(" ", "_")
                        for v in INTERACTION_LABELS.values()
                    ),
                    "missing_value": -1,
                },
            ),
        },
        coords={"factor": names, "factor_1": names, "factor_2": names},
        attrs={
            "n_samples": int(result.n_samples),
            "n_dropped": int(result.n_dropped),
            "convention": f[0].convention if f else "",
        },
    )
    return ds


# --------------------------------------------------------------------------------------------
# The pipeline stage
# --------------------------------------------------------------------------------------------

#: Config ``geodetector.discretization`` -> method of :func:`~ncp_subsidence.kernels.discretize.discretize`.
DISCRETIZATION_METHODS: dict[str, str] = {
    "natural_breaks": "natural",
    "quantile": "quantile",
    "equal_interval": "equal",
    "geometric": "geometric",
    "std": "sd",
    "optimal": "optimal",
}


@dataclass(frozen=True)
class CellBlocks:
    """Blocks of a fine (mosaic) grid whose edges fall on the block edges of the factor grid.

    Fine block ``(i, j)`` holds exactly the pixels of factor block ``(i, j)`` (pixels outside the
    factor grid go to the first or last block and are marked missing), so a per-cell statistic
    or a lookup of factor codes needs only the pair of blocks with the same index.

    Attributes
    ----------
    fine_chunks : tuple of two tuples of int
        Chunks of the fine grid (rows, columns); some may be empty.
    coarse_chunks : tuple of two tuples of int
        Chunks of the factor grid: ``block`` cells per block side.
    geometry : tuple of float
        ``(lat0, dlat, lon0, dlon, north, west, res, ny, nx)``: first fine centre and signed
        fine steps; north and west edges, resolution and shape of the factor grid (degrees).
    """

    fine_chunks: tuple[tuple[int, ...], tuple[int, ...]]
    coarse_chunks: tuple[tuple[int, ...], tuple[int, ...]]
    geometry: tuple[float, ...]


def _step(coord: np.ndarray, name: str) -> float:
    if coord.size < 2:
        return 0.0
    d = np.diff(coord)
    if not np.allclose(d, d[0], rtol=1e-6, atol=1e-10):
        raise DataError(
            f"{name} is not regularly spaced (steps {d.min():g} to {d.max():g}); "
            "the geodetector needs regular EPSG:4326 grids"
        )
    return float(d[0])


def _chunks_along(n_coarse: int, block: int) -> tuple[int, ...]:
    return tuple(min(block, n_coarse - s) for s in range(0, n_coarse, block))


def cell_blocks(
    fine_lat: np.ndarray,
    fine_lon: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    block: int,
) -> CellBlocks:
    """Plan the cell-aligned blocking of a fine north-up grid onto a coarse north-up grid.

    Parameters
    ----------
    fine_lat, fine_lon : ndarray of float
        Cell centres of the fine grid (latitude descending, longitude ascending, regular).
    lat, lon : ndarray of float
        Cell centres of the factor grid (same orientation, regular, equal spacing in both).
    block : int
        Factor cells per block side.

    Returns
    -------
    CellBlocks
    """
    res = abs(_step(lon, "factor lon")) or abs(_step(lat, "factor lat"))
    if not res > 0:
        raise DataError("the factor grid needs at least two cells along one axis")
    north, west = float(lat[0]) + res / 2, float(lon[0]) - res / 2
    dlat, dlon = _step(fine_lat, "mosaic lat"), _step(fine_lon, "mosaic lon")
    if dlat > 0 or dlon < 0:
        raise DataError("cell_blocks needs a north-up fine grid (lat descending, lon ascending)")
    coarse = (_chunks_along(lat.size, block), _chunks_along(lon.size, block))
    fine = []
    for coord, edge0, step, chunks in (
        (fine_lat, north, -res, coarse[0]),
        (fine_lon, west, res, coarse[1]),
    ):
        pos = np.floor((coord - edge0) / step + 1e-9)  # monotone, unclipped
        starts = np.cumsum(chunks)[:-1]
        bounds = np.searchsorted(pos, starts, side="left")
        fine.append(tuple(int(b) for b in np.diff(np.r_[0, bounds, coord.size])))
    geometry = (
        float(fine_lat[0]),
        dlat,
        float(fine_lon[0]),
        dlon,
        north,
        west,
        res,
        float(lat.size),
        float(lon.size),
    )
    return CellBlocks((fine[0], fine[1]), coarse, geometry)


def _local_cells(
    geometry: tuple[float, ...], fine_loc, coarse_loc
) -> tuple[np.ndarray, np.ndarray]:
    lat0, dlat, lon0, dlon, north, west, res, ny, nx = geometry
    (r0, r1), (c0, c1) = fine_loc
    rows = cell_of(lat0 + dlat * np.arange(r0, r1), north, -res, int(ny))
    cols = cell_of(lon0 + dlon * np.arange(c0, c1), west, res, int(nx))
    (cr0, cr1), (cc0, cc1) = coarse_loc
    rows = np.where((rows >= cr0) & (rows < cr1), rows - cr0, -1)
    cols = np.where((cols >= cc0) & (cols < cc1), cols - cc0, -1)
    return rows, cols


def _aggregate_block(values, coarse, *, geometry, how, block_info=None):
    rows, cols = _local_cells(
        geometry, block_info[0]["array-location"], block_info[1]["array-location"]
    )
    return cell_reduce(values, rows, cols, coarse.shape, how).astype(np.float32)


def _expand_block(values, coarse_codes, *, geometry, block_info=None):
    rows, cols = _local_cells(
        geometry, block_info[0]["array-location"], block_info[1]["array-location"]
    )
    out = np.full(values.shape, -1, dtype=np.int16)
    rr, cc = rows >= 0, cols >= 0
    if rr.any() and cc.any():
        out[np.ix_(rr, cc)] = coarse_codes[np.ix_(rows[rr], cols[cc])]
    return out


def _north_up(arr: xr.DataArray) -> xr.DataArray:
    if arr.sizes["lat"] > 1 and arr["lat"].values[1] > arr["lat"].values[0]:
        arr = arr.isel(lat=slice(None, None, -1))
    if arr.sizes["lon"] > 1 and arr["lon"].values[1] < arr["lon"].values[0]:
        arr = arr.isel(lon=slice(None, None, -1))
    return arr


def aligned_mosaic(velocity: xr.DataArray, lat: np.ndarray, lon: np.ndarray, block: int):
    """The mosaic velocity (north-up) rechunked into blocks aligned with the factor grid.

    Returns
    -------
    velocity : dask.array.Array, shape (n_lat_fine, n_lon_fine)
    plan : CellBlocks
    """
    v = _north_up(velocity.transpose("lat", "lon"))
    plan = cell_blocks(v["lat"].values, v["lon"].values, lat, lon, block)
    data = v.data if isinstance(v.data, da.Array) else da.from_array(v.values)
    return data.rechunk(plan.fine_chunks), plan


def aggregate_to_factor_grid(
    velocity: xr.DataArray,
    lat: np.ndarray,
    lon: np.ndarray,
    *,
    how: Literal["median", "mean", "centre"] = "median",
    block: int = 256,
) -> xr.DataArray:
    """Vertical velocity on the factor grid, lazily (SCIENCE.md 7.2: one point per cell).

    Parameters
    ----------
    velocity : xarray.DataArray, dims (lat, lon)
        Mosaic vertical velocity, mm/yr, on a regular grid (possibly finer than the factor grid).
    lat, lon : ndarray of float
        Factor-grid cell centres (north-up).
    how : {"median", "mean", "centre"}
        Median or mean of the mosaic pixels inside each factor cell (NaN ignored), or the
        pixel nearest the cell centre (within half a factor cell).
    block : int
        Factor cells per block side: each block of the result is computed from the mosaic pixels
        of that block only, so memory is bounded by the block size.

    Returns
    -------
    xarray.DataArray of float32, dims (lat, lon), dask-backed
    """
    if how == "centre":
        res = abs(float(lon[1] - lon[0])) if lon.size > 1 else abs(float(lat[1] - lat[0]))
        out = (
            _north_up(velocity.transpose("lat", "lon"))
            .reindex(lat=lat, lon=lon, method="nearest", tolerance=res / 2)
            .astype("float32")
            .chunk({"lat": block, "lon": block})
        )
        return out.drop_vars([c for c in out.coords if c not in ("lat", "lon")])
    data, plan = aligned_mosaic(velocity, lat, lon, block)
    template = da.empty((lat.size, lon.size), chunks=plan.coarse_chunks, dtype=np.float32)
    cells = da.map_blocks(
        _aggregate_block,
        data,
        template,
        geometry=plan.geometry,
        how=how,
        chunks=plan.coarse_chunks,
        dtype=np.float32,
        meta=np.empty((0, 0), dtype=np.float32),
        token=f"geodetector-cell-{how}",
    )
    return xr.DataArray(cells, dims=("lat", "lon"), coords={"lat": lat, "lon": lon})


def codes_on_mosaic(data: da.Array, plan: CellBlocks, codes: np.ndarray) -> da.Array:
    """Factor-cell codes spread onto the mosaic pixels each cell holds (-1 outside), lazily.

    Parameters
    ----------
    data : dask.array.Array
        Aligned mosaic velocity (:func:`aligned_mosaic`); only its blocks' locations are used.
    plan : CellBlocks
    codes : ndarray of int, shape (n_lat, n_lon)
        Stratum codes on the factor grid.

    Returns
    -------
    dask.array.Array of int16, chunked like ``data``
    """
    coarse = da.from_array(np.asarray(codes, dtype=np.int16), chunks=plan.coarse_chunks)
    return da.map_blocks(
        _expand_block,
        data,
        coarse,
        geometry=plan.geometry,
        chunks=data.chunks,
        dtype=np.int16,
        meta=np.empty((0, 0), dtype=np.int16),
        token="geodetector-codes",
    )


# -- sampling design, repeated draws, permutation null, sensitivity sweep --------------------


@dataclass(frozen=True)
class DrawResult:
    """One draw of the sampling design with every detector run on it.

    Attributes
    ----------
    draw : SampleDraw
        Indices of the points (into the flattened factor grid) and counts.
    result : GeodetectorResult
        Factor and interaction detectors (risk and ecological only where asked).
    codes : list of ndarray of int
        Stratum codes of each factor at the drawn points.
    n_codes : list of int
        Effective number of strata per factor.
    edges : list of ndarray of float
        Class limits used per factor.
    """

    draw: SampleDraw
    result: GeodetectorResult
    codes: list[np.ndarray]
    n_codes: list[int]
    edges: list[np.ndarray]


def factor_breaks(
    y: np.ndarray,
    factors: np.ndarray,
    *,
    method: str = "natural_breaks",
    n_strata: int = 20,
    sample_size: int = 5000,
    seed: int = 0,
    min_stratum_size: int = 2,
) -> list[np.ndarray]:
    """Class limits of every factor from the valid cells (SCIENCE.md 7.3).

    Parameters
    ----------
    y : ndarray of float, shape (n,)
        Response at the cells (used only by ``"optimal"``).
    factors : ndarray of float, shape (k, n)
        Factor values at the same cells (every value finite).
    method : str
        A key of :data:`DISCRETIZATION_METHODS`.
    n_strata, sample_size, seed, min_stratum_size
        See :func:`~ncp_subsidence.kernels.discretize.discretize`.

    Returns
    -------
    list of ndarray of float64
        Class limits ``[min, b_1, ..., max]`` per factor (after merging small classes).
    """
    kind = DISCRETIZATION_METHODS.get(method)
    if kind is None:
        raise DataError(
            f"unknown discretization {method!r}; use one of {sorted(DISCRETIZATION_METHODS)}"
        )
    out = []
    for x in factors:
        if kind == "optimal":
            d = optimal_discretization(
                y, x, sample_size=sample_size, seed=seed, min_stratum_size=min_stratum_size
            ).discretization
        else:
            d = discretize(
                x,
                kind,  # type: ignore[arg-type]
                n_strata,
                sample_size=sample_size,
                seed=seed,
                min_stratum_size=min_stratum_size,
            )
        out.append(np.asarray(d.edges, dtype=np.float64))
    return out


def _sample_codes(
    y: np.ndarray,
    x: np.ndarray,
    edges: np.ndarray | None,
    *,
    method: str,
    n_strata: int,
    sample_size: int,
    seed: int,
    min_stratum_size: int,
) -> tuple[np.ndarray, int, np.ndarray]:
    """Codes of one factor at the drawn points: given limits (merged on the sample) or new ones."""
    if edges is None:
        (e,) = factor_breaks(
            y,
            x[None, :],
            method=method,
            n_strata=n_strata,
            sample_size=sample_size,
            seed=seed,
            min_stratum_size=min_stratum_size,
        )
    else:
        e, _ = merge_small_strata(x, edges, min_size=min_stratum_size)
    if e.size < 2:
        e = np.array([e[0], e[0]])
    return apply_breaks(x, e), int(e.size - 1), e


def run_draws(
    y: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    factors: np.ndarray,
    edges: Sequence[np.ndarray] | None,
    *,
    threshold: float,
    ratio: float,
    min_spacing: float,
    cap: int | None,
    n_draws: int,
    seed: int,
    method: str = "natural_breaks",
    n_strata: int = 20,
    sample_size: int = 5000,
    min_stratum_size: int = 2,
    interactions: bool = True,
    detail_first: bool = False,
    **finalize_kwargs,
) -> tuple[list[DrawResult], int]:
    """Repeat the [H25] draw ``n_draws`` times (seeds ``seed, seed + 1, ...``) and run the detectors.

    Parameters
    ----------
    y : ndarray of float, shape (n,)
        Vertical velocity per factor cell, mm/yr (NaN: no data).
    lat, lon : ndarray of float, shape (n,)
        Cell centres, degrees.
    factors : ndarray of float, shape (k, n)
        Factor values per cell (NaN: missing; such cells are never drawn).
    edges : sequence of k ndarrays, or None
        Class limits computed once (merged again on each sample so no stratum is smaller than
        ``min_stratum_size``); None computes limits from each draw's sample (as [H25]).
    threshold, ratio, min_spacing, cap
        The design of :func:`~ncp_subsidence.kernels.sampling.draw_sample`.
    n_draws, seed : int
    method, n_strata, sample_size, min_stratum_size
        Discretisation, when ``edges`` is None.
    interactions : bool
        Also run the interaction detector on every pair.
    detail_first : bool
        Run the risk and ecological detectors on the first draw.
    **finalize_kwargs
        ``convention``, ``interaction_convention`` of
        :func:`~ncp_subsidence.kernels.geodetector.finalize_batch`.

    Returns
    -------
    draws : list of DrawResult
        One per draw that has at least 3 points.
    n_short : int
        Draws that found fewer non-subsidence cells than the ratio asks (all were taken; the
        counts in each draw say how many).
    """
    valid = np.isfinite(y) & np.all(np.isfinite(factors), axis=0)
    cells = cell_index(lat, lon, min_spacing)
    k = factors.shape[0]
    pairs = list(itertools.combinations(range(k), 2)) if interactions else []
    out: list[DrawResult] = []
    n_short = 0
    for b in range(int(n_draws)):
        s = int(seed) + b
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DataWarning)
            d = draw_sample(
                y,
                lat,
                lon,
                threshold=threshold,
                ratio=ratio,
                min_spacing=min_spacing,
                cap=cap,
                seed=s,
                valid=valid,
                cells=cells,
            )
        for w in caught:
            if issubclass(w.category, DataWarning):
                n_short += 1
                log.info("geodetector draw (seed %d): %s", s, w.message)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if d.index.size < 3:
            log.warning(
                "geodetector draw (seed %d, threshold %g): only %d points; skipped",
                s,
                threshold,
                d.index.size,
            )
            continue
        ys = y[d.index]
        codes, n_codes, used = [], [], []
        for i in range(k):
            c, n, e = _sample_codes(
                ys,
                factors[i, d.index],
                None if edges is None else edges[i],
                method=method,
                n_strata=n_strata,
                sample_size=sample_size,
                seed=s,
                min_stratum_size=min_stratum_size,
            )
            codes.append(c)
            n_codes.append(n)
            used.append(e)
        detail = detail_first and not out
        res = geodetector_batch(
            ys, codes, n_codes, pairs=pairs, risk=detail, ecological=detail, **finalize_kwargs
        )
        out.append(DrawResult(d, res, codes, n_codes, used))
    return out, n_short


def _mean_sd(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(values, axis=0)
        sd = (
            np.nanstd(values, axis=0, ddof=1)
            if values.shape[0] > 1
            else np.full(values.shape[1:], np.nan)
        )
    return mean, sd


def permutation_nulls(
    y: np.ndarray,
    codes: Sequence[np.ndarray],
    n_codes: Sequence[int],
    pairs: Sequence[tuple[int, int]],
    *,
    n_perm: int,
    seed: int,
) -> tuple[list[PermutationNull], list[PermutationNull]]:
    """Permutation null of q for every factor and every crossed pair of one draw.

    Crossed strata use the code ``c_i * n_j + c_j`` (SCIENCE.md 7.4 caveat).
    """
    fac = [permutation_null(y, c, n, n_perm=n_perm, seed=seed) for c, n in zip(codes, n_codes)]
    inter = [
        permutation_null(
            y,
            codes[i].astype(np.int64) * n_codes[j] + codes[j],
            n_codes[i] * n_codes[j],
            n_perm=n_perm,
            seed=seed,
        )
        for i, j in pairs
    ]
    return fac, inter


def sweep_table(
    sweep: dict[tuple[float, float], tuple[list[DrawResult], int]], names: Sequence[str]
) -> pd.DataFrame:
    """The sensitivity sweep as one table, with :func:`sensitivity_table`'s columns.

    Adds ``n_short_draws``: draws of the setting that lacked non-subsidence cells for its ratio.
    """
    k = len(names)
    rows, short = [], []
    for (t, r), (draws, n_short) in sweep.items():
        q = np.array([[f.q for f in d.result.factors] for d in draws]).reshape(-1, k)
        qm, qs = _mean_sd(q) if len(draws) else (np.full(k, np.nan), np.full(k, np.nan))
        n_s = np.mean([d.draw.n_subsidence for d in draws]) if draws else 0.0
        n_n = np.mean([d.draw.n_nonsubsidence for d in draws]) if draws else 0.0
        rows.append((t, r, qm, qs, float(n_s), float(n_n), len(draws)))
        short += [int(n_short)] * k
    cols = sweep_columns(rows)
    cols["n_short_draws"] = np.asarray(short, dtype=np.int64)
    return sensitivity_table(cols, names)


# -- tables of the stage ------------------------------------------------------------------------


def draws_factor_table(
    draws: Sequence[DrawResult],
    names: Sequence[str],
    nulls: Sequence[PermutationNull] = (),
    whole_plain: GeodetectorResult | None = None,
) -> pd.DataFrame:
    """Factor table over repeated draws, ranked by mean q.

    Columns: ``factor``, ``q_mean``, ``q_sd``, ``q_min``, ``q_max``, then the first draw's
    :func:`factor_table` columns (``q``, ``f_stat``, ``p_value``, ... as ``*_draw0``-free names:
    ``q_first_draw``, ``f_stat``, ``p_value``, ``p_value_central``, ``noncentrality``,
    ``n_strata``, ``n_samples``, ``n_dropped``, ``n_singleton``), ``significant_draws`` (share of
    draws with p < 0.05), ``q_null_95`` and ``p_permutation`` (first draw), ``q_whole_plain`` and
    ``n_strata_whole_plain``, ``rank`` (by ``q_mean``), ``convention``.
    """
    names = list(names)
    q = np.array([[f.q for f in d.result.factors] for d in draws])
    p = np.array([[f.p_value for f in d.result.factors] for d in draws])
    qm, qs = _mean_sd(q)
    first = factor_table(draws[0].result, names).set_index("factor").loc[names]
    df = pd.DataFrame(
        {
            "factor": names,
            "q_mean": qm,
            "q_sd": qs,
            "q_min": np.nanmin(q, axis=0),
            "q_max": np.nanmax(q, axis=0),
            "q_first_draw": first["q"].to_numpy(),
            "f_stat": first["f_stat"].to_numpy(),
            "p_value": first["p_value"].to_numpy(),
            "p_value_central": first["p_value_central"].to_numpy(),
            "noncentrality": first["noncentrality"].to_numpy(),
            "n_strata": first["n_strata"].to_numpy(),
            "n_samples": first["n_samples"].to_numpy(),
            "n_dropped": first["n_dropped"].to_numpy(),
            "n_singleton": first["n_singleton"].to_numpy(),
            "significant_draws": np.mean(p < 0.05, axis=0),
            "q_null_95": [n.q_quantile for n in nulls] if nulls else np.nan,
            "p_permutation": [n.p_value for n in nulls] if nulls else np.nan,
            "q_whole_plain": [f.q for f in whole_plain.factors] if whole_plain else np.nan,
            "n_strata_whole_plain": [f.n_strata for f in whole_plain.factors]
            if whole_plain
            else np.nan,
            "convention": first["convention"].to_numpy(),
        }
    )
    df = df.sort_values("q_mean", ascending=False, kind="stable", na_position="last")
    df.insert(df.columns.get_loc("convention"), "rank", np.arange(1, len(df) + 1))
    return df.reset_index(drop=True)


def draws_interaction_table(
    draws: Sequence[DrawResult],
    names: Sequence[str],
    nulls: Sequence[PermutationNull] = (),
    whole_plain: GeodetectorResult | None = None,
    *,
    interaction_convention: str = "wang2010",
) -> pd.DataFrame:
    """Interaction table over repeated draws, one row per pair, sorted by mean q12.

    Columns: ``factor_1``, ``factor_2``, ``q_12_mean``, ``q_12_sd``, ``q_1_mean``, ``q_2_mean``,
    ``interaction_type`` and ``interaction_label`` (of the means), ``type_agreement`` (share of
    draws giving that type), ``enhance_draws`` (share of draws with q12 > max(q1, q2)),
    ``n_strata_12`` (first draw), ``q_12_null_95`` and ``p_permutation`` (first draw),
    ``q_12_whole_plain``, ``interaction_type_whole_plain``.
    """
    names = list(names)
    pairs = draws[0].result.pairs
    q12 = np.array([[r.q12 for r in d.result.interactions] for d in draws])
    q1 = np.array([[r.q1 for r in d.result.interactions] for d in draws])
    q2 = np.array([[r.q2 for r in d.result.interactions] for d in draws])
    types = np.array([[r.interaction_type for r in d.result.interactions] for d in draws])
    m12, s12 = _mean_sd(q12)
    m1, _ = _mean_sd(q1)
    m2, _ = _mean_sd(q2)
    mean_type = np.array(
        [
            classify_interaction(a, b, c, convention=interaction_convention)  # type: ignore[arg-type]
            for a, b, c in zip(m12, m1, m2)
        ],
        dtype=np.int64,
    )
    wp = whole_plain.interactions if whole_plain else None
    df = pd.DataFrame(
        {
            "factor_1": [names[i] for i, _ in pairs],
            "factor_2": [names[j] for _, j in pairs],
            "q_12_mean": m12,
            "q_12_sd": s12,
            "q_1_mean": m1,
            "q_2_mean": m2,
            "interaction_type": mean_type,
            "interaction_label": [INTERACTION_LABELS.get(int(t), "Undefined") for t in mean_type],
            "type_agreement": np.mean(types == mean_type[None, :], axis=0),
            "enhance_draws": np.mean(q12 > np.maximum(q1, q2), axis=0),
            "n_strata_12": [r.n_strata12 for r in draws[0].result.interactions],
            "q_12_null_95": [n.q_quantile for n in nulls] if nulls else np.nan,
            "p_permutation": [n.p_value for n in nulls] if nulls else np.nan,
            "q_12_whole_plain": [r.q12 for r in wp] if wp else np.nan,
            "interaction_type_whole_plain": [r.interaction_type for r in wp] if wp else -1,
        }
    )
    return df.sort_values("q_12_mean", ascending=False, kind="stable").reset_index(drop=True)


def mean_interaction_matrix(
    factor_df: pd.DataFrame, interaction_df: pd.DataFrame, names: Sequence[str]
) -> pd.DataFrame:
    """Symmetric matrix of mean q: factor q on the diagonal, mean q12 off it."""
    names = list(names)
    q = pd.DataFrame(np.nan, index=names, columns=names)
    for row in factor_df.itertuples():
        q.loc[row.factor, row.factor] = row.q_mean
    for row in interaction_df.itertuples():
        q.loc[row.factor_1, row.factor_2] = q.loc[row.factor_2, row.factor_1] = row.q_12_mean
    q.index.name = "factor"
    return q


def breaks_table(edges: Sequence[np.ndarray], names: Sequence[str]) -> pd.DataFrame:
    """Class limits per factor, one row per class: ``factor``, ``stratum``, ``lower``, ``upper``."""
    rows = [
        {"factor": n, "stratum": h, "lower": float(e[h]), "upper": float(e[h + 1])}
        for n, e in zip(names, edges)
        for h in range(e.size - 1)
    ]
    return pd.DataFrame(rows, columns=["factor", "stratum", "lower", "upper"])


def draws_dataset(
    draws: Sequence[DrawResult],
    names: Sequence[str],
    factor_df: pd.DataFrame,
    interaction_df: pd.DataFrame,
) -> xr.Dataset:
    """:func:`to_dataset` of the first draw plus the per-draw q and the means over draws."""
    names = list(names)
    ds = to_dataset(draws[0].result, names)
    ds = ds.rename({v: f"{v}_first_draw" for v in ("q", "interaction_q", "interaction_type")})
    fac = factor_df.set_index("factor").loc[names]
    qm = mean_interaction_matrix(factor_df, interaction_df, names).loc[names, names]
    tm = np.full((len(names), len(names)), -1, dtype=np.int64)
    pos = {n: i for i, n in enumerate(names)}
    for row in interaction_df.itertuples():
        tm[pos[row.factor_1], pos[row.factor_2]] = tm[pos[row.factor_2], pos[row.factor_1]] = (
            row.interaction_type
        )
    type_attrs = dict(ds["interaction_type_first_draw"].attrs)
    ds["q"] = ("factor", fac["q_mean"].to_numpy(), {"long_name": "mean q over draws"})
    ds["q_sd"] = ("factor", fac["q_sd"].to_numpy(), {"long_name": "sd of q over draws"})
    ds["q_null_95"] = ("factor", fac["q_null_95"].to_numpy().astype(np.float64))
    ds["interaction_q"] = (("factor_1", "factor_2"), qm.to_numpy())
    ds["interaction_type"] = (("factor_1", "factor_2"), tm, type_attrs)
    ds["q_draws"] = (
        ("draw", "factor"),
        np.array([[f.q for f in d.result.factors] for d in draws]),
    )
    ds = ds.assign_coords(draw=np.arange(len(draws)))
    ds["seed"] = ("draw", np.array([d.draw.seed for d in draws], dtype=np.int64))
    ds["n_subsidence"] = ("draw", np.array([d.draw.n_subsidence for d in draws], np.int64))
    ds["n_nonsubsidence"] = ("draw", np.array([d.draw.n_nonsubsidence for d in draws], np.int64))
    return ds


def _to_csv(df: pd.DataFrame, index: bool = False, digits: int = 10) -> str:
    return df.to_csv(index=index, float_format=f"%.{digits}g")


class GeodetectorStage:
    """Geodetector of [H25] on the mosaic velocity and the driving factors (SCIENCE.md 7).

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
    """

    name = "geodetector"
    reads: tuple[str, ...] = ("mosaic", "factors")

    def run(self, ctx: Any) -> None:
        """Run the detectors and write the tables and datasets."""
        opts = ctx.options
        velocity = ctx.find_variable("mosaic", "vertical_velocity")
        fds = ctx.open("factors", "factors")
        fds = _north_up_dataset(fds)
        names = [n for n in FACTOR_NAMES if n in fds.data_vars] + [
            n for n in fds.data_vars if n not in FACTOR_NAMES
        ]
        if len(names) < 2:
            raise DataError(f"the factors product has {names}; the geodetector needs two or more")
        lat, lon = fds["lat"].values, fds["lon"].values
        block = int(opts.chunk_cells)
        response = aggregate_to_factor_grid(
            velocity, lat, lon, how=opts.aggregation, block=block
        ).rename("vertical_velocity")
        y_grid = np.asarray(response.compute().values, dtype=np.float64)
        x_grid = np.stack([np.asarray(fds[n].values, dtype=np.float64) for n in names])
        glat, glon = np.meshgrid(lat, lon, indexing="ij")
        y, flat_lat, flat_lon = y_grid.ravel(), glat.ravel(), glon.ravel()
        factors = x_grid.reshape(len(names), -1)
        valid = np.isfinite(y) & np.all(np.isfinite(factors), axis=0)
        if valid.sum() < 3:
            raise DataError(
                f"only {int(valid.sum())} factor cells have both a velocity and every factor; "
                "check that the mosaic and the factors overlap"
            )
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
        design = dict(
            min_spacing=opts.min_spacing_deg,
            cap=opts.max_subsidence_samples,
            method=opts.discretization,
            n_strata=opts.n_strata,
            sample_size=opts.breaks_sample_size,
            min_stratum_size=opts.min_stratum_size,
            convention=opts.convention,
            interaction_convention=opts.interaction_convention,
        )
        draw_edges = None if opts.breaks_per_draw else edges
        draws, n_short = run_draws(
            y,
            flat_lat,
            flat_lon,
            factors,
            draw_edges,
            threshold=opts.threshold_mm_yr,
            ratio=opts.ratio,
            n_draws=opts.draws,
            seed=seed,
            detail_first=True,
            **design,
        )
        if not draws:
            raise DataError(
                f"no draw has 3 or more points at threshold {opts.threshold_mm_yr} mm/yr; "
                "lower the threshold or check the velocity units (mm/yr, subsidence negative)"
            )
        first = draws[0]
        ys = y[first.draw.index]
        fac_null, int_null = ([], [])
        if opts.permutations > 0:
            fac_null, int_null = permutation_nulls(
                ys,
                first.codes,
                first.n_codes,
                first.result.pairs,
                n_perm=opts.permutations,
                seed=seed,
            )
        whole = None
        n_pixels = 0
        if opts.whole_plain:
            whole, n_pixels = self._whole_plain(velocity, lat, lon, x_grid, edges, opts)
        factor_df = draws_factor_table(draws, names, fac_null, whole)
        inter_df = draws_interaction_table(
            draws, names, int_null, whole, interaction_convention=opts.interaction_convention
        )
        sweep = {}
        for t in opts.sensitivity_thresholds:
            for r in opts.sensitivity_ratios:
                sweep[(float(t), float(r))] = run_draws(
                    y,
                    flat_lat,
                    flat_lon,
                    factors,
                    draw_edges,
                    threshold=float(t),
                    ratio=float(r),
                    n_draws=opts.draws,
                    seed=seed,
                    interactions=False,
                    **design,
                )
        sens_df = sweep_table(sweep, names)

        ctx.write_file("factor.csv", _to_csv(factor_df))
        ctx.write_file("interaction.csv", _to_csv(inter_df))
        ctx.write_file(
            "interaction_matrix.csv",
            _to_csv(mean_interaction_matrix(factor_df, inter_df, names), index=True),
        )
        ctx.write_file("risk.csv", _to_csv(risk_table(first.result, names)))
        ctx.write_file("ecological.csv", _to_csv(ecological_table(first.result, names)))
        ctx.write_file("sensitivity.csv", _to_csv(sens_df))
        ctx.write_file(
            "breaks.csv", _to_csv(breaks_table(edges, names), digits=17)
        )  # limits are data values: full precision, so they reproduce the strata
        ctx.write_file("samples.csv", _to_csv(_samples_table(draws)))
        if whole is not None:
            ctx.write_file("whole_plain_factor.csv", _to_csv(factor_table(whole, names)))
            ctx.write_file("whole_plain_interaction.csv", _to_csv(interaction_table(whole, names)))

        attrs = {
            "threshold_mm_yr": float(opts.threshold_mm_yr),
            "ratio": float(opts.ratio),
            "min_spacing_deg": float(opts.min_spacing_deg),
            "aggregation": opts.aggregation,
            "discretization": opts.discretization,
            "breaks_per_draw": int(opts.breaks_per_draw),
            "n_short_draws": int(n_short),
        }
        ds = draws_dataset(draws, names, factor_df, inter_df)
        ds.attrs.update(attrs)
        ctx.write("detectors", _object_strings(ds))
        if whole is not None:
            wds = to_dataset(whole, names)
            wds.attrs["n_pixels"] = int(n_pixels)
            ctx.write("whole_plain", _object_strings(wds))
        resp = with_crs(response.to_dataset())
        resp["vertical_velocity"].attrs.update(
            {
                "units": "mm/yr",
                "long_name": f"vertical velocity per factor cell ({opts.aggregation} of mosaic)",
            }
        )
        ctx.write("response", resp.chunk({"lat": block, "lon": block}), region_dim="lat")

        top = inter_df.iloc[0]
        summary = {
            "n_cells_valid": int(valid.sum()),
            "n_draws": len(draws),
            "n_short_draws": int(n_short),
            "seeds": [int(d.draw.seed) for d in draws],
            "n_subsidence": [int(d.draw.n_subsidence) for d in draws],
            "n_nonsubsidence": [int(d.draw.n_nonsubsidence) for d in draws],
            "n_excluded_cells": int(first.draw.n_excluded),
            "ranking": list(factor_df["factor"]),
            "q_mean": dict(zip(factor_df["factor"], map(float, factor_df["q_mean"]))),
            "q_sd": dict(zip(factor_df["factor"], map(float, factor_df["q_sd"]))),
            "n_strata": {n: int(e.size - 1) for n, e in zip(names, edges)},
            "top_interaction": {
                "factors": [str(top["factor_1"]), str(top["factor_2"])],
                "q_12_mean": float(top["q_12_mean"]),
                "q_12_sd": float(top["q_12_sd"]),
                "type": str(top["interaction_label"]),
            },
            "whole_plain": None
            if whole is None
            else {
                "n_pixels": int(n_pixels),
                "n_samples": int(whole.n_samples),
                "ranking": list(factor_table(whole, names)["factor"]),
            },
            "options": {**attrs, "seed": seed, "draws": int(opts.draws)},
        }
        ctx.write_file("summary.json", json.dumps(summary, indent=2, default=_json_default))
        log.info(
            "geodetector: ranking %s; top interaction %s x %s q=%.3f (%s)",
            ", ".join(f"{n} {q:.3f}" for n, q in summary["q_mean"].items()),
            top["factor_1"],
            top["factor_2"],
            top["q_12_mean"],
            top["interaction_label"],
        )

    @staticmethod
    def _whole_plain(
        velocity: xr.DataArray,
        lat: np.ndarray,
        lon: np.ndarray,
        x_grid: np.ndarray,
        edges: Sequence[np.ndarray],
        opts: Any,
    ) -> tuple[GeodetectorResult, int]:
        """Factor and interaction detectors over every mosaic pixel (chunk -> combine -> finalize)."""
        data, plan = aligned_mosaic(velocity, lat, lon, int(opts.chunk_cells))
        codes, n_codes = [], []
        for x, e in zip(x_grid, edges):
            c = apply_breaks(x, e)
            codes.append(codes_on_mosaic(data, plan, c))
            n_codes.append(int(e.size - 1))
        result = geodetector_dask(
            data,
            codes,
            n_codes,
            convention=opts.convention,
            interaction_convention=opts.interaction_convention,
        )
        return result, int(data.size)


def _samples_table(draws: Sequence[DrawResult]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "draw": np.arange(len(draws)),
            "seed": [d.draw.seed for d in draws],
            "n_subsidence": [d.draw.n_subsidence for d in draws],
            "n_nonsubsidence": [d.draw.n_nonsubsidence for d in draws],
            "n_subsidence_cells": [d.draw.n_subsidence_cells for d in draws],
            "n_nonsubsidence_cells": [d.draw.n_nonsubsidence_cells for d in draws],
            "n_excluded": [d.draw.n_excluded for d in draws],
            "n_samples": [d.result.n_samples for d in draws],
        }
    )


def _object_strings(ds: xr.Dataset) -> xr.Dataset:
    """Store string coordinates as variable-length UTF-8 (a Zarr v3 data type with a spec)."""
    return ds.assign_coords(
        {c: ds[c].astype(object) for c in ds.coords if ds[c].dtype.kind in "UO"}
    )


def _north_up_dataset(ds: xr.Dataset) -> xr.Dataset:
    if ds.sizes["lat"] > 1 and ds["lat"].values[1] > ds["lat"].values[0]:
        ds = ds.isel(lat=slice(None, None, -1))
    if ds.sizes["lon"] > 1 and ds["lon"].values[1] < ds["lon"].values[0]:
        ds = ds.isel(lon=slice(None, None, -1))
    return ds


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


STAGE = GeodetectorStage()
