"""Stages writing their products to an S3 store: wall time and the requests the server answered.

Starts a moto S3 server on a free 127.0.0.1 port (its own process; its request log goes to a
file), runs the pipeline on the twin into ``s3://ncp-bench/store`` on a LocalCluster
(``--workers``, one thread each), and prints, per stage, the wall seconds and the requests the
server logged while the stage ran, by kind: ``HEAD``/``GET``/``PUT`` of ``zarr.json``
documents, of data chunks and of other files, and listings (``GET ...?list-type=2``).

The requests are what a real object store charges in latency (tens of ms each from a cloud VM);
moto on the same 2 cores answers them in about a millisecond, so on this machine the wall times
mostly show the CPU both sides spend per request.

    python benchmarks/store_s3.py --twin <tiny twin directory>
    cd /tmp && PYTHONPATH=<unpacked older ncp_subsidence> python <repo>/benchmarks/store_s3.py --twin <...>

The older package must have ``testing.servers.moto_server(log=...)`` (from issue 22's sixth
pass on); RESULTS.md's "Store on S3" ran against b17ea2d with an earlier copy of this script that
started the server itself.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import tempfile
import time
from pathlib import Path

LINE = re.compile(r'"(GET|PUT|HEAD|POST|DELETE) (\S+) HTTP')


def classify(method: str, target: str) -> str:
    """One request's kind: a listing, or the method and what it reads or writes."""
    if "list-type=" in target:
        return "LIST"
    key = target.split("?", 1)[0].rsplit("/", 1)[-1]
    if key == "zarr.json":
        return f"{method} zarr.json"
    if re.fullmatch(r"[0-9]+(\.[0-9]+)*", key) or "/c/" in target:
        return f"{method} chunk"
    return f"{method} other"


def count(log: Path, start: int) -> tuple[collections.Counter, int]:
    """Requests of the server's log from byte ``start`` on, by kind; and the new end."""
    with open(log, "rb") as f:
        f.seek(start)
        text = f.read().decode(errors="replace")
        end = f.tell()
    return collections.Counter(classify(m, t) for m, t in LINE.findall(text)), end


def main() -> None:
    from ncp_subsidence.config import STAGE_NAMES

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--twin", required=True, help="twin directory (written when missing)")
    parser.add_argument("--preset", default="tiny", help="preset of a twin written here")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--stages",
        nargs="+",
        default=list(STAGE_NAMES),
    )
    parser.add_argument("--json", help="write the result here too")
    args = parser.parse_args()

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench-key-id")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench-secret-key")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    import s3fs

    from ncp_subsidence.cluster import connect
    from ncp_subsidence.config import ClusterOptions, Config
    from ncp_subsidence.pipeline import run_pipeline
    from ncp_subsidence.synthetic import load_manifest, write_twin
    from ncp_subsidence.testing.servers import moto_server

    twin = Path(args.twin)
    manifest = (
        load_manifest(twin) if (twin / "twin.json").exists() else write_twin(twin, args.preset)
    )
    log = Path(tempfile.mkdtemp(prefix="moto-log-")) / "requests.log"
    with moto_server(log=log) as url:
        options = {
            "endpoint_url": url,
            "key": os.environ["AWS_ACCESS_KEY_ID"],
            "secret": os.environ["AWS_SECRET_ACCESS_KEY"],
        }
        s3fs.S3FileSystem(
            key=options["key"], secret=options["secret"], client_kwargs={"endpoint_url": url}
        ).mkdir("ncp-bench")
        config = Config.model_validate(
            {
                "store": {"url": "s3://ncp-bench/store", "storage_options": options},
                "sources": {
                    "twin": {
                        "preset": manifest.preset,
                        "seed": manifest.seed,
                        "directory": str(twin.resolve()),
                    }
                },
                "factors": {"resolution_deg": manifest.fine_resolution_deg},
                "geodetector": {"draws": 4, "permutations": 49},
                "adjust": {"candidates": ["P0", "P1", "P2", "P3"]},
            }
        )
        rows = []
        _, mark = count(log, 0)
        with connect(ClusterOptions(n_workers=args.workers, memory_limit="4GiB")) as client:
            for stage in args.stages:
                t0 = time.perf_counter()
                run_pipeline(config, [stage], client=client)
                seconds = time.perf_counter() - t0
                time.sleep(0.5)  # the server's last log lines
                kinds, mark = count(log, mark)
                rows.append(
                    {
                        "stage": stage,
                        "seconds": round(seconds, 2),
                        "requests": sum(kinds.values()),
                        **dict(sorted(kinds.items())),
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    total = {
        "seconds": round(sum(r["seconds"] for r in rows), 2),
        "requests": sum(r["requests"] for r in rows),
    }
    print(json.dumps({"total": total}))
    if args.json:
        Path(args.json).write_text(json.dumps({"stages": rows, "total": total}, indent=1))


if __name__ == "__main__":
    main()
