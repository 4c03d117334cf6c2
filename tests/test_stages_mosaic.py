"""Stage ``mosaic`` on the tiny NCP twin (the chain of test_stages_adjust, run once).

Tolerances (tiny twin: 0.025 deg pixels, 1 mm/yr LOS white noise per pixel in the stand-in SBAS
product, i.e. 1.15-1.45 mm/yr vertical):

- bowl peaks: the deepest cell of each main bowl within 5 % of the truth's (issue 6);
- truth in the overlap: RMS of (mosaic - truth) over the overlap cells < 1.6 mm/yr, of which
  ~0.9 mm/yr is the blended pixel noise and 0.4 mm/yr the two frames' own truths disagreeing
  (OLS slopes over different SAR dates);
- overlap residual RMS between frames: issue 6 asks <= 1 mm/yr (docs/science.md 4.6: <= 2). The floor
  of 10 km cell medians of 16 noisy pixels is ~0.6 mm/yr and the truths differ by 0.4 mm/yr; what
  each frame's GNSS fit leaves along the overlap (A142's quadratic + GP error field is fitted from
  14 stations) is the rest. An offset per frame (docs/science.md 4.3) leaves 1.07 mm/yr; the default
  along-track spline per frame 0.95.

Every overlap RMS here is recomputed from the products (``validate.overlap_residuals``: the
frames' adjusted velocities plus the corrections the mosaic records), never read from the
stage's own ``overlap_edges``/``overlap_rms_*`` attributes.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from test_stages_adjust import twin_run

from ncp_subsidence.io.stores import ProductStore
from ncp_subsidence.kernels.adjust import sample_station_windows
from ncp_subsidence.kernels.geometry import plate_velocity_enu
from ncp_subsidence.stages.mosaic import bilinear_regrid, common_months
from ncp_subsidence.validate import overlap_residuals


@pytest.fixture(scope="module")
def mosaic(tiny_twin, tmp_path_factory):
    run = twin_run(tiny_twin, tmp_path_factory)
    ds = run["mosaic"]
    frames = []
    for f in tiny_twin.frames:
        tr = xr.open_zarr(tiny_twin.truth, group=f"frames/{f}", consolidated=False).load()
        v = tr["vertical_velocity"].where(tr["sea"] == 0)
        frames.append(
            v.reindex(
                y=ds["lat"].values, x=ds["lon"].values, method="nearest", tolerance=1e-6
            ).values
        )
    (edge,) = run["overlap"]  # recomputed from the products when the chain ran
    return ds, np.stack(frames), edge


def _edge(store, ds):
    (edge,) = overlap_residuals(store, ds)
    return edge


def test_product_layout(mosaic, tiny_twin):
    ds, _, _ = mosaic
    assert ds.sizes["lat"] == ds.sizes["lon"] == 240  # 6 deg at 0.025 deg
    assert ds["vertical_velocity"].attrs["units"] == "mm/yr"
    assert ds.rio.crs.to_epsg() == 4326
    n = ds["n_frames"].values
    lon = ds["lon"].values
    assert np.all(
        n[:, (lon > 116.32) & (lon < 116.68)][
            ~np.isnan(ds["vertical_velocity"].values[:, (lon > 116.32) & (lon < 116.68)])
        ]
        == 2
    )
    assert np.all(n[:, lon < 116.28] <= 1) and np.all(n[:, lon > 116.72] <= 1)
    # monthly mid-month epochs common to both frames, re-zeroed at the first one
    t = ds["time"].values
    assert t[0] == np.datetime64("2014-12-16T12:00") and t.size >= 90
    np.testing.assert_array_equal(ds["vertical_displacement"].isel(time=0).fillna(0).values, 0)
    corr = json.loads(ds.attrs["frame_corrections"])
    assert set(corr) == set(tiny_twin.frames)
    assert ds.attrs["plate_model"] == "ITRF2014_EURA"


def test_overlap_rms_drops_and_truth_recovered(mosaic):
    """Mutation caught: an overlap adjustment that returns its input (zero corrections
    recorded and applied, whatever RMS the stage reports): the recomputed RMS stays at the
    before value, ~2 mm/yr."""
    ds, truth, edge = mosaic
    assert edge["used"] and edge["n"] >= 100
    assert edge["rms_after"] < edge["rms_before"]
    assert edge["rms_after"] <= 2.0  # docs/science.md 4.6
    both = np.isfinite(truth).all(0)
    err = ds["vertical_velocity"].values - 0.5 * (truth[0] + truth[1])  # NaN outside the overlap
    rms = float(np.sqrt(np.nanmean(err[both] ** 2)))
    assert rms < 1.6, rms


def test_overlap_rms_within_one_mm_per_year(mosaic):
    """Issue 6's 1 mm/yr on the recomputed overlap RMS (mutation caught: as above)."""
    _, _, edge = mosaic
    assert edge["rms_after"] <= 1.0


