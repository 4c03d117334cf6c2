"""Ingest: the twin's products into Zarr cubes, bit-exact, on local disk and on S3 (moto)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import dask
import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401
import xarray as xr
from conftest import twin_config

from ncp_subsidence.errors import DataError
from ncp_subsidence.io.stores import ProductStore
from ncp_subsidence.kernels.vector import line_length_per_cell
from ncp_subsidence.pipeline import run_pipeline
from ncp_subsidence.sources import load_items


@pytest.fixture(autouse=True)
def _threads():
    with dask.config.set(scheduler="threads", num_workers=2):
        yield


@pytest.fixture(scope="module")
def ingested(tiny_run):
    return tiny_run


def _path(href):
    return href.removeprefix("file://")


def test_phase_is_bit_exact_with_coords_and_crs(ingested, tiny_twin):
    _cfg, store = ingested
    frame = tiny_twin.frames[0]
    ds = store.open("ingest", f"ifg/{frame}")
    items = load_items(store, f"interferograms/{frame}")
    assert ds.sizes["pair"] == len(items) == tiny_twin.grids["frames"][frame]["n_pairs"]
    assert ds.chunks["pair"] == (len(items),)  # the pair axis is one chunk
    assert ds.rio.crs.to_epsg() == 4326
    phase = ds["unw_phase"].values
    for k, item in enumerate(items):
        with rasterio.open(_path(item.assets["unw_phase"].href)) as src:
            expected = src.read(1)
            t = src.transform
        np.testing.assert_array_equal(phase[k], expected)  # NaN in the same places, equal elsewhere
        assert np.datetime64(ds["reference"].values[k], "s") == np.datetime64(
            item.common_metadata.start_datetime.replace(tzinfo=None), "s"
        )
        assert np.datetime64(ds["secondary"].values[k], "s") == np.datetime64(
            item.common_metadata.end_datetime.replace(tzinfo=None), "s"
        )
    # grid exactly aligned: cell centres from the COG transform, no extra row or column
    ny, nx = tiny_twin.grids["frames"][frame]["shape"]
    assert phase.shape[1:] == (ny, nx)
    np.testing.assert_allclose(ds["x"].values, t.c + t.a * (np.arange(nx) + 0.5), rtol=0, atol=1e-9)
    np.testing.assert_allclose(ds["y"].values, t.f + t.e * (np.arange(ny) + 0.5), rtol=0, atol=1e-9)
    with rasterio.open(_path(items[0].assets["corr"].href)) as src:
        np.testing.assert_array_equal(ds["coherence"].values[0], src.read(1))


def test_geometry_matches_truth(ingested, tiny_twin):
    _cfg, store = ingested
    frame = tiny_twin.frames[1]
    ds = store.open("ingest", f"ifg/{frame}")
    truth = xr.open_zarr(tiny_twin.truth, group=f"frames/{frame}", consolidated=False)
    np.testing.assert_allclose(ds["incidence"].values, truth["incidence"].values, atol=1e-4)
    for c in ("los_east", "los_north", "los_up"):
        np.testing.assert_allclose(ds[c].values, truth[c].values, atol=1e-5)
    unit = np.sqrt(ds["los_east"] ** 2 + ds["los_north"] ** 2 + ds["los_up"] ** 2)
    np.testing.assert_allclose(unit.values, 1.0, atol=1e-5)
    assert 28.5 < float(ds["incidence"].min()) < float(ds["incidence"].max()) < 46.5


def test_hydro_in_mm_on_native_grids(ingested, tiny_twin):
    _cfg, store = ingested
    grace = store.open("ingest", "hydro/grace")
    (item,) = load_items(store, "grace")
    raw = xr.open_dataset(_path(item.assets["data"].href), engine="h5netcdf")
    assert raw["lwe_thickness"].attrs["units"] == "cm"
    np.testing.assert_allclose(
        grace["grace_twsa"].values, (raw["lwe_thickness"].values * 10).astype("float32"), rtol=1e-6
    )
    assert grace["grace_twsa"].attrs["units"] == "mm"
    # one solution per calendar month, labelled at mid-month, GRACE/GRACE-FO gap absent
    months = grace["time"].values.astype("datetime64[M]")
    assert len(np.unique(months)) == len(months)
    assert not np.isin(np.datetime64("2017-12", "M"), months)
    imerg = store.open("ingest", "hydro/imerg")
    assert imerg["precipitation"].dims == ("time", "lat", "lon")  # IMERG's lon-first transposed
    assert imerg["precipitation"].attrs["units"] == "mm/month"
    fldas = store.open("ingest", "hydro/fldas")
    assert set(fldas.data_vars) >= {"soil_moisture", "swe", "precipitation", "evapotranspiration"}
    gldas = store.open("ingest", "hydro/gldas")
    assert float(gldas["canopy_water"].min()) >= 0


def test_factors_and_gnss(ingested, tiny_twin):
    _cfg, store = ingested
    factors = store.open("ingest", "factors")
    assert set(factors.data_vars) >= {
        "dem",
        "ndvi",
        "evapotranspiration",
        "precipitation",
        "population",
        "gdp",
        "building_density",
        "fault_density",
    }
    assert factors.sizes["lat"] == tiny_twin.grids["fine_shape"][0]
    # same grid as the factor COGs: resampling is the identity there
    truth = xr.open_zarr(tiny_twin.truth, consolidated=False)
    np.testing.assert_allclose(factors["dem"].values, truth["dem"].values, rtol=1e-5, atol=1e-3)
    assert float(factors["fault_density"].sum()) > 0
    gnss = store.open("ingest", "gnss").load()
    assert gnss.sizes["station"] == tiny_twin.sizes["n_gnss"]
    assert gnss["vu"].attrs["units"] == "mm/yr"
    # the plate motion dominates the horizontal ITRF velocities (docs/science.md 4.2: about +27, -10 mm/yr)
    assert 24 < float(gnss["ve"].median()) < 30 and -12 < float(gnss["vn"].median()) < -7


def test_s3_ingest_equals_local(ingested, tiny_twin, s3_bucket):
    _cfg_local, local = ingested
    prefix, options = s3_bucket
    cfg = twin_config(tiny_twin, f"{prefix}/store")
    cfg.store.storage_options = options
    run_pipeline(cfg, ["discover", "ingest"])
    s3 = ProductStore(cfg.store.url, options)
    assert s3.record("ingest").datasets == local.record("ingest").datasets
    for name in local.record("ingest").datasets:
        a, b = local.open("ingest", name).load(), s3.open("ingest", name).load()
        xr.testing.assert_identical(a.drop_attrs(deep=False), b.drop_attrs(deep=False))


def _broken_twin(tiny_twin, tmp_path):
    root = tmp_path / "twin"
    shutil.copytree(tiny_twin.root, root, ignore=shutil.ignore_patterns("truth"))
    frame = tiny_twin.frames[0]
    victim = sorted((root / "sentinel1" / frame).glob("*/*_unw_phase.tif"))[3]
    victim.write_bytes(victim.read_bytes()[:300])  # a truncated COG
    return root, victim


def test_unreadable_asset_fail_policy(tiny_twin, tmp_path):
    root, victim = _broken_twin(tiny_twin, tmp_path)
    cfg = twin_config(tiny_twin, tmp_path / "store")
    cfg.sources.twin.directory = str(root)
    with pytest.raises(
        DataError, match=f"cannot read asset 'unw_phase'.*{victim.name}.*on_error: nan"
    ):
        run_pipeline(cfg, ["discover", "ingest"])
    store = ProductStore(cfg.store.url)
    assert store.record("discover") is not None
    assert store.record("ingest") is None  # nothing published


def test_unreadable_asset_nan_policy(tiny_twin, tmp_path):
    root, victim = _broken_twin(tiny_twin, tmp_path)
    cfg = twin_config(tiny_twin, tmp_path / "store", ingest={"on_error": "nan"})
    cfg.sources.twin.directory = str(root)
    run_pipeline(cfg, ["discover", "ingest"])
    ds = ProductStore(cfg.store.url).open("ingest", f"ifg/{tiny_twin.frames[0]}")
    assert ds.attrs["n_unreadable_assets"] == 1
    assert victim.name in ds.attrs["unreadable_assets"]
    phase = ds["unw_phase"].values
    assert np.isnan(phase[3]).all()
    assert np.isfinite(phase[2]).any() and np.isfinite(phase[4]).any()


def test_stac_api_down_is_a_clear_error_and_writes_nothing(tiny_twin, tmp_path):
    from ncp_subsidence.config import to_yaml
    from ncp_subsidence.testing.servers import FaultyProxy, free_port

    with FaultyProxy(f"http://127.0.0.1:{free_port()}", always=True, status=500) as proxy:
        cfg = twin_config(tiny_twin, tmp_path / "store")
        cfg.sources.interferograms = {
            "A040": {"kind": "stac_api", "url": proxy.url, "collections": ["twin-s1-ifg-A040"]}
        }
        cfg.sources.retries = 1
        path = tmp_path / "config.yaml"
        path.write_text(to_yaml(cfg))
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "ncp_subsidence.cli",
                "run",
                "--config",
                str(path),
                "--stages",
                "discover",
                "ingest",
                "--workers",
                "1",
                "-q",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert out.returncode == 1
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("ncp-subsidence: error")]
    assert (
        len(errors) == 1
        and "NetworkError" in errors[0]
        and proxy.url in errors[0]
        and "500" in errors[0]
    )
    store = ProductStore(str(tmp_path / "store"))
    assert store.record("discover") is None and store.pending("discover") is None


def test_fault_length_per_cell_is_exact():
    # a meridian segment 0.3 deg long crosses three 0.1 deg cells; a diagonal crosses cell corners
    north_south = np.array([[116.05, 39.0], [116.05, 38.7]])
    km = line_length_per_cell([north_south], 116.0, 39.0, 0.1, (4, 2))
    expected_cell = 6371.0071810 * np.radians(0.1)
    np.testing.assert_allclose(km[:3, 0], expected_cell, rtol=1e-9)
    assert km[3].sum() == 0 and km[:, 1].sum() == 0
    diagonal = np.array([[116.0, 39.0], [116.2, 38.8]])
    total = line_length_per_cell([diagonal], 116.0, 39.0, 0.1, (2, 2)).sum()
    # pieces are straight in lon/lat, lengths great-circle chords: finer cuts agree to ~1e-7
    assert total == pytest.approx(
        line_length_per_cell([diagonal], 116.0, 39.0, 0.01, (20, 20)).sum(), rel=1e-6
    )
    # a line leaving the grid keeps only its inside part
    outside = np.array([[115.9, 38.95], [116.1, 38.95]])
    assert line_length_per_cell([outside], 116.0, 39.0, 0.1, (1, 1)).sum() == pytest.approx(
        6371.0071810 * np.radians(0.1) * np.cos(np.radians(38.95)), rel=1e-3
    )


def test_saved_items_are_read_as_saved_and_older_ones_migrated(ingested, monkeypatch):
    """load_items builds the saved items without pystac's copy-and-migrate when discovery wrote
    them at this pystac's STAC version, and migrates an item saved at an older one."""
    import json

    import pystac

    from ncp_subsidence import sources
    from ncp_subsidence.sources import _saved_items

    _cfg, store = ingested
    data = _saved_items(store, "grace", None)
    assert {f["stac_version"] for f in data["features"]} == {pystac.get_stac_version()}
    (item,) = load_items(store, "grace")
    assert item.to_dict(transform_hrefs=False) == data["features"][0]

    old = json.loads(json.dumps(data["features"][0]))
    old["stac_version"] = "1.0.0"
    old["stac_extensions"] = ["https://stac-extensions.github.io/projection/v1.0.0/schema.json"]
    old["properties"]["proj:epsg"] = 4326
    saved = {**data, "features": [old]}
    # the shared store stays as discovery wrote it: the old item is what the read returns
    monkeypatch.setattr(sources, "_saved_items", lambda *_args: json.loads(json.dumps(saved)))
    (migrated,) = load_items(store, "grace")
    assert migrated.to_dict()["stac_version"] == pystac.get_stac_version()
    assert migrated.properties.get("proj:code") == "EPSG:4326"


