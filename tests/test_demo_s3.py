"""``ncp-subsidence demo --store s3://...`` against a moto S3 server on 127.0.0.1.

The demo reads the session's tiny twin, starts its LocalCluster and runs every stage into the
bucket; the endpoint reaches the store through ``--set store.storage_options.endpoint_url=...``
(credentials from the environment, set by the ``moto_server`` fixture).
"""

from __future__ import annotations

import json

import pytest
import s3fs

from ncp_subsidence.cli import main


@pytest.mark.slow
def test_demo_runs_every_stage_into_s3(s3_bucket, tiny_twin, tmp_path, monkeypatch, capsys):
    url, options = s3_bucket
    monkeypatch.chdir(tmp_path)
    store = f"{url}/ncp"
    code = main(
        [
            "demo",
            "--preset",
            "tiny",
            "--workers",
            "2",
            "--store",
            store,
            "--set",
            f"store.storage_options.endpoint_url={options['endpoint_url']}",
            "--set",
            f"sources.twin.directory={tiny_twin.root}",  # the session's twin: not written again
            "--set",
            "geodetector.draws=4",
            "--set",
            "geodetector.permutations=49",
            "--set",  # the model choice is not what this test is about: polynomials only
            "adjust.candidates=[P0, P1, P2, P3]",
            "-q",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    line = next(s for s in out.splitlines() if s.startswith("report: "))
    assert line.startswith(f"report: {store}/report/") and line.endswith("/index.html")
    fs = s3fs.S3FileSystem(
        client_kwargs={"endpoint_url": options["endpoint_url"]},
        key=options["key"],
        secret=options["secret"],
    )
    index = line.removeprefix("report: s3://")
    assert fs.exists(index)
    html = fs.cat(index).decode()
    assert "<html" in html.lower()
    summary = json.loads(fs.cat(index.rsplit("/", 1)[0] + "/summary.json"))
    assert summary  # the report's summary of the run
    # every stage published a version in the bucket, and nothing was written locally
    bucket_path = store.removeprefix("s3://")
    for stage in ("sbas", "adjust", "mosaic", "hydro", "geodetector", "analysis", "report"):
        attrs = json.loads(fs.cat(f"{bucket_path}/{stage}/zarr.json"))["attributes"]
        assert attrs["ncp_subsidence"]["current"]["version"], stage
    assert sorted(p.name for p in tmp_path.iterdir()) == []
