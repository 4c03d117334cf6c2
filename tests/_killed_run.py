"""The child of ``test_reliability_kill``: a pipeline run that kills itself with SIGKILL.

It runs in a process forked from a fork server that imported the pipeline and every stage
once (:func:`start`), so each of the test's eleven runs starts in milliseconds instead of
importing the package again (about 4 s a process on 2 cores). The child is still a process of
its own, killed with SIGKILL: no Python cleanup, no ``finally``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
from pathlib import Path
from typing import Any

from ncp_subsidence.pipeline import STAGES

#: modules the fork server imports before it forks any run: this one, the pipeline and the
#: module of every stage (``pipeline.STAGES``)
PRELOAD = ["_killed_run", "ncp_subsidence.pipeline", *STAGES.values()]


def context() -> Any:
    """A fork-server multiprocessing context whose server preloads :data:`PRELOAD`.

    The preload takes effect when the server starts (its first process); a server already
    started by someone else only makes each run import the package itself, slower, not wrong.
    """
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def run(config_path: str, target: str, after: int, stages: list[str], log_path: str) -> None:
    """Run ``stages``; kill this process with SIGKILL at the ``after``-th write of ``target``
    (a data region recorded as done, or a file). Everything the run prints goes to
    ``log_path``; "COMPLETED" is printed only if the run is never killed."""
    out = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    sys.stdout = open(1, "w", closefd=False)  # the process's own fds, now the log
    sys.stderr = open(2, "w", closefd=False)
    import dask

    from ncp_subsidence.config import load_config
    from ncp_subsidence.io.stores import ProductStore
    from ncp_subsidence.pipeline import run_pipeline

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, force=True)
    logging.getLogger("ncp_subsidence.pipeline").setLevel(logging.INFO)
    count = 0

    def tick() -> None:
        nonlocal count
        count += 1
        if count >= after:
            sys.stdout.flush()
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)  # the fault: no cleanup of any kind

    mark_done, write_file = ProductStore.mark_done, ProductStore.write_file

    def killing_mark_done(self: Any, stage: str, dataset: str, region: str) -> None:
        mark_done(self, stage, dataset, region)
        if stage == target and region not in ("template",):
            tick()

    def killing_write_file(self: Any, path: str, data: Any) -> Any:
        result = write_file(self, path, data)
        if path.startswith(target + "/"):
            tick()
        return result

    ProductStore.mark_done = killing_mark_done
    ProductStore.write_file = killing_write_file
    with dask.config.set(scheduler="threads", num_workers=2):
        run_pipeline(load_config(config_path), stages)
    print("COMPLETED", flush=True)


def killed_run(
    ctx: Any,
    config_path: Path,
    target: str,
    after: int,
    stages: list[str],
    timeout_s: float = 240,
) -> tuple[int | None, str]:
    """One run in a child of ``ctx``'s fork server: (its exit code, what it printed); the exit
    code is None for a run still going after ``timeout_s`` (stopped then, not counted as killed)."""
    log_path = Path(config_path).with_name(f"run-{target}.log")
    proc = ctx.Process(target=run, args=(str(config_path), target, after, stages, str(log_path)))
    proc.start()
    proc.join(timeout_s)
    code = proc.exitcode
    if proc.is_alive():  # hung: stopped here, reported by the caller as not killed
        proc.kill()
        proc.join()
        code = None
    return code, log_path.read_text() if log_path.exists() else ""
