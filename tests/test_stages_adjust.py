"""Stage ``adjust`` on the tiny NCP twin and on controlled frames with 0, 1, 2 stations.

The twin chain is the production pipeline, ``discover -> ingest -> sbas -> adjust -> mosaic``:
the SBAS velocities carry the plate-motion ramp, the frame's long-wavelength error field, the
atmosphere and noise the twin injected, referenced at the most stable GNSS station. The
controlled cases (0, 1, 2 stations) use :class:`TruthSbasStage`, which writes the sbas product
from the twin's truth store (the truth LOS velocity and displacement, referenced like SBAS,
plus seeded white noise), so that only the station count changes between them.

Tolerances on the tiny twin (0.025 deg ~ 2.5 km pixels, 40 GNSS, ~25 dates):

- the station window must hold a few 2.5 km pixels, so ``radius_m = 3000`` (at ~100 m pixels the
  default 200 m holds ~12);
- the floor of the held-out RMSE is the GNSS-vs-InSAR epoch mismatch of the twin (GNSS velocity
  over its own window vs. the OLS slope over the SAR dates in nonlinear bowls) plus the window
  median inside bowls: ~1 mm/yr measured on the truth itself (no noise, no error field);
- the required figures ([M26], issue 6) are asserted as stated: after <= 2.0 mm/yr and at least
  2x better than before, per frame.
"""

from __future__ import annotations

import json
import logging

import dask
import numpy as np
import pytest
import xarray as xr
from conftest import twin_config

from ncp_subsidence.io.cube import with_crs
from ncp_subsidence.io.stores import ProductStore
from ncp_subsidence.kernels.trends import decimal_year
from ncp_subsidence.pipeline import run_pipeline
from ncp_subsidence.validate import holdout_rmse, holdout_rmse_tolerance, overlap_residuals

# tiny twin (2.5 km pixels): a 3 km window holds 4-6 pixels; the steep-gradient screen is the
# same velocity change across the window as docs/science.md's 20 mm/yr/km over 200 m: ~2 mm/yr/km at 3 km
ADJUST = {"radius_m": 3000.0, "min_pixels": 3, "max_gradient_mm_yr_km": 2.0}
# overlap cells of 10 km hold 4 x 4 tiny-twin pixels (1 km cells hold 10 x 10 pixels at 100 m)
MOSAIC = {
    "resolution_deg": 0.025,
    "overlap_spacing_km": 10.0,
    "gnss_radius_m": 3000.0,
    "gnss_min_pixels": 3,
    "chunk": 64,
}


class TruthSbasStage:
    """Writes ``sbas/<frame>`` from the twin's truth store (stands in for the SBAS inversion).

    Parameters
    ----------
    truth : path of ``truth/truth.zarr``
    reference : dict frame -> (lat, lon) of the reference pixel, optional (default: a land pixel
        in the frame's north-west quarter)
    noise_mm_per_yr : float, white noise on the velocity
    overrides : dict frame -> callable(velocity (y, x) ndarray, lat, lon) -> extra mm/yr added
    """

    name = "sbas"
    reads: tuple[str, ...] = ("ingest",)

    def __init__(self, truth, reference=None, noise_mm_per_yr=1.0, seed=0, overrides=None):
        self.truth = str(truth)
        self.reference = reference or {}
        self.noise = noise_mm_per_yr
        self.seed = seed
        self.overrides = overrides or {}

    def fingerprint_extra(self, config):
        return {
            "truth": self.truth,
            "reference": self.reference,
            "noise": self.noise,
            "seed": self.seed,
            "overrides": sorted(self.overrides),
        }

    def run(self, ctx):
        rng = np.random.default_rng(self.seed)
        for name in sorted(ctx.upstream_datasets("ingest")):
            if not name.startswith("ifg/"):
                continue
            frame = name.split("/", 1)[1]
            tr = xr.open_zarr(self.truth, group=f"frames/{frame}", consolidated=False).load()
            lat, lon = tr["y"].values, tr["x"].values
            sea = tr["sea"].values > 0
            ry, rx = self._reference(frame, lat, lon, sea, tr["vertical_velocity"].values)
            vel = tr["los_velocity"].values.astype(float)
            disp = tr["los_displacement"].values.astype(float)
            if frame in self.overrides:
                extra = self.overrides[frame](vel, lat, lon)
                t = decimal_year(tr["time"].values)
                vel = vel + extra
                disp = disp + extra[None] * (t - t[0])[:, None, None]
            vel = vel - vel[ry, rx] + rng.normal(0, self.noise, vel.shape)
            vel[ry, rx] = 0.0
            disp = disp - disp[:, ry : ry + 1, rx : rx + 1]
            disp = (
                disp
                - disp[:1]
                + rng.normal(0, 2.0, disp.shape) * (np.arange(len(disp)) > 0)[:, None, None]
            )
            vel[sea], disp[:, sea] = np.nan, np.nan
            ds = xr.Dataset(
                {
                    "displacement": (("time", "y", "x"), disp.astype(np.float32)),
                    "velocity": (("y", "x"), vel.astype(np.float32)),
                    "velocity_std": (("y", "x"), np.where(sea, np.nan, 1.0).astype(np.float32)),
                    "temporal_coherence": (("y", "x"), np.where(sea, 0.2, 0.95).astype(np.float32)),
                },
                coords={"time": tr["time"].values, "y": lat, "x": lon},
                attrs={"reference_y": float(lat[ry]), "reference_x": float(lon[rx])},
            )
            ds = with_crs(ds).chunk({"time": -1, "y": 64, "x": 64})
            ctx.write(frame, ds, region_dim="y")

    def _reference(self, frame, lat, lon, sea, vertical):
        if frame in self.reference:
            la, lo = self.reference[frame]
            return int(np.argmin(np.abs(lat - la))), int(np.argmin(np.abs(lon - lo)))
        # SBAS picks a coherent reference; here a stable land pixel nearest the frame centre
        stable = ~sea & (np.abs(vertical) < 2.0)
        yy, xx = np.meshgrid(np.arange(lat.size), np.arange(lon.size), indexing="ij")
        dist = np.where(stable, (yy - lat.size / 2) ** 2 + (xx - lon.size / 2) ** 2, np.inf)
        ry, rx = np.unravel_index(int(np.argmin(dist)), dist.shape)
        return int(ry), int(rx)


