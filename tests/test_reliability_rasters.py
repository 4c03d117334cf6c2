"""Reliability of interferogram and factor rasters: every bad raster is a clear error naming the
file and the fix, or a repair that is counted, logged and recorded (issue 18).

* Factor rasters are placed by their own CRS and affine transform: non-square pixels and a UTM
  raster land where an analytic field says they must.
* A raster without a CRS tag (factor or interferogram) is one ``DataError`` naming the file.
* A COG cut short after its header fails when its header is checked (``on_error: fail``), or
  is NaN and counted (``on_error: nan``).
* Interferograms with no valid phase are dropped from the SBAS network, named in the product,
  and the network left is checked again; a property test proves the inversion equals the one
  of the network without them.

Rasters are small files written with rasterio into ``tmp_path``; one case runs the pipeline on
the tiny twin (discover, ingest, sbas over one year).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
from pathlib import Path

import dask
import numpy as np
import pystac
import pytest
import rasterio
import xarray as xr
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from rasterio.transform import Affine
from rasterio.warp import transform as warp_transform
from rasterio.warp import transform_bounds

from ncp_subsidence.errors import DataError
from ncp_subsidence.io.readers import Grid, read_ifg_stack
from ncp_subsidence.stages.ingest import _read_factor
from ncp_subsidence.stages.sbas import drop_empty_pairs, invert_dataset


@pytest.fixture(autouse=True)
def _threads():
    with dask.config.set(scheduler="threads", num_workers=2):
        yield


# --------------------------------------------------------------------------- factor rasters

#: The factor grid of these tests: 0.05 deg over 114-116 E, 36-38 N (40 x 40 cells).
FACTOR_GRID = Grid(4326, (114.0, 36.0, 116.0, 38.0), 0.05, (40, 40))


def field(lon, lat):
    """An analytic factor field (e.g. an elevation in m): a plane plus a gentle quadratic."""
    u, v = lon - 115.0, lat - 37.0
    return 100.0 + 30.0 * u + 20.0 * v + 8.0 * u**2 - 5.0 * u * v


#: Bounds of the field's derivatives over the grid (|u|, |v| <= 1): |grad f| <= |30 + 16 u -
#: 5 v| + |20 - 5 u| <= 51 + 25, and |f_uu| + 2 |f_uv| + |f_vv| = 16 + 10 + 0 (per deg^2).
GRADIENT_BOUND = 76.0
CURVATURE_BOUND = 26.0


def write_field(path: Path, crs: str, transform: Affine, shape: tuple[int, int]) -> None:
    """A float32 GeoTIFF holding ``field`` at each pixel centre (through the file's CRS)."""
    ny, nx = shape
    cols, rows = np.meshgrid(np.arange(nx) + 0.5, np.arange(ny) + 0.5)
    x, y = transform * (cols.ravel(), rows.ravel())
    lon, lat = warp_transform(crs, "EPSG:4326", x, y) if crs != "EPSG:4326" else (x, y)
    values = field(np.asarray(lon), np.asarray(lat)).reshape(shape).astype(np.float32)
    profile = {"driver": "GTiff", "height": ny, "width": nx, "count": 1, "dtype": "float32"}
    with rasterio.open(path, "w", crs=crs, transform=transform, **profile) as dst:
        dst.write(values, 1)


def factor_item(path: Path, name: str = "dem") -> pystac.Item:
    """A driving-factor item as discovery stores it: one ``data`` asset."""
    item = pystac.Item(
        id=f"factor-{name}",
        geometry=None,
        bbox=None,
        datetime=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
        properties={"units": "m"},
    )
    item.add_asset("data", pystac.Asset(str(path), media_type=pystac.MediaType.GEOTIFF))
    return item


def _utm_layout(pixel_x: float, pixel_y: float) -> tuple[Affine, tuple[int, int]]:
    """A UTM 50N transform and shape covering the factor grid with 0.2 deg to spare."""
    left, bottom, right, top = transform_bounds("EPSG:4326", "EPSG:32650", 113.8, 35.8, 116.2, 38.2)
    west, north = np.floor(left / 1000.0) * 1000.0, np.ceil(top / 1000.0) * 1000.0
    shape = (int((north - bottom) / pixel_y) + 2, int((right - west) / pixel_x) + 2)
    return Affine(pixel_x, 0.0, west, 0.0, -pixel_y, north), shape


@pytest.mark.parametrize(
    "case",
    ["non-square 0.01 x 0.013 deg", "UTM 50N 1000 x 1200 m", "coarser 0.1 x 0.13 deg"],
)
def test_factor_raster_in_any_crs_and_pixel_shape_matches_the_field(tmp_path, case):
    path = tmp_path / "factor.tif"
    if case.startswith("UTM"):
        transform, shape = _utm_layout(1000.0, 1200.0)
        write_field(path, "EPSG:32650", transform, shape)
        # the larger pixel side in degrees: 1200 m of latitude, 1000 m of longitude at 38 N
        source_deg = max(1200.0 / 111_000.0, 1000.0 / (111_000.0 * np.cos(np.radians(38.2))))
    else:
        dx, dy = (0.01, 0.013) if case.startswith("non-square") else (0.1, 0.13)
        shape = (int(2.4 / dy) + 1, int(2.4 / dx) + 1)
        write_field(path, "EPSG:4326", Affine(dx, 0.0, 113.8, 0.0, -dy, 38.2), shape)
        source_deg = max(dx, dy)
    got = _read_factor([factor_item(path)], "dem", FACTOR_GRID)
    lat, lon = FACTOR_GRID.coords()
    np.testing.assert_array_equal(got["lat"].values, lat)
    expected = field(lon[None, :], lat[:, None])
    if source_deg < FACTOR_GRID.resolution:
        # cell average of the source samples: their weighted centroid lies within half a source
        # pixel of the cell centre (gradient term), and a quadratic's cell mean differs from its
        # centre value by at most CURVATURE_BOUND * h^2 / 8 (h the grid cell)
        tolerance = (
            GRADIENT_BOUND * source_deg / 2 + CURVATURE_BOUND * FACTOR_GRID.resolution**2 / 8
        )
    else:
        # bilinear between source pixel centres: exact on a plane; the quadratic part leaves at
        # most CURVATURE_BOUND * s^2 / 8 (s the source pixel)
        tolerance = CURVATURE_BOUND * source_deg**2 / 8
    assert got.dtype == np.float32 and got.attrs["units"] == "m"
    assert np.isfinite(got.values).all()
    error = np.abs(got.values - expected)
    assert error.max() <= tolerance, (error.max(), tolerance)


def test_factor_raster_without_a_crs_names_the_file_and_the_fix(tmp_path):
    path = tmp_path / "dem_no_crs.tif"
    profile = {"driver": "GTiff", "height": 30, "width": 30, "count": 1, "dtype": "float32"}
    with rasterio.open(path, "w", transform=Affine(0.1, 0, 113.5, 0, -0.1, 38.5), **profile) as d:
        d.write(np.ones((30, 30), np.float32), 1)
    with pytest.raises(DataError) as err:
        _read_factor([factor_item(path)], "dem", FACTOR_GRID)
    message = str(err.value)
    assert "dem_no_crs.tif" in message and "'dem'" in message
    assert "no coordinate reference system" in message
    assert "gdal_edit.py -a_srs EPSG:4326" in message


# --------------------------------------------------------------------------- interferograms

EPSG = 32650
PIXEL = 40.0
WEST, NORTH = 500_000.0, 4_200_000.0
SHAPE = (48, 64)
#: (reference day, secondary day) of each pair, days after 2019-01-01
PAIRS = [(0, 12), (0, 24), (12, 24), (12, 36), (24, 36)]


def write_cog(path: Path, data: np.ndarray, *, crs: str | None = f"EPSG:{EPSG}") -> None:
    """A float32 COG (16 x 16 tiles) at (WEST, NORTH), 40 m pixels, NaN no-data."""
    profile = {
        "driver": "COG",
        "height": data.shape[0],
        "width": data.shape[1],
        "count": 1,
        "dtype": "float32",
        "transform": Affine(PIXEL, 0.0, WEST, 0.0, -PIXEL, NORTH),
        "nodata": np.nan,
        "blocksize": 16,
        "overviews": "NONE",
    }
    with rasterio.open(path, "w", crs=crs, **profile) as dst:
        dst.write(data, 1)


def ifg_item(item_id: str, ref_day: int, sec_day: int, assets: dict[str, Path]) -> pystac.Item:
    """An interferogram item in the project's schema (projection extension, dates)."""
    t0 = dt.datetime(2019, 1, 1, 10, 30, tzinfo=dt.UTC)
    start, end = t0 + dt.timedelta(days=ref_day), t0 + dt.timedelta(days=sec_day)
    ny, nx = SHAPE
    proj_bbox = [WEST, NORTH - ny * PIXEL, WEST + nx * PIXEL, NORTH]
    w, s, e, n = transform_bounds(f"EPSG:{EPSG}", "EPSG:4326", *proj_bbox)
    item = pystac.Item(
        id=item_id,
        geometry={"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
        bbox=[w, s, e, n],
        datetime=start,
        properties={
            "start_datetime": start.isoformat(),
            "end_datetime": end.isoformat(),
            "proj:code": f"EPSG:{EPSG}",
            "proj:shape": [ny, nx],
            "proj:transform": [PIXEL, 0.0, WEST, 0.0, -PIXEL, NORTH, 0.0, 0.0, 1.0],
        },
    )
    for key, path in assets.items():
        item.add_asset(key, pystac.Asset(str(path), media_type=pystac.MediaType.COG))
    return item


@pytest.fixture
def ifg_frame(tmp_path):
    """Five pairs of phase and coherence COGs on one UTM grid; yields (items, phases, paths)."""
    items, phases, paths = [], [], []
    for k, (a, b) in enumerate(PAIRS):
        rng = np.random.default_rng(k)
        phase = rng.normal(0.0, 3.0, SHAPE).astype(np.float32)
        coherence = rng.uniform(0.2, 1.0, SHAPE).astype(np.float32)
        assets = {
            "unw_phase": tmp_path / f"p{k}_unw_phase.tif",
            "corr": tmp_path / f"p{k}_corr.tif",
        }
        write_cog(assets["unw_phase"], phase)
        write_cog(assets["corr"], coherence)
        items.append(ifg_item(f"U50_{k}", a, b, assets))
        phases.append(phase)
        paths.append(assets["unw_phase"])
    return items, phases, paths


def truncate_after_header(path: Path) -> None:
    """Cut a tiled GeoTIFF a little after its first data tile (a new file, never written
    through a hard link): the header still opens, the data are gone."""
    with rasterio.open(path) as src:
        block_h, block_w = src.block_shapes[0]
        first = min(
            int(src.get_tag_item(f"BLOCK_OFFSET_{c}_{r}", "TIFF", bidx=1))
            for r in range(-(-src.height // block_h))
            for c in range(-(-src.width // block_w))
        )
        crs, shape = src.crs, src.shape
    data = path.read_bytes()
    assert first + 100 < len(data)
    path.unlink()
    path.write_bytes(data[: first + 100])
    with rasterio.open(path) as src:
        assert src.crs == crs and src.shape == shape


@pytest.mark.parametrize("on_error", ["fail", "nan"])
def test_interferogram_without_a_crs_is_one_clear_error(ifg_frame, tmp_path, on_error):
    items, phases, _ = ifg_frame
    bare = tmp_path / "p2_no_crs_unw_phase.tif"
    write_cog(bare, phases[2], crs=None)
    with rasterio.open(bare) as src:
        assert src.crs is None
    items[2].assets["unw_phase"].href = str(bare)
    with pytest.raises(DataError) as err:
        read_ifg_stack(items, on_error=on_error, chunks=(16, 16))
    message = str(err.value)
    assert "\n" not in message
    assert str(bare) in message and "U50_2" in message
    assert f"gdal_edit.py -a_srs EPSG:{EPSG} {bare}" in message


def test_cog_truncated_after_its_header_fails_naming_the_file_and_the_option(ifg_frame):
    items, _, paths = ifg_frame
    truncate_after_header(paths[3])
    with pytest.raises(DataError) as err:
        read_ifg_stack(items, chunks=(16, 16))
    message = str(err.value)
    assert str(paths[3]) in message and "U50_3" in message
    assert "truncated" in message and "ingest.on_error: nan" in message


def test_cog_truncated_after_its_header_is_nan_and_counted_under_nan(ifg_frame, caplog):
    items, phases, paths = ifg_frame
    truncate_after_header(paths[3])
    with caplog.at_level(logging.WARNING, logger="ncp_subsidence.io.readers"):
        ds, failures = read_ifg_stack(items, on_error="nan", chunks=(16, 16))
    attrs = failures.attrs()
    assert attrs["n_unreadable_assets"] == 1
    assert json.loads(attrs["unreadable_assets"]) == [str(paths[3])]
    assert str(paths[3]) in caplog.text
    phase = ds["unw_phase"].values
    assert np.isnan(phase[3]).all()
    for k in (0, 1, 2, 4):  # the other pairs are read bit for bit
        np.testing.assert_array_equal(phase[k], phases[k])
    assert np.isfinite(ds["coherence"].values[3]).all()  # its coherence file is intact


# --------------------------------------------------------------------------- the SBAS network


def _stack(pairs: np.ndarray, n_date: int, shape=(4, 5), nan_fraction=0.1, seed=0) -> xr.Dataset:
    """A small referenced interferogram cube of a linear subsidence with noise and NaN."""
    rng = np.random.default_rng(seed)
    dates = np.datetime64("2020-01-01", "ns") + np.arange(n_date) * np.timedelta64(12, "D")
    t = np.arange(n_date) * 12 / 365.25
    rate = rng.uniform(-20.0, 0.0, shape)
    phi = rate[None] * t[:, None, None]
    unw = phi[pairs[:, 1]] - phi[pairs[:, 0]] + 0.2 * rng.standard_normal((len(pairs), *shape))
    unw[rng.random(unw.shape) < nan_fraction] = np.nan
    return xr.Dataset(
        {"unw_phase": (("pair", "y", "x"), unw.astype(np.float32))},
        coords={
            "y": 40.0 - 0.001 * np.arange(shape[0]),
            "x": 115.0 + 0.001 * np.arange(shape[1]),
            "reference": ("pair", dates[pairs[:, 0]]),
            "secondary": ("pair", dates[pairs[:, 1]]),
            "item_id": ("pair", np.array([f"ifg_{a}_{b}" for a, b in pairs], dtype=object)),
        },
    )


def test_empty_pair_that_splits_the_network_is_dropped_named_and_the_split_recorded(caplog):
    pairs = np.array([(0, 1), (1, 2), (2, 3), (3, 4), (0, 2), (3, 5), (4, 5)])
    ds = _stack(pairs, 6)
    ds["unw_phase"][2] = np.nan  # (2, 3) is the only bridge between 0-2 and 3-5
    with caplog.at_level(logging.WARNING, logger="ncp_subsidence.stages.sbas"):
        kept, attrs = drop_empty_pairs(ds, frame="A040")
    assert kept.sizes["pair"] == 6 and "ifg_2_3" not in kept["item_id"].values
    assert attrs["n_dropped_pairs"] == 1 and json.loads(attrs["dropped_pairs"]) == ["ifg_2_3"]
    assert attrs["n_dropped_dates"] == 0
    assert attrs["n_network_components"] == 2
    assert json.loads(attrs["network_components"]) == [
        ["2020-01-01", "2020-01-25", 3],
        ["2020-02-06", "2020-03-01", 3],  # 2020 is a leap year
    ]
    assert "ifg_2_3" in caplog.text and "split into 2 parts" in caplog.text
    # the split network is inverted as any disconnected one: every pixel says so
    out = invert_dataset(kept, min_pairs_fraction=0.0).compute()
    assert (out["n_components"].values[np.isfinite(out["velocity"].values)] == 2).all()
    assert out.sizes["time"] == 6


def test_every_pair_empty_is_a_clear_error():
    pairs = np.array([(0, 1), (1, 2), (0, 2)])
    ds = _stack(pairs, 3)
    ds["unw_phase"][:] = np.nan
    with pytest.raises(DataError, match=r"frame A040: all 3 interferograms have no valid phase"):
        drop_empty_pairs(ds, frame="A040")


@st.composite
def networks_with_empty_pairs(draw):
    """A chain of dates plus random longer pairs, and a random subset of pairs to empty."""
    n_date = draw(st.integers(3, 7))
    pairs = {(i, i + 1) for i in range(n_date - 1)}
    extra = draw(st.lists(st.tuples(st.integers(0, n_date - 1), st.integers(0, n_date - 1))))
    pairs |= {(min(a, b), max(a, b)) for a, b in extra if a != b}
    pairs_arr = np.array(sorted(pairs), dtype=np.int64)
    empty = draw(
        st.lists(st.booleans(), min_size=len(pairs_arr), max_size=len(pairs_arr)).map(np.array)
    )
    nan_fraction = draw(st.sampled_from([0.0, 0.15, 0.4]))
    seed = draw(st.integers(0, 2**16))
    return pairs_arr, n_date, empty, nan_fraction, seed


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(case=networks_with_empty_pairs(), method=st.sampled_from(["svd", "nsbas"]))
def test_dropping_empty_pairs_equals_inverting_the_network_without_them(case, method):
    from ncp_subsidence.kernels.sbas import prune_network

    pairs, n_date, empty, nan_fraction, seed = case
    pruning = prune_network(pairs, n_date, ~empty)
    assume(pruning.kept.size > 0 and pruning.n_components == 1)
    # the seasonal NSBAS model has 4 parameters: fewer dates are an error (tested below)
    assume(method == "svd" or n_date - pruning.lost_dates.size >= 5)
    ds = _stack(pairs, n_date, nan_fraction=nan_fraction, seed=seed)
    clean = ds.isel(pair=np.flatnonzero(~empty))  # the network without those pairs
    broken = ds.copy(deep=True)
    broken["unw_phase"][np.flatnonzero(empty)] = np.nan  # unreadable: NaN at every pixel
    kept, attrs = drop_empty_pairs(broken)
    assert attrs["n_dropped_pairs"] == int(empty.sum())
    assert json.loads(attrs["dropped_pairs"]) == list(ds["item_id"].values[empty])
    assert attrs["n_network_components"] == 1
    got = invert_dataset(kept, method=method)
    want = invert_dataset(clean, method=method)
    np.testing.assert_array_equal(got["time"].values, want["time"].values)
    assert got.attrs["min_pairs"] == want.attrs["min_pairs"]
    for name in ("displacement", "velocity", "n_pairs", "n_components"):
        np.testing.assert_array_equal(got[name].values, want[name].values)


def test_nsbas_on_too_few_dates_for_its_model_is_a_clear_error():
    from ncp_subsidence.kernels.sbas import invert_network

    pairs = np.array([(0, 1), (1, 2), (0, 2)])
    dates = np.datetime64("2020-01-01") + np.array([0, 12, 24]).astype("timedelta64[D]")
    phase = np.zeros((2, 3))
    with pytest.raises(DataError, match=r"4 parameters.*3 dates.*nsbas_seasonal=False"):
        invert_network(phase, pairs, dates, method="nsbas")
    # without the seasonal terms (rate and offset) three dates are enough
    out = invert_network(phase, pairs, dates, method="nsbas", nsbas_seasonal=False)
    assert np.all(out.velocity == 0.0)


# --------------------------------------------------------------------------- on the twin


def test_truncated_cog_on_the_twin_is_counted_in_ingest_and_dropped_by_sbas(tiny_twin, tmp_path):
    from conftest import twin_config

    from ncp_subsidence.io.stores import ProductStore
    from ncp_subsidence.pipeline import run_pipeline

    root = tmp_path / "twin"
    shutil.copytree(
        tiny_twin.root, root, ignore=shutil.ignore_patterns("truth"), copy_function=os.link
    )
    frame = tiny_twin.frames[0]
    in_2019 = []
    for item_path in sorted((root / "stac" / f"twin-s1-ifg-{frame}").glob("*/*.json")):
        item = json.loads(item_path.read_text())
        p = item["properties"]
        if p["start_datetime"].startswith("2019") and p["end_datetime"].startswith("2019"):
            in_2019.append((item_path, item))
    item_path, item = in_2019[len(in_2019) // 2]
    victim = (item_path.parent / item["assets"]["unw_phase"]["href"]).resolve()
    truncate_after_header(victim)
    cfg = twin_config(tiny_twin, tmp_path / "store", ingest={"on_error": "nan"})
    cfg.sources.twin.directory = str(root)
    cfg.sources.datetime = cfg.sources.hydro_datetime = "2019-01-01/2019-12-31"
    run_pipeline(cfg, ["discover", "ingest", "sbas"])
    store = ProductStore(cfg.store.url)
    ifg = store.open("ingest", f"ifg/{frame}")
    assert ifg.attrs["n_unreadable_assets"] == 1
    (named,) = json.loads(ifg.attrs["unreadable_assets"])
    assert named.removeprefix("file://") == str(victim)
    row = list(ifg["item_id"].values).index(item["id"])
    assert np.isnan(ifg["unw_phase"].values[row]).all()
    out = store.open("sbas", frame)
    assert out.attrs["n_dropped_pairs"] == 1
    assert json.loads(out.attrs["dropped_pairs"]) == [item["id"]]
    assert out.attrs["n_network_components"] == 1
    assert int(out["n_pairs"].max()) == ifg.sizes["pair"] - 1
    assert np.isfinite(out["velocity"].values).mean() > 0.5
