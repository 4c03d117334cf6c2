"""Stage ``analysis`` on the tiny twin, fed the twin's truth as real ``mosaic``/``hydro`` products.

The ``mosaic`` and ``hydro`` products are written through the pipeline by
:class:`~ncp_subsidence.testing.stages.TruthSeriesMosaicStage` and ``TruthSeriesHydroStage``
(what perfect upstream stages would write). The "within 1 % of the truth" checks therefore compare
the stage's Dask reductions, masks, epochs and unit conversions on those products against the same
statistic computed here directly from the truth arrays with an independent, plain numpy formula;
they do not measure the accuracy of the real mosaic.

Tolerances (derived, not fitted): both sides read the same float32 truth values into float64
and apply the same formulas; they differ only in summation order (chunked tree sums against one
flat sum) and in the cell-edge arithmetic. Summing n <= 6e4 non-negative float64 terms in any
order errs by at most n eps = 6e4 x 1.1e-16 ~ 7e-12 relative; the cell area's difference of sines
over a 0.025 deg cell loses ~3 digits (sin / (cos x 2h) ~ 1e3), ~1e-13. ``REL = 1e-9`` is that
bound with a 100x margin (measured: 1e-13), while a mutant that ignores how cell area shrinks with
latitude is off by ~1 % (area 0.90 %, volume 1.05 %), seven orders above it.
"""

from __future__ import annotations

import io
import json

import dask
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from ncp_subsidence.stages.analysis import wide_area_graph
from ncp_subsidence.testing.stages import truth_analysis_config, truth_analysis_store

R = 6371007.181
REL = 1e-9  # see the module docstring: float64 summation-order bound with a 100x margin


@pytest.fixture(scope="module")
def analysed(tiny_twin, tiny_run, tmp_path_factory):
    dest = tmp_path_factory.getbasetemp() / "analysis-truth-store"
    cfg = truth_analysis_config(tiny_twin, str(dest))
    store = truth_analysis_store(tiny_twin, tiny_run[0].store.url, str(dest), cfg)
    version = store.record("analysis").version
    summary = json.loads(store.read_file(f"analysis/{version}/summary.json"))
    return cfg, store, summary


def _truth(tiny_twin):
    root = xr.open_zarr(tiny_twin.truth, consolidated=False)
    disp = xr.open_zarr(tiny_twin.truth, group="displacement", consolidated=False)
    v = root["vertical_velocity"].values.astype(np.float64)
    d = disp["vertical_displacement"].values.astype(np.float64)
    lat = root["lat"].values
    half = abs(lat[1] - lat[0]) / 2
    dlon = np.deg2rad(abs(root["lon"].values[1] - root["lon"].values[0]))
    area = R**2 * (np.sin(np.deg2rad(lat + half)) - np.sin(np.deg2rad(lat - half))) * dlon
    months = disp["time"].values.astype("datetime64[M]")
    return v, d, area[:, None] * np.ones_like(v), months, disp["time"].values


def test_area_and_volume_match_truth(analysed, tiny_twin):
    """Mutation caught: cell area without latitude (constant cell area: area off 0.90 %,
    volume 1.05 %, against REL = 1e-9)."""
    _, _, summary = analysed
    wide = summary["wide_area"]
    v, d, area, months, _ = _truth(tiny_twin)
    truth_area_km2 = area[np.isfinite(v) & (v < -20.0)].sum() / 1e6
    assert truth_area_km2 > 1000.0
    assert wide["area_above_threshold_km2"] == pytest.approx(truth_area_km2, rel=REL)
    for (a, b), key in [
        (("2014-12", "2020-12"), "2014-12/2020-12"),
        (("2020-12", "2022-12"), "2020-12/2022-12"),
        (("2014-12", "2022-12"), "2014-12/2022-12"),
    ]:
        ia = int(np.flatnonzero(months == np.datetime64(a))[0])
        ib = int(np.flatnonzero(months == np.datetime64(b))[0])
        change = d[ib] - d[ia]
        ok = np.isfinite(change)
        truth_km3 = (area[ok] * np.maximum(0.0, -change[ok])).sum() * 1e-3 / 1e9
        assert wide["volumes_km3"][key] == pytest.approx(truth_km3, rel=REL)
        assert wide["groundwater_loss_km3"][key] == pytest.approx(truth_km3, rel=REL)  # kappa 1
    # relief after 2021: the 2021-2022 loss rate is below the 2015-2020 one (M26 target 17)
    rate_before = wide["volumes_km3"]["2014-12/2020-12"] / 6.0
    rate_after = wide["volumes_km3"]["2020-12/2022-12"] / 2.0
    assert rate_after < rate_before
    # cumulative subsidence: maximum and 99.9th percentile against numpy on the truth
    i0 = int(np.flatnonzero(months == np.datetime64("2014-12"))[0])
    i1 = int(np.flatnonzero(months == np.datetime64("2022-12"))[0])
    sub = -(d[i1] - d[i0])
    sub = sub[np.isfinite(sub)]
    assert wide["cumulative_max_mm"] == pytest.approx(sub.max(), rel=1e-9)
    assert wide["cumulative_p99.9_mm"] == pytest.approx(np.percentile(sub, 99.9), rel=1e-9)


