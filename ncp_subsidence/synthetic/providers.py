"""The twin's interferograms in the providers' own layouts: COMET LiCSAR and ASF HyP3.

With ``write_twin(..., layouts="providers")`` the west frame is written as LiCSAR publishes a
frame and the east one as HyP3 INSAR_GAMMA zips; neither comes with a STAC catalog, so the
twin catalogues them the way a user would, with the provider adapters
(:func:`ncp_subsidence.io.products.licsar.items_from_source`,
:func:`ncp_subsidence.io.products.hyp3.items_from_source`) and
:func:`ncp_subsidence.io.products.catalog.write_catalog` (:func:`provider_catalog`), and the
pipeline discovers them from those catalogs.

LiCSAR (EPSG:4326, one folder per frame; Lazecky et al. 2020, Remote Sens. 12(15):2430)
-----------------------------------------------------------------------------------------
::

    OUT/licsar/<frame_id>/interferograms/<d1>_<d2>/<d1>_<d2>.geo.unw.tif   float32 rad,
                                                    0 = no data, no nodata tag
    OUT/licsar/<frame_id>/interferograms/<d1>_<d2>/<d1>_<d2>.geo.cc.tif    uint8 round(255 coh),
                                                    0 = no data, no nodata tag
    OUT/licsar/<frame_id>/metadata/<frame_id>.geo.{E,N,U}.tif   ground -> satellite unit vector
    OUT/licsar/<frame_id>/metadata/<frame_id>.geo.hgt.tif       height above the ellipsoid, m
    OUT/licsar/<frame_id>/metadata/baselines      "<master> <epoch> <bperp m> <btemp days>" lines
    OUT/licsar/<frame_id>/metadata/metadata.txt   key=value: master, center_time, heading,
                                                  avg_incidence_angle, wavelength...

``<d1>``, ``<d2>``: ``YYYYMMDD`` of the reference and secondary epoch; ``<frame_id>`` like
``040A_05280_131313`` (:func:`~ncp_subsidence.synthetic.sar.licsar_frame_id`). Phase is
``phase(secondary) - phase(reference)`` (LiCSBAS reads it with ``-lambda / (4 pi)``, positive
toward the satellite), as the plain COGs.

HyP3 INSAR_GAMMA (UTM zone 50N, one zip per pair; ASF HyP3 product guide)
------------------------------------------------------------------------
::

    OUT/hyp3/<name>.zip
        <name>/<name>_unw_phase.tif   float32 rad        \\
        <name>/<name>_corr.tif        float32 0-1         |
        <name>/<name>_lv_theta.tif    float32 rad         |  EPSG:32650, nodata 0 tagged,
        <name>/<name>_lv_phi.tif      float32 rad         |  the pair's own extent on the
        <name>/<name>_dem.tif         float32 m           |  frame's pixel lattice
        <name>/<name>_water_mask.tif  float32 1 = land    |
        <name>/<name>_conncomp.tif    float32 1 = unwrapped /
        <name>/<name>.txt             processing parameters (Reference/Secondary Granule,
                                      orbits, Baseline, UTC time, Heading, looks, reference point...)

``<name>`` = ``S1AA_<refYYYYMMDDThhmmss>_<secYYYYMMDDThhmmss>_VVP<ddd>_INT80_G_ueF_<HHHH>``
(:func:`~ncp_subsidence.synthetic.sar.product_name`). Every pair shares one pixel lattice
(origins multiples of the pixel size); extents vary as real frames do: SLC framing shifts along
track between acquisitions (the swath's range extent does not), so one acquisition in five
(seeded) falls 1-2 pixels short of the frame at its top or bottom, and a pair covers what both
its acquisitions cover. The first two acquisitions are complete, so the union of the pairs'
extents is the frame's full grid, the grid the truth of the frame is written on. Edge rows
whose pixels miss whole dates get an SBAS network of several components there (the stage keeps
them, as it keeps interior pixels whose every pair with one date decorrelated). Members are stored uncompressed
(``ZIP_STORED``: the GeoTIFFs are DEFLATE-compressed already, and GDAL reads windows of stored
members without inflating the stream) with a fixed timestamp, so a seed gives the same bytes.
The look vector is geographic (east/north/up at each pixel), as in the EPSG:4326 frames.
"""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pyproj

