"""Remote reads: retries with backoff on 429/5xx, a clear line when a server stays down, and
credentials sent but never shown (a file server on 127.0.0.1 that fails or needs a token)."""

from __future__ import annotations

import fsspec
import numpy as np
import pytest
import xarray as xr

from ncp_subsidence.errors import NetworkError
from ncp_subsidence.io.remote import (
    credential_label,
    fsspec_options,
    gdal_options,
    is_earthdata,
    retrying,
)
from ncp_subsidence.testing.servers import FileServer

TOKEN = "edl-token-Xy7-do-not-leak"


@pytest.fixture
def files(tmp_path):
    import rasterio
    from rasterio.transform import from_origin

    data = np.arange(64 * 64, dtype="float32").reshape(64, 64)
    with rasterio.open(
        tmp_path / "a.tif",
        "w",
        driver="GTiff",
        height=64,
        width=64,
        count=1,
        dtype="float32",
        crs="EPSG:4326",
        transform=from_origin(116.0, 40.0, 0.01, 0.01),
        tiled=True,
        blockxsize=16,
        blockysize=16,
    ) as dst:
        dst.write(data, 1)
    xr.Dataset({"v": (("lat", "lon"), data[:4, :5].astype("float64"))}).to_netcdf(
        tmp_path / "b.nc", engine="h5netcdf"
    )
    return tmp_path, data


def _read_cog(url, **env):
    import rasterio

    with rasterio.Env(**env), rasterio.open(f"/vsicurl/{url}") as src:
        return src.read(1)


def _read_nc(url, options):
    with fsspec.open(url, "rb", **options) as f, xr.open_dataset(f, engine="h5netcdf") as ds:
        return ds["v"].values.copy()


def test_cog_and_netcdf_read_after_two_503s(files):
    root, data = files
    with FileServer(root, fail_first=2) as server:
        url = f"{server.url}/a.tif"
        got = retrying(
            lambda: _read_cog(url, **gdal_options(url, retries=3)),
            url=url,
            what="source 'dem'",
            retries=3,
            backoff_s=0.01,
        )
        np.testing.assert_array_equal(got, data)
        url = f"{server.url}/b.nc"
        got = retrying(
            lambda: _read_nc(url, fsspec_options(url)),
            url=url,
            what="source 'grace'",
            retries=3,
            backoff_s=0.01,
        )
        np.testing.assert_array_equal(got, data[:4, :5])
        assert server.requests["/b.nc"] > 2  # the two failures were really served


def test_gdal_retries_by_itself_with_the_options(files):
    """The GDAL options alone (as stackstac's workers read) ride out two 503s."""
    root, data = files
    with FileServer(root, fail_first=2) as server:
        url = f"{server.url}/a.tif"
        np.testing.assert_array_equal(_read_cog(url, **gdal_options(url, retries=3)), data)


def test_a_server_that_stays_down_is_one_clear_line(files):
    root, _ = files
    with FileServer(root, always=True) as server:
        url = f"{server.url}/b.nc"
        with pytest.raises(NetworkError) as info:
            retrying(
                lambda: _read_nc(url, fsspec_options(url)),
                url=url,
                what="source 'grace'",
                retries=2,
                backoff_s=0.01,
            )
        message = str(info.value)
        assert "\n" not in message
        assert "source 'grace'" in message and "b.nc" in message and "3 tries" in message
        assert "503" in message and "sources.retries" in message
        assert server.requests["/b.nc"] >= 3


def test_not_found_is_not_retried(files):
    root, _ = files
    calls = []

    def read():
        calls.append(1)
        return _read_nc(url, {})

    with FileServer(root) as server:
        url = f"{server.url}/missing.nc"
        with pytest.raises(FileNotFoundError):
            retrying(read, url=url, what="x", retries=3, backoff_s=0.01)
    assert len(calls) == 1


def test_bearer_token_sent_and_401_explained(files, caplog):
    root, data = files
    with FileServer(root, token=TOKEN) as server:
        url = f"{server.url}/b.nc"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        got = retrying(
            lambda: _read_nc(url, fsspec_options(url, headers)),
            url=url,
            what="source 'grace'",
            headers=headers,
        )
        np.testing.assert_array_equal(got, data[:4, :5])
        cog = f"{server.url}/a.tif"
        np.testing.assert_array_equal(_read_cog(cog, **gdal_options(cog, headers)), data)
        with pytest.raises(NetworkError, match=r"HTTP 401 .*EARTHDATA_TOKEN.*\.netrc") as info:
            retrying(lambda: _read_nc(url, fsspec_options(url)), url=url, what="source 'grace'")
    assert TOKEN not in str(info.value) + caplog.text
    assert any(server.auth_seen) and not all(server.auth_seen)


def test_earthdata_token_goes_to_earthdata_hosts_only(monkeypatch):
    monkeypatch.setenv("EARTHDATA_TOKEN", TOKEN)
    nasa = "https://data.gesdisc.earthdata.nasa.gov/data/GLDAS/x.nc4"
    assert is_earthdata(nasa) and not is_earthdata("https://example.org/x.nc")
    assert fsspec_options(nasa)["headers"] == {"Authorization": f"Bearer {TOKEN}"}
    assert fsspec_options("https://example.org/x.nc")["headers"] == {}
    assert "GDAL_HTTP_HEADERS" not in gdal_options("https://example.org/x.tif")
    assert credential_label(nasa) == "EARTHDATA_TOKEN"
    assert TOKEN not in credential_label(nasa)
