"""Ingest of real provider conventions given as ``kind: file`` sources (globs and lists), and
remote reads through the project's readers: retried on 503, authenticated with a bearer token."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import dask
import numpy as np
import pytest
import rasterio
import xarray as xr
from conftest import twin_config
from rasterio.transform import from_origin

from ncp_subsidence.errors import NetworkError
from ncp_subsidence.io import remote
from ncp_subsidence.io.products.midas import MIDAS_COLUMNS
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


def write_dirty_midas(twin_midas: Path, path: Path) -> Path:
    """The twin's MIDAS table with what real tables hold, and what a run must screen out.

    Added: the real NGL sample rows (stations outside every frame; one at lon -229.156),
    three stations inside the frames with ``vu`` NaN (before the screen they moved the SBAS
    reference to the fastest-sinking one), one with ``su`` NaN, a repeat of a twin station with
    a shorter series and another velocity; and one twin station rewritten at lon - 360 as NGL
    writes some. Screened correctly, the table is the twin's own.
    """
    rows = twin_midas.read_text().splitlines()
    fields = [r.split() for r in rows]
    lon = MIDAS_COLUMNS.index("lon")
    k = next(i for i, f in enumerate(fields) if float(f[lon]) > -180)
    fields[k][lon] = f"{float(fields[k][lon]) - 360.0:.5f}"
    extra = []
    for n, template in enumerate(fields[:4]):
        bad = list(template)
        bad[0] = f"X00{n}"
        bad[MIDAS_COLUMNS.index("vu" if n < 3 else "su")] = "NaN"
        extra.append(bad)
    repeat = list(fields[-1])
    repeat[MIDAS_COLUMNS.index("duration")] = "0.5000"
    repeat[MIDAS_COLUMNS.index("vu")] = "-0.1000"
    extra.append(repeat)
    lines = [" ".join(f) for f in [*fields, *extra]]
    path.write_text("\n".join([*lines, *MIDAS_SAMPLE.read_text().splitlines()]) + "\n")
    return path


def write_imerg_month(path: Path, month: str, rate_mm_hr: float) -> Path:
    """A V07 monthly IMERG file as GES DISC writes it: group Grid, (time, lon, lat), mm/hr,
    seconds since 1980-01-06 in the "julian" calendar, fill -9999.9 (cut to 100-130 E, 20-50 N)."""
    lat = np.round(np.arange(20.05, 50, 0.1), 2)
    lon = np.round(np.arange(100.05, 130, 0.1), 2)
    start = np.datetime64(month, "s")
    end = (np.datetime64(month, "M") + 1).astype("datetime64[s]")
    # Julian calendar labels: the same calendar date, 13 days later in the proleptic Gregorian

    def to_seconds(t):
        shifted = t - np.datetime64("1980-01-06", "s") + np.timedelta64(13 * 86400, "s")
        return float(shifted / np.timedelta64(1, "s"))

    pr = np.full((1, lon.size, lat.size), rate_mm_hr, dtype="float32")
    pr[0, 0, 0] = -9999.9
    units = "seconds since 1980-01-06 00:00:00 UTC"
    ds = xr.Dataset(
        {
            "precipitation": (("time", "lon", "lat"), pr, {"units": "mm/hr", "_FillValue": np.float32(-9999.9)}),
            "time_bnds": (("time", "nv"), [[to_seconds(start), to_seconds(end)]], {}),
        },
        coords={
            "time": ("time", [to_seconds(start)], {"units": units, "calendar": "julian", "bounds": "time_bnds"}),
            "lon": ("lon", lon, {"units": "degrees_east"}),
            "lat": ("lat", lat, {"units": "degrees_north"}),
        },
    )  # fmt: skip
    encoding = {k: {"_FillValue": None} for k in ds.coords}
    ds.to_netcdf(path, engine="h5netcdf", group="Grid", encoding=encoding)
    return path


def test_file_sources_with_globs_and_lists_ingest(tiny_twin, tiny_run, tmp_path, caplog):
    """CSR mascons and IMERG V07 months by glob, and a MIDAS table a real run meets, ingest in
    the providers' conventions; the GNSS screen leaves SBAS exactly as the clean table does."""
    grace_dir = tmp_path / "grace"
    grace_dir.mkdir()
    write_csr(grace_dir / "CSR_GRACE_GRACE-FO_RL06_Mascons_v02.nc")
    imerg_dir = tmp_path / "imerg"
    imerg_dir.mkdir()
    for month, rate in (("2019-03", 0.3), ("2019-01", 0.1), ("2019-02", 0.2)):
        write_imerg_month(
            imerg_dir
            / f"3B-MO.MS.MRG.3IMERG.{month.replace('-', '')}01-S000000-E235959.{month[5:]}.V07A.HDF5",
            month,
            rate,
        )
    midas = write_dirty_midas(tiny_twin.gnss_midas, tmp_path / "midas.IGS14.txt")
    cfg = twin_config(tiny_twin, tmp_path / "store")
    cfg = cfg.model_copy(
        update={
            "sources": cfg.sources.model_copy(
                update={
                    "grace": _source(kind="file", url=str(grace_dir / "CSR_*.nc"), datetime="2019-01-01/2019-12-31"),
                    "imerg": _source(kind="file", url=[str(imerg_dir / "3B-MO.*.V07A.HDF5")], datetime="2019-01-01/2019-12-31"),
                    "gnss": _source(kind="file", url=[str(midas)]),
                }
            )
        }
    )  # fmt: skip
    with (
        caplog.at_level(logging.INFO, logger="ncp_subsidence"),
        dask.config.set(scheduler="threads", num_workers=2),
    ):
        run_pipeline(cfg, ["discover", "ingest", "sbas"])
    from ncp_subsidence.io.stores import open_store

    store = open_store(cfg.store)
    grace = store.open("ingest", "hydro/grace")
    assert grace["grace_twsa"].attrs["units"] == "mm"
    months = grace["time"].values.astype("datetime64[M]").astype(str).tolist()
    assert months == ["2019-01", "2019-02", "2019-03"]
    np.testing.assert_allclose(grace["grace_twsa"].values[:, 0, 0], [10.0, 20.0, 30.0])
    lon = grace["lon"].values
    assert lon.min() >= 113.5 - 1 - 0.25 and lon.max() <= 119.5 + 1 + 0.25  # -180..180, padded

    imerg = store.open("ingest", "hydro/imerg")
    assert imerg["precipitation"].attrs["units"] == "mm/month"
    assert imerg["time"].values.astype("datetime64[M]").astype(str).tolist() == months
    hours = np.array([31, 28, 31]) * 24.0  # mm/hr x hours of the month
    np.testing.assert_allclose(
        imerg["precipitation"].values[:, 5, 5], [0.1, 0.2, 0.3] * hours, rtol=1e-6
    )
    assert (
        113.5 - 1 <= imerg["lon"].values.min() and imerg["lon"].values.max() <= 119.5 + 1
    )  # padded

    gnss, clean = store.open("ingest", "gnss"), tiny_run[1].open("ingest", "gnss")
    xr.testing.assert_equal(gnss.drop_attrs(), clean.drop_attrs())
    report = json.loads(gnss.attrs["quality_report"])
    assert report["n_nan"] == 4 and report["n_duplicate"] == 1
    assert gnss.attrs["n_outside_frames"] == len(MIDAS_SAMPLE.read_text().splitlines())
    assert "outside every interferogram frame" in caplog.text
    for name in store.record("sbas").datasets:
        ours = store.open("sbas", None if name == "." else name)
        theirs = tiny_run[1].open("sbas", None if name == "." else name)
        for key in ("reference_x", "reference_y"):
            assert ours.attrs[key] == theirs.attrs[key], name
        np.testing.assert_array_equal(ours["velocity"].values, theirs["velocity"].values)


