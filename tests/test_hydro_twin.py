"""The hydro stage on the twin: downscaled GWSA against the truth, for every mode.

The twin's truth GWSA (``truth.zarr/hydro``) is what the water balance should recover; the
products are anomalies on the study-period baseline, so both sides are compared as anomalies
about their own time mean over the common months. Each mode must beat the coarse GRACE field
merely interpolated (parent-cell values, minus the same model anomalies), and the plain-mean
GWSA trend must be within 1 mm/yr of the truth's (issue 7).

What the twin shows about Eq. 6-9 as the paper writes them: ``TD = TF_m + f(TG - TG_m)`` replaces
GRACE's monthly climatology by the model's, and the model has no groundwater, so the mean
seasonal groundwater cycle (drawdown March-August) vanishes from GWSA: on the twin paper mode is
worse than GRACE's parent cell (r 0.990 against 0.9975). The mass-conserving modes beat it. No
mode beats a bilinear interpolation of the 0.25 deg GWSA (r 0.9993): in the water balance the
model's fine components cancel within each GRACE cell, so downscaled GWSA carries no fine detail
that interpolation does not. Both findings are recorded here as tests.
"""

from __future__ import annotations

import shutil

import dask
import numpy as np
import pytest
import xarray as xr

from ncp_subsidence.io.stores import ProductStore
from ncp_subsidence.kernels import downscale as kds
from ncp_subsidence.pipeline import run_pipeline

GWSA_RMSE_TOLERANCE = 10.0  # validate's gwsa_rmse: 2 x the GRACE noise (ncp_subsidence/validate.py)


@pytest.fixture(scope="module")
def truth(tiny_twin):
    return xr.open_zarr(tiny_twin.truth, group="hydro", consolidated=False).load()


@pytest.fixture(scope="module", params=["paper", "ratio", "remove_restore"])
def hydro_run(request, tiny_run, tmp_path_factory):
    """The tiny run's store copied, then the hydro stage in the given mode."""
    cfg, store = tiny_run
    root = tmp_path_factory.mktemp(f"hydro-{request.param}") / "store"
    shutil.copytree(store.url, root)
    cfg = cfg.model_copy(deep=True)
    cfg.store.url = str(root)
    cfg.hydro.mode = request.param
    with dask.config.set(scheduler="threads", num_workers=2):
        report = run_pipeline(cfg, ["discover", "ingest", "hydro"])
    assert [r.action for r in report.results] == ["skipped", "skipped", "ran"]
    return request.param, ProductStore(cfg.store.url)


def _anomaly_stats(estimate: xr.DataArray, truth: xr.DataArray) -> tuple[float, float]:
    est = estimate.sel(time=slice(truth.time[0], truth.time[-1]))
    tru = truth.reindex(time=est.time.values, method="nearest", tolerance=np.timedelta64(20, "D"))
    ok = np.isfinite(est) & np.isfinite(tru)
    a = (est - est.where(ok).mean("time")).where(ok)
    b = (tru - tru.where(ok).mean("time")).where(ok)
    mask = ok.values
    r = float(np.corrcoef(a.values[mask], b.values[mask])[0, 1])
    return r, float(np.sqrt(((a - b) ** 2).mean()))


def test_gwsa_beats_the_interpolated_coarse_field(hydro_run, truth, tiny_run):
    """Every mode beats the parent cell, except paper mode, whose documented loss is asserted
    (not xfailed: a paper mode that stopped losing the seasonal cycle fails here)."""
    mode, store = hydro_run
    out = store.open("hydro").load()
    r, rmse = _anomaly_stats(out["gwsa"], truth["gwsa"])
    # the coarse field merely interpolated: GRACE's parent cell, minus the same model anomalies
    grace = store.open("ingest", "hydro/grace")["grace_twsa"].load().reindex(time=out.time.values)
    grace = grace - grace.mean("time")
    m_lat = kds.interpolation_matrix(grace["lat"].values, out["lat"].values, "nearest")
    m_lon = kds.interpolation_matrix(grace["lon"].values, out["lon"].values, "nearest")
    coarse = np.einsum("ij,tjk,lk->til", m_lat, grace.values, m_lon)
    naive = (
        xr.DataArray(coarse, dims=out["gwsa"].dims, coords=out["gwsa"].coords)
        - out["smsa"]
        - out["swesa"]
        - out["cwsa"]
    )
    r_naive, rmse_naive = _anomaly_stats(naive, truth["gwsa"])
    assert r > 0.98
    if mode == "paper":
        # the documented loss (module docstring; README "The paper's downscaling"): the paper's
        # form drops GRACE's seasonal climatology, so it is worse than the parent cell and its
        # GWSA RMSE exceeds validate's 10 mm gwsa_rmse tolerance by construction
        assert r < r_naive and rmse > rmse_naive, (mode, r, rmse, r_naive, rmse_naive)
        assert rmse > GWSA_RMSE_TOLERANCE, (mode, rmse)
        # what is lost is the mean seasonal cycle: the error's calendar-month climatology
        est = out["gwsa"].sel(time=slice(truth.time[0], truth.time[-1]))
        tru = truth["gwsa"].reindex(
            time=est.time.values, method="nearest", tolerance=np.timedelta64(20, "D")
        )
        err = est - tru
        clim = err.groupby("time.month").mean().mean(("lat", "lon"))
        assert float(clim.max() - clim.min()) > GWSA_RMSE_TOLERANCE, clim.values
        return
    assert r > r_naive and rmse < rmse_naive, (mode, r, rmse, r_naive, rmse_naive)
    assert rmse <= GWSA_RMSE_TOLERANCE


def test_plain_mean_trend_within_one_mm_per_year(hydro_run, truth):
    _mode, store = hydro_run
    out = store.open("hydro")
    assert abs(float(out["gwsa_trend"].mean()) - float(truth["gwsa_trend"].mean())) < 1.0
    assert out["gwsa_trend"].attrs["units"].startswith("mm")


def test_water_balance_and_mass_diagnostic(hydro_run):
    mode, store = hydro_run
    out = store.open("hydro").load()
    closure = out["twsa"] - out["smsa"] - out["swesa"] - out["cwsa"] - out["gwsa"]
    assert float(np.nanmax(np.abs(closure))) < 1e-3  # Eq. 10 in a float32 cube
    diag = store.open("hydro", "mass_diagnostic").attrs
    if mode == "paper":
        assert diag["max_abs_difference"] > 1.0  # the paper's form does not conserve mass
    else:
        assert diag["max_abs_difference"] < 1e-3  # exact in float64 (kernel tests), float32 here
    assert out.rio.crs.to_epsg() == 4326