def test_yearly_mean_velocity_peaks_in_truth_peak_year(analysed, tiny_twin):
    _, _, summary = analysed
    v, d, area, _, times = _truth(tiny_twin)
    years = pd.DatetimeIndex(times).year.values
    t = pd.DatetimeIndex(times)
    tdec = years + (t.dayofyear.values - 0.5) / np.where(t.is_leap_year, 366.0, 365.0)
    omega = np.isfinite(v) & (v < -20.0)
    truth_rate = {}
    for year in range(2015, 2023):
        sel = years == year
        slope = np.polyfit(tdec[sel], d[sel][:, omega], 1)[0]  # mm/yr per pixel
        truth_rate[year] = -(slope * area[omega]).sum() / area[omega].sum()
    truth_peak = max(truth_rate, key=truth_rate.get)
    assert truth_peak == 2018  # the twin's designed peak
    assert summary["wide_area"]["peak_year"] == truth_peak
    got = summary["wide_area"]["yearly_mean_subsidence_rate_mm_yr"]
    for year, rate in truth_rate.items():
        assert got[str(year)] == pytest.approx(rate, rel=1e-6)


def test_recovered_lags_equal_twin_region_lags(analysed, tiny_twin):
    _, store, _ = analysed
    version = store.record("analysis").version
    lags = pd.read_csv(io.BytesIO(store.read_file(f"analysis/{version}/lags.csv")))
    features = json.loads(tiny_twin.cities_geojson.read_text())["features"]
    expected = {f["properties"]["name"]: f["properties"]["lag_months"] for f in features}
    assert set(expected) <= set(lags["region"])
    pair = lags[lags["pair"] == "gwsa->vertical_displacement"]
    for method in ("linear", "diff"):
        got = pair[pair["detrend"] == method].set_index("region")
        for region, lag in expected.items():
            assert got.loc[region, "lag_months"] == lag, (method, region)
            assert got.loc[region, "r_lag"] > 0.5
            assert 3 <= got.loc[region, "n_eff"] < got.loc[region, "n"]
    # the observed "bulletin" series correlates with the regional GWSA
    obs = lags[(lags["pair"] == "gwsa->observed") & (lags["detrend"] == "linear")]
    obs = obs.set_index("region")
    assert obs.loc["cangzhou", "r0"] > 0.9
    assert obs.loc["cangzhou", "p_value"] < 0.05
    assert "hengshui" not in obs.index  # no observed series was given there


def test_products_and_region_series(analysed, tiny_twin):
    _, store, _ = analysed
    series = store.open("analysis", "regions").load()
    assert set(series.data_vars) >= {"gwsa", "vertical_displacement", "precipitation", "observed"}
    assert series.sizes["region"] == 10
    # the whole-plain GWSA mean equals the area-weighted mean of the truth's gwsa
    hydro = xr.open_zarr(tiny_twin.truth, group="hydro", consolidated=False)["gwsa"]
    g = hydro.isel(time=-1).values.astype(np.float64)
    lat = hydro["lat"].values
    w_exact = np.sin(np.deg2rad(lat + 0.025)) - np.sin(np.deg2rad(lat - 0.025))
    w = w_exact[:, None] * np.isfinite(g)
    expected = np.nansum(g * w) / w.sum()
    got = series["gwsa"].sel(region="ncp").sel(time="2022-12").item()
    assert got == pytest.approx(expected, rel=1e-5)
    assert np.isfinite(series["precipitation"].sel(region="cangzhou")).sum() > 100
    stats = store.open("analysis", "region_statistics").load()
    slope = stats["value"].sel(region="ncp", series="gwsa", statistic="ols_slope").item()
    assert slope < 0  # the twin's groundwater is depleting
    wide = store.open("analysis", "wide_area").load()
    assert wide["volume"].sel(mode="net").values.min() > 0


def test_wide_area_graph_builds_without_computing(tiny_twin):
    root = xr.open_zarr(tiny_twin.truth, consolidated=False)
    disp = xr.open_zarr(tiny_twin.truth, group="displacement", consolidated=False)
    ran = []

    class Count(dask.callbacks.Callback):
        def _pretask(self, key, dsk, state):
            ran.append(key)

    with Count():
        graph = wide_area_graph(
            root["vertical_velocity"],
            disp["vertical_displacement"],
            threshold=20.0,
            epoch_pairs=[(0, 96)],
            cumulative_epochs=(0, 96),
            years=[2018],
            chunk_cells=40,
        )
    assert ran == []
    with Count():
        result = graph.compute(scheduler="sync")
    assert len(ran) > 9  # 9 chunk partials, their combines, the reads and the finalize
    assert result["area_above_threshold_m2"] > 0
