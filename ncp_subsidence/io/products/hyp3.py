"""ASF HyP3 interferograms (INSAR_GAMMA, INSAR_ISCE_BURST, INSAR_ISCE_MULTI_BURST).

Product layout
--------------
One zip per pair, ``<name>.zip`` holding ``<name>/<name>_<layer>.tif`` and ``<name>/<name>.txt``,
read **in place**: the ``.txt`` through fsspec's zip file system, rasters through GDAL
``/vsizip/`` (``/vsizip//abs/P.zip/P/P_unw_phase.tif``, ``/vsizip/vsicurl/https://...``,
``/vsizip/vsis3/bucket/...``). An unzipped product folder (``<name>/<name>_unw_phase.tif`` ...)
works too. Layers: ``unw_phase`` (radians), ``corr`` (0-1), ``conncomp``, ``lv_theta`` /
``lv_phi`` (look vector elevation / orientation, radians), ``dem`` (m), ``water_mask``...;
UTM metres (EPSG:326xx/327xx), nodata 0 tagged, every pair on its own extent.

Metadata (``<name>.txt``, ``Key: value`` lines)
-----------------------------------------------
Dates come from the granule names of ``Reference Granule:`` / ``Secondary Granule:`` (several
comma-separated ones for multi-burst products; the earliest start is the acquisition time):

* SLC (INSAR_GAMMA): ``S1A_IW_SLC__1SDV_20200604T022251_20200604T022318_032861_03CE65_7C85``:
  mission, mode, polarisation (``1SDV`` -> VV, ``1SDH`` -> HH), start, stop, absolute orbit;
  relative orbit ``(absolute - offset) mod 175 + 1`` with offsets S1A 73, S1B 27, S1C 172.
* burst (ISCE): ``S1_136232_IW2_20200604T022315_VV_7C85-BURST``: ESA burst id, swath, start,
  polarisation. The relative orbit follows from the burst id (ESA burst-id definition:
  ``floor(((id - 1) T_beam + T_pre) / T_orb) + 1``, ``T_beam`` 2.758273 s, ``T_pre`` 2.299849 s,
  ``T_orb`` 12 days / 175); the satellite (not in burst names) is the one whose relative orbit
  from ``Reference Orbit Number`` agrees.

Kept as item properties: ``hyp3:baseline`` (perpendicular baseline, m), ``hyp3:heading`` (deg),
``hyp3:range_looks``, ``hyp3:azimuth_looks``, ``hyp3:reference_point`` (map x/y, latitude,
longitude, SAR line/pixel, phase, as present), ``hyp3:reference_granules``,
``hyp3:secondary_granules``, ``hyp3:reference_orbit`` / ``hyp3:secondary_orbit`` (absolute),
``hyp3:temporal_baseline`` (days), ``hyp3:utc_time`` (s of day), ``hyp3:dem_source``,
``hyp3:unwrapping_type``, ``hyp3:burst_ids`` (burst products).

Frames
------
A frame is one track: ``ncp:frame`` is ``frame=`` or ``<A|D><relative orbit, 3 digits>`` (e.g.
``D064``). Products of different orbit directions or relative orbits in one call are an error;
so are different UTM zones, unless ``frame=`` names the frame (then the zones are reprojected
onto one grid at ingest).

Reading conventions (:data:`ADAPTER`)
-------------------------------------
Phase in radians, coherence 0-1; the tagged nodata 0 is NaN after reading. A pixel whose phase
and coherence are both exactly 0 is also no data (HyP3's fill value, for files that lost their
nodata tag); a real pixel never has both. Sign: phase increase = range increase (motion away
from the satellite), so ``d_los = -lambda / (4 pi) * phase`` is positive toward the satellite.
Geometry: ``lv_theta`` / ``lv_phi`` of every pair resampled onto the frame grid (bilinear), the
first valid value per pixel kept, converted with
:func:`~ncp_subsidence.kernels.geometry.los_unit_vector_from_hyp3` and
:func:`~ncp_subsidence.kernels.geometry.hyp3_to_incidence_heading`.

References
----------
ASF HyP3 InSAR product guides (GAMMA; ISCE2 burst, README of each product).
ESA (2022), Sentinel-1 burst ID map and definition, ESA-EOPG-EOPGC-TN-2022-10.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pystac
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.sar import FrequencyBand, ObservationDirection, Polarization, SarExtension
from pystac.extensions.sat import OrbitState, SatExtension

from ...errors import DataError
from ..readers import read_onto_grid
from .catalog import (
    Entry,
    expand_sources,
    gdal_path,
    iso,
    list_dir,
    parent_of,
    raster_projection,
    read_text,
    unique_items,
)

__all__ = [
    "ADAPTER",
    "LAYERS",
    "Granule",
    "Hyp3Adapter",
    "Hyp3Metadata",
    "items_from_source",
    "parse_granule",
    "parse_metadata",
    "relative_orbit",
]

log = logging.getLogger(__name__)

#: Layers of a HyP3 InSAR product -> (roles, title).
LAYERS: dict[str, tuple[list[str], str]] = {
    "unw_phase": (["data"], "unwrapped phase (radians)"),
    "corr": (["data", "coherence"], "coherence (0-1)"),
    "conncomp": (["metadata", "quality"], "connected components"),
    "wrapped_phase": (["data"], "wrapped phase (radians)"),
    "lv_theta": (["metadata", "geometry"], "look vector elevation angle (radians)"),
    "lv_phi": (["metadata", "geometry"], "look vector orientation angle (radians)"),
    "dem": (["metadata", "dem"], "DEM (m)"),
    "water_mask": (["metadata", "water-mask"], "water mask"),
    "inc_map": (["metadata", "geometry"], "incidence angle (radians)"),
    "inc_map_ell": (["metadata", "geometry"], "ellipsoidal incidence angle (radians)"),
    "amp": (["metadata"], "amplitude"),
}

#: (absolute - offset) mod 175 + 1 is the relative orbit of Sentinel-1A/B/C.
ORBIT_OFFSETS = {"A": 73, "B": 27, "C": 172}
#: Operating periods (first, last day) used to tell the satellite of a burst granule.
_OPERATING = {
    "A": (_dt.date(2014, 4, 3), None),
    "B": (_dt.date(2016, 4, 25), _dt.date(2021, 12, 23)),
    "C": (_dt.date(2024, 12, 5), None),
}
_T_BEAM = 2.758273  # s, burst cycle (ESA burst-id definition)
_T_PRE = 2.299849  # s, preamble
_T_ORB = 12 * 86400 / 175  # s, one orbit of the 12-day, 175-orbit cycle
_C = 299_792_458.0
_S1_CENTER_FREQUENCY_GHZ = 5.405

_SLC = re.compile(
    r"^S1(?P<mission>[A-D])_(?P<mode>[A-Z0-9]{2})_SLC__1S(?P<pols>[SD])(?P<pol>[HV])_"
    r"(?P<start>\d{8}T\d{6})_(?P<stop>\d{8}T\d{6})_(?P<orbit>\d{6})_\w{6}_\w{4}$"
)
_BURST = re.compile(
    r"^S1_(?P<burst>\d{6})_(?P<swath>[A-Z]{2}\d)_(?P<start>\d{8}T\d{6})_(?P<pol>[HV]{2})_"
    r"\w{4}-BURST$"
)


def relative_orbit(mission: str, absolute_orbit: int) -> int:
    """Relative orbit (1-175) of Sentinel-1 ``mission`` (``"A"``, ``"B"``, ``"C"``)."""
    return (int(absolute_orbit) - ORBIT_OFFSETS[mission]) % 175 + 1


def _burst_relative_orbit(burst_id: int) -> int:
    return math.floor(((burst_id - 1) * _T_BEAM + _T_PRE) / _T_ORB) + 1


@dataclass(frozen=True)
class Granule:
    """One Sentinel-1 granule (SLC) or burst named in a HyP3 ``.txt``."""

    name: str
    start: _dt.datetime  # UTC
    mode: str  # IW, EW
    polarization: str  # VV, HH...
    mission: str | None = None  # A, B, C (SLC names only)
    absolute_orbit: int | None = None  # SLC names only
    burst_id: int | None = None  # burst names only
    swath: str | None = None  # IW1..IW3 (burst names only)


def parse_granule(name: str) -> Granule:
    """Parse an SLC or burst granule name (see the module docstring).

    Raises
    ------
    DataError
        Not a Sentinel-1 SLC or burst granule name.
    """
    name = name.strip()
    match = _SLC.match(name)
    if match:
        g = match.groupdict()
        return Granule(
            name=name,
            start=_time(g["start"]),
            mode=g["mode"],
            polarization=g["pol"] * 2,
            mission=g["mission"],
            absolute_orbit=int(g["orbit"]),
        )
    match = _BURST.match(name)
    if match:
        g = match.groupdict()
        return Granule(
            name=name,
            start=_time(g["start"]),
            mode=g["swath"][:2],
            polarization=g["pol"],
            burst_id=int(g["burst"]),
            swath=g["swath"],
        )
    raise DataError(
        f"{name!r} is not a Sentinel-1 SLC or burst granule name "
        "(e.g. S1A_IW_SLC__1SDV_20200604T022251_... or S1_136232_IW2_20200604T022315_VV_7C85-BURST)"
    )


def _time(text: str) -> _dt.datetime:
    return _dt.datetime.strptime(text, "%Y%m%dT%H%M%S").replace(tzinfo=_dt.UTC)


@dataclass
class Hyp3Metadata:
    """What a HyP3 ``<name>.txt`` says about a pair."""

    reference_granules: list[Granule]
    secondary_granules: list[Granule]
    reference_datetime: _dt.datetime  # UTC, earliest reference granule start
    secondary_datetime: _dt.datetime  # UTC, earliest secondary granule start
    orbit_state: str | None  # "ascending" | "descending"
    relative_orbit: int | None
    platform: str | None  # "sentinel-1a"...
    polarization: str
    instrument_mode: str
    product_type: str  # INSAR_GAMMA | INSAR_ISCE_BURST | INSAR_ISCE_MULTI_BURST
    baseline: float | None  # m, perpendicular
    heading: float | None  # deg clockwise from north
    range_looks: int | None
    azimuth_looks: int | None
    reference_point: dict[str, float] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)  # every ``Key: value`` line


_REFERENCE_POINT_KEYS = {
    "x": "X coordinate of the reference point in the map projection",
    "y": "Y coordinate of the reference point in the map projection",
    "latitude": "Latitude of the reference point (WGS84)",
    "longitude": "Longitude of the reference point (WGS84)",
    "line": "Azimuth line of the reference point in SAR space",
    "pixel": "Range pixel of the reference point in SAR space",
    "phase": "Phase at reference point",
}


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _int(value: str | None) -> int | None:
    number = _float(value)
    return int(number) if number is not None else None


def parse_metadata(text: str, where: str) -> Hyp3Metadata:
    """Parse a HyP3 product's ``<name>.txt``.

    Parameters
    ----------
    text : str
        The file's content (``Key: value`` lines).
    where : str
        The file, for error messages.

    Raises
    ------
    DataError
        No ``Reference Granule:`` / ``Secondary Granule:`` lines, or unparsable granule names.
    """
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            fields[key.strip()] = value.strip()
    ref_text, sec_text = fields.get("Reference Granule"), fields.get("Secondary Granule")
    if not ref_text or not sec_text:
        raise DataError(
            f"HyP3 metadata {where} has no 'Reference Granule:'/'Secondary Granule:' lines, so "
            "the pair's dates are unknown; use the .txt that came in the product zip"
        )
    try:
        refs = [parse_granule(g) for g in ref_text.split(",") if g.strip()]
        secs = [parse_granule(g) for g in sec_text.split(",") if g.strip()]
    except DataError as err:
        raise DataError(f"HyP3 metadata {where}: {err}") from err
    first = refs[0]
    heading = _float(fields.get("Heading"))
    direction = (fields.get("Reference Pass Direction") or "").strip().lower()
    if direction not in ("ascending", "descending"):
        direction = "" if heading is None else ("ascending" if abs(heading) < 90 else "descending")
    ref_orbit = _int(fields.get("Reference Orbit Number"))
    reference_datetime = min(g.start for g in refs)
    rel_orbit, mission = _orbit(first, ref_orbit, reference_datetime.date(), where)
    if first.burst_id is None:
        product_type = "INSAR_GAMMA"
    elif len(refs) > 1:
        product_type = "INSAR_ISCE_MULTI_BURST"
    else:
        product_type = "INSAR_ISCE_BURST"
    point = {
        key: value
        for key, name in _REFERENCE_POINT_KEYS.items()
        if (value := _float(fields.get(name))) is not None
    }
    return Hyp3Metadata(
        reference_granules=refs,
        secondary_granules=secs,
        reference_datetime=reference_datetime,
        secondary_datetime=min(g.start for g in secs),
        orbit_state=direction or None,
        relative_orbit=rel_orbit,
        platform=f"sentinel-1{mission.lower()}" if mission else None,
        polarization=first.polarization,
        instrument_mode=first.mode,
        product_type=product_type,
        baseline=_float(fields.get("Baseline")),
        heading=heading,
        range_looks=_int(fields.get("Range looks")),
        azimuth_looks=_int(fields.get("Azimuth looks")),
        reference_point=point,
        fields=fields,
    )


def _orbit(
    granule: Granule, absolute: int | None, day: _dt.date, where: str
) -> tuple[int | None, str | None]:
    """Relative orbit and mission letter of the reference acquisition."""
    if granule.mission is not None and granule.absolute_orbit is not None:
        if granule.mission not in ORBIT_OFFSETS:
            return None, granule.mission
        return relative_orbit(granule.mission, granule.absolute_orbit), granule.mission
    if granule.burst_id is None:
        return None, None
    estimate = _burst_relative_orbit(granule.burst_id)
    if absolute is None:
        return estimate, None
    for mission, (first, last) in _OPERATING.items():
        if day < first or (last is not None and day > last):
            continue
        rel = relative_orbit(mission, absolute)
        if min((rel - estimate) % 175, (estimate - rel) % 175) <= 1:
            return rel, mission
    log.warning(
        "%s: no Sentinel-1 satellite flies relative orbit %d (from burst %d) with absolute "
        "orbit %d; the burst's relative orbit is kept and the satellite left unknown",
        where,
        estimate,
        granule.burst_id,
        absolute,
    )
    return estimate, None


# --------------------------------------------------------------------------- products


@dataclass
class _Product:
    name: str
    where: str  # the zip or folder, for messages
    layers: dict[str, str]  # layer -> href (GDAL path or local path)
    metadata_href: str
    text: str


def _zip_products(entry: Entry) -> list[_Product]:
    from fsspec.implementations.zip import ZipFileSystem

    try:
        with entry.fs.open(entry.path, "rb") as f:
            zfs = ZipFileSystem(fo=f)
            try:
                members = sorted(m for m in zfs.zip.namelist() if not m.endswith("/"))
                texts = {
                    m: zfs.cat_file(m).decode("utf-8", errors="replace")
                    for m in members
                    if m.endswith(".txt") and not m.endswith("README.md.txt")
                }
            finally:
                zfs.zip.close()
    except FileNotFoundError as err:
        raise DataError(f"HyP3 product {entry.url} not found") from err
    except Exception as err:  # zipfile.BadZipFile, network errors
        raise DataError(
            f"cannot read HyP3 product zip {entry.url}: {err}; check that it is a complete zip "
            "(download it again) and, over HTTP, that the server answers range requests"
        ) from err
    inner = gdal_path(entry.url)  # /abs/P.zip, /vsicurl/https://..., /vsis3/bucket/...
    prefix = "/vsizip" + inner if inner.startswith("/vsi") else "/vsizip/" + inner
    phases = [m for m in members if m.endswith("_unw_phase.tif")]
    if not phases:
        shown = ", ".join(members[:6]) + (" ..." if len(members) > 6 else "")
        raise DataError(
            f"HyP3 product {entry.url} holds no *_unw_phase.tif (members: {shown or 'none'}); "
            "order the product with unwrapped phase and download the complete zip"
        )
    products = []
    for phase in phases:
        folder, _, base = phase.rpartition("/")
        name = base.removesuffix("_unw_phase.tif")
        stem = f"{folder}/{name}" if folder else name
        layers = {
            layer: f"{prefix}/{stem}_{layer}.tif"
            for layer in LAYERS
            if f"{stem}_{layer}.tif" in members
        }
        txt = f"{stem}.txt"
        if txt not in texts:
            raise DataError(
                f"HyP3 product {entry.url} has no metadata file {txt}; the pair's dates come "
                "from it: download the complete product zip"
            )
        products.append(
            _Product(name, f"{entry.url} ({txt})", layers, f"{prefix}/{txt}", texts[txt])
        )
    return products


def _folder_product(entry: Entry, files: list[Entry]) -> list[_Product]:
    names = {f.name: f for f in files if not f.is_dir}
    phases = sorted(n for n in names if n.endswith("_unw_phase.tif"))
    if not phases:
        raise DataError(
            f"HyP3 product folder {entry.url} holds no *_unw_phase.tif "
            f"(files: {', '.join(sorted(names)[:6])}); unzip the complete product there"
        )
    products = []
    for phase in phases:
        name = phase.removesuffix("_unw_phase.tif")
        layers = {
            layer: names[f"{name}_{layer}.tif"].url
            for layer in LAYERS
            if f"{name}_{layer}.tif" in names
        }
        txt = names.get(f"{name}.txt")
        if txt is None:
            raise DataError(
                f"HyP3 product folder {entry.url} has no metadata file {name}.txt; the pair's "
                "dates come from it: unzip the complete product"
            )
        products.append(_Product(name, txt.url, layers, txt.url, read_text(txt)))
    return products


def _is_product_file(name: str) -> bool:
    return name.endswith("_unw_phase.tif") or (
        name.endswith(".txt") and not name.endswith("README.md.txt")
    )


def _products(entry: Entry, depth: int = 0) -> list[_Product]:
    if not entry.is_dir:
        if entry.name.lower().endswith(".zip"):
            return _zip_products(entry)
        if entry.name.endswith(".tif") or entry.name.endswith(".txt"):
            return _products(parent_of(entry), depth)
        raise DataError(
            f"{entry.url} is neither a HyP3 product zip nor a product folder; pass the .zip "
            "files, their folder, or unzipped product folders"
        )
    files = list_dir(entry)
    if any(_is_product_file(f.name) for f in files if not f.is_dir):
        return _folder_product(entry, files)
    if depth >= 2:
        return []
    out: list[_Product] = []
    for f in files:
        if f.is_dir or f.name.lower().endswith(".zip"):
            out.extend(_products(f, depth + 1))
    return out


# --------------------------------------------------------------------------- items


def _item(product: _Product, frame: str | None) -> pystac.Item:
    meta = parse_metadata(product.text, product.where)
    if "unw_phase" not in product.layers:
        raise DataError(f"HyP3 product {product.where} has no unw_phase layer")
    proj = raster_projection(product.layers["unw_phase"])
    if meta.secondary_datetime <= meta.reference_datetime:
        raise DataError(
            f"HyP3 metadata {product.where}: secondary {meta.secondary_datetime:%Y-%m-%d} is not "
            f"after reference {meta.reference_datetime:%Y-%m-%d}; the granule lines are swapped"
        )
    state = meta.orbit_state
    auto_frame = (
        f"{'A' if state == 'ascending' else 'D'}{meta.relative_orbit:03d}"
        if state and meta.relative_orbit is not None
        else None
    )
    props: dict[str, Any] = {
        "start_datetime": iso(meta.reference_datetime),
        "end_datetime": iso(meta.secondary_datetime),
        "constellation": "sentinel-1",
        "instruments": ["c-sar"],
        "ncp:format": "hyp3",
        "ncp:frame": frame or auto_frame or "hyp3",
        "hyp3:reference_granules": [g.name for g in meta.reference_granules],
        "hyp3:secondary_granules": [g.name for g in meta.secondary_granules],
        "hyp3:temporal_baseline": (
            meta.secondary_datetime - meta.reference_datetime
        ).total_seconds()
        / 86400.0,
    }
    if meta.platform:
        props["platform"] = meta.platform
    optional = {
        "hyp3:baseline": meta.baseline,
        "hyp3:heading": meta.heading,
        "hyp3:range_looks": meta.range_looks,
        "hyp3:azimuth_looks": meta.azimuth_looks,
        "hyp3:reference_point": meta.reference_point or None,
        "hyp3:reference_orbit": _int(meta.fields.get("Reference Orbit Number")),
        "hyp3:secondary_orbit": _int(meta.fields.get("Secondary Orbit Number")),
        "hyp3:utc_time": _float(meta.fields.get("UTC time")),
        "hyp3:dem_source": meta.fields.get("DEM source"),
        "hyp3:unwrapping_type": meta.fields.get("Unwrapping type"),
        "hyp3:burst_ids": [g.burst_id for g in meta.reference_granules if g.burst_id] or None,
    }
    props.update({k: v for k, v in optional.items() if v is not None})
    item = pystac.Item(
        id=product.name,
        geometry=proj["geometry"],
        bbox=proj["bbox"],
        datetime=meta.reference_datetime,
        properties=props,
    )
    sat = SatExtension.ext(item, add_if_missing=True)
    if state:
        sat.orbit_state = OrbitState(state)
    if meta.relative_orbit is not None:
        sat.relative_orbit = meta.relative_orbit
    sar = SarExtension.ext(item, add_if_missing=True)
    sar.apply(
        instrument_mode=meta.instrument_mode,
        frequency_band=FrequencyBand.C,
        polarizations=[Polarization(meta.polarization)],
        product_type=meta.product_type,
        center_frequency=_S1_CENTER_FREQUENCY_GHZ,
        observation_direction=ObservationDirection.RIGHT,
    )
    ext = ProjectionExtension.ext(item, add_if_missing=True)
    ext.code = proj["proj:code"]
    ext.shape = proj["proj:shape"]
    ext.transform = proj["proj:transform"]
    ext.bbox = proj["proj:bbox"]
    for layer, href in product.layers.items():
        roles, title = LAYERS[layer]
        item.add_asset(
            layer,
            pystac.Asset(href=href, media_type=pystac.MediaType.GEOTIFF, roles=roles, title=title),
        )
    item.add_asset(
        "metadata",
        pystac.Asset(
            href=product.metadata_href,
            media_type="text/plain",
            roles=["metadata"],
            title="HyP3 product metadata (.txt)",
        ),
    )
    return item


def _check_one_frame(items: list[pystac.Item], where: dict[str, str], frame: str | None) -> None:
    """One track (orbit direction + relative orbit) and, unless ``frame`` is set, one UTM zone."""

    def key(item: pystac.Item) -> tuple[Any, ...]:
        track = (item.properties.get("sat:orbit_state"), item.properties.get("sat:relative_orbit"))
        return track if frame else (*track, item.properties.get("proj:code"))

    first = items[0]
    for item in items[1:]:
        if key(item) != key(first):

            def describe(i: pystac.Item) -> str:
                p = i.properties
                return (
                    f"{where[i.id]} is {p.get('sat:orbit_state')} relative orbit "
                    f"{p.get('sat:relative_orbit')} in {p.get('proj:code')}"
                )

            same_track = key(item)[:2] == key(first)[:2]
            fix = (
                "pass --frame ID to catalog them as one frame (ingest reprojects them onto one grid)"
                if same_track
                else "catalog each track separately (one folder per frame)"
            )
            raise DataError(
                f"HyP3 products of different frames mixed: {describe(first)}, {describe(item)}; "
                f"{fix}"
            )


def items_from_source(
    sources: str | list[str],
    *,
    frame: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> list[pystac.Item]:
    """One STAC item per HyP3 pair found in ``sources`` (see the module docstring).

    Parameters
    ----------
    sources : str or list of str
        Product zips, unzipped product folders, or folders holding them (searched two levels
        deep); local paths, globs, ``s3://`` or ``https://`` URLs.
    frame : str, optional
        Frame id written as ``ncp:frame`` (default ``<A|D><relative orbit>``); also allows one
        track's products in different UTM zones.
    storage_options : dict, optional
        fsspec options of the source file system (e.g. an S3 endpoint).

    Returns
    -------
    list of pystac.Item
        In the project's interferogram item schema, sorted by reference date; a pair listed
        twice appears once (a warning is logged with the count).

    Raises
    ------
    DataError
        No product found, a zip without ``unw_phase``, a ``.txt`` without granules, products of
        different frames.
    """
    entries = expand_sources(sources, storage_options)
    products: list[_Product] = []
    for entry in entries:
        products.extend(_products(entry))
    if not products:
        raise DataError(
            f"no HyP3 product (*.zip or *_unw_phase.tif) found in {[e.url for e in entries]}"
        )
    items, where = [], {}
    for product in products:
        item = _item(product, frame)
        where.setdefault(item.id, product.where.split(" (")[0])
        items.append(item)
    items = unique_items(items, "HyP3")
    _check_one_frame(items, where, frame)
    log.info("HyP3: %d pair(s) of frame %s", len(items), items[0].properties["ncp:frame"])
    return items


# --------------------------------------------------------------------------- reading


def look_layers(theta: np.ndarray, phi: np.ndarray) -> dict[str, np.ndarray]:
    """GAMMA look-vector angles to the frame's geometry layers.

    Parameters
    ----------
    theta, phi : ndarray, shape (y, x)
        ``lv_theta`` (elevation from the horizontal) and ``lv_phi`` (counter-clockwise from
        east), radians, ground to satellite; NaN where unknown.

    Returns
    -------
    dict
        ``incidence`` (degrees from the vertical) and ``los_east``, ``los_north``, ``los_up``
        (unit vector ground to satellite), float32 ``(y, x)``.
    """
    from ncp_subsidence.kernels.geometry import (
        hyp3_to_incidence_heading,
        los_unit_vector_from_hyp3,
    )

    u = los_unit_vector_from_hyp3(theta, phi, nodata=None)
    incidence, _ = hyp3_to_incidence_heading(theta, phi, nodata=None)
    return {
        "incidence": incidence.astype(np.float32),
        "los_east": u[..., 0].astype(np.float32),
        "los_north": u[..., 1].astype(np.float32),
        "los_up": u[..., 2].astype(np.float32),
    }


class Hyp3Adapter:
    """Reading conventions of HyP3 interferograms (see the module docstring)."""

    name = "hyp3"
    phase_asset = "unw_phase"
    coherence_asset = "corr"

    def canonical_block(self, phase: Any, coherence: Any) -> tuple[Any, Any]:
        """Phase (radians) and coherence (0-1) blocks with HyP3's no data as NaN.

        Parameters
        ----------
        phase, coherence : ndarray, shape (..., y, x), float32
            As read (the tagged nodata 0 already NaN); ``coherence`` may be None.

        Returns
        -------
        phase, coherence : ndarray, float32, same shape
            Pixels where both are exactly 0 (untagged fill) set to NaN in both; the inputs
            themselves (never modified) when there is no such pixel. Three passes over a block
            without fill instead of seven (1.6 -> 0.5 s a 673-pair window of 256 x 256).
        """
        phase = phase.astype(np.float32, copy=False)
        if coherence is None:
            return phase, None
        coherence = coherence.astype(np.float32, copy=False)
        fill = phase == 0
        fill &= coherence == 0
        if not fill.any():
            return phase, coherence
        nan = np.float32(np.nan)
        return np.where(fill, nan, phase), np.where(fill, nan, coherence)

    def geometry(self, items: list[Any], grid: Any) -> dict[str, Any] | None:
        """Incidence and LOS unit vector on ``grid`` from every pair's ``lv_theta``/``lv_phi``.

        Each pair covers its own extent; pairs are resampled onto ``grid`` (bilinear) in turn and
        the first valid value per pixel is kept, so memory is two ``(y, x)`` float32 arrays plus
        one pair's window.

        Returns
        -------
        dict or None
            ``incidence`` (degrees from the vertical), ``los_east``, ``los_north``, ``los_up``
            (ground-to-satellite unit vector), float32 ``(y, x)``, NaN where no pair covers;
            None when no item has ``lv_theta`` and ``lv_phi``.
        """
        theta = np.full(grid.shape, np.nan, dtype=np.float32)
        phi = np.full(grid.shape, np.nan, dtype=np.float32)
        used = 0
        for item in items:
            if "lv_theta" not in item.assets or "lv_phi" not in item.assets:
                continue
            used += 1
            read_theta = read_onto_grid(
                _gdal(item.assets["lv_theta"]), grid, src_nodata=0.0, what="geometry raster"
            )
            read_phi = read_onto_grid(
                _gdal(item.assets["lv_phi"]), grid, src_nodata=0.0, what="geometry raster"
            )
            if read_theta is None or read_phi is None:
                continue
            (t, (rows, cols)), (p, (prow, pcol)) = read_theta, read_phi
            if (rows, cols) != (prow, pcol):
                raise DataError(
                    f"HyP3 item {item.id}: lv_theta and lv_phi cover different extents; "
                    "the product is damaged, download it again"
                )
            fill = np.isnan(theta[rows, cols]) & np.isfinite(t) & np.isfinite(p) & (t != 0)
            theta[rows, cols] = np.where(fill, t, theta[rows, cols])
            phi[rows, cols] = np.where(fill, p, phi[rows, cols])
            if not np.isnan(theta).any():
                break
        if not used:
            return None
        return look_layers(theta, phi)

    def attrs(self) -> dict[str, str]:
        """Provider, units and sign conventions recorded on the ingested frame."""
        return {
            "provider": "ASF HyP3",
            "ifg_format": "hyp3",
            "unw_phase_units": "radians",
            "coherence_units": "1",
            "phase_sign_convention": "phase increase = range increase (motion away from the "
            "satellite); d_los = -wavelength / (4 pi) * phase",
            "los_convention": "unit vector ground to satellite (east, north, up), from lv_theta / "
            "lv_phi (radians)",
            "nodata": "0 (tagged) and phase = coherence = 0 -> NaN",
        }


def _gdal(asset: pystac.Asset) -> str:
    href = asset.get_absolute_href() or asset.href
    return gdal_path(href)


ADAPTER = Hyp3Adapter()
