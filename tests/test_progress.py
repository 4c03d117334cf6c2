"""Progress lines: the ticker's interval and closing line, readable numbers, the compute hook."""

from __future__ import annotations

import logging

import dask
import numpy as np
import pytest

from ncp_subsidence.progress import Ticker, interval, labelled, logged_compute, readable, steps


def test_ticker_logs_once_per_interval_and_a_closing_line(caplog):
    log = logging.getLogger("ncp_subsidence.test_progress")
    with caplog.at_level(logging.INFO, logger=log.name):
        with steps("adjust: model selection", total=4, logger=log, unit="frames", every=0) as tick:
            for _ in range(4):
                tick()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("adjust: model selection 1/4 frames (25%), ")
    assert lines[3].startswith("adjust: model selection 4/4 frames (100%), ")
    assert lines[-1].startswith("adjust: model selection 4/4 frames (100%), done in ")


def test_ticker_is_silent_when_the_loop_is_faster_than_the_interval(caplog):
    log = logging.getLogger("ncp_subsidence.test_progress")
    with caplog.at_level(logging.INFO, logger=log.name):
        tick = Ticker("draws", total=1000, logger=log, unit="draws", every=3600)
        for _ in range(1000):
            tick()
        tick.close()
    assert caplog.records == []  # no line at all, not even the closing one


def test_interval_reads_the_environment(monkeypatch):
    monkeypatch.delenv("NCP_SUBSIDENCE_PROGRESS_INTERVAL", raising=False)
    assert interval() == 15.0
    monkeypatch.setenv("NCP_SUBSIDENCE_PROGRESS_INTERVAL", "2.5")
    assert interval() == 2.5
    for bad in ("soon", "0", "-1"):
        monkeypatch.setenv("NCP_SUBSIDENCE_PROGRESS_INTERVAL", bad)
        with pytest.raises(ValueError, match="NCP_SUBSIDENCE_PROGRESS_INTERVAL"):
            interval()


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (2.0421498514936465, "2.042"),
        (np.float32(0.000123456789), "0.0001235"),
        (73051.2, "73,051"),
        (12345, "12,345"),
        (np.nan, "nan"),
        (True, "True"),
        ({"before": 2.0421498514936465, "after": 0.9668227406385422}, "before=2.042, after=0.9668"),
        (["along_track", "along_track"], "along_track, along_track"),
    ],
)
def test_readable(value, text):
    assert readable(value) == text


def test_logged_compute_counts_the_graphs_tasks(caplog):
    distributed = pytest.importorskip("distributed")
    import time

    def slow(i):
        time.sleep(0.05)
        return i

    parts = [dask.delayed(slow)(i) for i in range(40)]
    total = dask.delayed(sum)(parts)
    log = logging.getLogger("ncp_subsidence.test_progress")
    with (
        distributed.Client(n_workers=1, threads_per_worker=1, processes=False) as client,
        caplog.at_level(logging.INFO, logger=log.name),
        labelled("stage 3/10 sbas"),
    ):
        logged_compute(client, log, every=0.2)(total)
    lines = [r.getMessage() for r in caplog.records if r.name == log.name]
    assert lines, "a 2-second compute logs its progress at 0.2 s"
    assert all(s.startswith("stage 3/10 sbas: ") and "/41 tasks (" in s for s in lines), lines
