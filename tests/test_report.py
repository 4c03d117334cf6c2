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

import numpy as np
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

    def load(self, url: str, offline: bool = False) -> dict:
        self.events.clear()
        self.call(
            "Network.emulateNetworkConditions",
            offline=offline,
            latency=0,
            downloadThroughput=-1,
            uploadThroughput=-1,
        )
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

    def evaluate(self, expression: str):
        """The value of a JS expression (awaited when it is a promise); raises on exceptions."""
        out = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in out:
            raise RuntimeError(out["exceptionDetails"])
        return out["result"].get("value")

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
    # per frame: LOS velocity, temporal coherence and uncertainty of each sbas frame
    assert {"frame_A040.png", "frame_A142.png"} <= set(summary["figures"])
    assert '<h2 id="per-frame">Per frame</h2>' in text
    # figures full width and clickable
    assert '<a href="map_vertical_velocity.png"><img src="map_vertical_velocity.png"' in text

    broken = tmp_path / "broken.html"
    broken.write_text(
        '<!DOCTYPE html><html><body><img src="missing.png">'
        "<script>console.error('boom')</script></body></html>"
    )
    browser = Browser(tmp_path / "profile")
    try:
        bad = browser.load(broken.as_uri())
        good = browser.load(index.as_uri(), offline=True)
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
        '<figure><a href="a.png"><img src="a.png" alt="velocity &lt;mm/yr&gt; &amp; sign"></a>'
        "<figcaption>velocity &lt;mm/yr&gt; &amp; sign</figcaption></figure>"
    ) in text
    assert text.count('<h2 id="maps">Maps</h2>') == 1
    assert (
        text.index('<h2 id="maps">Maps</h2>')
        < text.index('src="b.png"')
        < text.index('<h2 id="geodetector">Geodetector</h2>')
    )
    assert "<h3>Volumes &amp; loss</h3><table><tr><td>1</td></tr></table>" in text
    assert "subsidence is negative" in text and "http" not in text


# ------------------------------------------------------------------------------------------
# the header, numbers for people, per-frame/adjustment/validation sections, interactive page
# ------------------------------------------------------------------------------------------


def test_report_header_names_the_run_and_bans_exponents(report_dir):
    from html.parser import HTMLParser

    text = (report_dir / "index.html").read_text()
    # a twin run: the banner, the input kind, the config digest, version and inputs with counts
    assert 'id="synthetic-banner"' in text and "Synthetic inputs" in text
    assert '<dd id="input-kind">twin</dd>' in text
    digest = text.split('<dd id="config-digest">')[1].split("<")[0]
    assert len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)
    assert "ncp_subsidence 0.1.0" in text and "run started" in text
    assert '<td>interferograms/A040</td><td class="num">49</td>' in text

    class Cells(HTMLParser):
        def __init__(self):
            super().__init__()
            self.cells, self._in = [], False

        def handle_starttag(self, tag, attrs):
            self._in = tag in ("td", "th")

        def handle_data(self, data):
            if self._in:
                self.cells.append(data)

    parser = Cells()
    parser.feed(text)
    cells = parser.cells

    # numbers written for people: no exponent anywhere, thousands separators, p < 0.001
    def exponent(cell: str) -> bool:
        try:
            float(cell)
        except ValueError:
            return False
        return "e" in cell.lower()

    # the product versions table shows each fingerprint's first 12 hex digits, which may read
    # as a number with an exponent ("465e61165339"): those cells are hashes, not numbers
    from ncp_subsidence.config import STAGE_NAMES
    from ncp_subsidence.io.stores import ProductStore

    store = ProductStore(str(report_dir.parent.parent))
    records = [store.record(stage) for stage in STAGE_NAMES]
    hashes = {r.fingerprint[:12] for r in records if r is not None}
    assert not [c for c in cells if exponent(c.strip()) and c.strip() not in hashes]
    assert "e+0" not in text  # (a version hash may hold "e-0": cells checked above)
    assert any("," in c and c.replace(",", "").replace(".", "").isdigit() for c in cells)
    assert "&lt; 0.001" in text
    # the percentile named; "reliable" replaced by what it measures, significance shown
    assert "99.9th percentile of cumulative subsidence" in text
    assert ">reliable<" not in text and "lag found, at most 20 % months missing" in text
    assert "significant (p &lt; 0.05)" in text
    # no validation next to this store: a note says where it looked
    assert '<h2 id="validation">Validation</h2>' in text and "No validation table" in text
    summary = json.loads((report_dir / "summary.json").read_text())
    assert summary["run"]["input_kind"] == "twin" and summary["run"]["config_digest"] == digest


