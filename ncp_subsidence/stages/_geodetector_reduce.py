"""Geodetector stage, Dask layer: chunk -> combine -> finalize reductions of the detectors.

The numbers live in :mod:`ncp_subsidence.kernels.geodetector`. Here:

* chunk: :func:`~ncp_subsidence.kernels.geodetector.batch_stats` on each block of y and the
  factor codes (``map_blocks``), packed into one float64 vector per block: per-factor counts,
  sums and M2, per-pair crossed counts and sums (crossed code ``c1 * n2 + c2``), and y's own
  count, sum and M2;
* combine: :func:`~ncp_subsidence.kernels.geodetector.combine_packed`, exact and associative
  (counts and sums add, M2 by Chan et al. 1979), applied as a tree by ``dask.array.reduction``;
* finalize: :func:`~ncp_subsidence.kernels.geodetector.finalize_batch` on the driver.

:func:`start_geodetector` builds the same reduction and starts it (``dask.persist``: on a
distributed cluster it then runs on the workers while the driver goes on);
:meth:`PendingReduction.result` finalizes it. :func:`geodetector_dask` is both at once.

Every block sums ``y - shift`` with one common ``shift`` (by default the mean of the first block,
taken lazily), so sums stay accurate for data with a large offset. Samples with y or any factor
missing are dropped from every detector and counted (listwise, docs/science.md 7.2 step 3).

Private to :mod:`ncp_subsidence.stages.geodetector` (which re-exports the public names).

References
----------
Wang JF et al. 2010. Int. J. Geogr. Inf. Sci. 24(1):107-127 (detectors).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np

from ncp_subsidence.errors import DataError
from ncp_subsidence.kernels.geodetector import (
    BatchStats,
    FactorResult,
    GeodetectorResult,
    InteractionResult,
    batch_stats,
    combine_packed,
    factor_pairs,
    finalize_batch,
    packed_size,
    unpack_batch,
)

__all__ = [
    "PendingReduction",
    "factor_detector_dask",
    "geodetector_dask",
    "geodetector_stats_dask",
    "interaction_detector_dask",
    "start_geodetector",
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
    pairs = factor_pairs(k, pairs)
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


@dataclass
class PendingReduction:
    """A started :func:`geodetector_stats_dask` reduction: :meth:`result` finalizes it.

    With a distributed scheduler the reduction runs on the workers from :func:`start_geodetector`
    on (``dask.persist``) while the caller does other work; with a local scheduler it is computed
    by ``persist`` itself.
    """

    packed: da.Array
    shift: float | da.Array
    n_codes: list[int]
    pairs: list[tuple[int, int]]
    scheduler: str | None = None

    def stats(self) -> BatchStats:
        """The combined statistics (waits for the reduction)."""
        packed_v, shift_v = dask.compute(self.packed, self.shift, scheduler=self.scheduler)
        return unpack_batch(np.asarray(packed_v), self.n_codes, self.pairs, float(shift_v))

    def result(self, **finalize_kwargs) -> GeodetectorResult:
        """:func:`~ncp_subsidence.kernels.geodetector.finalize_batch` of :meth:`stats`."""
        return finalize_batch(self.stats(), **finalize_kwargs)


def start_geodetector(
    y: da.Array,
    codes: Sequence[da.Array | np.ndarray],
    n_codes: Sequence[int],
    *,
    pairs: Sequence[tuple[int, int]] | None = None,
    shift: float | da.Array | None = None,
    split_every: int | None = None,
    scheduler: str | None = None,
    persist: bool = True,
) -> PendingReduction:
    """Build the reduction of :func:`geodetector_dask` and start it (``dask.persist``).

    Parameters are those of :func:`geodetector_dask`; ``persist=False`` only builds the graph
    (:meth:`PendingReduction.result` then computes it).

    Returns
    -------
    PendingReduction
    """
    k = len(codes)
    pairs = factor_pairs(k, pairs)
    packed, sh = geodetector_stats_dask(
        y, codes, n_codes, pairs=pairs, shift=shift, split_every=split_every
    )
    if persist:
        packed, sh = dask.persist(packed, sh, scheduler=scheduler)
    return PendingReduction(packed, sh, [int(n) for n in n_codes], pairs, scheduler)


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
    pending = start_geodetector(
        y,
        codes,
        n_codes,
        pairs=pairs,
        shift=shift,
        split_every=split_every,
        scheduler=scheduler,
        persist=False,
    )
    return pending.result(**finalize_kwargs)


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