def _watch_ingest(monkeypatch, fail_frames=False, fail_gnss=False):
    """Record on which thread the table readers and the writes run, in order."""
    import threading

    from ncp_subsidence.pipeline import StageContext
    from ncp_subsidence.stages import ingest as stage

    events = []
    write, hydro, gnss = StageContext.write, stage.ingest_hydro, stage.ingest_gnss

    def watched_write(self, dataset, ds, **kwargs):
        events.append(("write", dataset, threading.current_thread().name))
        return write(self, dataset, ds, **kwargs)

    def watched_hydro(ctx, names):
        events.append(("read hydro", None, threading.current_thread().name))
        return hydro(ctx, names)

    def watched_gnss(ctx, items):
        events.append(("read gnss", None, threading.current_thread().name))
        if fail_gnss:
            raise DataError("GNSS file is bad")
        return gnss(ctx, items)

    def failing_frame(*args, **kwargs):
        raise DataError("frame is bad")

    monkeypatch.setattr(StageContext, "write", watched_write)
    monkeypatch.setattr(stage, "ingest_hydro", watched_hydro)
    monkeypatch.setattr(stage, "ingest_gnss", watched_gnss)
    if fail_frames:
        monkeypatch.setattr(stage, "write_frame", failing_frame)
    return events


def test_tables_and_headers_are_read_beside_the_frames_and_written_after_them(
    ingested, tiny_twin, tmp_path, monkeypatch
):
    import threading

    from ncp_subsidence.io import readers
    from ncp_subsidence.stages import ingest as stage

    events = _watch_ingest(monkeypatch)
    ahead, real_ahead, real_open = [], stage.open_frame_headers, readers._open_all
    opened_in_stage = []

    def headers_ahead(ctx, frame, items, stop=None):
        plan, answers = real_ahead(ctx, frame, items, stop)
        ahead.append((frame, threading.current_thread().name, len(answers)))
        return plan, answers

    def open_all(todo, *args, **kwargs):  # the stage's own checks run on its main thread
        if threading.current_thread() is threading.main_thread():
            opened_in_stage.extend(todo)
        return real_open(todo, *args, **kwargs)

    monkeypatch.setattr(stage, "open_frame_headers", headers_ahead)
    monkeypatch.setattr(readers, "_open_all", open_all)
    cfg = twin_config(tiny_twin, tmp_path / "store")
    run_pipeline(cfg, ["discover", "ingest"])
    # each frame's file headers were opened once, ahead, on the headers thread
    assert sorted(f for f, _, _ in ahead) == sorted(tiny_twin.frames)
    assert all(t.startswith("ncp-ingest-headers") and n > 0 for _, t, n in ahead)
    assert opened_in_stage == []  # the stage's own checks opened nothing again
    reads = {what: thread for what, _, thread in events if what.startswith("read")}
    assert reads == {"read hydro": "ncp-ingest-tables", "read gnss": "ncp-ingest-tables"}
    writes = [(name, thread) for what, name, thread in events if what == "write"]
    main = threading.main_thread().name
    assert {thread for _, thread in writes} == {main}  # nothing written from the thread
    names = [name for name, _ in writes]
    frames = [n for n in names if n.startswith("ifg/")]
    assert names[: len(frames)] == frames == [f"ifg/{f}" for f in sorted(tiny_twin.frames)]
    # the same product as the module's run: datasets in the same order, equal values
    _ref_cfg, reference = ingested
    store = ProductStore(cfg.store.url)
    assert store.record("ingest").datasets == reference.record("ingest").datasets
    for name in ("hydro/gldas", "hydro/imerg", "factors", "gnss", "gnss_series"):
        a, b = store.open("ingest", name).load(), reference.open("ingest", name).load()
        xr.testing.assert_identical(a.drop_attrs(deep=False), b.drop_attrs(deep=False))


