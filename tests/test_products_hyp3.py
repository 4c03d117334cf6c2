"""ASF HyP3 adapter: real product tiles and real .txt metadata (shared/data/real/hyp3), product
zips built from them on different extents, geometry onto a grid, and the one-line errors."""

from __future__ import annotations

import logging
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from ncp_subsidence.errors import DataError
from ncp_subsidence.io.products import hyp3
from ncp_subsidence.io.readers import Grid, read_ifg_stack

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "hyp3"
LAYERS = ("unw_phase", "corr", "lv_theta", "lv_phi")
BURST_TXT = REAL / "S1_136232_IW2_20200604_20200616_VV_INT80_663F.txt"


# --------------------------------------------------------------------------- builders


def crop(layer: str, window: Window, dst: Path, crs: str | None = None) -> Path:
    """A window of a real tile, written as its own GeoTIFF (its own transform)."""
    with rasterio.open(REAL / f"insar_{layer}.tif") as src:
        data = src.read(1, window=window)
        profile = src.profile.copy()
        profile.update(
            width=data.shape[1],
            height=data.shape[0],
            transform=src.window_transform(window),
            blockxsize=None,
            blockysize=None,
            tiled=False,
        )
        if crs:
            profile["crs"] = crs
    profile = {k: v for k, v in profile.items() if v is not None}
    dst.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data, 1)
    return dst


def burst_txt(d1: str, d2: str, baseline: float, text: str | None = None) -> str:
    """The real burst .txt with the granule dates and baseline of another pair of the track."""
    lines = []
    for line in (text or BURST_TXT.read_text()).splitlines():
        if line.startswith("Reference Granule:"):
            line = f"Reference Granule: S1_136232_IW2_{d1}T022315_VV_7C85-BURST"
        elif line.startswith("Secondary Granule:"):
            line = f"Secondary Granule: S1_136232_IW2_{d2}T022316_VV_5D11-BURST"
        elif line.startswith("Baseline:"):
            line = f"Baseline: {baseline}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def product_name(d1: str, d2: str) -> str:
    return f"S1_136232_IW2_{d1}_{d2}_VV_INT80_{(int(d1) + int(d2)) % 0xFFFF:04X}"


def tile_folder(folder: Path, name: str) -> Path:
    """Where :func:`make_zip` keeps the tiles it zipped (beside ``folder``, not in it)."""
    return folder.with_name(folder.name + "_tiles") / name


def make_zip(
    folder: Path,
    name: str,
    window: Window,
    txt: str | None,
    layers: tuple[str, ...] = LAYERS,
    crs: str | None = None,
) -> Path:
    """A HyP3 product zip ``<name>.zip`` holding ``<name>/<name>_<layer>.tif`` and the .txt."""
    tiles = tile_folder(folder, name)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.zip"
    with zipfile.ZipFile(path, "w") as z:
        for layer in layers:
            tif = crop(layer, window, tiles / f"{name}_{layer}.tif", crs)
            z.write(tif, f"{name}/{name}_{layer}.tif")
        if txt is not None:
            z.writestr(f"{name}/{name}.txt", txt)
    return path


#: three pairs of one track on different extents: (d1, d2, baseline, window)
PAIRS = (
    ("20200604", "20200616", -66.1, Window(0, 0, 8, 8)),
    ("20200616", "20200628", 12.5, Window(1, 2, 8, 8)),
    ("20200604", "20200628", -53.6, Window(2, 1, 8, 9)),
)


def make_pairs(folder: Path) -> list[Path]:
    return [
        make_zip(folder, product_name(d1, d2), w, burst_txt(d1, d2, b)) for d1, d2, b, w in PAIRS
    ]


def full_grid() -> Grid:
    with rasterio.open(REAL / "insar_unw_phase.tif") as src:
        b = src.bounds
        return Grid(32611, (b.left, b.bottom, b.right, b.top), src.res[0], src.shape)


