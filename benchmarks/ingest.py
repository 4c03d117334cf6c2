"""Time and peak memory of discover + ingest of a twin preset on a 2-worker LocalCluster, and
the I/O limit of its interferograms measured in the same run.

(a) The pipeline: stages ``discover`` and ``ingest`` through :func:`run_pipeline` on a
LocalCluster (``--workers`` processes, 1 thread each). Reported: wall seconds of the two stages
(``seconds``), of the interferogram frames alone (``frames_seconds``: from the start of
``ingest`` to its last "ingested frame" log record; hydrology, factors and GNSS follow), and the
CPU seconds of the driver (client and scheduler) and of the workers.

(b) The I/O limit, in the same run, after (a): every interferogram asset the discovery found
(phase and coherence of each pair, from the discover product's items and each frame's adapter)
read whole with rasterio, one file after the other in this process, and the same arrays
written to a Zarr v3 store (one ``(pair, y, x)`` float32 array per frame and asset, one chunk
per pair, Zarr's default codecs, as the ingest writes them). Its CPU seconds divided by the
number of workers is the wall time a perfectly parallel ingest would need (``limit_seconds``).

Ratios: ``ratio`` = ingest (discover + ingest stages) wall / limit; ``frames_ratio`` = the
frames' wall / limit. Throughput ``mb_per_s`` = COG bytes of those assets (the files' sizes,
zip members' sizes for HyP3 zips) / seconds.

Memory must stay bounded by the chunk size, not the scene size: run two presets whose scenes
differ by at least 4x and compare the peak resident memory of the workers.

    python -m ncp_subsidence.cli twin --preset demo  --out benchmarks/_work/twin-demo
    python -m ncp_subsidence.cli twin --preset large --out benchmarks/_work/twin-large
    /usr/bin/time -v python benchmarks/ingest.py --twin benchmarks/_work/twin-demo  --store benchmarks/_work/store-demo
    /usr/bin/time -v python benchmarks/ingest.py --twin benchmarks/_work/twin-large --store benchmarks/_work/store-large

``/usr/bin/time -v`` reports the largest resident set of the driver or any worker process
("Maximum resident set size"); the script also prints each worker's own peak (``ru_maxrss``)
and the chunk size chosen, as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _FrameClock(logging.Handler):
    """Time of the last "ingested frame" record of the ingest stage."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.last: float | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("ingested frame"):
            self.last = time.perf_counter()


def _gdal_path_size(href: str) -> tuple[str, int]:
    """A path rasterio opens and the file's size in bytes (a zip member's stored size)."""
    path = href[len("file://") :] if href.startswith("file://") else href
    if path.startswith("/vsizip/"):
        rest = path[len("/vsizip/") :]
        archive, member = rest.split(".zip/", 1)
        with zipfile.ZipFile(archive + ".zip") as zf:
            return path, zf.getinfo(member).file_size
    return path, os.stat(path).st_size


def ifg_assets(store: Any) -> dict[str, list[list[tuple[str, int]]]]:
    """Per frame, per pair: ``(path, bytes)`` of the phase and coherence files discovered."""
    from ncp_subsidence.io.products import ifg_adapter
    from ncp_subsidence.sources import load_items, source_names

    out = {}
    for name in source_names(store):
        if not name.startswith("interferograms/"):
            continue
        pairs = []
        for item in load_items(store, name):
            adapter = ifg_adapter(str(item.properties.get("ncp:format", "cog")))
            keys = [adapter.phase_asset, adapter.coherence_asset]
            pairs.append(
                [
                    _gdal_path_size(item.assets[k].get_absolute_href() or item.assets[k].href)
                    for k in keys
                    if k and k in item.assets
                ]
            )
        out[name.split("/", 1)[1]] = pairs
    return out


