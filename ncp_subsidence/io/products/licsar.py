"""COMET LiCSAR interferograms (and LiCSBAS ``GEOC`` folders).

Layouts
-------
LiCSAR frame tree (the COMET portal's, and any copy of it on disk, S3 or HTTP)::

    <frame>/interferograms/<d1>_<d2>/<d1>_<d2>.geo.unw.tif    unwrapped phase, float32, radians
    <frame>/interferograms/<d1>_<d2>/<d1>_<d2>.geo.cc.tif     coherence, uint8, 0-255 = 0-1
    <frame>/metadata/<frame>.geo.{E,N,U}.tif                  LOS unit vector ground->satellite
    <frame>/metadata/<frame>.geo.hgt.tif                      heights (m)
    <frame>/metadata/baselines                                <master> <epoch> <bperp m> <btemp d>
    <frame>/metadata/metadata.txt                             key=value lines

LiCSBAS ``GEOC`` folder: ``GEOC/<d1>_<d2>/<d1>_<d2>.geo.{unw,cc}.tif``,
``GEOC/<frame>.geo.{E,N,U}.tif`` (or any ``*.geo.E.tif``), ``GEOC/baselines``. A source may be a
frame folder, its ``interferograms`` folder, a ``GEOC`` folder or its parent, or a folder of frame
folders; local paths, globs, ``s3://`` and ``https://`` (fsspec lists HTML index pages).

Frame ids look like ``106D_05248_131313``: relative orbit 106, ``D`` descending (``A``
ascending). EPSG:4326, dates ``YYYYMMDD``; the acquisition time of day is ``center_time`` of
``metadata.txt`` (00:00 UTC when absent). Every ``metadata.txt`` key is kept as
``licsar:<key>`` (numbers as floats; ``master`` and dates as text); ``licsar:baseline`` is the
pair's perpendicular baseline ``bperp(d2) - bperp(d1)`` (m) from ``baselines``;
``licsar:temporal_baseline`` days. LiCSAR does not say which Sentinel-1 unit acquired each
epoch: ``platform`` is ``sentinel-1``.

Reading conventions (:data:`ADAPTER`)
-------------------------------------
The files carry no nodata tag: 0 means no data in ``unw`` and ``cc`` and becomes NaN; ``cc`` is
divided by 255 to 0-1. Sign: phase increase = range increase (motion away from the satellite),
``d_los = -lambda / (4 pi) * phase`` (LiCSBAS's conversion). Geometry: ``E``, ``N``, ``U`` of the
frame resampled onto the grid (bilinear; 0 -> NaN); incidence ``= degrees(arccos(U))``.

References
----------
Lazecký, M. et al. (2020). LiCSAR: an automatic InSAR tool for measuring and monitoring tectonic
and volcanic activity. Remote Sens. 12(15), 2430. doi:10.3390/rs12152430.
Morishita, Y. et al. (2020). LiCSBAS: an open-source InSAR time series analysis package
integrated with the LiCSAR automated Sentinel-1 InSAR processor. Remote Sens. 12(3), 424.
"""

from __future__ import annotations

import datetime as _dt
import logging
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
    "LicsarAdapter",
    "items_from_source",
    "parse_baselines",
    "parse_frame_id",
    "parse_metadata",
]

log = logging.getLogger(__name__)

FRAME_ID = re.compile(r"^(?P<track>\d{3})(?P<direction>[AD])_\d{5}_\d{6}$")
_PAIR = re.compile(r"^(?P<d1>\d{8})_(?P<d2>\d{8})$")
_GEOMETRY = {"E": "los_e", "N": "los_n", "U": "los_u", "hgt": "hgt"}
_C = 299_792_458.0
_S1_CENTER_FREQUENCY_GHZ = 5.405


def parse_frame_id(frame: str) -> tuple[int, str] | None:
    """Relative orbit and ``"ascending"``/``"descending"`` of a LiCSAR frame id, else None."""
    match = FRAME_ID.match(frame)
    if not match:
        return None
    direction = "ascending" if match["direction"] == "A" else "descending"
    return int(match["track"]), direction


