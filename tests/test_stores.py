"""Store and cube writes on local disk and on S3 (moto server on 127.0.0.1), read back by plain xarray."""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr
import zarr

from ncp_subsidence.errors import DataError, StoreError
from ncp_subsidence.io.cube import (
    REGION_MIN_CHUNKS,
    SCHEMAS,
    default_chunks_per_region,
    region_slices,
    with_crs,
    write_cube,
)
from ncp_subsidence.io.stores import ProductRecord, ProductStore


def _velocity_dataset(ny=40, nx=30, chunk=16):
    rng = np.random.default_rng(1)
    lat = 39.0 - 0.01 * (np.arange(ny) + 0.5)
    lon = 116.0 + 0.01 * (np.arange(nx) + 0.5)
    ds = xr.Dataset(
        {
            "vertical_velocity": (("lat", "lon"), rng.normal(-20, 10, (ny, nx)).astype("float32")),
            "velocity_std": (("lat", "lon"), rng.uniform(0, 2, (ny, nx)).astype("float32")),
        },
        coords={"lat": lat, "lon": lon},
    )
    ds = SCHEMAS["mosaic"].conform(ds)
    return with_crs(ds).chunk({"lat": chunk, "lon": chunk})


def _roundtrip(store: ProductStore, open_kwargs):
    ds = _velocity_dataset()
    store.begin("mosaic", "v1", "fp")
    path = write_cube(store, "mosaic", "v1", None, ds, region_dim="lat", chunks_per_region=1)
    assert store.done_regions("mosaic", ".") == {
        "template",
        "lat[0:16]",
        "lat[16:32]",
        "lat[32:40]",
    }
    store.publish("mosaic", ProductRecord("v1", "fp", (".",), "now", "0", {}))
    # spatial_ref is a CF grid-mapping variable: decode_coords="all" makes it a coordinate again
    back = xr.open_zarr(**open_kwargs(path), consolidated=False, decode_coords="all")
    xr.testing.assert_equal(back["vertical_velocity"].load(), ds["vertical_velocity"].load())
    assert back["vertical_velocity"].attrs["units"] == "mm/yr"
    assert back["vertical_velocity"].attrs["long_name"].startswith("vertical velocity")
    assert back["lat"].attrs["standard_name"] == "latitude"
    assert back.rio.crs.to_epsg() == 4326
    assert back["vertical_velocity"].encoding["chunks"] == (16, 16)
    # the resolved record is the pointer readers follow
    np.testing.assert_array_equal(
        store.open("mosaic")["velocity_std"].values, ds["velocity_std"].values
    )


def test_local_store_roundtrip(tmp_path):
    store = ProductStore(str(tmp_path / "store"))
    _roundtrip(store, lambda path: {"store": str(tmp_path / "store"), "group": path})
    assert (
        json.loads((tmp_path / "store" / "mosaic" / "v1" / "zarr.json").read_text())["zarr_format"]
        == 3
    )


def test_s3_store_roundtrip(s3_bucket):
    prefix, options = s3_bucket
    store = ProductStore(f"{prefix}/run", storage_options=options)
    _roundtrip(
        store, lambda path: {"store": f"{prefix}/run", "group": path, "storage_options": options}
    )
    root = zarr.open_group(f"{prefix}/run", mode="r", storage_options=options)
    assert "mosaic" in root


def test_s3_store_with_cluster(s3_bucket, local_cluster):
    """Workers in other processes write the regions (the store travels by URL)."""
    from distributed import Client

    prefix, options = s3_bucket
    store = ProductStore(f"{prefix}/dist", storage_options=options)
    ds = _velocity_dataset(ny=64, nx=32)
    with Client(local_cluster):
        store.begin("mosaic", "v1", "fp")
        path = write_cube(store, "mosaic", "v1", None, ds, region_dim="lat", chunks_per_region=2)
    back = xr.open_zarr(f"{prefix}/dist", group=path, storage_options=options, consolidated=False)
    np.testing.assert_array_equal(back["vertical_velocity"].values, ds["vertical_velocity"].values)