def test_number_formatting_rules():
    import numpy as np

    from ncp_subsidence.stages._report_format import fmt_number, fmt_p, fmt_value

    assert fmt_number(7.305e4) == "73,050" and fmt_number(np.int64(1234567)) == "1,234,567"
    assert fmt_number(963.07) == "963.1" and fmt_number(35.648) == "35.65"
    assert fmt_number(0.92693) == "0.927" and fmt_number(-0.000123) == "-0.000123"
    assert fmt_number(float("nan")) == "–" and fmt_number(None) == "–"
    assert fmt_p(1.7e-11) == "< 0.001" and fmt_p(0.29) == "0.290"
    assert fmt_value(2018, "year") == "2018" and fmt_value(np.bool_(False)) == "no"


def _adjust_attrs():
    cv = {
        "P0": {"cv_rmse": 2.5, "se": 0.3, "n": 20, "min_n": 3, "status": "ok", "n_notes": 0},
        "P1": {"cv_rmse": 1.21, "se": 0.2, "n": 20, "min_n": 6, "status": "ok", "n_notes": 0},
        "GP": {"cv_rmse": None, "se": None, "n": 20, "min_n": 30, "status": "insufficient"},
    }
    return {
        "A040": {
            "selected_model": "P1",
            "cv_scheme": "kfold",
            "cv_table": json.dumps(cv),
            "correction_cv_rmse": 1.21,
            "n_gnss_train": 20,
            "n_gnss_holdout": 5,
            "n_gnss_rejected": 1,
            "holdout_rmse_vertical_before": 12345.678,
            "holdout_rmse_vertical_after": 1.5e-4,
            "holdout_rmse_los_before": None,
            "holdout_rmse_los_after": None,
        }
    }


def test_adjustment_section_tables_scatter_and_validation(tmp_path):
    import pandas as pd

    from ncp_subsidence.stages._report_frames import adjustment_tables, residual_scatter
    from ncp_subsidence.stages._report_html import render_html, validation_table
    from ncp_subsidence.stages._report_inputs import read_validation

    tables = adjustment_tables(_adjust_attrs())
    assert [c.split(":")[0] for c, _ in tables] == ["Adjustment", "Adjustment"]
    summary_html, cv_html = tables[0][1], tables[1][1]
    assert "<td>P1</td>" in summary_html and '<td class="num">12,346</td>' in summary_html
    assert '<td class="num">0.000150</td>' in summary_html and "e-0" not in summary_html
    # every candidate, the chosen one marked, a missing CV RMSE as a dash
    assert cv_html.count("<tr>") == 1 + 3 and "<td>yes</td>" in cv_html and "–" in cv_html
    stations = pd.DataFrame(
        {
            "frame": ["A040"] * 4,
            "station": ["a", "b", "c", "d"],
            "role": ["train", "train", "holdout", "rejected"],
            "lon": [115.0, 115.5, 116.0, 116.5],
            "lat": [38.0, 38.5, 39.0, 39.5],
            "residual_before": [3.0, -2.0, 4.0, 9.0],
            "residual_after": [0.2, -0.1, 0.8, 7.0],
        }
    )
    fig = residual_scatter(stations, dpi=30)
    assert fig.section == "Adjustment" and fig.png[:8] == b"\x89PNG\r\n\x1a\n"

    class Store:  # a store root holding validation/validation.json
        url = str(tmp_path)

        def read_file(self, path):
            return (tmp_path / path).read_bytes()

    assert read_validation(Store()) == (None, None)
    (tmp_path / "validation").mkdir()
    metrics = [
        {"metric": "sbas velocity RMSE [A040]", "value": 1.234e-5, "tolerance": 2.0, "op": "<=",
         "pass": True, "unit": "mm/yr", "note": "n"},
        {"metric": "area above tau", "value": 72882.2, "tolerance": 0.1, "op": "<=",
         "pass": False, "unit": "km2", "note": "m"},
    ]  # fmt: skip
    (tmp_path / "validation" / "validation.json").write_text(
        json.dumps({"all_pass": False, "metrics": metrics})
    )
    data, where = read_validation(Store())
    assert where == "validation/validation.json"
    caption, vhtml = validation_table(data, where)
    assert "1 of 2 metrics within tolerance" in caption
    assert "72,882" in vhtml and "0.0000123" in vhtml and "<td>no</td>" in vhtml
    page = render_html(
        "t",
        [fig],
        [],
        section_tables={"Adjustment": tables, "Validation": [(caption, vhtml)]},
    )
    assert page.index('<h2 id="adjustment">') < page.index("adjust_residuals.png")
    assert page.index("adjust_residuals.png") < page.index("chosen correction model")
    assert '<h2 id="validation">Validation</h2>' in page and "e+0" not in page


@pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium package (apt-get install chromium)"
)
def test_interactive_map_loads_offline_and_a_click_shows_the_cells_series(report_dir, tmp_path):
    page = report_dir / "interactive.html"
    assert 'href="interactive.html"' in (report_dir / "index.html").read_text()
    assert 10_000 < page.stat().st_size < 8_000_000  # BokehJS inline, the cube coarsened
    browser = Browser(tmp_path / "profile")
    series = """(() => { const doc = Bokeh.documents[0];
        return [Array.from(doc.get_model_by_name('disp_series').data.v),
                Array.from(doc.get_model_by_name('gwsa_series').data.v)]; })()"""
    try:
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            width=1400,
            height=1000,
            deviceScaleFactor=1,
            mobile=False,
        )
        out = browser.load(page.as_uri(), offline=True)
        # the map's plotting frame on the screen (CSS pixels): left, top, width, height
        left, top, width, height = browser.evaluate(
            """(() => { const doc = Bokeh.documents[0];
              const map = doc.get_model_by_name('map');
              const view = Object.values(Bokeh.index)[0].owner.get_one(map);
              const r = view.canvas_view.el.getBoundingClientRect(), f = view.frame.bbox;
              return [r.left + f.left, r.top + f.top, f.width, f.height]; })()"""
        )
        shown = [browser.evaluate(series)]
        for fx, fy in ((0.45, 0.5), (0.6, 0.35)):  # two cells of the plain, clicked as a user does
            x, y = left + fx * width, top + fy * height
            for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
                browser.call(
                    "Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1
                )
            deadline = time.monotonic() + 10
            while browser.evaluate(series) == shown[-1] and time.monotonic() < deadline:
                time.sleep(0.1)
            shown.append(browser.evaluate(series))
            time.sleep(0.6)  # two clicks closer in time are one double tap, not two taps
        after = [e for e in browser.events if e.get("method") == "Runtime.exceptionThrown"]
    finally:
        browser.close()
    assert out["errors"] == [] and after == []
    assert all(u.startswith(("file:", "data:", "blob:")) for u in out["requests"]), out["requests"]
    for disp, gwsa in shown[1:]:
        finite_d = [v for v in disp if v is not None and np.isfinite(v)]
        finite_g = [v for v in gwsa if v is not None and np.isfinite(v)]
        assert len(finite_d) > 10, disp  # the clicked cell's vertical displacement series
        assert len(finite_g) > 10, gwsa  # and the GWSA series of its cell
    # each click changed the plotted series: nothing before the first, another cell after it
    assert shown[0] != shown[1] and shown[1][0] != shown[2][0], shown


@pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium package (apt-get install chromium)"
)
def test_synthetic_banner_shown_on_twin_inputs_and_absent_on_real_ones(report_dir, tmp_path):
    """In the browser: the twin run's report shows the banner; the header of a run whose config
    names every source (input kind ``real``, recorded by ``run_pipeline`` in the store's root
    attrs) renders without it."""
    from ncp_subsidence.config import Config
    from ncp_subsidence.io.stores import open_store
    from ncp_subsidence.sources import SOURCE_KEYS, input_kind
    from ncp_subsidence.stages._report_html import render_html
    from ncp_subsidence.stages._report_inputs import run_info

    sources = {k: {"kind": "static_catalog", "url": f"/data/{k}/catalog.json"} for k in SOURCE_KEYS}
    sources["interferograms"] = {"A040": {"kind": "static_catalog", "url": "/data/A040.json"}}
    real = Config(sources=sources, store={"url": str(tmp_path / "real-store")})
    assert input_kind(real) == "real"
    store = open_store(real.store)
    store.update_root_attrs({"input_kind": input_kind(real), "ncp_subsidence_version": "0.1.0"})
    page = tmp_path / "real.html"
    page.write_text(render_html("NCP subsidence", [], [], info=run_info(store)))
    banner = """(() => { const b = document.getElementById('synthetic-banner');
        return [b !== null && b.getBoundingClientRect().height > 0,
                document.getElementById('input-kind').textContent]; })()"""
    browser = Browser(tmp_path / "profile")
    try:
        twin_page = browser.load((report_dir / "index.html").as_uri(), offline=True)
        on_twin = browser.evaluate(banner)
        real_page = browser.load(page.as_uri(), offline=True)
        on_real = browser.evaluate(banner)
    finally:
        browser.close()
    assert twin_page["errors"] == [] and real_page["errors"] == []
    assert on_twin == [True, "twin"]
    assert on_real == [False, "real"]


