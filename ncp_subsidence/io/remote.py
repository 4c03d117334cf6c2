"""Remote reads: Earthdata login and retries with backoff, for every file read over a network.

Discovery already searches STAC APIs with retries (:mod:`ncp_subsidence.io.stac`); this module
gives the same policy to the files themselves: COGs read by GDAL (rasterio, stackstac), NetCDF
and text read through fsspec (HTTPS, S3).

Credentials (NASA Earthdata: GES DISC, PO.DAAC, ASF, LP DAAC...), in order:

1. the source's own ``headers`` (``sources.<name>.headers: {Authorization: "Bearer ..."}``);
2. ``EARTHDATA_TOKEN`` in the environment (a user token from urs.earthdata.nasa.gov, "Generate
   Token"), sent as ``Authorization: Bearer <token>`` to Earthdata hosts only;
3. ``~/.netrc`` (``machine urs.earthdata.nasa.gov login <user> password <pass>``), which GDAL
   (``GDAL_HTTP_NETRC``) and aiohttp (``trust_env``) follow through NASA's login redirects.

Secrets are never logged or stored: :func:`credential_label` says *which* credential was used
(``EARTHDATA_TOKEN``, ``~/.netrc``, ``headers``) without its value.

Retries: :func:`retrying` calls a read again after 1, 2, 4... s (``sources.retries`` times) when
the failure is transient (HTTP 429 and 5xx, connection reset, timeout); anything else (404, a
corrupt file) fails at once. A 401/403 is a :class:`~ncp_subsidence.errors.NetworkError` that
says how to log in; a server that stays down is one line naming the URL and the last status.
"""

from __future__ import annotations

import logging
import netrc
import os
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ..errors import NetworkError
from ..redaction import redact_url