# --------------------------------------------------------------------------- real files


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "S1AC_20251001T204513_20251007T204359_HHR006_INT40_G_ueF_1DBE.txt",
            {
                "reference": "2025-10-01T20:45:13",
                "secondary": "2025-10-07T20:43:59",
                "baseline": 48.0195,
                "heading": -18.1505111,
                "orbit_state": "ascending",
                "relative_orbit": 90,
                "platform": "sentinel-1a",
                "polarization": "HH",
                "product_type": "INSAR_GAMMA",
                "looks": (10, 2),
            },
        ),
        (
            "S1_044_000000s1n00-093117s2n01-093118s3n01_IW_20250718_20250730_VV_INT80_B4FA.txt",
            {
                "reference": "2025-07-18T17:21:22",
                "secondary": "2025-07-30T17:21:21",
                "baseline": 33.88969537726557,
                "heading": -164.275514873119,
                "orbit_state": "descending",
                "relative_orbit": 44,
                "platform": "sentinel-1a",
                "polarization": "VV",
                "product_type": "INSAR_ISCE_MULTI_BURST",
                "looks": (20, 4),
            },
        ),
        (
            "S1_056072_IW2_20220814_20220907_VV_INT80_E09B.txt",
            {
                "reference": "2022-08-14T12:58:29",
                "secondary": "2022-09-07T12:58:30",
                "baseline": 158.57439820410497,
                "heading": -13.3101122688203,
                "orbit_state": "ascending",
                "relative_orbit": 27,
                "platform": "sentinel-1a",
                "polarization": "VV",
                "product_type": "INSAR_ISCE_BURST",
                "looks": (20, 4),
            },
        ),
        (
            "S1_136232_IW2_20200604_20200616_VV_INT80_663F.txt",
            {
                "reference": "2020-06-04T02:23:15",
                "secondary": "2020-06-16T02:23:16",
                "baseline": -66.10716474087386,
                "heading": -167.4428091316586,
                "orbit_state": "descending",
                "relative_orbit": 64,
                "platform": "sentinel-1a",
                "polarization": "VV",
                "product_type": "INSAR_ISCE_BURST",
                "looks": (20, 4),
            },
        ),
    ],
)
def test_real_metadata_files(name, expected):
    meta = hyp3.parse_metadata((REAL / name).read_text(), name)
    assert meta.reference_datetime.isoformat() == expected["reference"] + "+00:00"
    assert meta.secondary_datetime.isoformat() == expected["secondary"] + "+00:00"
    assert meta.baseline == expected["baseline"]
    assert meta.heading == expected["heading"]
    assert meta.orbit_state == expected["orbit_state"]
    assert meta.relative_orbit == expected["relative_orbit"]
    assert meta.platform == expected["platform"]
    assert meta.polarization == expected["polarization"]
    assert meta.product_type == expected["product_type"]
    assert (meta.range_looks, meta.azimuth_looks) == expected["looks"]


def test_real_metadata_granules_and_reference_point():
    gamma = hyp3.parse_metadata(
        (REAL / "S1AC_20251001T204513_20251007T204359_HHR006_INT40_G_ueF_1DBE.txt").read_text(),
        "gamma",
    )
    # reference and secondary (S1A and S1C) fly the same relative orbit 90
    sec = gamma.secondary_granules[0]
    assert sec.mission == "C" and hyp3.relative_orbit(sec.mission, sec.absolute_orbit) == 90
    assert gamma.reference_point == {
        "x": 515679.7018,
        "y": 6703535.9184,
        "latitude": 60.46772014,
        "longitude": -44.7148542,
        "line": 497.0,
        "pixel": 5724.0,
        "phase": 3.32844,
    }
    multi = hyp3.parse_metadata(
        (
            REAL
            / "S1_044_000000s1n00-093117s2n01-093118s3n01_IW_20250718_20250730_VV_INT80_B4FA.txt"
        ).read_text(),
        "multi",
    )
    assert [g.burst_id for g in multi.reference_granules] == [93118, 93117]
    assert [g.swath for g in multi.secondary_granules] == ["IW3", "IW2"]
    assert multi.reference_point == {}


