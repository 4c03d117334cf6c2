"""Geodetector stage: xarray datasets (for Zarr) and the JSON summary of the detectors.

Private to :mod:`ncp_subsidence.stages.geodetector` (which re-exports the public names).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ncp_subsidence.kernels.geodetector import INTERACTION_LABELS, GeodetectorResult
from ncp_subsidence.kernels.sampling import DrawResult
from ncp_subsidence.stages._geodetector_tables import (
    factor_table,
    interaction_matrices,
    mean_interaction_matrix,
    result_names,
)

__all__ = ["draws_dataset", "json_default", "object_strings", "summary", "to_dataset"]


def to_dataset(result: GeodetectorResult, names: Sequence[str] | None = None) -> xr.Dataset:
    """Factor and interaction results as one xarray Dataset (for Zarr).

    Variables on ``factor``: ``q``, ``f_stat``, ``p_value``, ``p_value_central``,
    ``noncentrality``, ``n_strata``; on ``(factor_1, factor_2)``: ``interaction_q`` and
    ``interaction_type`` (codes of ``INTERACTION_LABELS``, stored in the attrs).
    """
    names = result_names(result, names)
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


def object_strings(ds: xr.Dataset) -> xr.Dataset:
    """Store string coordinates as variable-length UTF-8 (a Zarr v3 data type with a spec)."""
    return ds.assign_coords(
        {c: ds[c].astype(object) for c in ds.coords if ds[c].dtype.kind in "UO"}
    )


def json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def summary(
    draws: Sequence[DrawResult],
    n_short: int,
    n_cells_valid: int,
    names: Sequence[str],
    edges: Sequence[np.ndarray],
    factor_df: pd.DataFrame,
    inter_df: pd.DataFrame,
    whole: GeodetectorResult | None,
    n_pixels: int,
    options: dict[str, Any],
) -> dict[str, Any]:
    """The stage's ``summary.json``: counts per draw, ranking, mean q, top interaction, options."""
    first = draws[0]
    top = inter_df.iloc[0]
    return {
        "n_cells_valid": int(n_cells_valid),
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
        "options": options,
    }