_RUNS: dict = {}


def twin_run(manifest, tmp_path_factory):
    """The whole chain discover -> ingest -> sbas (truth) -> adjust -> mosaic, run once.

    Returns the store and the twin's truth; shared by this module and test_stages_mosaic.
    """
    key = str(manifest.root)
    if key not in _RUNS:
        store = tmp_path_factory.mktemp("adjust-mosaic") / "store"
        cfg, st = _run(
            manifest,
            store,
            "sbas",
            stages=("adjust", "mosaic"),
            adjust={"holdout_stations": list(manifest.gnss_holdout)},
            mosaic=MOSAIC,
        )
        # loaded now: later reruns in the same store publish new versions
        _RUNS[key] = {
            "cfg": cfg,
            "store": st,
            "adjust": {f: st.open("adjust", f).load() for f in manifest.frames},
            "sbas": {f: st.open("sbas", f).load() for f in manifest.frames},
            "geometry": {
                f: st.open("ingest", f"ifg/{f}")["los_up"].load() for f in manifest.frames
            },
            "mosaic": st.open("mosaic").load(),
            "stations": _stations(st),
        }
        # recomputed from the products now (later reruns publish new versions in this store)
        _RUNS[key]["holdout"] = {f: holdout_rmse(st, f) for f in manifest.frames}
        _RUNS[key]["overlap"] = overlap_residuals(st, _RUNS[key]["mosaic"])
    return _RUNS[key]


def _run(manifest, store, sbas_stage, stages=("adjust",), **sections):
    adjust = ADJUST | sections.pop("adjust", {})
    cfg = twin_config(manifest, store, adjust=adjust, **sections)
    with dask.config.set(scheduler="threads", num_workers=2):
        run_pipeline(cfg, ["discover", "ingest", sbas_stage, *stages])
    return cfg, ProductStore(cfg.store.url)


@pytest.fixture(autouse=True)
def _threads():
    with dask.config.set(scheduler="threads", num_workers=2):
        yield


@pytest.fixture(scope="module")
def adjusted(tiny_twin, tmp_path_factory):
    return twin_run(tiny_twin, tmp_path_factory)


def _stations(store):
    record = store.record("adjust")
    return json.loads(store.read_file(f"adjust/{record.version}/stations.json"))