def test_a_failed_frame_stops_the_table_reads_and_is_the_error(tiny_twin, tmp_path, monkeypatch):
    import threading

    events = _watch_ingest(monkeypatch, fail_frames=True)
    cfg = twin_config(tiny_twin, tmp_path / "store")
    with pytest.raises(DataError, match="frame is bad"):
        run_pipeline(cfg, ["discover", "ingest"])
    assert not [t for t in threading.enumerate() if t.name == "ncp-ingest-tables"]
    assert not [e for e in events if e[0] == "write"]  # no table written after the failure
    assert ProductStore(cfg.store.url).record("ingest") is None


def test_a_table_error_is_raised_once_the_frames_are_written(tiny_twin, tmp_path, monkeypatch):
    events = _watch_ingest(monkeypatch, fail_gnss=True)
    cfg = twin_config(tiny_twin, tmp_path / "store")
    with pytest.raises(DataError, match="GNSS file is bad"):
        run_pipeline(cfg, ["discover", "ingest"])
    written = [name for what, name, _ in events if what == "write"]
    assert written == [f"ifg/{f}" for f in sorted(tiny_twin.frames)]  # the tables' writes wait
    assert ProductStore(cfg.store.url).record("ingest") is None


def test_tables_read_on_a_worker_give_the_threads_product_and_log(
    ingested, tiny_twin, tmp_path, local_cluster, caplog
):
    """With a client the table files are read by one task on a worker: the product equals the
    run without a client (reads on a driver thread), the writes still follow the frames, and
    the reads' log records reach the driver's log from the worker's process."""
    import logging
    import os

    from distributed import Client

    cfg = twin_config(tiny_twin, tmp_path / "store")
    with (
        Client(local_cluster) as client,
        caplog.at_level(logging.INFO, logger="ncp_subsidence"),
    ):
        run_pipeline(cfg, ["discover", "ingest"], client=client)
    here = os.getpid()
    remote = [r for r in caplog.records if r.process != here]
    messages = [r.getMessage() for r in remote]
    assert any(m.startswith("gnss_series: ") and "station(s)" in m for m in messages), messages
    assert any(m.startswith("GLDAS: ") for m in messages), messages
    assert {r.processName for r in remote} != {"MainProcess"}
    # the worker's records come in among the driver's, after the frames they ran beside
    order = [r.getMessage() for r in caplog.records]
    last_frame = max(i for i, m in enumerate(order) if m.startswith("ingested frame "))
    first_table = min(i for i, r in enumerate(caplog.records) if r.process != here)
    assert first_table > last_frame
    _ref_cfg, reference = ingested
    store = ProductStore(cfg.store.url)
    assert store.record("ingest").datasets == reference.record("ingest").datasets
    for name in reference.record("ingest").datasets:
        a, b = store.open("ingest", name), reference.open("ingest", name)
        chunks = [{k: v.chunks for k, v in ds.variables.items()} for ds in (a, b)]
        assert chunks[0] == chunks[1], name  # the encodings travelled with the datasets
        a, b = a.load(), b.load()
        xr.testing.assert_identical(a.drop_attrs(deep=False), b.drop_attrs(deep=False))
        skip = {"ncp_subsidence_options"}  # the stages' options are the same; versions differ
        assert {k: v for k, v in a.attrs.items() if k not in skip} == {
            k: v for k, v in b.attrs.items() if k not in skip
        }, name


