"""Stage ``geodetector`` on the tiny twin: ranking, interaction, tables, whole-plain pass, seeds."""

from __future__ import annotations

import io
import json
import warnings

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from ncp_subsidence.choices import FACTOR_NAMES
from ncp_subsidence.config import GeodetectorOptions
from ncp_subsidence.errors import DataWarning
from ncp_subsidence.kernels.discretize import apply_breaks, factor_breaks
from ncp_subsidence.kernels.geodetector import geodetector_batch
from ncp_subsidence.kernels.sampling import run_draws
from ncp_subsidence.pipeline import run_pipeline
from ncp_subsidence.stages.geodetector import aggregate_to_factor_grid


@pytest.fixture(autouse=True)
def _threads():
    with dask.config.set(scheduler="threads", num_workers=2):
        yield


def _csv(store, name):
    version = store.record("geodetector").version
    # round_trip: the class limits are data values and must parse back exactly
    data = io.BytesIO(store.read_file(f"geodetector/{version}/{name}"))
    return pd.read_csv(data, float_precision="round_trip")


def _summary(store):
    version = store.record("geodetector").version
    return json.loads(store.read_file(f"geodetector/{version}/summary.json"))


def test_ranking_recovers_the_twin_design(truth_pipeline):
    _cfg, store = truth_pipeline
    names = ["gwsa_trend", "dem", "precipitation"]
    fac = _csv(store, "factor.csv")
    assert list(fac["rank"]) == list(range(1, 10))
    assert set(fac["factor"]) == set(FACTOR_NAMES)
    q = fac.set_index("factor")["q_mean"]
    assert fac["factor"].iloc[0] == "gwsa_trend"
    assert q["gwsa_trend"] > 2 * q.drop("gwsa_trend").max()  # GWSA dominates by design
    assert int(fac.set_index("factor").loc["population", "rank"]) >= 8  # last or next to last
    assert (fac["q_sd"] >= 0).all() and (fac["q_sd"] < 0.05).all()
    assert (fac["q_mean"] > fac["q_null_95"]).all()  # every factor beats its permutation null
    assert (fac.set_index("factor").loc[names[:3], "p_value"] < 1e-6).all()
    assert _summary(store)["ranking"] == list(fac["factor"])


def test_gwsa_precipitation_interaction_enhances(truth_pipeline):
    _cfg, store = truth_pipeline
    inter = _csv(store, "interaction.csv")
    assert len(inter) == 36
    pair = inter.apply(lambda r: {r["factor_1"], r["factor_2"]}, axis=1)
    row = inter[pair == {"gwsa_trend", "precipitation"}].iloc[0]
    assert row["interaction_type"] in (2, 4)  # bi-variable or nonlinear enhance
    assert row["q_12_mean"] > max(row["q_1_mean"], row["q_2_mean"]) + 0.03
    assert row["enhance_draws"] == 1.0
    assert row["q_12_mean"] > row["q_12_null_95"]
    top = _summary(store)["top_interaction"]
    assert set(top["factors"]) == {"gwsa_trend", "precipitation"}
    assert "Enhance" in top["type"]


