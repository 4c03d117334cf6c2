"""Tests of the SBAS xarray/dask wrapper: chunk invariance, no compute at build time, metadata."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ncp_subsidence.errors import ConfigError, DataError
from ncp_subsidence.kernels.sbas import invert_network
from ncp_subsidence.stages.sbas import choose_reference, invert_dataset, network_from_dataset


def _cube(ny, nx, n_date, *, nan_fraction=0.05, seed=0, max_step=3, chunks=None):
    rng = np.random.default_rng(seed)
    dates = np.datetime64("2020-01-01T00:00:00", "ns") + np.arange(n_date) * np.timedelta64(12, "D")
    pairs = np.array(
        [(i, i + k) for i in range(n_date) for k in range(1, max_step + 1) if i + k < n_date]
    )
    rate = rng.uniform(-20, 0, (ny, nx))  # rad/yr
    t = np.arange(n_date) * 12 / 365.25
    phi = rate[None] * t[:, None, None]
    unw = phi[pairs[:, 1]] - phi[pairs[:, 0]] + 0.2 * rng.standard_normal((pairs.shape[0], ny, nx))
    unw[rng.random(unw.shape) < nan_fraction] = np.nan
    coh = rng.uniform(0.2, 0.95, unw.shape)
    ds = xr.Dataset(
        {
            "unw_phase": (("pair", "y", "x"), unw.astype(np.float32)),
            "coherence": (("pair", "y", "x"), coh.astype(np.float32)),
        },
        coords={
            "y": 40.0 - 0.001 * np.arange(ny),
            "x": 115.0 + 0.001 * np.arange(nx),
            "reference": ("pair", dates[pairs[:, 0]]),
            "secondary": ("pair", dates[pairs[:, 1]]),
        },
    )
    if chunks is not None:  # data lazy, pair coordinates in memory (as open_zarr gives them)
        for name in ("unw_phase", "coherence"):
            ds[name] = ds[name].chunk({"pair": -1, "y": chunks[0], "x": chunks[1]})
    return ds, pairs, dates


def _fail_if_computed(*args, **kwargs):
    raise AssertionError("the graph was computed while it was being built")


def test_network_from_dataset_recovers_pairs_and_dates():
    ds, pairs, dates = _cube(3, 3, 7)
    got_pairs, got_dates = network_from_dataset(ds)
    np.testing.assert_array_equal(got_pairs, pairs)
    np.testing.assert_array_equal(got_dates, dates)


def test_building_the_graph_computes_nothing():
    ds, _, _ = _cube(12, 10, 9, chunks=(5, 4))
    with dask.config.set(scheduler=_fail_if_computed):
        out = invert_dataset(
            ds, weights="coherence", method="nsbas", reference=(ds.y.values[6], ds.x.values[5])
        )
    assert out["displacement"].dims == ("time", "y", "x")
    assert out["displacement"].chunks == ((9,), (5, 5, 2), (4, 4, 2))
    assert out["velocity"].dtype == np.float32 and out["n_pairs"].dtype == np.int32
    assert out["velocity"].attrs["units"] == "mm/yr" and out["displacement"].attrs["units"] == "mm"
    assert out.attrs["reference_row"] == 6 and out.attrs["reference_col"] == 5
    assert out.sizes["time"] == 9


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ny=st.integers(3, 9),
    nx=st.integers(3, 9),
    n_date=st.integers(5, 9),
    chunk_a=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    chunk_b=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    nan_fraction=st.sampled_from([0.0, 0.1, 0.3]),
    weights=st.sampled_from(["none", "coherence"]),
    method=st.sampled_from(["svd", "nsbas"]),
    seed=st.integers(0, 2**16),
)
def test_results_do_not_depend_on_chunking(
    ny, nx, n_date, chunk_a, chunk_b, nan_fraction, weights, method, seed
):
    ds, pairs, dates = _cube(ny, nx, n_date, nan_fraction=nan_fraction, seed=seed)
    kwargs = {"weights": weights, "method": method, "min_pairs_fraction": 0.3}
    with dask.config.set(scheduler="synchronous"):
        a = invert_dataset(ds.chunk({"y": chunk_a[0], "x": chunk_a[1]}), **kwargs).compute()
        b = invert_dataset(ds.chunk({"y": chunk_b[0], "x": chunk_b[1]}), **kwargs).compute()
    eager = invert_network(
        np.moveaxis(ds["unw_phase"].values, 0, -1),
        pairs,
        dates,
        coherence=np.moveaxis(ds["coherence"].values, 0, -1),
        weights=weights,
        method=method,
        min_pairs=max(n_date - 1, int(np.ceil(0.3 * pairs.shape[0]))),
    )
    for name in ("displacement", "velocity", "velocity_std", "temporal_coherence", "n_pairs"):
        np.testing.assert_allclose(a[name].values, b[name].values, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(a["n_components"].values, b["n_components"].values)
    np.testing.assert_allclose(
        a["displacement"].values, np.moveaxis(eager.displacement, -1, 0), rtol=1e-6, atol=1e-6
    )
    np.testing.assert_allclose(a["velocity"].values, eager.velocity, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(a["n_pairs"].values, eager.n_pairs_used)


def test_referencing_subtracts_the_window_mean():
    ds, pairs, dates = _cube(8, 8, 7, nan_fraction=0.0)
    ry, rx = 3, 4
    out = invert_dataset(ds.chunk({"y": 4, "x": 4}), reference=(ds.y.values[ry], ds.x.values[rx]))
    unw = np.moveaxis(ds["unw_phase"].values.astype(np.float64), 0, -1)
    unw = unw - unw[ry - 1 : ry + 2, rx - 1 : rx + 2].mean(axis=(0, 1))
    expected = invert_network(unw, pairs, dates)
    np.testing.assert_allclose(out["velocity"].values, expected.velocity, rtol=1e-5, atol=1e-4)
    # the reference window itself averages to zero motion
    assert abs(float(out["velocity"][ry - 1 : ry + 2, rx - 1 : rx + 2].mean())) < 1e-3


def test_choose_reference_returns_coordinates_of_a_complete_coherent_window():
    ds, _, _ = _cube(10, 12, 6, nan_fraction=0.0)
    coh = ds["coherence"].values
    coh[:, 6:9, 2:5] = 0.97
    ds["coherence"] = (("pair", "y", "x"), coh)
    y, x = choose_reference(ds.chunk({"y": 5}), min_coherence=0.9)
    assert y == ds.y.values[7] and x == ds.x.values[3]


def test_wrapper_rejects_bad_datasets():
    ds, _, _ = _cube(4, 4, 6)
    with pytest.raises(ConfigError, match="needs a coherence"):
        invert_dataset(ds.drop_vars("coherence"), weights="coherence")
    with pytest.raises(DataError, match="'secondary' coordinate"):
        invert_dataset(ds.drop_vars("secondary"))
    dup = xr.concat([ds, ds.isel(pair=[0])], dim="pair")
    with pytest.raises(DataError, match="duplicate pair"):
        invert_dataset(dup)
    with pytest.raises(DataError, match="expected"):
        invert_dataset(ds.rename({"x": "lon"}))
    with pytest.raises(DataError, match="leaves the scene"):
        invert_dataset(ds, reference=(ds.y.values[0], ds.x.values[2]))