def io_limit(assets: dict[str, list[list[tuple[str, int]]]], zarr_dir: Path) -> dict[str, float]:
    """Read every file whole with rasterio and write it to Zarr v3, one process; CPU and wall."""
    import numpy as np
    import rasterio
    import zarr

    shutil.rmtree(zarr_dir, ignore_errors=True)
    root = zarr.open_group(str(zarr_dir), mode="w", zarr_format=3)
    c0, t0 = _cpu_s(), time.perf_counter()
    n_bytes = 0
    with rasterio.Env():
        for frame, pairs in assets.items():
            for a in range(max(len(p) for p in pairs)):
                shapes = []
                for p in pairs:
                    with rasterio.open(p[a][0]) as src:
                        shapes.append(src.shape)
                ny, nx = (max(s[i] for s in shapes) for i in (0, 1))
                arr = root.create_array(
                    f"{frame}/{a}",
                    shape=(len(pairs), ny, nx),
                    chunks=(1, ny, nx),
                    dtype="float32",
                    fill_value=np.float32(np.nan),
                )
                for k, p in enumerate(pairs):
                    path, size = p[a]
                    with rasterio.open(path) as src:
                        data = src.read(1, out_dtype="float32")
                    arr[k, : data.shape[0], : data.shape[1]] = data
                    n_bytes += size
    return {"cpu_s": _cpu_s() - c0, "wall_s": time.perf_counter() - t0, "bytes": n_bytes}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--twin", required=True, help="twin directory (written by `ncp-subsidence twin`)"
    )
    parser.add_argument("--store", required=True, help="store directory (deleted first)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="6GiB")
    parser.add_argument("--json", help="write the result here too")
    parser.add_argument("--no-limit", action="store_true", help="skip the I/O limit")
    args = parser.parse_args()

    from ncp_subsidence.cluster import connect
    from ncp_subsidence.config import ClusterOptions, Config
    from ncp_subsidence.io.stores import ProductStore
    from ncp_subsidence.pipeline import run_pipeline
    from ncp_subsidence.stages.ingest import spatial_chunks
    from ncp_subsidence.synthetic import load_manifest

    manifest = load_manifest(args.twin)
    shutil.rmtree(args.store, ignore_errors=True)
    cfg = Config.model_validate(
        {
            "store": {"url": str(Path(args.store).resolve())},
            "sources": {
                "twin": {
                    "preset": manifest.preset,
                    "seed": manifest.seed,
                    "directory": str(Path(args.twin).resolve()),
                }
            },
            "factors": {"resolution_deg": manifest.fine_resolution_deg},
        }
    )
    frames = manifest.grids["frames"]
    pixels = sum(f["shape"][0] * f["shape"][1] for f in frames.values())
    pairs = sum(f["n_pairs"] for f in frames.values())
    chunk = spatial_chunks(max(f["n_pairs"] for f in frames.values()), cfg.ingest)
    clock = _FrameClock()
    stage_log = logging.getLogger("ncp_subsidence.stages.ingest")
    stage_log.addHandler(clock)
    stage_log.setLevel(logging.INFO)
    with connect(ClusterOptions(n_workers=args.workers, memory_limit=args.memory_limit)) as client:
        worker_cpu0 = client.run(_cpu_s)
        c0, t0 = _cpu_s(), time.perf_counter()
        run_pipeline(cfg, ["discover"], client=client)
        t_ingest = time.perf_counter()
        run_pipeline(cfg, ["ingest"], client=client)
        seconds = time.perf_counter() - t0
        driver_cpu = _cpu_s() - c0
        worker_cpu = sum(v - worker_cpu0[k] for k, v in client.run(_cpu_s).items())
        worker_peaks = client.run(_peak_rss_mb)
    frames_seconds = (clock.last - t_ingest) if clock.last is not None else None
    store = ProductStore(cfg.store.url)
    written = sum(f.stat().st_size for f in Path(store.url).rglob("*") if f.is_file())
    result: dict[str, Any] = {
        "preset": manifest.preset,
        "frames": len(frames),
        "pixels": pixels,
        "pairs": pairs,
        "pixel_pairs": int(
            sum(f["shape"][0] * f["shape"][1] * f["n_pairs"] for f in frames.values())
        ),
        "insar_bytes_in": manifest.sizes["insar_bytes"],
        "store_bytes_out": written,
        "chunk_yx": list(chunk),
        "chunk_mb": round(
            chunk[0] * chunk[1] * max(f["n_pairs"] for f in frames.values()) * 4 / 2**20, 1
        ),
        "seconds": round(seconds, 2),
        "frames_seconds": round(frames_seconds, 2) if frames_seconds is not None else None,
        "driver_cpu_s": round(driver_cpu, 2),
        "worker_cpu_s": round(worker_cpu, 2),
        "worker_peak_rss_mb": {k.rsplit(":", 1)[-1]: round(v, 1) for k, v in worker_peaks.items()},
        "driver_peak_rss_mb": round(_peak_rss_mb(), 1),
    }
    if not args.no_limit:
        assets = ifg_assets(store)
        limit = io_limit(assets, Path(args.store).with_name(Path(args.store).name + "-limit"))
        limit_s = limit["cpu_s"] / args.workers
        mb = limit["bytes"] / 1e6
        result.update(
            {
                "cog_files": sum(len(p) for v in assets.values() for p in v),
                "cog_mb": round(mb, 1),
                "limit_cpu_s": round(limit["cpu_s"], 2),
                "limit_wall_s": round(limit["wall_s"], 2),
                "limit_seconds": round(limit_s, 2),
                "ratio": round(seconds / limit_s, 2),
                "frames_ratio": (
                    round(frames_seconds / limit_s, 2) if frames_seconds is not None else None
                ),
                "mb_per_s": round(mb / seconds, 1),
                "frames_mb_per_s": round(mb / frames_seconds, 1) if frames_seconds else None,
                "limit_mb_per_s": round(mb / limit_s, 1),
            }
        )
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
