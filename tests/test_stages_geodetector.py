"""Geodetector Dask reduction (chunk invariance, lazy graph), sampling design and tables."""

from __future__ import annotations

import itertools
import warnings

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ncp_subsidence.errors import DataWarning
from ncp_subsidence.kernels.geodetector import batch_stats, geodetector_batch
from ncp_subsidence.kernels.sampling import (
    cell_index,
    draw_sample,
    permutation_null,
    repeated_draws,
    sensitivity_sweep,
)
from ncp_subsidence.stages.geodetector import (
    ecological_table,
    factor_detector_dask,
    factor_table,
    geodetector_dask,
    geodetector_stats_dask,
    interaction_detector_dask,
    interaction_matrices,
    interaction_table,
    risk_table,
    sensitivity_table,
    to_dataset,
)


def _chunks(draw, size):
    """Random chunk sizes that sum to size."""
    cuts = sorted(draw(st.sets(st.integers(1, size - 1), max_size=5))) if size > 1 else []
    bounds = [0, *cuts, size]
    return tuple(b - a for a, b in itertools.pairwise(bounds))


@st.composite
def problems(draw):
    ny = draw(st.integers(3, 25))
    nx = draw(st.integers(3, 25))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    n_codes = [draw(st.integers(1, 6)) for _ in range(3)]
    codes = [rng.integers(-1, n, (ny, nx)) for n in n_codes]  # -1 = missing factor value
    offset = draw(st.sampled_from([0.0, -15.0, 1e4]))
    y = offset + codes[0] * 1.5 + rng.normal(0, 2.0, (ny, nx))
    y[rng.random((ny, nx)) < 0.05] = np.nan
    return (
        y,
        codes,
        n_codes,
        (_chunks(draw, ny), _chunks(draw, nx)),
        draw(st.sampled_from([None, 2, 3])),
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_dask_reduction_equals_in_memory_kernel_for_any_chunking(problem):
    y, codes, n_codes, chunks, split_every = problem
    with dask.config.set(scheduler="synchronous"):
        yd = da.from_array(y, chunks=chunks)
        cd = [da.from_array(c, chunks=chunks) for c in codes]
        packed, shift = geodetector_stats_dask(yd, cd, n_codes, split_every=split_every)
        packed, shift = dask.compute(packed, shift)
    ref = batch_stats(y, codes, n_codes, shift=float(shift))
    np.testing.assert_allclose(
        packed, ref.pack(), rtol=1e-9, atol=1e-9 * (1 + np.nanmax(np.abs(y)))
    )
    with warnings.catch_warnings(), dask.config.set(scheduler="synchronous"):
        warnings.simplefilter("ignore", DataWarning)  # e.g. a factor drawn with one code
        got = geodetector_dask(yd, cd, n_codes, split_every=split_every)
        exp = geodetector_batch(y, codes, n_codes)
    assert got.n_samples == exp.n_samples and got.n_dropped == exp.n_dropped
    for a, b in zip(got.factors, exp.factors):
        assert a.n_strata == b.n_strata
        np.testing.assert_allclose(a.q, b.q, rtol=0, atol=1e-9)
    for a, b in zip(got.interactions, exp.interactions):
        assert a.n_strata12 == b.n_strata12
        np.testing.assert_allclose(a.q12, b.q12, rtol=0, atol=1e-9)


def _raise_if_computed(*args, **kwargs):
    raise AssertionError("building the geodetector graph triggered a computation")


def test_building_the_graph_computes_nothing():
    rng = np.random.default_rng(30)
    y = da.from_array(rng.normal(size=(40, 30)), chunks=(10, 15))
    codes = [da.from_array(rng.integers(0, 4, (40, 30)), chunks=(20, 10)) for _ in range(3)]
    with dask.config.set(scheduler=_raise_if_computed):
        packed, shift = geodetector_stats_dask(y, codes, [4, 4, 4])
        assert isinstance(packed, da.Array) and isinstance(shift, da.Array)
        with pytest.raises(AssertionError, match="triggered a computation"):
            packed.compute()
    # the graph grows with the number of blocks, not with the number of samples
    assert len(packed.__dask_graph__()) < 200


def test_single_factor_and_pair_wrappers():
    rng = np.random.default_rng(31)
    c1, c2 = rng.integers(0, 5, 5000), rng.integers(0, 3, 5000)
    y = c1 * c2 + rng.normal(size=5000)
    yd = da.from_array(y, chunks=777)
    with dask.config.set(scheduler="synchronous"):
        f = factor_detector_dask(yd, da.from_array(c1, chunks=500), 5)
        i = interaction_detector_dask(yd, c1, c2, 5, 3)
    ref = geodetector_batch(y, [c1, c2], [5, 3])
    assert f.q == pytest.approx(ref.factors[0].q, abs=1e-12)
    assert i.q12 == pytest.approx(ref.interactions[0].q12, abs=1e-12)
    assert i.interaction_type == ref.interactions[0].interaction_type


def _grid(ny=120, nx=150, seed=40):
    rng = np.random.default_rng(seed)
    lat, lon = np.meshgrid(
        37.0 + (np.arange(ny) + 0.5) * 0.002, 115.0 + (np.arange(nx) + 0.5) * 0.002, indexing="ij"
    )
    bowl = -40.0 * np.exp(-((lat - 37.12) ** 2 + (lon - 115.15) ** 2) / 0.004)
    y = bowl + rng.normal(0, 2.0, lat.shape)
    return y.ravel(), lat.ravel(), lon.ravel(), rng


def test_sampling_design_ratio_spacing_and_cap():
    y, lat, lon, _ = _grid()
    d = draw_sample(y, lat, lon, threshold=-15.0, ratio=0.5, min_spacing=0.01, seed=1)
    assert d.n_subsidence > 30
    assert d.n_nonsubsidence == round(0.5 * d.n_subsidence)
    assert (y[d.index[d.is_subsidence]] <= -15.0).all()
    assert (y[d.index[~d.is_subsidence]] > -15.0).all()
    cells = cell_index(lat, lon, 0.01)
    assert np.unique(cells[d.index]).size == d.index.size  # at most one point per 0.01 deg cell
    # the subsidence point of a cell is the pixel with the cell's (lower) median velocity
    c0 = cells[d.index[0]]
    in_cell = np.sort(y[(cells == c0) & (y <= -15.0)])
    assert y[d.index[0]] == in_cell[(in_cell.size - 1) // 2]
    capped = draw_sample(y, lat, lon, ratio=2.0, cap=10, seed=2)
    assert capped.n_subsidence == 10 and capped.n_nonsubsidence == 20
    assert capped.n_subsidence_cells == d.n_subsidence_cells
    same = draw_sample(y, lat, lon, ratio=2.0, cap=10, seed=2)
    np.testing.assert_array_equal(same.index, capped.index)
    other = draw_sample(y, lat, lon, ratio=2.0, cap=10, seed=3)
    assert not np.array_equal(other.index, capped.index)


def test_sampling_excludes_missing_factors_before_drawing():
    y, lat, lon, rng = _grid()
    valid = rng.random(y.size) > 0.3
    d = draw_sample(y, lat, lon, valid=valid, seed=0)
    assert valid[d.index].all()
    assert d.n_excluded == int((~valid).sum())
    assert d.n_nonsubsidence == round(0.5 * d.n_subsidence)
    with pytest.warns(DataWarning, match="non-subsidence points wanted"):
        draw_sample(y, lat, lon, ratio=1000.0)


def test_repeated_draws_and_sensitivity_sweep_table():
    y, lat, lon, rng = _grid()
    informative = np.clip(((y + 45.0) / 2.5).astype(int), 0, 19)
    noise = rng.integers(0, 20, y.size)
    codes = [informative, noise]
    out = repeated_draws(y, lat, lon, codes, [20, 20], n_draws=4, seed=5)
    assert out["q"].shape == (4, 2)
    np.testing.assert_array_equal(out["seeds"], [5, 6, 7, 8])
    assert (out["q_mean"][0] > 0.8) and (out["q_mean"][1] < out["q_mean"][0])
    assert (out["q_sd"] >= 0).all()
    sweep = sensitivity_sweep(
        y, lat, lon, codes, [20, 20], thresholds=(-20.0, -15.0, -10.0), ratios=(1.0, 0.5), n_draws=2
    )
    table = sensitivity_table(sweep, ["gwsa", "noise"])
    assert len(table) == 3 * 2 * 2
    assert list(table.columns) == [
        "threshold",
        "ratio",
        "factor",
        "q_mean",
        "q_sd",
        "rank",
        "n_subsidence",
        "n_nonsubsidence",
        "n_draws",
    ]
    assert (table.loc[table.factor == "gwsa", "rank"] == 1).all()
    by_t = table.groupby("threshold")["n_subsidence"].first()
    assert by_t[-20.0] < by_t[-15.0] < by_t[-10.0]
    half = table[(table.threshold == -15.0) & (table.ratio == 0.5)].iloc[0]
    assert half.n_nonsubsidence == pytest.approx(round(0.5 * half.n_subsidence), abs=0.5)


def test_permutation_null_shows_crossed_strata_inflation():
    rng = np.random.default_rng(41)
    n = 600
    y = rng.normal(size=n)
    c1, c2 = rng.integers(0, 20, n), rng.integers(0, 20, n)
    single = permutation_null(y, c1, 20, n_perm=99, seed=1)
    crossed = permutation_null(y, c1 * 20 + c2, 400, n_perm=99, seed=1)
    # E[q | no association] ~ (L - 1) / (N - 1)
    assert single.q_null.mean() == pytest.approx(19 / 599, rel=0.3)
    assert crossed.q_null.mean() > 10 * single.q_null.mean()
    assert crossed.q_quantile > 0.4
    assert 0.0 < single.p_value <= 1.0
    signal = permutation_null(y + 0.5 * c1, c1, 20, n_perm=99, seed=1)
    assert signal.p_value == pytest.approx(1 / 100)


def test_tables_and_dataset():
    rng = np.random.default_rng(42)
    n = 2000
    codes = [rng.integers(0, 5, n), rng.integers(0, 4, n), rng.integers(0, 3, n)]
    y = 2.0 * codes[1] + codes[0] * codes[2] + rng.normal(size=n)
    res = geodetector_batch(y, codes, [5, 4, 3], risk=True, ecological=True)
    names = ["dem", "gwsa", "ndvi"]
    ft = factor_table(res, names)
    assert ft["factor"].iloc[0] == "gwsa" and (np.diff(ft["q"]) <= 0).all()
    assert list(ft["rank"]) == [1, 2, 3]
    it = interaction_table(res, names)
    assert len(it) == 3 and set(it["interaction_label"]) <= {
        "Weaken, nonlinear",
        "Weaken, uni-variable",
        "Enhance, bi-variable",
        "Independent",
        "Enhance, nonlinear",
    }
    qm, tm = interaction_matrices(res, names)
    np.testing.assert_array_equal(qm.to_numpy(), qm.to_numpy().T)
    assert qm.loc["gwsa", "gwsa"] == res.factors[1].q
    assert qm.loc["dem", "ndvi"] == res.interactions[1].q12
    assert (np.diag(tm.to_numpy()) == -1).all()
    rt = risk_table(res, names)
    assert len(rt) == 10 + 6 + 3
    et = ecological_table(res, names)
    assert len(et) == 6
    ds = to_dataset(res, names)
    assert ds["interaction_q"].dims == ("factor_1", "factor_2")
    np.testing.assert_allclose(ds["q"].to_numpy(), [r.q for r in res.factors])
    assert isinstance(ds.to_dataframe(), pd.DataFrame)


# --------------------------------------------------------------------------------------------
# The batched design against the straightforward one (one draw at a time, public pieces only)
# --------------------------------------------------------------------------------------------


def _assert_same(a, b, where="result"):
    """Equal field by field, arrays and floats exactly (NaN equal to NaN)."""
    import dataclasses

    if dataclasses.is_dataclass(a):
        assert type(a) is type(b), where
        for f in dataclasses.fields(a):
            _assert_same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}[{key}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, z) in enumerate(zip(a, b)):
            _assert_same(x, z, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, float):
        assert (np.isnan(a) and np.isnan(b)) or a == b, f"{where}: {a!r} != {b!r}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _reference_draws(y, lat, lon, factors, edges, *, seed, n_draws, interactions=True, **kw):
    """The design one draw at a time, as run_draws did it before it was batched: every draw
    thins all candidates again (draw_sample), classifies its points (sample_codes) and runs
    the detectors with their own F tests (geodetector_batch)."""
    from ncp_subsidence.kernels.discretize import sample_codes

    design = {n: kw.pop(n) for n in ("threshold", "ratio", "min_spacing", "cap")}
    disc = {n: kw.pop(n) for n in ("method", "n_strata", "sample_size", "min_stratum_size")}
    detail_first = kw.pop("detail_first", False)
    valid = np.isfinite(y) & np.all(np.isfinite(factors), axis=0)
    cells = cell_index(lat, lon, design["min_spacing"])
    out, n_short = [], 0
    for s in range(seed, seed + n_draws):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DataWarning)
            d = draw_sample(y, lat, lon, seed=s, valid=valid, cells=cells, **design)
        n_short += sum(issubclass(w.category, DataWarning) for w in caught)
        if d.index.size < 3:
            continue
        ys = y[d.index]
        coded = [
            sample_codes(ys, x[d.index], None if edges is None else e, seed=s, **disc)
            for x, e in zip(factors, edges if edges is not None else [None] * len(factors))
        ]
        res = geodetector_batch(
            ys,
            [c for c, _, _ in coded],
            [n for _, n, _ in coded],
            pairs=None if interactions else [],
            risk=detail_first and not out,
            ecological=detail_first and not out,
            **kw,
        )
        out.append((d, coded, res))
    return out, n_short


