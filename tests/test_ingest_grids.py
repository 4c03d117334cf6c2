"""Ingest of pairs on different extents: one frame grid, windowed reads, the adapter's rules.

Fixtures are small UTM (EPSG:32650, 40 m) GeoTIFFs with no-data 0, on three different but
lattice-aligned extents, with items in the schema of :mod:`ncp_subsidence.io.products`. The
truth is the files' own pixels: the ingested cube must hold exactly them, NaN elsewhere.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import dask
import numpy as np
import pystac
import pytest
import rasterio
import xarray as xr
from dask.callbacks import Callback
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds

from ncp_subsidence.errors import DataError
from ncp_subsidence.io.projection import xy_to_lonlat
from ncp_subsidence.io.readers import Grid, frame_grid, read_ifg_stack

EPSG = 32650
PIXEL = 40.0
WEST, NORTH = 500_000.0, 4_200_000.0
#: (west, north, rows, cols) of the three extents, whole pixels apart
EXTENTS = {
    "A": (WEST, NORTH, 30, 40),
    "B": (WEST + 5 * PIXEL, NORTH - 3 * PIXEL, 32, 38),
    "C": (WEST - 4 * PIXEL, NORTH + 2 * PIXEL, 28, 36),
}
#: union: west of C, north of C, east of B, south of B
UNION = Grid(EPSG, (WEST - 160, NORTH - 1400, WEST + 1720, NORTH + 80), PIXEL, (37, 47))
#: intersection: west of B, north of B, east of C, south of C
INTERSECTION = Grid(EPSG, (WEST + 200, NORTH - 1040, WEST + 1280, NORTH - 120), PIXEL, (23, 27))
#: (extent, reference day, secondary day) of each pair, days after 2019-01-01
PAIRS = [("A", 0, 12), ("B", 0, 24), ("C", 12, 24), ("A", 12, 36)]


@pytest.fixture(autouse=True)
def _threads():
    with dask.config.set(scheduler="threads", num_workers=2):
        yield


def write_tif(path: Path, data: np.ndarray, west: float, north: float, **profile) -> None:
    """A tiled single-band GeoTIFF (16 x 16 blocks) at (west, north), 40 m pixels."""
    options = {
        "driver": "GTiff",
        "height": data.shape[0],
        "width": data.shape[1],
        "count": 1,
        "dtype": data.dtype,
        "crs": f"EPSG:{EPSG}",
        "transform": from_origin(west, north, PIXEL, PIXEL),
        "nodata": 0,
        "tiled": True,
        "blockxsize": 16,
        "blockysize": 16,
        **profile,
    }
    with rasterio.open(path, "w", **options) as dst:
        dst.write(data, 1)


def make_item(
    item_id: str,
    ref_day: int,
    sec_day: int,
    west: float,
    north: float,
    shape: tuple[int, int],
    assets: dict[str, Path],
    epsg: int = EPSG,
    fmt: str = "cog",
) -> pystac.Item:
    """An interferogram item in the project's schema (``io/products/__init__.py``)."""
    t0 = dt.datetime(2019, 1, 1, 10, 30, tzinfo=dt.UTC)
    start, end = t0 + dt.timedelta(days=ref_day), t0 + dt.timedelta(days=sec_day)
    ny, nx = shape
    proj_bbox = [west, north - ny * PIXEL, west + nx * PIXEL, north]
    w, s, e, n = transform_bounds(f"EPSG:{epsg}", "EPSG:4326", *proj_bbox)
    item = pystac.Item(
        id=item_id,
        geometry={
            "type": "Polygon",
            "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]],
        },
        bbox=[w, s, e, n],
        datetime=start,
        properties={
            "start_datetime": start.isoformat(),
            "end_datetime": end.isoformat(),
            "ncp:format": fmt,
            "ncp:frame": "U50",
            "sat:orbit_state": "ascending",
            "sat:relative_orbit": 40,
            "sar:instrument_mode": "IW",
            "sar:frequency_band": "C",
            "sar:center_frequency": 5.405,
            "sar:polarizations": ["VV"],
            "sar:product_type": "INSAR_GAMMA",
            "platform": "sentinel-1a",
            "constellation": "sentinel-1",
            "proj:code": f"EPSG:{epsg}",
            "proj:shape": [ny, nx],
            "proj:transform": [PIXEL, 0.0, west, 0.0, -PIXEL, north, 0.0, 0.0, 1.0],
            "proj:bbox": proj_bbox,
        },
    )
    roles = {"unw_phase": ["data"], "corr": ["data", "coherence"]}
    for key, path in assets.items():
        item.add_asset(
            key,
            pystac.Asset(
                str(path),
                media_type=pystac.MediaType.GEOTIFF,
                roles=roles.get(key, ["metadata", "geometry"]),
            ),
        )
    return item


