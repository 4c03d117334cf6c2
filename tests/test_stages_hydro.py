"""The hydro stage's xarray/dask wrappers: grids, chunk invariance, identities, laziness."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from ncp_subsidence.errors import DataError
from ncp_subsidence.kernels import downscale as kds
from ncp_subsidence.kernels import trends as ktr
from ncp_subsidence.stages import hydro

RATIO = 5
FINE = 0.05
COARSE = FINE * RATIO
NY_C, NX_C = 4, 6
TIMES = np.arange("2016-01", "2021-01", dtype="datetime64[M]").astype(
    "datetime64[ns]"
) + np.timedelta64(14, "D")
N_T = TIMES.size


def _coarse(seed=0, descending=True, gap=True):
    rng = np.random.default_rng(seed)
    lat = 39.0 - COARSE * (np.arange(NY_C) + 0.5)
    lon = 115.0 + COARSE * (np.arange(NX_C) + 0.5)
    month = ktr.month_of_year(TIMES)
    values = (
        30 * np.cos(2 * np.pi * (month - 4) / 12)[:, None, None]
        - 1.5 * np.arange(N_T)[:, None, None] / 12
        + rng.normal(size=(N_T, NY_C, NX_C)) * 8
    )
    if gap:
        values[20:26] = np.nan
    da = xr.DataArray(
        values, dims=("time", "lat", "lon"), coords={"time": TIMES, "lat": lat, "lon": lon}
    )
    return da if descending else da.isel(lat=slice(None, None, -1))


def _fine(seed=1, lon_cells=(1, 5), descending=True):
    """Model storage on a fine window: all coarse rows, coarse columns lon_cells[0]:lon_cells[1]."""
    rng = np.random.default_rng(seed)
    ny = NY_C * RATIO
    nx = (lon_cells[1] - lon_cells[0]) * RATIO
    lat = 39.0 - FINE * (np.arange(ny) + 0.5)
    lon = 115.0 + COARSE * lon_cells[0] + FINE * (np.arange(nx) + 0.5)
    month = ktr.month_of_year(TIMES)
    values = (
        250
        + 25
        * np.cos(2 * np.pi * (month - 3) / 12)[:, None, None]
        * rng.uniform(0.5, 1.5, (1, ny, nx))
        + rng.normal(size=(N_T, ny, nx)) * 4
        + rng.uniform(-40, 40, (1, ny, nx))
    )
    da = xr.DataArray(
        values, dims=("time", "lat", "lon"), coords={"time": TIMES, "lat": lat, "lon": lon}
    )
    return da if descending else da.isel(lat=slice(None, None, -1))


def _land(fine):
    yy, xx = np.meshgrid(np.arange(fine.sizes["lat"]), np.arange(fine.sizes["lon"]), indexing="ij")
    land = (xx + 0.7 * yy) < 22
    return xr.DataArray(land, dims=("lat", "lon"), coords={"lat": fine.lat, "lon": fine.lon})


def _no_compute(*args, **kwargs):
    raise AssertionError("a dask graph was computed while it was being built")


# ---------------------------------------------------------------- downscaling


def test_wrapper_equals_kernel_on_the_whole_window():
    coarse, fine = _coarse(), _fine()
    land = _land(fine)
    out = hydro.downscale_twsa(coarse, fine, land_mask=land, chunk_cells=10, dtype=np.float64)
    assert out.dims == ("time", "lat", "lon") and out.chunks[0] == (N_T,)
    assert all(c % RATIO == 0 for c in out.chunks[1] + out.chunks[2])
    nest = hydro.nest_grids(coarse, fine)
    np.testing.assert_array_equal(nest.parent_lon, 1 + np.arange(20) // RATIO)
    weight = kds.cell_area_m2(fine.lat.values, FINE, FINE)[:, None] * land.values
    ref = kds.downscale(
        coarse.values, fine.values, ktr.month_of_year(TIMES), np.ones(N_T, bool),
        kds.interpolation_matrix(coarse.lat.values, fine.lat.values, "cubic"),
        kds.interpolation_matrix(coarse.lon.values, fine.lon.values, "cubic"),
        nest.parent_lat, nest.parent_lon, weight, ratio=RATIO, mode="paper",
    )  # fmt: skip
    np.testing.assert_array_equal(out.values, ref)
    assert out.attrs["units"] == "mm" and not out.filled_flag.values.any()


@settings(max_examples=10, deadline=None)
@given(
    mode=st.sampled_from(["paper", "ratio", "remove_restore"]),
    method=st.sampled_from(["cubic", "bilinear", "nearest"]),
    chunk=st.sampled_from([5, 10, 15]),
)
def test_downscaling_is_identical_whatever_the_chunking(mode, method, chunk):
    coarse, fine = _coarse(2), _fine(3)
    land = _land(fine)
    kw = {"mode": mode, "interpolation": method, "land_mask": land, "dtype": np.float64}
    reference = hydro.downscale_twsa(coarse, fine, chunk_cells=20, **kw).values
    got = hydro.downscale_twsa(coarse, fine.chunk({"lat": 7}), chunk_cells=chunk, **kw)
    np.testing.assert_array_equal(got.values, reference)


@pytest.mark.parametrize("mode", ["ratio", "remove_restore"])
def test_mass_conservation_through_the_wrapper(mode):
    coarse, fine = _coarse(4), _fine(5)
    land = _land(fine)
    out = hydro.downscale_twsa(coarse, fine, mode=mode, land_mask=land, chunk_cells=10)
    assert out.dtype == np.float32
    diag = hydro.coarse_mass_diagnostic(out, coarse, land_mask=land).compute()
    assert diag.fine_mean.shape == (N_T, NY_C, 4)
    assert float(diag.max_abs_difference) < 1e-4
    assert np.isfinite(diag.difference.values[:20]).sum() > 0.8 * 20 * NY_C * 4
    np.testing.assert_array_equal(np.isnan(diag.fine_mean.values[20:26]), True)


def test_paper_mode_baseline_identity_with_gap_fill_and_flag():
    coarse, fine = _coarse(6), _fine(7)
    out = hydro.downscale_twsa(
        coarse,
        fine,
        baseline="2016-01/2019-12",
        gap_fill="harmonic",
        chunk_cells=10,
        dtype=np.float64,
    )
    flag = out.filled_flag.values
    np.testing.assert_array_equal(flag, np.isin(np.arange(N_T), np.arange(20, 26)))
    assert np.isfinite(out.values).all()
    in_baseline = kds.baseline_mask(TIMES, "2016-01", "2019-12")
    tf_clim = kds.monthly_climatology(fine.values, ktr.month_of_year(TIMES), in_baseline)
    month = ktr.month_of_year(TIMES)
    for m in range(1, 13):
        sel = in_baseline & ~flag & (month == m)
        np.testing.assert_allclose(out.values[sel].mean(axis=0), tf_clim[m - 1], rtol=0, atol=1e-4)
    diag = hydro.coarse_mass_diagnostic(out, coarse).compute()
    assert float(diag.max_abs_difference) > 1.0  # the paper's form is not mass-conserving


def test_orientation_does_not_matter():
    kw = {
        "interpolation": "cubic",
        "chunk_cells": 10,
        "dtype": np.float64,
        "mode": "remove_restore",
    }
    north_up = hydro.downscale_twsa(_coarse(8), _fine(9), **kw)
    mixed = hydro.downscale_twsa(_coarse(8, descending=False), _fine(9), **kw)
    south_up = hydro.downscale_twsa(_coarse(8), _fine(9, descending=False), **kw)
    np.testing.assert_array_equal(mixed.values, north_up.values)
    np.testing.assert_allclose(south_up.values[:, ::-1], north_up.values, rtol=0, atol=1e-9)


def test_bad_inputs_are_refused_with_the_fix():
    coarse, fine = _coarse(), _fine()
    with pytest.raises(DataError, match="multiple of the nesting ratio"):
        hydro.downscale_twsa(coarse, fine, chunk_cells=12)
    shifted = fine.assign_coords(lon=fine.lon + FINE)
    with pytest.raises(DataError, match="whole coarse cells"):
        hydro.downscale_twsa(coarse, shifted, chunk_cells=10)
    with pytest.raises(DataError, match="same calendar months"):
        hydro.downscale_twsa(coarse.isel(time=slice(1, None)), fine, chunk_cells=10)
    with pytest.raises(DataError, match="integer multiple"):
        hydro.downscale_twsa(coarse, fine.isel(lon=slice(None, None, 3)), chunk_cells=10)
    with pytest.raises(DataError, match="mode"):
        hydro.downscale_twsa(coarse, fine, mode="weighted")  # type: ignore[arg-type]


# ---------------------------------------------------------------- water balance


def test_gwsa_water_balance_closes_on_one_baseline():
    coarse, fine = _coarse(10, gap=False), _fine(11)
    twsa = hydro.downscale_twsa(coarse, fine, chunk_cells=10, dtype=np.float64)
    rng = np.random.default_rng(12)
    sm, swe, cw = (fine.copy(data=rng.normal(size=fine.shape) * s + 100) for s in (40, 2, 0.3))
    out = hydro.gwsa_water_balance(twsa, sm, swe, cw, baseline="2017-01/2018-12", dtype=np.float64)
    assert set(out.data_vars) == {"twsa", "smsa", "swesa", "cwsa", "gwsa"}
    assert out.gwsa.dims == ("time", "lat", "lon")
    res = out.compute()
    total = res.gwsa + res.smsa + res.swesa + res.cwsa
    np.testing.assert_allclose(total.values, res.twsa.values, rtol=0, atol=1e-12)
    base = kds.baseline_mask(TIMES, "2017-01", "2018-12")
    for name in out.data_vars:
        np.testing.assert_allclose(res[name].values[base].mean(axis=0), 0.0, atol=1e-10)
    np.testing.assert_allclose(res.smsa.values, kds.anomaly(sm.values, base), rtol=1e-14)


def test_gwsa_water_balance_equals_the_kernel_terms_and_computes_only_what_is_asked():
    coarse, fine = _coarse(14), _fine(15)
    twsa = hydro.downscale_twsa(coarse, fine, land_mask=_land(fine), chunk_cells=10)
    rng = np.random.default_rng(16)
    sm, swe, cw = (
        fine.copy(data=(rng.normal(size=fine.shape) * s + 100).astype(np.float32))
        for s in (40, 2, 0.3)
    )
    out = hydro.gwsa_water_balance(twsa, sm, swe, cw, baseline="2017-01/2019-12")
    base = kds.baseline_mask(TIMES, "2017-01", "2019-12")
    want = kds.water_balance_anomalies(twsa.values, sm.values, swe.values, cw.values, base)
    for name, expected in zip(("twsa", "smsa", "swesa", "cwsa", "gwsa"), want, strict=True):
        assert out[name].dtype == np.float32 and out[name].dims == ("time", "lat", "lon")
        assert out[name].chunks == twsa.chunks
        np.testing.assert_array_equal(out[name].values, expected)
    # the gwsa graph holds no task of the other terms (they are culled when not written)
    graph = out.gwsa.data.__dask_graph__()
    assert not any(out[n].data.name in graph.layers for n in ("twsa", "smsa", "swesa", "cwsa"))


# ---------------------------------------------------------------- trends


def _gwsa_cube(seed=13):
    rng = np.random.default_rng(seed)
    t = ktr.decimal_year(TIMES)
    ny, nx = 10, 15
    rate = rng.uniform(-30, 2, (ny, nx))
    values = (
        rate[..., None] * (t - 2018)
        + 15 * np.cos(2 * np.pi * t)
        + rng.normal(size=(ny, nx, N_T)) * 3
    )
    values[0, 0] = np.nan
    cube = xr.DataArray(
        np.moveaxis(values, -1, 0),
        dims=("time", "lat", "lon"),
        coords={"time": TIMES, "lat": 38 + 0.01 * np.arange(ny), "lon": 116 + 0.01 * np.arange(nx)},
        attrs={"units": "mm"},
    )
    return cube, rate


def test_trend_dataset_variables_and_values():
    cube, rate = _gwsa_cube()
    out = hydro.trend_dataset(cube.chunk({"lat": 4, "lon": 6}))
    for name in (
        "gwsa_trend",
        "gwsa_trend_stderr",
        "sen_slope",
        "mk_z",
        "mk_p",
        "annual_amplitude",
        "annual_phase",
    ):
        assert out[name].dims == ("lat", "lon") and out[name].dtype == np.float32
    assert out.gwsa_trend.attrs["units"] == "mm/yr"
    res = out.compute()
    ref = ktr.trend_statistics(
        np.moveaxis(cube.values, 0, -1), ktr.decimal_year(TIMES), ktr.month_of_year(TIMES)
    )
    np.testing.assert_array_equal(res.gwsa_trend.values, ref[..., 0].astype(np.float32))
    np.testing.assert_array_equal(res.mk_p.values, ref[..., 4].astype(np.float32))
    ok = np.isfinite(rate) & np.isfinite(res.gwsa_trend.values)
    assert np.abs(res.gwsa_trend.values[ok] - rate[ok]).max() < 2.0
    assert np.isnan(res.gwsa_trend.values[0, 0])


@settings(max_examples=8, deadline=None)
@given(lat_chunk=st.integers(1, 10), lon_chunk=st.integers(1, 15))
def test_trends_are_identical_whatever_the_chunking(lat_chunk, lon_chunk):
    cube, _ = _gwsa_cube(14)
    whole = hydro.trend_dataset(cube).compute()  # numpy-backed input
    chunked = hydro.trend_dataset(
        cube.chunk({"lat": lat_chunk, "lon": lon_chunk, "time": 7})
    ).compute()
    xr.testing.assert_identical(chunked, whole)


# ---------------------------------------------------------------- laziness and a real cluster


def test_building_the_graphs_computes_nothing():
    coarse, fine = _coarse(15), _fine(16)
    coarse, fine = coarse.chunk(), fine.chunk({"lat": 10})
    land = _land(fine).chunk()
    with dask.config.set(scheduler=_no_compute):
        for mode in ("paper", "ratio", "remove_restore"):
            twsa = hydro.downscale_twsa(
                coarse, fine, mode=mode, land_mask=land, gap_fill="harmonic", chunk_cells=10
            )
            hydro.coarse_mass_diagnostic(twsa, coarse, land_mask=land)
        balance = hydro.gwsa_water_balance(twsa, fine, fine, fine)
        hydro.trend_dataset(balance.gwsa)
    with pytest.raises(AssertionError, match="computed"), dask.config.set(scheduler=_no_compute):
        balance.gwsa.values  # noqa: B018 - the guard itself must be able to fail


def test_runs_on_a_process_cluster(local_cluster):
    from distributed import Client

    coarse, fine = _coarse(17), _fine(18)
    twsa = hydro.downscale_twsa(coarse, fine, mode="ratio", chunk_cells=10, dtype=np.float64)
    trend = hydro.trend_dataset(twsa)
    local = trend.compute(scheduler="synchronous")
    with Client(local_cluster) as client:
        remote = client.compute(trend).result()
    xr.testing.assert_identical(remote, local)
