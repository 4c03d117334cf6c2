"""Ingest of GNSS: the velocity table ``gnss`` and the daily position series ``gnss_series``.

Stations outside every interferogram frame are dropped and counted; see the ``ingest`` module
docstring for the screening of each.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import xarray as xr

from ..errors import DataError
from ..io.products.tenv3 import read_tenv3
from ..io.readers import read_midas_checked
from ..io.stac import parse_interval
from ._ingest_items import _frame_boxes, _hrefs, _increment, _provenance, _read_product, _remote

log = logging.getLogger("ncp_subsidence.stages.ingest")


def ingest_gnss(ctx: Any, items: list[Any]) -> None:
    increment = _increment(ctx, "gnss", items)
    if increment is not None and not increment[1]:
        ctx.reuse("gnss")
        return
    (href,) = _hrefs(items[:1])
    retries, headers = _remote(ctx.config, "gnss")
    table, report = read_midas_checked(href, retries=retries, headers=headers)
    boxes = _frame_boxes(ctx)
    outside: list[str] = []
    if boxes:
        lon, lat = table["lon"].to_numpy(), table["lat"].to_numpy()
        inside = np.zeros(len(table), dtype=bool)
        for w, s, e, n in boxes:
            inside |= (lon >= w) & (lon <= e) & (lat >= s) & (lat <= n)
        outside = table.loc[~inside, "station"].astype(str).tolist()
        table = table[inside].reset_index(drop=True)
        if outside:
            log.info(
                "gnss: %d station(s) outside every interferogram frame dropped (%s%s)",
                len(outside),
                ", ".join(outside[:10]),
                " ..." if len(outside) > 10 else "",
            )
    if table.empty:
        raise DataError(
            f"GNSS file {href}: no usable station inside the interferogram frames "
            f"{[[round(float(v), 4) for v in b] for b in boxes]} (west, south, east, north; "
            f"{report['n_kept']} usable station(s) read); give a GNSS file covering the frames"
        )
    report.pop("href", None)
    report["n_outside_frames"] = len(outside)
    report["outside_frames"] = outside
    ds = xr.Dataset.from_dataframe(table.set_index("station"))
    for c in ("ve", "vn", "vu", "se", "sn", "su"):
        ds[c].attrs = {
            "units": "mm/yr",
            "long_name": {"v": "velocity", "s": "velocity uncertainty"}[c[0]]
            + " "
            + {"e": "east", "n": "north", "u": "up"}[c[1]]
            + " (ITRF)",
        }
    ds["lon"].attrs = {"units": "degrees_east"}
    ds["lat"].attrs = {"units": "degrees_north"}
    ds["height"].attrs = {"units": "m"}
    ds = ds.assign_coords(station=ds["station"].values.astype(object))
    ds.attrs.update(
        {
            "quality_report": json.dumps(report),
            "n_stations": int(ds.sizes["station"]),
            "n_dropped_nan": int(report["n_nan"]),
            "n_dropped_duplicate": int(report["n_duplicate"]),
            "n_dropped_malformed": int(report["n_malformed"]),
            "n_dropped_nonpositive_sigma": int(report["n_nonpositive_sigma"]),
            "n_lon_normalised": int(report["n_lon_normalised"]),
            "n_outside_frames": len(outside),
        }
    )
    ds.attrs.update(_provenance(items))
    ctx.write("gnss", ds)


def ingest_gnss_series(ctx: Any, items: list[Any]) -> None:
    """The ``gnss_series`` dataset from one ``.tenv3`` file per item (module docstring)."""
    increment = _increment(ctx, "gnss_series", items)
    if increment is not None and not increment[1]:
        ctx.reuse("gnss_series")
        return
    source = ctx.config.sources.gnss_series
    start, end = parse_interval(
        (source.datetime if source is not None else None) or ctx.config.sources.datetime
    )
    lo = np.datetime64(start.replace(tzinfo=None), "ns") if start else None
    hi = np.datetime64(end.replace(tzinfo=None), "ns") if end else None
    stations: dict[str, xr.Dataset] = {}
    duplicates: list[str] = []
    empty: list[str] = []
    n_lon_normalised = 0
    n_bad_days = 0
    for href in _hrefs(items):
        one = _read_product(
            ctx.config,
            "gnss_series",
            [href],
            lambda options, href=href: read_tenv3(href, storage_options=options),
        )
        raw_lon = float(one.attrs.get("lon_as_written", one.attrs["lon"]))
        n_lon_normalised += int(not -180.0 <= raw_lon < 180.0)
        keep = np.isfinite(one["up"].values) & np.isfinite(one["east"].values)
        keep &= np.isfinite(one["north"].values) & (one["sigma_up"].values > 0)
        n_bad_days += int((~keep).sum())
        t = one["time"].values
        if lo is not None:
            keep &= t >= lo
        if hi is not None:
            keep &= t <= hi
        one = one.isel(time=np.flatnonzero(keep))
        name = str(one.attrs["station"])
        if one.sizes["time"] == 0:
            empty.append(name)
            continue
        if name in stations:
            duplicates.append(name)
            if one.sizes["time"] <= stations[name].sizes["time"]:
                continue
        stations[name] = one
    if n_bad_days:
        log.warning(
            "gnss_series: %d day(s) with a non-finite position or sigma <= 0 dropped",
            n_bad_days,
        )
    if duplicates:
        log.warning(
            "gnss_series: station(s) given twice, the longer series kept: %s",
            ", ".join(sorted(set(duplicates))),
        )
    if empty:
        log.warning(
            "gnss_series: %d station(s) without a day in %s dropped: %s",
            len(empty),
            source.datetime if source and source.datetime else ctx.config.sources.datetime,
            ", ".join(empty[:10]) + (" ..." if len(empty) > 10 else ""),
        )
    boxes = _frame_boxes(ctx)
    outside = [
        name
        for name, one in stations.items()
        if boxes
        and not any(
            w <= one.attrs["lon"] <= e and s <= one.attrs["lat"] <= n for w, s, e, n in boxes
        )
    ]
    if outside:
        log.info(
            "gnss_series: %d station(s) outside every interferogram frame dropped (%s%s)",
            len(outside),
            ", ".join(outside[:10]),
            " ..." if len(outside) > 10 else "",
        )
    kept = {k: v for k, v in sorted(stations.items()) if k not in outside}
    if not kept:
        raise DataError(
            f"GNSS series source: none of its {len(items)} file(s) has a station with days "
            f"in the window inside the interferogram frames ({len(empty)} without days in "
            f"the window, {len(outside)} outside the frames); give .tenv3 files of stations "
            "inside the frames (sources.gnss_series)"
        )
    ds = _series_cube(kept)
    ds.attrs.update(
        {
            "n_stations": int(ds.sizes["station"]),
            "n_dropped_duplicate": len(duplicates),
            "duplicate_stations": json.dumps(sorted(set(duplicates))),
            "n_dropped_no_days_in_window": len(empty),
            "no_days_in_window": json.dumps(empty),
            "n_outside_frames": len(outside),
            "outside_frames": json.dumps(outside),
            "n_days_dropped_invalid": n_bad_days,
            "n_lon_normalised": n_lon_normalised,
            "source": "NGL tenv3",
        }
    )
    ds.attrs.update(_provenance(items))
    ctx.write("gnss_series", ds)
    log.info(
        "gnss_series: %d station(s), %d day(s) (%s to %s)",
        ds.sizes["station"],
        ds.sizes["time"],
        str(ds["time"].values[0])[:10],
        str(ds["time"].values[-1])[:10],
    )


def _series_cube(stations: dict[str, xr.Dataset]) -> xr.Dataset:
    """Stations' series on their union of days: dims ``(station, time)``, mm."""
    days = np.unique(np.concatenate([one["time"].values for one in stations.values()]))
    names = list(stations)
    data = {k: np.full((len(names), days.size), np.nan, np.float32) for k in _SERIES_VARS}
    for i, one in enumerate(stations.values()):
        at = np.searchsorted(days, one["time"].values)
        for k in ("east", "north", "up"):  # relative to the first day kept
            values = one[k].values
            data[k][i, at] = values - values[0]
        data["sigma_up"][i, at] = one["sigma_up"].values
    ds = xr.Dataset(
        {
            k: (("station", "time"), v, {"units": "mm", "long_name": _SERIES_VARS[k]})
            for k, v in data.items()
        },
        coords={
            "station": np.asarray(names, dtype=object),
            "time": days,
            "lon": (
                "station",
                [stations[n].attrs["lon"] for n in names],
                {"units": "degrees_east"},
            ),
            "lat": (
                "station",
                [stations[n].attrs["lat"] for n in names],
                {"units": "degrees_north"},
            ),
            "height": ("station", [stations[n].attrs["height"] for n in names], {"units": "m"}),
        },
    )
    return ds


#: variables of the ``gnss_series`` dataset and their long names (all mm)
_SERIES_VARS = {
    "east": "east position relative to the station's first day (ITRF)",
    "north": "north position relative to the station's first day (ITRF)",
    "up": "up position relative to the station's first day",
    "sigma_up": "up position uncertainty (1 sigma)",
}