from ncp_subsidence.synthetic import products as prod
from ncp_subsidence.synthetic import sar
from ncp_subsidence.synthetic.truth import WAVELENGTH_M, _seed

__all__ = [
    "HYP3_MEMBERS",
    "Hyp3FrameWriter",
    "LicsarFrameWriter",
    "collection_id",
    "provider_catalog",
]

#: Rasters in every HyP3 zip, in member order.
HYP3_MEMBERS = ("unw_phase", "corr", "lv_theta", "lv_phi", "dem", "water_mask", "conncomp")

#: Timestamp of every zip member (HyP3's processing time of the twin).
_ZIP_TIME = (2024, 1, 18, 22, 50, 30)

#: Sentinel-1A orbits per 12-day repeat cycle.
_ORBITS_PER_CYCLE = 175


def _ymd(t: np.datetime64) -> str:
    return np.datetime64(t, "D").astype(object).strftime("%Y%m%d")


def _perpendicular_baselines(seed: int, frame: str, n: int) -> np.ndarray:
    """Per-epoch perpendicular baseline, m: a seeded N(0, 45 m), Sentinel-1's orbital tube."""
    return np.round(_seed(seed, f"bperp-{frame}").normal(0.0, 45.0, n), 4)


class LicsarFrameWriter:
    """Writes one frame in LiCSAR's folder layout (see the module docstring).

    Parameters
    ----------
    root : Path
        Twin root.
    frame : FrameSpec
    geom : dict
        :func:`~ncp_subsidence.synthetic.sar.frame_geometry` of the frame (EPSG:4326).
    dem : ndarray, shape (ny, nx)
        Height above the ellipsoid, m.
    dates : ndarray of datetime64[s]
        The frame's acquisitions.
    seed : int
    """

    format = "licsar"

    def __init__(self, root: Path, frame: Any, geom: dict, dem: np.ndarray, dates, seed: int):
        self.frame_id = sar.licsar_frame_id(frame)
        self.rel = f"licsar/{self.frame_id}"
        self.dir = root / self.rel
        self.transform = geom["transform"]
        meta = self.dir / "metadata"
        for key, comp in (("E", "los_east"), ("N", "los_north"), ("U", "los_up")):
            prod.write_cog(
                meta / f"{self.frame_id}.geo.{key}.tif",
                geom[comp],
                self.transform,
                {"long_name": f"{key} component of the ground-to-satellite unit vector"},
                nodata=None,
            )
        prod.write_cog(
            meta / f"{self.frame_id}.geo.hgt.tif",
            dem,
            self.transform,
            {"units": "m"},
            nodata=None,
        )
        master = len(dates) // 2
        bperp = _perpendicular_baselines(seed, self.frame_id, len(dates))
        days = ((dates - dates[master]) / np.timedelta64(1, "D")).round().astype(int)
        (meta / "baselines").write_text(
            "".join(
                f"{_ymd(dates[master])} {_ymd(d)} {bp - bperp[master]:.4f} {dd}\n"
                for d, bp, dd in zip(dates, bperp, days, strict=True)
            )
        )
        centre = np.datetime64(dates[master], "s").astype(object)
        (meta / "metadata.txt").write_text(
            "\n".join(
                [
                    f"master={_ymd(dates[master])}",
                    f"center_time={centre:%H:%M:%S}.000000",
                    f"heading={frame.heading_deg:.6f}",
                    "azimuth_resolution=13.963",
                    "range_resolution=2.329562",
                    "centre_range_m=880244.5012",
                    f"avg_incidence_angle={float(np.mean(geom['incidence'])):.4f}",
                    f"avg_height={float(np.mean(dem)):.2f}",
                    f"wavelength={WAVELENGTH_M}",
                ]
            )
            + "\n"
        )
        self.dates = dates

    def pair(self, j: int, a: int, b: int, phase: np.ndarray, coh: np.ndarray) -> int:
        """Write pair ``j`` (dates ``a``, ``b``): phase rad (NaN = no data), coherence 0-1.

        Returns the bytes written.
        """
        tag = f"{_ymd(self.dates[a])}_{_ymd(self.dates[b])}"
        pdir = self.dir / "interferograms" / tag
        unw = np.where(np.isfinite(phase), phase, 0.0).astype(np.float32)
        cc = np.where(np.isfinite(coh), np.clip(np.round(coh * 255.0), 0, 255), 0)
        prod.write_cog(pdir / f"{tag}.geo.unw.tif", unw, self.transform, nodata=None)
        prod.write_cog(pdir / f"{tag}.geo.cc.tif", cc, self.transform, nodata=None, dtype="uint8")
        return sum((pdir / f"{tag}.geo.{k}.tif").stat().st_size for k in ("unw", "cc"))

    def source(self) -> dict[str, str]:
        """The manifest's record of this frame: provider and folder (relative to the root)."""
        return {"format": self.format, "path": self.rel, "frame_id": self.frame_id}


