"""COMET LiCSAR adapter: a frame tree written in LiCSAR's layout (uint8 coherence without nodata
tag, zeros as no data, E/N/U, baselines, metadata.txt), a LiCSBAS GEOC folder, the same tree over
HTTP (a static server on 127.0.0.1 with index pages), and the one-line errors."""

from __future__ import annotations

import functools
import http.server
import logging
import os
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from ncp_subsidence.errors import DataError
from ncp_subsidence.io.products import licsar
from ncp_subsidence.io.readers import grid_from_item
from ncp_subsidence.kernels.geometry import los_unit_vector

FRAME = "106D_05248_131313"
OTHER = "033A_05200_141414"
WEST, NORTH, RES, SHAPE = 116.0, 39.0, 0.01, (12, 15)
EPOCHS = {"20180101": 0.0, "20180113": 41.3, "20180125": -22.7}
PAIRS = ("20180101_20180113", "20180113_20180125", "20180101_20180125")
METADATA = (
    "master=20180101\n"
    "center_time=10:21:38.12\n"
    "heading=-169.5\n"
    "avg_incidence_angle=39.1\n"
    "centre_range_m=880000.5\n"
    "wavelength=0.0554658\n"
)


def _write(path: Path, data: np.ndarray, transform=None) -> None:
    """A LiCSAR-style GeoTIFF: EPSG:4326, no nodata tag."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype=data.dtype,
        crs="EPSG:4326",
        transform=transform or from_origin(WEST, NORTH, RES, RES),
    ) as out:
        out.write(data, 1)


def los_fields() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """E, N, U of a descending frame (incidence 31-44 deg across range), 0 in one corner."""
    incidence = np.broadcast_to(np.linspace(31.0, 44.0, SHAPE[1]), SHAPE)
    u = los_unit_vector(incidence, -169.5).astype(np.float32)
    e, n, up = u[..., 0].copy(), u[..., 1].copy(), u[..., 2].copy()
    for a in (e, n, up):
        a[:2, :3] = 0.0
    return e, n, up


def write_frame(
    root: Path,
    frame: str = FRAME,
    pairs: tuple[str, ...] = PAIRS,
    *,
    geoc: bool = False,
    seed: int = 0,
) -> Path:
    """A LiCSAR frame tree (or a LiCSBAS GEOC folder) under ``root``; returns its folder."""
    rng = np.random.default_rng(seed)
    top = root / ("GEOC" if geoc else frame)
    pair_root = top if geoc else top / "interferograms"
    meta_dir = top if geoc else top / "metadata"
    for pair in pairs:
        unw = rng.normal(0.0, 3.0, SHAPE).astype(np.float32)
        unw[3, 4] = 0.0
        unw[7, :2] = 0.0
        cc = rng.integers(1, 255, SHAPE).astype(np.uint8)
        cc[0, 0] = 255
        cc[5, 6] = 0
        _write(pair_root / pair / f"{pair}.geo.unw.tif", unw)
        _write(pair_root / pair / f"{pair}.geo.cc.tif", cc)
        (pair_root / pair / f"{pair}.geo.unw.png").write_bytes(b"png")
    for name, array in zip("ENU", los_fields()):
        _write(meta_dir / f"{frame}.geo.{name}.tif", array)
    if not geoc:
        _write(meta_dir / f"{frame}.geo.hgt.tif", np.full(SHAPE, 25.0, np.float32))
        (meta_dir / "metadata.txt").write_text(METADATA)
    (meta_dir / "baselines").write_text(
        "".join(f"20180101 {d} {b} {(int(d) - 20180101)}\n" for d, b in EPOCHS.items())
    )
    return top


@contextmanager
def static_server(root: Path, *, ranges: bool = False) -> Iterator[str]:
    """``python -m http.server`` on 127.0.0.1 (index pages for folders); yields its URL.

    ``ranges=True`` also answers single HTTP range requests (``Range: bytes=a-b``), as object
    stores and CDNs do, which reading a zip in place needs.
    """

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            path = self.translate_path(self.path)
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", "").strip())
            if not (ranges and match and os.path.isfile(path)):
                super().do_GET()
                return
            size = os.path.getsize(path)
            start = int(match[1])
            end = min(int(match[2]) if match[2] else size - 1, size - 1)
            if start >= size:
                self.send_error(416)
                return
            with open(path, "rb") as f:
                f.seek(start)
                data = f.read(end - start + 1)
            self.send_response(206)
            self.send_header("Content-Type", self.guess_type(path))
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            self.wfile.write(data)

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _day(d: str) -> str:
    return f"{d[:4]}-{d[4:6]}-{d[6:]}"


def check_items(items, base: str) -> None:
    """Ids, dates, baselines, frame fields and projection of the fixture's three pairs."""
    assert [i.id for i in items] == [
        f"{FRAME}_20180101_20180113",
        f"{FRAME}_20180101_20180125",
        f"{FRAME}_20180113_20180125",
    ]
    for item in items:
        d1, d2 = item.id.split("_")[-2:]
        p = item.properties
        assert p["start_datetime"] == f"{_day(d1)}T10:21:38.120000Z"
        assert p["end_datetime"] == f"{_day(d2)}T10:21:38.120000Z"
        assert item.datetime.isoformat() == f"{_day(d1)}T10:21:38.120000+00:00"
        assert p["licsar:baseline"] == pytest.approx(EPOCHS[d2] - EPOCHS[d1])
        assert p["licsar:heading"] == -169.5 and p["licsar:master"] == "20180101"
        assert p["licsar:center_time"] == "10:21:38.12"
        assert p["ncp:format"] == "licsar" and p["ncp:frame"] == FRAME
        assert p["sat:relative_orbit"] == 106 and p["sat:orbit_state"] == "descending"
        assert p["sar:center_frequency"] == pytest.approx(5.405, abs=1e-3)
        assert p["proj:code"] == "EPSG:4326"
        assert p["proj:shape"] == list(SHAPE)
        assert p["proj:transform"] == pytest.approx([RES, 0.0, WEST, 0.0, -RES, NORTH])
        assert item.bbox == pytest.approx(
            [WEST, NORTH - RES * SHAPE[0], WEST + RES * SHAPE[1], NORTH]
        )
        pair = f"{d1}_{d2}"
        assert item.assets["unw_phase"].href == f"{base}/interferograms/{pair}/{pair}.geo.unw.tif"
        assert item.assets["corr"].href == f"{base}/interferograms/{pair}/{pair}.geo.cc.tif"
        assert item.assets["los_u"].href == f"{base}/metadata/{FRAME}.geo.U.tif"
        assert {"los_e", "los_n", "hgt", "metadata", "baselines"} <= set(item.assets)


