"""Stage ``report``: maps, plots, tables and an offline HTML page of a run.

Reads ``analysis`` (required) and, when the store holds them, ``adjust``, ``mosaic``,
``hydro``, ``factors`` and ``geodetector``; their fingerprints enter the report's own
(:meth:`ReportStage.fingerprint_extra`), so a changed upstream product re-renders the report.

Writes ``report/<version>/``: ``index.html`` (no external URL; images referenced relatively, so
the folder opens offline in any browser), one PNG per figure, ``summary.json`` (the analysis
summary, the geodetector ranking and the list of figures). Every map has a colour bar with its
units and the sign convention (vertical positive up: subsidence is negative; rates, cumulative
subsidence and volumes in the tables are subsidence, positive down).

Figures: vertical velocity, cumulative subsidence, GWSA trend, each driving factor, yearly mean
subsidence rate, per-region series (GWSA, vertical displacement, precipitation), lagged
correlation per region, geodetector q bar chart and interaction heat map, and, when ``adjust``
compared GNSS position series (its ``gnss_series.json``), the GNSS up series against the InSAR
vertical series before and after the adjustment at a few held-out stations, with a table of
the series RMSE per frame.
"""

from __future__ import annotations

import html
import io
import json
import logging
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import StoreError

__all__ = ["STAGE", "ReportStage", "render_report"]

log = logging.getLogger(__name__)

_OPTIONAL = ("adjust", "mosaic", "hydro", "factors", "geodetector")
#: held-out stations drawn per frame in the GNSS series figure
_SERIES_STATIONS_PER_FRAME = 2
_SIGN = "vertical positive up: subsidence is negative"


def _png(fig: Any, dpi: int) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _coarsen(arr: xr.DataArray, max_cells: int) -> xr.DataArray:
    factor = {
        d: int(np.ceil(arr.sizes[d] / max_cells))
        for d in ("lat", "lon")
        if arr.sizes[d] > max_cells
    }
    return arr.coarsen(factor, boundary="trim").mean() if factor else arr


def _map(arr: xr.DataArray, title: str, label: str, cmap: str, dpi: int, symmetric: bool) -> bytes:
    import matplotlib.pyplot as plt

    values = np.asarray(arr.values, dtype=np.float64)
    lat, lon = arr["lat"].values, arr["lon"].values
    finite = values[np.isfinite(values)]
    vmin = vmax = None
    if finite.size and symmetric:
        vmax = float(np.nanpercentile(np.abs(finite), 99.5)) or 1.0
        vmin = -vmax
    fig, ax = plt.subplots(figsize=(6.0, 5.0))
    extent = (lon.min(), lon.max(), lat.min(), lat.max())
    data = values if lat[0] > lat[-1] else values[::-1]
    im = ax.imshow(
        data, extent=extent, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest", aspect="auto"
    )
    ax.set_xlabel("longitude (deg E)")
    ax.set_ylabel("latitude (deg N)")
    ax.set_title(title, fontsize=10)
    cb = fig.colorbar(im, ax=ax, shrink=0.85)
    cb.set_label(label)
    return _png(fig, dpi)


class ReportStage:
    """Render the report (see the module docstring)."""

    name = "report"
    reads: tuple[str, ...] = ("analysis",)

    def fingerprint_extra(self, config: Any) -> dict[str, Any]:
        from ..io.stores import open_store

        store = open_store(config.store)
        out = {}
        for stage in _OPTIONAL:
            record = store.record(stage)
            out[stage] = record.fingerprint if record is not None else None
        return out

    def run(self, ctx: Any) -> None:
        from ..sources import input_kind

        title = ctx.options.title
        kind = input_kind(ctx.config)
        if kind != "real" and "synthetic twin" not in title:
            title = f"{title} (synthetic twin{' and real inputs' if kind == 'mixed' else ''})"
        files = render_report(ctx.store, ctx.options, title=title)
        for name, data in files.items():
            ctx.write_file(name, data)


def _open_optional(store: Any, stage: str, variable: str) -> xr.Dataset | None:
    record = store.record(stage)
    if record is None:
        return None
    for name in record.datasets:
        # a completed product whose dataset cannot be opened is damaged: say so (StoreError),
        # never render the report with the section silently missing
        ds = store.open(stage, None if name == "." else name)
        if variable in ds.data_vars:
            return ds
    return None


def _read_csv(store: Any, stage: str, name: str) -> pd.DataFrame | None:
    record = store.record(stage)
    if record is None:
        return None
    try:
        return pd.read_csv(io.BytesIO(store.read_file(f"{stage}/{record.version}/{name}")))
    except FileNotFoundError:
        return None


def _read_json(store: Any, stage: str, name: str) -> Any:
    record = store.record(stage)
    if record is None:
        return None
    try:
        return json.loads(store.read_file(f"{stage}/{record.version}/{name}"))
    except FileNotFoundError:
        return None


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