def parse_metadata(text: str) -> dict[str, Any]:
    """``key=value`` lines of a LiCSAR ``metadata.txt``.

    Returns
    -------
    dict
        Keys lower-cased (non-alphanumerics as ``_``); values that are numbers as float, except
        8-digit dates (``master=20180101``) and clock times (``center_time=10:21:38.12``), which
        stay text. Lines without ``=`` are ignored; missing keys are simply absent.
    """
    out: dict[str, Any] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            continue
        key = re.sub(r"[^0-9a-z]+", "_", key.lower()).strip("_")
        if re.fullmatch(r"\d{8}", value):
            out[key] = value
            continue
        try:
            out[key] = float(value)
        except ValueError:
            out[key] = value
    return out


def parse_baselines(text: str) -> dict[str, float]:
    """Perpendicular baseline (m) of each epoch (``YYYYMMDD``) from a LiCSAR ``baselines`` file.

    Lines are ``<master YYYYMMDD> <epoch YYYYMMDD> <bperp m> <btemp days>``; others are skipped.
    """
    out: dict[str, float] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3 or not re.fullmatch(r"\d{8}", parts[1]):
            continue
        try:
            out[parts[1]] = float(parts[2])
        except ValueError:
            continue
    return out


def _clock(value: Any) -> _dt.time:
    match = re.fullmatch(r"(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d+))?", str(value or "").strip())
    if not match:
        return _dt.time(0, 0, 0)
    micro = int((match[4] or "0")[:6].ljust(6, "0"))
    return _dt.time(int(match[1]), int(match[2]), int(match[3]), micro)


# --------------------------------------------------------------------------- layouts


@dataclass
class _Layout:
    """One frame's folders as found: where the pairs are and the frame files."""

    frame: str | None
    where: str  # the frame (or GEOC) folder, for messages
    pairs: Entry
    files: dict[str, Entry] = field(default_factory=dict)  # los_e.. hgt, baselines, metadata


def _frame_files(entries: list[Entry], frame: str | None, where: str) -> tuple[str | None, dict]:
    """Geometry, ``baselines`` and ``metadata.txt`` among ``entries``; the frame id of E/N/U."""
    files: dict[str, Entry] = {}
    stems: dict[str, dict[str, Entry]] = {}
    for e in entries:
        if e.is_dir:
            continue
        if e.name == "baselines":
            files["baselines"] = e
        elif e.name == "metadata.txt":
            files["metadata"] = e
        else:
            match = re.fullmatch(r"(?P<stem>.+)\.geo\.(?P<kind>E|N|U|hgt)\.tif", e.name)
            if match:
                stems.setdefault(match["stem"], {})[_GEOMETRY[match["kind"]]] = e
    if len(stems) > 1:
        if frame in stems:
            stems = {frame: stems[frame]}
        else:
            raise DataError(
                f"LiCSAR folder {where} mixes frames {sorted(stems)} (from their *.geo.E/N/U.tif); "
                "keep one frame per folder or pass --frame ID"
            )
    stem = next(iter(stems), None)
    if stem is not None:
        files.update(stems[stem])
    # only a LiCSAR frame id names the frame (LiCSBAS may keep other names: then --frame)
    return (stem if stem and FRAME_ID.match(stem) else None), files


def _layouts(entry: Entry, frame: str | None, depth: int = 0) -> list[_Layout]:
    if not entry.is_dir:
        raise DataError(
            f"LiCSAR source {entry.url} is a file; pass the frame folder (holding interferograms/ "
            "and metadata/) or a LiCSBAS GEOC folder"
        )
    entries = list_dir(entry)
    dirs = {e.name: e for e in entries if e.is_dir}
    if "interferograms" in dirs:  # LiCSAR frame tree
        meta = list_dir(dirs["metadata"]) if "metadata" in dirs else []
        stem, files = _frame_files(meta, frame, entry.url)
        own = entry.name if FRAME_ID.match(entry.name) else None
        return [_Layout(own or stem, entry.url, dirs["interferograms"], files)]
    if "GEOC" in dirs:
        return _layouts(dirs["GEOC"], frame, depth)
    if any(_PAIR.match(name) for name in dirs):  # GEOC, or a frame's interferograms/
        if entry.name == "interferograms":
            return _layouts(parent_of(entry), frame, depth)
        stem, files = _frame_files(entries, frame, entry.url)
        return [_Layout(stem, entry.url, entry, files)]
    frames = [e for name, e in dirs.items() if FRAME_ID.match(name)]
    if frames and depth == 0:
        return [layout for e in frames for layout in _layouts(e, frame, depth + 1)]
    raise DataError(
        f"{entry.url} is not a LiCSAR frame folder (no interferograms/, GEOC/ or "
        "<d1>_<d2>/ pair folders); pass the frame folder or a LiCSBAS GEOC folder"
    )