def test_real_tiles_read_through_an_item(tmp_path):
    """A product folder of the real tiles: proj fields and values equal what rasterio reads."""
    name = product_name("20200604", "20200616")
    folder = tmp_path / name
    folder.mkdir()
    for layer in LAYERS:
        shutil.copy(REAL / f"insar_{layer}.tif", folder / f"{name}_{layer}.tif")
    (folder / f"{name}.txt").write_text(BURST_TXT.read_text())
    (item,) = hyp3.items_from_source(str(folder))
    p = item.properties
    with rasterio.open(REAL / "insar_unw_phase.tif") as src:
        assert src.crs.to_epsg() == 32611 and src.res == (80.0, 80.0) and src.nodata == 0
        assert p["proj:code"] == "EPSG:32611"
        assert p["proj:shape"] == [10, 10]
        assert p["proj:transform"] == list(src.transform)[:6]
        assert p["proj:transform"][0] == 80.0 and p["proj:transform"][4] == -80.0
        assert p["proj:bbox"] == list(src.bounds)
        raw = src.read(1)
    # WGS84 footprint: UTM 11N near 35.8 N, 118.2 W
    west, south, east, north = item.bbox
    assert -118.3 < west < east < -118.1 and 35.7 < south < north < 35.9
    assert p["ncp:format"] == "hyp3" and p["ncp:frame"] == "D064"
    assert p["hyp3:baseline"] == -66.10716474087386
    assert p["hyp3:heading"] == -167.4428091316586
    assert p["sat:relative_orbit"] == 64 and p["sat:orbit_state"] == "descending"

    ds, failures = read_ifg_stack([item], chunks=(10, 10))
    assert not failures
    phase = ds["unw_phase"].values[0]
    coherence = ds["coherence"].values[0]
    phase, coherence = hyp3.ADAPTER.canonical_block(phase, coherence)
    expected = np.where(raw == 0, np.nan, raw).astype(np.float32)
    assert np.isnan(phase[8, 4]) and np.isnan(phase[8, 9])  # the file's nodata 0
    np.testing.assert_array_equal(phase, expected)  # radians, unchanged
    with rasterio.open(REAL / "insar_corr.tif") as src:
        np.testing.assert_array_equal(coherence, src.read(1))
    assert np.nanmax(coherence) <= 1.0


def test_canonical_block_untagged_fill():
    phase = np.array([[0.0, 1.5], [0.0, np.nan]], dtype=np.float32)
    coherence = np.array([[0.0, 0.0], [0.4, np.nan]], dtype=np.float32)
    p, c = hyp3.ADAPTER.canonical_block(phase, coherence)
    assert np.isnan(p[0, 0]) and np.isnan(c[0, 0])  # both exactly 0: no data
    assert p[0, 1] == 1.5 and c[0, 1] == 0.0  # a zero coherence alone is data
    assert p[1, 0] == 0.0 and c[1, 0] == np.float32(0.4)  # a zero phase alone is data
    assert p.dtype == np.float32 and c.dtype == np.float32
    assert phase[0, 0] == 0.0 and coherence[0, 0] == 0.0  # the inputs are not modified
    # no untagged fill: the same values back (float32), whatever the input dtype
    p, c = hyp3.ADAPTER.canonical_block(phase[:, 1:].astype(np.float64), coherence[:, 1:])
    assert p.dtype == np.float32 and np.array_equal(p, phase[:, 1:], equal_nan=True)
    assert np.array_equal(c, coherence[:, 1:], equal_nan=True)


# --------------------------------------------------------------------------- zips