def test_frame_tree_items(tmp_path):
    top = write_frame(tmp_path)
    check_items(licsar.items_from_source(str(top)), str(top))
    # its interferograms/ folder and a folder of frames find the same
    assert len(licsar.items_from_source(str(top / "interferograms"))) == 3
    assert len(licsar.items_from_source(str(tmp_path))) == 3


def test_duplicates_listed_once(tmp_path, caplog):
    top = write_frame(tmp_path)
    with caplog.at_level(logging.WARNING, logger="ncp_subsidence"):
        items = licsar.items_from_source([str(top), str(top)])
    assert len(items) == 3
    assert "3 pair(s) listed more than once" in caplog.text


def test_canonical_block(tmp_path):
    top = write_frame(tmp_path)
    pair = top / "interferograms" / PAIRS[0]
    with rasterio.open(pair / f"{PAIRS[0]}.geo.unw.tif") as src:
        assert src.nodata is None
        unw = src.read(1)
    with rasterio.open(pair / f"{PAIRS[0]}.geo.cc.tif") as src:
        assert src.nodata is None and src.dtypes[0] == "uint8"
        cc = src.read(1)
    phase, coherence = licsar.ADAPTER.canonical_block(unw.astype(np.float32), cc.astype(np.float32))
    assert phase.dtype == np.float32 and coherence.dtype == np.float32
    assert np.isnan(phase[3, 4]) and np.isnan(phase[7, :2]).all()
    assert np.isnan(coherence[5, 6])
    assert coherence[0, 0] == 1.0  # 255 -> 1
    valid = unw != 0
    np.testing.assert_array_equal(phase[valid], unw[valid])
    assert np.isnan(phase).sum() == (~valid).sum()
    ok = cc != 0
    np.testing.assert_allclose(coherence[ok], cc[ok] / 255.0, rtol=1e-6)
    assert np.nanmin(coherence) > 0 and np.nanmax(coherence) <= 1.0
    attrs = licsar.ADAPTER.attrs()
    assert attrs["provider"] == "COMET LiCSAR" and attrs["unw_phase_units"] == "radians"


