"""Ingest of the monthly hydrology: ``hydro/grace``, ``hydro/gldas``, ``hydro/fldas``, ``hydro/imerg``.

Monthly ``(time, lat, lon)`` on each product's native grid over ``sources.bbox`` padded by
:data:`HYDRO_PAD_DEG`, in mm of water (docs/science.md 5.2); new months are appended along ``time``
(the ``ingest`` module docstring).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..io.cube import with_crs
from ..io.products.fldas import read_fldas
from ..io.products.gldas import read_gldas
from ..io.products.grace import read_grace
from ..io.products.imerg import read_imerg
from ..io.stac import items_digest, parse_interval
from ..redaction import redact_url
from ..sources import load_items
from ._ingest_items import _hrefs, _increment, _provenance, _read_product

log = logging.getLogger("ncp_subsidence.stages.ingest")


def month_midpoints(times: Any) -> np.ndarray:
    """The mid-month instant of the calendar month holding each time (datetime64[ns])."""
    t = pd.DatetimeIndex(pd.to_datetime(np.asarray(times)))
    start = t.to_period("M").to_timestamp()
    end = (t.to_period("M") + 1).to_timestamp()
    return np.asarray(start + (end - start) / 2, dtype="datetime64[ns]")


def _hydro_bbox(config: Any) -> tuple[float, float, float, float]:
    """``sources.bbox`` padded by :data:`HYDRO_PAD_DEG` (coarse cells overlapping the edge)."""
    w, s, e, n = config.sources.bbox
    p = HYDRO_PAD_DEG
    return max(-180.0, w - p), max(-90.0, s - p), min(180.0, e + p), min(90.0, n + p)


#: degrees added around ``sources.bbox`` when reading gridded hydrology
HYDRO_PAD_DEG = 1.0


def _read_grace(config: Any, items: list[Any]) -> xr.Dataset:
    # the months kept: the source's own window; the whole record otherwise (the hydro stage
    # takes anomalies against a long baseline, wider than the InSAR period)
    source = config.sources.grace
    start, end = parse_interval(source.datetime if source else None)
    window = (start.date() if start else None, end.date() if end else None)
    bbox = _hydro_bbox(config)
    parts = [
        _read_product(
            config,
            "grace",
            [href],
            lambda options, href=href: read_grace(
                href,
                bbox=bbox,
                time_range=window,
                scale_factor=source.scale_factor if source else None,
                land_mask=source.land_mask if source else None,
                storage_options=options,
            ),
        )
        for href in _hrefs(items)
    ]
    ds = xr.concat(parts, "time", combine_attrs="drop") if len(parts) > 1 else parts[0]
    ds.attrs = {
        f"{option}_file": redact_url(getattr(source, option))
        for option in ("scale_factor", "land_mask")
        if source is not None and getattr(source, option) is not None
    }
    if ds.indexes["time"].has_duplicates:  # items sharing a month: averaged (docs/science.md 5.2)
        ds = ds.groupby("time").mean(keep_attrs=True)
    return ds.sortby("time")


def _read_gridded(config: Any, key: str, items: list[Any]) -> xr.Dataset:
    hrefs = _hrefs(items)
    bbox = _hydro_bbox(config)
    if key == "gldas":
        return _read_product(
            config,
            key,
            hrefs,
            lambda o: read_gldas(hrefs, bbox=bbox, variables=("canopy_water",), storage_options=o),
        )
    if key == "fldas":
        return _read_product(
            config,
            key,
            hrefs,
            lambda o: read_fldas(
                hrefs,
                bbox=bbox,
                variables=("soil_moisture", "swe", "precipitation", "evapotranspiration"),
                storage_options=o,
            ),
        )
    return _read_product(
        config, key, hrefs, lambda o: read_imerg(hrefs, bbox=bbox, storage_options=o)
    )


def ingest_hydro(ctx: Any, names: list[str]) -> None:
    config = ctx.config
    readers = {
        "grace": lambda items: _read_grace(config, items),
        "gldas": lambda items: _read_gridded(config, "gldas", items),
        "fldas": lambda items: _read_gridded(config, "fldas", items),
        "imerg": lambda items: _read_gridded(config, "imerg", items),
    }
    for key, reader in readers.items():
        if key not in names:
            continue
        items = load_items(ctx.store, key, config=config)
        if not items:
            continue
        name = f"hydro/{key}"
        increment = _increment(ctx, name, items)
        if increment is not None:
            previous, added = increment
            if not added:
                ctx.reuse(name)
                continue
            new = reader(added).astype("float32")
            later = bool(np.all(new["time"].values > previous["time"].values[-1]))
            same = set(new.data_vars) == set(previous.data_vars) and all(
                np.array_equal(new[c].values, previous[c].values) for c in ("lat", "lon")
            )
            if later and same:
                ds = _hydro_cube(ctx, new, key)
                ds.attrs.update(
                    {
                        **previous.attrs,
                        "source_item_ids": json.dumps(
                            [
                                *json.loads(previous.attrs["source_item_ids"]),
                                *(i.id for i in added),
                            ]
                        ),
                        "source_items_digest": items_digest(items),
                    }
                )
                if "samples_per_month" in new.attrs:  # per month of the whole record
                    ds.attrs["samples_per_month"] = json.dumps(
                        json.loads(previous.attrs.get("samples_per_month", "[]"))
                        + json.loads(new.attrs["samples_per_month"])
                    )
                ctx.write(name, ds, append_dim="time")
                log.info("%s: appended %d month(s)", name, ds.sizes["time"])
                continue
            log.info("%s: new items overlap the record or change its grid; rewriting", name)
        ds = _hydro_cube(ctx, reader(items).astype("float32"), key)
        ds.attrs.update(_provenance(items))
        ctx.write(name, ds)


def _hydro_cube(ctx: Any, ds: xr.Dataset, key: str) -> xr.Dataset:
    chunk = ctx.options.hydro_time_chunk
    ds = with_crs(ds)
    for var in ds.data_vars.values():  # in memory: written with the template
        if var.ndim == 3:
            var.encoding["chunks"] = (
                var.shape[0] if chunk == -1 else min(chunk, var.shape[0]),
                *var.shape[1:],
            )
    ds.attrs["source"] = key
    return ds
