"""Stage ``report`` (private): the per-frame section and the adjustment section.

Per frame of the ``sbas`` product: LOS velocity (diverging, mm/yr, positive toward the
satellite), temporal coherence (sequential, 0-1) and velocity uncertainty (sequential, mm/yr, the
1-sigma ``velocity_std``), on the frame's own grid (EPSG:4326 degrees with the 1 / cos(lat)
aspect, or a projected CRS in metres at equal aspect).

Adjustment (``adjust``'s per-frame attrs and ``stations.json``): the chosen correction model per
frame with its CV scheme, station counts and held-out RMSE before/after; every candidate's CV
table (the chosen one marked); and a scatter of each station's LOS residual (GNSS - InSAR,
mm/yr) before against after the correction. The tables are built from plain data
(:func:`adjustment_tables`, :func:`residual_scatter`) so they can be checked without a run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from ._report_format import table_html
from ._report_maps import Figure, _png, geo_aspect, is_signed

__all__ = [
    "adjust_attrs",
    "adjustment_tables",
    "frame_figures",
    "residual_scatter",
]

#: the per-frame layers drawn (variable, title, colour bar label)
FRAME_LAYERS = (
    ("velocity", "LOS velocity", "mm/yr (positive toward the satellite)"),
    ("temporal_coherence", "Temporal coherence", "dimensionless (0-1)"),
    ("velocity_std", "Velocity uncertainty (1 sigma)", "mm/yr"),
)


def _coarsen_xy(arr: Any, max_cells: int) -> Any:
    factor = {
        d: int(np.ceil(arr.sizes[d] / max_cells)) for d in ("y", "x") if arr.sizes[d] > max_cells
    }
    return arr.coarsen(factor, boundary="trim").mean() if factor else arr


def frame_figures(store: Any, dpi: int, cells: int) -> Iterator[Figure]:
    """One three-panel figure per sbas frame (see the module docstring)."""
    import matplotlib.pyplot as plt

    from ..io.projection import dataset_crs, is_geographic

    record = store.record("sbas")
    if record is None:
        return
    for frame in sorted(d for d in record.datasets if d != "."):
        ds = store.open("sbas", frame)
        layers = [(v, t, u) for v, t, u in FRAME_LAYERS if v in ds.data_vars]
        if not layers:
            continue
        crs = str(ds.attrs.get("crs") or dataset_crs(ds))
        geographic = is_geographic(crs)
        fig, axes = plt.subplots(1, len(layers), figsize=(5.2 * len(layers), 5.6), squeeze=False)
        for ax, (var, title, units) in zip(axes[0], layers):
            arr = _coarsen_xy(ds[var], cells)
            x, y = arr["x"].values, arr["y"].values
            data = np.asarray(arr.values, dtype=float)
            data = data if y[0] > y[-1] else data[::-1]
            extent = (x.min(), x.max(), y.min(), y.max())
            finite = data[np.isfinite(data)]
            if var == "temporal_coherence":
                style = {"cmap": "viridis", "vmin": 0.0, "vmax": 1.0}
            elif is_signed(data):
                lim = float(np.nanpercentile(np.abs(finite), 99.5)) or 1.0
                style = {"cmap": "RdBu", "vmin": -lim, "vmax": lim}
            else:
                hi = float(np.nanpercentile(finite, 99.5)) if finite.size else 1.0
                style = {"cmap": "magma_r", "vmin": 0.0, "vmax": hi or 1.0}
            aspect = geo_aspect(y) if geographic else "equal"
            im = ax.imshow(data, extent=extent, interpolation="nearest", aspect=aspect, **style)
            ax.set_title(title, fontsize=9)
            ax.tick_params(labelsize=7)
            ax.set_xlabel("longitude (deg E)" if geographic else f"x (m, {crs})", fontsize=8)
            ax.set_ylabel("latitude (deg N)" if geographic else "y (m)", fontsize=8)
            fig.colorbar(im, ax=ax, shrink=0.8, location="bottom").set_label(units, fontsize=8)
        fig.suptitle(f"Frame {frame}: SBAS velocity and its quality")
        yield Figure(
            "Per frame",
            f"frame_{frame}.png",
            _png(fig, dpi),
            f"Frame {frame} (sbas product): LOS velocity, mm/yr, positive toward the satellite "
            "(diverging); temporal coherence, 0-1; velocity uncertainty (1 sigma), mm/yr.",
        )


def adjust_attrs(store: Any) -> dict[str, dict[str, Any]]:
    """Each frame's ``adjust`` attrs (empty without an ``adjust`` product)."""
    record = store.record("adjust")
    if record is None:
        return {}
    return {f: dict(store.open("adjust", f).attrs) for f in sorted(record.datasets) if f != "."}


