"""Shared fixtures: real servers on 127.0.0.1, started and stopped by the tests that need them."""

from __future__ import annotations

import logging
import os
import uuid

import pytest


@pytest.fixture(scope="session")
def moto_server():
    """An S3 API (moto server) on 127.0.0.1; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing-key-id")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing-secret-key")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(moto_server):
    """A fresh bucket on the moto server; yields (url prefix, storage_options)."""
    import s3fs

    options = {"endpoint_url": moto_server, "key": "testing-key-id", "secret": "testing-secret-key"}
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": moto_server}, key=options["key"], secret=options["secret"])
    bucket = f"ncp-{uuid.uuid4().hex[:12]}"
    fs.mkdir(bucket)
    yield f"s3://{bucket}", {"endpoint_url": moto_server, "key": options["key"], "secret": options["secret"]}


@pytest.fixture(scope="session")
def local_cluster():
    """A real 2-process LocalCluster (one thread each) for the session."""
    from distributed import LocalCluster

    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        memory_limit="2GiB",
    )
    try:
        yield cluster
    finally:
        cluster.close()
