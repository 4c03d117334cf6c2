"""Stage ``report`` (private): reading the upstream products, each optional but ``analysis``.

Every read goes through the :class:`~ncp_subsidence.io.stores.ProductStore`.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import pandas as pd
import xarray as xr

from ..config import STAGE_NAMES

__all__ = [
    "OPTIONAL_STAGES",
    "frame_footprints",
    "gnss_stations",
    "read_validation",
    "region_outlines",
    "run_info",
]

#: the upstream products the report draws on when the store holds them
OPTIONAL_STAGES = STAGE_NAMES[: STAGE_NAMES.index("analysis")]


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


# --------------------------------------------------------------------------------------------
# Run information, overlays and the validation table
# --------------------------------------------------------------------------------------------


def config_digest(config: Any) -> str | None:
    """SHA-256 of the redacted config the store's root attrs record (canonical JSON)."""
    if config is None:
        return None
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def run_info(store: Any) -> dict[str, Any]:
    """The report header: input kind, software version, run date, config digest, the inputs
    discovery saved with their item counts, and each product's version and fingerprint.

    ``input_kind`` is the root attrs' (``twin``, ``mixed`` or ``real``; ``synthetic`` is true
    unless ``real``); the products' own ``input_kind`` attrs are not read (the root records the
    run). Inputs come from ``discover/<version>/catalog/index.json`` (source name -> items).
    """
    attrs = store.root_attrs()
    last = attrs.get("last_run") or {}
    kind = str(attrs.get("input_kind") or "unknown")
    inputs: list[dict[str, Any]] = []
    record = store.record("discover")
    if record is not None:
        try:
            index = json.loads(store.read_file(f"discover/{record.version}/catalog/index.json"))
        except FileNotFoundError:
            index = {}
        inputs = [{"source": k, "items": int(v)} for k, v in sorted(index.items())]
    products = []
    for stage in (*OPTIONAL_STAGES, "analysis"):
        rec = store.record(stage)
        if rec is not None:
            products.append(
                {
                    "product": stage,
                    "version": rec.version,
                    "fingerprint": rec.fingerprint[:12],
                    "completed": rec.completed_at,
                }
            )
    digest = config_digest(attrs.get("config"))
    return {
        "input_kind": kind,
        "synthetic": kind != "real",
        "software_version": attrs.get("ncp_subsidence_version"),
        "software": attrs.get("software") or {},
        "run_started": last.get("started"),
        "run_stages": list(last.get("stages") or []),
        "config_digest": digest,
        "inputs": inputs,
        "products": products,
        "store": store.url,
    }


def region_outlines(store: Any, name_property: str = "name", config: Any = None) -> list[Any]:
    """``(name, [ring lon/lat arrays])`` of every region polygon of the discovered ``regions``
    source (empty when discovery saved no regions source)."""
    import numpy as np

    from ..io.readers import read_geojson
    from ..sources import load_items, source_names

    if store.record("discover") is None or "regions" not in source_names(store):
        return []
    out = []
    for item in load_items(store, "regions", config=config):
        asset = item.assets.get("data")
        if asset is None:
            continue
        for i, feature in enumerate(read_geojson(asset.get_absolute_href())):
            geom = feature.get("geometry") or {}
            props = feature.get("properties") or {}
            if geom.get("type") == "Polygon":
                polys = [geom["coordinates"]]
            elif geom.get("type") == "MultiPolygon":
                polys = geom["coordinates"]
            else:
                continue
            rings = [np.asarray(p[0], dtype=float) for p in polys if p]
            out.append((str(props.get(name_property, f"region_{i}")), rings))
    return out


def frame_footprints(store: Any) -> dict[str, Any]:
    """Each sbas frame's grid outline in lon/lat, ``{frame: (lon, lat)}`` (densified edges, so a
    projected frame's curved edges are kept); empty without an ``sbas`` product."""
    import numpy as np

    from ..io.projection import dataset_crs, xy_to_lonlat

    record = store.record("sbas")
    if record is None:
        return {}
    out = {}
    for frame in record.datasets:
        if frame == ".":
            continue
        ds = store.open("sbas", frame)
        x, y = ds["x"].values, ds["y"].values
        hx = abs(float(x[1] - x[0])) / 2 if x.size > 1 else 0.0
        hy = abs(float(y[1] - y[0])) / 2 if y.size > 1 else 0.0
        x0, x1 = float(x.min()) - hx, float(x.max()) + hx
        y0, y1 = float(y.min()) - hy, float(y.max()) + hy
        s = np.linspace(0.0, 1.0, 17)
        xs = np.concatenate([x0 + (x1 - x0) * s, np.full(17, x1), x1 - (x1 - x0) * s, [x0] * 17])
        ys = np.concatenate(
            [np.full(17, y0), y0 + (y1 - y0) * s, np.full(17, y1), y1 - (y1 - y0) * s]
        )
        crs = ds.attrs.get("crs") or dataset_crs(ds)
        out[frame] = xy_to_lonlat(str(crs), xs, ys)
    return out


def gnss_stations(store: Any) -> pd.DataFrame | None:
    """Stations with their roles and LOS residuals from ``adjust``'s ``stations.json``, joined
    with their positions from ``ingest/gnss``: columns ``frame, station, role, lon, lat,
    residual_before, residual_after`` (mm/yr LOS; after = before - correction). With no
    ``adjust``, the ingested stations alone (role ``station``, no residual); None without
    either."""
    import numpy as np

    positions = None
    ingest = store.record("ingest")
    if ingest is not None and "gnss" in ingest.datasets:
        g = store.open("ingest", "gnss")
        positions = pd.DataFrame(
            {
                "station": [str(s) for s in g["station"].values],
                "lon": np.asarray(g["lon"].values, float),
                "lat": np.asarray(g["lat"].values, float),
            }
        )
    records = _read_json(store, "adjust", "stations.json")
    if not records:
        if positions is None:
            return None
        return positions.assign(
            frame="", role="station", residual_before=np.nan, residual_after=np.nan
        )
    rows = [
        {
            "frame": frame,
            "station": r["station"],
            "role": r["role"],
            "residual_before": np.nan if r.get("residual_los") is None else r["residual_los"],
            "residual_after": (
                np.nan
                if r.get("residual_los") is None or r.get("correction_los") is None
                else r["residual_los"] - r["correction_los"]
            ),
        }
        for frame, recs in sorted(records.items())
        for r in recs
    ]
    df = pd.DataFrame(rows)
    if positions is not None:
        df = df.merge(positions, on="station", how="left")
    else:
        df = df.assign(lon=np.nan, lat=np.nan)
    return df


#: where :func:`read_validation` looks, relative to the store root (the CLI's default
#: ``--out validation`` run from the store's parent folder, or from the store itself)
VALIDATION_PATHS = (
    "validation.json",
    "validation/validation.json",
    "../validation/validation.json",
    "../validation.json",
)


def read_validation(store: Any) -> tuple[dict[str, Any] | None, str | None]:
    """The ``validation.json`` that ``ncp-subsidence validate`` wrote next to the store, and
    where it was found (None, None when there is none)."""
    for rel in VALIDATION_PATHS:
        if rel.startswith("..") and "://" in store.url and not store.url.startswith("file://"):
            continue  # a parent folder of a remote store root is not a place we look
        try:
            data = json.loads(store.read_file(rel))
        except FileNotFoundError:
            continue
        return data, rel
    return None, None
