"""The coordinate reference system of a frame grid, and transforms between it and lon/lat.

Frame grids (``ingest/ifg/<frame>``, ``sbas/<frame>``, ``adjust/<frame>``) keep the CRS the
provider delivered: EPSG:4326 (``x`` = longitude, ``y`` = latitude, degrees; LiCSAR, the twin's
plain COGs) or a projected one (HyP3's UTM zones, ``x``/``y`` easting/northing in metres). A
dataset names its CRS in ``attrs["crs"]`` (``"EPSG:32650"``) and in its CF ``spatial_ref``
grid-mapping coordinate (:func:`ncp_subsidence.io.cube.with_crs`); product grids (``lat``,
``lon``) are always EPSG:4326.

Every transform here is pyproj's, with ``always_xy=True`` (longitude first), and works on numpy
arrays of any shape; stages call these on small arrays on the client (station positions, frame
outlines, overlap strips) or inside a block task (one chunk's pixel centres).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

__all__ = [
    "GEOGRAPHIC",
    "dataset_crs",
    "frame_lonlat_bounds",
    "is_geographic",
    "lonlat_box_in_frame",
    "lonlat_to_xy",
    "xy_to_lonlat",
]

#: The product CRS: WGS 84 longitude/latitude.
GEOGRAPHIC = "EPSG:4326"


@functools.lru_cache(maxsize=64)
def _crs(crs: str) -> Any:
    import pyproj

    return pyproj.CRS.from_user_input(crs)


@functools.lru_cache(maxsize=64)
def _transformer(src: str, dst: str) -> Any:
    import pyproj

    return pyproj.Transformer.from_crs(_crs(src), _crs(dst), always_xy=True)


def _name(crs: Any) -> str:
    """``"EPSG:<code>"`` where the CRS has one, else its WKT."""
    code = crs.to_epsg()
    return f"EPSG:{code}" if code is not None else crs.to_wkt()


def dataset_crs(ds: Any) -> str:
    """The CRS of a frame or product dataset, as ``"EPSG:<code>"`` (or WKT without a code).

    Parameters
    ----------
    ds : xarray.Dataset or xarray.DataArray
        Looked up in order: ``attrs["crs"]``, the ``spatial_ref`` coordinate's ``crs_wkt`` /
        ``spatial_ref`` attribute (rioxarray's CF grid mapping).

    Returns
    -------
    str
        EPSG:4326 when the dataset names none (every frame before projected frames existed).
    """
    named = ds.attrs.get("crs")
    if named:
        return _name(_crs(str(named)))
    if "spatial_ref" in ds.coords:
        attrs = ds["spatial_ref"].attrs
        wkt = attrs.get("crs_wkt") or attrs.get("spatial_ref")
        if wkt:
            return _name(_crs(str(wkt)))
    return GEOGRAPHIC


def is_geographic(crs: str) -> bool:
    """True when ``crs`` is a longitude/latitude CRS (x, y in degrees)."""
    return bool(_crs(str(crs)).is_geographic)


def lonlat_to_xy(crs: str, lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray]:
    """Longitude/latitude (degrees, WGS 84) to the frame's ``x, y`` (any broadcastable shape).

    Returns float64 arrays of the broadcast shape; the identity for EPSG:4326.
    """
    lon, lat = np.broadcast_arrays(np.asarray(lon, np.float64), np.asarray(lat, np.float64))
    if _name(_crs(str(crs))) == GEOGRAPHIC:
        return lon.copy(), lat.copy()
    x, y = _transformer(GEOGRAPHIC, str(crs)).transform(lon, lat)
    return np.asarray(x, np.float64), np.asarray(y, np.float64)


def xy_to_lonlat(crs: str, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """The frame's ``x, y`` to longitude/latitude (degrees, WGS 84); inverse of
    :func:`lonlat_to_xy`."""
    x, y = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
    if _name(_crs(str(crs))) == GEOGRAPHIC:
        return x.copy(), y.copy()
    lon, lat = _transformer(str(crs), GEOGRAPHIC).transform(x, y)
    return np.asarray(lon, np.float64), np.asarray(lat, np.float64)


def _outline(x0: float, x1: float, y0: float, y1: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    s = np.linspace(0.0, 1.0, n)
    xs = np.concatenate([x0 + (x1 - x0) * s, np.full(n, x1), x1 - (x1 - x0) * s, np.full(n, x0)])
    ys = np.concatenate([np.full(n, y0), y0 + (y1 - y0) * s, np.full(n, y1), y1 - (y1 - y0) * s])
    return xs, ys


def frame_lonlat_bounds(
    crs: str, x: np.ndarray, y: np.ndarray, densify: int = 33
) -> tuple[float, float, float, float]:
    """Lon/lat bounding box ``(west, south, east, north)`` of a frame grid's outer cell edges.

    Parameters
    ----------
    crs : str
        The frame's CRS.
    x, y : ndarray, shape (nx,), (ny,)
        Regular cell-centre coordinates of the frame grid.
    densify : int
        Points per side of the outline transformed (curved edges of a projected grid).

    Returns
    -------
    (west, south, east, north) : float, degrees
    """
    hx, hy = abs(float(x[1] - x[0])) / 2, abs(float(y[1] - y[0])) / 2
    xs, ys = _outline(
        float(np.min(x)) - hx, float(np.max(x)) + hx, float(np.min(y)) - hy, float(np.max(y)) + hy,
        densify,
    )  # fmt: skip
    lon, lat = xy_to_lonlat(crs, xs, ys)
    return float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max())


def lonlat_box_in_frame(
    crs: str, west: float, south: float, east: float, north: float, densify: int = 17
) -> tuple[float, float, float, float]:
    """The frame-coordinate box ``(xmin, ymin, xmax, ymax)`` holding a lon/lat box.

    The box's outline (``densify`` points per side) is transformed, so the result holds every
    point of the lon/lat box to within the curvature between outline points (metres for boxes
    of a few degrees).
    """
    lon, lat = _outline(west, east, south, north, densify)
    x, y = lonlat_to_xy(crs, lon, lat)
    return float(x.min()), float(y.min()), float(x.max()), float(y.max())