def pair_arrays(k: int, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Phase (rad) and coherence of pair ``k``, with a block of no-data (0) in both."""
    rng = np.random.default_rng(k)
    phase = rng.normal(0.0, 3.0, shape).astype(np.float32)
    phase[phase == 0] = 0.5
    coherence = rng.uniform(0.1, 1.0, shape).astype(np.float32)
    phase[3:7, 5:9] = 0.0
    coherence[3:7, 5:9] = 0.0
    return phase, coherence


@pytest.fixture(scope="module")
def frame(tmp_path_factory):
    """Four pairs on three extents: items and each pair's phase/coherence and extent."""
    root = tmp_path_factory.mktemp("utm-frame")
    items, truth = [], []
    for k, (extent, a, b) in enumerate(PAIRS):
        west, north, ny, nx = EXTENTS[extent]
        phase, coherence = pair_arrays(k, (ny, nx))
        paths = {"unw_phase": root / f"p{k}_unw_phase.tif", "corr": root / f"p{k}_corr.tif"}
        write_tif(paths["unw_phase"], phase, west, north)
        write_tif(paths["corr"], coherence, west, north)
        items.append(make_item(f"U50_{k}", a, b, west, north, (ny, nx), paths))
        truth.append((extent, phase, coherence))
    return {"root": root, "items": items, "truth": truth}


def expected_on(grid: Grid, extent: str, raster: np.ndarray) -> np.ndarray:
    """``raster`` (no-data 0 -> NaN) placed on ``grid``, NaN where it has no pixel."""
    west, north, ny, nx = EXTENTS[extent]
    out = np.full(grid.shape, np.nan, dtype=np.float32)
    row = round((grid.bounds[3] - north) / PIXEL)
    col = round((west - grid.bounds[0]) / PIXEL)
    values = np.where(raster == 0, np.nan, raster).astype(np.float32)
    r0, c0 = max(row, 0), max(col, 0)
    r1, c1 = min(row + ny, grid.shape[0]), min(col + nx, grid.shape[1])
    out[r0:r1, c0:c1] = values[r0 - row : r1 - row, c0 - col : c1 - col]
    return out


def assert_grid(ds, grid: Grid) -> None:
    assert (ds.sizes["y"], ds.sizes["x"]) == grid.shape
    y, x = grid.coords()
    np.testing.assert_array_equal(ds["y"].values, y)
    np.testing.assert_array_equal(ds["x"].values, x)
    assert ds.attrs["crs"] == f"EPSG:{EPSG}"
    assert ds["x"].attrs["units"] == "m" and ds["y"].attrs["units"] == "m"


@pytest.mark.parametrize("how, grid", [("union", UNION), ("intersection", INTERSECTION)])
def test_frame_grid_union_and_intersection(frame, how, grid):
    assert frame_grid(frame["items"], how) == grid
    ds, failures = read_ifg_stack(frame["items"], grid=how, chunks=(16, 16))
    assert len(failures) == 0
    assert_grid(ds, grid)
    assert ds.attrs["frame_grid"] == how and ds.attrs["n_resampled_pairs"] == 0
    # every pair, with its dates
    assert list(ds["item_id"].values) == [i.id for i in frame["items"]]
    for k, (_, a, b) in enumerate(PAIRS):
        t0 = np.datetime64("2019-01-01T10:30", "ns")
        assert ds["reference"].values[k] == t0 + np.timedelta64(a, "D")
        assert ds["secondary"].values[k] == t0 + np.timedelta64(b, "D")
    # the files' pixels, NaN where they have no data or no pixel; no no-data read as 0
    phase, coherence = ds["unw_phase"].values, ds["coherence"].values
    for k, (extent, file_phase, file_coherence) in enumerate(frame["truth"]):
        np.testing.assert_array_equal(phase[k], expected_on(grid, extent, file_phase))
        np.testing.assert_array_equal(coherence[k], expected_on(grid, extent, file_coherence))
    assert not np.any(phase == 0) and not np.any(coherence == 0)


def test_union_is_nan_outside_each_pair_and_read_lazily(frame):
    with dask.config.set(scheduler="sync"):
        computed = []

        class Count(Callback):
            def _pretask(self, key, dsk, state):
                computed.append(key)

        with Count():
            ds, _ = read_ifg_stack(frame["items"], chunks=(16, 16))
        assert computed == []  # building the graph reads no pixel
    phase = ds["unw_phase"].values
    y, x = UNION.coords()
    for k, (extent, _, _) in enumerate(frame["truth"]):
        west, north, ny, nx = EXTENTS[extent]
        inside = (
            (x[None, :] > west)
            & (x[None, :] < west + nx * PIXEL)
            & (y[:, None] < north)
            & (y[:, None] > north - ny * PIXEL)
        )
        assert np.isnan(phase[k][~inside]).all()
        assert np.isfinite(phase[k][inside]).sum() == inside.sum() - 16  # the 4 x 4 no-data block


def test_same_result_for_two_chunkings(frame):
    a, _ = read_ifg_stack(frame["items"], chunks=(8, 8))
    b, _ = read_ifg_stack(frame["items"], chunks=(16, 24))
    assert a["unw_phase"].data.chunks[1:] == ((8,) * 4 + (5,), (8,) * 5 + (7,))
    for var in ("unw_phase", "coherence"):
        np.testing.assert_array_equal(a[var].values, b[var].values)


@pytest.fixture(scope="module")
def shifted(frame):
    """A fifth pair a quarter pixel (10 m) off the lattice, listed first."""
    west, north, ny, nx = EXTENTS["A"]
    phase, coherence = pair_arrays(9, (ny, nx))
    root = frame["root"]
    paths = {"unw_phase": root / "shift_unw_phase.tif", "corr": root / "shift_corr.tif"}
    write_tif(paths["unw_phase"], phase, west + 10, north)
    write_tif(paths["corr"], coherence, west + 10, north)
    item = make_item("U50_shifted", 24, 36, west + 10, north, (ny, nx), paths)
    return [item, *frame["items"]], phase


def test_off_lattice_pair_is_an_error_unless_resampled(frame, shifted):
    items, shifted_phase = shifted
    with pytest.raises(DataError) as err:
        read_ifg_stack(items)
    message = str(err.value)
    assert "\n" not in message
    for part in ("U50_shifted", "EPSG:32650", "pixel 40", "500010", "ingest.resample: true"):
        assert part in message, part
    ds, _ = read_ifg_stack(items, resample=True, chunks=(16, 16))
    # the frame grid keeps the lattice most pairs share, not the first item's
    assert_grid(ds, UNION)
    assert ds.attrs["n_resampled_pairs"] == 1
    assert json.loads(ds.attrs["resampled_items"]) == ["U50_shifted"]
    phase = ds["unw_phase"].values
    for k, (extent, file_phase, _) in enumerate(frame["truth"]):  # the others exact, in order
        np.testing.assert_array_equal(phase[k + 1], expected_on(UNION, extent, file_phase))
    # nearest neighbour: the resampled phase holds only the file's own values
    resampled = phase[0][np.isfinite(phase[0])]
    assert resampled.size > 0.8 * shifted_phase.size
    assert np.isin(resampled, shifted_phase[shifted_phase != 0]).all()
    coherence = ds["coherence"].values[0]
    assert np.isfinite(coherence).sum() > 0.8 * shifted_phase.size  # bilinear, interior kept


@pytest.mark.parametrize("what", ["origin", "crs"])
def test_file_disagreeing_with_its_item_is_a_one_line_error(frame, tmp_path, what):
    west, north, ny, nx = EXTENTS["B"]
    phase, coherence = pair_arrays(7, (ny, nx))
    paths = {"unw_phase": tmp_path / "bad_unw_phase.tif", "corr": tmp_path / "bad_corr.tif"}
    # one pixel north: still on the lattice, so only the header check can see it
    file_north = north + PIXEL if what == "origin" else north
    crs = "EPSG:32651" if what == "crs" else f"EPSG:{EPSG}"
    write_tif(paths["unw_phase"], phase, west, file_north, crs=crs)
    write_tif(paths["corr"], coherence, west, north)
    bad = make_item("U50_bad", 36, 48, west, north, (ny, nx), paths)
    with pytest.raises(DataError) as err:
        read_ifg_stack([*frame["items"], bad], on_error="nan")  # not an unreadable asset
    message = str(err.value)
    assert "\n" not in message
    assert "bad_unw_phase.tif" in message and "U50_bad" in message
    assert ("4199920" in message) if what == "origin" else ("EPSG:32651" in message)
    assert "rebuild the item's proj:code/proj:transform/proj:shape" in message


def test_duplicated_pair_is_kept_once_and_counted(frame):
    twin = frame["items"][1].clone()
    twin.id = "U50_1_republished"
    ds, _ = read_ifg_stack([*frame["items"], twin])
    assert ds.sizes["pair"] == len(frame["items"])
    assert ds.attrs["n_duplicate_pairs"] == 1
    assert json.loads(ds.attrs["duplicate_items"]) == ["U50_1_republished"]
    assert "U50_1_republished" not in ds["item_id"].values


class ZeroNodataAdapter:
    """A LiCSAR-like adapter: 0 means no data in phase, coherence is uint8 x 255."""

    name = "zero-nodata"
    phase_asset = "unw"
    coherence_asset = "cc"

    def canonical_block(self, phase, coherence):
        phase = np.where(phase == 0, np.nan, phase)
        coherence = np.where(coherence == 0, np.nan, coherence / 255.0)
        return phase.astype(np.float32), coherence.astype(np.float32)

    def geometry(self, items, grid):
        return None

    def attrs(self):
        return {}


def test_adapter_canonical_block_applied_chunk_by_chunk(tmp_path):
    items, truth = [], []
    for k, (extent, a, b) in enumerate(PAIRS[:3]):
        west, north, ny, nx = EXTENTS[extent]
        phase, coherence = pair_arrays(k, (ny, nx))
        cc = np.round(coherence * 255).astype(np.uint8)
        paths = {"unw": tmp_path / f"z{k}_unw.tif", "cc": tmp_path / f"z{k}_cc.tif"}
        write_tif(paths["unw"], phase, west, north, nodata=None)  # 0 untagged, as LiCSAR
        write_tif(paths["cc"], cc, west, north, nodata=None)
        items.append(make_item(f"Z_{k}", a, b, west, north, (ny, nx), paths, fmt="licsar"))
        truth.append((extent, phase, cc))
    ds, _ = read_ifg_stack(items, adapter=ZeroNodataAdapter(), chunks=(16, 16))
    for k, (extent, phase, cc) in enumerate(truth):
        np.testing.assert_array_equal(ds["unw_phase"].values[k], expected_on(UNION, extent, phase))
        want = expected_on(UNION, extent, cc.astype(np.float32)) / np.float32(255.0)
        np.testing.assert_allclose(ds["coherence"].values[k], want, rtol=1e-6, equal_nan=True)
    assert np.nanmax(ds["coherence"].values) <= 1.0


def _save_catalog(items: list[pystac.Item], root: Path) -> str:
    catalog = pystac.Catalog("utm", "a UTM frame on three extents")
    collection = pystac.Collection("utm-u50", "U50", pystac.Extent.from_items(items))
    for item in items:
        collection.add_item(item.clone())
    catalog.add_child(collection)
    catalog.normalize_hrefs(str(root))
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    return str(root / "catalog.json")


def test_stage_ingests_a_utm_frame_with_the_adapter_and_geometry(
    frame, tiny_twin, tmp_path_factory
):
    from conftest import twin_config

    from ncp_subsidence.io.stores import ProductStore
    from ncp_subsidence.pipeline import run_pipeline

    tmp = tmp_path_factory.mktemp("utm-stage")
    west, north, ny, nx = EXTENTS["A"]
    incidence = np.linspace(32.0, 42.0, nx, dtype=np.float32)[None, :].repeat(ny, 0)
    lv_theta = np.radians(90.0 - incidence).astype(np.float32)
    lv_phi = np.full((ny, nx), np.radians(-168.0), dtype=np.float32)
    geometry = {"lv_theta": tmp / "lv_theta.tif", "lv_phi": tmp / "lv_phi.tif"}
    write_tif(geometry["lv_theta"], lv_theta, west, north, nodata=np.nan)
    write_tif(geometry["lv_phi"], lv_phi, west, north, nodata=np.nan)
    items = []
    for item in frame["items"]:
        item = item.clone()
        for key, path in geometry.items():
            item.add_asset(key, pystac.Asset(str(path), roles=["metadata", "geometry"]))
        items.append(item)
    twin = items[2].clone()
    twin.id = "U50_2_again"
    url = _save_catalog([*items, twin], tmp / "catalog")
    source = {"kind": "static_catalog", "url": url, "collections": ["utm-u50"]}
    # the twin's stations lie outside this small frame (ingest keeps only those inside one):
    # one of its MIDAS lines moved to the frame's centre
    line = next(
        ln
        for ln in (Path(tiny_twin.root) / "gnss" / "midas.IGS14.txt").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ).split()
    lon, lat = xy_to_lonlat(f"EPSG:{EPSG}", west + PIXEL * nx / 2, north - PIXEL * ny / 2)
    line[-3:-1] = [f"{float(lat):.6f}", f"{float(lon):.6f}"]
    midas = tmp / "midas.txt"
    midas.write_text(" ".join(line) + "\n")
    cfg = twin_config(
        tiny_twin,
        tmp / "store",
        sources={"interferograms": {"U50": source}, "gnss": {"kind": "file", "url": str(midas)}},
    )
    run_pipeline(cfg, ["discover", "ingest"])
    assert ProductStore(cfg.store.url).open("ingest", "gnss").sizes["station"] == 1
    ds = ProductStore(cfg.store.url).open("ingest", "ifg/U50")
    assert_grid(ds, UNION)
    assert ds.rio.crs.to_epsg() == EPSG  # UTM stays UTM
    assert ds.attrs["ifg_format"] == "cog" and ds.attrs["provider"].startswith("plain COGs")
    assert ds.attrs["n_duplicate_pairs"] == 1 and ds.attrs["n_resampled_pairs"] == 0
    assert ds.attrs["n_pairs"] == ds.sizes["pair"] == 4
    order = np.argsort([b for _, _, b in PAIRS], kind="stable")  # by secondary date
    phase = ds["unw_phase"].values
    for row, k in enumerate(order):
        extent, file_phase, _ = frame["truth"][k]
        np.testing.assert_array_equal(phase[row], expected_on(UNION, extent, file_phase))
    np.testing.assert_allclose(
        ds["incidence"].values, expected_on(UNION, "A", incidence), atol=1e-4
    )
    assert np.isnan(ds["los_up"].values).sum() == UNION.shape[0] * UNION.shape[1] - ny * nx
    # a format the items contradict is refused, naming both
    bad = twin_config(
        tiny_twin,
        tmp / "store-bad",
        sources={"interferograms": {"U50": {**source, "format": "licsar"}}},
    )
    with pytest.raises(DataError, match=r"format is 'licsar' but its items declare.*\['cog'\]"):
        run_pipeline(bad, ["discover", "ingest"])


def test_raster_on_grid_copies_on_the_lattice_and_warps_off_it(tmp_path):
    from ncp_subsidence.io.readers import read_raster_on_grid

    west, north, ny, nx = EXTENTS["B"]
    values = np.arange(1, ny * nx + 1, dtype=np.float32).reshape(ny, nx)
    write_tif(tmp_path / "on.tif", values, west, north)
    np.testing.assert_array_equal(
        read_raster_on_grid(str(tmp_path / "on.tif"), UNION), expected_on(UNION, "B", values)
    )
    # a quarter pixel east: bilinear between the file's columns, NaN where it has no pixel
    write_tif(tmp_path / "off.tif", values, west + 10, north)
    warped = read_raster_on_grid(str(tmp_path / "off.tif"), UNION)
    inside = np.isfinite(expected_on(UNION, "B", values))
    assert np.isnan(warped[~inside]).all()
    assert np.isfinite(warped[inside]).mean() > 0.9
    assert np.nanmin(warped) >= 1 and np.nanmax(warped) <= ny * nx


@pytest.mark.parametrize("pairs_per_read", [1, 3, None])
def test_lattice_reads_in_pair_blocks_equal_rasterio_and_stackstac(
    frame, monkeypatch, pairs_per_read
):
    """The windowed lattice reader, with the pair axis of each window read in blocks of 1 or 3
    pairs (merged again per window) or whole (``None``: windows enough to spread the reads),
    gives the files' pixels bit for bit, and the same stack as stackstac's reads of the same
    items (the reader it replaced)."""
    from ncp_subsidence.io import readers

    chunks = (16, 16)
    n_windows = 3 * 3  # 37 x 47 pixels in 16 x 16 windows
    if pairs_per_read is None:
        monkeypatch.setattr(readers, "LATTICE_SPREAD_WINDOWS", n_windows)
    else:
        monkeypatch.setattr(readers, "LATTICE_SPREAD_WINDOWS", n_windows + 1)
        monkeypatch.setattr(readers, "LATTICE_READ_BYTES", pairs_per_read * 2 * 16 * 16 * 4)
    ds, failures = read_ifg_stack(frame["items"], chunks=chunks)
    assert len(failures) == 0
    graph = ds["unw_phase"].data.__dask_graph__()
    reads = [k for k in graph if isinstance(k, tuple) and str(k[0]).startswith("read-lattice-")]
    blocks = 1 if pairs_per_read is None else -(-len(PAIRS) // pairs_per_read)
    assert len(reads) == blocks * n_windows
    assert ds["unw_phase"].data.chunks[0] == (len(PAIRS),)  # written with the whole pair axis
    phase, coherence = ds["unw_phase"].values, ds["coherence"].values
    for k, (extent, file_phase, file_coherence) in enumerate(frame["truth"]):
        np.testing.assert_array_equal(phase[k], expected_on(UNION, extent, file_phase))
        np.testing.assert_array_equal(coherence[k], expected_on(UNION, extent, file_coherence))
    old = readers._stack_assets(
        frame["items"], ["unw_phase", "corr"], UNION, "nearest", chunks, "fail"
    ).compute()
    np.testing.assert_array_equal(phase, old[:, 0])
    np.testing.assert_array_equal(coherence, old[:, 1])


def test_sized_chunks_are_whole_tiles_of_the_files(tmp_path):
    """Sized chunks round to whole tiles of the files (a window cutting tiles decodes each cut
    tile again); configured chunks, strips and unknown blocks are left as sized."""
    from ncp_subsidence.config import IngestOptions
    from ncp_subsidence.io.readers import raster_block
    from ncp_subsidence.stages.ingest import spatial_chunks

    opts = IngestOptions()  # chunk_mb 128
    assert spatial_chunks(673, opts) == (208, 208)  # the large preset's frames, untiled sizing
    assert spatial_chunks(673, opts, block=(256, 256)) == (256, 256)
    assert spatial_chunks(111, opts, block=(256, 256)) == (512, 512)  # 544 -> two tiles
    # rounding up by more than a quarter would outgrow chunk_mb: the side stays as sized
    assert spatial_chunks(100_000, opts, block=(512, 512)) == (64, 64)
    assert spatial_chunks(1_500, opts, block=(256, 256)) == (144, 144)  # 256 would be 1.8x
    assert spatial_chunks(900, opts, block=(256, 256)) == (192, 192)  # 256 would be 1.33x
    assert spatial_chunks(673, opts, block=(1, 800)) == (208, 208)  # strips: as sized
    assert spatial_chunks(673, opts, block=None) == (208, 208)
    fixed = IngestOptions(chunk_y=100, chunk_x=120)
    assert spatial_chunks(673, fixed, block=(256, 256)) == (100, 120)
    # the block comes from the file: tiled and stripped GeoTIFFs, a missing file
    data = np.zeros((600, 700), np.float32)
    for name, extra, block in (
        ("tiled.tif", {"tiled": True, "blockxsize": 128, "blockysize": 128}, (128, 128)),
        ("strips.tif", {}, None),
    ):
        path = tmp_path / name
        with rasterio.open(
            path, "w", driver="GTiff", width=700, height=600, count=1, dtype="float32",
            crs="EPSG:4326", transform=from_origin(116.0, 40.0, 0.01, 0.01), **extra,
        ) as dst:  # fmt: skip
            dst.write(data, 1)
        got = raster_block(str(path))
        if block is not None:
            assert got == block
        else:
            assert got[1] == 700 and got[0] < 600  # strips span the width
    assert raster_block(str(tmp_path / "missing.tif")) is None


def _count_opens(monkeypatch):
    """How many files ``readers._headers`` opens (the header and completeness checks)."""
    from ncp_subsidence.io import readers

    opened, real = [], readers._headers

    def counting(run, *args, **kwargs):
        opened.extend(readers._href(item.assets[key]) for item, key in run)
        return real(run, *args, **kwargs)

    monkeypatch.setattr(readers, "_headers", counting)
    return opened


def test_headers_opened_ahead_give_the_same_stack_without_opening_again(frame, monkeypatch):
    from ncp_subsidence.io.readers import open_headers

    items = frame["items"]
    want, want_failures = read_ifg_stack(items, chunks=(16, 16))
    ahead = open_headers(items, ["unw_phase", "corr"])
    assert sorted(ahead) == sorted(
        str(i.assets[k].href) for i in items for k in ("unw_phase", "corr")
    )
    opens = _count_opens(monkeypatch)
    got, failures = read_ifg_stack(items, chunks=(16, 16), opened=ahead)
    assert opens == []  # every header came from the ones opened ahead
    xr.testing.assert_identical(got, want)
    assert failures.attrs() == want_failures.attrs()
    # a partial set: the rest is opened as usual
    some = {h: v for h, v in ahead.items() if "p0_" in h}
    got, _ = read_ifg_stack(items, chunks=(16, 16), opened=some)
    assert sorted(opens) == sorted(h for h in ahead if "p0_" not in h)
    xr.testing.assert_identical(got, want)


def test_a_file_that_failed_ahead_is_judged_as_if_opened_then(frame, tmp_path):
    from ncp_subsidence.io.readers import open_headers

    broken = tmp_path / "broken_unw_phase.tif"
    broken.write_bytes(Path(frame["items"][1].assets["unw_phase"].href).read_bytes()[:300])
    items = [i.clone() for i in frame["items"]]
    items[1].assets["unw_phase"].href = str(broken)
    ahead = open_headers(items, ["unw_phase", "corr"])
    assert isinstance(ahead[str(broken)], Exception)
    for policy in ("fail", "nan"):
        outcomes = []
        for opened in (None, ahead):
            try:
                ds, failures = read_ifg_stack(
                    items, chunks=(16, 16), on_error=policy, opened=opened
                )
                outcomes.append((ds, failures.attrs()))
            except DataError as err:
                outcomes.append(str(err))
        if policy == "fail":
            assert isinstance(outcomes[0], str) and outcomes[0] == outcomes[1]
            assert "broken_unw_phase.tif" in outcomes[0]
        else:
            xr.testing.assert_identical(outcomes[0][0], outcomes[1][0])
            assert outcomes[0][1] == outcomes[1][1] and outcomes[0][1]["n_unreadable_assets"] == 1
