"""Stage ``report``: maps, plots, tables and an offline HTML page of a run.

Reads ``analysis`` (required) and, when the store holds them, ``discover``, ``ingest``,
``sbas``, ``adjust``, ``mosaic``, ``hydro``, ``factors`` and ``geodetector``; their fingerprints
enter the report's own (:meth:`ReportStage.fingerprint_extra`), so a changed upstream product
re-renders the report.

Writes ``report/<version>/``: ``index.html`` (no external URL; images referenced relatively, so
the folder opens offline in any browser), one PNG per figure, ``interactive.html`` (with a
mosaic: a self-contained Bokeh page, BokehJS inline) and ``summary.json`` (the run information,
the analysis summary, the geodetector ranking and the list of figures). Every map has a colour
bar with its units and the sign convention (vertical positive up: subsidence is negative; rates,
cumulative subsidence and volumes in the tables are subsidence, positive down); sequential colour
maps for one-signed data, diverging about 0 only for signed data; EPSG:4326 maps at the
1 / cos(lat) aspect.

The page: a header (input kind with a banner when any input is synthetic, software version, run
date, the SHA-256 of the redacted config in the store's root attrs, the inputs discovery saved
with their item counts, the products drawn on); maps (vertical velocity, cumulative
displacement, GWSA trend) with the regions' outlines, the frame footprints and the GNSS stations
coloured by their residual after the adjustment; driving factors; per frame the LOS velocity,
temporal coherence and velocity uncertainty; the adjustment (chosen model and CV table per
frame, station residuals before/after); yearly mean subsidence rate, per-region series, lagged
correlation per region with the chosen lag and its significance marked; the GNSS up series
against the InSAR vertical series before and after the adjustment at a few held-out stations;
geodetector q and interactions; the validation table when ``ncp-subsidence validate`` wrote a
``validation.json`` next to the store (else a note). Numbers are written for people
(:mod:`._report_format`: thousands separators, decimals by magnitude, ``p < 0.001``).

The pieces live in private modules: :mod:`._report_inputs` (reading the products, the run
information, overlays, the validation file), :mod:`._report_format` (numbers and tables),
:mod:`._report_maps` (maps, factors), :mod:`._report_frames` (per frame, adjustment),
:mod:`._report_plots` (the other figures), :mod:`._report_interactive` (``interactive.html``),
:mod:`._report_html` (tables and ``index.html``, rendered from the Jinja2 template
``ncp_subsidence/templates/report_index.html``).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ..errors import StoreError
from ..io.coast import coastline
from ..pipeline import Stage, StageContext
from ._report_frames import adjust_attrs, adjustment_tables, frame_figures, residual_scatter
from ._report_html import render_html, report_tables, validation_table
from ._report_inputs import (
    OPTIONAL_STAGES,
    VALIDATION_PATHS,
    _open_optional,
    _read_csv,
    _read_json,
    frame_footprints,
    gnss_stations,
    read_validation,
    region_outlines,
    run_info,
)
from ._report_interactive import interactive_page
from ._report_maps import SIGN, Overlays, factor_figures, map_figures
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
        files = render_report(ctx.store, ctx.options, title=title, config=ctx.config)
        for name, data in files.items():
            ctx.write_file(name, data)


def render_report(store: Any, options: Any, *, title: str, config: Any = None) -> dict[str, bytes]:
    """Every file of the report: PNGs, ``index.html``, ``interactive.html`` (with a mosaic) and
    ``summary.json``, by relative name.

    Parameters
    ----------
    store : ProductStore
        The store holding a complete ``analysis`` product (and optionally the others).
    options : ReportOptions
    title : str
    config : Config, optional
        The run's config (region names property; credentials of the regions source).

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
    info = run_info(store)
    name_property = config.analysis.region_names_property if config is not None else "name"
    stations = gnss_stations(store)
    overlays = Overlays(
        regions=region_outlines(store, name_property, config),
        footprints=frame_footprints(store),
        stations=stations,
        coast=coastline(config.sources.bbox) if config is not None else [],
    )
    figures = [
        *map_figures(store, wide, dpi, cells, overlays),
        *factor_figures(store, dpi, cells),
        *frame_figures(store, dpi, cells),
    ]
    adjust = adjust_attrs(store)
    scatter = residual_scatter(stations, dpi)
    figures += [scatter] if scatter is not None else []
    figures += [*yearly_figures(store, dpi), *region_figures(store, dpi)]
    gnss = _read_json(store, "adjust", "gnss_series.json")
    gnss_figs, gnss_table = gnss_figures(gnss, dpi)
    figures += gnss_figs
    factor_df = _read_csv(store, "geodetector", "factor.csv")
    figures += geodetector_figures(store, factor_df, dpi)
    tables = report_tables(store, wide, gnss_table, factor_df)
    section_tables: dict[str, list[tuple[str, str]]] = {}
    notes = {}
    if adjust:
        section_tables["Adjustment"] = adjustment_tables(adjust)
    validation, where = read_validation(store)
    if validation is not None:
        section_tables["Validation"] = [validation_table(validation, where)]
    else:
        notes["Validation"] = (
            "No validation table: no validation.json from `ncp-subsidence validate` next to the "
            f"store (looked for {', '.join(VALIDATION_PATHS)} relative to the store root)."
        )
    files = {f.name: f.png for f in figures}
    page = interactive_page(store, title, overlays)
    if page is not None:
        files["interactive.html"] = page.encode()
    files["index.html"] = render_html(
        title,
        figures,
        tables,
        info=info,
        section_tables=section_tables,
        notes=notes,
        interactive="interactive.html" if page is not None else None,
    ).encode()
    out_summary = {
        "title": title,
        "run": {
            k: info[k]
            for k in ("input_kind", "software_version", "run_started", "config_digest", "inputs")
        },
        "analysis_version": record.version,
        "wide_area": wide,
        "lags": summary.get("lags", []),
        "figures": [f.name for f in figures],
        "interactive": "interactive.html" if page is not None else None,
        "adjustment": {f: a.get("selected_model") for f, a in adjust.items()} or None,
        "validation": where,
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
