"""Scheduled incremental reprocessing (issue #10): new items are appended, old chunks untouched.

The tiny twin's catalog is served in two steps from one static catalog URL, as a scheduled job
sees it: first the interferograms whose secondary acquisition falls in the first half of the
dates and the hydrology years up to that date, then everything. The second run must write only
the new pairs and months, and equal one run on everything (the session's ``tiny_run``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import dask
import numpy as np
import pystac
import pytest
import xarray as xr
from conftest import twin_config

from ncp_subsidence.io.stac import item_interval
from ncp_subsidence.io.stores import ProductRecord, ProductStore
from ncp_subsidence.pipeline import run_pipeline
from ncp_subsidence.stages.ingest import IngestStage

STAGES = ["discover", "ingest", "sbas"]
HYDRO_YEARLY = ("gldas", "fldas", "imerg")


def write_catalog(items: list[pystac.Item], root: Path) -> str:
    """A static catalog of ``items`` (absolute asset hrefs) at ``root``; returns its URL."""
    if root.exists():
        shutil.rmtree(root)
    catalog = pystac.Catalog("split-twin", "the tiny twin, as far as it has been published")
    by_collection: dict[str, list[pystac.Item]] = {}
    for item in items:
        by_collection.setdefault(item.collection_id, []).append(item.clone())
    for cid, members in sorted(by_collection.items()):
        collection = pystac.Collection(
            cid, cid, pystac.Extent.from_items(members) if members else None
        )
        for item in members:
            item.set_collection(None)
            collection.add_item(item)
        catalog.add_child(collection)
    catalog.normalize_hrefs(str(root))
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    return str(root / "catalog.json")


def split_config(manifest, catalog_url: str, store: Path):
    """The tiny twin's config with every source read from ``catalog_url``."""
    sources = {
        key: {"kind": "static_catalog", "url": catalog_url, "collections": [cid]}
        for key, cid in manifest.collections.items()
        if not key.startswith("interferograms/")
    }
    sources["interferograms"] = {
        frame: {"kind": "static_catalog", "url": catalog_url, "collections": [cid]}
        for frame, cid in manifest.frame_collections.items()
    }
    return twin_config(manifest, store, sources=sources)


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Content hash and modification time (ns) of every file under ``root``."""
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def split_runs(tiny_twin, tmp_path_factory):
    """Run on the first half, then on everything; yields what each step saw and wrote."""
    tmp = tmp_path_factory.mktemp("incremental")
    items = [pystac.Item.from_dict(json.loads(line)) for line in open(tiny_twin.items_ndjson)]
    frames = set(tiny_twin.frame_collections.values())
    ifg = [i for i in items if i.collection_id in frames]
    secondaries = sorted({item_interval(i)[1] for i in ifg})
    split = secondaries[len(secondaries) // 2]
    yearly = {tiny_twin.collections[k] for k in HYDRO_YEARLY}

    def published(item: pystac.Item) -> bool:
        if item.collection_id in frames:
            return item_interval(item)[1] <= split
        if item.collection_id in yearly:
            return item_interval(item)[1].year < split.year
        return True

    first = [i for i in items if published(i)]
    url = write_catalog(first, tmp / "catalog")
    store_dir = tmp / "store"
    cfg = split_config(tiny_twin, url, store_dir)
    with dask.config.set(scheduler="threads", num_workers=2):
        run_pipeline(cfg, STAGES)
        store = ProductStore(cfg.store.url)
        before = store.record("ingest")
        old_files = snapshot(store_dir / "ingest")
        first_products = {n: store.open("ingest", n).load() for n in before.datasets}
        write_catalog(items, tmp / "catalog")  # the catalog grows; the config is the same
        # the first append fails after one frame's new part is written ...
        appended = []
        real_append = IngestStage._append_frame

        def failing_append(self, ctx, frame, *args, **kwargs):
            if appended:
                raise RuntimeError("worker lost mid-append")
            appended.append(frame)
            return real_append(self, ctx, frame, *args, **kwargs)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(IngestStage, "_append_frame", failing_append)
            with pytest.raises(RuntimeError, match="mid-append"):
                run_pipeline(cfg, STAGES)
        interrupted = {n: store.open("ingest", n).load() for n in before.datasets}
        pending = store.pending("ingest")
        # ... and the rerun resumes it
        second = run_pipeline(cfg, STAGES)
        new_files = snapshot(store_dir / "ingest")
        third = run_pipeline(cfg, STAGES)
    return {
        "store": store,
        "before": before,
        "after": store.record("ingest"),
        "old_files": old_files,
        "new_files": new_files,
        "second": second,
        "third": third,
        "first_products": first_products,
        "interrupted": interrupted,
        "pending": pending,
    }


def test_second_run_writes_only_new_chunks(split_runs):
    old, new = split_runs["old_files"], split_runs["new_files"]
    before, after = split_runs["before"], split_runs["after"]
    # every file of the first run is still there, byte for byte, never rewritten; only the
    # product record (the stage group's zarr.json, the pointer readers follow) moved on
    changed = [p for p, v in old.items() if new.get(p) != v]
    assert changed == ["zarr.json"]
    assert all(p.startswith(f"{before.version}/") for p in old if p != "zarr.json")
    written = sorted(set(new) - set(old))
    assert written and all(p.startswith(f"{after.version}/") for p in written)
    # what was written: new parts of the interferogram cubes and of the yearly hydrology only
    parts = after.parts
    appended = {n for n, e in parts.items() if e["versions"][-1] == after.version}
    frames = {n for n in after.datasets if n.startswith("ifg/")}
    assert frames and appended == frames | {f"hydro/{k}" for k in HYDRO_YEARLY}
    for name in ("factors", "gnss", "hydro/grace"):
        assert parts[name]["versions"] == [before.version]  # carried over, nothing written
        assert not any(p.startswith(f"{after.version}/{name}/") for p in written)
    # chunk writes, counted: each new interferogram part holds the new pairs in the same
    # spatial chunks as the first part, one chunk per spatial block per variable
    store = split_runs["store"]
    for name in (n for n in after.datasets if n.startswith("ifg/")):
        first_part = store.open("ingest", name, version=before.version)
        ny = len(first_part["unw_phase"].chunks[1])
        nx = len(first_part["unw_phase"].chunks[2])
        for var in ("unw_phase", "coherence"):
            chunks = [p for p in written if p.startswith(f"{after.version}/{name}/{var}/c/")]
            assert len(chunks) == ny * nx, (name, var, len(chunks))
        part = store.open("ingest", name, version=after.version)
        assert (
            part.sizes["pair"]
            == store.open("ingest", name).sizes["pair"] - first_part.sizes["pair"]
        )
        assert part.sizes["pair"] > 0


def test_result_equals_one_run_on_everything(split_runs, tiny_run):
    _, single = tiny_run
    store = split_runs["store"]
    for name in single.record("ingest").datasets:
        got, want = store.open("ingest", name).load(), single.open("ingest", name).load()
        for attr in ("source_items_digest", "source_item_ids", "n_pairs"):
            assert got.attrs.get(attr) == want.attrs.get(attr), (name, attr)
        # the config's sources differ (so does input_kind, which follows them), ingest's do not
        ignore = ("ncp_subsidence_options", "input_kind")
        got.attrs = {k: v for k, v in got.attrs.items() if k not in ignore}
        want.attrs = {k: v for k, v in want.attrs.items() if k not in ignore}
        xr.testing.assert_identical(got, want)
    for frame in single.record("sbas").datasets:
        got, want = store.open("sbas", frame), single.open("sbas", frame)
        for var in ("displacement", "velocity", "temporal_coherence"):
            np.testing.assert_allclose(
                got[var].values, want[var].values, rtol=0, atol=1e-4, equal_nan=True
            )


def test_failed_append_leaves_the_previous_product_and_resumes(split_runs):
    """A run that dies mid-append publishes nothing: readers see the previous product."""
    assert split_runs["pending"] is not None
    assert split_runs["pending"]["version"] == split_runs["after"].version
    for name, before in split_runs["first_products"].items():
        xr.testing.assert_identical(split_runs["interrupted"][name], before)
    assert split_runs["second"]["ingest"].action == "resumed"


def test_nothing_new_does_nothing(split_runs):
    third = split_runs["third"]
    assert [r.action for r in third.results] == ["skipped"] * len(STAGES)


def test_record_keeps_versions_its_parts_live_in(tmp_path):
    """keep_versions never prunes a version whose parts the current product still uses."""
    store = ProductStore(str(tmp_path / "s"))
    base = {"completed_at": "", "package_version": "", "inputs": {}}
    for v in ("v1", "v2", "v3"):
        store.begin("ingest", v, v)
        xr.Dataset({"a": ("t", np.arange(2.0) + int(v[1]))}).to_zarr(
            store.zarr_store, group=f"ingest/{v}/d", zarr_format=3, consolidated=False
        )
        parts = {"d": {"dim": "t", "versions": [f"v{k}" for k in range(1, int(v[1]) + 1)]}}
        store.publish(
            "ingest",
            ProductRecord(v, v, ("d",), parts=parts, **base),
            keep_versions=1,
        )
    assert store.record("ingest").referenced_versions() == {"v1", "v2", "v3"}
    np.testing.assert_array_equal(store.open("ingest", "d")["a"].values, [1, 2, 2, 3, 3, 4])
    assert store.exists("ingest/v1/d") and store.exists("ingest/v2/d")
    # a rewrite whole (compaction) releases them
    store.begin("ingest", "v4", "v4")
    xr.Dataset({"a": ("t", np.arange(3.0))}).to_zarr(
        store.zarr_store, group="ingest/v4/d", zarr_format=3, consolidated=False
    )
    store.publish("ingest", ProductRecord("v4", "v4", ("d",), **base), keep_versions=1)
    assert not store.exists("ingest/v1/d") and not store.exists("ingest/v3/d")
    np.testing.assert_array_equal(store.open("ingest", "d")["a"].values, [0, 1, 2])
