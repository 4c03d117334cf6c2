"""Stage ``report`` (private): the tables and ``index.html``.

The page is rendered from the Jinja2 template ``ncp_subsidence/templates/report_index.html``
(package data, autoescaped): no external URL, images referenced relatively, so the report
folder opens offline in any browser. Tables are :func:`._report_format.table_html`'s HTML (every\ncell formatted for people and escaped).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd

from ._report_format import fmt_number, fmt_value, table_html
from ._report_inputs import _read_csv
from ._report_maps import SIGN, Figure
from ._report_plots import SIGNIFICANCE

__all__ = [
    "headline_table",
    "lags_display",
    "render_html",
    "report_tables",
    "validation_table",
]


def _ordinal(q: str) -> str:
    """``99.9`` -> ``99.9th``, ``95`` -> ``95th``, ``1`` -> ``1st``."""
    if "." in q or q.endswith(("11", "12", "13")):
        return f"{q}th"
    return q + {"1": "st", "2": "nd", "3": "rd"}.get(q[-1:], "th")


def headline_table(wide: dict[str, Any]) -> pd.DataFrame:
    """The wide-area numbers as (quantity, value) text rows, the percentile named."""
    pct_key = next((k for k in wide if k.startswith("cumulative_p") and k.endswith("_mm")), None)
    pct = pct_key[len("cumulative_p") : -len("_mm")] if pct_key else None
    rows = [
        (
            f"area subsiding faster than {fmt_number(wide['threshold_mm_yr'])} mm/yr (km²)",
            fmt_number(wide["area_above_threshold_km2"]),
        ),
        ("valid area (km²)", fmt_number(wide["area_valid_km2"])),
        ("coverage (valid share of the grid)", f"{100 * float(wide['coverage']):.1f} %"),
        ("peak year of the mean subsidence rate", fmt_value(wide["peak_year"], "year")),
        (
            "maximum cumulative subsidence (mm, positive down)",
            fmt_number(wide["cumulative_max_mm"]),
        ),
    ]
    if pct is not None:
        rows.append(
            (
                f"{_ordinal(pct)} percentile of cumulative subsidence over valid cells "
                "(mm, positive down)",
                fmt_number(wide[pct_key]),
            )
        )
    epochs = wide.get("cumulative_epochs")
    if epochs:
        rows.append(("cumulative epochs", f"{epochs[0]} to {epochs[1]}"))
    return pd.DataFrame(rows, columns=["quantity", "value"])


def lags_display(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """``lags.csv`` for people: ``reliable`` split into what it measures (a lag was found and
    at most 20 % of the overlapping months are missing) and the significance of the lag's r."""
    out = df.copy()
    if "p_value" in out:
        p = pd.to_numeric(out["p_value"], errors="coerce")
        out.insert(
            out.columns.get_loc("p_value") + 1,
            f"significant (p < {SIGNIFICANCE:g})",
            [bool(v < SIGNIFICANCE) if np.isfinite(v) else None for v in p],
        )
    if "reliable" in out:
        out = out.rename(columns={"reliable": "lag found, at most 20 % months missing"})
    headers = {
        "lag_months": "lag k* (months)",
        "r0": "r at lag 0",
        "r_lag": "r at k*",
        "n": "months",
        "n_eff": "effective n",
        "p_value": "p (two-sided)",
        "missing_fraction": "missing months (fraction)",
    }
    return out, headers