def test_a_table_error_on_a_worker_is_raised_once_the_frames_are_written(
    tiny_twin, tmp_path, local_cluster
):
    from distributed import Client

    from ncp_subsidence.config import SourceOptions

    bad = tmp_path / "midas.IGS14.txt"
    bad.write_text("garbage\nmore garbage 1 2 3\n")
    cfg = twin_config(tiny_twin, tmp_path / "store")
    cfg.sources.gnss = SourceOptions(kind="file", url=[str(bad)])
    with Client(local_cluster) as client, pytest.raises(DataError, match="no usable station line"):
        run_pipeline(cfg, ["discover", "ingest"], client=client)
    store = ProductStore(cfg.store.url)
    assert store.record("ingest") is None
    pending = store.pending("ingest")  # the frames were written before the error was raised
    assert sorted(pending["done"]) == sorted(f"ifg/{f}" for f in tiny_twin.frames)


def test_a_failed_frame_cancels_the_table_task(tiny_twin, tmp_path, local_cluster, monkeypatch):
    import time

    from distributed import Client

    _watch_ingest(monkeypatch, fail_frames=True)  # the frame fails on the driver
    cfg = twin_config(tiny_twin, tmp_path / "store")

    def tables(dask_scheduler):
        return [k for k in dask_scheduler.tasks if str(k).startswith("ingest-tables-")]

    with Client(local_cluster) as client:
        with pytest.raises(DataError, match="frame is bad") as failed:
            run_pipeline(cfg, ["discover", "ingest"], client=client)
        # ``failed`` keeps the run's frames, and so any future they hold, alive: an uncancelled
        # task would stay on the scheduler, wanted, with its result kept
        deadline = time.monotonic() + 10
        while client.run_on_scheduler(tables) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.run_on_scheduler(tables) == []
        del failed
    assert ProductStore(cfg.store.url).record("ingest") is None


