"""Pipeline: skip by fingerprint, force downstream, and no data lost on failure or SIGKILL."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import dask
import numpy as np
import pytest
import xarray as xr

from ncp_subsidence.config import Config
from ncp_subsidence.errors import ConfigError, StoreError
from ncp_subsidence.io.stores import ProductStore
from ncp_subsidence.pipeline import run_pipeline
from ncp_subsidence.testing.stages import (
    BLOCKS_COMPUTED,
    DoubleStage,
    InjectedFault,
    RampStage,
    expected_ramp,
)

SHAPE = (64, 48)  # 4 x 3 chunks of 16


@pytest.fixture(autouse=True)
def _sync_scheduler():
    with dask.config.set(scheduler="synchronous"):
        yield


def _config(tmp_path, name="store"):
    return Config.model_validate({"store": {"url": str(tmp_path / name)}})


def _values(store: ProductStore, stage="discover"):
    return store.open(stage, "cube")["value"].values


def test_run_skip_and_force(tmp_path):
    cfg = _config(tmp_path)
    stages = [RampStage(offset=1.0), DoubleStage()]
    first = run_pipeline(cfg, stages)
    assert [r.action for r in first.results] == ["ran", "ran"]
    store = ProductStore(cfg.store.url)
    np.testing.assert_array_equal(_values(store), expected_ramp(SHAPE, 1.0))
    np.testing.assert_array_equal(_values(store, "ingest"), 2 * expected_ramp(SHAPE, 1.0))

    second = run_pipeline(cfg, stages)
    assert [r.action for r in second.results] == ["skipped", "skipped"]
    assert second["discover"].version == first["discover"].version

    forced = run_pipeline(cfg, stages, force=["discover"])
    assert [r.action for r in forced.results] == ["ran", "ran"]  # downstream recomputed too
    assert forced["discover"].version != first["discover"].version
    assert forced["ingest"].fingerprint == first["ingest"].fingerprint

    changed = run_pipeline(cfg, [RampStage(offset=2.0), DoubleStage()])
    assert [r.action for r in changed.results] == [
        "ran",
        "ran",
    ]  # a new input fingerprint propagates
    np.testing.assert_array_equal(_values(store, "ingest"), 2 * expected_ramp(SHAPE, 2.0))


def test_config_section_changes_fingerprint(tmp_path):
    cfg = _config(tmp_path)
    run_pipeline(cfg, [RampStage()])
    cfg.discover.fail_on_empty = False
    assert run_pipeline(cfg, [RampStage()]).results[0].action == "ran"


def test_root_attrs_hold_config_and_versions(tmp_path):
    cfg = _config(tmp_path)
    run_pipeline(cfg, [RampStage()])
    import zarr

    attrs = dict(zarr.open_group(cfg.store.url, mode="r").attrs)  # plain zarr sees them too
    assert attrs["config"]["store"]["url"] == cfg.store.url
    assert attrs["ncp_subsidence_version"]
    assert "xarray" in attrs["software"]
    assert attrs["last_run"]["completed"] is not None


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="reads product 'discover'.*run stage 'discover' first"):
        run_pipeline(_config(tmp_path), [DoubleStage()])


def test_unknown_stage_and_force(tmp_path):
    with pytest.raises(ConfigError, match="unknown stage 'nope'"):
        run_pipeline(_config(tmp_path), ["nope"])
    with pytest.raises(ConfigError, match="--force names stage"):
        run_pipeline(_config(tmp_path), [RampStage()], force=["report"])


def test_failure_mid_write_keeps_previous_and_resumes(tmp_path):
    cfg = _config(tmp_path)
    store = ProductStore(cfg.store.url)
    run_pipeline(cfg, [RampStage(offset=0.0)])
    good = store.record("discover")
    before = _values(store).copy()

    with pytest.raises(InjectedFault):
        run_pipeline(cfg, [RampStage(offset=5.0, fail_row=2)])
    # the previous complete product is still the current one, unchanged and readable
    assert store.record("discover") == good
    np.testing.assert_array_equal(_values(store), before)
    pending = store.pending("discover")
    assert pending is not None and set(pending["done"]["cube"]) == {
        "template",
        "lat[0:16]",
        "lat[16:32]",
    }

    BLOCKS_COMPUTED.clear()
    resumed = run_pipeline(cfg, [RampStage(offset=5.0)])
    assert resumed.results[0].action == "resumed"
    assert resumed.results[0].version == pending["version"]
    assert BLOCKS_COMPUTED["discover"] == 2 * 3  # only the two missing chunk rows were computed
    np.testing.assert_array_equal(_values(store), expected_ramp(SHAPE, 5.0))

    # equals an uninterrupted run in a fresh store
    fresh = _config(tmp_path, "fresh")
    run_pipeline(fresh, [RampStage(offset=5.0)])
    xr.testing.assert_identical(
        store.open("discover", "cube").load(),
        ProductStore(fresh.store.url).open("discover", "cube").load(),
    )


def test_sigkill_mid_write_keeps_previous_and_resumes(tmp_path):
    cfg = _config(tmp_path)
    store = ProductStore(cfg.store.url)
    run_pipeline(cfg, [RampStage(offset=0.0), DoubleStage()])
    good = store.record("ingest")
    before = _values(store, "ingest").copy()

    script = textwrap.dedent(
        f"""
        import dask
        from ncp_subsidence.config import Config
        from ncp_subsidence.pipeline import run_pipeline
        from ncp_subsidence.testing.stages import DoubleStage, RampStage
        cfg = Config.model_validate({{"store": {{"url": {cfg.store.url!r}}}}})
        with dask.config.set(scheduler="synchronous"):
            run_pipeline(cfg, [RampStage(offset=3.0, kill_row=1), DoubleStage()])
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -9, proc.stderr  # killed by SIGKILL, not a Python exception

    store.invalidate()
    assert store.record("ingest") == good
    np.testing.assert_array_equal(_values(store, "ingest"), before)
    assert store.record("discover").fingerprint != store.pending("discover")["fingerprint"]

    report = run_pipeline(cfg, [RampStage(offset=3.0), DoubleStage()])
    assert [r.action for r in report.results] == ["resumed", "ran"]
    np.testing.assert_array_equal(_values(store, "ingest"), 2 * expected_ramp(SHAPE, 3.0))


