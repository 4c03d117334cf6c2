"""GNSS daily position series (NGL ``.tenv3``): the twin's files against its truth, the
``ingest/gnss_series`` product, the series comparison of ``adjust`` and the report's figure.

The twin writes one ``.tenv3`` file per station: the noise-free truth (``/gnss_series`` of its
truth store) plus daily white noise of 1.2, 1.2, 3.5 mm (east, north, up). The comparison in
``adjust`` averages the GNSS days within 6 days of each SAR date: ~12 days, so the aligned GNSS
up series is within ~1 mm (3.5 / sqrt(12)) of the truth at each date.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dask
import numpy as np
import pytest
import xarray as xr
from conftest import twin_config

from ncp_subsidence.config import Config
from ncp_subsidence.io.products.tenv3 import read_tenv3
from ncp_subsidence.io.stores import ProductStore
from ncp_subsidence.kernels.adjust import compare_series, station_window_series, window_means
from ncp_subsidence.pipeline import run_pipeline
from ncp_subsidence.sources import input_kind, resolve_sources
from ncp_subsidence.stages.adjust import SERIES_HALF_WINDOW_DAYS, _days
from ncp_subsidence.stages.report import _gnss_series_figure

REAL_TENV3 = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "gnss" / "LHAS.tenv3"
)
# the tiny twin's 2.5 km pixels: a 3 km window (as tests/test_stages_adjust.py)
ADJUST = {"radius_m": 3000.0, "min_pixels": 3, "max_gradient_mm_yr_km": 2.0}


def _truth(manifest, group):
    return xr.open_zarr(manifest.truth, group=group, consolidated=False).load()


# ------------------------------------------------------------------------------------------
# kernels
# ------------------------------------------------------------------------------------------


def test_window_means_of_a_line_with_gaps_is_the_line_at_each_epoch():
    t = np.arange(0.0, 100.0)
    v = np.vstack([2.0 * t + 1.0, -t])
    v[0, 40:47] = np.nan  # a gap: the window around 43 is empty on one side only
    epochs = np.array([10.0, 43.0, 50.5, 99.0])
    means, counts = window_means(t, v, epochs, 3.0, min_samples=2)
    # symmetric full windows give the line's value; 43 keeps only days 47..46 -> none
    assert means[1, 0] == pytest.approx(-10.0) and counts[1, 0] == 7
    assert means[0, 0] == pytest.approx(21.0)
    assert np.isnan(means[0, 1]) and counts[0, 1] == 0
    assert means[0, 2] == pytest.approx(2.0 * 50.5 + 1.0) and counts[0, 2] == 6
    # at the end only the days before count: mean of 96..99
    assert means[1, 3] == pytest.approx(-97.5) and counts[1, 3] == 4
    with pytest.raises(ValueError, match="increasing"):
        window_means(t[::-1], v, epochs, 3.0)


def test_compare_series_ignores_offsets_and_measures_the_rest():
    rng = np.random.default_rng(1)
    truth = np.cumsum(rng.normal(0, 3, (3, 40)), axis=1)
    noise = rng.normal(0, 2.0, truth.shape)
    insar = truth + 50.0 + noise  # referenced elsewhere: a constant apart
    gnss = truth.copy()
    gnss[1, :36] = np.nan  # 4 common dates: too few
    out = compare_series(insar, gnss, min_common=5)
    expected = np.sqrt(np.mean((noise[0] - noise[0].mean()) ** 2))
    assert out.rmse[0] == pytest.approx(expected)
    assert np.isnan(out.rmse[1]) and out.n_common[1] == 4
    assert np.nanmean(out.first[2]) == pytest.approx(0.0, abs=1e-9)
    assert out.pooled_rmse() == pytest.approx(np.sqrt((out.rmse[0] ** 2 + out.rmse[2] ** 2) / 2))


def test_station_window_series_takes_the_median_inside_the_radius():
    lon = 116.0 + 0.01 * np.arange(11)
    lat = 38.0 + 0.01 * np.arange(11)
    cube = np.zeros((3, 11, 11)) + np.arange(3)[:, None, None]
    cube[:, 5, 5] = 1000.0  # one outlier pixel at the station: the median ignores it
    cube[:, 0, :] = -1000.0  # 5.5 km away: outside a 2.5 km window
    cube[2, 4:7, 4:7] = np.nan
    got = station_window_series(cube, lon, lat, 116.05, 38.05, radius_m=2500.0, min_pixels=3)
    assert got[0] == 0.0 and got[1] == 1.0
    assert got[2] == 2.0  # the NaN pixels drop out; the ring around them still has >= 3


# ------------------------------------------------------------------------------------------
# the twin's files against its truth, and the real file
# ------------------------------------------------------------------------------------------


def test_twin_tenv3_files_are_the_truth_plus_daily_noise(tiny_twin):
    truth = _truth(tiny_twin, "gnss_series")
    table = _truth(tiny_twin, "gnss")
    scatter = []
    for station in ("N000", "N005", "N021"):
        ds = read_tenv3(str(tiny_twin.root / "gnss" / "tenv3" / f"{station}.tenv3"))
        tr = truth.sel(station=station)
        days = tr["time"].values[np.isfinite(tr["up_true"].values)]
        np.testing.assert_array_equal(ds["time"].values, days)  # every written day, noon
        assert 0.9 < days.size / ((days[-1] - days[0]) / np.timedelta64(1, "D") + 1) < 0.99
        for comp, sigma in (("east", 1.2), ("north", 1.2), ("up", 3.5)):
            resid = ds[comp].values - tr[f"{comp}_true"].sel(time=days).values
            resid -= resid.mean()
            scatter.append(resid.std() / sigma)
        row = table.sel(station=station)
        assert ds.attrs["lon"] == pytest.approx(float(row["lon"]), abs=1e-9)
        assert ds.attrs["lat"] == pytest.approx(float(row["lat"]), abs=1e-9)
        wrapped = bool(row["ngl_lon_wrapped"])
        assert (ds.attrs["lon_as_written"] < -180.0) == wrapped
    assert 0.85 < min(scatter) and max(scatter) < 1.15, scatter


def test_real_and_twin_tenv3_share_the_column_layout(tiny_twin):
    real = REAL_TENV3.read_text().splitlines()
    twin = (tiny_twin.root / "gnss" / "tenv3" / "N001.tenv3").read_text().splitlines()
    assert twin[0] == real[0]  # the header NGL writes
    for a, b in zip(real[1].split(), twin[1].split(), strict=True):
        assert (
            a.replace(".", "", 1).lstrip("-").isdigit()
            == b.replace(".", "", 1).lstrip("-").isdigit()
        ), (a, b)
        assert ("." in a) == ("." in b), (a, b)


# ------------------------------------------------------------------------------------------
# the twin in the providers' conventions
# ------------------------------------------------------------------------------------------


def test_twin_midas_and_imerg_in_the_providers_conventions(tiny_twin):
    import h5netcdf

    from ncp_subsidence.io.products.imerg import read_imerg
    from ncp_subsidence.io.products.midas import read_midas

    table = _truth(tiny_twin, "gnss")
    wrapped = table["ngl_lon_wrapped"].values.astype(bool)
    assert 0.25 < wrapped.mean() < 0.75
    raw = [line.split() for line in tiny_twin.gnss_midas.read_text().splitlines()]
    raw_lon = np.array([float(r[25]) for r in raw])
    np.testing.assert_array_equal(raw_lon < -180.0, wrapped)
    midas, report = read_midas(str(tiny_twin.gnss_midas))
    assert report["n_lon_normalised"] == wrapped.sum()
    np.testing.assert_allclose(midas["lon"], table["lon"].values, atol=1e-8)

    path = tiny_twin.root / "hydrology" / "imerg" / "3B-MO.MS.MRG.3IMERG.2016.V07B.nc"
    with h5netcdf.File(path, "r") as f:
        time = f["Grid/time"]
        assert time.attrs["units"] == "seconds since 1980-01-06 00:00:00 UTC"
        assert time.attrs["calendar"] == "julian" and time.attrs["bounds"] == "time_bnds"
        assert time.dtype == np.int32
        bounds = f["Grid/time_bnds"][...]
    # 2016-02 is 29 days: the bounds span it to the second
    assert bounds[1, 1] - bounds[1, 0] == 29 * 86400 - 1
    ds = read_imerg([str(path)])
    np.testing.assert_array_equal(
        ds["time"].values.astype("datetime64[M]"),
        np.arange("2016-01", "2017-01", dtype="datetime64[M]"),
    )


# ------------------------------------------------------------------------------------------
# sources: optional, and the twin's only with the twin's stations
# ------------------------------------------------------------------------------------------


def test_an_unset_series_source_keeps_a_real_config_real(tiny_twin):
    real = Config.model_validate(
        {
            "sources": {
                "interferograms": {"A": {"kind": "file", "url": "/d/a.tif"}},
                **{
                    k: {"kind": "file", "url": f"/d/{k}"}
                    for k in (
                        "grace gldas fldas imerg dem ndvi evapotranspiration precipitation "
                        "population gdp building_density faults gnss regions"
                    ).split()
                },
            }
        }
    )
    assert input_kind(real) == "real" and not real.sources.uses_twin
    assert "gnss_series" not in resolve_sources(real)
    twin = {"directory": str(tiny_twin.root), "preset": "tiny", "fill_unset": True}
    mixed = Config.model_validate(
        {"sources": {"gnss": {"kind": "file", "url": "/d/midas.txt"}, "twin": twin}}
    )
    assert "gnss_series" not in resolve_sources(mixed)  # the twin's series are not its stations
    everything = resolve_sources(Config.model_validate({"sources": {"twin": twin}}))
    assert everything["gnss_series"].collections == ["twin-gnss-tenv3"]


# ------------------------------------------------------------------------------------------
# ingest, adjust and the report on the tiny run
# ------------------------------------------------------------------------------------------


def test_ingest_writes_the_series_against_the_truth(tiny_twin, tiny_run):
    cfg, store = tiny_run
    ds = store.open("ingest", "gnss_series").load()
    truth = _truth(tiny_twin, "gnss_series")
    table = _truth(tiny_twin, "gnss")
    assert list(ds["station"].values) == list(table["station"].values)
    assert ds.attrs["n_stations"] == tiny_twin.sizes["n_gnss"]
    assert ds.attrs["n_lon_normalised"] == int(table["ngl_lon_wrapped"].sum())
    assert ds.attrs["n_outside_frames"] == 0 and ds.attrs["n_dropped_duplicate"] == 0
    np.testing.assert_allclose(ds["lon"].values, table["lon"].values, atol=1e-9)
    start, end = cfg.sources.datetime.split("/")
    assert str(ds["time"].values[0]) >= start and str(ds["time"].values[-1])[:10] <= end
    up = ds["up"].values
    ref = truth["up_true"].reindex(time=ds["time"]).values
    resid = up - ref
    resid -= np.nanmean(resid, axis=1, keepdims=True)
    assert np.array_equal(np.isfinite(up), np.isfinite(ref))
    assert 3.0 < np.nanstd(resid) < 4.0  # the daily up noise, 3.5 mm
    first = np.argmax(np.isfinite(up), axis=1)
    assert np.all(up[np.arange(up.shape[0]), first] == 0.0)  # relative to the first day kept


@pytest.fixture(scope="module")
def adjusted(tiny_twin, tiny_run, tmp_path_factory):
    """``adjust`` on a copy of the tiny run's store (P0/P1 only, the twin's holdout)."""
    dest = tmp_path_factory.mktemp("series") / "store"
    shutil.copytree(tiny_run[0].store.url, dest)
    adjust = ADJUST | {"holdout_stations": list(tiny_twin.gnss_holdout), "candidates": ["P0", "P1"]}
    cfg = twin_config(tiny_twin, dest, adjust=adjust)
    with dask.config.set(scheduler="threads", num_workers=2):
        run_pipeline(cfg, ["adjust"])
    store = ProductStore(str(dest))
    series = json.loads(
        store.read_file(f"adjust/{store.record('adjust').version}/gnss_series.json")
    )
    return store, series


def test_adjust_compares_series_at_held_out_stations(adjusted, tiny_twin):
    store, series = adjusted
    truth = _truth(tiny_twin, "gnss_series")
    for frame in tiny_twin.frames:
        attrs = store.open("adjust", frame).attrs
        rec = series[frame]
        used = attrs["gnss_series_stations"]
        assert attrs["gnss_series_n_stations"] == len(used) >= 4
        assert set(used) <= set(attrs["holdout_stations"])  # held-out stations only
        assert attrs["gnss_series_half_window_days"] == SERIES_HALF_WINDOW_DAYS
        before, after = attrs["gnss_series_rmse_before"], attrs["gnss_series_rmse_after"]
        # the injected long-wavelength error grows with time in the delivered series
        assert after < 0.8 * before, (frame, before, after)
        assert (rec["rmse_before"], rec["rmse_after"]) == (before, after)
        per_station = json.loads(attrs["gnss_series_station_rmse"])
        sar = np.asarray(rec["time"], dtype="datetime64[D]")
        for name in used:
            st = rec["stations"][name]
            gnss = np.asarray(st["gnss_up"], dtype=float)
            insar = np.asarray(st["insar_up_after"], dtype=float)
            ok = np.isfinite(gnss)
            # recomputed from the series: the attrs say what the file holds
            rmse = np.sqrt(np.mean((insar[ok] - gnss[ok]) ** 2))
            assert rmse == pytest.approx(per_station[name][1], rel=1e-9)
            # the aligned GNSS series is the truth within the averaged daily noise
            tr = truth["up_true"].sel(station=name)
            ref, _ = window_means(
                _days(tr["time"].values), tr.values, _days(sar), SERIES_HALF_WINDOW_DAYS
            )
            ref = ref[ok] - ref[ok].mean()
            assert np.sqrt(np.mean((gnss[ok] - ref) ** 2)) < 2.0, name


def test_report_draws_the_series_and_tabulates_the_rmse(adjusted, tiny_twin):
    store, series = adjusted
    png, table = _gnss_series_figure(series, dpi=40)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(table["frame"]) == sorted(tiny_twin.frames)
    for _, row in table.iterrows():
        attrs = store.open("adjust", row["frame"]).attrs
        assert row["series RMSE after (mm)"] == attrs["gnss_series_rmse_after"]
        assert row["held-out stations compared"] == attrs["gnss_series_n_stations"]
