"""Real servers on 127.0.0.1 for tests and benchmarks: a STAC API (rustac), an S3 API (moto),
a faulty proxy and a file server.

Both are context managers that start the server, wait until it answers, and always stop it.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

__all__ = ["FaultyProxy", "FileServer", "free_port", "moto_server", "rustac_server"]


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def moto_server(log: str | os.PathLike[str] | None = None) -> Iterator[str]:
    """An S3 API (moto server) on a free 127.0.0.1 port, in its own process; yields its URL.

    A separate process, not moto's threaded server: in the caller's process it would share the
    GIL with the client it serves, and every S3 read would run at the speed of the slower of
    the two. Always stopped on exit. ``log``: a file that receives the server's output, one
    line per request it answered (``"GET /bucket/key HTTP/1.1" 200 -``); discarded when None.
    """
    port = free_port()
    with open(log, "ab") if log is not None else contextlib.nullcontext() as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out if out is not None else subprocess.DEVNULL,
            stderr=out if out is not None else subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the moto S3 server did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _wait_http(url_host: str, port: int, path: str = "/", timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = http.client.HTTPConnection(url_host, port, timeout=1)
            conn.request("GET", path)
            if conn.getresponse().status < 500:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"server on {url_host}:{port} did not answer within {timeout} s")
        time.sleep(0.05)


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        return  # a client that gave up (timeout) is expected here


def _serve(handler: type) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve ``handler`` on a free 127.0.0.1 port in a daemon thread; the server and its URL."""
    server = _QuietServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def _stop(server: http.server.ThreadingHTTPServer | None) -> None:
    if server is not None:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def rustac_server(*hrefs: str | Path) -> Iterator[str]:
    """Serve STAC items (ndjson/JSON files) with ``rustac serve`` on 127.0.0.1; yields the API URL.

    Every item needs a ``collection``; collections are created from the items.
    """
    exe = shutil.which("rustac") or str(Path(sys.executable).with_name("rustac"))
    port = free_port()
    proc = subprocess.Popen(
        [exe, "serve", "--create-collections", "--addr", f"127.0.0.1:{port}", *map(str, hrefs)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        try:
            _wait_http("127.0.0.1", port)
        except TimeoutError:
            proc.kill()
            _, err = proc.communicate(timeout=5)
            raise RuntimeError(f"rustac serve failed to start: {err.decode()[-500:]}") from None
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class FaultyProxy:
    """An HTTP proxy on 127.0.0.1 in front of ``upstream`` that misbehaves on purpose.

    Parameters
    ----------
    upstream : str
        ``http://host:port`` to forward to.
    fail_first : int
        Answer HTTP ``status`` to the first ``fail_first`` requests, then forward.
    always : bool
        Answer ``status`` to every request (a service that stays down).
    delay_s : float
        Sleep this long before answering (a slow service).
    malformed : bool
        Answer 200 with a body that is not JSON.

    Use as a context manager; ``url`` is the proxy's address and ``requests`` counts requests.
    """

    def __init__(
        self,
        upstream: str,
        *,
        fail_first: int = 0,
        always: bool = False,
        status: int = 500,
        delay_s: float = 0.0,
        malformed: bool = False,
    ):
        self.upstream = upstream.removeprefix("http://")
        self.fail_first = fail_first
        self.always = always
        self.status = status
        self.delay_s = delay_s
        self.malformed = malformed
        self.requests = 0
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self.url = ""

    def __enter__(self) -> FaultyProxy:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                return

            def _handle(self) -> None:
                with proxy._lock:
                    proxy.requests += 1
                    n = proxy.requests
                if proxy.delay_s:
                    time.sleep(proxy.delay_s)
                if proxy.always or n <= proxy.fail_first:
                    body = b'{"code": "ServerError", "description": "injected failure"}'
                    self.send_response(proxy.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                payload = self.rfile.read(length) if length else None
                host, port = proxy.upstream.split(":")
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length")
                }
                conn.request(self.command, self.path, body=payload, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                if proxy.malformed:
                    body = b"<html>this is not JSON"
                # links in the upstream's documents must point back at the proxy
                body = body.replace(f"http://{proxy.upstream}".encode(), proxy.url.encode())
                self.send_response(resp.status)
                self.send_header("Content-Type", resp.getheader("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = _handle
            do_POST = _handle

        self._server, self.url = _serve(Handler)
        return self

    def __exit__(self, *exc: object) -> None:
        _stop(self._server)


class FileServer:
    """A static HTTP file server on 127.0.0.1 with byte ranges (for COGs), HEAD, and faults.

    Parameters
    ----------
    root : path
        Directory served at ``/``.
    fail_first : int
        Answer ``status`` (503 by default) to the first ``fail_first`` requests of each path.
    always : bool
        Answer ``status`` to every request.
    token : str, optional
        Require ``Authorization: Bearer <token>`` (401 otherwise), as NASA Earthdata does.
    query_token : str, optional
        Require ``?token=<query_token>`` in the URL (403 otherwise), as signed URLs do.

    ``url`` is the server's address; ``requests`` counts requests per path, ``auth_seen``
    records whether each request carried the token.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        fail_first: int = 0,
        always: bool = False,
        status: int = 503,
        token: str | None = None,
        query_token: str | None = None,
    ):
        self.root = Path(root)
        self.query_token = query_token
        self.fail_first = fail_first
        self.always = always
        self.status = status
        self.token = token
        self.requests: dict[str, int] = {}
        self.auth_seen: list[bool] = []
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self.url = ""

    def __enter__(self) -> FileServer:
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                return

            def _reply(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                with srv._lock:
                    n = srv.requests[path] = srv.requests.get(path, 0) + 1
                if srv.token is not None:
                    ok = self.headers.get("Authorization") == f"Bearer {srv.token}"
                    srv.auth_seen.append(ok)
                    if not ok:
                        self._reply(401, b"unauthorized")
                        return
                if srv.query_token is not None:
                    query = urllib.parse.parse_qs(self.path.partition("?")[2])
                    if query.get("token") != [srv.query_token]:
                        self._reply(403, b"forbidden: bad or missing signature")
                        return
                if srv.always or n <= srv.fail_first:
                    self._reply(srv.status, b"injected failure", {"Retry-After": "0"})
                    return
                file = (srv.root / path.lstrip("/")).resolve()
                if srv.root.resolve() not in file.parents or not file.is_file():
                    self._reply(404, b"not found")
                    return
                data = file.read_bytes()
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    start_s, _, end_s = rng[6:].partition("-")
                    start = int(start_s)
                    end = min(int(end_s) if end_s else len(data) - 1, len(data) - 1)
                    if start >= len(data):
                        self._reply(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                        return
                    self._reply(
                        206,
                        data[start : end + 1],
                        {
                            "Content-Range": f"bytes {start}-{end}/{len(data)}",
                            "Accept-Ranges": "bytes",
                        },
                    )
                    return
                self._reply(200, data, {"Accept-Ranges": "bytes"})

            do_HEAD = do_GET

        self._server, self.url = _serve(Handler)
        return self

    def __exit__(self, *exc: object) -> None:
        _stop(self._server)
