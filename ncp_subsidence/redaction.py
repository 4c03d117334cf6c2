"""Credentials inside URLs, removed before a URL reaches a log, an attribute or a saved file.

Users put secrets in URLs in three ways: user info (``https://user:password@host/...``), query
parameters (``?token=...``, ``?access_token=...``, ``?api_key=...``) and signed URLs (AWS SigV4
``X-Amz-Signature``/``X-Amz-Credential``/``X-Amz-Security-Token``, Azure SAS ``sig``, Google
``X-Goog-Signature``, CloudFront ``Signature``/``Key-Pair-Id``/``Policy``). :func:`redact_url`
replaces each such value by ``***`` and keeps everything else, so the message still says which
file it was; :func:`redact_text` does it for every URL inside free text (log lines, errors).
Saved catalogs hold redacted asset URLs too; :func:`restore_url` puts the credentials back at
read time from the URLs the config gives (the only place they are kept).

Only string handling: imported by ``config`` (dumps), the CLI (a logging filter) and ``io``.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

__all__ = ["RedactingFilter", "redact_text", "redact_url", "restore_url"]

MASK = "***"

#: Query parameters whose value is a credential (matched case-insensitively, whole name).
SECRET_PARAMS = re.compile(
    r"^(x-amz-(signature|credential|security-token)|x-goog-(signature|credential)|sig|signature|"
    r"key-pair-id|policy|token|access_token|id_token|refresh_token|auth|authorization|"
    r"api[-_]?key|apikey|key|secret|password|passwd|pwd|client_secret|session_token|"
    r"sas|se?cret[-_]?key|code)$",
    re.IGNORECASE,
)

#: A URL inside free text: a scheme, ``://`` and everything up to white space or a quote, less
#: trailing punctuation (``https://h/a.tif: 503`` ends before the colon).
_URL = re.compile(r"""[A-Za-z][A-Za-z0-9+.-]*://[^\s'"<>`]*[^\s'"<>`.,:;)\]]""")


def redact_url(url: str) -> str:
    """``url`` with its password and credential query values replaced by ``***``.

    >>> redact_url("https://me:hunter2@example.org/a.tif?token=abc&v=2")
    'https://me:***@example.org/a.tif?token=***&v=2'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(SECRET_PARAMS.match(k) for k, _ in pairs):
            query = "&".join(
                f"{quote(k, safe='-_.~')}={MASK if SECRET_PARAMS.match(k) else quote(v, safe='-_.~:/')}"
                for k, v in pairs
            )
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def restore_url(url: str, originals: list[str] | tuple[str, ...]) -> str | None:
    """``url`` with the credentials :func:`redact_url` masked taken back from ``originals``.

    The first original on the same scheme, host and port gives the user info (when ``url``'s is
    masked) and the value of each masked query parameter, by name. ``url`` without a mask is
    returned as it is; ``None`` when no original holds what was masked.

    >>> restore_url("https://me:***@h.org/b.nc?token=***", ["https://me:pw@h.org/*.nc?token=t"])
    'https://me:pw@h.org/b.nc?token=t'
    """
    if MASK not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    for original in originals:
        try:
            source = urlsplit(original)
        except ValueError:
            continue
        if (source.scheme, source.hostname, source.port) != (
            parts.scheme,
            parts.hostname,
            parts.port,
        ):
            continue
        netloc = parts.netloc
        userinfo = netloc.rsplit("@", 1)[0] if "@" in netloc else ""
        if MASK in userinfo:
            if "@" not in source.netloc:
                continue
            netloc = source.netloc
        known = dict(parse_qsl(source.query, keep_blank_values=True))
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        if any(v == MASK and k not in known for k, v in pairs):
            continue
        query = "&".join(
            f"{quote(k, safe='-_.~')}={quote(known[k] if v == MASK else v, safe='-_.~:/')}"
            for k, v in pairs
        )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return None


def redact_text(text: str) -> str:
    """``text`` with :func:`redact_url` applied to every URL in it."""
    if "://" not in text:
        return text
    return _URL.sub(lambda m: redact_url(m.group(0)), text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts URLs in each record's formatted message (and traceback).

    Installed on the CLI's handler; the record is rewritten in place, so every handler after it
    sees the redacted text.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True