def test_a_failed_stage_does_not_wait_long_for_a_slow_table_read(tiny_twin, tmp_path, monkeypatch):
    import threading
    import time

    from ncp_subsidence.stages import ingest as stage

    _watch_ingest(monkeypatch, fail_frames=True)
    release = threading.Event()

    def slow_hydro(ctx, names):  # one long read that never looks at the context
        release.wait(60)

    monkeypatch.setattr(stage, "ingest_hydro", slow_hydro)
    monkeypatch.setattr(stage, "ABANDON_WAIT_S", 0.5)
    cfg = twin_config(tiny_twin, tmp_path / "store")
    run_pipeline(cfg, ["discover"])
    start = time.monotonic()
    try:
        with pytest.raises(DataError, match="frame is bad"):
            run_pipeline(cfg, ["ingest"])
        assert time.monotonic() - start < 20  # not the read's 60 s
    finally:
        release.set()
    for thread in threading.enumerate():
        if thread.name == "ncp-ingest-tables":
            thread.join(10)
            assert not thread.is_alive()


def test_frame_headers_are_opened_ahead_for_the_pairs_the_frame_will_read(
    ingested, tiny_twin, monkeypatch
):
    from ncp_subsidence.pipeline import StageContext
    from ncp_subsidence.stages import _ingest_frames as frames

    cfg, store = ingested
    frame = tiny_twin.frames[0]
    items = load_items(store, f"interferograms/{frame}")
    ctx = StageContext(cfg, store, "ingest", "v-test")
    adapter = frames._frame_adapter(ctx, frame, items)
    keys = frames._frame_assets(ctx, frame, adapter)

    def hrefs(chosen):
        return sorted(i.assets[k].get_absolute_href() for i in chosen for k in keys)

    def opened_with(increment):
        monkeypatch.setattr(frames, "_increment", lambda *args: increment)
        plan, answers = frames.open_frame_headers(ctx, frame, items)
        assert plan.increment is increment  # the plan the frame's ingest then follows
        return sorted(answers)

    assert opened_with(None) == hrefs(items)  # written whole: every pair
    assert opened_with((object(), items[-2:])) == hrefs(items[-2:])  # appended to: the new ones
    assert opened_with((object(), [])) == []  # reused
    monkeypatch.setattr(frames, "_frame_adapter", lambda *args: 1 / 0)
    assert frames.open_frame_headers(ctx, frame, items) == (None, {})  # the frame raises it


def test_each_frame_is_planned_once_and_its_increment_logged_once(
    ingested, tiny_twin, tmp_path, monkeypatch, caplog
):
    """The headers' thread plans a frame (adapter, options, increment: the previous product
    opened) and the frame's ingest follows that plan: an incremental run opens each previous
    frame once and says once why it rewrites it."""
    import logging

    from ncp_subsidence.stages import _ingest_frames as frames

    cfg, reference = ingested
    dest = tmp_path / "store"
    shutil.copytree(reference.url, dest)
    cfg = twin_config(tiny_twin, dest, ingest={"chunk_y": 32, "chunk_x": 32})  # other options
    calls = []
    real = frames._increment

    def counted(ctx, name, *args):
        calls.append(name)
        return real(ctx, name, *args)

    monkeypatch.setattr(frames, "_increment", counted)
    with caplog.at_level(logging.INFO, logger="ncp_subsidence"):
        run_pipeline(cfg, ["ingest"])
    frames_ = [f"ifg/{f}" for f in sorted(tiny_twin.frames)]
    assert sorted(calls) == frames_
    for name in frames_:
        said = [r for r in caplog.records if r.getMessage().startswith(f"{name}: ingest options")]
        assert len(said) == 1, [r.getMessage() for r in caplog.records]
