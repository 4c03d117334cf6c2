"""``ncp-subsidence demo --store s3://...`` against a moto S3 server on 127.0.0.1.

The demo reads the session's tiny twin, starts its LocalCluster and runs every stage into the
bucket; the endpoint reaches the store through ``--set store.storage_options.endpoint_url=...``
(credentials from the environment, set by the ``moto_server`` fixture).
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest
import s3fs

from ncp_subsidence.cli import main


class _ReportParts(HTMLParser):
    """Collects what a report page is made of: section ids, table captions, images, links."""

    def __init__(self) -> None:
        super().__init__()
        self.h2_ids: set[str] = set()
        self.dd_ids: set[str] = set()
        self.images: set[str] = set()
        self.links: set[str] = set()
        self.h3: list[str] = []
        self._in_h3 = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "h2" and a.get("id"):
            self.h2_ids.add(a["id"])
        elif tag == "dd" and a.get("id"):
            self.dd_ids.add(a["id"])
        elif tag == "img":
            self.images.add(a.get("src", ""))
        elif tag == "a":
            self.links.add(a.get("href", ""))
        self._in_h3 = tag == "h3"
        if self._in_h3:
            self.h3.append("")

    def handle_endtag(self, tag):
        if tag == "h3":
            self._in_h3 = False

    def handle_data(self, data):
        if self._in_h3:
            self.h3[-1] += data


@pytest.mark.slow
def test_demo_runs_every_stage_into_s3(s3_bucket, tiny_twin, tmp_path, monkeypatch, capsys):
    url, options = s3_bucket
    monkeypatch.chdir(tmp_path)
    # stderr is not a terminal here (captured): progress comes as log lines, one a second
    monkeypatch.setenv("NCP_SUBSIDENCE_PROGRESS_INTERVAL", "1")
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
        ]
    )
    captured = capsys.readouterr()
    out, err = captured.out, captured.err
    assert code == 0, out + err
    # "stage k/10" lines with times, and periodic task counts during the long computes
    for k, stage in enumerate(("discover", "ingest", "sbas", "adjust", "mosaic"), start=1):
        assert re.search(rf"stage {k}/10 {stage}: running \(version ", err), (stage, err[-3000:])
        assert re.search(rf"stage {k}/10 {stage}: done in [0-9.]+ s \([0-9]+ s since", err), stage
    assert re.search(r"stage \d+/10 \w+: [\d,]+/[\d,]+ tasks \(\d+%\), \d+ s", err), err[-3000:]
    # numbers in log lines are rounded: no 16-digit floats, no Python dicts
    assert not re.search(r"\d\.\d{10,}", err), re.findall(r".*\d\.\d{10,}.*", err)[:5]
    assert "{'" not in err
    # the demo ends with the command that validates it and the stable report path
    assert out.splitlines()[-1].strip().startswith("ncp-subsidence validate --truth ")
    assert any(s.startswith("latest report (stable path): ") for s in out.splitlines())
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
    # every part of a full run's report, found by parsing its HTML
    parts = _ReportParts()
    parts.feed(html)
    assert {"input-kind", "config-digest"} <= parts.dd_ids  # the run header
    assert {"per-frame", "adjustment", "validation", "gnss-validation"} <= parts.h2_ids
    frames = {f for f in parts.images if f.startswith("frame_")}
    assert len(frames) == 2, parts.images  # per-frame LOS velocity, coherence, uncertainty
    assert "adjust_residuals.png" in parts.images  # the GNSS before/after scatter
    assert any(h.startswith("Adjustment: cross-validation of every candidate") for h in parts.h3)
    assert any(h.startswith("Adjustment: chosen correction model") for h in parts.h3)
    assert "interactive.html" in parts.links and fs.exists(
        index.rsplit("/", 1)[0] + "/interactive.html"
    )
    # every stage published a version in the bucket, and nothing was written locally
    bucket_path = store.removeprefix("s3://")
    for stage in ("sbas", "adjust", "mosaic", "hydro", "geodetector", "analysis", "report"):
        attrs = json.loads(fs.cat(f"{bucket_path}/{stage}/zarr.json"))["attributes"]
        assert attrs["ncp_subsidence"]["current"]["version"], stage
    assert sorted(p.name for p in tmp_path.iterdir()) == []
