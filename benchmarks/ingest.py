"""Time and peak memory of discover + ingest of a twin preset on a 2-worker LocalCluster, and
the I/O limit of its interferograms measured in the same run.

(a) The pipeline: stages ``discover`` and ``ingest`` through :func:`run_pipeline` on a
LocalCluster (``--workers`` processes, 1 thread each). Reported: wall seconds of the two stages
(``seconds``), of the interferogram frames alone (``frames_seconds``: from the start of
``ingest`` to its last "ingested frame" log record; hydrology, factors and GNSS follow), and the
CPU seconds of the driver (client and scheduler) and of the workers, and the MB the workers
sent each other (``between_workers_mb``: task results read on one worker and needed on another).

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

``--s3``: the interferograms read from S3. A moto S3 server is started on a free 127.0.0.1
port (a subprocess, as the tests' ``moto_server`` fixture) and stopped at the end; before the
cluster starts, the environment gets the credentials (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``) and the endpoint, for s3fs/botocore
(``AWS_ENDPOINT_URL``) and GDAL (``AWS_S3_ENDPOINT``, ``AWS_HTTPS=NO``,
``AWS_VIRTUAL_HOSTING=FALSE``), which the workers inherit. Each frame's static catalog
(``catalogs/<frame>/``) and the files its items name (``licsar/...``, ``hyp3/*.zip``) are
uploaded to ``s3://ncp-bench/`` under the twin's own keys (``upload_seconds``); the HyP3
catalogs' absolute ``/vsizip//<twin>/hyp3/P.zip/...`` hrefs become
``/vsizip//vsis3/ncp-bench/hyp3/P.zip/...``. The config is the local run's, except
``sources.interferograms``: one ``static_catalog`` source per frame at
``s3://ncp-bench/catalogs/<frame>/catalog.json`` (the frame's collection and format), the twin
filling the other inputs (``fill_unset``; hydrology, GNSS and factors stay local). (a) is timed
as above; (b) reads the same files from the same server (``/vsis3/``, ``/vsizip//vsis3/``), so
it is latency-bound: ``limit_wall_s`` and ``limit_wall_mb_per_s`` (from wall) are the figures
to compare with ``seconds``, besides the CPU-based ``limit_seconds``. ``cubes_equal_local``:
each frame's ingested ``unw_phase`` and ``coherence`` equal (NaN included) those of a local
run's store, ``--compare-store`` (default ``<store>-local``; when it holds no ingest, a local
discover + ingest is written there on the same cluster after the timed run,
``local_seconds``).

    python benchmarks/ingest.py --twin benchmarks/_work/twin-demo --store benchmarks/_work/store-demo-local
    python benchmarks/ingest.py --twin benchmarks/_work/twin-demo --store benchmarks/_work/store-demo --s3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import resource
import shutil
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _sent_mb(dask_worker: Any) -> float:
    """MB this worker sent to other workers (task results another worker needed)."""
    return dask_worker.transfer_outgoing_bytes_total / 1e6


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
    """A path rasterio opens and the file's size in bytes (a zip member's stored size).

    Local paths, ``file://``, ``s3://`` (opened as ``/vsis3/``), ``/vsis3/`` and ``/vsizip/``
    of a local or ``/vsis3/`` zip; S3 sizes are asked of the endpoint in the environment.
    """
    path = href[len("file://") :] if href.startswith("file://") else href
    if path.startswith("s3://"):
        path = "/vsis3/" + path[len("s3://") :]
    if path.startswith("/vsizip/"):
        rest = path[len("/vsizip/") :]
        archive, member = rest.split(".zip/", 1)
        if archive.startswith("/vsis3/"):
            with _s3fs().open("s3://" + archive[len("/vsis3/") :] + ".zip", "rb") as f:
                with zipfile.ZipFile(f) as zf:  # reads the central directory only
                    return path, zf.getinfo(member).file_size
        with zipfile.ZipFile(archive + ".zip") as zf:
            return path, zf.getinfo(member).file_size
    if path.startswith("/vsis3/"):
        return path, int(_s3fs().size("s3://" + path[len("/vsis3/") :]))
    return path, os.stat(path).st_size


_S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing-key-id",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _s3fs() -> Any:
    """An s3fs filesystem on the endpoint ``AWS_ENDPOINT_URL`` (given explicitly, not by env)."""
    import s3fs

    return s3fs.S3FileSystem(client_kwargs={"endpoint_url": os.environ["AWS_ENDPOINT_URL"]})


@contextlib.contextmanager
def s3_environment() -> Iterator[str]:
    """A moto S3 server (:func:`ncp_subsidence.testing.servers.moto_server`); yields its URL.

    Sets the environment every reader of the run takes its endpoint and credentials from,
    before any worker starts (they inherit it): ``AWS_ENDPOINT_URL`` (botocore, hence s3fs),
    ``AWS_S3_ENDPOINT``, ``AWS_HTTPS``, ``AWS_VIRTUAL_HOSTING`` (GDAL's /vsis3/).
    """
    from ncp_subsidence.testing.servers import moto_server

    with moto_server() as url:
        os.environ.update(_S3_ENV)
        os.environ.update(
            {
                "AWS_ENDPOINT_URL": url,
                "AWS_S3_ENDPOINT": url.removeprefix("http://"),
                "AWS_HTTPS": "NO",
                "AWS_VIRTUAL_HOSTING": "FALSE",
            }
        )
        yield url


def upload_interferograms(twin: Path, bucket: str, frames: dict[str, dict]) -> dict[str, str]:
    """Copy each frame's static catalog and the files its items name to ``s3://bucket/``.

    Keys mirror the twin (``catalogs/<frame>/...``, ``licsar/...``, ``hyp3/...``). Relative
    hrefs stay relative; absolute ones under the twin (the HyP3 catalogs' ``/vsizip//twin/...``)
    are rewritten to the bucket (``/vsizip//vsis3/bucket/...``, ``s3://bucket/...``). Returns
    the S3 URL of each frame's root catalog.
    """
    fs = _s3fs()
    fs.mkdir(bucket)
    root = twin.resolve()
    docs: dict[str, bytes] = {}
    files: dict[str, str] = {}  # key -> local path

    def key_of(local: Path) -> str:
        return local.resolve().relative_to(root).as_posix()

    def rewrite(href: str, base: Path) -> str:
        if href.startswith("/vsizip/"):
            archive, member = href[len("/vsizip/") :].split(".zip/", 1)
            key = key_of(Path(archive + ".zip"))
            files[key] = archive + ".zip"
            return f"/vsizip//vsis3/{bucket}/{key}/{member}"
        if "://" in href:
            return href
        local = Path(href) if href.startswith("/") else base / href
        if local.suffix == ".json":
            return f"s3://{bucket}/{key_of(local)}" if href.startswith("/") else href
        if local.is_file():
            files[key_of(local)] = str(local.resolve())
        return f"s3://{bucket}/{key_of(local)}" if href.startswith("/") else href

    out = {}
    for frame, spec in frames.items():
        catalog = root / spec["catalog"]
        for doc in catalog.parent.rglob("*.json"):
            data = json.loads(doc.read_text())
            for asset in data.get("assets", {}).values():
                asset["href"] = rewrite(asset["href"], doc.parent)
            for link in data.get("links", []):
                link["href"] = rewrite(link["href"], doc.parent)
            docs[f"{bucket}/{key_of(doc)}"] = json.dumps(data).encode()
        out[frame] = f"s3://{bucket}/{key_of(catalog)}"
    fs.pipe(docs)
    keys = sorted(files)
    fs.put([files[k] for k in keys], [f"{bucket}/{k}" for k in keys])
    return out


def compare_cubes(store: Any, reference: Any, frames: list[str]) -> bool:
    """True when each frame's ingested unw_phase and coherence equal the reference's (NaN too)."""
    import numpy as np

    for frame in frames:
        a, b = store.open("ingest", f"ifg/{frame}"), reference.open("ingest", f"ifg/{frame}")
        for var in ("unw_phase", "coherence"):
            x, y = a[var].values, b[var].values
            if x.shape != y.shape or not np.array_equal(x, y, equal_nan=True):
                return False
    return True


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


def io_limit(
    assets: dict[str, list[list[tuple[str, int]]]], zarr_dir: Path, **gdal_env: str
) -> dict[str, float]:
    """Read every file whole with rasterio and write it to Zarr v3, one process; CPU and wall."""
    import numpy as np
    import rasterio
    import zarr

    shutil.rmtree(zarr_dir, ignore_errors=True)
    root = zarr.open_group(str(zarr_dir), mode="w", zarr_format=3)
    c0, t0 = _cpu_s(), time.perf_counter()
    n_bytes = 0
    with rasterio.Env(**gdal_env):
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


def _config(args: argparse.Namespace, manifest: Any, store: str, ifgs: dict | None = None) -> Any:
    """The run's Config: the twin for every input, or ``ifgs`` for the interferograms."""
    from ncp_subsidence.config import Config

    twin = {
        "preset": manifest.preset,
        "seed": manifest.seed,
        "directory": str(Path(args.twin).resolve()),
    }
    sources: dict[str, Any] = {"twin": twin}
    if ifgs:
        sources = {"twin": {**twin, "fill_unset": True}, "interferograms": ifgs}
    return Config.model_validate(
        {
            "store": {"url": str(Path(store).resolve())},
            "sources": sources,
            "factors": {"resolution_deg": manifest.fine_resolution_deg},
        }
    )


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
    parser.add_argument(
        "--s3",
        action="store_true",
        help="read the interferogram catalogs and files from a local moto S3 server",
    )
    parser.add_argument(
        "--compare-store",
        help="--s3: a local run's store to compare the ingested cubes with (default "
        "<store>-local; written on the same cluster, after the timed run, when it holds no ingest)",
    )
    args = parser.parse_args()

    from ncp_subsidence.cluster import connect
    from ncp_subsidence.config import ClusterOptions
    from ncp_subsidence.io.stores import ProductStore
    from ncp_subsidence.pipeline import run_pipeline
    from ncp_subsidence.synthetic import load_manifest

    manifest = load_manifest(args.twin)
    shutil.rmtree(args.store, ignore_errors=True)
    frames = manifest.grids["frames"]
    pixels = sum(f["shape"][0] * f["shape"][1] for f in frames.values())
    pairs = sum(f["n_pairs"] for f in frames.values())
    clock = _FrameClock()
    stage_log = logging.getLogger("ncp_subsidence.stages.ingest")
    stage_log.addHandler(clock)
    stage_log.setLevel(logging.INFO)
    result: dict[str, Any] = {"preset": manifest.preset}
    with contextlib.ExitStack() as stack:
        ifgs = None
        if args.s3:  # before the cluster: its workers inherit the S3 environment
            result["s3_endpoint"] = stack.enter_context(s3_environment())
            t_up = time.perf_counter()
            urls = upload_interferograms(Path(args.twin), "ncp-bench", manifest.frame_sources)
            result["upload_seconds"] = round(time.perf_counter() - t_up, 2)
            ifgs = {
                frame: {
                    "kind": "static_catalog",
                    "url": url,
                    "collections": [manifest.frame_collections[frame]],
                    "format": manifest.frame_sources[frame]["format"],
                }
                for frame, url in urls.items()
            }
        cfg = _config(args, manifest, args.store, ifgs)
        options = ClusterOptions(n_workers=args.workers, memory_limit=args.memory_limit)
        with connect(options) as client:
            worker_cpu0 = client.run(_cpu_s)
            sent0 = client.run(_sent_mb)
            c0, t0 = _cpu_s(), time.perf_counter()
            run_pipeline(cfg, ["discover"], client=client)
            t_ingest = time.perf_counter()
            run_pipeline(cfg, ["ingest"], client=client)
            seconds = time.perf_counter() - t0
            driver_cpu = _cpu_s() - c0
            worker_cpu = sum(v - worker_cpu0[k] for k, v in client.run(_cpu_s).items())
            worker_peaks = client.run(_peak_rss_mb)
            sent = sum(v - sent0[k] for k, v in client.run(_sent_mb).items())
            frames_seconds = (clock.last - t_ingest) if clock.last is not None else None
            reference = None
            if args.s3:  # a local run of the same inputs, to compare the cubes with
                ref_dir = args.compare_store or args.store + "-local"
                reference = ProductStore(str(Path(ref_dir).resolve()), must_exist=False)
                if reference.record("ingest") is None:
                    shutil.rmtree(ref_dir, ignore_errors=True)
                    ref_cfg = _config(args, manifest, ref_dir)
                    t_ref = time.perf_counter()
                    run_pipeline(ref_cfg, ["discover", "ingest"], client=client)
                    result["local_seconds"] = round(time.perf_counter() - t_ref, 2)
                    reference = ProductStore(ref_cfg.store.url)
        store = ProductStore(cfg.store.url)
        # the chunk the ingest wrote (sized to ingest.chunk_mb, in whole tiles of the files)
        widest = max(frames, key=lambda f: frames[f]["n_pairs"])
        chunk = store.open("ingest", f"ifg/{widest}")["unw_phase"].encoding["chunks"][1:]
        written = sum(f.stat().st_size for f in Path(store.url).rglob("*") if f.is_file())
        result.update(
            {
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
                    chunk[0] * chunk[1] * max(f["n_pairs"] for f in frames.values()) * 4 / 2**20,
                    1,
                ),
                "seconds": round(seconds, 2),
                "frames_seconds": round(frames_seconds, 2) if frames_seconds is not None else None,
                "driver_cpu_s": round(driver_cpu, 2),
                "worker_cpu_s": round(worker_cpu, 2),
                "between_workers_mb": round(sent, 1),
                "worker_peak_rss_mb": {
                    k.rsplit(":", 1)[-1]: round(v, 1) for k, v in worker_peaks.items()
                },
                "driver_peak_rss_mb": round(_peak_rss_mb(), 1),
            }
        )
        if reference is not None:
            result["cubes_equal_local"] = compare_cubes(store, reference, sorted(frames))
        if not args.no_limit:
            assets = ifg_assets(store)
            # remote reads as the package's own do them: no directory listing on open
            env = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"} if args.s3 else {}
            limit_dir = Path(args.store).with_name(Path(args.store).name + "-limit")
            limit = io_limit(assets, limit_dir, **env)
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
                    "limit_wall_mb_per_s": round(mb / limit["wall_s"], 1),
                }
            )
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