class Hyp3FrameWriter:
    """Writes one frame as HyP3 INSAR_GAMMA zips on UTM (see the module docstring).

    Parameters
    ----------
    root : Path
        Twin root.
    frame : FrameSpec
    geom : dict
        :func:`~ncp_subsidence.synthetic.sar.utm_frame_geometry` of the frame.
    dem : ndarray, shape (ny, nx)
        Height, m.
    sea : ndarray of bool, shape (ny, nx)
    dates : ndarray of datetime64[s]
    seed : int
    """

    format = "hyp3"

    def __init__(
        self,
        root: Path,
        frame: Any,
        geom: dict,
        dem: np.ndarray,
        sea: np.ndarray,
        dates,
        seed: int,
    ):
        self.root = root
        self.frame = frame
        self.dir = root / "hyp3"
        self.tmp = root / ".hyp3-tmp"
        self.geom = geom
        self.dem = np.where(sea, 0.0, dem)
        self.water = np.where(sea, 0.0, 1.0)
        self.dates = dates
        # per acquisition: one in five falls 1-2 pixels short of the frame at its top or bottom
        # (SLC framing shifts along track; the swath's range extent does not); the first two
        # never, so pair (0, 1) spans the whole frame grid
        rng = _seed(seed, f"hyp3-extent-{frame.name}")
        n = len(dates)
        short = rng.random(n) < 0.2
        short[:2] = False
        side, depth = rng.integers(0, 2, n), rng.integers(1, 3, n)
        self.date_crops = np.zeros((n, 4), dtype=np.int64)
        self.date_crops[short, side[short]] = depth[short]
        self.bperp = _perpendicular_baselines(seed, frame.name, len(dates))
        first = np.datetime64(frame.first_date, "D")
        slots = ((dates.astype("datetime64[D]") - first) / np.timedelta64(12, "D")).astype(int)
        # S1A absolute orbit with relative orbit (abs - 73) % 175 + 1 = frame.relative_orbit
        first_orbit = 73 + (frame.relative_orbit - 1) + _ORBITS_PER_CYCLE * 19
        self.orbits = first_orbit + _ORBITS_PER_CYCLE * slots

    def pair(self, j: int, a: int, b: int, phase: np.ndarray, coh: np.ndarray) -> int:
        """Write pair ``j`` (dates ``a``, ``b``) as one zip; returns its size in bytes."""
        name = sar.product_name(self.frame, self.dates[a], self.dates[b])
        # a pair covers what both of its acquisitions cover
        crop = np.maximum(self.date_crops[a], self.date_crops[b])
        top, bottom, left, right = (int(c) for c in crop)
        ny, nx = phase.shape
        win = (slice(top, ny - bottom), slice(left, nx - right))
        x0, px, _, y1, _, _ = self.geom["transform"]
        transform = (x0 + left * px, px, 0.0, y1 - top * px, 0.0, -px)
        ok = np.isfinite(phase)
        layers = {
            "unw_phase": (np.where(ok, phase, 0.0), "radians"),
            "corr": (np.where(np.isfinite(coh), np.clip(coh, 1e-3, 1.0), 0.0), "1"),
            "lv_theta": (self.geom["lv_theta"], "radians"),
            "lv_phi": (self.geom["lv_phi"], "radians"),
            "dem": (self.dem, "m"),
            "water_mask": (self.water, "1"),
            "conncomp": (ok.astype(np.float64), "1"),
        }
        self.tmp.mkdir(parents=True, exist_ok=True)
        members: list[tuple[str, Path]] = []
        for key in HYP3_MEMBERS:
            values, units = layers[key]
            path = self.tmp / f"{name}_{key}.tif"
            prod.write_cog(
                path,
                values[win],
                transform,
                {"units": units},
                crs=self.geom["crs"],
                nodata=0.0,
            )
            members.append((f"{name}/{name}_{key}.tif", path))
        text = self._parameters(name, a, b, phase[win], transform)
        self.dir.mkdir(parents=True, exist_ok=True)
        out = self.dir / f"{name}.zip"
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
            for arcname, path in members:
                zf.writestr(zipfile.ZipInfo(arcname, _ZIP_TIME), path.read_bytes())
            zf.writestr(zipfile.ZipInfo(f"{name}/{name}.txt", _ZIP_TIME), text)
        shutil.rmtree(self.tmp)
        return out.stat().st_size

    def _granule(self, k: int) -> str:
        t = np.datetime64(self.dates[k], "s")  # the SLC starts at the frame's acquisition time
        start = t.astype(object)
        stop = (t + np.timedelta64(27, "s")).astype(object)
        orbit = int(self.orbits[k])
        take = int(hashlib.sha1(f"{self.frame.name}{orbit}".encode()).hexdigest()[:5], 16)
        tail = hashlib.sha1(f"{self.frame.name}{t}".encode()).hexdigest()[:4].upper()
        return (
            f"S1A_IW_SLC__1SDV_{start:%Y%m%dT%H%M%S}_{stop:%Y%m%dT%H%M%S}_{orbit:06d}_"
            f"{take:06X}_{tail}"
        )

    def _parameters(self, name: str, a: int, b: int, phase: np.ndarray, transform) -> str:
        """The product's ``<name>.txt`` in HyP3 INSAR_GAMMA's format (key: value lines)."""
        ny, nx = phase.shape
        row, col = ny // 2, nx // 2
        finite = np.argwhere(np.isfinite(phase))
        if finite.size:  # the valid pixel nearest the centre is the unwrapping reference
            row, col = finite[np.argmin(np.hypot(finite[:, 0] - row, finite[:, 1] - col))]
        x = transform[0] + (col + 0.5) * transform[1]
        y = transform[3] + (row + 0.5) * transform[5]
        lon, lat = pyproj.Transformer.from_crs(
            self.geom["crs"], "EPSG:4326", always_xy=True
        ).transform(x, y)
        t = np.datetime64(self.dates[a], "s")
        seconds = float((t - t.astype("datetime64[D]")) / np.timedelta64(1, "s")) + 0.5
        value = float(phase[row, col]) if np.isfinite(phase[row, col]) else 0.0
        lines = [
            ("Reference Granule", self._granule(a)),
            ("Secondary Granule", self._granule(b)),
            ("Reference Pass Direction", "ASCENDING"),
            ("Reference Orbit Number", str(int(self.orbits[a]))),
            ("Secondary Pass Direction", "ASCENDING"),
            ("Secondary Orbit Number", str(int(self.orbits[b]))),
            ("Baseline", f"{self.bperp[b] - self.bperp[a]:.4f}"),
            ("UTC time", f"{seconds:.6f}"),
            ("Heading", f"{self.frame.heading_deg:.7f}"),
            ("Spacecraft height", "693000.0"),
            ("Earth radius at nadir", "6369525.3137"),
            ("Slant range near", "799866.2357"),
            ("Slant range center", "880244.5012"),
            ("Slant range far", "960622.7667"),
            ("Range looks", "20"),
            ("Azimuth looks", "4"),
            ("INSAR phase filter", "adf"),
            ("Phase filter parameter", "0.6"),
            ("Resolution of output (m)", f"{transform[1]:g}"),
            ("Range bandpass filter", "no"),
            ("Azimuth bandpass filter", "no"),
            ("DEM source", "GLO-30"),
            ("DEM resolution (m)", f"{transform[1]:g}"),
            ("Unwrapping type", "mcf"),
            ("Phase at reference point", f"{value:.5f}"),
            ("Azimuth line of the reference point in SAR space", str(int(row) * 4)),
            ("Range pixel of the reference point in SAR space", str(int(col) * 20)),
            ("Y coordinate of the reference point in the map projection", f"{y:.4f}"),
            ("X coordinate of the reference point in the map projection", f"{x:.4f}"),
            ("Latitude of the reference point (WGS84)", f"{lat:.8f}"),
            ("Longitude of the reference point (WGS84)", f"{lon:.8f}"),
            ("Unwrapping threshold", "none"),
            ("Speckle filter", "no"),
        ]
        return "".join(f"{k}: {v}\n" for k, v in lines)

    def source(self) -> dict[str, str]:
        """The manifest's record of this frame: provider and folder (relative to the root)."""
        return {"format": self.format, "path": "hyp3", "frame_id": self.frame.name}


