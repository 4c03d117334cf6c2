"""``ncp-subsidence export`` and the store for readers (issue 21, items 1 and 2).

Exports the tiny twin's products, written by the session's shared runs (no new pipeline run):
``sbas``, ``mosaic``, ``hydro``, ``factors``, ``geodetector``, ``analysis`` from the analysis
truth store (:func:`ncp_subsidence.testing.stages.truth_analysis_store`, shared with
test_report and test_stages_analysis) and ``adjust`` from the adjust/mosaic chain
(``twin_run`` of test_stages_adjust, shared with test_stages_mosaic). Every file written is
opened: GeoTIFFs with rioxarray, NetCDF with xarray, CSV with pandas, GeoJSON and the STAC
catalog with pystac. pystac's JSON-schema validation fetches the schemas over the network, so
the catalog's fields are checked here instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import ncp_subsidence
from ncp_subsidence.errors import StoreError
from ncp_subsidence.io.export import EXPORTABLE, MEDIA_TYPES
from ncp_subsidence.io.stores import ProductRecord, ProductStore
from ncp_subsidence.testing.stages import truth_analysis_config, truth_analysis_store

STAGES = ("sbas", "mosaic", "hydro", "factors", "geodetector", "analysis")


@pytest.fixture(scope="module")
def analysis_store(tiny_twin, tiny_run, tmp_path_factory):
    dest = tmp_path_factory.getbasetemp() / "analysis-truth-store"
    cfg = truth_analysis_config(tiny_twin, str(dest))
    return truth_analysis_store(tiny_twin, tiny_run[0].store.url, str(dest), cfg)


@pytest.fixture(scope="module")
def adjust_store(tiny_twin, tmp_path_factory):
    from test_stages_adjust import twin_run

    return twin_run(tiny_twin, tmp_path_factory)["store"]


@pytest.fixture(scope="module")
def exported(analysis_store, adjust_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    first = ncp_subsidence.export_products(analysis_store, out / "run", STAGES)
    second = ncp_subsidence.export_products(adjust_store.url, out / "adjust", ["adjust"])
    return {"run": first, "adjust": second}


def _items(result):
    import pystac

    catalog = pystac.Catalog.from_file(str(result.catalog))
    return catalog, {item.id: item for item in catalog.get_items()}


def _crs_ok(crs):
    code = crs.to_epsg()
    return code == 4326 or 32601 <= code <= 32660 or 32701 <= code <= 32760


def test_every_exported_file_opens(exported):
    import rasterio
    import rioxarray

    seen = {"tif": 0, "nc": 0, "csv": 0, "geojson": 0}
    for result in exported.values():
        assert result.files and all(p.is_file() for p in result.files)
        for path in result.files:
            ext = path.suffix.lstrip(".")
            if ext == "tif":
                da = rioxarray.open_rasterio(path)
                assert _crs_ok(da.rio.crs), (path, da.rio.crs)
                with rasterio.open(path) as src:
                    assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG", path
                    tags = src.tags()
                    assert tags["units"] and tags["sign_convention"], (path, tags)
                    assert tags["source_conventions"] == "CF-1.8", path
                    assert src.transform.e < 0, path  # north up
                    if src.dtypes[0].startswith("float"):
                        assert np.isnan(src.nodata), path
            elif ext == "nc":
                with xr.open_dataset(path, engine="h5netcdf", decode_coords="all") as ds:
                    assert ds.attrs["Conventions"].startswith("CF-1"), path
                    assert "ncp-subsidence export" in ds.attrs["history"]
                    if {"lat", "lon"} <= set(ds.dims) or {"y", "x"} <= set(ds.dims):
                        assert _crs_ok(ds.rio.crs), path
                    if "time" in ds.dims:
                        assert ds["time"].attrs["standard_name"] == "time"
                    assert ds.load().data_vars
            elif ext == "csv":
                assert len(pd.read_csv(path).columns) > 0, path  # a table may be empty
            elif ext == "geojson":
                data = json.loads(path.read_text())
                assert data["type"] == "FeatureCollection" and data["features"]
                points = [f for f in data["features"] if f["geometry"]]
                assert len(points) == len(data["features"])  # every station has its position
                lon, lat = np.array([f["geometry"]["coordinates"] for f in points]).T
                assert (
                    (113 < lon).all()
                    and (lon < 120).all()
                    and (34 < lat).all()
                    and (lat < 41).all()
                )
                assert {"station", "frame", "role", "residual_los"} <= set(points[0]["properties"])
            else:
                json.loads(path.read_text())
                continue
            seen[ext] += 1
    assert all(seen.values()), seen


def test_maps_hold_the_product_values(exported, analysis_store, adjust_store):
    import rioxarray

    mosaic = ncp_subsidence.open_product(analysis_store, "mosaic")["vertical_velocity"]
    tif = rioxarray.open_rasterio(exported["run"].catalog.parent / "mosaic/vertical_velocity.tif")
    want = mosaic.sortby("lat", ascending=False).values
    np.testing.assert_array_equal(tif.values[0], want)
    frame = adjust_store.record("adjust").datasets[0]
    adj = ncp_subsidence.open_product(adjust_store, "adjust", frame)
    tif = rioxarray.open_rasterio(
        exported["adjust"].catalog.parent / f"adjust/{frame}/vertical_velocity.tif"
    )
    assert tif.rio.crs == adj.rio.crs
    np.testing.assert_array_equal(
        tif.values[0], adj["vertical_velocity"].sortby("y", ascending=False).values
    )


def test_stac_catalog_is_self_contained_and_typed(exported):
    for result in exported.values():
        _, items = _items(result)
        root = result.catalog.parent
        text = [result.catalog.read_text()] + [
            (root / item.id / f"{item.id}.json").read_text() for item in items.values()
        ]
        for doc in map(json.loads, text):
            assert all(link["rel"] != "self" for link in doc["links"]), "not self-contained"
            hrefs = [link["href"] for link in doc["links"]]
            hrefs += [a["href"] for a in doc.get("assets", {}).values()]
            assert all(not h.startswith(("/", "file:")) for h in hrefs), hrefs
        listed = set()
        for item in items.values():
            assert item.properties["ncp:version"] and item.properties["ncp:fingerprint"]
            assert item.datetime is not None or (
                item.properties["start_datetime"] and item.properties["end_datetime"]
            )
            assert item.bbox is not None and item.geometry is not None
            assert any("projection" in e for e in item.stac_extensions)
            for key, asset in item.assets.items():
                path = Path(asset.get_absolute_href())
                assert path.is_file(), (item.id, key)
                listed.add(path)
                assert asset.media_type in MEDIA_TYPES.values() and asset.roles, key
                if path.suffix == ".tif":
                    assert (
                        asset.media_type
                        == "image/tiff; application=geotiff; profile=cloud-optimized"
                    )
                    assert asset.extra_fields["proj:code"].startswith("EPSG:")
                    assert len(asset.extra_fields["proj:shape"]) == 2
                    assert len(asset.extra_fields["proj:transform"]) == 6
                expected = {
                    ".tif": MEDIA_TYPES["cog"],
                    ".nc": "application/netcdf",
                    ".csv": "text/csv",
                    ".geojson": "application/geo+json",
                    ".json": "application/json",
                }[path.suffix]
                assert asset.media_type == expected, key
        assert listed == {p.resolve() for p in result.files}  # every file is an asset
    _, items = _items(exported["run"])
    assert sorted(items) == sorted(STAGES)
    assert items["mosaic"].properties["start_datetime"] < items["mosaic"].properties["end_datetime"]
    _, items = _items(exported["adjust"])
    assert "gnss-residuals" in items["adjust"].assets


def test_products_are_cf_with_a_crs(analysis_store, adjust_store):
    """Every dataset written through the write path: CF-1.8 globals, time and flag attrs, a
    CRS rioxarray finds, no coordinate attributes on data variables (the stray ``axis: Y``)."""
    stores = [(analysis_store, s) for s in ("ingest", "sbas", *STAGES)] + [(adjust_store, "adjust")]
    for store, stage in stores:
        for name in store.record(stage).datasets:
            ds = ncp_subsidence.open_product(store, stage, None if name == "." else name)
            where = (stage, name)
            assert ds.attrs["Conventions"] == "CF-1.8", where
            for key in ("title", "history", "source", "input_kind"):
                assert ds.attrs.get(key), (where, key)
            if "time" in ds.dims:
                assert ds["time"].attrs["standard_name"] == "time", where
                assert ds["time"].attrs["axis"] == "T", where
            if {"lat", "lon"} <= set(ds.dims) or {"y", "x"} <= set(ds.dims):
                assert ds.rio.crs is not None, where
            for var in ds.data_vars.values():
                assert "axis" not in var.attrs, (where, var.name)
                if "flag_values" in var.attrs:
                    meanings = var.attrs["flag_meanings"].split()
                    assert len(meanings) == len(np.atleast_1d(var.attrs["flag_values"]))
    frame = adjust_store.record("adjust").datasets[0]
    adj = ncp_subsidence.open_product(adjust_store, "adjust", frame)
    assert adj["extrapolated"].attrs["flag_meanings"].split()[1] == "outside_training_station_hull"


def test_open_product_names_the_datasets_and_concatenates_parts(analysis_store, tmp_path):
    with pytest.raises(StoreError, match=r"holds the datasets \['A040'"):
        ncp_subsidence.open_product(analysis_store.url, "sbas")
    factors = ncp_subsidence.open_product(analysis_store.url, "factors")  # its only dataset
    assert "gwsa_trend" in factors
    with pytest.raises(StoreError, match="no product store"):
        ncp_subsidence.open_product(tmp_path / "nothing", "mosaic")
    # a dataset written in parts reads back whole
    store = ProductStore(str(tmp_path / "parts"))
    ds = xr.Dataset({"v": ("pair", np.arange(5.0))}, coords={"pair": np.arange(5)})
    for version, sl in (("v1", slice(0, 3)), ("v2", slice(3, 5))):
        store.begin("ingest", version, "f")
        ds.isel(pair=sl).to_zarr(
            store.zarr_store, group=f"ingest/{version}/cube", mode="w", consolidated=False
        )
        parts = {"cube": {"dim": "pair", "versions": ["v1", "v2"][: int(version[1])]}}
        store.publish(
            "ingest", ProductRecord(version, "f", ("cube",), "", "", {}, parts), keep_versions=5
        )
    back = ncp_subsidence.open_product(store, "ingest")
    np.testing.assert_array_equal(back["v"].values, np.arange(5.0))


def test_latest_report_is_a_stable_path(analysis_store, tmp_path):
    root = Path(analysis_store.url)
    version = analysis_store.record("report").version
    latest = root / "report" / "latest" / "index.html"
    assert latest.read_bytes() == (root / "report" / version / "index.html").read_bytes()
    assert analysis_store.latest_path("report") == str(latest)
    # republishing refreshes it and drops files the new version does not have
    store = ProductStore(str(tmp_path / "s"))
    for version, files in (("v1", ("index.html", "a.png")), ("v2", ("index.html",))):
        store.begin("report", version, "f")
        for name in files:
            store.write_file(f"report/{version}/{name}", f"{version} {name}")
        store.publish("report", ProductRecord(version, "f", (), "", "", {}))
    latest = tmp_path / "s" / "report" / "latest"
    assert sorted(p.name for p in latest.iterdir()) == ["index.html"]
    assert (latest / "index.html").read_text() == "v2 index.html"


def test_cli_export(analysis_store, tmp_path, capsys):
    from ncp_subsidence import cli

    assert cli.EXPORTABLE == EXPORTABLE
    out = tmp_path / "out"
    code = cli.main(
        ["export", "--store", analysis_store.url, "--out", str(out), "--stages", "factors", "-q"]
    )
    text = capsys.readouterr().out
    assert code == 0, text
    assert f"STAC catalog: {out / 'catalog.json'}" in text
    assert (out / "factors" / "factors" / "gwsa_trend.tif").is_file()
    code = cli.main(["export", "--store", str(tmp_path / "none"), "--out", str(out), "-q"])
    assert code == 1
    assert "no product store" in capsys.readouterr().err
