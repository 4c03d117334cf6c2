"""Discovery: a STAC API (rustac on 127.0.0.1), the twin's static catalog, plain files, real
STAC documents, and a failing API (retries, clear errors)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pystac
import pytest

from ncp_subsidence.config import SourceOptions
from ncp_subsidence.errors import DataError, NetworkError
from ncp_subsidence.io.stac import choose_asset, discover_items, item_interval, parse_interval
from ncp_subsidence.testing.servers import FaultyProxy

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "stac_samples"


def _ids(items):
    return sorted((i.collection_id, i.id) for i in items)


@pytest.fixture(scope="module")
def stac_api(rustac_twin):
    return rustac_twin


def test_api_and_static_catalog_give_the_same_items(tiny_twin, stac_api):
    for key, collection in tiny_twin.collections.items():
        static = discover_items(
            SourceOptions(
                kind="static_catalog", url=str(tiny_twin.catalog), collections=[collection]
            )
        )
        api = discover_items(SourceOptions(kind="stac_api", url=stac_api, collections=[collection]))
        assert static, key
        assert _ids(api) == _ids(static), key
        assert {a.href for i in api for a in i.assets.values()} == {
            a.href for i in static for a in i.assets.values()
        }


def test_filters_by_bbox_and_datetime(tiny_twin, stac_api):
    frame = tiny_twin.frames[0]
    collection = tiny_twin.frame_collections[frame]
    window = "2016-01-01/2017-12-31"
    for kind, url in (("static_catalog", str(tiny_twin.catalog)), ("stac_api", stac_api)):
        items = discover_items(
            SourceOptions(kind=kind, url=url, collections=[collection], datetime=window)
        )
        start, end = parse_interval(window)
        assert items
        for item in items:
            i0, i1 = item_interval(item)
            assert i1 >= start and i0 <= end
        everything = discover_items(SourceOptions(kind=kind, url=url, collections=[collection]))
        assert len(items) < len(everything)
        # a box far from the frame finds nothing
        assert (
            discover_items(
                SourceOptions(kind=kind, url=url, collections=[collection], bbox=(10, 10, 11, 11))
            )
            == []
        )


def test_max_items(tiny_twin, stac_api):
    collection = tiny_twin.frame_collections[tiny_twin.frames[0]]
    for kind, url in (("static_catalog", str(tiny_twin.catalog)), ("stac_api", stac_api)):
        assert (
            len(
                discover_items(
                    SourceOptions(kind=kind, url=url, collections=[collection], max_items=5)
                )
            )
            == 5
        )


def test_api_recovers_after_server_errors(tiny_twin, stac_api):
    collection = tiny_twin.collections["grace"]
    with FaultyProxy(stac_api, fail_first=2) as proxy:
        items = discover_items(
            SourceOptions(kind="stac_api", url=proxy.url, collections=[collection]), retries=4
        )
    assert len(items) == 1
    assert proxy.requests >= 3  # two 500s, then the retries got through


def test_api_that_stays_down_is_a_clear_error(stac_api):
    with FaultyProxy(stac_api, always=True, status=503) as proxy:
        with pytest.raises(NetworkError, match=r"STAC API 'http://127\.0\.0\.1:\d+'.*(503|error)"):
            discover_items(
                SourceOptions(kind="stac_api", url=proxy.url, collections=["x"]), retries=2
            )
        assert proxy.requests == 3  # one try and two retries


def test_api_malformed_json_is_a_clear_error(stac_api):
    with FaultyProxy(stac_api, malformed=True) as proxy:
        with pytest.raises(NetworkError, match="failed"):
            discover_items(
                SourceOptions(kind="stac_api", url=proxy.url, collections=["x"]), retries=0
            )


def test_slow_api_times_out(stac_api):
    with FaultyProxy(stac_api, delay_s=2.0) as proxy:
        with pytest.raises(NetworkError, match="Timeout|timed out|failed"):
            discover_items(
                SourceOptions(kind="stac_api", url=proxy.url, collections=["x"]),
                retries=0,
                timeout_s=0.3,
            )


def test_unreachable_api_is_a_clear_error():
    from ncp_subsidence.testing.servers import free_port

    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(NetworkError, match="127.0.0.1"):
        discover_items(SourceOptions(kind="stac_api", url=url), retries=0)


def test_file_source():
    items = discover_items(
        SourceOptions(kind="file", url="/data/midas.IGS14.txt", collections=["gnss"])
    )
    assert len(items) == 1 and items[0].assets["data"].href == "file:///data/midas.IGS14.txt"
    assert items[0].collection_id == "gnss"


def test_missing_static_catalog_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        discover_items(SourceOptions(kind="static_catalog", url=str(tmp_path / "catalog.json")))


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLES.glob("*.json")))
def test_real_stac_documents(tmp_path, name):
    """Real documents from public catalogs go through discovery as static catalogs."""
    src = SAMPLES / name
    data = json.loads(src.read_text())
    path = tmp_path / name
    shutil.copy(src, path)
    items = discover_items(
        SourceOptions(
            kind="static_catalog",
            url=str(path),
            collections=["fallback-collection"]
            if data.get("type") == "Feature" and "collection" not in data
            else [],
        )
    )
    if data.get("type") != "Feature":  # a collection document: no items inside
        assert items == []
        return
    (item,) = items
    assert item.id == data["id"]
    assert item.collection_id == data.get(
        "collection", "fallback-collection"
    )  # missing collection handled
    i0, i1 = item_interval(item)
    assert i0 <= i1
    assert item.bbox == pytest.approx(data["bbox"])
    key, asset = choose_asset(item, ["data", *sorted(data["assets"])])
    assert key in data["assets"] and asset.href


def test_choose_asset_by_role():
    item = pystac.Item("x", None, None, pystac.utils.str_to_datetime("2020-01-01T00:00:00Z"), {})
    item.add_asset("B1", pystac.Asset("b1.tif", roles=["data"]))
    item.add_asset("thumb", pystac.Asset("t.png", roles=["thumbnail"]))
    assert choose_asset(item, ["visual", "data"])[0] == "B1"
    with pytest.raises(DataError, match="no asset with key or role"):
        choose_asset(item, ["metadata"])