def test_geometry_on_the_frame_grid(tmp_path):
    items = licsar.items_from_source(str(write_frame(tmp_path)))
    grid = grid_from_item(items[0])
    geom = licsar.ADAPTER.geometry(items, grid)
    e, n, u = los_fields()
    nodata = u == 0
    for name, expected in (("los_east", e), ("los_north", n), ("los_up", u)):
        assert geom[name].dtype == np.float32 and geom[name].shape == SHAPE
        assert np.isnan(geom[name][nodata]).all()
        np.testing.assert_allclose(geom[name][~nodata], expected[~nodata], rtol=1e-6)
    np.testing.assert_allclose(
        geom["incidence"][~nodata], np.degrees(np.arccos(u[~nodata].astype(np.float64))), rtol=1e-5
    )
    assert geom["incidence"][5, 0] == pytest.approx(31.0, abs=1e-3)
    assert geom["incidence"][5, -1] == pytest.approx(44.0, abs=1e-3)
    assert np.isnan(geom["incidence"][nodata]).all()
    # no E/N/U assets: no geometry
    for item in items:
        del item.assets["los_u"]
    assert licsar.ADAPTER.geometry(items, grid) is None


def test_licsbas_geoc(tmp_path):
    geoc = write_frame(tmp_path, geoc=True)
    items = licsar.items_from_source(str(geoc))
    assert items[0].id == f"{FRAME}_20180101_20180113"
    assert items[0].properties["ncp:frame"] == FRAME
    assert items[0].assets["unw_phase"].href == f"{geoc}/{PAIRS[0]}/{PAIRS[0]}.geo.unw.tif"
    assert items[0].properties["licsar:baseline"] == pytest.approx(41.3)
    # no metadata.txt: midnight UTC, no licsar: metadata keys
    assert items[0].properties["start_datetime"] == "2018-01-01T00:00:00Z"
    # the folder holding GEOC works too; a GEOC whose E/N/U are not named after a frame
    # needs --frame
    assert len(licsar.items_from_source(str(tmp_path))) == 3
    for name in "ENU":
        (geoc / f"{FRAME}.geo.{name}.tif").rename(geoc / f"frame.geo.{name}.tif")
    with pytest.raises(DataError, match="pass --frame ID"):
        licsar.items_from_source(str(geoc))
    items = licsar.items_from_source(str(geoc), frame=FRAME)
    assert items[0].properties["sat:relative_orbit"] == 106


def test_over_http(tmp_path):
    write_frame(tmp_path)
    with static_server(tmp_path) as url:
        items = licsar.items_from_source(f"{url}/{FRAME}/")
        check_items(items, f"{url}/{FRAME}")
        local = licsar.items_from_source(str(tmp_path / FRAME))
        for a, b in zip(items, local):
            assert a.properties["proj:transform"] == b.properties["proj:transform"]
            assert a.bbox == b.bbox


# --------------------------------------------------------------------------- errors


def test_pair_folder_with_only_coherence(tmp_path):
    top = write_frame(tmp_path)
    pair = top / "interferograms" / PAIRS[1]
    (pair / f"{PAIRS[1]}.geo.unw.tif").unlink()
    with pytest.raises(DataError, match="only .*geo.cc.tif") as err:
        licsar.items_from_source(str(top))
    message = str(err.value)
    assert str(pair) in message and f"{PAIRS[1]}.geo.unw.tif" in message and "\n" not in message


def test_two_frames_mixed(tmp_path):
    a = write_frame(tmp_path)
    b = write_frame(tmp_path, OTHER, PAIRS[:1])
    for sources in ([str(a), str(b)], str(tmp_path)):
        with pytest.raises(DataError, match="mix frames") as err:
            licsar.items_from_source(sources)
        message = str(err.value)
        assert str(a) in message and str(b) in message and "\n" not in message
    # --frame picks one
    items = licsar.items_from_source(str(tmp_path), frame=OTHER)
    assert [i.id for i in items] == [f"{OTHER}_{PAIRS[0]}"]
    assert items[0].properties["sat:orbit_state"] == "ascending"
    assert items[0].properties["sat:relative_orbit"] == 33
    with pytest.raises(DataError, match="not among the LiCSAR frames"):
        licsar.items_from_source(str(tmp_path), frame="001A_00000_000000")


def test_two_frames_in_one_geoc(tmp_path):
    geoc = write_frame(tmp_path, geoc=True)
    shutil.copy(geoc / f"{FRAME}.geo.E.tif", geoc / f"{OTHER}.geo.E.tif")
    with pytest.raises(DataError, match="mixes frames") as err:
        licsar.items_from_source(str(geoc))
    assert str(geoc) in str(err.value) and OTHER in str(err.value)


def test_not_a_frame_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not a LiCSAR frame folder") as err:
        licsar.items_from_source(str(tmp_path / "empty"))
    assert str(tmp_path / "empty") in str(err.value)
