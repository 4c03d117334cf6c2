"""Stage ``report`` (private): plots (yearly rate, region series, lags, GNSS series,
geodetector).

Figures: yearly mean subsidence rate, per-region series (GWSA, vertical displacement,
precipitation), lagged correlation per region, and, when ``adjust`` compared GNSS position series
(its ``gnss_series.json``), the GNSS up series against the InSAR vertical series before and after
the adjustment at a few held-out stations, with a table of the series RMSE per frame; geodetector
q bar chart and interaction heat map.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from ._report_format import fmt_p
from ._report_inputs import _read_csv
from ._report_maps import Figure, _png

__all__ = [
    "SIGNIFICANCE",
    "geodetector_figures",
    "gnss_figures",
    "region_figures",
    "yearly_figures",
]

#: significance level of the chosen lag's correlation marked in the lag plot and tables
SIGNIFICANCE = 0.05

#: held-out stations drawn per frame in the GNSS series figure
_SERIES_STATIONS_PER_FRAME = 2


def yearly_figures(store: Any, dpi: int) -> Iterator[Figure]:
    """Yearly area-weighted mean subsidence rate (bars over v < -tau, line over all cells)."""
    import matplotlib.pyplot as plt

    yearly = _read_csv(store, "analysis", "yearly_velocity.csv")
    if yearly is not None and len(yearly):
        fig, ax = plt.subplots(figsize=(6.5, 3.5))
        ax.bar(
            yearly["year"],
            yearly["mean_subsidence_rate_omega_mm_yr"],
            color="tab:red",
            label="over v < -tau",
        )
        ax.plot(
            yearly["year"],
            yearly["mean_subsidence_rate_all_mm_yr"],
            "ko-",
            label="over all valid cells",
        )
        ax.set_xlabel("calendar year")
        ax.set_ylabel("mean subsidence rate, mm/yr (positive down)")
        ax.set_title("Yearly area-weighted mean subsidence rate")
        ax.legend(fontsize=8)
        yield Figure(
            "Wide-area statistics",
            "yearly_velocity.png",
            _png(fig, dpi),
            "Yearly mean subsidence rate (positive = subsidence).",
        )


def _month_bars(ax: Any, time: pd.DatetimeIndex, values: np.ndarray, **style: Any) -> None:
    """Bars 20 days wide centred on each month, from 0 (``ax.bar(time, values, width=20)``'s
    rectangles) drawn as one collection: a bar a month of every region is 2,500 artists that
    matplotlib lays out one by one (about 4 s of a report)."""
    import matplotlib.dates as mdates
    from matplotlib.collections import PolyCollection

    x = mdates.date2num(time)
    keep = np.isfinite(values)
    x, v = x[keep], np.asarray(values, dtype=float)[keep]
    verts = np.stack(
        [
            np.column_stack([x - 10, np.zeros_like(v)]),
            np.column_stack([x - 10, v]),
            np.column_stack([x + 10, v]),
            np.column_stack([x + 10, np.zeros_like(v)]),
        ],
        axis=1,
    )
    ax.add_collection(PolyCollection(verts, edgecolors="none", linewidths=0, snap=True, **style))
    ax.update_datalim(verts.reshape(-1, 2))
    ax.autoscale_view()
    if v.size and v.min() >= 0:
        ax.set_ylim(bottom=0)


def region_figures(store: Any, dpi: int) -> Iterator[Figure]:
    """Per-region monthly series, and the GWSA -> deformation lagged correlation per region."""
    import matplotlib.pyplot as plt

    series = store.open("analysis", "regions").load()
    lags = store.open("analysis", "lags").load()
    regions = [str(r) for r in series["region"].values]
    ncol = 2
    nrow = -(-len(regions) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(12.0, 2.6 * nrow), squeeze=False, sharex=True)
    for ax1, region in zip(axes.flat, regions):
        s = series.sel(region=region)
        time = pd.to_datetime(s["time"].values)
        ax1.plot(time, s["gwsa"].values, color="tab:blue", lw=0.9, label="GWSA (mm EWH)")
        ax1.plot(
            time,
            s["vertical_displacement"].values,
            color="tab:red",
            lw=1.1,
            label="vertical displacement (mm, up +)",
        )
        if np.isfinite(s["observed"].values).any():
            ax1.plot(time, s["observed"].values, "k.", ms=3, label="observed")
        ax1.set_ylabel("mm", fontsize=8)
        ax1.tick_params(labelsize=7)
        if np.isfinite(s["precipitation"].values).any():
            ax2 = ax1.twinx()
            _month_bars(ax2, time, s["precipitation"].values, color="tab:green", alpha=0.3)
            ax2.set_ylabel("precip. mm/month", fontsize=7, color="tab:green")
            ax2.tick_params(labelsize=7)
        ax1.set_title(region, fontsize=9)
    for ax in list(axes.flat)[len(regions) :]:
        ax.set_visible(False)
    axes.flat[0].legend(loc="lower left", fontsize=6)
    fig.suptitle(
        "Area-weighted monthly series per region (blue GWSA, red vertical displacement, "
        "green precipitation)"
    )
    fig.tight_layout()
    yield Figure(
        "Region time series",
        "region_series.png",
        _png(fig, dpi),
        "Per region: GWSA (mm EWH), vertical displacement (mm, positive up) and precipitation "
        "(mm/month).",
    )
    pair = "gwsa->vertical_displacement"
    fig, ax = plt.subplots(figsize=(10.0, 5.0))
    method = lags["detrend"].values[0]
    for region in lags["region"].values:
        sel = {"region": region, "pair": pair, "detrend": method}
        (line,) = ax.plot(lags["lag"].values, lags["r"].sel(sel).values, lw=1.0)
        k = float(lags["lag_months"].sel(sel)) if "lag_months" in lags else np.nan
        r_k = float(lags["r_lag"].sel(sel)) if "r_lag" in lags else np.nan
        p = float(lags["p_value"].sel(sel)) if "p_value" in lags else np.nan
        label = str(region)
        if np.isfinite(k) and np.isfinite(r_k):
            significant = np.isfinite(p) and p < SIGNIFICANCE
            ax.plot(
                [k],
                [r_k],
                marker="o",
                ms=7,
                color=line.get_color(),
                markerfacecolor=line.get_color() if significant else "white",
            )
            p_text = fmt_p(p)
            p_text = p_text if p_text.startswith("<") else f"= {p_text}"
            label = f"{region}: k* = {int(k)} mo, r = {r_k:.2f}, p {p_text}"
        line.set_label(label)
    ax.set_xlabel("lag k, months (deformation after GWSA)")
    ax.set_ylabel("r(k), dimensionless")
    ax.set_title(
        f"corr(GWSA(t), D(t + k)), detrend = {method}; circle: chosen lag k*, filled when "
        f"p < {SIGNIFICANCE:g}",
        fontsize=9,
    )
    ax.legend(fontsize=6, ncol=2, loc="center left", bbox_to_anchor=(1.01, 0.5))
    yield Figure(
        "Region time series",
        "lag_correlation.png",
        _png(fig, dpi),
        "Lagged correlation of GWSA and vertical displacement per region; the circle marks the "
        f"chosen lag k*, filled where its correlation is significant (p < {SIGNIFICANCE:g}, "
        "two-sided t test with the effective sample size).",
    )


def _gnss_series_figure(series: dict[str, Any], dpi: int) -> tuple[bytes | None, pd.DataFrame]:
    """GNSS vs InSAR vertical series at a few held-out stations (None without one), and the
    table of the series RMSE per frame."""
    import matplotlib.pyplot as plt

    rows = []
    picked = []
    for frame in sorted(series):
        rec = series[frame]
        stations = rec.get("stations", {})
        rows.append(
            {
                "frame": frame,
                "held-out stations compared": len(stations),
                "series RMSE before (mm)": rec.get("rmse_before"),
                "series RMSE after (mm)": rec.get("rmse_after"),
            }
        )
        for name in sorted(stations)[:_SERIES_STATIONS_PER_FRAME]:
            picked.append((frame, name, pd.to_datetime(rec["time"]), stations[name]))
    table = pd.DataFrame(rows)
    if not picked:
        return None, table
    fig, axes = plt.subplots(
        len(picked), 1, figsize=(7.5, 2.3 * len(picked)), squeeze=False, sharex=True
    )
    for ax, (frame, name, time, st) in zip(axes[:, 0], picked, strict=True):

        def values(key: str, st: dict[str, Any] = st) -> np.ndarray:
            return np.asarray([np.nan if v is None else v for v in st[key]], dtype=float)

        ax.plot(time, values("gnss_up"), "k.", ms=4, label="GNSS up (days within 6 d, mean)")
        ax.plot(time, values("insar_up_before"), color="0.6", lw=1.0, label="InSAR before adjust")
        ax.plot(time, values("insar_up_after"), color="tab:red", lw=1.2, label="InSAR adjusted")
        ax.set_ylabel("mm (up +)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_title(
            f"{frame} {name}: RMSE {st['rmse_before']:.1f} -> {st['rmse_after']:.1f} mm "
            f"({st['n_dates']} dates)",
            fontsize=9,
        )
    axes[0, 0].legend(fontsize=7, loc="lower left")
    fig.suptitle("Held-out GNSS stations: vertical series, each less its mean over common dates")
    fig.tight_layout()
    return _png(fig, dpi), table


def gnss_figures(
    series: dict[str, Any] | None, dpi: int
) -> tuple[list[Figure], pd.DataFrame | None]:
    """The GNSS series figure (none without a held-out station) and the RMSE table (None
    without ``adjust``'s ``gnss_series.json``)."""
    figures: list[Figure] = []
    series_table = None
    if series:
        png, series_table = _gnss_series_figure(series, dpi)
        if png is not None:
            figures.append(
                Figure(
                    "GNSS validation",
                    "gnss_series.png",
                    png,
                    "GNSS up series (black) against the InSAR vertical series before (grey) and "
                    "after (red) the adjustment at held-out stations, mm, positive up.",
                )
            )
    return figures, series_table


def geodetector_figures(store: Any, factor_df: pd.DataFrame | None, dpi: int) -> Iterator[Figure]:
    """Factor detector q bar chart and interaction heat map (when ``geodetector`` ran)."""
    import matplotlib.pyplot as plt

    matrix_df = _read_csv(store, "geodetector", "interaction_matrix.csv")
    if factor_df is not None and "q_mean" in factor_df:
        f = factor_df.sort_values("q_mean")
        fig, ax = plt.subplots(figsize=(6.0, 0.35 * len(f) + 1.2))
        ax.barh(f["factor"], f["q_mean"], xerr=f.get("q_sd"), color="tab:purple")
        ax.set_xlabel("q statistic (0-1, dimensionless)")
        ax.set_xlim(0, 1)
        ax.set_title("Geodetector factor detector")
        yield Figure(
            "Geodetector",
            "geodetector_q.png",
            _png(fig, dpi),
            "Factor detector q (share of subsidence variance explained).",
        )
    if matrix_df is not None and len(matrix_df):
        m = matrix_df.set_index(matrix_df.columns[0])
        fig, ax = plt.subplots(figsize=(6.5, 5.5))
        im = ax.imshow(m.values.astype(float), cmap="magma", vmin=0, vmax=1)
        ax.set_xticks(range(m.shape[1]), m.columns, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(m.shape[0]), m.index, fontsize=7)
        cb = fig.colorbar(im, ax=ax)
        cb.set_label("q of the interaction (0-1, dimensionless)")
        ax.set_title("Geodetector interaction detector")
        yield Figure(
            "Geodetector",
            "geodetector_interaction.png",
            _png(fig, dpi),
            "Interaction q of each factor pair (diagonal: single factors).",
        )