def _select_frame(layouts: list[_Layout], frame: str | None) -> list[_Layout]:
    known = sorted({lay.frame for lay in layouts if lay.frame})
    if frame is not None:
        chosen = [lay for lay in layouts if lay.frame in (frame, None)]
        if known and not any(lay.frame == frame for lay in layouts):
            raise DataError(
                f"frame {frame!r} is not among the LiCSAR frames found ({', '.join(known)}); "
                "check --frame"
            )
        for lay in chosen:
            lay.frame = frame
        return chosen
    if len(known) > 1:
        first = next(lay for lay in layouts if lay.frame == known[0])
        second = next(lay for lay in layouts if lay.frame == known[1])
        raise DataError(
            f"LiCSAR sources mix frames: {first.where} is {first.frame}, {second.where} is "
            f"{second.frame}; catalog one frame at a time or pass --frame ID"
        )
    unknown = [lay for lay in layouts if not lay.frame]
    if unknown:
        if known:
            for lay in unknown:
                lay.frame = known[0]
        else:
            raise DataError(
                f"cannot tell the LiCSAR frame id of {unknown[0].where} (no <frame>.geo.E.tif, "
                "folder not named like 106D_05248_131313); pass --frame ID"
            )
    return layouts


# --------------------------------------------------------------------------- items


@dataclass
class _Frame:
    """A frame's shared metadata, read once."""

    frame: str
    metadata: dict[str, Any]
    bperp: dict[str, float]
    files: dict[str, Entry]


def _frame_info(layout: _Layout) -> _Frame:
    metadata = (
        parse_metadata(read_text(layout.files["metadata"])) if "metadata" in layout.files else {}
    )
    bperp = (
        parse_baselines(read_text(layout.files["baselines"])) if "baselines" in layout.files else {}
    )
    if "los_u" not in layout.files:
        log.warning("LiCSAR frame %s: no E/N/U geometry files in %s", layout.frame, layout.where)
    return _Frame(str(layout.frame), metadata, bperp, layout.files)


