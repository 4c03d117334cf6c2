"""``ncp-subsidence catalog licsar|hyp3``: static catalogs that pystac and the project's discovery
load, asset hrefs (relative local files, absolute /vsizip/ members), the config snippet, and
errors as one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import yaml
from test_products_hyp3 import PAIRS as HYP3_PAIRS
from test_products_hyp3 import make_pairs, make_zip, product_name, tile_folder
from test_products_licsar import FRAME, PAIRS, static_server, write_frame

from ncp_subsidence.cli import main
from ncp_subsidence.config import SourceOptions
from ncp_subsidence.errors import DataError
from ncp_subsidence.io.products import ifg_adapter
from ncp_subsidence.io.products.catalog import write_catalog
from ncp_subsidence.io.readers import _rasterio_path, read_ifg_stack
from ncp_subsidence.io.stac import discover_items


def _snippet(stdout: str) -> dict:
    return yaml.safe_load(stdout.split("add to your config:", 1)[1])


def _discover(path: Path | str) -> list[pystac.Item]:
    return discover_items(SourceOptions(kind="static_catalog", url=str(path)))


def test_catalog_hyp3(tmp_path, capsys):
    zips = make_pairs(tmp_path / "zips")
    out = tmp_path / "catalog"
    argv = ["catalog", "hyp3", *map(str, zips), str(zips[0]), "--out", str(out)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    path = out / "catalog.json"
    assert f"3 pair(s) of frame D064 written to {path}" in captured.out
    assert "1 pair(s) listed more than once" in captured.err
    assert _snippet(captured.out) == {
        "sources": {"interferograms": {"D064": {"kind": "static_catalog", "url": str(path)}}}
    }

    catalog = pystac.Catalog.from_file(str(path))
    assert [
        link["href"] for link in json.loads(path.read_text())["links"] if link["rel"] == "child"
    ] == ["./D064/collection.json"]
    (collection,) = catalog.get_children()
    assert collection.id == "D064"
    items = sorted(catalog.get_items(recursive=True), key=lambda i: i.id)
    assert len(items) == 3  # the zip passed twice is listed once
    start, end = collection.extent.temporal.intervals[0]
    assert (start.date().isoformat(), end.date().isoformat()) == ("2020-06-04", "2020-06-28")
    by_id = {i.id: i for i in items}
    for d1, d2, _, _ in HYP3_PAIRS:
        name = product_name(d1, d2)
        item = by_id[name]
        raw = json.loads(Path(item.get_self_href()).read_text())
        zip_path = tmp_path / "zips" / f"{name}.zip"
        assert (
            raw["assets"]["unw_phase"]["href"] == f"/vsizip/{zip_path}/{name}/{name}_unw_phase.tif"
        )
        with rasterio.open(tile_folder(tmp_path / "zips", name) / f"{name}_unw_phase.tif") as src:
            assert item.properties["proj:code"] == "EPSG:32611"
            assert item.properties["proj:transform"] == list(src.transform)[:6]
            assert item.properties["proj:shape"] == list(src.shape)
            assert item.properties["proj:bbox"] == list(src.bounds)
            tile = src.read(1)
        assert item.properties["ncp:format"] == "hyp3"

    discovered = _discover(path)
    assert sorted(i.id for i in discovered) == sorted(by_id)
    for item in discovered:
        assert item.collection_id == "D064"
        href = item.assets["unw_phase"].href
        assert href.startswith("file:///vsizip//")  # discovery's spelling of a local path
        for candidate in (
            href,
            _rasterio_path(href),
        ):  # stackstac opens the first, readers the second
            with rasterio.open(candidate) as src:
                assert src.crs.to_epsg() == 32611 and src.res == (80.0, 80.0)
                if item.id == product_name(*HYP3_PAIRS[-1][:2]):
                    np.testing.assert_array_equal(src.read(1), tile)
    assert ifg_adapter(discovered[0].properties["ncp:format"]).name == "hyp3"


def test_catalog_licsar_relocatable_and_ingestable(tmp_path, capsys):
    data = tmp_path / "site"
    top = write_frame(data)
    out = data / "catalog"
    assert main(["catalog", "licsar", str(top), "--out", str(out), "-q"]) == 0
    captured = capsys.readouterr()
    assert f"3 pair(s) of frame {FRAME} written to {out / 'catalog.json'}" in captured.out
    assert _snippet(captured.out)["sources"]["interferograms"][FRAME]["kind"] == "static_catalog"

    item_file = out / FRAME / f"{FRAME}_{PAIRS[0]}" / f"{FRAME}_{PAIRS[0]}.json"
    raw = json.loads(item_file.read_text())
    assert raw["assets"]["unw_phase"]["href"] == (
        f"../../../{FRAME}/interferograms/{PAIRS[0]}/{PAIRS[0]}.geo.unw.tif"
    )
    assert all(link["href"].startswith(".") for link in raw["links"])

    # the catalog moves with the data
    moved = tmp_path / "moved"
    shutil.copytree(data, moved)
    shutil.rmtree(data)
    items = _discover(moved / "catalog" / "catalog.json")
    assert [i.id for i in items] == [
        f"{FRAME}_20180101_20180113",
        f"{FRAME}_20180101_20180125",
        f"{FRAME}_20180113_20180125",
    ]
    href = items[0].assets["unw_phase"].href
    assert href == f"file://{moved}/{FRAME}/interferograms/{PAIRS[0]}/{PAIRS[0]}.geo.unw.tif"

    # the project's reader stacks them; the adapter makes them canonical
    adapter = ifg_adapter("licsar")
    ds, failures = read_ifg_stack(
        items, phase_asset=adapter.phase_asset, coherence_asset=adapter.coherence_asset
    )
    assert not failures and ds["unw_phase"].shape == (3, 12, 15)
    phase, coherence = adapter.canonical_block(ds["unw_phase"].values, ds["coherence"].values)
    with rasterio.open(_rasterio_path(href)) as src:
        unw = src.read(1)
    np.testing.assert_array_equal(phase[0], np.where(unw == 0, np.nan, unw))
    assert np.nanmax(coherence) == 1.0 and np.isnan(coherence[:, 5, 6]).all()


def test_catalog_licsar_over_http(tmp_path, capsys):
    write_frame(tmp_path / "www")
    out = tmp_path / "catalog"
    with static_server(tmp_path / "www") as url:
        assert main(["catalog", "licsar", f"{url}/{FRAME}/", "--out", str(out)]) == 0
        items = _discover(out / "catalog.json")
        assert len(items) == 3
        href = items[0].assets["unw_phase"].href
        assert href == f"{url}/{FRAME}/interferograms/{PAIRS[0]}/{PAIRS[0]}.geo.unw.tif"
        # GDAL's directory listing on open hangs on http.server's index pages: open as the
        # adapters (and stackstac) do, without listing
        with (
            rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"),
            rasterio.open(_rasterio_path(href)) as src,
        ):
            assert src.shape == (12, 15)
    assert "3 pair(s)" in capsys.readouterr().out


def test_errors_are_one_line(tmp_path, capsys):
    name = product_name("20200604", "20200616")
    bad = make_zip(tmp_path, name, HYP3_PAIRS[0][3], "Baseline: 1.0\n", ("corr",))
    assert main(["catalog", "hyp3", str(bad), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"ncp-subsidence: error: DataError: HyP3 product {bad} holds no")
    assert err[1] == "ncp-subsidence: run with --verbose for the traceback"
    top = write_frame(tmp_path / "licsar")
    (top / "interferograms" / PAIRS[0] / f"{PAIRS[0]}.geo.unw.tif").unlink()
    assert main(["catalog", "licsar", str(top), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert f"LiCSAR pair folder {top / 'interferograms' / PAIRS[0]} has no" in err[0]
    assert not (tmp_path / "out" / "catalog.json").exists()


def _item(item_id: str, hrefs: dict[str, str]) -> pystac.Item:
    import datetime as dt

    item = pystac.Item(
        item_id,
        {"type": "Point", "coordinates": [116.0, 39.0]},
        [116.0, 39.0, 116.0, 39.0],
        dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
        {"ncp:format": "hyp3", "ncp:frame": "D064"},
    )
    for key, href in hrefs.items():
        item.add_asset(key, pystac.Asset(href))
    return item


def test_write_catalog_href_forms_and_errors(tmp_path):
    hrefs = {
        "remote_zip": "/vsizip/vsicurl/https://example.org/P.zip/P/P_unw_phase.tif",
        "s3_zip": "/vsizip/vsis3/bucket/P.zip/P/P_corr.tif",
        "url": "https://example.org/x.tif",
        "local": str(tmp_path / "data" / "x.tif"),
    }
    item = _item("P", hrefs)
    path = write_catalog([item], tmp_path / "cat", collection_id="c", title="t", description="d")
    assert item.assets["local"].href == hrefs["local"]  # the caller's item is untouched
    raw = json.loads((tmp_path / "cat" / "c" / "P" / "P.json").read_text())
    written = {k: v["href"] for k, v in raw["assets"].items()}
    assert written == {**hrefs, "local": "../../../data/x.tif"}
    (found,) = _discover(path)
    assert found.assets["remote_zip"].href.endswith(hrefs["remote_zip"])
    assert _rasterio_path(found.assets["remote_zip"].href) == hrefs["remote_zip"]
    assert found.assets["local"].href == f"file://{tmp_path}/data/x.tif"
    with pytest.raises(DataError, match="no interferogram items"):
        write_catalog([], tmp_path / "x", collection_id="c", title="t", description="d")
    with pytest.raises(DataError, match="more than once"):
        write_catalog([item, item], tmp_path / "x", collection_id="c", title="t", description="d")


def test_zip_members_on_the_network_are_remote_reads():
    """A HyP3 zip on S3 or HTTPS is read over the network, like a plain remote file: it gets the
    remote GDAL options (retries, timeouts, no cached failure of the archive itself)."""
    from ncp_subsidence.io.readers import _is_remote, _network_file, _open_env

    remote = {
        "file:///vsizip//vsis3/bucket/hyp3/P.zip/P/P_unw_phase.tif": "/vsis3/bucket/hyp3/P.zip",
        "/vsizip/vsis3/bucket/P.zip/P/P_corr.tif": "/vsis3/bucket/P.zip",
        "/vsizip/vsicurl/https://example.org/P.zip/P/P_unw.tif": "/vsicurl/https://example.org/P.zip",
        "s3://bucket/x.tif": "/vsis3/bucket/x.tif",
        "https://example.org/x.tif": "/vsicurl/https://example.org/x.tif",
    }
    for href, fetched in remote.items():
        assert _is_remote(href), href
        assert _network_file(href) == fetched
        env = _open_env(href, None, 2)
        assert env.options["CPL_VSIL_CURL_NON_CACHED"] == fetched
    for local in ("/vsizip//data/P.zip/P/P_unw.tif", "file:///data/x.tif", "/data/x.tif"):
        assert not _is_remote(local), local
