"""Stage ``report`` (private): numbers written for people, and tables as HTML.

Rules (:func:`fmt_number`): integers with thousands separators (``72,882``); floats with fixed
decimals chosen by magnitude (``963.1``, ``35.65``, ``0.927``, ``0.00123``), never an exponent;
p-values as ``p < 0.001`` below a thousandth (:func:`fmt_p`); years without separators; booleans
as ``yes``/``no``; missing values as an en dash. :func:`table_html` applies them column by column
(the column's kind from its name, :func:`column_kind`) and writes the table as HTML with every
cell escaped.
"""

from __future__ import annotations

import html
import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["column_kind", "fmt_number", "fmt_p", "fmt_value", "table_html"]

MISSING = "–"


def _is_missing(x: Any) -> bool:
    if x is None:
        return True
    try:
        return bool(pd.isna(x))
    except (TypeError, ValueError):
        return False


def fmt_number(x: Any) -> str:
    """A number for people: thousands separators, decimals by magnitude, no exponent.

    >>> fmt_number(72882.2), fmt_number(963.07), fmt_number(35.648), fmt_number(0.92693)
    ('72,882', '963.1', '35.65', '0.927')
    >>> fmt_number(1.2e-5), fmt_number(12), fmt_number(-1234567)
    ('0.0000120', '12', '-1,234,567')
    """
    if _is_missing(x):
        return MISSING
    if isinstance(x, bool | np.bool_):
        return "yes" if x else "no"
    if isinstance(x, numbers.Integral):
        return f"{int(x):,}"
    v = float(x)
    if not math.isfinite(v):
        return MISSING if math.isnan(v) else ("∞" if v > 0 else "−∞")
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1000:
        decimals = 0
    elif a >= 100:
        decimals = 1
    elif a >= 1:
        decimals = 2
    else:
        # three significant digits, at most 8 decimals (smaller magnitudes read as 0)
        decimals = min(8, 2 - math.floor(math.log10(a)))
    out = f"{v:,.{decimals}f}"
    return "0" if float(out.replace(",", "")) == 0 else out


def fmt_p(p: Any) -> str:
    """A p-value: ``< 0.001`` below a thousandth, else three decimals."""
    if _is_missing(p):
        return MISSING
    p = float(p)
    if not math.isfinite(p):
        return MISSING
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def column_kind(name: str) -> str:
    """How a table column is written: ``p`` (p-values), ``year``, ``int`` or ``number``."""
    n = name.lower().strip()
    if n in ("p", "p_value", "p-value", "mk_p") or n.endswith(("_p", " p")) or "p-value" in n:
        return "p"
    if n in ("year", "peak_year", "peak year", "calendar year") or n.endswith(" year"):
        return "year"
    if n in ("n", "n_valid", "mk_s", "n_pairs", "lag_months", "rank") or n.startswith(("n_", "n ")):
        return "int"
    return "number"


def fmt_value(x: Any, kind: str = "number") -> str:
    """``x`` written as its ``kind`` (see :func:`column_kind`); strings pass through."""
    if isinstance(x, str):
        return x
    if _is_missing(x):
        return MISSING
    if isinstance(x, bool | np.bool_):
        return "yes" if bool(x) else "no"
    if kind == "p":
        return fmt_p(x)
    if kind == "year":
        return str(int(x)) if float(x) == int(float(x)) else fmt_number(x)
    if kind == "int" and float(x) == round(float(x)):
        return f"{round(float(x)):,}"
    if isinstance(x, numbers.Number):
        return fmt_number(x)
    return str(x)


def table_html(
    df: pd.DataFrame,
    *,
    kinds: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    css_class: str = "data",
) -> str:
    """``df`` as an HTML table: every cell formatted (:func:`fmt_value`) and escaped.

    ``kinds`` overrides a column's kind; ``headers`` renames columns for display. Numeric
    cells are right-aligned (class ``num``), text left-aligned.
    """
    kinds = dict(kinds or {})
    headers = dict(headers or {})
    cols = list(df.columns)
    head = "".join(f"<th>{html.escape(str(headers.get(c, c)))}</th>" for c in cols)
    rows = []
    for rec in df.itertuples(index=False, name=None):
        cells = []
        for c, x in zip(cols, rec):
            text = fmt_value(x, kinds.get(c) or column_kind(str(c)))
            numeric = isinstance(x, numbers.Number) and not isinstance(x, bool | np.bool_)
            cls = ' class="num"' if numeric else ""
            cells.append(f"<td{cls}>{html.escape(text)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f'<table class="{css_class}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
