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

Also here: table builders that turn results into pandas DataFrames and an xarray Dataset. Store
reading and writing and the configuration belong to the pipeline, not to this module.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from ncp_subsidence.errors import DataError
from ncp_subsidence.kernels.geodetector import (
    INTERACTION_LABELS,
    BatchStats,
    FactorResult,
    GeodetectorResult,
    InteractionResult,
    batch_stats,
    combine_packed,
    finalize_batch,
    packed_size,
    unpack_batch,
)

__all__ = [
    "ecological_table",
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
            _first_block_mean, dtype=np.float64, chunks=(1,) * y.ndim, name="geodetector-shift"
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
        name="geodetector-chunk",
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