def _pair_item(info: _Frame, pair: Entry) -> pystac.Item:
    match = _PAIR.match(pair.name)
    assert match is not None
    d1, d2 = match["d1"], match["d2"]
    names = {e.name: e for e in list_dir(pair) if not e.is_dir}
    unw, cc = names.get(f"{pair.name}.geo.unw.tif"), names.get(f"{pair.name}.geo.cc.tif")
    if unw is None:
        has = (
            f"only {cc.name}" if cc is not None else f"files: {', '.join(sorted(names)) or 'none'}"
        )
        raise DataError(
            f"LiCSAR pair folder {pair.url} has no {pair.name}.geo.unw.tif ({has}); "
            "download the pair's unwrapped phase or remove the folder"
        )
    if cc is None:
        raise DataError(
            f"LiCSAR pair folder {pair.url} has no {pair.name}.geo.cc.tif coherence; "
            "download it or remove the folder"
        )
    try:
        day1 = _dt.datetime.strptime(d1, "%Y%m%d").date()
        day2 = _dt.datetime.strptime(d2, "%Y%m%d").date()
    except ValueError as err:
        raise DataError(f"LiCSAR pair folder {pair.url}: {err}") from err
    if day2 <= day1:
        raise DataError(
            f"LiCSAR pair folder {pair.url}: second date {d2} is not after the first {d1}"
        )
    clock = _clock(info.metadata.get("center_time"))
    start = _dt.datetime.combine(day1, clock, tzinfo=_dt.UTC)
    end = _dt.datetime.combine(day2, clock, tzinfo=_dt.UTC)
    proj = raster_projection(gdal_path(unw.url))
    props: dict[str, Any] = {
        "start_datetime": iso(start),
        "end_datetime": iso(end),
        "platform": "sentinel-1",
        "constellation": "sentinel-1",
        "instruments": ["c-sar"],
        "ncp:format": "licsar",
        "ncp:frame": info.frame,
        "licsar:temporal_baseline": (day2 - day1).days,
    }
    if d1 in info.bperp and d2 in info.bperp:
        props["licsar:baseline"] = info.bperp[d2] - info.bperp[d1]
    for key, value in info.metadata.items():
        props[f"licsar:{key}"] = value
    item = pystac.Item(
        id=f"{info.frame}_{d1}_{d2}",
        geometry=proj["geometry"],
        bbox=proj["bbox"],
        datetime=start,
        properties=props,
    )
    parsed = parse_frame_id(info.frame)
    heading = info.metadata.get("heading")
    sat = SatExtension.ext(item, add_if_missing=True)
    if parsed:
        sat.relative_orbit = parsed[0]
        sat.orbit_state = OrbitState(parsed[1])
    elif isinstance(heading, float):
        sat.orbit_state = OrbitState.ASCENDING if abs(heading) < 90 else OrbitState.DESCENDING
    wavelength = info.metadata.get("wavelength")
    frequency = (
        _C / wavelength / 1e9
        if isinstance(wavelength, float) and wavelength > 0
        else _S1_CENTER_FREQUENCY_GHZ
    )
    SarExtension.ext(item, add_if_missing=True).apply(
        instrument_mode="IW",
        frequency_band=FrequencyBand.C,
        polarizations=[Polarization.VV],
        product_type="LiCSAR",
        center_frequency=round(frequency, 6),
        observation_direction=ObservationDirection.RIGHT,
    )
    ext = ProjectionExtension.ext(item, add_if_missing=True)
    ext.code = proj["proj:code"]
    ext.shape = proj["proj:shape"]
    ext.transform = proj["proj:transform"]
    ext.bbox = proj["proj:bbox"]
    tiff = pystac.MediaType.GEOTIFF
    item.add_asset(
        "unw_phase",
        pystac.Asset(
            unw.url, "unwrapped phase (radians, 0 = no data)", media_type=tiff, roles=["data"]
        ),
    )
    item.add_asset(
        "corr",
        pystac.Asset(
            cc.url,
            "coherence (uint8, 0-255 = 0-1, 0 = no data)",
            media_type=tiff,
            roles=["data", "coherence"],
        ),
    )
    titles = {
        "los_e": "LOS unit vector east (ground to satellite)",
        "los_n": "LOS unit vector north (ground to satellite)",
        "los_u": "LOS unit vector up (ground to satellite)",
        "hgt": "heights (m)",
    }
    for key, title in titles.items():
        if key in info.files:
            roles = ["metadata", "dem"] if key == "hgt" else ["metadata", "geometry"]
            item.add_asset(
                key, pystac.Asset(info.files[key].url, title, media_type=tiff, roles=roles)
            )
    for key, title in (("metadata", "frame metadata.txt"), ("baselines", "frame baselines")):
        if key in info.files:
            item.add_asset(
                key,
                pystac.Asset(
                    info.files[key].url, title, media_type="text/plain", roles=["metadata"]
                ),
            )
    return item