__all__ = [
    "EARTHDATA_DOMAINS",
    "auth_headers",
    "credential_label",
    "fsspec_options",
    "gdal_options",
    "is_earthdata",
    "retrying",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Hosts that take an Earthdata login (suffix match): NASA's DAACs and the URS itself.
EARTHDATA_DOMAINS = (
    "earthdata.nasa.gov",
    "eosdis.nasa.gov",
    "asf.alaska.edu",
    "gesdisc.eosdis.nasa.gov",
    "podaac.jpl.nasa.gov",
    "lpdaac.earthdatacloud.nasa.gov",
)
URS_HOST = "urs.earthdata.nasa.gov"

_TRANSIENT_STATUS = re.compile(r"\b(429|500|502|503|504)\b")
_AUTH_STATUS = re.compile(r"\b(401|403)\b")
_TRANSIENT_TEXT = re.compile(
    r"(timed? ?out|connection (reset|refused|aborted)|temporar|service unavailable|"
    r"too many requests|bad gateway|gateway time|server disconnected|curl error)",
    re.IGNORECASE,
)


def is_earthdata(url: str) -> bool:
    """True when ``url``'s host is one of NASA Earthdata's (token and netrc apply)."""
    host = (urlsplit(url).hostname or "").lower()
    return any(host == d or host.endswith("." + d) for d in EARTHDATA_DOMAINS)


def _netrc_has_urs() -> bool:
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return netrc.netrc(path).authenticators(URS_HOST) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def auth_headers(url: str, headers: Mapping[str, Any] | None = None) -> dict[str, str]:
    """HTTP headers to send with a read of ``url``: the source's own, else an Earthdata token.

    ``headers`` values may be pydantic ``SecretStr``; they are revealed here only, for the
    request itself.
    """
    out = {k: _reveal(v) for k, v in (headers or {}).items()}
    if "authorization" not in {k.lower() for k in out} and is_earthdata(url):
        token = os.environ.get("EARTHDATA_TOKEN", "").strip()
        if token:
            out["Authorization"] = f"Bearer {token}"
    return out


def credential_label(url: str, headers: Mapping[str, Any] | None = None) -> str:
    """Which credential a read of ``url`` uses, by name only (never the value)."""
    if headers and any(k.lower() == "authorization" for k in headers):
        return "headers (Authorization)"
    if is_earthdata(url):
        if os.environ.get("EARTHDATA_TOKEN", "").strip():
            return "EARTHDATA_TOKEN"
        if _netrc_has_urs():
            return "~/.netrc (urs.earthdata.nasa.gov)"
        return "none (set EARTHDATA_TOKEN or ~/.netrc)"
    if headers:
        return "headers"
    return "none"


def _reveal(value: Any) -> str:
    getter = getattr(value, "get_secret_value", None)
    return str(getter() if getter else value)


def fsspec_options(
    url: str, headers: Mapping[str, Any] | None = None, timeout_s: float = 30.0
) -> dict[str, Any]:
    """fsspec ``storage_options`` for an HTTP(S) read of ``url``: headers, netrc, a timeout.

    Empty for other protocols (S3 retries are set by :mod:`ncp_subsidence.io.stores`).
    """
    if not url.startswith(("http://", "https://")):
        return {}
    import aiohttp

    return {
        "headers": auth_headers(url, headers),
        "client_kwargs": {
            "trust_env": True,  # ~/.netrc and proxies, as curl and GDAL do
            "timeout": aiohttp.ClientTimeout(
                total=None, sock_connect=timeout_s, sock_read=timeout_s
            ),
        },
    }


def gdal_options(
    url: str, headers: Mapping[str, Any] | None = None, retries: int = 4, timeout_s: float = 30.0
) -> dict[str, str]:
    """GDAL configuration (for ``rasterio.Env``) for reading ``url``: headers, netrc, retries.

    GDAL itself retries 429/5xx ``GDAL_HTTP_MAX_RETRY`` times with a doubling delay.
    """
    out = {
        "GDAL_HTTP_MAX_RETRY": str(retries),
        "GDAL_HTTP_RETRY_DELAY": "1",
        "GDAL_HTTP_TIMEOUT": str(int(timeout_s)),
        "GDAL_HTTP_NETRC": "YES",
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    }
    extra = auth_headers(url, headers)
    if extra:
        out["GDAL_HTTP_HEADERS"] = "\r\n".join(f"{k}: {v}" for k, v in extra.items())
    return out


def _status(err: BaseException) -> int | None:
    for e in _chain(err):
        status = getattr(e, "status", None) or getattr(e, "status_code", None)
        if isinstance(status, int):
            return status
    text = " ".join(str(e) for e in _chain(err))
    m = _AUTH_STATUS.search(text) or _TRANSIENT_STATUS.search(text)
    return int(m.group(1)) if m else None


def _chain(err: BaseException) -> list[BaseException]:
    out, seen = [], set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        out.append(e)
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return out


def _transient(err: BaseException) -> bool:
    status = _status(err)
    if status is not None:
        return status == 429 or 500 <= status < 600
    return any(
        isinstance(e, TimeoutError | ConnectionError) or _TRANSIENT_TEXT.search(str(e))
        for e in _chain(err)
    )


def retrying(
    read: Callable[[], T],
    *,
    url: str,
    what: str,
    retries: int = 4,
    backoff_s: float = 1.0,
    headers: Mapping[str, Any] | None = None,
) -> T:
    """``read()``, tried again with exponential backoff while it fails transiently.

    Parameters
    ----------
    read : callable
        The read (opening a file, fetching bytes); called at most ``retries + 1`` times.
    url : str
        What is read (named in messages, credentials redacted).
    what : str
        The source it belongs to, e.g. ``"source 'grace'"``.
    retries, backoff_s
        Policy: waits ``backoff_s * 2**k`` between tries.

    Raises
    ------
    NetworkError
        401/403 at once (how to log in), or a transient failure still there after the
        retries. Other errors propagate unchanged for the caller to explain.
    """
    for attempt in range(retries + 1):
        try:
            return read()
        except Exception as err:
            status = _status(err)
            if status in (401, 403):
                raise NetworkError(
                    f"{what}: HTTP {status} reading {redact_url(url)} with credential "
                    f"{credential_label(url, headers)}; log in: set EARTHDATA_TOKEN (a token from "
                    f"https://{URS_HOST}) or put 'machine {URS_HOST} login USER password PASS' in "
                    "~/.netrc, or give the source headers: {Authorization: ...}"
                ) from err
            if not _transient(err):
                raise
            if attempt == retries:
                raise NetworkError(
                    f"{what}: {redact_url(url)} still failing after {retries + 1} tries "
                    f"({'HTTP ' + str(status) if status else type(err).__name__}); the server is "
                    "unavailable: run again later or raise sources.retries"
                ) from err
            delay = backoff_s * 2**attempt
            log.info(
                "%s: %s failed (%s); retry %d/%d in %.0f s",
                what,
                redact_url(url),
                f"HTTP {status}" if status else type(err).__name__,
                attempt + 1,
                retries,
                delay,
            )
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
