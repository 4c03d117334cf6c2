"""Geodetector stage: pandas tables of the detectors (one result, repeated draws, the sweep).

:func:`factor_table`, :func:`interaction_table`, :func:`interaction_matrices`,
:func:`risk_table` and :func:`ecological_table` tabulate one
:class:`~ncp_subsidence.kernels.geodetector.GeodetectorResult`; :func:`draws_factor_table`,
:func:`draws_interaction_table` and :func:`mean_interaction_matrix` the repeated draws of the
design (:class:`~ncp_subsidence.kernels.sampling.DrawResult`); :func:`sweep_table` the threshold
x ratio sensitivity sweep. :func:`to_csv` is how the stage writes them.

Private to :mod:`ncp_subsidence.stages.geodetector` (which re-exports the public names).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ncp_subsidence.errors import DataError
from ncp_subsidence.kernels.geodetector import (
    INTERACTION_LABELS,
    GeodetectorResult,
    classify_interaction,
)
from ncp_subsidence.kernels.sampling import (
    DrawResult,
    PermutationNull,
    SweepDraws,
    mean_sd,
    sweep_columns,
)

__all__ = [
    "breaks_table",
    "draws_factor_table",
    "draws_interaction_table",
    "ecological_table",
    "factor_table",
    "interaction_matrices",
    "interaction_table",
    "mean_interaction_matrix",
    "result_names",
    "risk_table",
    "samples_table",
    "sensitivity_table",
    "sweep_table",
    "to_csv",
]


def result_names(result: GeodetectorResult, names: Sequence[str] | None) -> list[str]:
    """Factor names of a result: ``names`` (checked against the number of factors) or x0, x1, ..."""
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
    names = result_names(result, names)
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
    names = result_names(result, names)
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
    names = result_names(result, names)
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
    names = result_names(result, names)
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
    names = result_names(result, names)
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


def sweep_table(
    sweep: Mapping[tuple[float, float], SweepDraws | tuple[Sequence[DrawResult], int]],
    names: Sequence[str],
) -> pd.DataFrame:
    """The sensitivity sweep as one table, with :func:`sensitivity_table`'s columns.

    ``sweep`` maps each (threshold, ratio) to its draws: a
    :class:`~ncp_subsidence.kernels.sampling.SweepDraws` (q and counts per draw) or the
    ``(draws, n_short)`` of :func:`~ncp_subsidence.kernels.sampling.run_draws`. Adds
    ``n_short_draws``: draws of the setting that lacked non-subsidence cells for its ratio.
    """
    k = len(names)
    rows, short = [], []
    for (t, r), setting in sweep.items():
        if not isinstance(setting, SweepDraws):
            setting = SweepDraws.from_draws(setting[0], setting[1], k)
        n = setting.q.shape[0]
        q = setting.q.reshape(-1, k)
        qm, qs = mean_sd(q) if n else (np.full(k, np.nan), np.full(k, np.nan))
        n_s = np.mean(setting.n_subsidence) if n else 0.0
        n_n = np.mean(setting.n_nonsubsidence) if n else 0.0
        rows.append((t, r, qm, qs, float(n_s), float(n_n), n))
        short += [int(setting.n_short)] * k
    cols = sweep_columns(rows)
    cols["n_short_draws"] = np.asarray(short, dtype=np.int64)
    return sensitivity_table(cols, names)


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
    qm, qs = mean_sd(q)
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
    m12, s12 = mean_sd(q12)
    m1, _ = mean_sd(q1)
    m2, _ = mean_sd(q2)
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


def samples_table(draws: Sequence[DrawResult]) -> pd.DataFrame:
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


def to_csv(df: pd.DataFrame, index: bool = False, digits: int = 10) -> str:
    return df.to_csv(index=index, float_format=f"%.{digits}g")