def test_coastline_from_the_packaged_land_mask():
    """The coast of the Bohai Sea where it is (Tanggu, Tianjin: about 117.7 E, 39.0 N), none
    inland (Beijing)."""
    from ncp_subsidence.io.coast import coastline

    lines = coastline((113.5, 34.5, 119.5, 40.5))
    assert lines and all(line.ndim == 2 and line.shape[1] == 2 for line in lines)
    vertices = np.concatenate(lines)
    assert vertices[:, 0].min() > 117.0  # the plain west of Tianjin has no coast
    near_tanggu = np.hypot(vertices[:, 0] - 117.72, vertices[:, 1] - 39.0)
    assert near_tanggu.min() < 0.1
    assert coastline((115.5, 39.5, 116.5, 40.5)) == []  # Beijing: inland


def test_windowed_land_mask_answers_as_the_package_lookup():
    """``io.coast.is_land`` reads only the rows it needs and answers exactly as
    ``global_land_mask.globe.is_land`` (which decompresses the whole 933 MB mask): on the plain,
    on cell edges, on both poles' clipped rows and across the antimeridian."""
    from global_land_mask import globe

    from ncp_subsidence.io.coast import is_land

    rng = np.random.default_rng(7)
    # random points of three boxes, each with its corners; the poles' boxes hold the clipped
    # rows (lat +-90 beyond the axis' +-89.99) and the last row of the file
    boxes = [(113.5, 34.5, 119.5, 40.5), (-180.0, 80.0, 180.0, 90.0), (170.0, -90.0, 180.0, -60.0)]
    for west, south, east, north in boxes:
        lon = np.concatenate([rng.uniform(west, east, 4000), [west, east, west, east]])
        lat = np.concatenate([rng.uniform(south, north, 4000), [south, south, north, north]])
        assert np.array_equal(is_land(lat, lon), globe.is_land(lat.copy(), lon.copy()))
    # points on the cells' own edges, where the truncation to a cell decides
    edges = np.arange(34.0, 41.0, 1 / 120)
    lon = 117.0 + (edges - 34.0)
    assert np.array_equal(is_land(edges, lon), globe.is_land(edges.copy(), lon.copy()))
    # a band around the globe: the antimeridian (-180 and 180) and every longitude between
    grid_lat, grid_lon = np.meshgrid(np.arange(38.0, 40.0, 0.01), np.arange(-180.0, 181.0, 3.0))
    assert np.array_equal(is_land(grid_lat, grid_lon), globe.is_land(grid_lat, grid_lon))
    assert is_land(np.array([39.9]), np.array([116.4]))[0]  # Beijing
    assert not is_land(np.array([39.0]), np.array([119.5]))[0]  # the Bohai Sea


@pytest.mark.parametrize("dpi", [80, 110])
def test_month_bars_draw_the_pixels_of_matplotlib_bars(dpi):
    """The precipitation bars drawn as one collection look exactly like ``ax.bar``'s, 20 days
    wide at each month (NaN months left out), pixel for pixel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from ncp_subsidence.stages._report_plots import _month_bars

    time = pd.date_range("2003-01-15", periods=120, freq="MS") + pd.Timedelta(days=14)
    rng = np.random.default_rng(3)
    values = rng.gamma(2.0, 30.0, time.size)
    values[[5, 40]] = np.nan

    def render(draw):
        fig, ax = plt.subplots(figsize=(6.0, 2.6))
        ax.plot(time, np.cos(np.arange(time.size) / 6.0), lw=0.9)
        twin = ax.twinx()
        draw(twin)
        fig.canvas.draw()
        pixels = np.asarray(fig.canvas.buffer_rgba()).copy()
        limits = twin.get_ylim()
        plt.close(fig)
        return pixels, limits

    keep = np.isfinite(values)
    fig_dpi = matplotlib.rcParams["figure.dpi"]
    matplotlib.rcParams["figure.dpi"] = dpi
    try:
        reference, ref_limits = render(
            lambda a: a.bar(time[keep], values[keep], width=20, color="tab:green", alpha=0.3)
        )
        ours, limits = render(lambda a: _month_bars(a, time, values, color="tab:green", alpha=0.3))
    finally:
        matplotlib.rcParams["figure.dpi"] = fig_dpi
    assert limits[0] == ref_limits[0] == 0.0
    assert np.array_equal(ours, reference)