def test_holdout_rmse_meets_mi_et_al_per_frame(adjusted, tiny_twin):
    """The held-out RMSE, recomputed from the adjust product at the held-out stations it
    records (``validate.holdout_rmse``), meets [M26]'s 2 mm/yr (or, with few stations, the 95 %
    quantile of the RMS at the 1.4 mm/yr noise floor) and halves the error before adjustment.

    Mutation caught: a holdout RMSE computed on the training stations (the stage's
    ``holdout_rmse_vertical_after`` must agree with the recomputation to 0.25 mm/yr: the two
    differ only by the window median of per-pixel vertical velocities against the LOS median
    over the box median of ``los_up``, 1-2 % of the ~10 mm/yr at the stations, and by the
    gridded correction against the model at the station, < 0.05 mm/yr; the RMSE on the
    training stations is the fit's residual, ~0.5 mm/yr lower).
    """
    for frame in tiny_twin.frames:
        attrs = adjusted["adjust"][frame].attrs
        got = adjusted["holdout"][frame]
        before, after, n = got["before"], got["after"], got["n"]
        assert n >= 4 and got["stations"] == attrs["holdout_stations"], got
        assert after <= holdout_rmse_tolerance(n), (frame, before, after, n)
        assert before >= 2.0 * after, (frame, before, after)
        assert attrs["holdout_rmse_vertical_after"] == pytest.approx(after, abs=0.25)
        assert attrs["holdout_rmse_vertical_before"] == pytest.approx(before, abs=0.25)
        # held-out stations never fitted
        assert not set(attrs["holdout_stations"]) & set(attrs["train_stations"])
        assert set(attrs["holdout_stations"]) <= set(tiny_twin.gnss_holdout)
        table = json.loads(attrs["cv_table"])
        assert set(table) == {"P0", "P1", "P2", "P3", "GP", "RF", "GB", "SVR"}
        assert table[attrs["selected_model"]]["status"] == "ok"
        best = min(v["cv_rmse"] for v in table.values() if v["cv_rmse"] is not None)
        chosen = table[attrs["selected_model"]]
        assert (
            chosen["cv_rmse"]
            <= best + table[min(table, key=lambda m: table[m]["cv_rmse"] or 1e9)]["se"]
        )
        assert attrs["needs_overlap_adjustment"] == 0


def test_products_apply_plate_motion_and_correction(adjusted, tiny_twin):
    frame = tiny_twin.frames[1]
    adj = adjusted["adjust"][frame]
    sb = adjusted["sbas"][frame]
    geo = {"los_up": adjusted["geometry"][frame]}
    expected = sb["velocity"] - adj["plate_motion_los"] + adj["correction"]
    np.testing.assert_allclose(adj["velocity"], expected, atol=1e-3)
    np.testing.assert_allclose(adj["vertical_velocity"], adj["velocity"] / geo["los_up"], rtol=1e-5)
    t = decimal_year(adj["time"].values)
    dt = xr.DataArray(t - t[0], dims="time")
    change = adj["displacement"] - sb["displacement"]
    expected_change = (
        (adj["correction"] - adj["plate_motion_los"]) * dt - adj["common_mode"]
    ).transpose(*change.dims)
    np.testing.assert_allclose(change, expected_change.where(change.notnull()), atol=2e-3)
    # the common mode moves no velocity and no first date ...
    mode = adj["common_mode"].values
    assert adj.attrs["common_mode_filter"] == "median" and adj.attrs["common_mode_pixels"] > 100
    assert mode[0] == 0.0
    assert abs(float(np.polyfit(t, mode, 1)[0])) < 1e-4
    # ... and takes out most of what every pixel shares against the truth: the reference
    # window's turbulence (6 mm per date in the twin), left in by the 3 x 3 reference
    truth_los = xr.open_zarr(tiny_twin.truth, group=f"frames/{frame}", consolidated=False)[
        "los_displacement"
    ].values.astype(float)
    tc = t - t.mean()

    def shared_error(series):
        err = (series - truth_los).reshape(t.size, -1)
        err = err[:, np.isfinite(err).all(axis=0)]
        err = err - np.outer(tc, tc @ err / (tc @ tc)) - err.mean(axis=0)
        return np.median(err, axis=1)

    before = shared_error(sb["displacement"].values)
    after = shared_error(sb["displacement"].values - mode[:, None, None])
    assert before.std() > 3.0 and after.std() < 0.5 * before.std(), (before.std(), after.std())
    # zero plate term at the SBAS reference point; the plate ramp across the swath is 4-7 mm/yr
    ref = adj["plate_motion_los"].sel(y=adj.attrs["reference_lat"], x=adj.attrs["reference_lon"])
    assert abs(float(ref)) < 1e-4
    ramp = float(adj["plate_motion_los"].max() - adj["plate_motion_los"].min())
    assert 4.0 < ramp < 7.5
    # the adjusted vertical velocity recovers the truth (pixel noise ~1.2 mm/yr vertical)
    truth = xr.open_zarr(tiny_twin.truth, group=f"frames/{frame}", consolidated=False).load()
    err = (adj["vertical_velocity"] - truth["vertical_velocity"].values).where(truth["sea"] == 0)
    raw = (sb["velocity"] / geo["los_up"] - truth["vertical_velocity"].values).where(
        truth["sea"] == 0
    )
    err_rms = float(np.sqrt((err**2).mean()))
    assert err_rms < 2.5 and err_rms < 0.5 * float(np.sqrt(((raw - raw.mean()) ** 2).mean()))


