"""Coastlines for the report's maps, offline: contours of a packaged global land mask.

``global-land-mask`` ships the GLOBE 30 arc-second (about 1 km) land/ocean mask of NOAA's Global
Land One-km Base Elevation project (Hastings & Dunbar 1999) inside its wheel, so the coast of the
Bohai Sea is drawn with no download and no network. The coastline is the 0.5 contour of the
mask sampled on a regular lon/lat grid (``contourpy``, which matplotlib already depends on).

The package's own lookup (``global_land_mask.globe.is_land``) decompresses the whole mask when
it is imported: a 21,600 x 43,200 boolean array, 933 MB, 7-8 s of one core, for a report that
needs a few hundred rows. :func:`is_land` gives the same answers from the same file reading
only the rows its points fall in: the ``.npy`` inside the ``.npz`` is streamed through zlib up
to the last of those rows (0.7 s and 41 MB for the North China Plain).
"""

from __future__ import annotations

import importlib.util
import logging
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["coastline", "is_land"]

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
    path = _mask_file()
    if path is None:
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
    land = is_land(grid_lat, grid_lon, path).astype(np.float64)
    lines = contourpy.contour_generator(lon, lat, land).lines(0.5)
    return [np.asarray(line, dtype=np.float64) for line in lines if len(line) >= min_points]


#: the mask inside global-land-mask's wheel (True: ocean), and its two axes (degrees)
MASK_FILE = "globe_combined_mask_compressed.npz"

#: rows of the mask decompressed at a time while reading a window (43,200 bytes a row)
_ROWS_PER_READ = 256


def _mask_file() -> Path | None:
    """The packaged mask file, found without importing ``global_land_mask`` (whose import
    decompresses all of it); None when the package or its file is missing."""
    spec = importlib.util.find_spec("global_land_mask")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / MASK_FILE
    return path if path.is_file() else None


def _axis_index(values: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """``global_land_mask.globe``'s ``lat_to_index``/``lon_to_index``: clipped to the axis,
    then truncated toward zero from its first value in steps of its first spacing."""
    clipped = np.clip(np.asarray(values, dtype=np.float64), axis.min(), axis.max())
    return ((clipped - axis[0]) / (axis[1] - axis[0])).astype("int")


def is_land(lat: np.ndarray, lon: np.ndarray, path: Path | None = None) -> np.ndarray:
    """``global_land_mask.globe.is_land(lat, lon)``, reading only the mask rows it needs.

    Parameters
    ----------
    lat, lon : ndarray, same shape, degrees (lat in [-90, 90], lon in [-180, 180])
    path : Path, optional
        The packaged ``.npz`` (default: found with :func:`_mask_file`).

    Returns
    -------
    ndarray of bool, the shape of ``lat``: True on land (lakes mostly count as land), with the
    package's own cell lookup, so the answers are identical to it.

    Raises
    ------
    FileNotFoundError
        When ``global-land-mask`` is not installed.
    ValueError
        When the file's mask is not the C-ordered boolean array its axes describe.
    """
    path = path or _mask_file()
    if path is None:
        raise FileNotFoundError(
            "global-land-mask is not installed (pip install 'ncp-subsidence[viz]')"
        )
    lat, lon = np.asarray(lat), np.asarray(lon)
    if lat.size == 0:
        return np.zeros(lat.shape, dtype=bool)
    with zipfile.ZipFile(path) as archive:
        with archive.open("lat.npy") as f:
            lat_axis = np.load(f)
        with archive.open("lon.npy") as f:
            lon_axis = np.load(f)
        rows, cols = _axis_index(lat, lat_axis), _axis_index(lon, lon_axis)
        r0, r1 = int(rows.min()), int(rows.max()) + 1
        c0, c1 = int(cols.min()), int(cols.max()) + 1
        with archive.open("mask.npy") as f:
            version = np.lib.format.read_magic(f)
            header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = header(f)
            if shape != (lat_axis.size, lon_axis.size) or fortran or dtype != np.bool_:
                raise ValueError(
                    f"{path}: mask.npy is {dtype} {shape} (Fortran order: {fortran}), not the "
                    f"C-ordered bool ({lat_axis.size}, {lon_axis.size}) of its axes; reinstall "
                    "global-land-mask"
                )
            width = shape[1]
            f.seek(f.tell() + r0 * width)  # streamed: zlib decompresses up to the first row
            window = np.empty((r1 - r0, c1 - c0), dtype=bool)
            for start in range(0, r1 - r0, _ROWS_PER_READ):
                n = min(_ROWS_PER_READ, r1 - r0 - start)
                block = np.frombuffer(f.read(n * width), dtype=bool).reshape(n, width)
                window[start : start + n] = block[:, c0:c1]
    return ~window[rows - r0, cols - c0]
