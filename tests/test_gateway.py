"""``cluster: gateway`` against a real dask-gateway server (no mocks, no Docker).

The fixture starts ``dask-gateway-server`` with its local backend (``UnsafeLocalBackend``:
schedulers and workers are processes on this machine) and ``SimpleAuthenticator``, API and
scheduler proxy on 127.0.0.1, and stops it afterwards. The server also runs the cluster-options
snippet of ``deploy/gateway/values.yaml``, so the options the daskhub deployment exposes are the
ones tested here. ``ClusterConfig.scheduler_cmd``/``worker_cmd`` are ``dask scheduler`` /
``dask worker`` (distributed no longer installs ``dask-scheduler``/``dask-worker``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
import yaml

pytest.importorskip("dask_gateway")
pytest.importorskip("dask_gateway_server")

from ncp_subsidence.cluster import _close_gateway, connect
from ncp_subsidence.config import ClusterOptions, Config
from ncp_subsidence.errors import NetworkError
from ncp_subsidence.io.stores import ProductStore
from ncp_subsidence.pipeline import run_pipeline
from ncp_subsidence.testing.stages import RampStage, expected_ramp

VALUES = Path(__file__).resolve().parents[1] / "deploy" / "gateway" / "values.yaml"
PASSWORD = "gateway-test-password"
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gateway_server(tmp_path_factory):
    """A dask-gateway server on 127.0.0.1; yields (api address, proxy address)."""
    tmp = tmp_path_factory.mktemp("gateway")
    api, proxy = _free_port(), _free_port()
    options_snippet = yaml.safe_load(VALUES.read_text())["dask-gateway"]["gateway"]["extraConfig"][
        "10-ncp-options"
    ]
    config = tmp / "gateway_config.py"
    config.write_text(
        textwrap.dedent(
            f"""
            c.DaskGateway.address = "127.0.0.1:{api}"
            c.Proxy.address = "127.0.0.1:{proxy}"
            c.DaskGateway.backend_class = "dask_gateway_server.backends.local.UnsafeLocalBackend"
            c.DaskGateway.authenticator_class = "dask_gateway_server.auth.SimpleAuthenticator"
            c.SimpleAuthenticator.password = {PASSWORD!r}
            c.LocalBackend.clusters_directory = {str(tmp / "clusters")!r}
            c.ClusterConfig.scheduler_cmd = [{str(BIN / "dask")!r}, "scheduler"]
            c.ClusterConfig.worker_cmd = [{str(BIN / "dask")!r}, "worker"]
            c.ClusterConfig.idle_timeout = 600
            c.Backend.cluster_heartbeat_period = 2
            """
        )
        + "\n# deploy/gateway/values.yaml: dask-gateway.gateway.extraConfig.10-ncp-options\n"
        + options_snippet
    )
    log = (tmp / "server.log").open("w")
    proc = subprocess.Popen(
        [str(BIN / "dask-gateway-server"), "-f", str(config)],
        cwd=tmp,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{api}/api/health", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "dask-gateway-server did not start:\n" + (tmp / "server.log").read_text()
                    ) from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{api}", f"gateway://127.0.0.1:{proxy}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _options(gateway_server, **gateway) -> ClusterOptions:
    address, proxy = gateway_server
    return ClusterOptions(
        kind="gateway",
        gateway={
            "address": address,
            "proxy_address": proxy,
            "auth": "simple",
            "username": "ncp-tester",
            "password": PASSWORD,
            **gateway,
        },
    )


def _wait_workers(client, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(client.scheduler_info(n_workers=-1)["workers"]) != n:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"expected {n} workers, have {len(client.scheduler_info(n_workers=-1)['workers'])}"
            )
        time.sleep(0.2)


def _blocks(stage: str) -> int:
    """Chunks of ``stage`` computed in the process this runs in (also sent to workers)."""
    from ncp_subsidence.testing.stages import BLOCKS_COMPUTED

    return BLOCKS_COMPUTED.get(stage, 0)


# functions of this module run on the gateway's workers, which cannot import it: send them by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])


# first in the file: after the tests below have started and stopped gateway servers in this
# process, dask-gateway's client loop has been seen to hang here (distributed's LoopRunner)
def test_unreachable_gateway_is_a_network_error():
    port = _free_port()  # nothing listens there
    options = ClusterOptions(
        kind="gateway", gateway={"address": f"http://127.0.0.1:{port}", "auth": "basic"}
    )
    with pytest.raises(NetworkError, match="cannot reach the dask-gateway server"):
        with connect(options):
            pass


def test_connect_scale_adapt_run_stage_shutdown(gateway_server, tmp_path):
    """connect() makes a gateway cluster with the daskhub options; it scales to 2, adapts, runs a
    real pipeline stage on the gateway's workers, and is shut down when the block exits."""
    from dask_gateway import Gateway
    from dask_gateway.auth import BasicAuth

    options = _options(gateway_server, cluster_options={"worker_cores": 1, "worker_memory": 1.0})
    cfg = Config.model_validate({"store": {"url": str(tmp_path / "store")}})
    before = _blocks("discover")
    with connect(options) as client:
        cluster = client.cluster
        name = cluster.name
        _wait_workers(client, 2)  # no adapt_maximum: a fixed cluster of n_workers (default 2)
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
        assert all(w["nthreads"] == 1 for w in workers)  # worker_cores from cluster_options
        assert all(w["memory_limit"] == 2**30 for w in workers)  # worker_memory, GiB
        envs = client.run(os.getenv, "OMP_NUM_THREADS")
        assert set(envs.values()) == {"1"}  # BLAS pinned by the values.yaml options handler

        cluster.adapt(minimum=1, maximum=2)
        report = run_pipeline(cfg, [RampStage()], client=client)
        assert [r.action for r in report.results] == ["ran"]
        # every chunk was computed on the gateway's workers, none in this process
        per_worker = client.run(_blocks, "discover")
        assert sum(per_worker.values()) == 12 and _blocks("discover") == before
        assert 1 <= len(client.scheduler_info(n_workers=-1)["workers"]) <= 2

    values = ProductStore(cfg.store.url).open("discover", "cube")["value"].values
    np.testing.assert_array_equal(values, expected_ramp((64, 48), 0.0))
    address, proxy = gateway_server
    gateway = Gateway(address, proxy, auth=BasicAuth("ncp-tester", PASSWORD))
    try:
        deadline = time.monotonic() + 30
        while name in {c.name for c in gateway.list_clusters()}:  # shut down on exit
            assert time.monotonic() < deadline, f"cluster {name} still running after connect()"
            time.sleep(0.2)
    finally:
        _close_gateway(gateway)


def test_adaptive_from_config(gateway_server):
    """adapt_minimum/adapt_maximum in the config make an adaptive cluster that grows for work."""
    options = _options(gateway_server, adapt_minimum=1, adapt_maximum=2)
    with connect(options) as client:
        _wait_workers(client, 1)
        assert client.submit(sum, [1, 2, 3]).result() == 6


def test_wrong_password_is_refused(gateway_server):
    address, proxy = gateway_server
    options = ClusterOptions(
        kind="gateway",
        gateway={
            "address": address,
            "proxy_address": proxy,
            "auth": "basic",
            "username": "x",
            "password": "not-the-password",
        },
    )
    with pytest.raises(Exception, match="401|Unauthorized|nauthor"):
        with connect(options):
            pass
