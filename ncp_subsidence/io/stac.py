"""Discovery: STAC APIs (pystac-client), static STAC catalogs (walked), and plain files.

One function, :func:`discover_items`, answers "which items does this source offer in this box
and time window?" for the three kinds of :class:`~ncp_subsidence.config.SourceOptions`:

``stac_api``
    pystac-client ``search`` with retries and exponential backoff (urllib3 ``Retry`` on 429/5xx),
    a timeout, ``max_items``, and an error that names the URL and the HTTP status.
``static_catalog``
    A catalog or collection JSON (local path, ``file://``, ``https://``, ``s3://`` through fsspec),
    walked recursively and filtered by collection, bbox and datetime, because static catalogs
    cannot be searched.
``file``
    Sources with no STAC: ``url`` is a path, URL, glob (expanded with fsspec) or a list of them;
    one item per file, id the file name, whose ``data`` asset is the file. NetCDF/HDF5 files
    (``.nc .nc4 .h5 .hdf5 .HDF5``) get ``start_datetime``/``end_datetime`` from their time axis
    and its bounds (only the time variable is read; IMERG's in group ``Grid``) and are filtered
    by the datetime window; other files (MIDAS tables, GeoJSON, tenv3) get a timeless item
    (``ncp:timeless``) that the window never filters out.

Every static read (catalog JSON, file listings, time axes) is retried with backoff and sends the
source's ``headers`` (or an Earthdata token) through :mod:`ncp_subsidence.io.remote`.

Static catalogs shared by several sources (the twin's root ``catalog.json``, one source per
collection) are read once per discovery when the caller passes one :class:`StaticDocuments` to
every :func:`discover_items` call (the ``discover`` stage does): each JSON document is read and
parsed once, each source gets its own copy, and the cache dies with the discovery.

Presets for public catalogs (use as ``sources.<name>.url`` with ``kind: stac_api``)::

    NASA CMR-STAC, ASF (Sentinel-1 products)   https://cmr.earthdata.nasa.gov/stac/ASF
    NASA CMR-STAC, GES DISC (GLDAS, IMERG)     https://cmr.earthdata.nasa.gov/stac/GES_DISC
    NASA CMR-STAC, PO.DAAC (GRACE mascons)     https://cmr.earthdata.nasa.gov/stac/POCLOUD
    Microsoft Planetary Computer               https://planetarycomputer.microsoft.com/api/stac/v1
    Earth Search (Element 84)                  https://earth-search.aws.element84.com/v1

Planetary Computer asset URLs are signed when the optional ``planetary-computer`` package is
installed. Earthdata sources take a bearer token in ``headers: {Authorization: "Bearer ..."}``
(never logged).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any

import fsspec
import pystac
from pystac.serialization import identify_stac_object_type

from ..config import SourceOptions
from ..errors import DataError, NetworkError
from ..redaction import MASK, redact_url, restore_url
from .remote import _reveal, fsspec_options, retrying

__all__ = [
    "PRESETS",
    "StaticDocuments",
    "choose_asset",
    "discover_items",
    "item_interval",
    "items_digest",
    "parse_interval",
    "restore_credentials",
    "strip_credentials",
]

log = logging.getLogger(__name__)

PRESETS: dict[str, str] = {
    "asf": "https://cmr.earthdata.nasa.gov/stac/ASF",
    "ges_disc": "https://cmr.earthdata.nasa.gov/stac/GES_DISC",
    "pocloud": "https://cmr.earthdata.nasa.gov/stac/POCLOUD",
    "planetary_computer": "https://planetarycomputer.microsoft.com/api/stac/v1",
    "earth_search": "https://earth-search.aws.element84.com/v1",
}


def parse_interval(interval: str | None) -> tuple[_dt.datetime | None, _dt.datetime | None]:
    """Parse an RFC 3339 interval ``start/end`` (either side may be ``..`` or empty) to UTC datetimes.

    A bare date as the end means the whole day.
    """
    if not interval:
        return None, None
    parts = interval.split("/")
    if len(parts) == 1:
        parts = [parts[0], parts[0]]
    if len(parts) != 2:
        raise DataError(f"datetime interval {interval!r} must look like 2014-10-01/2022-12-31")

    def one(text: str, end: bool) -> _dt.datetime | None:
        text = text.strip()
        if text in ("", ".."):
            return None
        try:
            value = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as err:
            raise DataError(
                f"cannot read {text!r} in datetime interval {interval!r}; use ISO 8601"
            ) from err
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.UTC)
        if end and len(text) <= 10:
            value = value + _dt.timedelta(days=1) - _dt.timedelta(microseconds=1)
        return value

    return one(parts[0], False), one(parts[1], True)


def item_interval(item: pystac.Item) -> tuple[_dt.datetime, _dt.datetime]:
    """The item's time span (``start_datetime``/``end_datetime``, else ``datetime`` twice), UTC."""
    common = item.common_metadata
    start = common.start_datetime or item.datetime
    end = common.end_datetime or item.datetime
    if start is None or end is None:
        raise DataError(f"STAC item {item.id!r} has neither datetime nor start/end_datetime")
    return _utc(start), _utc(end)


