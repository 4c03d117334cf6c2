"""Coastlines for the report's maps, offline: contours of a packaged global land mask.

``global-land-mask`` ships the GLOBE 30 arc-second (about 1 km) land/ocean mask of NOAA's Global
Land One-km Base Elevation project (Hastings & Dunbar 1999) inside its wheel, so the coast of the
Bohai Sea is drawn with no download and no network. The coastline is the 0.5 contour of the
mask sampled on a regular lon/lat grid (``contourpy``, which matplotlib already depends on).
"""

from __future__ import annotations

import logging

import numpy as np

__all__ = ["coastline"]

log = logging.getLogger(__name__)


def coastline(
    bbox: tuple[float, float, float, float], step: float = 0.01, min_points: int = 8
) -> list[np.ndarray]:
    """The coastline inside ``bbox`` as polylines.

    Parameters
    ----------
    bbox : (west, south, east, north), degrees (EPSG:4326)
    step : float
        Sampling of the land mask, degrees (0.01 deg: about 1.1 km, the mask's own resolution).
    min_points : int
        Polylines with fewer vertices (islets of a cell or two) are dropped.

    Returns
    -------
    list of ndarray, each shape (n, 2): (lon, lat) vertices, degrees. Empty when the box holds
    no coast, or when ``global-land-mask`` is not installed (it comes with the ``viz`` extra;
    a log line says so).
    """
    try:
        from global_land_mask import globe
    except ImportError:
        log.info(
            "global-land-mask is not installed (pip install 'ncp-subsidence[viz]'): no coastline"
        )
        return []
    import contourpy

    west, south, east, north = (float(v) for v in bbox)
    lon = np.arange(west, east + step / 2, step)
    lat = np.arange(south, north + step / 2, step)
    lat = lat[(lat >= -90) & (lat <= 90)]
    if lon.size < 2 or lat.size < 2:
        return []
    lon_wrapped = (lon + 180.0) % 360.0 - 180.0
    grid_lon, grid_lat = np.meshgrid(lon_wrapped, lat)
    land = globe.is_land(grid_lat, grid_lon).astype(np.float64)
    lines = contourpy.contour_generator(lon, lat, land).lines(0.5)
    return [np.asarray(line, dtype=np.float64) for line in lines if len(line) >= min_points]
