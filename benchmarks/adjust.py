"""Benchmark: the adjust stage's model selection, reference path against the lean one.

Work (issue 22): the per-frame model selection of the ``adjust`` stage (docs/science.md 3.2-3.4)
on demo-sized frames: 58 and 47 training stations, every candidate (P0-P3, GP, SVR, RF, GB),
5-fold x 10 cross-validation. The residual field is a smooth random field plus a plane and
noise, like the twin's long-wavelength error.

Paths timed on the same inputs, one after the other:

- ``reference``: ``select_and_fit(..., lean=False)``, every CV fold through scikit-learn's
  estimators (the code before issue 22);
- ``lean``: ``select_and_fit(...)``, the tree candidates' CV through
  :mod:`ncp_subsidence.models.trees` and the SVR's through :mod:`ncp_subsidence.models.svr`;
- ``tasks`` (with ``--workers N``): the lean CV as Dask tasks on a LocalCluster of N
  single-threaded processes, one per frame, candidate and repeat, as the stage runs it
  (``stages/_adjust_select.py``).

Each path must choose the same model per frame with the same CV table (to 1e-12 relative) and
the same fitted correction (exactly); the script fails otherwise. CPU seconds per candidate are
reported for the serial paths (the machine may be shared: wall times are noisy, CPU less so).

Usage::

    .venv/bin/python benchmarks/adjust.py                  # serial paths, 2 frames
    .venv/bin/python benchmarks/adjust.py --workers 2      # and the Dask tasks
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import sklearn

from ncp_subsidence.models import selection
from ncp_subsidence.models.selection import MODEL_ORDER, plan_selection, select_and_fit


def _frames(seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for n, half in ((58, 110.0), (47, 95.0)):
        x, y = rng.uniform(-half, half, n), rng.uniform(-half, half, n)
        d = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
        cov = 9.0 * np.exp(-0.5 * (d / 120.0) ** 2) + 1e-8 * np.eye(n)
        field = np.linalg.cholesky(cov) @ rng.normal(size=n)
        r = 1.5 + 4.0 * x / half - 2.0 * y / half + field + rng.normal(0.0, 0.8, n)
        out.append({"x": x, "y": y, "r": r, "sigma": rng.uniform(0.6, 1.4, n)})
    return out


class _CandidateClock:
    """CPU seconds per candidate, from the CV's squared-error function."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._inner = selection._cv_squared_errors

    def __enter__(self) -> _CandidateClock:
        def timed(model_id, *args, **kwargs):
            t0 = time.process_time()
            try:
                return self._inner(model_id, *args, **kwargs)
            finally:
                self.seconds[model_id] = self.seconds.get(model_id, 0.0) + (
                    time.process_time() - t0
                )

        selection._cv_squared_errors = timed
        return self

    def __exit__(self, *exc) -> None:
        selection._cv_squared_errors = self._inner


def _serial(frames: list[dict], lean: bool) -> tuple[list, float, float, dict[str, float]]:
    with _CandidateClock() as clock:
        w0, c0 = time.perf_counter(), time.process_time()
        fits = [
            select_and_fit(f["x"], f["y"], f["r"], f["sigma"], seed=0, lean=lean) for f in frames
        ]
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return fits, wall, cpu, clock.seconds


def _tasks(frames: list[dict], workers: int) -> tuple[list, float]:
    from distributed import Client, LocalCluster

    from ncp_subsidence.stages._adjust_select import FrameSelections, _ready_to_score

    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(_ready_to_score)  # workers up and warm (as the stage warms them) first
        t0 = time.perf_counter()
        selections = FrameSelections(client)
        for k, f in enumerate(frames):
            selections.submit(str(k), plan_selection(f["x"], f["y"], f["r"], f["sigma"], seed=0))
        fits = [selections.result(str(k)) for k in range(len(frames))]
        return fits, time.perf_counter() - t0


def _check_same(reference: list, other: list, label: str) -> float:
    """Largest relative CV difference; raises when a model, status or surface differs."""
    worst = 0.0
    gx, gy = np.meshgrid(np.linspace(-150, 150, 31), np.linspace(-150, 150, 31))
    for k, (a, b) in enumerate(zip(reference, other, strict=True)):
        if a.model_id != b.model_id or a.cv_scheme != b.cv_scheme:
            raise SystemExit(f"{label}: frame {k} chose {b.model_id}, the reference {a.model_id}")
        for m in MODEL_ORDER:
            ra, rb = a.cv_table[m], b.cv_table[m]
            if ra["status"] != rb["status"] or ra["notes"] != rb["notes"]:
                raise SystemExit(f"{label}: frame {k} candidate {m} status or notes differ")
            for key in ("cv_rmse", "se"):
                if ra[key] is not None:
                    rel = abs(ra[key] - rb[key]) / max(abs(ra[key]), 1e-300)
                    worst = max(worst, rel)
        if not np.array_equal(a.predict(gx, gy), b.predict(gx, gy)):
            raise SystemExit(f"{label}: frame {k} fitted corrections differ")
    if worst > 1e-12:
        raise SystemExit(f"{label}: CV values differ by {worst:.2e} relative (> 1e-12)")
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0, help="also time the Dask tasks")
    args = parser.parse_args()
    frames = _frames(args.seed)

    ref, ref_wall, ref_cpu, ref_per = _serial(frames, lean=False)
    lean, lean_wall, lean_cpu, lean_per = _serial(frames, lean=True)
    worst = _check_same(ref, lean, "lean")
    result = {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "scikit_learn": sklearn.__version__,
        "frames": [int(f["r"].size) for f in frames],
        "chosen": [f.model_id for f in ref],
        "cv_scheme": ref[0].cv_scheme,
        "reference_s": {"wall": round(ref_wall, 2), "cpu": round(ref_cpu, 2)},
        "lean_s": {"wall": round(lean_wall, 2), "cpu": round(lean_cpu, 2)},
        "cpu_speedup": round(ref_cpu / lean_cpu, 1),
        "cpu_s_per_candidate": {
            m: {"reference": round(ref_per.get(m, 0.0), 2), "lean": round(lean_per.get(m, 0.0), 2)}
            for m in MODEL_ORDER
        },
        "max_relative_cv_difference": worst,
    }
    if args.workers:
        tasks, tasks_wall = _tasks(frames, args.workers)
        result["tasks_s"] = {"wall": round(tasks_wall, 2), "workers": args.workers}
        result["max_relative_cv_difference_tasks"] = _check_same(ref, tasks, "tasks")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