def _utc(value: _dt.datetime) -> _dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=_dt.UTC)


def _bbox_intersects(a: Sequence[float] | None, b: Sequence[float] | None) -> bool:
    if a is None or b is None:
        return True
    return not (a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1])


def _matches(
    item: pystac.Item,
    collections: Sequence[str],
    bbox: Sequence[float] | None,
    interval: tuple[Any, Any],
) -> bool:
    if collections and item.collection_id not in collections:
        return False
    if not _bbox_intersects(item.bbox, bbox):
        return False
    start, end = interval
    if start is None and end is None:
        return True
    i0, i1 = item_interval(item)
    return (start is None or i1 >= start) and (end is None or i0 <= end)


def choose_asset(item: pystac.Item, keys_or_roles: Sequence[str]) -> tuple[str, pystac.Asset]:
    """The first asset of ``item`` whose key, or one of whose roles, is in ``keys_or_roles``.

    Raises :class:`DataError` listing the item's assets when none matches.
    """
    for want in keys_or_roles:
        if want in item.assets:
            return want, item.assets[want]
    for want in keys_or_roles:
        for key, asset in item.assets.items():
            if want in (asset.roles or []):
                return key, asset
    raise DataError(
        f"STAC item {item.id!r} has no asset with key or role in {list(keys_or_roles)}; "
        f"its assets are {sorted(item.assets)} (set sources.<name>.assets)"
    )


def items_digest(items: Iterable[pystac.Item]) -> str:
    """A stable digest of item ids, datetimes, ``updated`` stamps and asset hrefs.

    What a run depends on: an item republished with a new end date or ``updated`` time (a
    product file that grew) changes the digest even when its id and hrefs do not. Hrefs enter
    without their credentials, so a fresh signature or token is not a new input.
    """
    import hashlib

    h = hashlib.sha256()
    for item in sorted(items, key=lambda i: (i.collection_id or "", i.id)):
        h.update(item.id.encode())
        h.update(
            str(item.properties.get("datetime") or item.properties.get("start_datetime")).encode()
        )
        for key in ("end_datetime", "updated"):
            if item.properties.get(key):
                h.update(f"{key}={item.properties[key]}".encode())
        for key in sorted(item.assets):
            h.update(f"{key}={redact_url(item.assets[key].href)}".encode())
    return h.hexdigest()