def test_pending_with_other_fingerprint_is_discarded(tmp_path):
    cfg = _config(tmp_path)
    store = ProductStore(cfg.store.url)
    with pytest.raises(InjectedFault):
        run_pipeline(cfg, [RampStage(offset=1.0, fail_row=1)])
    abandoned = store.pending("discover")["version"]
    run_pipeline(cfg, [RampStage(offset=9.0)])
    assert not store.exists(f"discover/{abandoned}")
    np.testing.assert_array_equal(_values(store), expected_ramp(SHAPE, 9.0))


def test_stage_on_a_missing_or_empty_store_writes_nothing(tmp_path, capsys):
    """A stage whose input is absent fails before a store, a root attribute or a cluster is made."""
    from ncp_subsidence.cli import main

    missing, empty = tmp_path / "missing", tmp_path / "empty"
    empty.mkdir()
    for store, fragment in ((missing, "no product store"), (empty, "no product store")):
        assert main(["sbas", "--store", str(store)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert "reads product 'ingest'" in err[0] and fragment in err[0], err
        assert "run stage 'ingest' first" in err[0]
    assert not missing.exists() and list(empty.iterdir()) == []
    # a store that exists but lacks the product read: named, and nothing added to it
    ProductStore(str(tmp_path / "s" / "store")).update_root_attrs({"note": "kept as it is"})
    before = sorted(p.relative_to(tmp_path / "s") for p in (tmp_path / "s").rglob("*"))
    with pytest.raises(StoreError, match="reads product 'discover'.*no complete version"):
        run_pipeline(_config(tmp_path / "s"), [DoubleStage()])
    assert sorted(p.relative_to(tmp_path / "s") for p in (tmp_path / "s").rglob("*")) == before


def test_stage_table_is_the_pipeline_order_and_each_module_holds_its_stage():
    from ncp_subsidence.config import STAGE_NAMES
    from ncp_subsidence.pipeline import STAGES, Stage, load_stage, resolve_stages

    assert tuple(STAGES) == STAGE_NAMES
    for name, module in STAGES.items():
        assert module == f"ncp_subsidence.stages.{name}"
    ingest = load_stage("ingest")
    assert isinstance(ingest, Stage) and ingest.name == "ingest"
    assert [s.name for s in resolve_stages(["discover", "ingest"])] == ["discover", "ingest"]
    with pytest.raises(ConfigError, match="unknown stage 'nope'"):
        load_stage("nope")


def test_stage_base_gives_the_default_fingerprint_extra():
    from ncp_subsidence.pipeline import Stage, fingerprint

    class Based(Stage):
        name = "discover"

    class Plain:  # a stage-like object not derived from Stage
        name = "discover"
        reads = ()

    cfg = Config()
    assert Based().fingerprint_extra(cfg) is None
    assert fingerprint(Based(), cfg, {}) == fingerprint(Plain(), cfg, {})
    with pytest.raises(NotImplementedError):
        Based().run(None)
