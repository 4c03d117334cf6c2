"""Reliability: the whole run killed (SIGKILL) while each stage writes, in turn.

One chained scenario on the tiny twin over every stage, ``discover`` to ``report``. Each
run is a separate Python process running :func:`~ncp_subsidence.pipeline.run_pipeline`
(forked from a fork server that imported the package once: ``tests/_killed_run.py``); it
kills itself with SIGKILL (no Python cleanup, no ``finally``) at a chosen point of the write of
the stage under test:

- ``discover``: after its third catalog file is written;
- every other stage: right after the first data region (or file) of a dataset has been
  recorded as done (so part of the version is written, the rest is not).

After every kill the test checks, from the parent: the killed stage has a pending version
with the written regions, no current version; every earlier product has exactly the record
and values it had before the kill. The next process resumes the killed stage (its log says
``resuming interrupted version <v>`` with the pending version) and is killed in the next
stage. A final run in the test process skips the finished stages, resumes ``report``, and
every product equals an uninterrupted run.
"""

from __future__ import annotations

import re
import shutil

import _killed_run
import dask
import numpy as np
import pytest
import xarray as xr
from conftest import twin_config

from ncp_subsidence.config import STAGE_NAMES, to_yaml
from ncp_subsidence.io.stores import ProductStore
from ncp_subsidence.pipeline import run_pipeline

STAGES = list(STAGE_NAMES)  # every stage of the pipeline, killed in turn
#: the polynomial candidates only: what is killed and resumed is the stage's writing, not the
#: model choice (the trees' cross-validation would add ~12 s to each of the two full runs)
FAST = {"adjust": {"candidates": ["P0", "P1", "P2", "P3"]}}


@pytest.fixture(scope="module")
def runs():
    """The fork-server context the killed runs are forked from (the package imported once)."""
    return _killed_run.context()


def _killed_run_in(ctx, config_path, target, after=1):
    code, log = _killed_run.killed_run(ctx, config_path, target, after, STAGES)
    assert code == -9, f"{target}: not killed (exit code {code})\n{log[-3000:]}"
    assert "COMPLETED" not in log
    return log


def _snapshot(store, stage):
    """(record, loaded datasets or catalog bytes) of the current version of ``stage``."""
    record = store.record(stage)
    if stage == "discover":
        files = sorted(
            p for p in store.fs.find(f"{store.root}/discover/{record.version}") if "/catalog/" in p
        )
        return record, {p.rsplit("/", 1)[1]: store.fs.cat(p) for p in files}
    return record, {name: store.open(stage, name).load() for name in record.datasets}


def _assert_same(a, b):
    """Equal products: bytes identical; datasets equal to 1e-12 relative with identical attrs.

    Not bitwise: the resumed stage runs in another process, and numpy's SIMD float reductions
    (the geodetector's sums) may round the last bit differently with the arrays' memory
    alignment; CI saw that once, at the last-bit level, in the geodetector's q values.
    """
    assert a.keys() == b.keys()
    for name in a:
        if isinstance(a[name], bytes):
            assert a[name] == b[name], name
        else:
            xr.testing.assert_allclose(a[name], b[name], rtol=1e-12, atol=0.0)
            assert a[name].attrs == b[name].attrs, name
            for var in a[name].variables:
                assert a[name][var].attrs == b[name][var].attrs, (name, var)


@pytest.fixture(scope="module")
def reference(tiny_run, tiny_twin, tmp_path_factory):
    """An uninterrupted run of every stage: tiny_run's store copied (discover, ingest, sbas done)."""
    _cfg, source = tiny_run
    dest = tmp_path_factory.mktemp("kill-reference") / "store"
    shutil.copytree(source.url, dest)
    cfg = twin_config(tiny_twin, dest, **FAST)
    with dask.config.set(scheduler="threads", num_workers=2):
        report = run_pipeline(cfg, STAGES)
    assert [r.action for r in report.results] == ["skipped"] * 3 + ["ran"] * (len(STAGES) - 3)
    store = ProductStore(str(dest))
    return {stage: _snapshot(store, stage) for stage in STAGES}


def test_sigkill_in_each_stage_keeps_earlier_products_and_resumes(
    tmp_path, tiny_twin, reference, runs
):
    cfg = twin_config(tiny_twin, tmp_path / "store", **FAST)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(to_yaml(cfg))
    store = ProductStore(cfg.store.url)
    published: dict[str, tuple] = {}
    previous_pending = None
    for target in STAGES:
        log = _killed_run_in(runs, config_path, target, after=3 if target == "discover" else 1)
        store.invalidate()
        if previous_pending is not None:  # the stage killed last time resumed its own version
            stage, version = previous_pending
            assert re.search(
                rf"stage \d+/\d+ {stage}: resuming interrupted version {version}", log
            ), log[-2000:]
            published[stage] = _snapshot(store, stage)
            assert published[stage][0].version == version
            _assert_same(published[stage][1], reference[stage][1])
            assert published[stage][0].fingerprint == reference[stage][0].fingerprint
        # the killed stage: nothing published, a pending version with part of the work done
        assert store.record(target) is None
        pending = store.pending(target)
        assert pending is not None
        if target != "discover":  # part of the version is written: a data region, or a file
            done = [r for regions in pending["done"].values() for r in regions]
            files = store.fs.find(f"{store.root}/{target}/{pending['version']}")
            assert any(r != "template" for r in done) or files, pending
        # every earlier product: the record and the values it had when it was published
        for stage, (record, data) in published.items():
            assert store.record(stage) == record, stage
            _assert_same(_snapshot(store, stage)[1], data)
        previous_pending = (target, pending["version"])

    with dask.config.set(scheduler="threads", num_workers=2):
        report = run_pipeline(cfg, STAGES)
    assert [r.action for r in report.results] == ["skipped"] * (len(STAGES) - 1) + ["resumed"]
    assert report[STAGES[-1]].version == previous_pending[1]
    for stage in STAGES:
        record, data = _snapshot(store, stage)
        assert record.fingerprint == reference[stage][0].fingerprint
        _assert_same(data, reference[stage][1])
    assert store.pending(STAGES[-1]) is None
    # no abandoned version is left behind: one version directory per product
    for stage in STAGES:
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in store.fs.ls(f"{store.root}/{stage}")]
        assert [n for n in names if n.startswith("v")] == [store.record(stage).version], names


def test_reference_is_not_trivial(reference):
    """Sanity of the reference itself: non-trivial values (so equality above means something)."""
    sbas = reference["sbas"][1]
    frame = next(iter(sbas))
    velocity = sbas[frame]["velocity"].values
    assert np.isfinite(velocity).mean() > 0.5 and np.nanstd(velocity) > 1.0
    adjust = reference["adjust"][1]
    assert adjust and all(ds.data_vars for ds in adjust.values())