def discover_items(
    source: SourceOptions,
    *,
    bbox: Sequence[float] | None = None,
    datetime: str | None = None,
    retries: int = 4,
    timeout_s: float = 30.0,
    documents: StaticDocuments | None = None,
) -> list[pystac.Item]:
    """Items a source offers within ``bbox`` and ``datetime`` (the source's own values win).

    Parameters
    ----------
    source : SourceOptions
        Where to look (``kind``, ``url``, ``collections``, ``max_items``...).
    bbox : (west, south, east, north), optional
        Default area, degrees.
    datetime : str, optional
        Default RFC 3339 interval.
    retries, timeout_s
        Network policy for STAC APIs (exponential backoff between retries).
    documents : StaticDocuments, optional
        Static catalog documents already read by this discovery (``kind: static_catalog``
        only), shared by the calls of one discovery so a catalog that several sources walk is
        read once. Never keep one past a discovery: catalogs change between runs.

    Returns
    -------
    list of pystac.Item
        Sorted by collection, datetime and id. Items without a ``collection`` get the source's
        first collection (or the catalog's) so they can be saved and served again.
    """
    bbox = source.bbox or bbox
    interval = source.datetime or datetime
    if source.kind == "file":
        items = _file_items(source, interval, retries)
    elif source.kind == "static_catalog":
        items = _walk_static(source, bbox, interval, retries, documents)
    else:
        items = _search_api(source, bbox, interval, retries, timeout_s)
    if source.max_items is not None:
        items = items[: source.max_items]
    fallback = source.collections[0] if source.collections else None
    for item in items:
        if item.collection_id is None and fallback:
            item.collection_id = fallback
        for asset in item.assets.values():  # one spelling for local files: file:// URLs
            if asset.href.startswith("/"):
                asset.href = "file://" + asset.href
    items.sort(key=lambda i: (i.collection_id or "", item_interval(i)[0], i.id))
    log.info("discovered %d item(s) from %s", len(items), source.url)
    return items


#: suffixes of NetCDF/HDF5 files, whose items are dated from their time axis
TIMED_SUFFIXES = (".nc", ".nc4", ".h5", ".hdf5", ".he5")
_GLOB_CHARS = ("*", "?", "[")


def _as_urls(url: str | list[str]) -> list[str]:
    return list(url) if isinstance(url, list) else [url]


def _expand(source: SourceOptions, retries: int) -> list[str]:
    """The files a ``kind: file`` source names: its paths/URLs, globs expanded with fsspec."""
    out: list[str] = []
    for url in _as_urls(source.url):
        if not any(c in url for c in _GLOB_CHARS):
            out.append(url)
            continue
        target = url.removeprefix("file://")

        def glob(target: str = target) -> list[str]:
            fs, path = fsspec.core.url_to_fs(target, **fsspec_options(target, source.headers))
            local = "file" in ([fs.protocol] if isinstance(fs.protocol, str) else fs.protocol)
            found = sorted(fs.glob(path))
            return found if local else [fs.unstrip_protocol(p) for p in found]

        try:
            found = retrying(
                glob, url=url, what="file source", retries=retries, headers=source.headers
            )
        except NetworkError:
            raise
        except OSError as err:
            raise NetworkError(f"cannot list files matching {url!r}: {err}") from err
        if not found:
            raise DataError(f"no file matches {url!r} (sources.*.url glob); check the pattern")
        out.extend(found)
    return out


def _file_interval(
    href: str, source: SourceOptions, retries: int
) -> tuple[_dt.datetime, _dt.datetime]:
    """First and last instant of a NetCDF/HDF5 file's time axis (its bounds when present)."""
    import numpy as np
    import pandas as pd

    from .products._gridded import decode_time_axis, open_product

    options = fsspec_options(href, source.headers)

    def read() -> tuple[Any, Any]:
        for group in (None, "Grid"):  # IMERG keeps its variables in group Grid
            with open_product(href, group=group, storage_options=options) as ds:
                if "time" in ds.variables:
                    return decode_time_axis(ds, file=href)
        raise DataError(
            f"{href} has no 'time' variable (at the root or in group 'Grid'); a NetCDF file "
            "source needs a time axis to be dated"
        )

    times, bounds = retrying(
        read, url=href, what="file source", retries=retries, headers=source.headers
    )
    span = np.asarray(bounds if bounds is not None else times).ravel()
    span = span[~np.isnat(span)]
    if span.size == 0:
        raise DataError(f"{href}: its time axis holds no valid time")
    return (
        pd.Timestamp(span.min()).to_pydatetime().replace(tzinfo=_dt.UTC),
        pd.Timestamp(span.max()).to_pydatetime().replace(tzinfo=_dt.UTC),
    )