def report_tables(
    store: Any,
    wide: dict[str, Any],
    series_table: pd.DataFrame | None,
    factor_df: pd.DataFrame | None,
) -> list[tuple[str, str]]:
    """The page's tables as (caption, HTML): wide-area numbers, the analysis CSVs, the GNSS
    series RMSE per frame and the geodetector factor detector, each when available. Every
    number is written for people (:mod:`._report_format`)."""
    tables: list[tuple[str, str]] = [("Wide-area numbers", table_html(headline_table(wide)))]
    volumes = _read_csv(store, "analysis", "volumes.csv")
    if volumes is not None:
        tables.append(
            (
                "Subsidence volume and groundwater loss (km³; 1 km³ = 10⁹ m³)",
                table_html(volumes, kinds={"clamped": "text"}),
            )
        )
    lags = _read_csv(store, "analysis", "lags.csv")
    if lags is not None:
        shown, headers = lags_display(lags)
        tables.append(
            (
                "Lagged cross-correlation (r > 0: GWSA and surface fall together; k*: the lag of "
                "the strongest correlation)",
                table_html(shown, headers=headers),
            )
        )
    trends = _read_csv(store, "analysis", "region_trends.csv")
    if trends is not None:
        tables.append(
            (
                "Region trends (per year), Mann-Kendall test, annual amplitude and phase",
                table_html(
                    trends,
                    headers={
                        "ols_slope": "OLS slope",
                        "ols_slope_stderr": "OLS standard error",
                        "sen_slope": "Sen's slope",
                        "mk_z": "Mann-Kendall Z",
                        "mk_p": "Mann-Kendall p",
                        "mk_s": "Mann-Kendall S",
                        "annual_phase": "annual phase (month)",
                        "n_valid": "months",
                    },
                ),
            )
        )
    if series_table is not None:
        tables.append(
            (
                "GNSS position series vs InSAR at held-out stations (vertical, mm)",
                table_html(series_table),
            )
        )
    if factor_df is not None:
        cols = [c for c in ("factor", "q_mean", "q_sd", "p_value", "rank") if c in factor_df]
        tables.append(
            (
                "Geodetector factor detector",
                table_html(
                    factor_df[cols],
                    headers={"q_mean": "q (mean)", "q_sd": "q (sd)", "p_value": "p"},
                ),
            )
        )
    return tables


def validation_table(data: dict[str, Any] | None, where: str | None) -> tuple[str, str] | None:
    """``validation.json`` (``ncp-subsidence validate``) as (caption, HTML), or None."""
    if not data:
        return None
    df = pd.DataFrame(data.get("metrics", []))
    cols = [c for c in ("metric", "value", "op", "tolerance", "unit", "pass", "note") if c in df]
    n_pass = int(df["pass"].sum()) if "pass" in df else 0
    caption = (
        f"Validation against the twin's truth: {n_pass} of {len(df)} metrics within tolerance "
        f"(from {where}, written by ncp-subsidence validate; it grades the products present "
        "when it ran)"
    )
    return caption, table_html(df[cols], kinds={"op": "text"})


def render_html(
    title: str,
    figures: list[Figure],
    tables: list[tuple[str, str]],
    *,
    info: dict[str, Any] | None = None,
    section_tables: dict[str, list[tuple[str, str]]] | None = None,
    notes: dict[str, str] | None = None,
    interactive: str | None = None,
) -> str:
    """``index.html``: the header (``info``, :func:`~._report_inputs.run_info`; a banner when
    an input is synthetic), the figures grouped by consecutive section, each section followed
    by its ``section_tables`` and ``notes``, sections with tables only, then the other tables.
    ``interactive`` names the interactive page (linked from the header)."""
    import jinja2
    from markupsafe import Markup

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("ncp_subsidence", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    section_tables = dict(section_tables or {})
    notes = dict(notes or {})
    grouped = [
        (section, [(f.name, f.caption) for f in group])
        for section, group in itertools.groupby(figures, key=lambda f: f.section)
    ]
    named = {s for s, _ in grouped}
    grouped += [(s, []) for s in [*section_tables, *notes] if s not in named]
    sections = []
    for section, items in grouped:
        if section in {s for s, _, _, _ in sections}:
            continue
        sections.append(
            (
                section,
                items,
                # our own table_html / pandas output: markup we made, its cells escaped
                [(c, Markup(t)) for c, t in section_tables.pop(section, [])],
                notes.pop(section, None),
            )
        )
    header = None
    if info is not None:
        header = {
            **info,
            "inputs_html": Markup(
                table_html(pd.DataFrame(info["inputs"], columns=["source", "items"]))
            )
            if info.get("inputs")
            else None,
            "products_html": Markup(table_html(pd.DataFrame(info["products"])))
            if info.get("products")
            else None,
        }
    return env.get_template("report_index.html").render(
        title=title,
        sign=SIGN,
        info=header,
        interactive=interactive,
        sections=sections,
        tables=[(caption, Markup(table)) for caption, table in tables],
    )
