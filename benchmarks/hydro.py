"""Benchmark of the ``hydro`` stage on a synthetic whole plain at 0.01 deg.

The North China Plain at 0.01 deg (700 x 800 fine cells in 28 x 32 GRACE cells of 0.25 deg),
245 months (April 2002 - August 2022, with the GRACE/GRACE-FO gap as NaN): inputs are written to
a local Zarr store, then on a 2-worker LocalCluster (processes, one thread each) the stage reads
them, downscales GRACE (Eq. 6-9), forms GWSA (Eq. 10), reduces it to per-pixel trends (OLS +
HAC, Sen, Mann-Kendall/Hamed-Rao) and writes ``twsa``, ``gwsa`` and the trend maps to Zarr.

Reported: wall time, the peak resident memory of each worker (sampled every 0.25 s), and the
ratio to a pure read + write of the same bytes (the same input cubes read and the same output
cubes and maps written through dask, with no computation between), in wall time and in worker
CPU time (steadier on a shared machine). The trend kernels are compiled with numba
(``cache=True``): each worker calls them once before the timed runs, and that first call (a
cache load, or a compilation when the cache is cold) is reported apart, per worker.

Run::

    .venv/bin/python benchmarks/hydro.py            # whole plain
    .venv/bin/python benchmarks/hydro.py --small    # 1/16 of the plain, a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import threading
import time
import zlib
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import dask.array as da  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

WORK = Path(__file__).resolve().parent / "_work" / "hydro"
RATIO = 25
FINE = 0.01
COARSE = 0.25


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _cpu_seconds() -> float:
    import psutil

    times = psutil.Process().cpu_times()
    return times.user + times.system


class WorkerMemory:
    """Samples every worker's resident memory in a background thread; keeps the peaks."""

    def __init__(self, client, interval: float = 0.25) -> None:
        self.client = client
        self.interval = interval
        self.peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for addr, rss in self.client.run(_rss).items():
                    self.peak[addr] = max(self.peak.get(addr, 0), rss)
            except Exception:  # noqa: BLE001 - a missed sample is not fatal
                pass
            self._stop.wait(self.interval)

    def __enter__(self) -> WorkerMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _first_trend_call() -> float:
    """Seconds of a worker's first call of the trend kernels (numba cache load or compile)."""
    from ncp_subsidence.kernels import trends

    start = time.perf_counter()
    y = np.linspace(0.0, 1.0, 3 * 245).reshape(3, 245) ** 2
    t = 2002.29 + np.arange(245) / 12.0
    trends.trend_statistics(y, t, np.arange(245) % 12 + 1)
    return time.perf_counter() - start


def _block_field(block: np.ndarray, block_info=None, *, kind: str, n_time: int) -> np.ndarray:
    """A plausible synthetic storage on one (time, lat, lon) block, deterministic per block."""
    info = block_info[None]
    _, (y0, y1), (x0, x1) = info["array-location"]
    seed = zlib.crc32(f"{kind}:{y0}:{x0}".encode())
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    t = 2002.29 + np.arange(n_time) / 12.0
    season = np.cos(2 * np.pi * (t - 0.25))[:, None, None]
    spatial = np.sin(yy / 97.0) * np.cos(xx / 131.0)
    if kind == "soil_moisture":
        base = 400 + 80 * spatial
        out = base + 40 * season * (1 + 0.3 * spatial) - 1.5 * (t - 2012)[:, None, None]
    elif kind == "swe":
        out = np.maximum(0.0, 3 * season * (1 + spatial))
    else:  # canopy water
        out = 0.4 + 0.2 * season * (1 + 0.5 * spatial)
    out = out + rng.normal(size=out.shape) * (2.0 if kind == "soil_moisture" else 0.05)
    return out.astype(np.float32)


