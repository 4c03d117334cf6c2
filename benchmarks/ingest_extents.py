"""Peak memory of ingesting HyP3-like pairs on differing extents onto one frame grid.

Each pair is a UTM (EPSG:32650, 40 m) tiled GeoTIFF pair (``unw_phase`` float32, ``corr``
float32, no-data 0, 256 x 256 tiles) on its own extent: the scene shifted by whole pixels and
trimmed (up to ``--jitter``, default a sixteenth of the side), as HyP3 delivers them. For two scene sizes 4x apart
(in pixels) at the same spatial chunk, one fresh process runs
:func:`ncp_subsidence.io.readers.read_ifg_stack` (union frame grid, windowed reads) and writes
the cube to Zarr v3 with Dask's threaded scheduler; it reports its peak resident memory
(``ru_maxrss``) and the same after imports (the baseline). Memory must follow the chunk, not
the scene.

    python benchmarks/ingest_extents.py --work benchmarks/_work/extents

Prints one JSON line per scene and a summary.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

EPSG = 32650
PIXEL = 40.0
WEST, NORTH = 400_000.0, 4_300_000.0


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def write_scene(root: Path, side: int, n_pair: int, jitter: int, seed: int = 0) -> list[dict]:
    """``n_pair`` pairs of GeoTIFFs around a ``side`` x ``side`` scene; their STAC item dicts."""
    import datetime as dt

    import numpy as np
    import pystac
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.warp import transform_bounds

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    items = []
    t0 = dt.datetime(2019, 1, 1, 10, 30, tzinfo=dt.UTC)
    for k in range(n_pair):
        dx, dy = (int(v) for v in rng.integers(-jitter, jitter + 1, 2))
        trim = rng.integers(0, jitter + 1, 2)
        ny, nx = side - int(trim[0]), side - int(trim[1])
        west, north = WEST + dx * PIXEL, NORTH - dy * PIXEL
        profile = {
            "driver": "GTiff",
            "height": ny,
            "width": nx,
            "count": 1,
            "dtype": "float32",
            "crs": f"EPSG:{EPSG}",
            "transform": from_origin(west, north, PIXEL, PIXEL),
            "nodata": 0,
            "tiled": True,
            "blockxsize": 256,
            "blockysize": 256,
        }
        phase = rng.normal(0.0, 3.0, (ny, nx)).astype("float32")
        coherence = rng.uniform(0.05, 1.0, (ny, nx)).astype("float32")
        hrefs = {}
        for key, data in (("unw_phase", phase), ("corr", coherence)):
            path = root / f"pair{k:03d}_{key}.tif"
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(data, 1)
            hrefs[key] = str(path)
        bbox = [west, north - ny * PIXEL, west + nx * PIXEL, north]
        w, s, e, n = transform_bounds(f"EPSG:{EPSG}", "EPSG:4326", *bbox)
        start = t0 + dt.timedelta(days=12 * (k // 2))
        item = pystac.Item(
            f"S1_{k:03d}",
            {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
            [w, s, e, n],
            start,
            {
                "start_datetime": start.isoformat(),
                "end_datetime": (start + dt.timedelta(days=12 * (1 + k % 2))).isoformat(),
                "ncp:format": "cog",
                "proj:code": f"EPSG:{EPSG}",
                "proj:shape": [ny, nx],
                "proj:transform": [PIXEL, 0.0, west, 0.0, -PIXEL, north],
                "proj:bbox": bbox,
            },
        )
        for key, href in hrefs.items():
            item.add_asset(key, pystac.Asset(href, roles=["data"]))
        items.append(item.to_dict())
    return items


def run_one(items_path: str, store: str, chunk: int, threads: int) -> dict:
    """In this (fresh) process: read the pairs onto the union grid and write Zarr."""
    import dask
    import dask.array  # imported before the baseline, as the rest
    import pystac
    import rasterio  # noqa: F401
    import stackstac  # noqa: F401
    import zarr  # noqa: F401

    from ncp_subsidence.io.readers import read_ifg_stack

    items = [pystac.Item.from_dict(d) for d in json.loads(Path(items_path).read_text())]
    baseline = _rss_mib()
    start = time.perf_counter()
    ds, _ = read_ifg_stack(items, chunks=(chunk, chunk))
    with dask.config.set(scheduler="threads", num_workers=threads):
        ds.to_zarr(store, mode="w", zarr_format=3, consolidated=False)
    wall = time.perf_counter() - start
    n_pair, ny, nx = ds["unw_phase"].shape
    return {
        "pairs": n_pair,
        "grid": [ny, nx],
        "cube_mib": round(2 * n_pair * ny * nx * 4 / 2**20, 1),
        "chunk": [n_pair, chunk, chunk],
        "chunk_mib": round(n_pair * chunk * chunk * 4 / 2**20, 1),
        "baseline_rss_mib": round(baseline, 1),
        "peak_rss_mib": round(_rss_mib(), 1),
        "wall_s": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", default="benchmarks/_work/extents", help="scratch directory")
    parser.add_argument("--sides", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument(
        "--jitter", type=int, default=None, help="largest shift/trim, pixels (default side/16)"
    )
    parser.add_argument("--chunk", type=int, default=256, help="spatial chunk side, pixels")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--run", nargs=2, metavar=("ITEMS", "STORE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(run_one(args.run[0], args.run[1], args.chunk, args.threads)))
        return
    work = Path(args.work)
    results = []
    for side in args.sides:
        scene = work / f"scene{side}"
        shutil.rmtree(scene, ignore_errors=True)
        jitter = args.jitter if args.jitter is not None else side // 16
        items = write_scene(scene / "tif", side, args.pairs, jitter)
        items_path = scene / "items.json"
        items_path.write_text(json.dumps(items))
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--chunk",
                str(args.chunk),
                "--threads",
                str(args.threads),
                "--run",
                str(items_path),
                str(scene / "store.zarr"),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        result = {"side": side, **json.loads(out.stdout.strip().splitlines()[-1])}
        print(json.dumps(result), flush=True)
        results.append(result)
        shutil.rmtree(scene, ignore_errors=True)
    if len(results) >= 2:
        small, large = results[0], results[-1]
        pixels = (large["grid"][0] * large["grid"][1]) / (small["grid"][0] * small["grid"][1])
        grow = (large["peak_rss_mib"] - large["baseline_rss_mib"]) / max(
            small["peak_rss_mib"] - small["baseline_rss_mib"], 1e-9
        )
        print(
            json.dumps({"scene_pixels_ratio": round(pixels, 2), "work_rss_ratio": round(grow, 2)})
        )


if __name__ == "__main__":
    main()