def test_jpl_mascons_as_a_file_glob_with_gain_factors_and_land_mask(tiny_twin, tmp_path):
    """JPL RL06.x in its conventions (0.5 deg, lon 0..360, ``time_bnds``, no calendar), given as
    a glob with its scale-factor and land-mask files, read by ingest's GRACE path."""
    from test_products_hydro import MONTHS, _expected_mm, write_mascon, write_static

    from ncp_subsidence.io.stac import discover_items
    from ncp_subsidence.stages.ingest import _read_grace

    data = write_mascon(
        tmp_path / "GRCTellus.JPL.200204_202312.GLO.RL06.3M.MSCNv04CRI.nc",
        0.5, bounds="time_bnds", calendar=None,
    )  # fmt: skip
    gain_fn = lambda lat, lon: 1.0 + 0.1 * np.cos(np.deg2rad(lat))[:, None] + 0 * lon[None, :]  # noqa: E731
    sf = write_static(
        tmp_path / "CLM4.SCALE_FACTOR.JPL.MSCNv04CRI.nc", "scale_factor", 0.5, gain_fn
    )
    sea_fn = lambda lat, lon: np.where((lat[:, None] > 38) & (lon[None, :] > 118.5), 0.0, 1.0)  # noqa: E731
    mask = write_static(tmp_path / "LAND_MASK.CRI.nc", "land_mask", 0.5, sea_fn)
    source = _source(
        kind="file",
        url=str(tmp_path / "GRCTellus.JPL.*.nc"),
        scale_factor=str(sf),
        land_mask=str(mask),
    )
    cfg = twin_config(tiny_twin, tmp_path / "store")
    cfg = cfg.model_copy(update={"sources": cfg.sources.model_copy(update={"grace": source})})
    items = discover_items(source, bbox=cfg.sources.bbox, datetime=cfg.sources.hydro_datetime)
    assert [i.id for i in items] == [data.name]
    ds = _read_grace(cfg, items)
    lat, lon = ds["lat"].values, ds["lon"].values
    assert lon.min() > 100 and lon.max() < 125  # 0..360 normalised to -180..180
    np.testing.assert_array_equal(ds["time"].values, MONTHS)
    expected = _expected_mm(lat, lon, gain_fn(lat, lon).astype(np.float32).astype(np.float64))
    expected[:, sea_fn(lat, lon) == 0] = np.nan
    np.testing.assert_allclose(ds["grace_twsa"].values, expected, rtol=1e-6, equal_nan=True)
    assert ds.attrs == {"scale_factor_file": str(sf), "land_mask_file": str(mask)}
    with pytest.raises(ValueError, match="only sources.grace takes"):
        cfg.sources.model_validate(
            {
                **cfg.sources.model_dump(),
                "gldas": {"kind": "file", "url": "x.nc", "land_mask": "m.nc"},
            }
        )


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
    with (
        caplog.at_level(logging.DEBUG, logger="ncp_subsidence"),
        FileServer(tmp_path, token=token) as srv,
    ):
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