def test_tables_and_datasets_are_written_and_readable(truth_pipeline):
    cfg, store = truth_pipeline
    names = list(FACTOR_NAMES)
    fac = _csv(store, "factor.csv")
    matrix = _csv(store, "interaction_matrix.csv").set_index("factor")
    assert matrix.shape == (9, 9)
    np.testing.assert_allclose(matrix.to_numpy(), matrix.to_numpy().T)
    np.testing.assert_allclose(
        np.diag(matrix.loc[names, names].to_numpy()), fac.set_index("factor").loc[names, "q_mean"]
    )
    risk = _csv(store, "risk.csv")
    assert set(risk["factor"]) == set(names) and len(risk) > 100
    assert risk["p_value"].between(0, 1).all()
    eco = _csv(store, "ecological.csv")
    assert len(eco) == 9 * 8
    breaks = _csv(store, "breaks.csv")
    assert (breaks["upper"] >= breaks["lower"]).all()
    assert (breaks.groupby("factor").size() <= cfg.geodetector.n_strata).all()
    samples = _csv(store, "samples.csv")
    assert list(samples["seed"]) == [0, 1, 2, 3]
    np.testing.assert_allclose(
        samples["n_nonsubsidence"], np.round(0.5 * samples["n_subsidence"]), atol=0
    )
    sens = _csv(store, "sensitivity.csv")
    assert len(sens) == 3 * 3 * 9
    assert set(sens["threshold"]) == {-20.0, -15.0, -10.0}
    assert set(sens["ratio"]) == {2.0, 1.0, 0.5}
    # [H25]: q changes with the sample design but the ranking's head holds
    assert (sens[sens["factor"] == "gwsa_trend"]["rank"] == 1).all()
    per = sens.drop_duplicates(["threshold", "ratio"])
    np.testing.assert_allclose(
        per["n_nonsubsidence"], per["ratio"] * per["n_subsidence"], rtol=0.01
    )
    more = per.sort_values("threshold")["n_subsidence"].to_numpy()
    assert more[0] < more[-1]  # a looser threshold takes more subsidence cells

    det = store.open("geodetector", "detectors")
    np.testing.assert_allclose(
        det["q"].sel(factor=names).values, fac.set_index("factor").loc[names, "q_mean"]
    )
    assert det.sizes["draw"] == 4
    whole = store.open("geodetector", "whole_plain")
    wfac = _csv(store, "whole_plain_factor.csv").set_index("factor")
    np.testing.assert_allclose(whole["q"].sel(factor=names).values, wfac.loc[names, "q"])
    assert whole.attrs["n_pixels"] == 240 * 240


def test_whole_plain_reduction_equals_the_in_memory_kernel(truth_pipeline):
    _cfg, store = truth_pipeline
    names = list(FACTOR_NAMES)
    vel = store.open("mosaic", "velocity")["vertical_velocity"].values.astype(np.float64)
    fds = store.open("factors", "factors")
    breaks = _csv(store, "breaks.csv")
    codes, n_codes = [], []
    for n in names:
        b = breaks[breaks["factor"] == n]
        edges = np.r_[b["lower"].to_numpy()[:1], b["upper"].to_numpy()]
        c = apply_breaks(fds[n].values, edges)
        codes.append(np.repeat(np.repeat(c, 2, axis=0), 2, axis=1))  # 2 x 2 pixels per cell
        n_codes.append(edges.size - 1)
    ref = geodetector_batch(vel, codes, n_codes)
    wfac = _csv(store, "whole_plain_factor.csv").set_index("factor")
    np.testing.assert_allclose(
        wfac.loc[names, "q"], [r.q for r in ref.factors], rtol=1e-9, atol=1e-12
    )
    assert int(wfac["n_samples"].iloc[0]) == ref.n_samples
    wint = _csv(store, "whole_plain_interaction.csv")
    got = {(r.factor_1, r.factor_2): r.q_12 for r in wint.itertuples()}
    for (i, j), r in zip(ref.pairs, ref.interactions):
        np.testing.assert_allclose(got[(names[i], names[j])], r.q12, rtol=1e-9)
    # and the sampled response is the median of each cell's 2 x 2 mosaic pixels
    resp = store.open("geodetector", "response")["vertical_velocity"].values
    expected = np.median(vel.reshape(120, 2, 120, 2), axis=(1, 3))
    np.testing.assert_allclose(resp, expected, rtol=0, atol=1e-4)


def test_rerun_is_byte_identical_with_the_seed(truth_pipeline):
    cfg, store = truth_pipeline
    before = {n: _csv(store, n) for n in ("factor.csv", "interaction.csv", "sensitivity.csv")}
    v0 = store.record("geodetector").version
    run_pipeline(cfg, ["geodetector"], force=["geodetector"])
    assert store.record("geodetector").version != v0
    for name, df in before.items():
        pd.testing.assert_frame_equal(_csv(store, name), df)


