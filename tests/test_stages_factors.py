"""Stage ``factors``: every driving factor on the factor grid, GWSA trend resampled from hydro."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr

from ncp_subsidence.choices import FACTOR_NAMES
from ncp_subsidence.errors import DataError
from ncp_subsidence.stages.factors import resample_to_grid


@pytest.fixture(autouse=True)
def _threads():
    with dask.config.set(scheduler="threads", num_workers=2):
        yield


def _grid(west, north, res, ny, nx):
    return north - res * (np.arange(ny) + 0.5), west + res * (np.arange(nx) + 0.5)


def test_factors_product_has_every_factor_with_cf_attrs_and_crs(truth_pipeline, tiny_twin):
    _cfg, store = truth_pipeline
    ds = store.open("factors", "factors")
    assert set(ds.data_vars) == set(FACTOR_NAMES)
    assert list(ds.attrs["factors"]) == list(FACTOR_NAMES)  # [H25] Table 1 order, GWSA first
    assert list(ds.attrs["missing_factors"]) == []
    assert ds.rio.crs.to_epsg() == 4326
    ingest = store.open("ingest", "factors")
    np.testing.assert_array_equal(ds["lat"].values, ingest["lat"].values)
    np.testing.assert_array_equal(ds["lon"].values, ingest["lon"].values)
    for name in FACTOR_NAMES:
        assert ds[name].dtype == np.float32
        assert ds[name].attrs["units"] and ds[name].attrs["long_name"]
        assert ds[name].rio.crs.to_epsg() == 4326
    assert ds["gwsa_trend"].attrs["units"] == "mm/yr"
    assert ds["dem"].attrs["standard_name"] == "surface_altitude"
    for name in FACTOR_NAMES[1:]:  # passed through from ingest unchanged
        np.testing.assert_array_equal(ds[name].values, ingest[name].values)


def test_gwsa_trend_is_the_cell_average_of_the_finer_hydro_grid(truth_pipeline, tiny_twin):
    _cfg, store = truth_pipeline
    hydro = store.open("hydro", "trend")["gwsa_trend"].values.astype(np.float64)
    got = store.open("factors", "factors")["gwsa_trend"]
    assert "average" in got.attrs["resampling"]
    # 0.025 deg hydro cells nest 2 x 2 in the 0.05 deg factor cells
    ny, nx = got.shape
    expected = hydro.reshape(ny, 2, nx, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(got.values, expected, rtol=0, atol=1e-4)
    # and it is the twin's truth at the factor cells, up to the averaging of a smooth field
    truth = xr.open_zarr(tiny_twin.truth, consolidated=False)["gwsa_trend"].values
    ok = np.isfinite(truth)
    assert np.abs(got.values[ok] - truth[ok]).max() < 1.0
    assert np.corrcoef(got.values[ok], truth[ok])[0, 1] > 0.999


def test_resample_bilinear_from_a_coarser_grid_is_exact_on_a_plane():
    lat_c, lon_c = _grid(114.0, 40.0, 0.2, 10, 12)
    plane = 3.0 * lon_c[None, :] - 2.0 * lat_c[:, None]
    src = xr.DataArray(plane, dims=("lat", "lon"), coords={"lat": lat_c, "lon": lon_c})
    lat_f, lon_f = _grid(114.4, 39.6, 0.05, 20, 24)  # inside the coarse centres
    out = resample_to_grid(src, lat_f, lon_f)
    assert out.attrs["resampling"].startswith("bilinear")
    expected = 3.0 * lon_f[None, :] - 2.0 * lat_f[:, None]
    np.testing.assert_allclose(out.values, expected, rtol=0, atol=1e-3)


def test_resample_average_ignores_nan_and_handles_ascending_latitude():
    rng = np.random.default_rng(1)
    lat_f, lon_f = _grid(114.0, 40.0, 0.01, 30, 40)
    values = rng.normal(size=(30, 40))
    values[3, 7] = np.nan
    src = xr.DataArray(
        values[::-1], dims=("lat", "lon"), coords={"lat": lat_f[::-1], "lon": lon_f}
    )  # stored south-up
    lat_t, lon_t = _grid(114.0, 40.0, 0.05, 6, 8)
    out = resample_to_grid(src, lat_t, lon_t)
    blocks = values.reshape(6, 5, 8, 5)
    expected = np.nanmean(blocks, axis=(1, 3))
    np.testing.assert_allclose(out.values, expected, rtol=0, atol=1e-6)


def test_resample_rejects_an_irregular_grid_and_an_unknown_method():
    lat, lon = _grid(114.0, 40.0, 0.1, 4, 5)
    src = xr.DataArray(np.zeros((4, 5)), dims=("lat", "lon"), coords={"lat": lat, "lon": lon})
    with pytest.raises(DataError, match="unknown resampling"):
        resample_to_grid(src, lat, lon, method="cubic")
    bad = src.assign_coords(lon=[114.05, 114.15, 114.3, 114.35, 114.45])
    with pytest.raises(DataError, match="not regularly spaced"):
        resample_to_grid(bad, lat, lon)