def _file_items(source: SourceOptions, interval: str | None, retries: int) -> list[pystac.Item]:
    """One item per file of a ``kind: file`` source (see the module docstring)."""
    bounds = parse_interval(interval)
    collection = source.collections[0] if source.collections else None
    items: dict[str, pystac.Item] = {}
    for href in _expand(source, retries):
        # the file name, without a query (a signature or token is no part of an item's id)
        name = href.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        if name in items:
            raise DataError(
                f"two files of one source are both named {name!r} "
                f"({items[name].assets['data'].href} and {href}); item ids are file names, so "
                "give files with distinct names"
            )
        if name.lower().endswith(TIMED_SUFFIXES):
            start, end = _file_interval(href, source, retries)
            item = pystac.Item(
                id=name,
                geometry=None,
                bbox=None,
                datetime=None,
                properties={"start_datetime": start.isoformat(), "end_datetime": end.isoformat()},
                start_datetime=start,
                end_datetime=end,
                collection=collection,
            )
            if not _matches(item, (), None, bounds):
                log.info("file %s (%s to %s) is outside %s; skipped", name, start, end, interval)
                continue
        else:
            item = pystac.Item(
                id=name,
                geometry=None,
                bbox=None,
                datetime=_dt.datetime(1970, 1, 1, tzinfo=_dt.UTC),
                properties={"ncp:timeless": True},
                collection=collection,
            )
        item.add_asset("data", pystac.Asset(href=href, roles=["data"]))
        items[name] = item
    return list(items.values())


def _read_json(url: str, retries: int = 4, headers: Any = None) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        with fsspec.open(url, "rt", **fsspec_options(url, headers)) as f:
            return json.load(f)

    try:
        return retrying(read, url=url, what="static STAC catalog", retries=retries, headers=headers)
    except NetworkError:
        raise
    except FileNotFoundError as err:
        raise DataError(f"static STAC catalog {url!r} not found; check sources.*.url") from err
    except json.JSONDecodeError as err:
        raise DataError(f"static STAC document {url!r} is not valid JSON: {err}") from err
    except OSError as err:
        raise NetworkError(f"cannot read static STAC document {url!r}: {err}") from err


def _copy_json(value: Any) -> Any:
    """A deep copy of parsed JSON (dicts, lists, scalars): 3x faster than ``copy.deepcopy``."""
    if isinstance(value, dict):
        return {k: _copy_json(v) if isinstance(v, dict | list) else v for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_json(v) if isinstance(v, dict | list) else v for v in value]
    return value


def _document_key(href: str) -> str:
    """One spelling per document: local paths absolute, URLs as they are."""
    return href if "://" in href else os.path.abspath(href)


def _headers_key(headers: Any) -> str:
    """A digest of the read options that can change what a read returns (the headers)."""
    if not headers:
        return ""
    values = {str(k): _reveal(v) for k, v in dict(headers).items()}
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


class StaticDocuments:
    """The JSON documents of static STAC catalogs read during one discovery, parsed.

    Several sources often walk one catalog (the twin's root ``catalog.json``, one source per
    collection); given to each of their :func:`discover_items` calls, the root and its
    collections are read and parsed once. Documents are keyed by absolute href and by a digest
    of the source's headers, so sources with other credentials never share a document. Every
    read returns a fresh copy (pystac keeps and may change the dict it builds an object from),
    so one source's items never share state with another's.

    Make one per discovery and drop it after: catalogs grow between runs.
    """

    def __init__(self) -> None:
        self._docs: dict[tuple[str, str], dict[str, Any]] = {}
        #: documents read (not found here)
        self.reads = 0
        #: reads answered from here
        self.hits = 0

    def read(self, href: str, retries: int = 4, headers: Any = None) -> dict[str, Any]:
        """The document at ``href`` (read with :func:`_read_json` once), a copy of its own."""
        key = (_headers_key(headers), _document_key(href))
        doc = self._docs.get(key)
        if doc is None:
            doc = _read_json(href, retries, headers)  # a failed read is not kept: tried again
            self._docs[key] = doc
            self.reads += 1
        else:
            self.hits += 1
        return _copy_json(doc)

    def peek(self, href: str, headers: Any = None) -> dict[str, Any] | None:
        """The document at ``href`` if it was read already (never reads; do not change it)."""
        return self._docs.get((_headers_key(headers), _document_key(href)))

    def __len__(self) -> int:
        return len(self._docs)