def test_publish_keeps_previous_and_prunes(tmp_path):
    store = ProductStore(str(tmp_path / "s"))
    ds = _velocity_dataset()
    for i, v in enumerate(["v1", "v2", "v3"]):
        store.begin("mosaic", v, f"fp{i}")
        write_cube(store, "mosaic", v, None, ds + i, region_dim="lat")
        store.publish("mosaic", ProductRecord(v, f"fp{i}", (".",), "now", "0", {}), keep_versions=2)
    assert store.record("mosaic").version == "v3"
    assert store.exists("mosaic/v2") and store.exists("mosaic/v3")
    assert not (tmp_path / "s" / "mosaic" / "v1").exists()
    assert float(store.open("mosaic")["vertical_velocity"][0, 0]) == pytest.approx(
        float(ds["vertical_velocity"][0, 0]) + 2
    )


def test_missing_product_is_a_clear_error(tmp_path):
    store = ProductStore(str(tmp_path / "s"))
    with pytest.raises(StoreError, match="'sbas' has no complete version"):
        store.open("sbas")


def test_unreachable_store_is_a_clear_error():
    with pytest.raises(StoreError, match="cannot open store"):
        ProductStore("nosuchprotocol://bucket/x")


def test_irregular_chunks_rejected(tmp_path):
    store = ProductStore(str(tmp_path / "s"))
    ds = _velocity_dataset().chunk({"lat": (10, 20, 10)})
    store.begin("mosaic", "v1", "fp")
    with pytest.raises(DataError, match="irregular chunks"):
        write_cube(store, "mosaic", "v1", None, ds, region_dim="lat")


def test_schema_conform_checks_dims():
    ds = xr.Dataset({"vertical_velocity": (("lon", "lat"), np.zeros((2, 3)))})
    with pytest.raises(DataError, match="dims"):
        SCHEMAS["mosaic"].conform(ds)
    with pytest.raises(DataError, match="missing variable"):
        SCHEMAS["mosaic"].conform(xr.Dataset())


def test_region_slices_cover_exactly():
    assert region_slices((4, 4, 4, 2), 2) == [slice(0, 8), slice(8, 14)]
    assert region_slices((5,), 3) == [slice(0, 5)]


@pytest.mark.parametrize(
    ("shape", "n_regions"),
    [
        ((6, 1500, 800), 1),  # 6 rows of 4 windows: one region of 24 chunks, not 6 of 4
        ((6, 256 * 80, 1024), 8),  # 80 rows of 4: 8 regions of 40 chunks
        ((6, 256 * 20, 1024), 3),  # 20 rows of 4: regions of 8 rows (32 chunks), not 8 of 3 rows
        ((6, 256 * 4, 256 * 64), 4),  # 64 across: a chunk row alone is enough
    ],
)
def test_default_regions_hold_enough_chunks_to_keep_workers_busy(shape, n_regions):
    """A region is a barrier (computed and waited for, so that a rerun resumes after it): by
    default it holds at least REGION_MIN_CHUNKS chunks where there are that many, and there are
    about 8 regions."""
    data = da.zeros(shape, chunks=(6, 256, 256), dtype="float32")
    ds = xr.Dataset({"v": (("pair", "y", "x"), data), "g": (("y", "x"), data[0])})
    per = default_chunks_per_region(ds, "y")
    regions = region_slices(ds.chunks["y"], per)
    assert len(regions) == n_regions
    across = len(ds.chunks["x"])
    total = len(ds.chunks["y"]) * across
    assert min(per, len(ds.chunks["y"])) * across >= min(REGION_MIN_CHUNKS, total)


def test_must_exist_refuses_a_missing_store_and_creates_nothing(tmp_path):
    """Reading commands (validate, report) open with must_exist: a wrong --store is one clear
    error, and no empty store directory is left behind."""
    from ncp_subsidence.errors import StoreError

    missing = tmp_path / "no-such-store"
    with pytest.raises(StoreError, match=r"no product store at .*no-such-store.*run"):
        ProductStore(str(missing), must_exist=True)
    assert not missing.exists()
    made = ProductStore(str(tmp_path / "s"))
    made.update_root_attrs({"a": 1})
    assert ProductStore(str(tmp_path / "s"), must_exist=True).root_attrs() == {"a": 1}