def test_stations_in_steep_bowls_are_rejected(adjusted, tiny_twin):
    rows = adjusted["stations"]
    steep_seen = 0
    for frame in tiny_twin.frames:
        attrs = adjusted["adjust"][frame].attrs
        for row in rows[frame]:
            steep = (row["window_gradient"] or 0.0) > ADJUST["max_gradient_mm_yr_km"]
            if row["station"] in tiny_twin.gnss_holdout:
                assert row["role"] == ("holdout_screened" if steep else "holdout")
                continue
            steep_seen += steep
            if steep:
                assert row["role"] == "rejected", row
                assert row["station"] in attrs["rejected_stations"]
                assert row["station"] not in attrs["train_stations"]
    assert steep_seen >= 2  # N011 and N026 sit on the Beijing bowl's flanks


@pytest.fixture(scope="module")
def few_stations(adjusted, tiny_twin):
    """Reruns of adjust + mosaic in the same store with 1/0 and 2/2 training stations.

    The number of training stations per frame is controlled by holding the others out (a
    held-out station is never fitted). A040-only stations: N024, N028; A142-only: N029, N032.
    """
    cfg, store = adjusted["cfg"], adjusted["store"]
    g = xr.open_zarr(tiny_twin.truth, group="gnss", consolidated=False).load()
    everyone = [str(s) for s in g["station"].values]
    out = {}
    for case, keep in {"1+0": {"N024"}, "2+2": {"N024", "N028", "N029", "N032"}}.items():
        _run(
            tiny_twin,
            cfg.store.url,
            TruthSbasStage(tiny_twin.truth),
            stages=("adjust", "mosaic"),
            adjust={"holdout_stations": sorted(set(everyone) - keep), "candidates": ["P0", "P1"]},
            mosaic=MOSAIC,
        )
        out[case] = {f: dict(store.open("adjust", f).attrs) for f in tiny_twin.frames}
        mos = store.open("mosaic")
        out[case]["mosaic"] = dict(mos.attrs)
        out[case]["A142_correction"] = store.open("adjust", "A142")["correction"].values
        out[case]["A142_extrapolated"] = store.open("adjust", "A142")["extrapolated"].values
        if case == "1+0":  # recomputed from this run's products (the next run republishes them)
            out[case]["A142_holdout"] = holdout_rmse(store, "A142")
            out[case]["overlap"] = overlap_residuals(store, mos)
    return out


def test_frames_with_one_or_two_stations_get_an_offset(few_stations):
    one = few_stations["1+0"]["A040"]
    assert (one["selected_model"], one["cv_scheme"], one["n_gnss_train"]) == ("P0", "none", 1)
    for frame in ("A040", "A142"):
        two = few_stations["2+2"][frame]
        assert (two["selected_model"], two["cv_scheme"], two["n_gnss_train"]) == ("P0", "none", 2)
        table = json.loads(two["cv_table"])
        assert table["P1"]["status"] == "insufficient stations"


