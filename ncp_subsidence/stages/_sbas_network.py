"""Private to stage ``sbas``: the pair network of an interferogram cube, and the pairs that
hold no data dropped from it (with the network re-checked).

Input: ``unw_phase(pair, y, x)`` radians, coords ``reference(pair)`` and ``secondary(pair)``
(datetime64 of each pair's two acquisitions), optional ``item_id(pair)``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import xarray as xr

from ncp_subsidence.errors import DataError
from ncp_subsidence.kernels import sbas as ksbas

__all__ = ["drop_empty_pairs", "network_from_dataset"]

# the stage's logger: messages and their filters are those of stage ``sbas``
log = logging.getLogger("ncp_subsidence.stages.sbas")


def network_from_dataset(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Pair indices and sorted unique dates from the ``reference``/``secondary`` coordinates.

    Parameters
    ----------
    ds : xarray.Dataset
        With coordinates ``reference(pair)`` and ``secondary(pair)``, datetime64.

    Returns
    -------
    pairs : ndarray of int64, shape (n_pair, 2)
        Indices into ``dates`` of (reference, secondary) of each pair, in the dataset's order.
    dates : ndarray of datetime64[ns], shape (n_date,)
        Unique acquisition times, increasing.
    """
    for name in ("reference", "secondary"):
        if name not in ds.coords:
            raise DataError(
                f"the interferogram dataset has no '{name}' coordinate; it needs reference(pair) "
                "and secondary(pair) with the datetime64 of each pair's two acquisitions"
            )
        if not np.issubdtype(ds[name].dtype, np.datetime64):
            raise DataError(f"coordinate '{name}' must be datetime64, got {ds[name].dtype}")
    reference = np.asarray(ds["reference"].values, dtype="datetime64[ns]")
    secondary = np.asarray(ds["secondary"].values, dtype="datetime64[ns]")
    if reference.size == 0:
        raise DataError("the interferogram dataset has no pairs (pair axis of length 0)")
    dates = np.unique(np.concatenate([reference, secondary]))
    pairs = np.stack([np.searchsorted(dates, reference), np.searchsorted(dates, secondary)], 1)
    return pairs.astype(np.int64), dates


def _pair_names(ds: xr.Dataset, index: np.ndarray) -> list[str]:
    """``item_id`` of the pairs at ``index`` (else ``<reference>_<secondary>``, YYYYMMDD)."""
    if "item_id" in ds.coords:
        return [str(v) for v in ds["item_id"].values[index]]
    days = [
        np.datetime_as_string(np.asarray(ds[c].values, dtype="datetime64[D]")[index], unit="D")
        for c in ("reference", "secondary")
    ]
    return [f"{a.replace('-', '')}_{b.replace('-', '')}" for a, b in zip(*days)]


def drop_empty_pairs(ds: xr.Dataset, *, frame: str = "") -> tuple[xr.Dataset, dict[str, Any]]:
    """Remove the interferograms that hold no valid phase at all from the network.

    A pair whose ``unw_phase`` is NaN at every pixel (an asset unreadable under
    ``ingest.on_error: nan``, or a file of no data) carries no information, yet it would make
    every pixel look incomplete (no reference window qualifies) and count in the per-pixel
    minimum of valid pairs. It is dropped before the inversion, so the result is that of the
    network without it. This computes one reduction over the cube (which pairs have any valid
    pixel); call it before building the inversion graph.

    The network left is checked again (:func:`~ncp_subsidence.kernels.sbas.prune_network`):
    dates that lose every pair leave the time axis; when dropping splits the network into
    components, the inversion goes on as on any disconnected network (``svd``: Berardino's
    minimum-norm velocity across the gap; ``nsbas``: the temporal model bridges it; per pixel
    ``n_components`` > 1), and the split is logged and recorded.

    Parameters
    ----------
    ds : xarray.Dataset
        ``unw_phase(pair, y, x)`` radians, coords ``reference(pair)``, ``secondary(pair)``
        (datetime64), optional ``item_id(pair)`` (pairs are named by it).
    frame : str
        Frame name, for messages.

    Returns
    -------
    ds : xarray.Dataset
        ``ds`` without the empty pairs (``ds`` itself when none is empty).
    attrs : dict
        For the product's attrs: ``n_dropped_pairs``, ``dropped_pairs`` (JSON names),
        ``n_dropped_dates``, ``dropped_dates`` (JSON ISO dates), ``n_network_components``
        (of the network inverted), ``network_components`` (JSON ``[first, last, n_dates]`` of
        each component when there are several, else ``[]``).

    Raises
    ------
    DataError
        Every interferogram is empty (naming the frame and the count).
    """
    pairs, dates = network_from_dataset(ds)
    usable = np.asarray(ds["unw_phase"].notnull().any(("y", "x")).values, dtype=bool)
    pruning = ksbas.prune_network(pairs, dates.size, usable)
    where = f"frame {frame}: " if frame else ""
    dropped = _pair_names(ds, pruning.dropped)
    if pruning.kept.size == 0:
        raise DataError(
            f"{where}all {pairs.shape[0]} interferograms have no valid phase at any pixel "
            f"(e.g. {dropped[:3]}); nothing to invert. Check ingest's n_unreadable_assets "
            "(ingest.on_error: nan turns unreadable files into NaN) and the input files"
        )
    lost = [str(np.datetime_as_string(d, unit="D")) for d in dates[pruning.lost_dates]]
    components: list[list[Any]] = []
    if pruning.n_components > 1:
        in_network = np.setdiff1d(np.arange(dates.size), pruning.lost_dates)
        for label in np.unique(pruning.labels[in_network]):
            members = in_network[pruning.labels[in_network] == label]
            first, last = (str(np.datetime_as_string(dates[k], unit="D")) for k in members[[0, -1]])
            components.append([first, last, int(members.size)])
    if dropped:
        log.warning(
            "%s%d interferogram(s) with no valid phase at any pixel dropped from the network: %s%s",
            where,
            len(dropped),
            ", ".join(dropped[:10]),
            " ..." if len(dropped) > 10 else "",
        )
    if lost:
        log.warning(
            "%s%d date(s) lost every interferogram and leave the time series: %s",
            where,
            len(lost),
            ", ".join(lost),
        )
    if components:
        log.warning(
            "%sthe network is split into %d parts%s: %s; the inversion bridges the gaps as on "
            "any disconnected network (svd: minimum-norm velocity, nsbas: the temporal model)%s",
            where,
            len(components),
            f" after dropping {', '.join(dropped[:10])}" if dropped else "",
            "; ".join(f"{a}..{b} ({n} dates)" for a, b, n in components),
            "; restore the dropped interferograms to reconnect it" if dropped else "",
        )
    attrs = {
        "n_dropped_pairs": len(dropped),
        "dropped_pairs": json.dumps(dropped),
        "n_dropped_dates": len(lost),
        "dropped_dates": json.dumps(lost),
        "n_network_components": pruning.n_components,
        "network_components": json.dumps(components),
    }
    if not dropped:
        return ds, attrs
    return ds.isel(pair=pruning.kept), attrs