def test_root_attrs_of_a_corrupt_store_is_an_error_not_empty(tmp_path):
    from ncp_subsidence.errors import StoreError

    store = ProductStore(str(tmp_path / "s"))
    store.update_root_attrs({"last_run": {"x": 1}})
    (tmp_path / "s" / "zarr.json").write_text("{not json")
    with pytest.raises(StoreError, match="cannot open group"):
        ProductStore(str(tmp_path / "s")).root_attrs()


def _store_files(fs, root: str, under: str) -> dict[str, bytes]:
    base = f"{root.rstrip('/')}/{under}"
    return {p[len(base) :]: fs.cat_file(p) for p in fs.find(base)}


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_a_template_sent_in_one_batch_writes_what_zarr_writes_in_place(
    tmp_path, s3_bucket, zarr_format
):
    """On S3 the template goes through a memory store and one batch of PUTs (fewer requests),
    locally xarray writes it in place: the same keys with the same bytes, a nested dataset's
    parent group created, an existing parent's attributes kept, and what an interrupted earlier
    try left under the dataset removed (Zarr's ``mode="w"``)."""
    prefix, options = s3_bucket
    local = ProductStore(str(tmp_path / "store"), zarr_format=zarr_format)
    remote = ProductStore(f"{prefix}/batch", storage_options=options, zarr_format=zarr_format)
    ds = _velocity_dataset()
    ds["quality"] = (("lat", "lon"), np.ones((40, 30), dtype="float32"))  # in memory
    ds["quality"].encoding["chunks"] = (16, 16)
    for store in (local, remote):
        store.begin("mosaic", "v1", "fp")
        store.update_root_attrs({"kept": "yes"})
        # a key an interrupted earlier try of the nested dataset left behind
        store.write_file("mosaic/v1/frames/A040/stale/zarr.json", b"{}")
        write_cube(store, "mosaic", "v1", "frames/A040", ds, region_dim="lat", chunks_per_region=1)
    written = _store_files(local.fs, local.root, "mosaic/v1/")
    sent = _store_files(remote.fs, remote.root, "mosaic/v1/")
    assert not any("stale" in k for k in written) and not any("stale" in k for k in sent)
    group, chunk = ("zarr.json", "c/0/0") if zarr_format == 3 else (".zgroup", "0.0")
    assert f"frames/{group}" in sent and f"frames/A040/quality/{chunk}" in sent
    assert written.keys() == sent.keys()
    assert {k: v for k, v in written.items() if v != sent[k]} == {}
    assert remote.root_attrs()["kept"] == "yes"
    back = xr.open_zarr(
        f"{prefix}/batch",
        group="mosaic/v1/frames/A040",
        storage_options=options,
        consolidated=False,
        zarr_format=zarr_format,
    )
    xr.testing.assert_equal(back["vertical_velocity"].load(), ds["vertical_velocity"].load())
    np.testing.assert_array_equal(back["quality"].values, 1.0)


def test_moto_server_logs_each_request_it_answers_to_the_given_file(tmp_path, monkeypatch):
    """``moto_server(log=)``: what ``benchmarks/store_s3.py`` counts requests from."""
    import s3fs

    from ncp_subsidence.testing.servers import moto_server

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret-key")
    log = tmp_path / "requests.log"
    with moto_server(log=log) as url:
        fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": url}, skip_instance_cache=True)
        fs.mkdir("logged")
        fs.pipe("logged/a/zarr.json", b"{}")
        assert fs.cat("logged/a/zarr.json") == b"{}"
    text = log.read_text()
    assert '"PUT /logged/a/zarr.json HTTP/1.1" 200' in text
    assert '"GET /logged/a/zarr.json HTTP/1.1" 200' in text
