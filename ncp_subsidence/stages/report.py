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

The pieces live in private modules: :mod:`._report_inputs` (reading the products),
:mod:`._report_maps` (maps, factors), :mod:`._report_plots` (the other figures),
:mod:`._report_html` (tables and ``index.html``, rendered from the Jinja2 template
``ncp_subsidence/templates/report_index.html``).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ..errors import StoreError
from ..pipeline import Stage, StageContext
from ._report_html import render_html, report_tables
from ._report_inputs import OPTIONAL_STAGES, _open_optional, _read_csv, _read_json
from ._report_maps import SIGN, factor_figures, map_figures
from ._report_plots import (
    _gnss_series_figure,
    geodetector_figures,
    gnss_figures,
    region_figures,
    yearly_figures,
)

# _open_optional and _gnss_series_figure are imported by tests from this module
__all__ = ["STAGE", "ReportStage", "_gnss_series_figure", "_open_optional", "render_report"]

log = logging.getLogger(__name__)


class ReportStage(Stage):
    """Render the report (see the module docstring)."""

    name = "report"
    reads: tuple[str, ...] = ("analysis",)

    def fingerprint_extra(self, config: Any) -> dict[str, Any]:
        from ..io.stores import open_store

        store = open_store(config.store)
        out = {}
        for stage in OPTIONAL_STAGES:
            record = store.record(stage)
            out[stage] = record.fingerprint if record is not None else None
        return out

    def run(self, ctx: StageContext) -> None:
        from ..sources import input_kind

        title = ctx.options.title
        kind = input_kind(ctx.config)
        if kind != "real" and "synthetic twin" not in title:
            title = f"{title} (synthetic twin{' and real inputs' if kind == 'mixed' else ''})"
        files = render_report(ctx.store, ctx.options, title=title)
        for name, data in files.items():
            ctx.write_file(name, data)


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

    dpi = options.dpi
    cells = options.max_map_cells
    record = store.record("analysis")
    if record is None:
        raise StoreError("product 'analysis' has no complete version; run stage 'analysis' first")
    summary = json.loads(store.read_file(f"analysis/{record.version}/summary.json"))
    wide = summary["wide_area"]
    figures = [
        *map_figures(store, wide, dpi, cells),
        *factor_figures(store, dpi, cells),
        *yearly_figures(store, dpi),
        *region_figures(store, dpi),
    ]
    gnss = _read_json(store, "adjust", "gnss_series.json")
    gnss_figs, gnss_table = gnss_figures(gnss, dpi)
    figures += gnss_figs
    factor_df = _read_csv(store, "geodetector", "factor.csv")
    figures += geodetector_figures(store, factor_df, dpi)
    tables = report_tables(store, wide, gnss_table, factor_df)
    files = {f.name: f.png for f in figures}
    files["index.html"] = render_html(title, figures, tables).encode()
    out_summary = {
        "title": title,
        "analysis_version": record.version,
        "wide_area": wide,
        "lags": summary.get("lags", []),
        "figures": [f.name for f in figures],
        "geodetector_top_factor": (
            str(factor_df.sort_values("q_mean").iloc[-1]["factor"])
            if factor_df is not None and len(factor_df)
            else None
        ),
        "sign_convention": SIGN,
        "gnss_series_rmse": (
            {
                f: {"before": r.get("rmse_before"), "after": r.get("rmse_after")}
                for f, r in sorted(gnss.items())
            }
            if gnss
            else None
        ),
    }
    files["summary.json"] = json.dumps(out_summary, indent=2, default=str).encode()
    log.info("report: %d figures, %d tables", len(figures), len(tables))
    return files


STAGE = ReportStage()
