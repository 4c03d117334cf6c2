"""STAC items, collections, the static catalog and the ndjson of the twin.

The static catalog (``OUT/catalog.json``) is self-contained: links and asset hrefs are relative,
so it is relocatable and byte-identical for a given seed. ``OUT/items.ndjson`` carries the same
items with absolute ``file://`` asset hrefs and a ``collection`` field, ready for
``rustac serve --create-collections``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pystac
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.sar import FrequencyBand, Polarization, SarExtension
from pystac.extensions.sat import OrbitState, SatExtension

__all__ = ["build_catalog", "ifg_item", "raster_item", "file_item", "to_datetime"]

INSAR_PROPS_PREFIX = "insar"


def to_datetime(t) -> datetime:
    """UTC datetime of a datetime64."""
    s = np.datetime64(t, "s").astype(object)
    return s.replace(tzinfo=UTC)


def _bbox_geometry(bbox) -> dict:
    w, s, e, n = (float(v) for v in bbox)
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def _proj(item: pystac.Item, bbox, shape, transform) -> None:
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    proj.code = "EPSG:4326"
    proj.shape = [int(shape[0]), int(shape[1])]
    w, dx, _, n, _, dy = transform
    proj.transform = [float(dx), 0.0, float(w), 0.0, float(dy), float(n)]
    proj.bbox = [float(v) for v in bbox]


def ifg_item(
    item_id: str,
    frame,
    reference,
    secondary,
    bbox,
    shape,
    transform,
    assets: dict[str, tuple[str, str, list[str], str]],
) -> pystac.Item:
    """STAC item of one interferogram (one pair of one frame).

    Parameters
    ----------
    assets : dict
        key -> (href, media type, roles, title).
    """
    start, end = to_datetime(reference), to_datetime(secondary)
    item = pystac.Item(
        id=item_id,
        geometry=_bbox_geometry(bbox),
        bbox=[float(v) for v in bbox],
        datetime=start,
        properties={
            "start_datetime": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end_datetime": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "platform": "sentinel-1a",
            "constellation": "sentinel-1",
            "instruments": ["c-sar"],
            f"{INSAR_PROPS_PREFIX}:reference_datetime": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            f"{INSAR_PROPS_PREFIX}:secondary_datetime": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
            f"{INSAR_PROPS_PREFIX}:temporal_baseline": round(
                (secondary - reference) / np.timedelta64(1, "D")
            ),
            "twin:frame": frame.name,
            "twin:heading": float(frame.heading_deg),
        },
    )
    sat = SatExtension.ext(item, add_if_missing=True)
    sat.relative_orbit = int(frame.relative_orbit)
    sat.orbit_state = OrbitState.ASCENDING
    sar = SarExtension.ext(item, add_if_missing=True)
    sar.apply(
        instrument_mode="IW",
        frequency_band=FrequencyBand.C,
        polarizations=[Polarization.VV],
        product_type="INSAR_GAMMA",
        center_frequency=5.405,
    )
    _proj(item, bbox, shape, transform)
    for key, (href, media, roles, title) in assets.items():
        item.add_asset(key, pystac.Asset(href=href, media_type=media, roles=roles, title=title))
    return item


def raster_item(
    item_id: str,
    when: datetime,
    bbox,
    shape,
    transform,
    href: str,
    title: str,
    extra: dict | None = None,
) -> pystac.Item:
    """STAC item of a single COG (factor rasters), asset key ``data``."""
    item = pystac.Item(
        id=item_id,
        geometry=_bbox_geometry(bbox),
        bbox=[float(v) for v in bbox],
        datetime=when,
        properties=dict(extra or {}),
    )
    _proj(item, bbox, shape, transform)
    item.add_asset(
        "data",
        pystac.Asset(href=href, media_type=pystac.MediaType.COG, roles=["data"], title=title),
    )
    return item


def file_item(
    item_id: str,
    start: datetime,
    end: datetime,
    bbox,
    href: str,
    media: str,
    title: str,
    extra: dict | None = None,
) -> pystac.Item:
    """STAC item of a non-raster file (NetCDF, GeoJSON, MIDAS text), asset key ``data``."""
    props = {
        "start_datetime": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end_datetime": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        **(extra or {}),
    }
    item = pystac.Item(
        id=item_id,
        geometry=_bbox_geometry(bbox),
        bbox=[float(v) for v in bbox],
        datetime=start,
        properties=props,
    )
    item.add_asset("data", pystac.Asset(href=href, media_type=media, roles=["data"], title=title))
    return item


def build_catalog(
    root: Path,
    groups: dict[str, tuple[str, list[pystac.Item]]],
    bbox,
) -> tuple[Path, Path, Path]:
    """Write the static catalog, ``items.ndjson`` and ``collections.json``.

    Parameters
    ----------
    root : Path
        Twin root (asset hrefs given relative to it, posix).
    groups : dict
        collection id -> (description, items); item asset hrefs are relative to ``root``.
    bbox : (w, s, e, n)
        Spatial extent used for collections (items refine it).

    Returns
    -------
    catalog, ndjson, collections : Path
    """
    root = Path(root).resolve()
    catalog = pystac.Catalog(
        id="ncp-twin",
        description="NCP twin: synthetic North China Plain products with known truth.",
        title="ncp_subsidence twin",
    )
    ndjson_lines: list[str] = []
    collection_dicts: list[dict] = []
    for cid in sorted(groups):
        description, items = groups[cid]
        times = [i.datetime for i in items] + [
            datetime.fromisoformat(i.properties[k].replace("Z", "+00:00"))
            for i in items
            for k in ("start_datetime", "end_datetime")
            if k in i.properties
        ]
        bboxes = np.array([i.bbox for i in items])
        ext_bbox = [
            float(bboxes[:, 0].min()),
            float(bboxes[:, 1].min()),
            float(bboxes[:, 2].max()),
            float(bboxes[:, 3].max()),
        ]
        coll = pystac.Collection(
            id=cid,
            description=description,
            extent=pystac.Extent(
                pystac.SpatialExtent([ext_bbox]),
                pystac.TemporalExtent([[min(times), max(times)]]),
            ),
            license="CC-BY-4.0",
        )
        for item in sorted(items, key=lambda i: i.id):
            # absolute copy for the ndjson (STAC API), before links are touched
            d = item.to_dict(include_self_link=False, transform_hrefs=False)
            d["collection"] = cid
            d["links"] = [
                {
                    "rel": "collection",
                    "type": "application/json",
                    "href": (root / "stac" / cid / "collection.json").as_uri(),
                }
            ]
            for a in d["assets"].values():
                a["href"] = (root / a["href"]).as_uri()
            ndjson_lines.append(json.dumps(d, sort_keys=True))
            coll.add_item(item)
        cd = coll.to_dict(include_self_link=False, transform_hrefs=False)
        cd["links"] = []
        collection_dicts.append(cd)
        catalog.add_child(coll)
    stac_dir = root / "stac"
    catalog.normalize_hrefs(str(stac_dir))
    # relative asset hrefs: from each item's directory to the file under root
    for item in catalog.get_items(recursive=True):
        item_dir = Path(item.get_self_href()).parent
        for asset in item.assets.values():
            target = root / asset.href
            asset.href = Path(_relpath(target, item_dir)).as_posix()
    catalog.set_self_href(str(root / "catalog.json"))
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    ndjson = root / "items.ndjson"
    ndjson.write_text("\n".join(ndjson_lines) + "\n")
    colls = root / "collections.json"
    colls.write_text(json.dumps(collection_dicts, sort_keys=True, indent=1) + "\n")
    return root / "catalog.json", ndjson, colls


def _relpath(target: Path, start: Path) -> str:
    import os

    return os.path.relpath(target, start)