def test_frame_without_stations_is_left_to_the_mosaic(few_stations):
    """A142 without a training station: adjust leaves it as it is (no correction, the product's
    held-out error unchanged), and the mosaic ties it to A040 through the overlap.

    Recomputed from the products, not from the stages' scores: the held-out RMSE of the adjust
    product with and without its correction (``validate.holdout_rmse``) and the overlap
    residual of the frames' adjusted velocities plus the corrections the mosaic records
    (``validate.overlap_residuals``). Mutation caught: an overlap adjustment that returns its
    input (zero frame corrections) while its own ``overlap_edges`` still read 0.39 after:
    recomputed, the residual after stays at the 10.7 mm/yr before (checked by hand, the mosaic
    stage's ``adjust_overlaps`` solution zeroed).
    """
    case = few_stations["1+0"]
    attrs = case["A142"]
    assert attrs["selected_model"] == "none" and attrs["needs_overlap_adjustment"] == 1
    assert attrs["n_gnss_train"] == 0
    assert np.all(case["A142_correction"] == 0) and np.all(case["A142_extrapolated"] == 1)
    # every A142 station is held out: the product's error there is what SBAS left, untouched
    held = case["A142_holdout"]
    assert held["n"] >= 4 and held["after"] == pytest.approx(held["before"], abs=1e-9), held
    corrections = json.loads(case["mosaic"]["frame_corrections"])
    assert corrections["A142"]["model"] == "plane"
    assert corrections["A040"]["model"] == "along_track"
    (edge,) = case["overlap"]
    assert edge["used"] and edge["n"] >= 100, edge
    # Noise floor: TruthSbasStage's 2 mm of white noise per date and pixel gives a per-pixel
    # slope error of 2 / sqrt(sum (t - mean t)^2) = 2 / 12.2 = 0.16 mm/yr LOS (26 dates,
    # 2015-2023); through the median of the ~16 pixels of a 10 km cell (x sqrt(pi / 32)), over
    # los_up (0.79) and for both frames: 0.09 mm/yr. The bound is issue 6's 1 mm/yr (validate's
    # tolerance), measured 0.39: the floor plus what a plane on A142 and a spline on A040 cannot
    # take out of two frames referenced at different pixels.
    assert edge["rms_after"] <= 1.0, edge
    # before: the two references' offsets and A040's one-station datum (measured 10.7): far
    # above the bound, so an adjustment that returns its input cannot pass
    assert edge["rms_before"] > 5.0, edge


def test_common_mode_does_not_depend_on_chunking_and_can_be_off():
    from types import SimpleNamespace

    from ncp_subsidence.stages.adjust import frame_common_mode

    rng = np.random.default_rng(4)
    t = 2015.0 + np.arange(40) * 0.2
    ny, nx = 90, 70
    v = rng.normal(-10, 20, (ny, nx))
    common = rng.normal(0, 5, t.size)
    disp = v[None] * (t - t[0])[:, None, None] + (common - common[0])[:, None, None]
    disp = disp + rng.normal(0, 1, disp.shape)
    coh = np.where(rng.random((ny, nx)) < 0.1, 0.3, 0.95)
    ds = xr.Dataset(
        {
            "displacement": (("time", "y", "x"), disp.astype(np.float32)),
            "temporal_coherence": (("y", "x"), coh.astype(np.float32)),
        },
        coords={"time": np.arange(t.size), "y": np.arange(ny), "x": np.arange(nx)},
    )
    opts = SimpleNamespace(
        common_mode_filter="median",
        common_mode_max_pixels=1000,
        common_mode_knot_years=2.0,
        min_coherence=0.7,
    )
    runs = [
        frame_common_mode(ds.chunk({"time": -1, "y": cy, "x": cx}), t, opts)
        for cy, cx in ((90, 70), (16, 33), (7, 70))
    ]
    for mode, n in runs[1:]:
        np.testing.assert_array_equal(mode.values, runs[0][0].values)
        assert n == runs[0][1]
    # every 3rd row and column (ceil(sqrt(6300 / 1000))), incoherent pixels left out
    assert runs[0][1] == int((coh[::3, ::3] >= 0.7).sum())
    assert np.corrcoef(runs[0][0].values[1:], common[1:] - common[0])[0, 1] > 0.8
    off, n = frame_common_mode(
        ds, t, SimpleNamespace(**{**vars(opts), "common_mode_filter": "none"})
    )
    assert n == 0 and not off.values.any()


def _selection_plans():
    """Four frames' selection plans: repeated k-fold with every candidate, LOO, two stations
    (the offset, no CV), no usable station."""
    from ncp_subsidence.models.selection import ModelSettings, plan_selection

    rng = np.random.default_rng(8)
    settings = ModelSettings(rf_n_estimators=25, gb_n_estimators=25, kfold_repeats=3)
    plans = {}
    for frame, n in (("F1", 38), ("F2", 20), ("F3", 2), ("F4", 0)):
        x, y = rng.uniform(-120, 120, n), rng.uniform(-120, 120, n)
        r = 2.0 + 5.0 * x / 120 + np.where(y > 0, 2.0, -1.0) + rng.normal(0, 0.6, n)
        plans[frame] = plan_selection(x, y, r, np.full(n, 0.7), seed=1, settings=settings)
    assert plans["F1"].cv_scheme == "kfold5x3" and plans["F2"].cv_scheme == "loo"
    assert plans["F3"].cv_scheme == "none" and plans["F4"] is None
    return plans


