"""Reliability: secrets never appear in anything a run writes.

Recognisable fake secrets are put where users put real ones: AWS keys and a session token and
an Earthdata token in the environment; S3 keys in ``store.storage_options``; an Earthdata bearer
token in a source's ``headers``. A run writes the tiny twin's products to an S3 store (moto on
127.0.0.1) with the CLI's logging at DEBUG, and a second run (the CLI) fails in a stage
whose source carries the token. Then every byte written is searched: every object in the
bucket, stdout and stderr (the logs), the exception's whole chain and traceback, the root
attrs and each stage's saved options, and the configs the package saves (``to_yaml``,
``redacted_dump``).
"""

from __future__ import annotations

import json
import logging
import traceback
import uuid

import dask
import pytest
import yaml
from conftest import twin_config

from ncp_subsidence.cli import _setup_logging, main
from ncp_subsidence.config import load_config, redacted_dump, to_yaml
from ncp_subsidence.errors import NetworkError
from ncp_subsidence.io.stores import ProductStore
from ncp_subsidence.pipeline import run_pipeline
from ncp_subsidence.testing.servers import FaultyProxy, free_port

ENV_SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAENVFAKE7Q2Z9XK1",
    "AWS_SECRET_ACCESS_KEY": "env-secret-Zq8vYw3-do-not-leak",
    "AWS_SESSION_TOKEN": "env-session-token-Pp4Lm2-do-not-leak",
    "EARTHDATA_TOKEN": "env-earthdata-token-Hh7Jk1-do-not-leak",
}
CONFIG_KEY = "AKIACFGFAKE3W8R5TN2"
CONFIG_SECRET = "cfg-secret-Bn6Vc4-do-not-leak"
BEARER = "cfg-earthdata-bearer-Ty5Ui9-do-not-leak"
SECRETS = [*ENV_SECRETS.values(), CONFIG_KEY, CONFIG_SECRET, BEARER]


@pytest.fixture
def moto(monkeypatch):
    from moto.server import ThreadedMotoServer

    for name, value in ENV_SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _leaks(text: str | bytes) -> list[str]:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return [s for s in SECRETS if s in text]


def _config(tiny_twin, endpoint, bucket):
    cfg = twin_config(tiny_twin, f"s3://{bucket}/store")
    cfg.sources.datetime = cfg.sources.hydro_datetime = "2019-01-01/2019-12-31"  # keep it short
    cfg.store.storage_options = {
        "endpoint_url": endpoint,
        "key": CONFIG_KEY,
        "secret": CONFIG_SECRET,
    }
    gnss = {
        "kind": "static_catalog",
        "url": str(tiny_twin.catalog),
        "collections": [tiny_twin.collections["gnss"]],
        "headers": {"Authorization": f"Bearer {BEARER}"},
    }
    cfg.sources.gnss = gnss
    cfg.cluster.n_workers = 1
    return cfg


def _user_yaml(cfg) -> str:
    """The user's own config file, secrets in clear (as users write them)."""
    data = cfg.model_dump(mode="json", exclude_defaults=True)
    sources = data.setdefault("sources", {})
    for name, source in [("gnss", cfg.sources.gnss)] + [
        (f"interferograms/{k}", v) for k, v in cfg.sources.interferograms.items()
    ]:
        clear = {k: v.get_secret_value() for k, v in source.headers.items()}
        if name.startswith("interferograms/"):
            sources["interferograms"][name.split("/", 1)[1]]["headers"] = clear
        else:
            sources[name]["headers"] = clear
    return yaml.safe_dump(data)


def test_no_secret_in_anything_a_run_writes(moto, tiny_twin, tmp_path, capsys):
    import s3fs

    bucket = f"ncp-{uuid.uuid4().hex[:12]}"
    fs = s3fs.S3FileSystem(key=CONFIG_KEY, secret=CONFIG_SECRET, endpoint_url=moto)
    fs.mkdir(bucket)
    cfg = _config(tiny_twin, moto, bucket)
    path = tmp_path / "config.yaml"
    path.write_text(_user_yaml(cfg))  # the user's own file holds the secrets
    assert CONFIG_SECRET in path.read_text() and BEARER in path.read_text()

    # a successful run from the user's file, with the CLI's own logging set up at DEBUG
    # (in process with the threaded scheduler: the CLI path is taken by the failing run below)
    _setup_logging(verbose=True, quiet=False)
    with dask.config.set(scheduler="threads", num_workers=2):
        run_pipeline(load_config(path), ["discover", "ingest"])
    ok = capsys.readouterr()
    assert "stage 2/2 ingest: done in" in ok.err  # the logs were captured
    assert not _leaks(ok.out + ok.err)

    # a run that fails in a stage whose source carries the bearer token (a STAC API down)
    with FaultyProxy(f"http://127.0.0.1:{free_port()}", always=True, status=401) as proxy:
        cfg.sources.interferograms = {
            "A040": {
                "kind": "stac_api",
                "url": proxy.url,
                "collections": ["twin-s1-ifg-A040"],
                "headers": {"Authorization": f"Bearer {BEARER}"},
            }
        }
        cfg.sources.retries = 0
        path.write_text(_user_yaml(cfg))
        assert main(["run", "--config", str(path), "--stages", "discover", "-q"]) == 1
        failed = capsys.readouterr()
        assert "ncp-subsidence: error: NetworkError" in failed.err
        assert not _leaks(failed.out + failed.err)
        with pytest.raises(NetworkError) as info:
            run_pipeline(cfg, ["discover"])
    chain = "".join(traceback.format_exception(info.value))
    assert proxy.url in chain and not _leaks(chain)
    assert not _leaks(repr(info.value.args)) and not _leaks(str(info.value.__cause__))

    # every object the runs wrote to the store
    fs.invalidate_cache()
    objects = fs.find(bucket)
    assert len(objects) > 50 and any(o.endswith("zarr.json") for o in objects)
    leaked = {o: _leaks(fs.cat(o)) for o in objects}
    assert not {o: s for o, s in leaked.items() if s}

    # what the store says about the run, as plain readers see it
    store = ProductStore(cfg.store.url, cfg.store.storage_options)
    attrs = store.root_attrs()
    assert attrs["config"]["store"]["storage_options"]["secret"] == "***"
    assert attrs["config"]["sources"]["gnss"]["headers"]["Authorization"] == "***"
    assert not _leaks(json.dumps(attrs))
    ds = store.open("ingest", "gnss")
    assert "ncp_subsidence_options" in ds.attrs and not _leaks(json.dumps(ds.attrs))

    # the configs the package writes
    assert not _leaks(to_yaml(cfg)) and not _leaks(json.dumps(redacted_dump(cfg)))
    assert not _leaks(repr(store)) and not _leaks(str(cfg.sources.gnss))
