"""Stage ``report`` (private): the tables and ``index.html``.

The page is rendered from the Jinja2 template ``ncp_subsidence/templates/report_index.html``
(package data, autoescaped): no external URL, images referenced relatively, so the report
folder opens offline in any browser. Tables are pandas' HTML (cells escaped by pandas).
"""

from __future__ import annotations

import itertools
from typing import Any

import pandas as pd

from ._report_inputs import _read_csv
from ._report_maps import SIGN, Figure

__all__ = ["render_html", "report_tables"]


def report_tables(
    store: Any,
    wide: dict[str, Any],
    series_table: pd.DataFrame | None,
    factor_df: pd.DataFrame | None,
) -> list[tuple[str, str]]:
    """The page's tables as (caption, HTML): wide-area numbers, the analysis CSVs, the GNSS
    series RMSE per frame and the geodetector factor detector, each when available."""
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
    return tables


def render_html(title: str, figures: list[Figure], tables: list[tuple[str, str]]) -> str:
    """``index.html``: the figures grouped by consecutive section, then the tables."""
    import jinja2
    from markupsafe import Markup

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("ncp_subsidence", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    sections = [
        (section, [(f.name, f.caption) for f in group])
        for section, group in itertools.groupby(figures, key=lambda f: f.section)
    ]
    return env.get_template("report_index.html").render(
        title=title,
        sign=SIGN,
        sections=sections,
        # pandas' to_html output: markup we made, its cells escaped by pandas
        tables=[(caption, Markup(table)) for caption, table in tables],
    )