def test_along_track_spline_beats_an_offset_per_frame(tiny_twin, tmp_path_factory, tmp_path):
    """docs/science.md 4.3's offset per GNSS-adjusted frame against the default, on the same frames."""
    import shutil

    import dask

    from ncp_subsidence.pipeline import run_pipeline

    run = twin_run(tiny_twin, tmp_path_factory)
    root = tmp_path / "store"
    shutil.copytree(run["store"].url, root)  # other tests may have rerun stages there since
    cfg = run["cfg"].model_copy(deep=True)
    cfg.store.url = str(root)
    edges, extra = {}, {}
    for model in ("offset", "along_track"):
        cfg.mosaic.adjusted_frame_model = model
        with dask.config.set(scheduler="threads", num_workers=2):
            report = run_pipeline(cfg, ["mosaic"], force=["mosaic"])
        assert [r.action for r in report.results] == ["ran"]
        store = ProductStore(str(root))
        ds = store.open("mosaic")
        edges[model] = _edge(store, ds)
        corr = json.loads(ds.attrs["frame_corrections"]).values()
        extra[model] = sum(
            len(c["along_track"]["knots_km"]) - 5 for c in corr if "along_track" in c
        )
    offset, along = edges["offset"], edges["along_track"]
    assert along["rms_before"] == pytest.approx(offset["rms_before"])
    assert along["rms_after"] <= 1.0  # issue 6
    # the spline must beat the offset by more than its extra parameters would on pure noise:
    # fitting p more parameters to n residuals lowers their RMS by sqrt(1 - p / n)
    n, p = along["n"], extra["along_track"] - extra["offset"]
    assert 0 < p < n
    assert along["rms_after"] < np.sqrt(1.0 - p / n) * offset["rms_after"], (along, offset, p)


def test_bowl_peaks_preserved(mosaic, tiny_twin):
    ds, truth, _ = mosaic
    root = xr.open_zarr(tiny_twin.truth, consolidated=False)
    names = root["region"].attrs["flag_meanings"].split()[:-1]
    region = root["region"].reindex(lat=ds["lat"].values, lon=ds["lon"].values, method="nearest")
    blended = np.fmin(truth[0], truth[1])  # the deeper frame truth where both cover a cell
    v = ds["vertical_velocity"].values
    checked = 0
    for k, _name in enumerate(names):
        sel = region.values == k
        peak_truth = np.nanmin(np.where(sel, blended, np.nan))
        if peak_truth > -50:
            continue
        peak = np.nanmin(np.where(sel, v, np.nan))
        assert abs(peak - peak_truth) <= 0.05 * abs(peak_truth), (_name, peak, peak_truth)
        checked += 1
    assert checked >= 6


def test_holdout_rmse_on_the_mosaic(mosaic, tiny_twin):
    ds, _, _ = mosaic
    g = xr.open_zarr(tiny_twin.truth, group="gnss", consolidated=False).load()
    hold = np.isin([str(i) for i in g["station"].values], tiny_twin.gnss_holdout)
    lon, lat = g["lon"].values[hold], g["lat"].values[hold]
    vu = g["vu"].values[hold] * 1000.0 - plate_velocity_enu(lon, lat)[:, 2]  # MIDAS m/yr
    s = sample_station_windows(
        ds["vertical_velocity"].values,
        ds["lon"].values,
        ds["lat"].values,
        lon,
        lat,
        radius_m=3000.0,
        min_pixels=3,
    )
    ok = s.valid & (s.max_gradient <= 2.0)  # the adjust stage's steep-window screen
    assert ok.sum() >= 7
    assert float(np.sqrt(np.mean((s.median[ok] - vu[ok]) ** 2))) <= 2.0


def test_bilinear_regrid_and_months():
    y = np.array([3.5, 2.5, 1.5, 0.5])
    x = np.array([0.5, 1.5, 2.5])
    z = 2.0 * x[None, :] + 3.0 * y[:, None]
    out = bilinear_regrid(z, y, x, np.array([2.0, 0.2, -0.2]), np.array([1.0, 2.9, 3.1]))
    np.testing.assert_allclose(out[0, :2], [2 * 1.0 + 3 * 2.0, 2 * 2.5 + 3 * 2.0])
    assert np.isnan(out[2]).all() and np.isnan(out[:, 2]).all()  # off the grid
    assert np.isfinite(out[1, 0])  # inside the outer half cell: edge value held
    m = common_months(
        [np.datetime64("2015-01-20"), np.datetime64("2015-01-02")],
        [np.datetime64("2015-04-10"), np.datetime64("2015-05-30")],
    )
    assert [str(v)[:10] for v in m] == ["2015-02-15", "2015-03-16"]