def items_from_source(
    sources: str | list[str],
    *,
    frame: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> list[pystac.Item]:
    """One STAC item per LiCSAR pair found in ``sources`` (see the module docstring).

    Parameters
    ----------
    sources : str or list of str
        Frame folders, ``interferograms``/``GEOC`` folders, or a folder of frame folders; local
        paths, globs, ``s3://`` or ``https://`` URLs (HTTP folders are read from their index
        pages).
    frame : str, optional
        The frame to catalog when sources hold several, or the frame id when the files do not
        name it (LiCSBAS GEOC with ``*.geo.E.tif`` of another name).
    storage_options : dict, optional
        fsspec options of the source file system.

    Returns
    -------
    list of pystac.Item
        In the project's interferogram item schema, id ``<frame>_<d1>_<d2>``, sorted by reference
        date; a pair listed twice appears once (a warning is logged with the count).

    Raises
    ------
    DataError
        Nothing found, a pair folder without ``unw`` (or ``cc``), two frame ids mixed, a frame
        id that cannot be told.
    """
    layouts = []
    for entry in expand_sources(sources, storage_options):
        layouts.extend(_layouts(entry, frame))
    layouts = _select_frame(layouts, frame)
    items: list[pystac.Item] = []
    for layout in layouts:
        info = _frame_info(layout)
        pairs = [e for e in list_dir(layout.pairs) if e.is_dir and _PAIR.match(e.name)]
        items.extend(_pair_item(info, pair) for pair in pairs)
    if not items:
        raise DataError(
            f"no LiCSAR pair folder (<d1>_<d2>/) found in {[lay.where for lay in layouts]}"
        )
    items = unique_items(items, "LiCSAR")
    log.info("LiCSAR: %d pair(s) of frame %s", len(items), items[0].properties["ncp:frame"])
    return items


# --------------------------------------------------------------------------- reading


class LicsarAdapter:
    """Reading conventions of LiCSAR interferograms (see the module docstring)."""

    name = "licsar"
    phase_asset = "unw_phase"
    coherence_asset = "corr"

    def canonical_block(self, phase: Any, coherence: Any) -> tuple[Any, Any]:
        """LiCSAR's raw blocks to radians and 0-1 coherence, NaN for no data.

        Parameters
        ----------
        phase : ndarray, shape (..., y, x), float32
            Unwrapped phase as read, radians; 0 is no data (the files carry no nodata tag).
        coherence : ndarray, shape (..., y, x), float32, or None
            The uint8 coherence as read, 0-255; 0 is no data.

        Returns
        -------
        phase : ndarray, float32, radians, NaN where the file had 0
        coherence : ndarray, float32, 0-1 (``cc / 255``), NaN where the file had 0
        """
        nan = np.float32(np.nan)
        phase_out = np.where(phase == 0, nan, phase).astype(np.float32, copy=False)
        if coherence is None:
            return phase_out, None
        scaled = coherence.astype(np.float32) / np.float32(255.0)
        return phase_out, np.where(coherence == 0, nan, scaled).astype(np.float32, copy=False)

    def geometry(self, items: list[Any], grid: Any) -> dict[str, Any] | None:
        """The frame's LOS unit vector and incidence on ``grid`` from the first item's E/N/U.

        Returns
        -------
        dict or None
            ``los_east``, ``los_north``, ``los_up`` (ground-to-satellite unit vector components)
            and ``incidence`` (degrees from the vertical, ``degrees(arccos(U))``), float32
            ``(y, x)``, NaN where the files hold 0 or do not cover; None when no item has
            ``los_e``/``los_n``/``los_u``.
        """
        from ncp_subsidence.kernels.geometry import check_incidence

        item = next(
            (i for i in items if all(k in i.assets for k in ("los_e", "los_n", "los_u"))), None
        )
        if item is None:
            return None
        out: dict[str, Any] = {}
        for key, name in (("los_e", "los_east"), ("los_n", "los_north"), ("los_u", "los_up")):
            asset = item.assets[key]
            array = np.full(grid.shape, np.nan, dtype=np.float32)
            read = read_onto_grid(
                gdal_path(asset.get_absolute_href() or asset.href),
                grid,
                src_nodata=0.0,
                what="geometry raster",
            )
            if read is not None:
                values, (rows, cols) = read
                array[rows, cols] = np.where(values == 0, np.float32(np.nan), values)
            out[name] = array
        up = out["los_up"].astype(np.float64)
        with np.errstate(invalid="ignore"):
            incidence = np.degrees(np.arccos(np.clip(up, -1.0, 1.0)))
        out["incidence"] = check_incidence(incidence).astype(np.float32)
        return out

    def attrs(self) -> dict[str, str]:
        """Provider, units and sign conventions recorded on the ingested frame."""
        return {
            "provider": "COMET LiCSAR",
            "ifg_format": "licsar",
            "unw_phase_units": "radians",
            "coherence_units": "1 (file uint8 / 255)",
            "phase_sign_convention": "phase increase = range increase (motion away from the "
            "satellite); d_los = -wavelength / (4 pi) * phase",
            "los_convention": "unit vector ground to satellite (east, north, up) from the frame's "
            "E/N/U files; incidence = arccos(U)",
            "nodata": "0 in unw and cc -> NaN (no nodata tag in the files)",
        }


ADAPTER = LicsarAdapter()
