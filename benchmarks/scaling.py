"""Scaling of the pipeline on the twin: time, peak memory per worker, task counts per stage.

Runs the pipeline stage by stage on a LocalCluster (``--workers N``, one thread each) against an
existing twin (``--twin DIR``; written with ``ncp-subsidence twin`` when missing) into a fresh
store, and records per stage:

* wall time (s);
* peak resident memory of each worker process (MiB), sampled every 0.2 s with ``client.run``;
* the number of tasks the scheduler ran for the stage (a scheduler plugin counts the keys that
  reach ``memory``; graphs the stages compute on the client, e.g. small fits, are not counted).

Writes ``benchmarks/_work/scaling-<preset>-w<N>.json``. SCALING.md holds the results and the
cost model of the whole plain::

    python benchmarks/scaling.py --preset tiny --workers 1
    python benchmarks/scaling.py --preset demo --workers 2 --twin /tmp/demo-run/ncp-twin-demo-0
    python benchmarks/scaling.py --preset large --stages discover ingest sbas \\
        --twin benchmarks/_work/twin-large
"""

from __future__ import annotations

import argparse
import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import SchedulerPlugin

from ncp_subsidence.config import STAGE_NAMES as STAGES

WORK = Path(__file__).parent / "_work"


class TaskCounter(SchedulerPlugin):
    """Counts the tasks that finish (reach ``memory``) on the scheduler."""

    name = "task-counter"

    def __init__(self) -> None:
        self.count = 0

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if finish == "memory":
            self.count += 1


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _tasks(dask_scheduler: Any = None) -> int:
    return dask_scheduler.plugins["task-counter"].count


class PeakMemory:
    """Polls every worker's RSS in a thread; ``peak`` maps worker address -> bytes."""

    def __init__(self, client: Client, interval: float = 0.2) -> None:
        self.client, self.interval = client, interval
        self.peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                for addr, rss in self.client.run(_rss).items():
                    self.peak[addr] = max(self.peak.get(addr, 0), rss)
            except Exception:  # noqa: BLE001 - a worker restarting between polls
                pass
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def run(preset: str, workers: int, twin: Path, stages: list[str]) -> dict[str, Any]:
    """Run ``stages`` on ``twin`` with ``workers`` local workers; return the measurements."""
    import dask

    from ncp_subsidence.config import load_config
    from ncp_subsidence.pipeline import run_pipeline
    from ncp_subsidence.synthetic import write_twin

    if not (twin / "twin.json").exists():
        write_twin(twin, preset=preset, seed=0)
    store = WORK / f"scaling-store-{preset}-w{workers}"
    shutil.rmtree(store, ignore_errors=True)
    overrides = {
        "store.url": str(store),
        "sources.twin.preset": preset,
        "sources.twin.directory": str(twin),
    }
    config = load_config(None, overrides)  # on the twin: grids from the preset, as the CLI
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        memory_limit="3GiB",
    )
    rows = []
    with (
        cluster,
        Client(cluster) as client,
        dask.config.set({"distributed.comm.timeouts.connect": 60}),
    ):
        client.register_plugin(TaskCounter())
        base = {a: v for a, v in client.run(_rss).items()}
        for stage in stages:
            before = client.run_on_scheduler(_tasks)
            with PeakMemory(client) as mem:
                t0 = time.perf_counter()
                run_pipeline(config, [*stages[: stages.index(stage)], stage], client=client)
                wall = time.perf_counter() - t0
            tasks = client.run_on_scheduler(_tasks) - before
            peak = max(mem.peak.values(), default=0)
            rows.append(
                {
                    "stage": stage,
                    "wall_s": round(wall, 2),
                    "tasks": tasks,
                    "peak_rss_mib_max_worker": round(peak / 2**20, 1),
                    "baseline_rss_mib": round(max(base.values()) / 2**20, 1),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    result = {"preset": preset, "workers": workers, "twin": str(twin), "stages": rows}
    result["total_s"] = round(sum(r["wall_s"] for r in rows), 1)
    shutil.rmtree(store, ignore_errors=True)
    return result


def main() -> None:
    """Command line: ``--preset``, ``--workers``, ``--twin``, ``--stages``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=("tiny", "demo", "large"), default="tiny")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--twin", type=Path, default=None)
    p.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    args = p.parse_args()
    twin = args.twin or WORK / f"twin-{args.preset}"
    WORK.mkdir(exist_ok=True)
    result = run(args.preset, args.workers, twin, [s for s in STAGES if s in args.stages])
    out = WORK / f"scaling-{args.preset}-w{args.workers}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"total {result['total_s']} s; wrote {out}")


if __name__ == "__main__":
    main()