def test_selections_on_the_cluster_equal_the_serial_ones(local_cluster, caplog, monkeypatch):
    """The CV as Dask tasks (a task per frame, candidate and repeat) gives every frame the
    model, CV table and fitted surface of the serial path, and logs its progress in frames."""
    import distributed

    from ncp_subsidence.stages._adjust_select import FrameSelections

    plans = _selection_plans()
    serial = FrameSelections(None)
    for frame, plan in plans.items():
        serial.submit(frame, plan)
    expected = {f: serial.result(f) for f in plans}

    monkeypatch.setenv("NCP_SUBSIDENCE_PROGRESS_INTERVAL", "0.001")
    with (
        distributed.Client(local_cluster) as client,
        distributed.get_task_stream(client) as stream,
        caplog.at_level(logging.INFO, logger="ncp_subsidence.stages.adjust"),
    ):
        selections = FrameSelections(client)
        for frame, plan in plans.items():
            selections.submit(frame, plan)
        got = {f: selections.result(f) for f in ("F2", "F1", "F4", "F3")}  # any order
    # a task per repeat for the costly candidates (3 repeats, LOO in one), one for the others
    n_tasks = sum(1 for t in stream.data if str(t["key"]).startswith("score_candidate"))
    assert n_tasks == (4 * 3 + 4) + 8
    assert got["F4"] is None and expected["F4"] is None
    gx, gy = np.meshgrid(np.linspace(-200, 200, 9), np.linspace(-200, 200, 9))
    for frame in ("F1", "F2", "F3"):
        a, b = got[frame], expected[frame]
        assert a.model_id == b.model_id and a.cv_scheme == b.cv_scheme
        assert a.cv_table == b.cv_table  # exactly: the parts are put together in repeat order
        np.testing.assert_array_equal(a.predict(gx, gy), b.predict(gx, gy))
    assert expected["F3"].model_id == "P0"
    lines = [
        r.getMessage()
        for r in caplog.records
        if r.getMessage().startswith("adjust: model selection")
    ]
    assert lines and lines[-1].startswith("adjust: model selection 4/4 frames (100%), done in ")


def test_a_failing_cv_task_fails_the_selection_and_cancels_the_rest(local_cluster):
    """An exception in a worker's CV task (not a fit failure the table records) is raised by
    the stage, and the frames' other tasks are cancelled."""
    import dataclasses

    import distributed

    from ncp_subsidence.stages._adjust_select import FrameSelections

    plans = _selection_plans()
    broken = dataclasses.replace(plans["F1"], settings=None)  # GP's task: AttributeError
    with distributed.Client(local_cluster) as client:
        selections = FrameSelections(client)
        selections.submit("F1", broken)
        selections.submit("F2", plans["F2"])
        with pytest.raises(AttributeError):
            selections.result("F1")
        assert not selections._owner


def test_grid_coordinates_are_formed_blockwise_not_shipped_in_the_graph():
    """The (y, x) coordinate grids of a chunked frame: equal to xarray's broadcast, in the
    frame's chunks, and a graph of the 1-D coordinates only (a 2-D copy in the graph grew with
    the frame: 19 MB for 1500 x 800, dask's 'Sending large graph' warning)."""
    import cloudpickle
    import dask.array as da

    from ncp_subsidence.stages._adjust_correction import grid_coordinates

    y, x = np.linspace(40.0, 34.0, 1500), np.linspace(113.0, 117.0, 800)
    frame = xr.DataArray(
        da.zeros((1500, 800), chunks=(256, 256)), dims=("y", "x"), coords={"y": y, "x": x}
    )
    lat2d, lon2d = grid_coordinates(frame)
    expected = xr.broadcast(frame["y"], frame["x"])
    for got, want in zip((lat2d, lon2d), expected, strict=True):
        assert got.chunks == frame.chunks
        xr.testing.assert_identical(got.compute(), want)
        graph = dict(got.data.__dask_graph__())
        assert sum(len(cloudpickle.dumps(v)) for v in graph.values()) < 100_000
    in_memory = frame.compute()
    for got, want in zip(grid_coordinates(in_memory), expected, strict=True):
        assert got.chunks is None
        xr.testing.assert_identical(got, want)