def test_draws_depend_on_the_seed_only():
    rng = np.random.default_rng(3)
    n = 60
    lat, lon = np.meshgrid(40.0 - 0.01 * (np.arange(n) + 0.5), 114.0 + 0.01 * (np.arange(n) + 0.5))
    x = rng.normal(size=(2, n * n))
    y = -20.0 * (x[0] > 0) + rng.normal(0, 3, n * n)
    edges = factor_breaks(y, x, n_strata=5)
    kw = dict(threshold=-15.0, ratio=0.5, min_spacing=0.01, cap=500, n_draws=3, n_strata=5)
    a, _ = run_draws(y, lat.ravel(), lon.ravel(), x, edges, seed=11, **kw)
    b, _ = run_draws(y, lat.ravel(), lon.ravel(), x, edges, seed=11, **kw)
    c, _ = run_draws(y, lat.ravel(), lon.ravel(), x, edges, seed=12, **kw)
    qa = [[f.q for f in d.result.factors] for d in a]
    assert qa == [[f.q for f in d.result.factors] for d in b]
    assert qa != [[f.q for f in d.result.factors] for d in c]
    assert [d.draw.seed for d in a] == [11, 12, 13]
    assert qa[0][0] > 0.5 > qa[0][1]  # the informative factor wins in every draw
    # breaks per draw ([H25]) run the same design
    p, _ = run_draws(y, lat.ravel(), lon.ravel(), x, None, seed=11, sample_size=500, **kw)
    assert np.array_equal(p[0].draw.index, a[0].draw.index)


@pytest.mark.parametrize("how", ["median", "mean"])
def test_aggregation_on_a_non_nested_grid_matches_brute_force(how):
    rng = np.random.default_rng(5)
    # mosaic at 0.03 deg, factor grid at 0.05 deg: cells hold 1 or 2 pixels per axis (no pixel
    # centre falls on a cell edge), and the mosaic overhangs the factor grid to the south-east
    mlat = 40.0 - 0.03 * (np.arange(35) + 0.5)
    mlon = 114.0 + 0.03 * (np.arange(31) + 0.5)
    v = rng.normal(size=(35, 31))
    v[rng.random(v.shape) < 0.1] = np.nan
    vel = xr.DataArray(
        da.from_array(v, chunks=(10, 13)), dims=("lat", "lon"), coords={"lat": mlat, "lon": mlon}
    )
    flat = 40.0 - 0.05 * (np.arange(20) + 0.5)
    flon = 114.0 + 0.05 * (np.arange(18) + 0.5)
    out = aggregate_to_factor_grid(vel, flat, flon, how=how, block=4)
    assert isinstance(out.data, da.Array)
    got = out.values
    rows = np.floor((40.0 - mlat) / 0.05).astype(int)
    cols = np.floor((mlon - 114.0) / 0.05).astype(int)
    assert rows.max() >= 20 and cols.max() >= 18  # some pixels lie outside the factor grid
    stat = np.nanmedian if how == "median" else np.nanmean
    for i in range(20):
        for j in range(18):
            cell = v[np.ix_(rows == i, cols == j)]
            if np.isfinite(cell).any():
                np.testing.assert_allclose(got[i, j], stat(cell), rtol=1e-6)
            else:
                assert np.isnan(got[i, j])


def test_config_bounds_of_the_new_fields():
    opts = GeodetectorOptions()
    assert opts.sensitivity_thresholds == [-20.0, -15.0, -10.0]
    assert opts.sensitivity_ratios == [2.0, 1.0, 0.5]
    assert opts.aggregation == "median"
    with pytest.raises(ValueError, match="ratios"):
        GeodetectorOptions(sensitivity_ratios=[0.0])
    with pytest.raises(ValueError, match="thresholds"):
        GeodetectorOptions(sensitivity_thresholds=[5.0])
    with pytest.raises(ValueError):
        GeodetectorOptions(aggregation="max")