def _float(x: Any) -> float:
    return np.nan if x is None else float(x)


def adjustment_tables(attrs: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """The chosen model per frame and every candidate's CV table, as (caption, HTML)."""
    if not attrs:
        return []
    summary = pd.DataFrame(
        [
            {
                "frame": f,
                "chosen model": a.get("selected_model", "none"),
                "CV scheme": a.get("cv_scheme", "none"),
                "CV RMSE of the chosen model (mm/yr)": _float(a.get("correction_cv_rmse")),
                "training stations": int(a.get("n_gnss_train", 0)),
                "held-out stations": int(a.get("n_gnss_holdout", 0)),
                "rejected stations": int(a.get("n_gnss_rejected", 0)),
                "held-out RMSE vertical before (mm/yr)": _float(
                    a.get("holdout_rmse_vertical_before")
                ),
                "held-out RMSE vertical after (mm/yr)": _float(
                    a.get("holdout_rmse_vertical_after")
                ),
                "held-out RMSE LOS before (mm/yr)": _float(a.get("holdout_rmse_los_before")),
                "held-out RMSE LOS after (mm/yr)": _float(a.get("holdout_rmse_los_after")),
            }
            for f, a in sorted(attrs.items())
        ]
    )
    kinds = {c: "int" for c in summary.columns if c.endswith("stations")}
    tables = [
        (
            "Adjustment: chosen correction model per frame (cross-validated on the training "
            "stations, one-standard-error rule; held-out stations never enter a fit)",
            table_html(summary, kinds=kinds),
        )
    ]
    rows = []
    for f, a in sorted(attrs.items()):
        cv = a.get("cv_table") or {}
        if isinstance(cv, str):
            cv = json.loads(cv)
        for model, row in sorted(cv.items()):
            rows.append(
                {
                    "frame": f,
                    "model": model,
                    "chosen": model == a.get("selected_model"),
                    "CV RMSE (mm/yr)": _float(row.get("cv_rmse")),
                    "standard error (mm/yr)": _float(row.get("se")),
                    "stations": row.get("n"),
                    "minimum stations": row.get("min_n"),
                    "status": row.get("status", ""),
                }
            )
    if rows:
        cv_df = pd.DataFrame(rows)
        tables.append(
            (
                "Adjustment: cross-validation of every candidate model per frame",
                table_html(cv_df, kinds={"stations": "int", "minimum stations": "int"}),
            )
        )
    return tables


def residual_scatter(stations: pd.DataFrame | None, dpi: int) -> Figure | None:
    """Each station's LOS residual (GNSS - InSAR, mm/yr) before against after the adjustment,
    one panel per frame, coloured by role (None without residuals)."""
    import matplotlib.pyplot as plt

    if stations is None or not np.isfinite(stations["residual_before"].to_numpy(float)).any():
        return None
    frames = sorted(f for f in stations["frame"].unique() if f)
    colours = {
        "train": "tab:blue",
        "holdout": "tab:red",
        "rejected": "0.6",
        "holdout_screened": "tab:orange",
    }
    fig, axes = plt.subplots(1, len(frames), figsize=(5.0 * len(frames), 4.8), squeeze=False)
    for ax, frame in zip(axes[0], frames):
        sub = stations[stations["frame"] == frame]
        both = np.concatenate([sub["residual_before"], sub["residual_after"]]).astype(float)
        lim = float(np.nanmax(np.abs(both))) * 1.1 if np.isfinite(both).any() else 1.0
        for role, grp in sub.groupby("role"):
            ax.scatter(
                grp["residual_before"],
                grp["residual_after"],
                s=18,
                color=colours.get(str(role), "k"),
                label=f"{role} ({len(grp)})",
            )
        ax.plot([-lim, lim], [-lim, lim], color="0.5", lw=0.8, ls="--", label="unchanged")
        ax.axhline(0.0, color="k", lw=0.6)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xlabel("residual before adjustment, mm/yr LOS")
        ax.set_ylabel("residual after adjustment, mm/yr LOS")
        ax.set_title(f"Frame {frame}", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("GNSS - InSAR LOS velocity at each station, before and after the correction")
    fig.tight_layout()
    return Figure(
        "Adjustment",
        "adjust_residuals.png",
        _png(fig, dpi),
        "Station residuals (GNSS minus InSAR LOS velocity, mm/yr) before (x) and after (y) the "
        "long-wavelength correction; the held-out stations (red) never entered the fit. A point "
        "on the horizontal line is fully explained by the correction.",
    )