class _FsspecStacIO(pystac.StacIO):
    """pystac IO through fsspec, so static catalogs on s3:// and https:// are walked too.

    Reads JSON once (:meth:`read_json`: no text round trip), from ``documents`` when given.
    """

    def __init__(
        self, retries: int = 4, headers: Any = None, documents: StaticDocuments | None = None
    ) -> None:
        super().__init__()
        self.retries = retries
        self.headers = headers
        self.documents = documents

    def read_json(self, source: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        href = str(source.href if hasattr(source, "href") else source)
        if self.documents is None:
            return _read_json(href, self.retries, self.headers)
        return self.documents.read(href, self.retries, self.headers)

    def read_text(self, source: Any, *args: Any, **kwargs: Any) -> str:
        return json.dumps(self.read_json(source))

    def write_text(self, dest: Any, txt: str, *args: Any, **kwargs: Any) -> None:
        href = str(dest.href if hasattr(dest, "href") else dest)
        with fsspec.open(href, "wt") as f:
            f.write(txt)


def _walk_static(
    source: SourceOptions,
    bbox: Sequence[float] | None,
    interval: str | None,
    retries: int = 4,
    documents: StaticDocuments | None = None,
) -> list[pystac.Item]:
    assert isinstance(source.url, str)  # SourceOptions allows lists for kind: file only
    url = source.url.removeprefix("file://")
    stac_io = _FsspecStacIO(retries, source.headers, documents)
    try:
        root = pystac.read_file(url, stac_io=stac_io)
    except pystac.STACError as err:
        raise DataError(f"{url!r} is not a STAC catalog or collection: {err}") from err
    if isinstance(root, pystac.Item):
        candidates: Iterable[pystac.Item] = [root]
    else:
        root_link = root.get_root_link()
        if (
            root_link is not None
            and not root_link.is_resolved()
            and root_link.get_absolute_href() == root.get_self_href()
        ):
            # its own root, as pystac.Catalog.from_file does (read_file does not): else pystac
            # reads and builds the root a second time to resolve the link
            root.set_root(root)
        candidates = _iter_items(root, set(source.collections), documents, source.headers)
    bounds = parse_interval(interval)
    out = []
    for item in candidates:
        if item.collection_id is None:  # a missing collection: the parent's, else the source's
            parent = item.get_parent()
            if isinstance(parent, pystac.Collection):
                item.collection_id = parent.id
            elif source.collections:
                item.collection_id = source.collections[0]
        if _matches(item, source.collections, bbox, bounds):
            for asset in item.assets.values():  # relative hrefs resolve against the item's file
                if "://" not in asset.href:
                    asset.href = asset.get_absolute_href() or asset.href
            out.append(item)
    return out


def _iter_items(
    catalog: pystac.Catalog,
    collections: set[str],
    documents: StaticDocuments | None = None,
    headers: Any = None,
) -> Iterable[pystac.Item]:
    """Items under ``catalog``, skipping collections not asked for (no need to read them)."""
    if isinstance(catalog, pystac.Collection) and collections and catalog.id not in collections:
        return
    yield from catalog.get_items()
    if documents is None or not collections:
        children: Iterable[pystac.Catalog] = catalog.get_children()
    else:
        children = _wanted_children(catalog, collections, documents, headers)
    for child in children:
        yield from _iter_items(child, collections, documents, headers)


def _wanted_children(
    catalog: pystac.Catalog, collections: set[str], documents: StaticDocuments, headers: Any
) -> Iterable[pystac.Catalog]:
    """``catalog.get_children()``, less the collections not asked for that another source of
    this discovery read already (their documents say so: no pystac object built for them)."""
    root = catalog.get_root()
    for link in catalog.get_links(pystac.RelType.CHILD):
        if not link.is_resolved():
            href = link.get_absolute_href()
            doc = None if href is None else documents.peek(href, headers)
            if (
                isinstance(doc, dict)
                and identify_stac_object_type(doc) == pystac.STACObjectType.COLLECTION
                and doc.get("id") not in collections
            ):
                continue
        link.resolve_stac_object(root=root)
        yield link.target


def _search_api(
    source: SourceOptions,
    bbox: Sequence[float] | None,
    interval: str | None,
    retries: int,
    timeout_s: float,
) -> list[pystac.Item]:
    from pystac_client import Client
    from pystac_client.exceptions import APIError
    from pystac_client.stac_api_io import StacApiIO
    from urllib3.util.retry import Retry

    assert isinstance(source.url, str)  # SourceOptions allows lists for kind: file only
    headers = {k: v.get_secret_value() for k, v in source.headers.items()}
    retry = Retry(
        total=retries,
        backoff_factor=0.5,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=None,  # POST searches are retried too
        raise_on_status=False,
    )
    stac_io = StacApiIO(headers=headers, timeout=timeout_s, max_retries=retry)
    modifier = _planetary_computer_signer(source.url)
    try:
        # Client.open re-applies headers and timeout to stac_io (None would clear them)
        client = Client.open(
            source.url, headers=headers, stac_io=stac_io, modifier=modifier, timeout=timeout_s
        )
        search = client.search(
            collections=source.collections or None,
            bbox=list(bbox) if bbox else None,
            datetime=interval,
            max_items=source.max_items,
            query=source.query or None,
        )
        return list(search.items())
    except APIError as err:
        status = getattr(err, "status_code", None)
        raise NetworkError(
            f"STAC API {source.url!r} answered {'HTTP ' + str(status) if status else 'an error'}: "
            f"{str(err)[:200]} (after {retries} retries)"
        ) from err
    except Exception as err:  # requests/urllib3 connection errors, timeouts, bad JSON
        name = type(err).__name__
        if (
            "Timeout" in name
            or "Connection" in name
            or "MaxRetry" in name
            or isinstance(err, OSError | ValueError)
        ):
            raise NetworkError(
                f"STAC API {source.url!r} failed: {name}: {str(err)[:200]} (after {retries} retries)"
            ) from err
        raise


def _planetary_computer_signer(url: str) -> Any:
    if "planetarycomputer" not in url:
        return None
    try:
        import planetary_computer
    except ImportError:
        log.warning(
            "planetary-computer is not installed: Planetary Computer assets will not be signed"
        )
        return None
    return planetary_computer.sign_inplace


def strip_credentials(items: Iterable[pystac.Item]) -> tuple[list[pystac.Item], int]:
    """``items`` with no credential in their asset URLs, for saving.

    User info, token parameters and signatures (:func:`ncp_subsidence.redaction.redact_url`)
    become ``***``; :func:`restore_credentials` puts them back at read time. An item with a
    credential is copied (the caller's item keeps its URLs); the others are returned as they
    are (a copy each cost 0.6 ms: 1 s for the large preset's 1,700 items).

    Returns
    -------
    (items, n)
        The items, and how many asset URLs had a credential removed.
    """
    out, n = [], 0
    for item in items:
        clean = {key: redact_url(asset.href) for key, asset in item.assets.items()}
        changed = [key for key, href in clean.items() if href != item.assets[key].href]
        if changed:
            item = item.clone()
            for key in changed:
                item.assets[key].href = clean[key]
            n += len(changed)
        out.append(item)
    return out, n


def restore_credentials(
    items: Iterable[pystac.Item], source: SourceOptions | None, name: str
) -> list[pystac.Item]:
    """``items`` (as saved by discovery) with the credentials of their asset URLs back.

    They come from the config, the only place they are kept: the URL(s) of ``source`` (user info
    and token parameters, matched by host); Planetary Computer assets are signed afresh (their
    signatures expire anyway). Items without a masked URL are returned as they are.

    Raises
    ------
    DataError
        A masked URL that the config can no longer complete, naming the source and the fix.
    """
    items = list(items)
    urls = [] if source is None else _as_urls(source.url)
    signer = None if source is None else _planetary_computer_signer(str(source.url))
    for item in items:
        for asset in item.assets.values():
            if MASK not in asset.href:
                continue
            full = restore_url(asset.href, urls)
            if full is None and signer is not None:
                import planetary_computer

                full = planetary_computer.sign(asset.href.split("?", 1)[0])
            if full is None:
                raise DataError(
                    f"item {item.id!r} of source {name!r} was saved with its asset URL's "
                    f"credential removed ({asset.href}), and sources.{name}.url no longer holds "
                    "it; rerun `discover`, and better give the credential as "
                    f"sources.{name}.headers (e.g. Authorization) or EARTHDATA_TOKEN than in a URL"
                )
            asset.href = full
    return items