def test_zips_on_different_extents(tmp_path, caplog):
    zips = make_pairs(tmp_path)
    with caplog.at_level(logging.WARNING, logger="ncp_subsidence"):
        items = hyp3.items_from_source([str(z) for z in [*zips, zips[0]]])
    assert "1 pair(s) listed more than once" in caplog.text
    assert [i.id for i in items] == [
        product_name("20200604", "20200616"),
        product_name("20200604", "20200628"),
        product_name("20200616", "20200628"),
    ]
    by_id = {i.id: i for i in items}
    transforms = set()
    for (d1, d2, baseline, _), z in zip(PAIRS, zips):
        item = by_id[product_name(d1, d2)]
        name = item.id
        href = item.assets["unw_phase"].href
        assert href == f"/vsizip/{z}/{name}/{name}_unw_phase.tif"
        with rasterio.open(tile_folder(tmp_path, name) / f"{name}_unw_phase.tif") as src:
            assert item.properties["proj:transform"] == list(src.transform)[:6]
            assert item.properties["proj:shape"] == list(src.shape)
            assert item.properties["proj:bbox"] == list(src.bounds)
        transforms.add(tuple(item.properties["proj:transform"]))
        assert item.properties["start_datetime"].startswith(f"{d1[:4]}-{d1[4:6]}-{d1[6:]}T02:23:15")
        assert item.properties["end_datetime"].startswith(f"{d2[:4]}-{d2[4:6]}-{d2[6:]}T02:23:16")
        assert item.properties["hyp3:baseline"] == baseline
        assert set(item.assets) >= {"unw_phase", "corr", "lv_theta", "lv_phi", "metadata"}
        assert item.assets["corr"].roles == ["data", "coherence"]
    assert len(transforms) == 3  # every pair on its own extent


def test_zip_folder_and_glob(tmp_path):
    make_pairs(tmp_path / "zips")
    assert len(hyp3.items_from_source(str(tmp_path / "zips"))) == 3
    assert len(hyp3.items_from_source(str(tmp_path / "zips" / "*_20200628_*.zip"))) == 2


def test_geometry_first_valid_value_on_the_union(tmp_path):
    items = hyp3.items_from_source([str(z) for z in make_pairs(tmp_path)])
    grid = full_grid()
    geom = hyp3.ADAPTER.geometry(items, grid)
    with rasterio.open(REAL / "insar_lv_theta.tif") as src:
        theta = src.read(1).astype(np.float64)
    with rasterio.open(REAL / "insar_lv_phi.tif") as src:
        phi = src.read(1).astype(np.float64)
    covered = np.zeros(grid.shape, bool)
    for *_, w in PAIRS:
        covered[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] = True
    assert not covered.all()  # the corners no pair covers
    for name in ("incidence", "los_east", "los_north", "los_up"):
        assert geom[name].shape == grid.shape and geom[name].dtype == np.float32
        assert np.isnan(geom[name][~covered]).all()
    np.testing.assert_allclose(
        geom["incidence"][covered], (90.0 - np.degrees(theta))[covered], rtol=1e-5
    )
    np.testing.assert_allclose(geom["los_up"][covered], np.sin(theta)[covered], rtol=1e-5)
    np.testing.assert_allclose(
        geom["los_east"][covered], (np.cos(theta) * np.cos(phi))[covered], rtol=1e-5
    )
    assert hyp3.ADAPTER.geometry([], grid) is None
    assert hyp3.ADAPTER.attrs()["provider"] == "ASF HyP3"


# --------------------------------------------------------------------------- errors


def test_zip_without_unw_phase(tmp_path):
    name = product_name("20200604", "20200616")
    z = make_zip(
        tmp_path, name, Window(0, 0, 5, 5), burst_txt("20200604", "20200616", 1.0), ("corr",)
    )
    with pytest.raises(DataError, match="holds no \\*_unw_phase.tif") as err:
        hyp3.items_from_source(str(z))
    assert str(z) in str(err.value) and "\n" not in str(err.value)