def render_report(store: Any, options: Any, *, title: str) -> dict[str, bytes]:
    """Every file of the report: PNGs, ``index.html`` and ``summary.json``, by relative name.

    Parameters
    ----------
    store : ProductStore
        The store holding a complete ``analysis`` product (and optionally the others).
    options : ReportOptions
    title : str

    Returns
    -------
    dict of str to bytes
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    dpi = options.dpi
    cells = options.max_map_cells
    record = store.record("analysis")
    if record is None:
        raise StoreError("product 'analysis' has no complete version; run stage 'analysis' first")
    summary = json.loads(store.read_file(f"analysis/{record.version}/summary.json"))
    wide = summary["wide_area"]
    files: dict[str, bytes] = {}
    figures: list[tuple[str, str, str]] = []  # (section, file, caption)

    def add(section: str, name: str, data: bytes, caption: str) -> None:
        files[name] = data
        figures.append((section, name, caption))

    # ---- maps
    mosaic = _open_optional(store, "mosaic", "vertical_velocity")
    if mosaic is not None:
        v = _coarsen(mosaic["vertical_velocity"], cells)
        add(
            "Maps",
            "map_vertical_velocity.png",
            _map(v, "Vertical velocity", f"mm/yr ({_SIGN})", "RdBu", dpi, True),
            "Vertical velocity of the mosaic, mm/yr; red = subsidence (negative).",
        )
        if "vertical_displacement" in mosaic.data_vars:
            d = mosaic["vertical_displacement"]
            e0, e1 = wide["cumulative_epochs"]
            months = np.asarray(d["time"].values, "datetime64[M]")
            i0 = int(np.argmin(np.abs((months - np.datetime64(e0, "M")).astype(int))))
            i1 = int(np.argmin(np.abs((months - np.datetime64(e1, "M")).astype(int))))
            cum = _coarsen(d.isel(time=i1) - d.isel(time=i0), cells)
            add(
                "Maps",
                "map_cumulative_displacement.png",
                _map(
                    cum,
                    f"Cumulative vertical displacement {e0} to {e1}",
                    f"mm ({_SIGN})",
                    "RdBu",
                    dpi,
                    True,
                ),
                f"Cumulative vertical displacement {e0} to {e1}, mm; red = subsidence.",
            )
    hydro = _open_optional(store, "hydro", "gwsa_trend")
    if hydro is not None:
        g = _coarsen(hydro["gwsa_trend"], cells)
        add(
            "Maps",
            "map_gwsa_trend.png",
            _map(g, "GWSA trend", "mm/yr EWH (negative = groundwater loss)", "BrBG", dpi, True),
            "Trend of the groundwater storage anomaly, mm/yr of equivalent water height.",
        )
    factors = None
    frecord = store.record("factors")
    if frecord is not None and "factors" in frecord.datasets:
        factors = store.open("factors", "factors")
    if factors is not None:
        names = sorted(v for v in factors.data_vars if set(factors[v].dims) == {"lat", "lon"})
        if names:
            ncol = min(3, len(names))
            nrow = -(-len(names) // ncol)
            fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.4 * nrow), squeeze=False)
            for ax, name in zip(axes.flat, names):
                arr = _coarsen(factors[name], cells)
                units = factors[name].attrs.get("units", "1")
                lat, lon = arr["lat"].values, arr["lon"].values
                data = arr.values if lat[0] > lat[-1] else arr.values[::-1]
                extent = (lon.min(), lon.max(), lat.min(), lat.max())
                im = ax.imshow(data, extent=extent, cmap="viridis", aspect="auto")
                ax.set_title(name, fontsize=9)
                ax.tick_params(labelsize=7)
                fig.colorbar(im, ax=ax, shrink=0.85).set_label(units, fontsize=8)
            for ax in list(axes.flat)[len(names) :]:
                ax.set_visible(False)
            fig.suptitle("Driving factors (axes: longitude deg E, latitude deg N)")
            add(
                "Driving factors",
                "factors.png",
                _png(fig, dpi),
                "Driving factors on the factor grid, each with its units.",
            )

    # ---- yearly rate
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
        add(
            "Wide-area statistics",
            "yearly_velocity.png",
            _png(fig, dpi),
            "Yearly mean subsidence rate (positive = subsidence).",
        )

    # ---- region series
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
            ax2.bar(time, s["precipitation"].values, width=20, color="tab:green", alpha=0.3)
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
    add(
        "Region time series",
        "region_series.png",
        _png(fig, dpi),
        "Per region: GWSA (mm EWH), vertical displacement (mm, positive up) and precipitation "
        "(mm/month).",
    )
    pair = "gwsa->vertical_displacement"
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    method = lags["detrend"].values[0]
    for region in lags["region"].values:
        ax.plot(
            lags["lag"].values,
            lags["r"].sel(region=region, pair=pair, detrend=method).values,
            marker=".",
            label=str(region),
        )
    ax.set_xlabel("lag k, months (deformation after GWSA)")
    ax.set_ylabel("r(k), dimensionless")
    ax.set_title(f"corr(GWSA(t), D(t + k)), detrend = {method}")
    ax.legend(fontsize=6, ncol=2)
    add(
        "Region time series",
        "lag_correlation.png",
        _png(fig, dpi),
        "Lagged correlation of GWSA and vertical displacement per region.",
    )

    # ---- GNSS position series at held-out stations (adjust)
    series = _read_json(store, "adjust", "gnss_series.json")
    series_table = None
    if series:
        png, series_table = _gnss_series_figure(series, dpi)
        if png is not None:
            add(
                "GNSS validation",
                "gnss_series.png",
                png,
                "GNSS up series (black) against the InSAR vertical series before (grey) and "
                "after (red) the adjustment at held-out stations, mm, positive up.",
            )

    # ---- geodetector
    factor_df = _read_csv(store, "geodetector", "factor.csv")
    matrix_df = _read_csv(store, "geodetector", "interaction_matrix.csv")
    if factor_df is not None and "q_mean" in factor_df:
        f = factor_df.sort_values("q_mean")
        fig, ax = plt.subplots(figsize=(6.0, 0.35 * len(f) + 1.2))
        ax.barh(f["factor"], f["q_mean"], xerr=f.get("q_sd"), color="tab:purple")
        ax.set_xlabel("q statistic (0-1, dimensionless)")
        ax.set_xlim(0, 1)
        ax.set_title("Geodetector factor detector")
        add(
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
        add(
            "Geodetector",
            "geodetector_interaction.png",
            _png(fig, dpi),
            "Interaction q of each factor pair (diagonal: single factors).",
        )

    # ---- tables
    tables: list[tuple[str, str]] = []
    headline = pd.DataFrame(
        {
            "quantity": [
                f"area subsiding faster than {wide['threshold_mm_yr']:g} mm/yr (km2)",
                "valid area (km2)",
                "coverage (fraction)",
                "peak year of the mean subsidence rate",
                "max cumulative subsidence (mm, positive down)",
                "percentile cumulative subsidence (mm, positive down)",
            ],
            "value": [
                wide["area_above_threshold_km2"],
                wide["area_valid_km2"],
                wide["coverage"],
                wide["peak_year"],
                wide["cumulative_max_mm"],
                next((v for k, v in wide.items() if k.startswith("cumulative_p")), None),
            ],
        }
    )
    tables.append(("Wide-area numbers", headline.to_html(index=False, float_format="%.4g")))
    for name, caption in (
        ("volumes.csv", "Subsidence volume and groundwater loss (km3 = 1e9 m3)"),
        ("lags.csv", "Lagged cross-correlation (r > 0: GWSA and surface fall together)"),
        ("region_trends.csv", "Region trends (per year), amplitude and phase"),
    ):
        df = _read_csv(store, "analysis", name)
        if df is not None:
            tables.append((caption, df.to_html(index=False, float_format="%.4g", na_rep="")))
    if series_table is not None:
        tables.append(
            (
                "GNSS position series vs InSAR at held-out stations (vertical, mm)",
                series_table.to_html(index=False, float_format="%.3g", na_rep=""),
            )
        )
    if factor_df is not None:
        cols = [c for c in ("factor", "q_mean", "q_sd", "p_value", "rank") if c in factor_df]
        tables.append(
            (
                "Geodetector factor detector",
                factor_df[cols].to_html(index=False, float_format="%.4g"),
            )
        )

    files["index.html"] = _html(title, figures, tables).encode()
    out_summary = {
        "title": title,
        "analysis_version": record.version,
        "wide_area": wide,
        "lags": summary.get("lags", []),
        "figures": [name for _, name, _ in figures],
        "geodetector_top_factor": (
            str(factor_df.sort_values("q_mean").iloc[-1]["factor"])
            if factor_df is not None and len(factor_df)
            else None
        ),
        "sign_convention": _SIGN,
        "gnss_series_rmse": (
            {
                f: {"before": r.get("rmse_before"), "after": r.get("rmse_after")}
                for f, r in sorted(series.items())
            }
            if series
            else None
        ),
    }
    files["summary.json"] = json.dumps(out_summary, indent=2, default=str).encode()
    log.info("report: %d figures, %d tables", len(figures), len(tables))
    return files


_CSS = """
body{font-family:sans-serif;margin:1.5em;max-width:1200px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:1.5em}
figure{display:inline-block;margin:0.5em;vertical-align:top;max-width:48%}
figure img{max-width:100%}figcaption{font-size:0.85em;color:#444}
table{border-collapse:collapse;font-size:0.8em;margin:0.5em 0}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
.note{font-size:0.9em;color:#444}
"""


def _html(title: str, figures: list[tuple[str, str, str]], tables: list[tuple[str, str]]) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="note">Sign convention: {_SIGN}. Rates in mm/yr (year = 365.25 d), '
        "displacements in mm, water storage in mm of equivalent water height, areas in km2 on "
        "the authalic sphere, volumes in km3 (1 km3 = 1e9 m3 = one billion m3).</p>",
    ]
    section = None
    for sec, name, caption in figures:
        if sec != section:
            parts.append(f"<h2>{html.escape(sec)}</h2>")
            section = sec
        parts.append(
            f'<figure><img src="{html.escape(name)}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    parts.append("<h2>Tables</h2>")
    for caption, table in tables:
        parts.append(f"<h3>{html.escape(caption)}</h3>{table}")
    parts.append("</body></html>")
    return "\n".join(parts)


STAGE = ReportStage()
