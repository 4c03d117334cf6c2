"""Stage ``report``: the offline HTML page renders in headless Chromium (Debian's ``chromium``).

Chromium is driven over the DevTools protocol (``websocket-client``): the page is loaded from
``file://``, every request, console message, log entry and exception is recorded, each ``<img>``
is checked to have loaded, and a screenshot is taken. A deliberately broken page is checked the
same way first, so the checks are known to fail when they should.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from ncp_subsidence.testing.stages import truth_analysis_config, truth_analysis_store

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def report_dir(tiny_twin, tiny_run, tmp_path_factory):
    dest = tmp_path_factory.getbasetemp() / "analysis-truth-store"
    cfg = truth_analysis_config(tiny_twin, str(dest))
    store = truth_analysis_store(tiny_twin, tiny_run[0].store.url, str(dest), cfg)
    return Path(dest) / "report" / store.record("report").version


class Browser:
    """A headless Chromium and one page, spoken to over the DevTools protocol."""

    def __init__(self, profile: Path) -> None:
        import websocket

        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not start its DevTools server")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30)
        self.next_id = 0
        self.events: list[dict] = []
        for method in ("Page.enable", "Runtime.enable", "Log.enable", "Network.enable"):
            self.call(method)

    def call(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def load(self, url: str) -> dict:
        self.events.clear()
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + 30
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not finish loading")
            self.events.append(json.loads(self.ws.recv()))
        images = self.call(
            "Runtime.evaluate",
            expression="JSON.stringify(Array.from(document.images).map("
            "i => [i.getAttribute('src'), i.complete, i.naturalWidth]))",
            returnByValue=True,
        )["result"]["value"]
        errors = [
            e["params"]["entry"]["text"]
            for e in self.events
            if e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error"
        ]
        errors += [
            str(e["params"].get("args"))
            for e in self.events
            if e.get("method") == "Runtime.consoleAPICalled"
            and e["params"]["type"] in ("error", "assert")
        ]
        errors += [
            e["params"]["exceptionDetails"].get("text", "exception")
            for e in self.events
            if e.get("method") == "Runtime.exceptionThrown"
        ]
        requests = [
            e["params"]["request"]["url"]
            for e in self.events
            if e.get("method") == "Network.requestWillBeSent"
        ]
        shot = base64.b64decode(
            self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        )
        return {"images": json.loads(images), "errors": errors, "requests": requests, "png": shot}

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium package (apt-get install chromium)"
)
def test_report_renders_offline_in_headless_chromium(report_dir, tmp_path):
    index = report_dir / "index.html"
    text = index.read_text()
    assert "http://" not in text and "https://" not in text and "//cdn" not in text
    summary = json.loads((report_dir / "summary.json").read_text())
    for name in summary["figures"]:
        assert (report_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'src="{name}"' in text
    expected = {
        "map_vertical_velocity.png",
        "map_cumulative_displacement.png",
        "map_gwsa_trend.png",
        "factors.png",
        "region_series.png",
        "lag_correlation.png",
        "yearly_velocity.png",
        "geodetector_q.png",
        "geodetector_interaction.png",
    }
    assert expected <= set(summary["figures"])
    assert "mm/yr" in text and "subsidence is negative" in text
    assert summary["wide_area"]["peak_year"] == 2018

    broken = tmp_path / "broken.html"
    broken.write_text(
        '<!DOCTYPE html><html><body><img src="missing.png">'
        "<script>console.error('boom')</script></body></html>"
    )
    browser = Browser(tmp_path / "profile")
    try:
        bad = browser.load(broken.as_uri())
        good = browser.load(index.as_uri())
    finally:
        browser.close()
    # the checks catch a missing image and a console error ...
    assert bad["images"] == [["missing.png", True, 0]]
    assert any("boom" in e for e in bad["errors"])
    # ... and the report has neither
    assert len(good["images"]) == len(summary["figures"])
    for src, complete, width in good["images"]:
        assert complete and width > 0, src
    assert good["errors"] == []
    assert all(u.startswith(("file:", "data:")) for u in good["requests"]), good["requests"]
    assert good["png"][:8] == b"\x89PNG\r\n\x1a\n" and len(good["png"]) > 10_000
    (tmp_path / "report_screenshot.png").write_bytes(good["png"])


def test_index_html_template_escapes_and_groups_sections():
    """index.html comes from the packaged Jinja2 template: text escaped, tables kept as HTML,
    figures under one heading per run of the same section, in order."""
    from importlib.resources import files

    from ncp_subsidence.stages._report_html import render_html
    from ncp_subsidence.stages._report_maps import Figure

    assert files("ncp_subsidence").joinpath("templates/report_index.html").is_file()
    figures = [
        Figure("Maps", "a.png", b"", "velocity <mm/yr> & sign"),
        Figure("Maps", "b.png", b"", "cumulative"),
        Figure("Geodetector", "c.png", b"", "q"),
    ]
    text = render_html(
        "NCP <twin>", figures, [("Volumes & loss", "<table><tr><td>1</td></tr></table>")]
    )
    assert text.startswith("<!DOCTYPE html>\n") and text.endswith("</body></html>")
    assert "<title>NCP &lt;twin&gt;</title>" in text and "<h1>NCP &lt;twin&gt;</h1>" in text
    assert (
        '<figure><img src="a.png" alt="velocity &lt;mm/yr&gt; &amp; sign">'
        "<figcaption>velocity &lt;mm/yr&gt; &amp; sign</figcaption></figure>"
    ) in text
    assert text.count("<h2>Maps</h2>") == 1
    assert (
        text.index("<h2>Maps</h2>") < text.index('src="b.png"') < text.index("<h2>Geodetector</h2>")
    )
    assert "<h3>Volumes &amp; loss</h3><table><tr><td>1</td></tr></table>" in text
    assert "subsidence is negative" in text and "http" not in text