def test_txt_without_granules(tmp_path):
    name = product_name("20200604", "20200616")
    text = "".join(
        line + "\n" for line in BURST_TXT.read_text().splitlines() if "Granule" not in line
    )
    z = make_zip(tmp_path, name, Window(0, 0, 5, 5), text)
    with pytest.raises(DataError, match="no 'Reference Granule:'") as err:
        hyp3.items_from_source(str(z))
    assert str(z) in str(err.value) and f"{name}.txt" in str(err.value)
    assert "\n" not in str(err.value)


def test_tracks_mixed(tmp_path):
    a = make_zip(
        tmp_path,
        product_name("20200604", "20200616"),
        Window(0, 0, 5, 5),
        burst_txt("20200604", "20200616", 1.0),
    )
    name = "S1_056072_IW2_20220814_20220907_VV_INT80_E09B"
    b = make_zip(tmp_path, name, Window(0, 0, 5, 5), (REAL / f"{name}.txt").read_text())
    for frame in (None, "D064"):  # --frame cannot join two tracks
        with pytest.raises(DataError, match="different frames mixed") as err:
            hyp3.items_from_source([str(a), str(b)], frame=frame)
        message = str(err.value)
        assert str(a) in message and str(b) in message and "\n" not in message
        assert (
            "descending relative orbit 64" in message and "ascending relative orbit 27" in message
        )


def test_utm_zones_mixed_unless_frame_given(tmp_path):
    a = make_zip(
        tmp_path,
        product_name("20200604", "20200616"),
        Window(0, 0, 5, 5),
        burst_txt("20200604", "20200616", 1.0),
    )
    b = make_zip(
        tmp_path,
        product_name("20200616", "20200628"),
        Window(0, 0, 5, 5),
        burst_txt("20200616", "20200628", 2.0),
        crs="EPSG:32612",
    )
    with pytest.raises(DataError, match="pass --frame ID") as err:
        hyp3.items_from_source([str(a), str(b)])
    assert "EPSG:32611" in str(err.value) and "EPSG:32612" in str(err.value)
    items = hyp3.items_from_source([str(a), str(b)], frame="ncp_d064")
    assert {i.properties["proj:code"] for i in items} == {"EPSG:32611", "EPSG:32612"}
    assert {i.properties["ncp:frame"] for i in items} == {"ncp_d064"}


def test_nothing_found(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no HyP3 product"):
        hyp3.items_from_source(str(tmp_path / "empty"))
    with pytest.raises(DataError, match="does not exist"):
        hyp3.items_from_source(str(tmp_path / "missing.zip"))


def test_zips_over_http(tmp_path):
    """Zips read in place over HTTP: the .txt through fsspec, rasters through /vsizip/vsicurl/."""
    from test_products_licsar import static_server

    zips = make_pairs(tmp_path / "www")
    local = {i.id: i for i in hyp3.items_from_source([str(z) for z in zips])}
    with static_server(tmp_path / "www", ranges=True) as url:
        items = hyp3.items_from_source(f"{url}/")  # the folder's index page
        assert sorted(i.id for i in items) == sorted(local)
        for item in items:
            name = item.id
            assert item.assets["unw_phase"].href == (
                f"/vsizip/vsicurl/{url}/{name}.zip/{name}/{name}_unw_phase.tif"
            )
            for key in ("proj:code", "proj:shape", "proj:transform", "proj:bbox"):
                assert item.properties[key] == local[name].properties[key]
        remote = hyp3.ADAPTER.geometry(items, full_grid())
        np.testing.assert_array_equal(
            remote["incidence"],
            hyp3.ADAPTER.geometry(list(local.values()), full_grid())["incidence"],
        )
    with static_server(tmp_path / "www") as url:  # no range requests: a clear error
        with pytest.raises(DataError, match="range requests") as err:
            hyp3.items_from_source(f"{url}/{zips[0].name}")
        assert f"{url}/{zips[0].name}" in str(err.value) and "\n" not in str(err.value)
