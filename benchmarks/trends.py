"""CPU time of the per-pixel trend kernel (``kernels.trends.trend_statistics``) on one chunk of
the hydro stage's size, and, with ``--against``, side by side with another version of the
kernel module, checking that both give the same bits.

The chunk: 250 x 250 pixels x 245 months (2002-04 ..), GWSA-like series (a trend of about
-16.5 mm/yr varying in space, an annual cycle of 50-70 mm, noise smooth over 25-pixel
"GRACE cells" plus pixel noise), rounded to float32 as the stage stores them, the
GRACE/GRACE-FO gap (2017-07 .. 2018-05) as NaN and a bay of all-NaN pixels. The adversarial
rows: all NaN, flat, alternating (tied slopes), a line, slopes equal to the last bits, heavy
ties, 23 and 30 valid months, random gaps, outliers, Cauchy noise, a step, +-inf values,
1e300 and 1e-300 magnitudes.

    python benchmarks/trends.py
    git show e4c2b5c:ncp_subsidence/kernels/trends.py > /tmp/trends_old.py
    python benchmarks/trends.py --against /tmp/trends_old.py

Times are ``time.process_time`` of one process (numba's kernels run on one thread), best of
``--reps``. With ``--against``, the two modules' outputs are compared with
``np.array_equal(..., equal_nan=True)``, on the chunk and on the adversarial rows; the exit
status is 1 if they differ. Each module is called once before timing (numba cache load or
compilation).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from typing import Any

import numpy as np

from ncp_subsidence.kernels import trends as current


def make_chunk(ny: int = 250, nx: int = 250, n: int = 245, seed: int = 0) -> tuple:
    """``(y, t, month)``: y ``(ny, nx, n)`` float64 (float32 values), t decimal years."""
    rng = np.random.default_rng(seed)
    t = 2002.29 + np.arange(n) / 12.0
    month = (np.arange(n) + 3) % 12 + 1
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    spatial = np.sin(yy / 97.0) * np.cos(xx / 131.0)
    trend = -16.5 + 4 * spatial + rng.normal(size=(ny, nx)) * 0.5
    amplitude = 60 + 10 * spatial
    coarse = rng.normal(size=(n, ny // 25 + 2, nx // 25 + 2)) * 10
    cy = np.minimum((yy / 25).astype(int), coarse.shape[1] - 1)
    cx = np.minimum((xx / 25).astype(int), coarse.shape[2] - 1)
    y = (
        trend[..., None] * (t - 2012)
        + amplitude[..., None] * np.cos(2 * np.pi * (t - 0.3))
        + coarse[:, cy, cx].transpose(1, 2, 0)
        + rng.normal(size=(ny, nx, n)) * 2.0
        - 400
        - 80 * spatial[..., None]
    )
    y = y.astype(np.float32).astype(np.float64)
    y[:, :, 183:194] = np.nan  # 2017-07 .. 2018-05
    y[int(0.45 * ny) : int(0.7 * ny), int(0.8 * nx) :] = np.nan  # a bay
    return np.ascontiguousarray(y), t, month


def adversarial_rows(n: int = 245, seed: int = 5) -> np.ndarray:
    """Rows that take the kernels' rare paths (see the module docstring), ``(rows, n)``."""
    rng = np.random.default_rng(seed)
    t = 2002.29 + np.arange(n) / 12.0
    base = -15 * (t - 2012) + 40 * np.cos(2 * np.pi * t)

    def noisy(scale: float) -> np.ndarray:
        return base + rng.normal(size=n) * scale

    rows = [
        np.full(n, np.nan),
        np.full(n, 5.0),
        np.where(np.arange(n) % 2, 1.0, 2.0),
        -3.0 * t,
        3.0 * t + rng.normal(size=n) * 6e-9,
        1e6 + 3.0 * t + rng.normal(size=n) * 1e-9,
        np.round(noisy(3)),
        np.round(base / 50 + rng.normal(size=n)),
        np.where(np.arange(n) >= n - 30, noisy(10), np.nan),
        np.where(np.arange(n) >= n - 23, noisy(10), np.nan),
        np.where(rng.random(n) < 0.5, np.nan, noisy(10)),
        noisy(10) + np.where(np.arange(n) < 5, 5000.0, 0.0),
        base + rng.standard_cauchy(size=n) * 10,
        noisy(10) + np.where(np.arange(n) >= 100, 300.0, 0.0),
        rng.normal(size=n),
        np.cumsum(rng.normal(size=n)),
        np.where(np.arange(n) == 50, np.inf, np.where(np.arange(n) == 60, -np.inf, noisy(1))),
        1e300 * rng.normal(size=n),
        1e-300 * rng.normal(size=n) + 1e-301 * np.arange(n),
        noisy(10).astype(np.float32).astype(np.float64),
        np.where(np.arange(n) >= 120, 1.0, 0.0),
        np.sin(np.arange(n) * 0.5) * 1e-3 + 7 * t,
    ]
    return np.stack(rows)


def load_module(path: str) -> Any:
    """Import a copy of ``trends.py`` from ``path`` as a module of its own."""
    spec = importlib.util.spec_from_file_location("trends_against", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def best_cpu(f: Any, reps: int) -> float:
    out = []
    for _ in range(reps):
        start = time.process_time()
        f()
        out.append(time.process_time() - start)
    return min(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--against", help="another version's trends.py, timed and compared")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()

    y, t, month = make_chunk()
    rows = np.concatenate([adversarial_rows(seed=s) for s in range(4)])
    n_series = int((np.isfinite(y).sum(-1) >= 24).sum())
    modules = {"current": current}
    if args.against:
        modules["against"] = load_module(args.against)
    result: dict[str, Any] = {"chunk": list(y.shape), "series_with_24_months": n_series}
    outputs = {}
    for label, module in modules.items():
        module.trend_statistics(y[:2, :2], t, month)  # numba: cache load or compilation
        outputs[label] = (
            module.trend_statistics(y, t, month),
            module.trend_statistics(rows, t, month),
        )
        cpu = best_cpu(lambda m=module: m.trend_statistics(y, t, month), args.reps)
        result[f"{label}_cpu_s"] = round(cpu, 3)
        result[f"{label}_us_per_series"] = round(cpu / n_series * 1e6, 1)
    same = True
    if args.against:
        (a_chunk, a_rows), (b_chunk, b_rows) = outputs["current"], outputs["against"]
        same = np.array_equal(a_chunk, b_chunk, equal_nan=True) and np.array_equal(
            a_rows, b_rows, equal_nan=True
        )
        result["identical"] = bool(same)
        result["speedup"] = round(result["against_cpu_s"] / result["current_cpu_s"], 2)
    print(json.dumps(result, indent=1))
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
