"""Reliability: the S3 server (moto) stopped in the middle of a run, then restarted, or not.

A ThreadedMotoServer on a fixed free port of 127.0.0.1 backs an ``s3://`` store. moto keeps its
buckets in the process, so a new server on the same port after ``stop()`` serves the same
objects: to the pipeline the endpoint went away for a while and came back. While it is away,
every request is refused at the TCP level.

- restarted after a few seconds: the store's default retries (botocore "standard" mode,
  exponential backoff with jitter, :data:`ncp_subsidence.io.stores.S3_RETRY_DEFAULTS`) carry
  the run, which completes and equals the local run;
- stays down: the run fails with one clear line naming the store and the fix, a non-zero exit,
  and nothing is published (no current version of the stage that was writing).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid

import dask
import pytest
import xarray as xr
from conftest import twin_config

from ncp_subsidence.cli import main
from ncp_subsidence.config import to_yaml
from ncp_subsidence.io.stores import S3_RETRY_DEFAULTS, ProductStore, with_retry_defaults
from ncp_subsidence.pipeline import run_pipeline
from ncp_subsidence.testing.servers import free_port

KEYS = {"key": "testing-key-id", "secret": "testing-secret-key"}


class RestartableMoto:
    """A moto S3 server on a fixed port that can be stopped and started again."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        os.environ.setdefault("AWS_ACCESS_KEY_ID", KEYS["key"])
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", KEYS["secret"])
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        self._cls = ThreadedMotoServer
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.server = None
        self.start()

    def start(self) -> None:
        self.server = self._cls(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@pytest.fixture(autouse=True)
def _restore_logging():
    """The CLI installs a handler on the (captured) stderr; put the test's logging back after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def moto():
    server = RestartableMoto()
    try:
        yield server
    finally:
        server.stop()


def _bucket(moto) -> str:
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": moto.endpoint}, **KEYS)
    name = f"ncp-{uuid.uuid4().hex[:12]}"
    fs.mkdir(name)
    return f"s3://{name}"


def _wait_for_region(store: ProductStore, stage: str, timeout: float = 120.0) -> dict:
    """Poll until ``stage`` has written at least one data region; returns the pending entry."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        store.invalidate()
        pending = store.pending(stage) or {}
        done = [r for regions in pending.get("done", {}).values() for r in regions]
        if any(r != "template" for r in done):
            return pending
        time.sleep(0.05)
    raise AssertionError(f"stage {stage!r} wrote no region within {timeout} s")


def test_s3_stores_retry_with_backoff_by_default(moto):
    store = ProductStore(f"{_bucket(moto)}/store", {"endpoint_url": moto.endpoint, **KEYS})
    assert store.storage_options["config_kwargs"] == S3_RETRY_DEFAULTS["config_kwargs"]
    assert store.storage_options["config_kwargs"]["retries"]["mode"] == "standard"
    assert store.fs.connect_timeout or store.fs.config_kwargs["connect_timeout"] == 10
    # the user's settings win; local stores get none
    mine = with_retry_defaults("s3://b", {"config_kwargs": {"retries": {"max_attempts": 2}}})
    assert mine["config_kwargs"]["retries"] == {"max_attempts": 2}
    assert mine["config_kwargs"]["read_timeout"] == 60
    assert with_retry_defaults("/tmp/store", {}) == {}


#: A one-year window keeps the S3 runs short (every dataset kind is still written).
WINDOW = "2019-01-01/2019-12-31"


def _short(cfg):
    cfg.sources.datetime = cfg.sources.hydro_datetime = WINDOW
    return cfg


def test_s3_restarted_mid_ingest_retries_carry_the_run(moto, tiny_twin, tmp_path):
    prefix = _bucket(moto)
    cfg = _short(twin_config(tiny_twin, f"{prefix}/store"))
    cfg.store.storage_options = {"endpoint_url": moto.endpoint, **KEYS}
    local_cfg = _short(twin_config(tiny_twin, tmp_path / "local"))
    with dask.config.set(scheduler="threads", num_workers=2):
        run_pipeline(local_cfg, ["discover", "ingest"])  # the undisturbed reference
    local = ProductStore(local_cfg.store.url)
    watcher = ProductStore(cfg.store.url, cfg.store.storage_options)
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            with dask.config.set(scheduler="threads", num_workers=2):
                outcome["report"] = run_pipeline(cfg, ["discover", "ingest"])
        except BaseException as err:  # noqa: BLE001 - reported to the test thread
            outcome["error"] = err

    runner = threading.Thread(target=run)
    runner.start()
    _wait_for_region(watcher, "ingest")
    moto.stop()
    down_at = time.monotonic()
    time.sleep(4.0)  # longer than botocore's own default retries bridge (about 3 s)
    assert runner.is_alive(), "the run ended while S3 was down"
    moto.start()
    runner.join(timeout=300)
    assert time.monotonic() - down_at > 4.0
    assert "error" not in outcome, outcome.get("error")
    assert [r.action for r in outcome["report"].results] == ["ran", "ran"]
    s3 = ProductStore(cfg.store.url, cfg.store.storage_options)
    assert s3.record("ingest").datasets == local.record("ingest").datasets
    for name in local.record("ingest").datasets:
        a, b = local.open("ingest", name).load(), s3.open("ingest", name).load()
        xr.testing.assert_identical(a.drop_attrs(deep=False), b.drop_attrs(deep=False))


def test_s3_that_stays_down_is_one_clear_line_and_publishes_nothing(
    moto, tiny_twin, tmp_path, capsys
):
    prefix = _bucket(moto)
    cfg = _short(twin_config(tiny_twin, f"{prefix}/store"))
    # a user's short retry budget (honoured: the run gives up within seconds)
    cfg.store.storage_options = {
        "endpoint_url": moto.endpoint,
        **KEYS,
        "config_kwargs": {"retries": {"max_attempts": 2, "mode": "standard"}, "connect_timeout": 1},
    }
    cfg.cluster.n_workers = 1
    path = tmp_path / "config.yaml"
    path.write_text(to_yaml(cfg, redact=False))
    watcher = ProductStore(cfg.store.url, cfg.store.storage_options)
    outcome: dict[str, int] = {}
    runner = threading.Thread(
        target=lambda: outcome.update(
            code=main(["run", "--config", str(path), "--stages", "discover", "ingest", "-q"])
        )
    )
    runner.start()
    pending = _wait_for_region(watcher, "ingest")
    moto.stop()
    down_at = time.monotonic()
    runner.join(timeout=300)
    assert time.monotonic() - down_at < 60  # the user's short retry budget was honoured
    assert not runner.is_alive()
    err = capsys.readouterr().err
    assert outcome["code"] == 1
    errors = [ln for ln in err.splitlines() if ln.startswith("ncp-subsidence: error")]
    assert len(errors) == 1, err
    assert "StoreError" in errors[0] and cfg.store.url in errors[0], errors[0]
    assert "stage 'ingest'" in errors[0] and "rerun" in errors[0]
    assert "Traceback" not in err
    moto.start()  # look at what the failed run left behind
    watcher.invalidate()
    assert watcher.record("discover") is not None
    assert watcher.record("ingest") is None  # nothing half-published
    assert watcher.pending("ingest")["version"] == pending["version"]  # resumable later


@pytest.mark.parametrize(
    ("cause", "reworded"),
    [
        ("connect", True),  # the store went away while the store opened a group
        ("denied", False),  # a refusal keeps the store's own message
    ],
)
def test_a_store_error_over_a_lost_connection_names_the_stage_and_the_rerun(cause, reworded):
    """A StoreError of the store's own calls (``cannot open group``) whose cause is a lost
    connection reads like every other store failure: the stage, and that a rerun resumes."""
    from types import SimpleNamespace

    from botocore.exceptions import ClientError, EndpointConnectionError

    from ncp_subsidence.errors import StoreError
    from ncp_subsidence.pipeline import _raise_if_store_failed

    store = SimpleNamespace(url="s3://bucket-x/store", root="bucket-x/store")
    url = "http://127.0.0.1:1/bucket-x/store/ingest/zarr.json"
    if cause == "connect":
        raw: Exception = EndpointConnectionError(endpoint_url=url)
    else:
        raw = ClientError(
            {"Error": {"Code": "AccessDenied", "Message": "denied: bucket-x/store"}}, "GetObject"
        )
    try:
        try:
            raise raw
        except Exception as err:
            raise StoreError(f"cannot open group 'ingest' in store {store.url!r}: {err}") from err
    except StoreError as err:
        if reworded:
            with pytest.raises(StoreError) as info:
                _raise_if_store_failed(err, store, "ingest")
            text = str(info.value)
            assert "stage 'ingest'" in text and "rerun" in text and store.url in text
        else:
            _raise_if_store_failed(err, store, "ingest")  # left as it is: returns
