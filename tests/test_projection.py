"""Projected (UTM) frame grids: CRS helpers, ``with_crs``, and the kernels the stages use on them.

Every check compares with an independent answer: pyproj's own transform, a regular-grid regrid
of the same points, or an analytic field (a plane's median and gradient in a window).
"""

from __future__ import annotations

import numpy as np
import pyproj
import pytest
import xarray as xr

from ncp_subsidence.io.cube import with_crs
from ncp_subsidence.io.projection import (
    dataset_crs,
    frame_lonlat_bounds,
    is_geographic,
    lonlat_box_in_frame,
    lonlat_to_xy,
    xy_to_lonlat,
)
from ncp_subsidence.kernels.adjust import (
    bilinear_sample,
    projected_spacing_km,
    sample_station_windows,
    station_window_slices,
)
from ncp_subsidence.stages.mosaic import bilinear_regrid

UTM = "EPSG:32650"


def _grid(ny=40, nx=30, px=1000.0, x0=400_000.0, y1=4_300_000.0):
    x = x0 + px * (np.arange(nx) + 0.5)
    y = y1 - px * (np.arange(ny) + 0.5)
    return y, x


def test_lonlat_xy_round_trip_agrees_with_pyproj():
    lon = np.array([[116.3, 117.0], [119.5, 118.2]])
    lat = np.array([[34.5, 38.0], [40.5, 36.1]])
    x, y = lonlat_to_xy(UTM, lon, lat)
    ref = pyproj.Transformer.from_crs("EPSG:4326", UTM, always_xy=True).transform(lon, lat)
    np.testing.assert_allclose(x, ref[0], atol=1e-6)
    np.testing.assert_allclose(y, ref[1], atol=1e-6)
    assert x.shape == (2, 2)
    back = xy_to_lonlat(UTM, x, y)
    np.testing.assert_allclose(back[0], lon, atol=1e-9)
    np.testing.assert_allclose(back[1], lat, atol=1e-9)
    # geographic frames: the identity, and a copy
    same = lonlat_to_xy("EPSG:4326", lon, lat)
    np.testing.assert_array_equal(same[0], lon)
    assert same[0] is not lon
    assert is_geographic("EPSG:4326") and not is_geographic(UTM)


def test_frame_bounds_and_box_hold_every_point():
    y, x = _grid(ny=300, nx=200, px=1390.0, x0=442_020.0)
    w, s, e, n = frame_lonlat_bounds(UTM, x, y)
    xx, yy = np.meshgrid(x, y)
    lon, lat = xy_to_lonlat(UTM, xx, yy)
    assert w < lon.min() and e > lon.max() and s < lat.min() and n > lat.max()
    # the half-pixel edges are included: the box is wider than the centres by < 1 pixel
    assert lon.min() - w < 0.02 and n - lat.max() < 0.02
    xmin, ymin, xmax, ymax = lonlat_box_in_frame(UTM, 117.0, 36.0, 117.5, 36.5)
    glon, glat = np.meshgrid(np.linspace(117.0, 117.5, 51), np.linspace(36.0, 36.5, 51))
    gx, gy = lonlat_to_xy(UTM, glon, glat)
    assert xmin <= gx.min() + 1e-6 and xmax >= gx.max() - 1e-6
    assert ymin <= gy.min() + 1e-6 and ymax >= gy.max() - 1e-6


def test_with_crs_projected_and_geographic():
    y, x = _grid(ny=4, nx=3)
    ds = xr.Dataset({"v": (("y", "x"), np.zeros((4, 3), np.float32))}, coords={"y": y, "x": x})
    utm = with_crs(ds, UTM)
    assert utm.rio.crs.to_epsg() == 32650 and utm.attrs["crs"] == UTM
    assert utm["x"].attrs["units"] == "m" and utm["y"].attrs["standard_name"] == (
        "projection_y_coordinate"
    )
    assert utm["v"].attrs["grid_mapping"] == "spatial_ref"
    assert dataset_crs(utm) == UTM
    # None: the dataset's own CRS (attrs, then spatial_ref), else EPSG:4326 as before
    assert with_crs(ds.assign_attrs(crs=UTM)).rio.crs.to_epsg() == 32650
    only_coord = utm.copy()
    del only_coord.attrs["crs"]
    assert with_crs(only_coord).rio.crs.to_epsg() == 32650
    geo = with_crs(ds)
    assert geo.rio.crs.to_epsg() == 4326 and "crs" not in geo.attrs
    assert geo["x"].attrs.get("units") is None
    assert dataset_crs(geo) == dataset_crs(ds) == "EPSG:4326"


def test_bilinear_sample_equals_regular_regrid_on_a_grid_of_points():
    rng = np.random.default_rng(0)
    y, x = _grid(ny=12, nx=9)
    z = rng.normal(size=(3, 12, 9))
    z[1, 4, 4] = np.nan
    yo = np.linspace(y[0] + 600.0, y[-1] - 600.0, 17)  # descending, past both edges
    xo = np.linspace(x[0] - 700.0, x[-1] + 400.0, 13)
    regular = bilinear_regrid(z, y, x, yo, xo)
    xx, yy = np.meshgrid(xo, yo)
    scattered = bilinear_sample(z, y, x, yy, xx)
    np.testing.assert_array_equal(np.isnan(scattered), np.isnan(regular))
    np.testing.assert_allclose(scattered, regular, rtol=0, atol=1e-12)
    # a plane is reproduced exactly inside; beyond half a cell it is NaN
    plane = 0.003 * x[None, :] - 0.002 * y[:, None]
    pts_y, pts_x = np.array([y[3] - 250.0, y[0] + 499.0]), np.array([x[2] + 10.0, x[0]])
    got = bilinear_sample(plane, y, x, pts_y, pts_x)
    np.testing.assert_allclose(got[0], 0.003 * pts_x[0] - 0.002 * pts_y[0], atol=1e-6)
    assert np.isfinite(got[1])  # inside the outer half cell: edge value held
    assert np.isnan(bilinear_sample(plane, y, x, np.array([y[0] + 501.0]), np.array([x[0]])))


def test_station_windows_on_a_projected_grid():
    """A plane of 0.5 mm/yr per km east on a 1 km UTM grid: the window median is the value at
    the station and the window gradient is 0.5 mm/yr/km, with planar distances in metres."""
    y, x = _grid(ny=60, nx=60, px=1000.0)
    vel = 0.5 * (x[None, :] - x[0]) / 1000.0 + 0.0 * y[:, None]
    sx, sy = np.array([x[30], x[0] - 5000.0]), np.array([y[20], y[20]])
    assert projected_spacing_km(x, y) == pytest.approx((1.0, 1.0))
    boxes = station_window_slices(x, y, sx, sy, 3000.0, projected=True)
    assert boxes[1] is None and boxes[0][0].stop - boxes[0][0].start == 2 * 4 + 1
    s = sample_station_windows(vel, x, y, sx, sy, radius_m=3000.0, min_pixels=5, projected=True)
    assert s.valid.tolist() == [True, False]
    assert s.median[0] == pytest.approx(0.5 * (x[30] - x[0]) / 1000.0)
    assert s.n_pixels[0] == 29  # 1 km pixel centres within 3 km: 29 of them
    assert s.max_gradient[0] == pytest.approx(0.5, rel=1e-9)
