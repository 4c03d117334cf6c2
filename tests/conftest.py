"""Shared fixtures: real servers on 127.0.0.1, started and stopped by the tests that need them."""

from __future__ import annotations

import os
import uuid

import pytest


@pytest.fixture(scope="session")
def moto_server():
    """An S3 API (moto server) on 127.0.0.1, in its own process; yields its endpoint URL.

    A separate process, not moto's threaded server: in the test process it would share the GIL
    with the client it serves, and every S3 test would run at the speed of the slower of the two.
    """
    from ncp_subsidence.testing.servers import moto_server as serve

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing-key-id")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing-secret-key")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with serve() as url:
        yield url


@pytest.fixture
def s3_bucket(moto_server):
    """A fresh bucket on the moto server; yields (url prefix, storage_options)."""
    import s3fs

    options = {"endpoint_url": moto_server, "key": "testing-key-id", "secret": "testing-secret-key"}
    fs = s3fs.S3FileSystem(
        client_kwargs={"endpoint_url": moto_server}, key=options["key"], secret=options["secret"]
    )
    bucket = f"ncp-{uuid.uuid4().hex[:12]}"
    fs.mkdir(bucket)
    yield (
        f"s3://{bucket}",
        {"endpoint_url": moto_server, "key": options["key"], "secret": options["secret"]},
    )


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


@pytest.fixture(scope="session")
def tiny_twin(tmp_path_factory):
    """The `tiny` NCP twin (seed 0), written once per session; yields its TwinManifest."""
    from ncp_subsidence.synthetic import write_twin

    return write_twin(tmp_path_factory.mktemp("twin") / "tiny", preset="tiny", seed=0)


@pytest.fixture(scope="session")
def providers_twin(tmp_path_factory):
    """The `tiny` twin (seed 0) in the providers' layouts (a LiCSAR frame folder, HyP3 zips).

    Read-only for the tests that share it (the twin layouts and the README's real-data route).
    """
    from ncp_subsidence.synthetic import write_twin

    root = tmp_path_factory.mktemp("twin-providers") / "tiny"
    return write_twin(root, preset="tiny", seed=0, layouts="providers")


@pytest.fixture(scope="session")
def tiny_twin_noise_free(tmp_path_factory):
    """The `tiny` twin without atmosphere, noise, phase offsets or unwrapping errors."""
    from ncp_subsidence.synthetic import write_twin

    return write_twin(
        tmp_path_factory.mktemp("twin") / "noise-free", preset="tiny", seed=0, noise=False
    )


@pytest.fixture(scope="session")
def rustac_twin(tiny_twin):
    """A STAC API (rustac) serving the tiny twin's items on 127.0.0.1; yields its URL."""
    from ncp_subsidence.testing.servers import rustac_server

    with rustac_server(tiny_twin.items_ndjson) as url:
        yield url


@pytest.fixture(scope="session")
def tiny_run(tiny_twin, tmp_path_factory):
    """discover -> ingest -> sbas run once per session on the tiny twin; yields (config, store).

    Tests read the products; none may write into this store.
    """
    import dask

    from ncp_subsidence.io.stores import ProductStore
    from ncp_subsidence.pipeline import run_pipeline

    cfg = twin_config(tiny_twin, tmp_path_factory.mktemp("run") / "store")
    with dask.config.set(scheduler="threads", num_workers=2):
        run_pipeline(cfg, ["discover", "ingest", "sbas"])
    return cfg, ProductStore(cfg.store.url)


def twin_config(manifest, store_url, **sections):
    """A Config that runs on the given twin with a store at ``store_url``.

    Grids follow the twin preset as ``ncp-subsidence demo`` sets them
    (:func:`ncp_subsidence.synthetic.presets.twin_settings`); ``sections`` override.
    """
    from ncp_subsidence.config import Config
    from ncp_subsidence.synthetic.presets import twin_settings

    data = {
        "store": {"url": str(store_url)},
        "sources": {
            "twin": {
                "preset": manifest.preset,
                "seed": manifest.seed,
                "directory": str(manifest.root),
                "fill_unset": True,
            }
        },
        "factors": {"resolution_deg": manifest.fine_resolution_deg},
        "hydro": {"resolution_deg": manifest.grids["hydro_resolution_deg"]},
        "ingest": {"chunk_y": 64, "chunk_x": 64},
    }
    for dotted, value in twin_settings(manifest.preset).items():
        section, name = dotted.split(".")
        data.setdefault(section, {}).setdefault(name, value)
    for key, value in sections.items():
        data.setdefault(key, {}).update(value)
    return Config.model_validate(data)


@pytest.fixture(scope="session")
def truth_pipeline(tiny_twin, tmp_path_factory):
    """discover -> ingest -> hydro (truth) -> factors -> mosaic (truth) -> geodetector on the tiny twin.

    ``hydro`` and ``mosaic`` are :mod:`ncp_subsidence.testing.truth_stages`: the twin's truth
    written as real products (GWSA trend at 0.025 deg, frame truth velocity mosaicked at the
    0.025 deg InSAR posting), so ``factors`` averages 2 x 2 hydro cells and ``geodetector``
    takes the median of 2 x 2 mosaic pixels per 0.05 deg factor cell. Yields (config, store).
    """
    import dask

    from ncp_subsidence.io.stores import ProductStore
    from ncp_subsidence.pipeline import run_pipeline
    from ncp_subsidence.testing.truth_stages import TruthHydroStage, TruthMosaicStage

    cfg = twin_config(
        tiny_twin,
        tmp_path_factory.mktemp("geodetector") / "store",
        geodetector={"draws": 4, "permutations": 49, "chunk_cells": 32},
    )
    stages = [
        "discover",
        "ingest",
        TruthHydroStage(str(tiny_twin.root), tiny_twin.seed, resolution_deg=0.025),
        "factors",
        TruthMosaicStage(str(tiny_twin.truth)),
        "geodetector",
    ]
    with dask.config.set(scheduler="threads", num_workers=2):
        run_pipeline(cfg, stages)
    return cfg, ProductStore(cfg.store.url)
