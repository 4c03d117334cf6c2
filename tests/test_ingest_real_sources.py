"""Ingest of real provider conventions given as ``kind: file`` sources (globs and lists), and
remote reads through the project's readers: retried on 503, authenticated with a bearer token."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from conftest import twin_config
from rasterio.transform import from_origin

from ncp_subsidence.errors import NetworkError
from ncp_subsidence.io import remote
from ncp_subsidence.io.readers import open_netcdf, read_midas_checked, read_raster
from ncp_subsidence.pipeline import run_pipeline
from ncp_subsidence.testing.servers import FileServer

MIDAS_SAMPLE = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "gnss"
    / "midas.IGS14_sample.txt"
)  # fmt: skip
#: CSR-style solutions (start, end) of three months in 2019
SOLUTIONS = [
    ("2019-01-01", "2019-02-01"),
    ("2019-02-01", "2019-03-01"),
    ("2019-03-01", "2019-04-01"),
]


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch):
    monkeypatch.setattr(remote.time, "sleep", lambda s: None)


def _days(dates):
    return (np.array(dates, dtype="datetime64[D]") - np.datetime64("2002-01-01")).astype(float)


def write_csr(path: Path, solutions=SOLUTIONS) -> Path:
    """A CSR-convention mascon file: lon 0..360 at 0.25 deg, cm, days since 2002, time_bounds."""
    lat = np.arange(30 + 0.125, 45, 0.25)
    lon = np.arange(0.125, 360, 0.25)
    b = np.stack([_days([s for s, _ in solutions]), _days([e for _, e in solutions])], axis=1)
    data = np.stack([np.full((lat.size, lon.size), k + 1.0) for k in range(len(solutions))])
    ds = xr.Dataset(
        {
            "lwe_thickness": (("time", "lat", "lon"), data.astype("f4"), {"units": "cm"}),
            "time_bounds": (("time", "bounds"), b, {"units": "days since 2002-01-01T00:00:00Z"}),
        },
        coords={
            "time": ("time", b.mean(axis=1), {
                "units": "days since 2002-01-01T00:00:00Z", "bounds": "time_bounds",
                "calendar": "gregorian"}),
            "lat": ("lat", lat, {"units": "degrees_north"}),
            "lon": ("lon", lon, {"units": "degrees_east"}),
        },
    )  # fmt: skip
    ds.to_netcdf(path, engine="h5netcdf")
    return path


def write_midas(path: Path) -> Path:
    """The real MIDAS sample plus NCP rows: one with NaN, a duplicate, one at lon - 360."""
    real = MIDAS_SAMPLE.read_text().splitlines()
    template = real[1].split()

    def row(station, lat, lon, vu=-0.05, duration="6.8063"):
        parts = list(template)
        parts[0], parts[4], parts[10] = station, duration, str(vu)
        parts[24], parts[25] = str(lat), str(lon)
        return " ".join(parts)

    extra = [
        row("NCP1", 37.5, 116.5),
        row("NCP2", 37.0, 116.0 - 360.0),  # NGL writes some longitudes below -180
        row("NCP3", 38.0, 117.0, vu="NaN"),
        row("NCP1", 37.5, 116.5, duration="1.0"),  # duplicate, shorter series: dropped
    ]
    path.write_text("\n".join([*real, *extra]) + "\n")
    return path


def test_file_sources_with_globs_and_lists_ingest(tiny_twin, tmp_path, caplog):
    grace_dir = tmp_path / "grace"
    grace_dir.mkdir()
    write_csr(grace_dir / "CSR_GRACE_GRACE-FO_RL06_Mascons_v02.nc")
    midas = write_midas(tmp_path / "midas.IGS14.txt")
    cfg = twin_config(tiny_twin, tmp_path / "store")
    cfg = cfg.model_copy(
        update={
            "sources": cfg.sources.model_copy(
                update={
                    "grace": type(cfg.sources.gnss or cfg.sources.grace or _source())(
                        kind="file", url=str(grace_dir / "CSR_*.nc"),
                        datetime="2019-01-01/2019-12-31",
                    ),
                    "gnss": _source(kind="file", url=[str(midas)]),
                }
            )
        }
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="ncp_subsidence"):
        run_pipeline(cfg, ["discover", "ingest"])
    from ncp_subsidence.io.stores import open_store

    store = open_store(cfg.store)
    grace = store.open("ingest", "hydro/grace")
    assert grace["grace_twsa"].attrs["units"] == "mm"
    months = grace["time"].values.astype("datetime64[M]").astype(str).tolist()
    assert months == ["2019-01", "2019-02", "2019-03"]
    np.testing.assert_allclose(grace["grace_twsa"].values[:, 0, 0], [10.0, 20.0, 30.0])
    lon = grace["lon"].values
    assert lon.min() >= 113.5 - 1 - 0.25 and lon.max() <= 119.5 + 1 + 0.25  # -180..180, padded

    gnss = store.open("ingest", "gnss")
    stations = sorted(map(str, gnss["station"].values))
    assert stations == ["NCP1", "NCP2"]
    np.testing.assert_allclose(gnss["lon"].sel(station="NCP2").values, 116.0)
    report = json.loads(gnss.attrs["quality_report"])
    assert report["n_nan"] == 1 and report["n_duplicate"] == 1
    assert gnss.attrs["n_outside_frames"] == len(MIDAS_SAMPLE.read_text().splitlines())
    assert "outside every interferogram frame" in caplog.text


def _source(**kw):
    from ncp_subsidence.config import SourceOptions

    return SourceOptions(**kw) if kw else SourceOptions(kind="file", url="x")


# ---------------------------------------------------------------- remote reads: 503 and tokens


def _cog(path: Path) -> Path:
    data = np.arange(16, dtype="float32").reshape(4, 4)
    with rasterio.open(
        path, "w", driver="GTiff", width=4, height=4, count=1, dtype="float32",
        crs="EPSG:4326", transform=from_origin(116, 38, 0.1, 0.1), nodata=np.nan,
    ) as dst:  # fmt: skip
        dst.write(data, 1)
    return path


def _nc(path: Path) -> Path:
    xr.Dataset({"v": (("x",), np.arange(3.0), {"units": "mm"})}).to_netcdf(path, engine="h5netcdf")
    return path


def test_reads_survive_two_503s(tmp_path):
    _cog(tmp_path / "a.tif")
    _nc(tmp_path / "a.nc")
    with FileServer(tmp_path, fail_first=2) as srv:
        da = read_raster(f"{srv.url}/a.tif", retries=3)
        ds = open_netcdf(f"{srv.url}/a.nc", retries=3)
    np.testing.assert_array_equal(da.values.ravel(), np.arange(16))
    np.testing.assert_array_equal(ds["v"].values, [0, 1, 2])


@pytest.mark.parametrize("name", ["a.tif", "a.nc"])
def test_server_down_is_one_network_error(tmp_path, name):
    _cog(tmp_path / "a.tif")
    _nc(tmp_path / "a.nc")
    with FileServer(tmp_path, always=True) as srv, pytest.raises(NetworkError) as info:
        (read_raster if name.endswith("tif") else open_netcdf)(f"{srv.url}/{name}", retries=2)
    text = str(info.value)
    assert "\n" not in text and "fix the file" not in text
    assert "3 tries" in text and name in text


def test_bearer_token_is_sent_and_never_recorded(tmp_path, caplog):
    token = "s3cr3t-token-value"
    _cog(tmp_path / "a.tif")
    _nc(tmp_path / "a.nc")
    write_midas(tmp_path / "midas.txt")
    headers = {"Authorization": f"Bearer {token}"}
    with caplog.at_level(logging.DEBUG, logger="ncp_subsidence"), FileServer(tmp_path, token=token) as srv:
        da = read_raster(f"{srv.url}/a.tif", headers=headers)
        ds = open_netcdf(f"{srv.url}/a.nc", headers=headers)
        table, report = read_midas_checked(f"{srv.url}/midas.txt", headers=headers)
        n_authenticated = len(srv.auth_seen)
        with pytest.raises(NetworkError) as info:
            open_netcdf(f"{srv.url}/a.nc", retries=0)  # no token: 401, says how to log in
    assert n_authenticated and all(srv.auth_seen[:n_authenticated])
    assert "401" in str(info.value)
    assert da.shape == (4, 4) and ds["v"].size == 3 and "NCP1" in set(table["station"])
    assert token not in caplog.text
    assert token not in json.dumps({**da.attrs, **ds.attrs, **report}, default=str)
