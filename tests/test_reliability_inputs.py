"""Reliability: corrupt inputs give a clear error naming the value and the fix, or documented
graceful handling (NaN + count + warning), never a traceback from deep inside numpy.

Each case copies the tiny twin (hard links, so the copy is instant; every file a case changes
is replaced, never written through the link), breaks one input the way real archives break,
and runs the pipeline on it. Truncated COGs under ``ingest.on_error: fail | nan`` are proved
in tests/test_ingest.py (``test_unreadable_asset_fail_policy``, ``test_unreadable_asset_nan_policy``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import dask
import numpy as np
import pytest
import rasterio
import xarray as xr
from conftest import twin_config

from ncp_subsidence.cli import main
from ncp_subsidence.config import to_yaml
from ncp_subsidence.errors import DataError
from ncp_subsidence.io.stores import ProductStore
from ncp_subsidence.pipeline import run_pipeline


@pytest.fixture(autouse=True)
def _threads():
    with dask.config.set(scheduler="threads", num_workers=2):
        yield


def _copy_twin(tiny_twin, tmp_path) -> Path:
    root = tmp_path / "twin"
    shutil.copytree(
        tiny_twin.root, root, ignore=shutil.ignore_patterns("truth"), copy_function=os.link
    )
    return root


def _replace_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` as a new file (never through a hard link to the original)."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _rewrite_netcdf(path: Path, edit) -> None:
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        out = edit(ds.load())
    tmp = path.with_name(path.name + ".new.nc")
    out.to_netcdf(tmp, engine="h5netcdf")
    os.replace(tmp, path)


#: A one-year window keeps each case to a few seconds (every input kind is still read).
WINDOW = "2019-01-01/2019-12-31"


def _config(tiny_twin, tmp_path, root, **sections):
    cfg = twin_config(tiny_twin, tmp_path / "store", **sections)
    cfg.sources.twin.directory = str(root)
    cfg.sources.datetime = cfg.sources.hydro_datetime = WINDOW
    return cfg


def _frame_items(root: Path, frame: str) -> list[Path]:
    """Item files of a frame whose interferogram lies inside :data:`WINDOW`."""
    out = []
    for path in sorted((root / "stac" / f"twin-s1-ifg-{frame}").glob("*/*.json")):
        p = json.loads(path.read_text())["properties"]
        if p["start_datetime"].startswith("2019") and p["end_datetime"].startswith("2019"):
            out.append(path)
    return out


def _edit_item(path: Path, edit) -> dict:
    item = json.loads(path.read_text())
    edit(item)
    _replace_bytes(path, json.dumps(item).encode())
    return item


def _asset_path(item_path: Path, item: dict, key: str) -> Path:
    return (item_path.parent / item["assets"][key]["href"]).resolve()


def _assert_nothing_published(cfg, stage):
    store = ProductStore(cfg.store.url)
    assert store.record(stage) is None


def test_grace_with_wrong_units_names_the_units_and_the_expected_ones(tiny_twin, tmp_path):
    root = _copy_twin(tiny_twin, tmp_path)
    (path,) = sorted((root / "hydrology" / "grace").glob("*.nc"))[:1]

    def to_metres(ds):
        ds["lwe_thickness"] = ds["lwe_thickness"] / 100.0
        ds["lwe_thickness"].attrs["units"] = "m"
        return ds

    _rewrite_netcdf(path, to_metres)
    cfg = _config(tiny_twin, tmp_path, root)
    with pytest.raises(DataError, match=r"lwe_thickness in .*\.nc has units 'm'; expected cm"):
        run_pipeline(cfg, ["discover", "ingest"])
    _assert_nothing_published(cfg, "ingest")


def test_fldas_missing_variable_names_it_and_what_is_there(tiny_twin, tmp_path):
    root = _copy_twin(tiny_twin, tmp_path)
    (path,) = (root / "hydrology" / "fldas").glob("*.A2019.*.nc")
    _rewrite_netcdf(path, lambda ds: ds.drop_vars("SWE_inst"))
    cfg = _config(tiny_twin, tmp_path, root)
    cfg.sources.hydro_datetime = "2018-01-01/2019-12-31"  # 2018 has it, 2019 lacks it
    with pytest.raises(
        DataError, match=r"FLDAS file .* lacks variable\(s\) \['SWE_inst'\]"
    ) as info:
        run_pipeline(cfg, ["discover", "ingest"])
    message = str(info.value)
    assert path.name in message and "present:" in message and "Evap_tavg" in message
    _assert_nothing_published(cfg, "ingest")


def test_fldas_soil_moisture_in_wrong_units(tiny_twin, tmp_path):
    root = _copy_twin(tiny_twin, tmp_path)
    (path,) = (root / "hydrology" / "fldas").glob("*.A2019.*.nc")

    def to_kg(ds):
        ds["SoilMoi00_10cm_tavg"].attrs["units"] = "kg m-2"
        return ds

    _rewrite_netcdf(path, to_kg)
    cfg = _config(tiny_twin, tmp_path, root)
    with pytest.raises(
        DataError, match=r"'SoilMoi00_10cm_tavg' in .*A2019.* has units 'kg m-2'; expected one"
    ):
        run_pipeline(cfg, ["discover", "ingest"])


def test_interferogram_on_another_grid_is_named(tiny_twin, tmp_path):
    root = _copy_twin(tiny_twin, tmp_path)
    frame = tiny_twin.frames[0]
    item_path = _frame_items(root, frame)[1]
    item = json.loads(item_path.read_text())
    for key in ("unw_phase", "corr"):
        cog = _asset_path(item_path, item, key)
        with rasterio.open(cog) as src:
            profile, data = src.profile, src.read()
        t = profile["transform"]
        # 0.3 pixel east: off the frame's pixel lattice (a whole-pixel shift would be a pair on
        # its own extent, read onto the frame's union grid)
        profile["transform"] = rasterio.Affine(t.a, 0, t.c + 0.3 * t.a, 0, t.e, t.f)
        tmp = cog.with_name(cog.name + ".new.tif")
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data)
        os.replace(tmp, cog)
    _edit_item(
        item_path,
        lambda it: it["properties"].__setitem__(
            "proj:transform", [t.a, 0.0, t.c + 0.3 * t.a, 0.0, t.e, t.f]
        ),
    )
    cfg = _config(tiny_twin, tmp_path, root)
    with pytest.raises(
        DataError,
        match=rf"off the frame grid's pixel lattice, e.g. '{item['id']}'.*ingest.resample",
    ):
        run_pipeline(cfg, ["discover", "ingest"])
    _assert_nothing_published(cfg, "ingest")


def test_dates_out_of_order_name_the_item(tiny_twin, tmp_path):
    root = _copy_twin(tiny_twin, tmp_path)
    item_path = _frame_items(root, tiny_twin.frames[1])[1]

    def swap(it):
        p = it["properties"]
        p["start_datetime"], p["end_datetime"] = p["end_datetime"], p["start_datetime"]
        p["datetime"] = p["start_datetime"]

    item = _edit_item(item_path, swap)
    cfg = _config(tiny_twin, tmp_path, root)
    with pytest.raises(DataError, match=r"end_datetime <= start_datetime; dates out of order") as e:
        run_pipeline(cfg, ["discover", "ingest"])
    assert item["id"] in str(e.value)
    _assert_nothing_published(cfg, "ingest")


def test_frame_with_no_coherent_pixel_is_a_clear_error(tiny_twin, tmp_path):
    root = _copy_twin(tiny_twin, tmp_path)
    frame = tiny_twin.frames[0]
    for item_path in sorted((root / "stac" / f"twin-s1-ifg-{frame}").glob("*/*.json")):
        item = json.loads(item_path.read_text())
        cog = _asset_path(item_path, item, "unw_phase")
        with rasterio.open(cog) as src:
            profile, data = src.profile, src.read()
        tmp = cog.with_name(cog.name + ".new.tif")
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(np.full_like(data, np.nan))
        os.replace(tmp, cog)
    cfg = _config(tiny_twin, tmp_path, root)
    with pytest.raises(DataError) as info:
        run_pipeline(cfg, ["discover", "ingest", "sbas"])
    # every pair is empty: SBAS drops them all from the network and says so
    assert f"frame {frame}: all " in str(info.value)
    assert "interferograms have no valid phase at any pixel" in str(info.value)
    store = ProductStore(cfg.store.url)
    assert store.record("ingest") is not None  # the input itself was readable: all NaN
    assert store.record("sbas") is None


def test_gnss_file_with_bad_lines_warns_counts_and_keeps_the_good_ones(tiny_twin, tmp_path):
    root = _copy_twin(tiny_twin, tmp_path)
    path = root / "gnss" / "midas.IGS14.txt"
    lines = path.read_text().splitlines()
    n_good = len([ln for ln in lines if ln.strip() and not ln.startswith("#")])
    bad = [
        "this is not a MIDAS line",
        lines[0].replace("0.027663", "fast"),  # a number that does not parse
        " ".join(lines[1].split()[:10]),  # a truncated line
    ]
    broken = [lines[0], bad[0], *lines[1:5], bad[1], *lines[5:], bad[2]]
    _replace_bytes(path, ("\n".join(broken) + "\n").encode())
    cfg = _config(tiny_twin, tmp_path, root)
    run_pipeline(cfg, ["discover", "ingest"])
    gnss = ProductStore(cfg.store.url).open("ingest", "gnss")
    assert gnss.sizes["station"] == n_good == tiny_twin.sizes["n_gnss"]
    # the repair is counted and recorded in the product
    assert gnss.attrs["n_dropped_malformed"] == 3


def test_gnss_file_with_no_valid_line_is_an_error(tiny_twin, tmp_path):
    root = _copy_twin(tiny_twin, tmp_path)
    _replace_bytes(root / "gnss" / "midas.IGS14.txt", b"garbage\nmore garbage 1 2 3\n")
    cfg = _config(tiny_twin, tmp_path, root)
    with pytest.raises(DataError, match=r"holds no usable station line .*2 malformed"):
        run_pipeline(cfg, ["discover", "ingest"])
    _assert_nothing_published(cfg, "ingest")


def test_empty_search_is_a_clear_error_with_the_fix(tiny_twin, tmp_path, capsys):
    cfg = twin_config(tiny_twin, tmp_path / "store")
    cfg.sources.datetime = cfg.sources.hydro_datetime = WINDOW
    cfg.sources.bbox = (10.0, 10.0, 11.0, 11.0)  # far from the plain: nothing there
    path = tmp_path / "config.yaml"
    path.write_text(to_yaml(cfg))
    code = main(["run", "--config", str(path), "--stages", "discover", "-q", "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 1
    (line,) = [ln for ln in err.splitlines() if ln.startswith("ncp-subsidence: error")]
    assert "DataError" in line and "returned no items in bbox [10.0, 10.0, 11.0, 11.0]" in line
    assert "widen the search or set discover.fail_on_empty: false" in line
    assert "Traceback" not in err
    _assert_nothing_published(cfg, "discover")


def test_empty_search_allowed_then_ingest_says_what_is_missing(tiny_twin, tmp_path):
    cfg = twin_config(tiny_twin, tmp_path / "store", discover={"fail_on_empty": False})
    cfg.sources.datetime = cfg.sources.hydro_datetime = WINDOW
    cfg.sources.bbox = (10.0, 10.0, 11.0, 11.0)
    report = run_pipeline(cfg, ["discover"])
    assert report["discover"].action == "ran"  # an empty discovery is recorded, as asked
    with pytest.raises(DataError, match=r"no interferogram items to .*empty search"):
        run_pipeline(cfg, ["ingest"])
    _assert_nothing_published(cfg, "ingest")
