"""Reliability: a Dask worker process killed (SIGKILL) in the middle of the SBAS stage.

A real 2-process LocalCluster computes the ``sbas`` stage of the tiny twin (inputs copied from
the session's ``tiny_run`` store). While the stage's tasks run on the workers, one worker
process is killed with SIGKILL. The scheduler reschedules its tasks, the nanny starts a new
worker, the stage completes, and its product is identical to the undisturbed run's.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time

import xarray as xr
from conftest import twin_config

from ncp_subsidence.cluster import connect
from ncp_subsidence.config import ClusterOptions
from ncp_subsidence.io.stores import ProductStore
from ncp_subsidence.pipeline import run_pipeline


def test_worker_killed_mid_sbas_is_rescheduled_and_result_is_unchanged(
    tiny_run, tiny_twin, tmp_path
):
    _cfg, undisturbed = tiny_run
    shutil.copytree(undisturbed.url, tmp_path / "store")
    cfg = twin_config(tiny_twin, tmp_path / "store")
    store = ProductStore(cfg.store.url)
    killed: dict[str, object] = {}
    outcome: dict[str, object] = {}

    with connect(ClusterOptions(n_workers=2, memory_limit="2GiB")) as client:
        client.wait_for_workers(2, timeout=60)
        pids_before = client.run(os.getpid)

        def run() -> None:
            try:
                outcome["report"] = run_pipeline(cfg, ["sbas"], force=["sbas"], client=client)
            except BaseException as err:  # noqa: BLE001 - reported to the test thread
                outcome["error"] = err

        runner = threading.Thread(target=run)
        runner.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and runner.is_alive():
            processing = client.processing()
            busy = [w for w, tasks in processing.items() if tasks]  # only this stage computes
            if busy:
                victim = busy[0]
                os.kill(pids_before[victim], signal.SIGKILL)
                killed.update(worker=victim, pid=pids_before[victim], tasks=processing[victim])
                break
            time.sleep(0.01)
        runner.join(timeout=300)
        assert not runner.is_alive()
        client.wait_for_workers(2, timeout=60)
        pids_after = client.run(os.getpid)

    assert killed and killed["tasks"], (
        "no task seen running on a worker: the kill was not mid-stage"
    )
    assert "error" not in outcome, outcome.get("error")
    assert killed["pid"] not in pids_after.values()  # the nanny replaced the killed process
    report = outcome["report"]
    assert report["sbas"].action == "ran"
    assert report["sbas"].version != undisturbed.record("sbas").version
    assert store.record("sbas").fingerprint == undisturbed.record("sbas").fingerprint
    for name in undisturbed.record("sbas").datasets:
        xr.testing.assert_identical(
            store.open("sbas", name).load(), undisturbed.open("sbas", name).load()
        )
