"""``ncp-subsidence sources`` against a STAC API and a file server that require a bearer token."""

from __future__ import annotations

import http.server
import json
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from ncp_subsidence.cli import main
from ncp_subsidence.testing.servers import FileServer, free_port, rustac_server

TOKEN = "s3cr3t-t0ken-xyz"


class TokenProxy:
    """Forward GET and POST to ``upstream``, 401 without ``Authorization: Bearer <token>``; rewrites links."""

    def __init__(self, upstream: str, token: str):
        self.upstream, self.token, self.url = upstream.rstrip("/"), token, ""

    def __enter__(self) -> TokenProxy:
        proxy = self
        self.url = f"http://127.0.0.1:{free_port()}"

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return

            def _send(self, status: int, body: bytes, ctype: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.headers.get("Authorization") != f"Bearer {proxy.token}":
                    self._send(401, b"unauthorized")
                    return
                data = None
                if self.command == "POST":
                    data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                    data = data.replace(proxy.url.encode(), proxy.upstream.encode())
                request = urllib.request.Request(
                    proxy.upstream + self.path,
                    data=data,
                    headers={"Content-Type": self.headers.get("Content-Type", "application/json")},
                )
                try:
                    with urllib.request.urlopen(request, timeout=10) as r:
                        body, status, ctype = r.read(), r.status, r.headers.get("Content-Type")
                except urllib.error.HTTPError as err:
                    body, status, ctype = err.read(), err.code, "application/json"
                self._send(status, body.replace(proxy.upstream.encode(), proxy.url.encode()), ctype)

            do_POST = do_GET

        port = int(self.url.rsplit(":", 1)[1])
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def served(tmp_path):
    files = tmp_path / "files"
    files.mkdir()
    with rasterio.open(
        files / "dem.tif",
        "w",
        driver="GTiff",
        width=32,
        height=32,
        count=1,
        dtype="float32",
        crs="EPSG:4326",
        transform=from_origin(115.0, 38.0, 0.01, 0.01),
        tiled=True,
        blockxsize=16,
        blockysize=16,
    ) as dst:
        dst.write(np.ones((1, 32, 32), "float32"))
        dst.update_tags(1, units="m")
    (files / "midas.IGS14.txt").write_text("BJFS 2010.0 2020.0 9.0 1 2 3\n")
    with FileServer(files, token=TOKEN) as fs:
        item = {
            "type": "Feature",
            "stac_version": "1.0.0",
            "id": "dem-1",
            "collection": "dem",
            "geometry": {
                "type": "Polygon",
                "coordinates": [
                    [[115, 37.68], [115.32, 37.68], [115.32, 38], [115, 38], [115, 37.68]]
                ],
            },
            "bbox": [115, 37.68, 115.32, 38],
            "properties": {"datetime": "2020-01-01T00:00:00Z"},
            "links": [],
            "assets": {"data": {"href": f"{fs.url}/dem.tif", "roles": ["data"]}},
        }
        (tmp_path / "items.ndjson").write_text(json.dumps(item) + "\n")
        with rustac_server(tmp_path / "items.ndjson") as api, TokenProxy(api, TOKEN) as proxy:
            yield fs, proxy


def _config(tmp_path, fs, proxy, token):
    auth = {"Authorization": f"Bearer {token}"}
    cfg = {
        "sources": {
            "dem": {"kind": "stac_api", "url": proxy.url, "collections": ["dem"], "headers": auth},
            "gnss": {
                "kind": "file",
                "url": f"{fs.url}/midas.IGS14.txt",
                "collections": ["gnss"],
                "headers": auth,
            },
            "twin": {"fill_unset": True},
            "retries": 0,
            "timeout_s": 10,
        }
    }
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_sources_ok_with_the_token(tmp_path, served, capsys):
    fs, proxy = served
    assert main(["sources", "-c", _config(tmp_path, fs, proxy, TOKEN)]) == 0
    out = capsys.readouterr()
    lines = [line for line in out.out.splitlines() if line.startswith(("ok", "FAIL"))]
    assert len(lines) == 2 and all(line.startswith("ok") for line in lines), out.out
    dem = next(line for line in lines if " dem:" in line)
    assert "1 item(s)" in dem and "[m]" in dem and "headers (Authorization)" in dem
    assert "BJFS" in next(line for line in lines if " gnss:" in line)
    assert TOKEN not in out.out + out.err
    assert fs.auth_seen and all(fs.auth_seen)


def test_sources_fail_one_line_each_without_the_token(tmp_path, served, capsys):
    fs, proxy = served
    assert main(["sources", "-c", _config(tmp_path, fs, proxy, "wrong-token-123")]) == 1
    out = capsys.readouterr()
    lines = [line for line in out.out.splitlines() if line.startswith("FAIL")]
    assert {line.split(":")[0] for line in lines} == {"FAIL  dem", "FAIL  gnss"}, out.out
    assert "wrong-token-123" not in out.out + out.err
