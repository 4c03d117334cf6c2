"""Stage ``report`` (private): reading the upstream products, each optional but ``analysis``.

Every read goes through the :class:`~ncp_subsidence.io.stores.ProductStore`.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pandas as pd
import xarray as xr

__all__ = ["OPTIONAL_STAGES"]

#: the upstream products the report draws on when the store holds them
OPTIONAL_STAGES = ("adjust", "mosaic", "hydro", "factors", "geodetector")


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
