"""Reader of observed region series (``analysis.observed_series``): CSV files of ``date,value``.

An observed series is a stand-in for a water-bulletin or well-level record of one region (any
units; the stage only correlates it with the regional GWSA). It is read whole (a few hundred
rows) with :mod:`fsspec`, so any fsspec URL works.
"""

from __future__ import annotations

import fsspec
import pandas as pd

from ..errors import DataError

__all__ = ["read_observed_series"]


def read_observed_series(url: str) -> pd.Series:
    """Monthly means of an observed series, indexed by ``pandas.Period`` (freq ``M``).

    Parameters
    ----------
    url : str
        A CSV with the columns ``date`` and ``value`` (names case-insensitive, surrounding
        spaces ignored); rows with a missing value are dropped.

    Raises
    ------
    DataError
        If the file does not exist or lacks one of the columns.
    """
    try:
        with fsspec.open(url, "rt") as f:
            df = pd.read_csv(f)
    except FileNotFoundError as err:
        raise DataError(f"observed series {url!r} not found (analysis.observed_series)") from err
    cols = {c.lower().strip(): c for c in df.columns}
    if "date" not in cols or "value" not in cols:
        raise DataError(
            f"observed series {url!r} has columns {list(df.columns)}; expected 'date,value'"
        )
    s = pd.Series(
        df[cols["value"]].astype(float).values, index=pd.to_datetime(df[cols["date"]])
    ).dropna()
    return s.groupby(s.index.to_period("M")).mean()