def _design_problem():
    """Cells of 5 x 5 pixels, a capped subsidence set, factors with a missing value, a factor
    whose classes are small on a sample (merged), and a skewed one."""
    from ncp_subsidence.kernels.discretize import factor_breaks

    y, lat, lon, rng = _grid()
    x = np.stack(
        [
            -y + rng.normal(0, 3.0, y.size),  # informative
            rng.normal(size=y.size),  # noise
            np.where(rng.random(y.size) < 0.003, 50.0, 0.0) + rng.normal(0, 0.1, y.size),
            rng.gamma(0.5, 2.0, y.size),
        ]
    )
    x[1, rng.random(y.size) < 0.05] = np.nan
    valid = np.all(np.isfinite(x), axis=0) & np.isfinite(y)
    edges = factor_breaks(y[valid], x[:, valid], n_strata=8, sample_size=400, seed=3)
    return y, lat, lon, x, edges


@pytest.mark.parametrize("convention", ["R", "pypi"])
def test_run_draws_equals_the_draw_by_draw_design(convention):
    from ncp_subsidence.kernels.sampling import DrawFrame, run_draws

    y, lat, lon, x, edges = _design_problem()
    kw = dict(min_spacing=0.01, cap=60, method="natural_breaks", n_strata=8, sample_size=400)
    kw |= dict(min_stratum_size=3, convention=convention, interaction_convention="wang2010")
    frame = DrawFrame(y, lat, lon, x, edges, min_spacing=0.01)
    settings = [(-15.0, 0.5, True), (-20.0, 2.0, False), (-10.0, 40.0, False)]  # 40: short
    seen_merge = seen_short = False
    for threshold, ratio, first in settings:
        both = dict(threshold=threshold, ratio=ratio, n_draws=6, seed=7, detail_first=first, **kw)
        ticks = []
        got, got_short = run_draws(y, lat, lon, x, edges, frame=frame, on_draw=ticks.append, **both)
        ref, ref_short = _reference_draws(y, lat, lon, x, edges, **both)
        assert sum(ticks) == 6 and got_short == ref_short and len(got) == len(ref)
        seen_short |= got_short > 0
        for g, (d, coded, res) in zip(got, ref):
            _assert_same(g.draw, d, "draw")
            _assert_same(g.codes, [c for c, _, _ in coded], "codes")
            _assert_same(g.n_codes, [n for _, n, _ in coded], "n_codes")
            _assert_same(g.edges, [e for _, _, e in coded], "edges")
            _assert_same(g.result, res)
            seen_merge |= g.n_codes != [e.size - 1 for e in edges]
        assert (got[0].result.risk != ()) == first
    assert seen_merge and seen_short  # both fallbacks were exercised


