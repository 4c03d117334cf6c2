"""Benchmark: geodetector at whole-plain scale against PyPI ``geodetector`` 0.2.0.

Work (issue 8): 10 million samples, 9 factors of 20 strata, all 9 factor detectors (q, F,
non-central and central F p-values) and all 36 pairwise interactions (q12 and type); and natural
breaks (20 classes) over 10 million values.

PyPI ``geodetector`` does the same work (``FactorDetector`` per factor, ``InteractionDetector`` over
the 9 factors) on a random subsample of ``--peer-n`` samples; its time is extrapolated linearly to
10 million (its cost is linear in n: boolean masks per stratum, string keys per crossed sample)
and the report says so. The q of the subsample is checked against ours on the same subsample.

With ``--design`` (issue 22) it also times the stage's sampling design on a synthetic
``--grid`` x ``--grid`` factor grid: natural breaks of 9 factors, 20 draws with every detector,
the 3 x 3 sensitivity sweep and 199 permutation nulls, as the stage runs them (one
``DrawFrame``, batched statistics, shared shuffles), and the 20 draws and the nulls one at a
time from the public pieces (``draw_sample``, ``sample_codes``, ``geodetector_batch``,
``permutation_null``), checking that both give the same q.

Usage::

    .venv/bin/python benchmarks/geodetector.py                 # full run
    .venv/bin/python benchmarks/geodetector.py --n 1000000 --peer-n 20000   # quick
    .venv/bin/python benchmarks/geodetector.py --n 1000000 --skip-peer --design   # + design
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings

import numpy as np

# This file is named like the peer package; when run as a script its folder comes first on
# sys.path and would shadow PyPI ``geodetector``. Drop it.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [q for q in sys.path if os.path.abspath(q or os.getcwd()) != _HERE]


def _make_data(n: int, k: int, levels: int, seed: int):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, levels, (k, n), dtype=np.uint8)
    # y depends on a few factors, with an interaction, like the twin's design
    y = (
        -15.0
        + 1.2 * codes[0]
        + 0.6 * codes[1]
        - 0.4 * codes[2] * (codes[3] > levels // 2)
        + rng.normal(0.0, 8.0, n)
    )
    return y, codes


def _best_of(fn, repeat: int):
    times = []
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, min(times), float(np.median(times))


def run_ours(y, codes, levels, repeat):
    from ncp_subsidence.kernels.geodetector import geodetector_batch

    k = codes.shape[0]
    return _best_of(lambda: geodetector_batch(y, codes, [levels] * k), repeat)


def run_ours_dask(y, codes, levels, repeat, workers, chunk):
    import dask
    import dask.array as da

    from ncp_subsidence.stages.geodetector import geodetector_dask

    k = codes.shape[0]
    yd = da.from_array(y, chunks=chunk)
    cd = [da.from_array(c, chunks=chunk) for c in codes]

    def go():
        with dask.config.set(scheduler="threads", num_workers=workers):
            return geodetector_dask(yd, cd, [levels] * k, shift=0.0)

    return _best_of(go, repeat)


def run_natural_breaks(n, repeat, seed):
    from ncp_subsidence.kernels.discretize import discretize

    x = np.random.default_rng(seed + 1).gamma(2.0, 3.0, n)
    return _best_of(lambda: discretize(x, "natural", 20), repeat)


def run_design(grid: int, seed: int) -> dict:
    """The stage's design (batched) and its draw-by-draw form on a synthetic factor grid."""
    import warnings

    from ncp_subsidence.errors import DataWarning
    from ncp_subsidence.kernels.discretize import factor_breaks, sample_codes
    from ncp_subsidence.kernels.geodetector import geodetector_batch
    from ncp_subsidence.kernels.sampling import (
        DrawFrame,
        cell_index,
        draw_sample,
        permutation_null,
        permutation_nulls,
        run_draws,
        sweep_draws,
    )

    rng = np.random.default_rng(seed + 3)
    lat, lon = np.meshgrid(
        40.0 - 0.01 * (np.arange(grid) + 0.5), 114.0 + 0.01 * (np.arange(grid) + 0.5), indexing="ij"
    )
    lat, lon = lat.ravel(), lon.ravel()
    x = rng.gamma(2.0, 1.0, (9, grid * grid)) + np.linspace(0, 3, 9)[:, None] * rng.random(
        (1, grid * grid)
    )
    y = -18.0 * (x[0] - x[0].mean()) - 6.0 * x[1] * (x[2] > 2) + rng.normal(0, 4.0, x.shape[1])
    y[rng.random(y.size) < 0.3] = np.nan
    valid = np.isfinite(y)
    kw = dict(min_spacing=0.01, cap=20000, n_draws=20, seed=seed, n_strata=20)
    kw |= dict(sample_size=5000, min_stratum_size=2, method="natural_breaks")
    times = {}
    t0 = time.perf_counter()
    edges = factor_breaks(y[valid], x[:, valid], n_strata=20, sample_size=5000, seed=seed)
    times["design_breaks_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    frame = DrawFrame(y, lat, lon, x, edges, min_spacing=0.01)
    draws, _ = run_draws(y, lat, lon, x, edges, threshold=-15.0, ratio=0.5, detail_first=True,
                         frame=frame, **kw)  # fmt: skip
    times["design_draws_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for t in (-20.0, -15.0, -10.0):
        for r in (2.0, 1.0, 0.5):
            if (t, r) != (-15.0, 0.5):
                sweep_draws(y, lat, lon, x, edges, threshold=t, ratio=r, frame=frame, **kw)
    times["design_sweep_s"] = time.perf_counter() - t0
    first = draws[0]
    t0 = time.perf_counter()
    nulls, _ = permutation_nulls(y[first.draw.index], first.codes, first.n_codes,
                                 first.result.pairs, n_perm=199, seed=seed)  # fmt: skip
    times["design_permutations_s"] = time.perf_counter() - t0
    # the same design one draw at a time
    t0 = time.perf_counter()
    cells = cell_index(lat, lon, 0.01)
    ok = valid & np.all(np.isfinite(x), axis=0)
    q_ref = []
    for s in range(seed, seed + 20):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)
            d = draw_sample(y, lat, lon, threshold=-15.0, ratio=0.5, min_spacing=0.01, cap=20000,
                            seed=s, valid=ok, cells=cells)  # fmt: skip
        coded = [sample_codes(y[d.index], xi[d.index], e, method="natural_breaks", n_strata=20,
                              sample_size=5000, seed=s, min_stratum_size=2)
                 for xi, e in zip(x, edges)]  # fmt: skip
        res = geodetector_batch(y[d.index], [c for c, _, _ in coded], [n for _, n, _ in coded])
        q_ref.append([f.q for f in res.factors])
    times["design_draws_one_by_one_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref_nulls = [permutation_null(y[first.draw.index], c, n, n_perm=199, seed=seed)
                 for c, n in zip(first.codes, first.n_codes)]  # fmt: skip
    times["design_factor_nulls_one_by_one_s"] = time.perf_counter() - t0
    q = np.array([[f.q for f in d.result.factors] for d in draws])
    times["design_draws_max_abs_dq"] = float(np.max(np.abs(q - np.array(q_ref))))
    times["design_nulls_equal"] = all(
        np.array_equal(a.q_null, b.q_null) for a, b in zip(nulls, ref_nulls)
    )
    times["design_grid"] = grid
    return times


def run_peer(y, codes, m, seed):
    import pandas as pd
    from geodetector import FactorDetector, InteractionDetector

    rng = np.random.default_rng(seed + 2)
    idx = np.sort(rng.choice(y.size, size=m, replace=False))
    names = [f"x{i}" for i in range(codes.shape[0])]
    df = pd.DataFrame({nm: codes[i, idx].astype(np.int64) for i, nm in enumerate(names)})
    ys = y[idx]
    t0 = time.perf_counter()
    fq = []
    for nm in names:
        fd = FactorDetector().fit(df[[nm]], ys)
        fq.append((fd.q_value_, fd.p_value_))
    t1 = time.perf_counter()
    idet = InteractionDetector().fit(df, ys)
    t2 = time.perf_counter()
    return idx, fq, idet, t1 - t0, t2 - t1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000_000)
    p.add_argument("--factors", type=int, default=9)
    p.add_argument("--levels", type=int, default=20)
    p.add_argument("--peer-n", type=int, default=100_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--chunk", type=int, default=2_500_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-peer", action="store_true")
    p.add_argument("--json", default=None, help="write the numbers to this file")
    p.add_argument("--design", action="store_true", help="also time the sampling design")
    p.add_argument("--grid", type=int, default=600, help="factor grid side of --design")
    a = p.parse_args(argv)

    from ncp_subsidence.kernels.geodetector import geodetector_batch

    load_before = os.getloadavg()
    y, codes = _make_data(a.n, a.factors, a.levels, a.seed)
    n_pairs = a.factors * (a.factors - 1) // 2
    res, ours_best, ours_med = run_ours(y, codes, a.levels, a.repeat)
    dres, dask_best, dask_med = run_ours_dask(y, codes, a.levels, a.repeat, a.workers, a.chunk)
    dq = max(abs(r1.q - r2.q) for r1, r2 in zip(res.factors, dres.factors))
    dq12 = max(abs(r1.q12 - r2.q12) for r1, r2 in zip(res.interactions, dres.interactions))
    nb, nb_best, nb_med = run_natural_breaks(a.n, a.repeat, a.seed)
    out = {
        "n": a.n,
        "factors": a.factors,
        "levels": a.levels,
        "pairs": n_pairs,
        "ours_numpy_best_s": ours_best,
        "ours_numpy_median_s": ours_med,
        "ours_dask_threads_best_s": dask_best,
        "ours_dask_threads_median_s": dask_med,
        "dask_workers": a.workers,
        "dask_chunk": a.chunk,
        "dask_vs_numpy_max_abs_dq": max(dq, dq12),
        "natural_breaks_20_best_s": nb_best,
        "natural_breaks_20_median_s": nb_med,
        "natural_breaks_n_strata": nb.n_strata,
        "q_top": sorted(((round(r.q, 4), i) for i, r in enumerate(res.factors)), reverse=True)[:3],
    }
    if not a.skip_peer:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            idx, fq, idet, t_fac, t_int = run_peer(y, codes, a.peer_n, a.seed)
        sub = geodetector_batch(y[idx], codes[:, idx], [a.levels] * a.factors, convention="pypi")
        dq_peer = max(abs(q - r.q) for (q, _), r in zip(fq, sub.factors))
        dq12_peer = max(abs(pr["q_12"] - ir.q12) for pr, ir in zip(idet.pairs_, sub.interactions))
        scale = a.n / a.peer_n
        peer_total = t_fac + t_int
        peer_extrap = peer_total * scale
        out.update(
            {
                "peer_n": a.peer_n,
                "peer_factor_s": t_fac,
                "peer_interaction_s": t_int,
                "peer_total_s": peer_total,
                "peer_extrapolated_total_s": peer_extrap,
                "speedup_vs_peer_numpy": peer_extrap / ours_best,
                "speedup_vs_peer_dask": peer_extrap / dask_best,
                "peer_max_abs_dq": max(dq_peer, dq12_peer),
            }
        )
    if a.design:
        out.update(run_design(a.grid, a.seed))
    out.update(
        {
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
            "cpu_count": os.cpu_count(),
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "machine": platform.machine(),
        }
    )
    print(json.dumps(out, indent=2, default=float))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(out, fh, indent=2, default=float)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