def make_inputs(store: Path, ny: int, nx: int, n_time: int, chunk: int) -> None:
    """Write the synthetic inputs (fine model storages, coarse GRACE, land mask) to Zarr."""
    times = (
        np.arange("2002-04", "2022-09", dtype="datetime64[M]")[:n_time].astype("datetime64[ns]")
        + np.timedelta64(14, "D")
        + np.timedelta64(12, "h")
    )
    lat = 42.0 - FINE * (np.arange(ny) + 0.5)  # north-up
    lon = 113.0 + FINE * (np.arange(nx) + 0.5)
    lat_c = 42.0 - COARSE * (np.arange(ny // RATIO) + 0.5)
    lon_c = 113.0 + COARSE * (np.arange(nx // RATIO) + 0.5)
    template = da.zeros((n_time, ny, nx), chunks=(n_time, chunk, chunk), dtype=np.float32)
    fine = {
        kind: template.map_blocks(_block_field, kind=kind, n_time=n_time, dtype=np.float32)
        for kind in ("soil_moisture", "swe", "canopy_water")
    }
    rng = np.random.default_rng(0)
    t = 2002.29 + np.arange(n_time) / 12.0
    grace = (
        -18.0 * (t - 2012)[:, None, None]
        + 60 * np.cos(2 * np.pi * (t - 0.3))[:, None, None]
        + 20 * np.sin(lat_c / 0.9)[None, :, None] * np.cos(lon_c / 1.3)[None, None, :]
        + rng.normal(size=(n_time, lat_c.size, lon_c.size)) * 10
    )
    months = times.astype("datetime64[M]")
    gap = (months >= np.datetime64("2017-07")) & (months <= np.datetime64("2018-05"))
    grace[gap] = np.nan
    yy, xx = np.mgrid[0:ny, 0:nx]
    land = ~((xx > 0.8 * nx) & (yy > 0.45 * ny) & (yy < 0.7 * ny))  # a Bohai-like bay
    coords = {"time": times, "lat": lat, "lon": lon}
    ds = xr.Dataset(
        {k: (("time", "lat", "lon"), v, {"units": "mm"}) for k, v in fine.items()}, coords=coords
    )
    ds["land"] = (("lat", "lon"), da.from_array(land, chunks=chunk))
    ds.to_zarr(store / "inputs.zarr", group="model", mode="w", zarr_format=3, consolidated=False)
    g = xr.Dataset(
        {"twsa": (("time", "lat", "lon"), grace.astype(np.float32), {"units": "mm"})},
        coords={"time": times, "lat": lat_c, "lon": lon_c},
    )
    g.to_zarr(store / "inputs.zarr", group="grace", mode="w", zarr_format=3, consolidated=False)


def run_stage(store: Path, chunk: int) -> xr.Dataset:
    """Build the hydro graph: read, downscale, GWSA, trends; returns the dataset to write."""
    from ncp_subsidence.stages import hydro

    model = xr.open_zarr(store / "inputs.zarr", group="model", consolidated=False)
    grace = xr.open_zarr(store / "inputs.zarr", group="grace", consolidated=False)
    total = (model.soil_moisture + model.swe + model.canopy_water).astype(np.float32)
    twsa = hydro.downscale_twsa(
        grace.twsa, total, mode="paper", interpolation="cubic", land_mask=model.land,
        chunk_cells=chunk,
    )  # fmt: skip
    balance = hydro.gwsa_water_balance(twsa, model.soil_moisture, model.swe, model.canopy_water)
    trends = hydro.trend_dataset(balance.gwsa)
    out = xr.Dataset({"twsa": twsa.drop_vars("filled_flag"), "gwsa": balance.gwsa})
    return out.merge(trends)


def run_copy(store: Path) -> xr.Dataset:
    """The same bytes read and written, with no computation between."""
    model = xr.open_zarr(store / "inputs.zarr", group="model", consolidated=False)
    grace = xr.open_zarr(store / "inputs.zarr", group="grace", consolidated=False)
    out = xr.Dataset(
        {
            "twsa": model.soil_moisture,
            # adding the third cube makes sure it is read too (a negligible elementwise op)
            "gwsa": model.swe + model.canopy_water,
        }
    )
    first = model.soil_moisture.isel(time=0, drop=True)
    for name in ("gwsa_trend", "gwsa_trend_stderr", "sen_slope", "mk_z", "mk_p"):
        out[name] = first
    for name in ("annual_amplitude", "annual_phase", "mk_s", "n_valid"):
        out[name] = first + grace.twsa.isel(time=0).mean()
    return out


def timed_write(client, ds: xr.Dataset, path: Path) -> tuple[float, dict[str, int], float]:
    """Write ``ds`` to Zarr; wall seconds, peak RSS per worker, CPU seconds of all workers."""
    shutil.rmtree(path, ignore_errors=True)
    cpu_before = client.run(_cpu_seconds)
    with WorkerMemory(client) as memory:
        start = time.perf_counter()
        ds.to_zarr(path, mode="w", zarr_format=3, consolidated=False)
        wall = time.perf_counter() - start
    cpu_after = client.run(_cpu_seconds)
    cpu = sum(cpu_after[k] - cpu_before[k] for k in cpu_after)
    return wall, memory.peak, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="175 x 200 cells instead of 700 x 800")
    parser.add_argument("--chunk", type=int, default=250, help="spatial chunk, fine cells")
    parser.add_argument("--memory-limit", default="6GiB", help="per-worker memory limit")
    parser.add_argument("--keep", action="store_true", help="keep the Zarr stores")
    args = parser.parse_args()
    ny, nx, n_time = (175, 200, 245) if args.small else (700, 800, 245)

    from distributed import Client, LocalCluster

    WORK.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address="127.0.0.1:0", memory_limit=args.memory_limit,
        ) as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        t0 = time.perf_counter()
        make_inputs(WORK, ny, nx, n_time, args.chunk)
        t_make = time.perf_counter() - t0
        in_bytes = sum(f.stat().st_size for f in (WORK / "inputs.zarr").rglob("*") if f.is_file())

        t0 = time.perf_counter()
        stage = run_stage(WORK, args.chunk)
        t_graph = time.perf_counter() - t0
        n_tasks = len(stage.__dask_graph__())
        first_call = client.run(_first_trend_call)
        wall_copy_1, mem_copy, cpu_copy = timed_write(client, run_copy(WORK), WORK / "copy.zarr")
        wall_stage, mem_stage, cpu_stage = timed_write(client, stage, WORK / "hydro.zarr")
        wall_copy_2, _, _ = timed_write(client, run_copy(WORK), WORK / "copy.zarr")
        out_bytes = sum(f.stat().st_size for f in (WORK / "hydro.zarr").rglob("*") if f.is_file())
        check = xr.open_zarr(WORK / "hydro.zarr", consolidated=False)
        trend = check.gwsa_trend.values
        mean_trend = float(np.nanmean(trend))
        finite = float(np.isfinite(trend).mean())
    wall_copy = min(wall_copy_1, wall_copy_2)
    result = {
        "grid": [n_time, ny, nx],
        "chunk": args.chunk,
        "make_inputs_s": round(t_make, 1),
        "graph_build_s": round(t_graph, 2),
        "n_tasks": n_tasks,
        "stage_wall_s": round(wall_stage, 1),
        "stage_worker_cpu_s": round(cpu_stage, 1),
        "copy_worker_cpu_s": round(cpu_copy, 1),
        "copy_wall_s": [round(wall_copy_1, 1), round(wall_copy_2, 1)],
        "ratio_to_copy": round(wall_stage / wall_copy, 1),
        "cpu_ratio_to_copy": round(cpu_stage / cpu_copy, 1),
        "trend_kernel_first_call_s": sorted(round(v, 2) for v in first_call.values()),
        "peak_rss_per_worker_GiB": {k: round(v / 2**30, 2) for k, v in mem_stage.items()},
        "peak_rss_per_worker_copy_GiB": {k: round(v / 2**30, 2) for k, v in mem_copy.items()},
        "input_MB_on_disk": round(in_bytes / 1e6),
        "output_MB_on_disk": round(out_bytes / 1e6),
        "mean_gwsa_trend_mm_per_yr": round(mean_trend, 2),
        "finite_trend_fraction": round(finite, 3),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(result, indent=2))
    (WORK / ("result_small.json" if args.small else "result.json")).write_text(
        json.dumps(result, indent=2)
    )
    if not args.keep:
        for name in ("inputs.zarr", "hydro.zarr", "copy.zarr"):
            shutil.rmtree(WORK / name, ignore_errors=True)


if __name__ == "__main__":
    main()
