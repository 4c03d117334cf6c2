"""cluster.connect: a real 2-process LocalCluster, and joining it by address."""

from __future__ import annotations

import os
import sys

import pytest

from ncp_subsidence.cluster import BLAS_ENV, coiled_kwargs, connect
from ncp_subsidence.config import ClusterOptions
from ncp_subsidence.errors import ConfigError, NetworkError


def _env(keys):
    return {k: os.environ.get(k) for k in keys}


def test_local_cluster_two_processes_blas_pinned():
    options = ClusterOptions(n_workers=2, memory_limit="1GiB")
    with connect(options) as client:
        info = client.scheduler_info(n_workers=-1)["workers"]
        assert len(info) == 2
        assert all(w["nthreads"] == 1 for w in info.values())
        pids = client.run(os.getpid)
        assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()
        envs = client.run(_env, list(BLAS_ENV))
        assert all(e == BLAS_ENV for e in envs.values())
        assert client.submit(sum, [1, 2, 3]).result() == 6
        assert client.dashboard_link.startswith("http://127.0.0.1:")


def test_address_connects_to_running_cluster(local_cluster):
    options = ClusterOptions(kind="address", address=local_cluster.scheduler_address)
    with connect(options) as client:
        assert len(client.scheduler_info(n_workers=-1)["workers"]) == 2
        assert client.submit(lambda x: x + 1, 41).result() == 42
    assert local_cluster.status.name == "running"  # joining does not close someone else's cluster


def test_unreachable_address_is_a_clear_error(monkeypatch):
    """Nothing listening: the refused connect is reported at once, naming the option, and
    distributed's retry loop (30 s by default) is never entered."""
    import distributed

    def never(*args, **kwargs):
        raise AssertionError("distributed.Client must not be tried when the port is closed")

    monkeypatch.setattr(distributed, "Client", never)
    options = ClusterOptions(kind="address", address="tcp://127.0.0.1:9", connect_timeout_s=30)
    with pytest.raises(
        NetworkError,
        match=r"cannot reach the Dask scheduler at 'tcp://127.0.0.1:9': connection refused.*"
        r"cluster.connect_timeout_s=30 s",
    ):
        with connect(options):
            pass


@pytest.mark.parametrize(
    ("kind", "package"),
    [("gateway", "dask_gateway"), ("kubernetes", "dask_kubernetes"), ("coiled", "coiled")],
)
def test_missing_extra_names_the_install(kind, package, monkeypatch):
    # the extras are installed here; None in sys.modules makes `import package` fail as if absent
    monkeypatch.setitem(sys.modules, package, None)
    for name in [m for m in sys.modules if m.startswith(package + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ConfigError, match=r'pip install "ncp-subsidence\[cluster\]"'):
        with connect(ClusterOptions(kind=kind)):
            pass


def test_coiled_call_is_built_from_options():
    options = ClusterOptions(
        kind="coiled",
        n_workers=8,
        coiled={"region": "ap-east-1", "worker_memory": "16GiB", "spot_policy": "spot"},
    )
    kw = coiled_kwargs(options)
    assert kw == {
        "n_workers": 8,
        "worker_memory": "16GiB",
        "spot_policy": "spot",
        "environ": BLAS_ENV,
        "region": "ap-east-1",
    }