def test_run_draws_with_breaks_per_draw_equals_the_draw_by_draw_design():
    from ncp_subsidence.kernels.sampling import run_draws

    y, lat, lon, x, _ = _design_problem()
    both = dict(threshold=-15.0, ratio=1.0, min_spacing=0.01, cap=80, n_draws=3, seed=2)
    both |= dict(method="quantile", n_strata=6, sample_size=300, min_stratum_size=2)
    got, _ = run_draws(y, lat, lon, x, None, **both)
    ref, _ = _reference_draws(y, lat, lon, x, None, **both)
    for g, (d, coded, res) in zip(got, ref, strict=True):
        _assert_same(g.draw, d, "draw")
        _assert_same(g.edges, [e for _, _, e in coded], "edges")
        _assert_same(g.result, res)


@pytest.mark.parametrize("convention", ["R", "pypi"])
def test_sweep_draws_give_the_q_of_the_full_draws(convention):
    from ncp_subsidence.kernels.sampling import DrawFrame, SweepDraws, run_draws, sweep_draws

    y, lat, lon, x, edges = _design_problem()
    frame = DrawFrame(y, lat, lon, x, edges, min_spacing=0.01)
    kw = dict(min_spacing=0.01, cap=60, n_draws=5, seed=4, n_strata=8, min_stratum_size=3)
    for threshold, ratio in [(-20.0, 2.0), (-10.0, 40.0)]:
        full, n_short = run_draws(
            y,
            lat,
            lon,
            x,
            edges,
            threshold=threshold,
            ratio=ratio,
            interactions=False,
            convention=convention,
            frame=frame,
            **kw,
        )
        ticks = []
        fast = sweep_draws(
            y,
            lat,
            lon,
            x,
            edges,
            threshold=threshold,
            ratio=ratio,
            convention=convention,
            interaction_convention="wang2010",
            frame=frame,
            on_draw=ticks.append,
            **kw,
        )
        ref = SweepDraws.from_draws(full, n_short, x.shape[0])
        assert sum(ticks) == 5
        np.testing.assert_array_equal(fast.n_subsidence, ref.n_subsidence)
        np.testing.assert_array_equal(fast.n_nonsubsidence, ref.n_nonsubsidence)
        assert fast.n_short == ref.n_short
        # SST summed single-threaded: equal up to the last bits
        np.testing.assert_allclose(fast.q, ref.q, rtol=1e-13, atol=1e-15)