def _reference_sweep_and_draws(cfg, store):
    """The design of the stage rebuilt from its inputs, one draw at a time from the public
    pieces (draw_sample, sample_codes, geodetector_batch): the straightforward path."""
    from ncp_subsidence.kernels.discretize import sample_codes
    from ncp_subsidence.kernels.sampling import cell_index, draw_sample, mean_sd
    from ncp_subsidence.stages.geodetector import north_up

    opts = cfg.geodetector
    names = list(FACTOR_NAMES)
    fds = north_up(store.open("factors", "factors"))
    resp = store.open("geodetector", "response")["vertical_velocity"]
    y = np.asarray(resp.values, dtype=np.float64).ravel()
    glat, glon = np.meshgrid(fds["lat"].values, fds["lon"].values, indexing="ij")
    lat, lon = glat.ravel(), glon.ravel()
    x = np.stack([np.asarray(fds[n].values, dtype=np.float64).ravel() for n in names])
    breaks = _csv(store, "breaks.csv")
    edges = []
    for n in names:
        b = breaks[breaks["factor"] == n]
        edges.append(np.r_[b["lower"].to_numpy()[:1], b["upper"].to_numpy()])
    valid = np.isfinite(y) & np.all(np.isfinite(x), axis=0)
    cells = cell_index(lat, lon, opts.min_spacing_deg)

    def draws(threshold, ratio):
        q, p, n_s, n_n = [], [], [], []
        for s in range(opts.seed, opts.seed + opts.draws):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DataWarning)
                d = draw_sample(
                    y,
                    lat,
                    lon,
                    threshold=threshold,
                    ratio=ratio,
                    min_spacing=opts.min_spacing_deg,
                    cap=opts.max_subsidence_samples,
                    seed=s,
                    valid=valid,
                    cells=cells,
                )
            coded = [
                sample_codes(
                    y[d.index],
                    xi[d.index],
                    e,
                    method=opts.discretization,
                    n_strata=opts.n_strata,
                    sample_size=opts.breaks_sample_size,
                    seed=s,
                    min_stratum_size=opts.min_stratum_size,
                )
                for xi, e in zip(x, edges)
            ]
            res = geodetector_batch(
                y[d.index],
                [c for c, _, _ in coded],
                [n for _, n, _ in coded],
                pairs=[],
                convention=opts.convention,
            )
            q.append([f.q for f in res.factors])
            p.append([f.p_value for f in res.factors])
            n_s.append(d.n_subsidence)
            n_n.append(d.n_nonsubsidence)
        return np.array(q), np.array(p), np.mean(n_s), np.mean(n_n)

    sweep = {
        (t, r): draws(t, r) for t in opts.sensitivity_thresholds for r in opts.sensitivity_ratios
    }
    q, p, _, _ = draws(opts.threshold_mm_yr, opts.ratio)
    return names, sweep, (*mean_sd(q), q, p), mean_sd


def test_tables_equal_the_draw_by_draw_design(truth_pipeline):
    cfg, store = truth_pipeline
    names, sweep, (qm, qs, q, p), mean_sd = _reference_sweep_and_draws(cfg, store)
    sens = _csv(store, "sensitivity.csv")
    for (t, r), (qd, _, n_s, n_n) in sweep.items():
        rows = sens[(sens["threshold"] == t) & (sens["ratio"] == r)].set_index("factor")
        m, sd = mean_sd(qd)
        np.testing.assert_allclose(rows.loc[names, "q_mean"], m, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(rows.loc[names, "q_sd"], sd, rtol=1e-8, atol=1e-12)
        assert rows["n_subsidence"].iloc[0] == pytest.approx(n_s)
        assert rows["n_nonsubsidence"].iloc[0] == pytest.approx(n_n)
    fac = _csv(store, "factor.csv").set_index("factor").loc[names]
    np.testing.assert_allclose(fac["q_mean"], qm, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fac["q_sd"], qs, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(fac["q_first_draw"], q[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fac["p_value"], p[0], rtol=1e-8, atol=1e-300)
    np.testing.assert_allclose(fac["significant_draws"], np.mean(p < 0.05, axis=0))
    # the sweep's setting of the design is the design's own draws
    own = sens[(sens["threshold"] == cfg.geodetector.threshold_mm_yr)]
    own = own[own["ratio"] == cfg.geodetector.ratio].set_index("factor").loc[names]
    np.testing.assert_array_equal(own["q_mean"], fac["q_mean"])


def test_long_loops_log_progress_lines(truth_pipeline, monkeypatch, caplog):
    import logging

    cfg, _store = truth_pipeline
    monkeypatch.setenv("NCP_SUBSIDENCE_PROGRESS_INTERVAL", "1e-9")
    with caplog.at_level(logging.INFO, logger="ncp_subsidence.stages.geodetector"):
        run_pipeline(cfg, ["geodetector"], force=["geodetector"])
    lines = [r.getMessage() for r in caplog.records]
    n_runs = 1 + 3 * 3 - 1  # the design, and the sweep's other settings
    assert any(m.startswith("geodetector: sampling draws 1/") for m in lines)
    done = f"geodetector: sampling draws {4 * n_runs}/{4 * n_runs} draws (100%), done in"
    assert any(m.startswith(done) for m in lines)
    assert any(m.startswith("geodetector: permutation nulls 49/49 permutations") for m in lines)
