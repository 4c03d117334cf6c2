"""Peak memory and time of discover + ingest of a twin preset on a 2-worker LocalCluster.

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
import resource
import shutil
import time
from pathlib import Path


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


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
    with connect(ClusterOptions(n_workers=args.workers, memory_limit=args.memory_limit)) as client:
        t0 = time.perf_counter()
        run_pipeline(cfg, ["discover", "ingest"], client=client)
        seconds = time.perf_counter() - t0
        worker_peaks = client.run(_peak_rss_mb)
    store = ProductStore(cfg.store.url)
    written = sum(f.stat().st_size for f in Path(store.url).rglob("*") if f.is_file())
    result = {
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
        "seconds": round(seconds, 1),
        "worker_peak_rss_mb": {k.rsplit(":", 1)[-1]: round(v, 1) for k, v in worker_peaks.items()},
        "driver_peak_rss_mb": round(_peak_rss_mb(), 1),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
