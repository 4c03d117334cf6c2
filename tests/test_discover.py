"""Discovery: a STAC API (rustac on 127.0.0.1), the twin's static catalog, plain files, real
STAC documents, and a failing API (retries, clear errors)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections import Counter
from pathlib import Path

import pystac
import pytest

from ncp_subsidence.config import Config, SourceOptions
from ncp_subsidence.errors import DataError, NetworkError
from ncp_subsidence.io import stac
from ncp_subsidence.io.stac import (
    StaticDocuments,
    choose_asset,
    discover_items,
    item_interval,
    parse_interval,
)
from ncp_subsidence.stages import discover as discover_stage
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


def _write_catalog(directory: Path, collections: dict[str, int]) -> Path:
    """A self-contained static catalog: one collection per key, with that many items."""
    catalog = pystac.Catalog("root", "a test catalog")
    for cid, n in collections.items():
        collection = pystac.Collection(
            cid,
            f"collection {cid}",
            pystac.Extent(
                pystac.SpatialExtent([[114.0, 35.0, 119.0, 40.0]]),
                pystac.TemporalExtent([[None, None]]),
            ),
        )
        for k in range(n):
            item = pystac.Item(
                f"{cid}-{k}", None, None, dt.datetime(2018, 1, k + 1, tzinfo=dt.UTC), {}
            )
            item.add_asset("data", pystac.Asset(f"./data-{k}.tif", roles=["data"]))  # relative
            collection.add_item(item)
        catalog.add_child(collection)
    catalog.normalize_hrefs(str(directory))
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    return directory / "catalog.json"


@pytest.fixture
def json_reads(monkeypatch):
    """Counts the static STAC documents read (by href) through ``stac._read_json``."""
    reads: Counter[str] = Counter()
    real = stac._read_json

    def counting(url, *args, **kwargs):
        reads[url] += 1
        return real(url, *args, **kwargs)

    monkeypatch.setattr(stac, "_read_json", counting)
    return reads


def _dicts(items):
    return [i.to_dict(transform_hrefs=False) for i in items]


def test_sources_on_one_static_catalog_read_each_document_once(tmp_path, json_reads):
    url = _write_catalog(tmp_path / "cat", {"a": 3, "b": 2, "c": 1})
    sources = [
        SourceOptions(kind="static_catalog", url=str(url), collections=[c]) for c in ("a", "b")
    ]
    separate = [discover_items(s) for s in sources]
    assert json_reads[str(url)] == 2  # without a cache, each source reads the root
    json_reads.clear()

    documents = StaticDocuments()
    shared = [discover_items(s, documents=documents) for s in sources]
    assert json_reads[str(url)] == 1
    assert max(json_reads.values()) == 1  # every document (root, collections, items) once
    assert documents.reads == len(json_reads) == len(documents) and documents.hits > 0
    assert [_dicts(items) for items in shared] == [_dicts(items) for items in separate]
    assert [len(items) for items in shared] == [3, 2]
    # relative asset hrefs made absolute for each source, from its own copy
    assert all("://" in a.href for items in shared for i in items for a in i.assets.values())


def test_static_documents_are_not_shared_across_headers(tmp_path, json_reads):
    url = _write_catalog(tmp_path / "cat", {"a": 1, "b": 1})
    documents = StaticDocuments()
    discover_items(
        SourceOptions(kind="static_catalog", url=str(url), collections=["a"]), documents=documents
    )
    discover_items(
        SourceOptions(
            kind="static_catalog",
            url=str(url),
            collections=["b"],
            headers={"Authorization": "Bearer other"},
        ),
        documents=documents,
    )
    assert json_reads[str(url)] == 2  # other credentials: read again, not from the cache


def test_stac_io_reads_json_once_and_text_still(tmp_path):
    url = _write_catalog(tmp_path / "cat", {"a": 1})
    io = stac._FsspecStacIO()
    assert io.read_json(str(url)) == json.loads(url.read_text())
    assert json.loads(io.read_text(str(url))) == json.loads(url.read_text())


def test_static_documents_do_not_outlive_a_discovery(tmp_path, monkeypatch, json_reads):
    url = _write_catalog(tmp_path / "cat", {"a": 2, "b": 1})
    sources = {
        c: SourceOptions(kind="static_catalog", url=str(url), collections=[c]) for c in ("a", "b")
    }
    monkeypatch.setattr(discover_stage, "resolve_sources", lambda config: sources)
    config = Config.model_validate(
        {
            "store": {"url": str(tmp_path / "store")},
            "sources": {"twin": {"preset": "tiny", "seed": 0, "directory": str(tmp_path / "t")}},
        }
    )
    stage = discover_stage.DiscoverStage()
    first = stage._discover(config, fresh=True)
    assert [len(first[c]) for c in "ab"] == [2, 1]
    assert json_reads[str(url)] == 1  # shared by both sources

    _write_catalog(tmp_path / "cat", {"a": 4, "b": 1})  # the catalog grows between runs
    second = stage._discover(config, fresh=True)
    assert [len(second[c]) for c in "ab"] == [4, 1]
    assert json_reads[str(url)] == 2  # read again by the new discovery


def test_items_of_sources_sharing_documents_are_independent(tmp_path):
    url = _write_catalog(tmp_path / "cat", {"a": 2})
    source = SourceOptions(kind="static_catalog", url=str(url), collections=["a"])
    documents = StaticDocuments()
    first = discover_items(source, documents=documents)
    second = discover_items(source, documents=documents)
    assert documents.hits and documents.reads == len(documents)  # the second one from memory
    expected = _dicts(second)

    item = first[0]
    assert item is not second[0] and item.properties is not second[0].properties
    item.properties["changed"] = True
    item.assets["data"].href = "file:///elsewhere.tif"
    item.assets["data"].extra_fields["changed"] = True
    item.collection_id = "other"
    item.links.clear()
    assert _dicts(second) == expected
    # and the cached documents themselves are intact: a third source finds the originals
    assert _dicts(discover_items(source, documents=documents)) == expected