def provider_catalog(root: str | Path, frame: str, source: dict[str, str]) -> Path:
    """The static STAC catalog of a provider-layout frame, made with the provider adapter.

    Runs the same code path a user runs on downloaded products (``ncp-subsidence catalog``):
    the adapter's ``items_from_source`` over the frame's files, then
    :func:`~ncp_subsidence.io.products.catalog.write_catalog`. The catalog is written once, to
    ``<root>/catalogs/<frame>/`` (through a temporary folder renamed when complete), and
    reused afterwards, so its items (and the discovery fingerprint) do not change between runs.

    Parameters
    ----------
    root : str or Path
        Twin root.
    frame : str
        Frame name (the ``ncp:frame`` of the items, the key of the pipeline's source).
    source : dict
        The manifest's ``frame_sources[frame]``: ``format`` (``licsar`` | ``hyp3``) and ``path``.

    Returns
    -------
    Path
        ``catalog.json`` of the frame's catalog, whose one collection is
        ``twin-<format>-<frame>``.
    """
    root = Path(root)
    out = root / "catalogs" / frame
    catalog = out / "catalog.json"
    if catalog.exists():
        return catalog
    fmt = source["format"]
    where = root / source["path"]
    if fmt == "licsar":
        from ncp_subsidence.io.products import licsar

        items = licsar.items_from_source(str(where), frame=frame)
        title = f"Twin LiCSAR frame {frame}"
    elif fmt == "hyp3":
        from ncp_subsidence.io.products import hyp3

        zips = [str(p) for p in sorted(where.glob("*.zip"))]
        items = hyp3.items_from_source(zips, frame=frame)
        title = f"Twin HyP3 INSAR_GAMMA frame {frame}"
    else:
        raise ValueError(
            f"unknown provider layout {fmt!r} of frame {frame}; expected licsar or hyp3"
        )
    tmp = root / "catalogs" / f"_partial_{frame}"  # no dot: pystac takes "x.y" for a file
    if tmp.exists():
        shutil.rmtree(tmp)
    from ncp_subsidence.io.products.catalog import write_catalog

    write_catalog(
        items,
        tmp,
        collection_id=collection_id(fmt, frame),
        title=title,
        description=f"{title}: the NCP twin's interferograms in the provider's own layout, "
        f"catalogued by the {fmt} adapter.",
    )
    tmp.rename(out)
    return catalog


def collection_id(fmt: str, frame: str) -> str:
    """Collection id of a provider-layout frame's catalog: ``twin-<format>-<frame>``."""
    return f"twin-{fmt}-{frame}"