def test_a_frame_for_other_limits_is_refused():
    from ncp_subsidence.errors import DataError
    from ncp_subsidence.kernels.sampling import DrawFrame, run_draws

    y, lat, lon, x, edges = _design_problem()
    frame = DrawFrame(y, lat, lon, x, edges, min_spacing=0.01)
    other = [e * 1.01 for e in edges]
    with pytest.raises(DataError, match="frame"):
        run_draws(
            y,
            lat,
            lon,
            x,
            other,
            threshold=-15.0,
            ratio=0.5,
            min_spacing=0.01,
            cap=None,
            n_draws=1,
            seed=0,
            frame=frame,
        )


def test_permutation_nulls_equal_one_null_at_a_time():
    from ncp_subsidence.kernels.sampling import permutation_nulls

    rng = np.random.default_rng(8)
    n = 700
    codes = [rng.integers(0, 6, n), rng.integers(0, 4, n), rng.integers(0, 5, n)]
    codes[2][rng.random(n) < 0.02] = -1  # a missing stratum: its own set of samples
    y = 0.8 * codes[0] + rng.normal(size=n)
    pairs = [(0, 1), (0, 2), (1, 2)]
    ticks = []
    fac, inter = permutation_nulls(
        y, codes, [6, 4, 5], pairs, n_perm=59, seed=3, on_perm=ticks.append
    )
    assert sum(ticks) == 59
    ref_f = [permutation_null(y, c, n_c, n_perm=59, seed=3) for c, n_c in zip(codes, [6, 4, 5])]
    n_codes = [6, 4, 5]
    ref_i = [
        permutation_null(
            y,
            codes[i].astype(np.int64) * n_codes[j] + codes[j],
            n_codes[i] * n_codes[j],
            n_perm=59,
            seed=3,
        )
        for i, j in pairs
    ]
    _assert_same(fac, ref_f, "factor nulls")
    _assert_same(inter, ref_i, "pair nulls")
