"""The product store: any fsspec URL opened as one Zarr hierarchy, with versioned products.

Layout (Zarr format 3 by default)::

    <root>/zarr.json                      root group; attrs: package version, resolved config, last run
    <root>/<stage>/zarr.json              stage group; attrs["ncp_subsidence"]: the product record
    <root>/<stage>/<version>/<dataset>/   a complete or in-progress version of the stage's datasets

The product record (a small JSON object in the stage group's attributes) is the pointer readers
follow: ``current`` names the last *complete* version and its fingerprint; ``pending`` names a
version being written. A version becomes ``current`` only after every byte of it is written, and
the record is a single object written atomically (an S3 PUT, an atomic rename on local disk), so a
failed or killed run leaves the previous complete product readable and unchanged. Plain Zarr
readers open ``<root>/<stage>/<version>/<dataset>`` directly (``decode_coords="all"`` for the
CRS); :meth:`ProductStore.open` and :func:`open_product` (``ncp_subsidence.open_product``)
resolve the version for you. A published version holding an ``index.html`` (the report) is
copied to ``<root>/<stage>/latest/``: ``<root>/report/latest/index.html`` is a stable path.

Appended datasets. An incremental run (scheduled reprocessing) does not rewrite what it already
has: a dataset that only gained pairs or months is written as a new *part* holding just the new
slices, inside the new version, and the record lists the dataset's parts in order
(``parts[dataset] = {"dim": "pair", "versions": [v1, v2]}``); a dataset that did not change is
carried over as a part of the version that wrote it. :meth:`ProductStore.open` concatenates the
parts along ``dim`` (the attributes are the last part's, which describe the whole). Every part is
an ordinary Zarr group, so old parts are never touched; a version a current record still
references is kept whatever ``keep_versions`` says.

Credentials come from ``storage_options`` or the environment (``AWS_ACCESS_KEY_ID``...); they are
never logged, and never written into attributes (see :func:`ncp_subsidence.config.redacted_dump`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import xarray as xr
import zarr
import zarr.storage

from ..errors import StoreError

__all__ = [
    "RECORD_KEY",
    "S3_RETRY_DEFAULTS",
    "ProductRecord",
    "ProductStore",
    "LATEST",
    "open_product",
    "open_store",
    "with_retry_defaults",
]

log = logging.getLogger(__name__)

#: Attribute key under which a stage group keeps its product record.
RECORD_KEY = "ncp_subsidence"

#: Folder (``<stage>/latest/``) holding a copy of the files of a stage's current version when it
#: has an ``index.html`` (the report): a stable path to the latest report.
LATEST = "latest"


@dataclass(frozen=True)
class ProductRecord:
    """The pointer to one complete version of a stage's product."""

    version: str
    fingerprint: str
    datasets: tuple[str, ...]
    completed_at: str
    package_version: str
    inputs: Mapping[str, str]
    parts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = {
            "version": self.version,
            "fingerprint": self.fingerprint,
            "datasets": list(self.datasets),
            "completed_at": self.completed_at,
            "package_version": self.package_version,
            "inputs": dict(self.inputs),
        }
        if self.parts:
            out["parts"] = {k: dict(v) for k, v in self.parts.items()}
        return out

    def dataset_parts(self, dataset: str | None) -> tuple[str | None, list[str]]:
        """``(dim, versions)`` of a dataset: where its parts live, oldest first.

        A dataset written whole by this version is one part, ``(None, [self.version])``.
        """
        entry = self.parts.get(dataset or ".")
        if entry is None:
            return None, [self.version]
        return entry.get("dim"), list(entry["versions"])

    def referenced_versions(self) -> set[str]:
        """Every version holding a part of this record's datasets (its own included)."""
        out = {self.version}
        for entry in self.parts.values():
            out.update(entry["versions"])
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProductRecord:
        return cls(
            version=data["version"],
            fingerprint=data["fingerprint"],
            datasets=tuple(data.get("datasets", ())),
            completed_at=data.get("completed_at", ""),
            package_version=data.get("package_version", ""),
            inputs=dict(data.get("inputs", {})),
            parts={k: dict(v) for k, v in data.get("parts", {}).items()},
        )


def _is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


class ProductStore:
    """A Zarr hierarchy at an fsspec URL, with versioned, atomically published products.

    Parameters
    ----------
    url : str
        Store root: a local path, ``s3://bucket/prefix``, ``memory://name``, or any fsspec URL.
    storage_options : mapping, optional
        Passed to the fsspec filesystem (``endpoint_url``, ``key``, ``secret``, ``anon``...).
    zarr_format : {2, 3}
        Format of the groups and arrays written.
    """

    def __init__(
        self,
        url: str,
        storage_options: Mapping[str, Any] | None = None,
        zarr_format: int = 3,
        *,
        must_exist: bool = False,
    ):
        self.url = str(url).rstrip("/") or str(url)
        self.storage_options = with_retry_defaults(self.url, storage_options)
        self.zarr_format = zarr_format
        try:
            if self.is_local:
                path = Path(self.url.removeprefix("file://")).expanduser().resolve()
                if must_exist and not (path / "zarr.json").is_file():
                    raise StoreError(
                        f"no product store at {str(path)!r} (no zarr.json there); give the "
                        "--store a run wrote, or run `ncp-subsidence run` first"
                    )
                path.mkdir(parents=True, exist_ok=True)
                self.url = str(path)
                self.zarr_store: zarr.abc.store.Store = zarr.storage.LocalStore(path)
                self.fs = fsspec.filesystem("file")
                self.root = str(path)
            else:
                self.zarr_store = zarr.storage.FsspecStore.from_url(
                    self.url, storage_options=self.storage_options or None
                )
                self.fs, self.root = fsspec.core.url_to_fs(self.url, **self.storage_options)
                if must_exist and not self.fs.exists(f"{self.root}/zarr.json"):
                    raise StoreError(
                        f"no product store at {self.url!r} (no zarr.json there); give the "
                        "--store a run wrote, or run `ncp-subsidence run` first"
                    )
        except StoreError:
            raise
        except Exception as err:
            raise StoreError(
                f"cannot open store {self.url!r}: {type(err).__name__}: {err}. "
                "Check the URL, the credentials in the environment, and storage_options (endpoint_url)."
            ) from err

    # -- plumbing ------------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"ProductStore({self.url!r})"

    def __getstate__(self) -> dict[str, Any]:
        # Stores travel to workers by URL; filesystems and zarr stores are rebuilt there.
        return {
            "url": self.url,
            "storage_options": self.storage_options,
            "zarr_format": self.zarr_format,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def _group(self, path: str = "", mode: str = "a") -> zarr.Group:
        try:
            return zarr.open_group(
                self.zarr_store, path=path, mode=mode, zarr_format=self.zarr_format
            )
        except FileNotFoundError:
            raise
        except Exception as err:
            raise StoreError(f"cannot open group {path!r} in store {self.url!r}: {err}") from err

    def exists(self, path: str) -> bool:
        """True when a Zarr node (group or array) exists at ``path``."""
        try:
            zarr.open(self.zarr_store, path=path, mode="r", zarr_format=self.zarr_format)
            return True
        except (FileNotFoundError, KeyError, zarr.errors.NodeNotFoundError):
            return False
        except Exception as err:
            raise StoreError(f"cannot read {path!r} in store {self.url!r}: {err}") from err

    def invalidate(self) -> None:
        """Drop cached listings (s3fs caches them; call after another process wrote)."""
        invalidate = getattr(self.fs, "invalidate_cache", None)
        if invalidate is not None:
            invalidate()

    # -- root attributes -----------------------------------------------------------------------

    def root_attrs(self) -> dict[str, Any]:
        """Attributes of the root group (empty for a new store)."""
        try:
            return dict(self._group("", mode="r").attrs)
        except (FileNotFoundError, zarr.errors.NodeNotFoundError):
            return {}  # a new store; any other failure (unreadable, corrupt) is a StoreError

    def update_root_attrs(self, attrs: Mapping[str, Any]) -> None:
        """Merge ``attrs`` into the root group's attributes (JSON-able values only)."""
        self._group("", mode="a").attrs.update(_json_roundtrip(attrs))

    # -- product records -----------------------------------------------------------------------

    def _record_state(self, stage: str) -> dict[str, Any]:
        try:
            attrs = self._group(stage, mode="r").attrs
        except (FileNotFoundError, zarr.errors.NodeNotFoundError):
            return {}
        return dict(attrs.get(RECORD_KEY, {}))

    def _write_state(self, stage: str, state: Mapping[str, Any]) -> None:
        group = self._group(stage, mode="a")
        group.attrs[RECORD_KEY] = _json_roundtrip(state)

    def record(self, stage: str) -> ProductRecord | None:
        """The current complete version of ``stage``, or None if it never completed."""
        current = self._record_state(stage).get("current")
        return ProductRecord.from_json(current) if current else None

    def pending(self, stage: str) -> dict[str, Any] | None:
        """The in-progress version of ``stage`` (``version``, ``fingerprint``, ``done``), if any."""
        return self._record_state(stage).get("pending")

    def begin(self, stage: str, version: str, fingerprint: str) -> dict[str, Any]:
        """Declare ``version`` of ``stage`` as being written; returns the pending entry."""
        state = self._record_state(stage)
        pending = {"version": version, "fingerprint": fingerprint, "done": {}}
        state["pending"] = pending
        self._write_state(stage, state)
        return pending

    def mark_done(self, stage: str, dataset: str, region: str) -> None:
        """Record that one region of a pending dataset is written (resumable progress)."""
        state = self._record_state(stage)
        pending = state.get("pending")
        if pending is None:
            raise StoreError(f"stage {stage!r} has no pending version to record progress in")
        done = pending.setdefault("done", {}).setdefault(dataset, [])
        if region not in done:
            done.append(region)
        self._write_state(stage, state)

    def done_regions(self, stage: str, dataset: str) -> set[str]:
        """Regions of ``dataset`` already written in the pending version."""
        pending = self.pending(stage) or {}
        return set(pending.get("done", {}).get(dataset, []))

    def publish(self, stage: str, record: ProductRecord, keep_versions: int = 2) -> None:
        """Make ``record`` the current version (one atomic write), then prune old versions."""
        state = self._record_state(stage)
        history = [h for h in state.get("history", []) if h != record.version]
        previous = state.get("current")
        if previous and previous["version"] != record.version:
            history.append(previous["version"])
        state["current"] = record.to_json()
        state.pop("pending", None)
        keep_old = max(keep_versions - 1, 0)
        stale, history = (
            (history[: len(history) - keep_old], history[len(history) - keep_old :])
            if keep_old
            else (history, [])
        )
        # versions still holding parts of the new current product stay, whatever their age
        referenced = record.referenced_versions()
        history = [v for v in stale if v in referenced] + history
        stale = [v for v in stale if v not in referenced]
        state["history"] = history
        self._write_state(stage, state)
        self._update_latest(stage, record.version)
        for version in stale:
            self.delete(f"{stage}/{version}")
        log.info("published %s version %s", stage, record.version)

    def latest_path(self, stage: str = "report") -> str:
        """Path (or URL) of ``<stage>/latest/index.html``: the latest published page, stable
        across runs (see :meth:`publish`)."""
        path = f"{self.root.rstrip('/')}/{stage}/{LATEST}/index.html"
        return path if self.is_local else f"{self.url.split('://')[0]}://{path}"

    def _update_latest(self, stage: str, version: str) -> None:
        """Copy the files of a just-published version holding an ``index.html`` (the report) to
        ``<stage>/latest/`` (sub-folders kept), ``index.html`` last; files of an older version
        not in the new one are removed. A failure is logged, never raised: the record is
        already published."""
        base = f"{self.root.rstrip('/')}/{stage}"
        try:
            if not self.fs.exists(f"{base}/{version}/index.html"):
                return
            source, latest = f"{base}/{version}", f"{base}/{LATEST}"

            def tree(folder: str) -> dict[str, str]:  # relative name -> full path, files only
                return {
                    p[len(folder) + 1 :]: p
                    for p in self.fs.find(folder)
                    if p.startswith(f"{folder}/") and not p.endswith("zarr.json")
                }

            files = tree(source)
            for name in sorted(files, key=lambda n: n == "index.html"):
                self.write_file(f"{stage}/{LATEST}/{name}", self.fs.cat_file(files[name]))
            for name, full in tree(latest).items():
                if name not in files:
                    self.fs.rm(full)
        except Exception as err:  # noqa: BLE001 - the record is published; the copy is a courtesy
            log.warning("could not update %s/%s: %s", stage, LATEST, err)
        self.invalidate()

    def delete(self, path: str) -> None:
        """Delete a subtree (an old or abandoned version)."""
        full = f"{self.root.rstrip('/')}/{path}"
        try:
            if self.fs.exists(full):
                self.fs.rm(full, recursive=True)
        except Exception as err:  # noqa: BLE001 - pruning must never fail a run
            log.warning("could not delete old version %s: %s", path, err)
        self.invalidate()

    # -- datasets ------------------------------------------------------------------------------

    def path(self, stage: str, version: str, dataset: str | None = None) -> str:
        """Group path of a dataset inside a version (``stage/version[/dataset]``)."""
        root = dataset in (None, "", ".")  # "." names the version group itself in a record
        return f"{stage}/{version}" + ("" if root else f"/{dataset}")

    def open(
        self,
        stage: str,
        dataset: str | None = None,
        *,
        chunks: Any = None,
        version: str | None = None,
    ) -> xr.Dataset:
        """Open a dataset of the current (or a named) version of ``stage`` lazily.

        A dataset the current record lists in parts (an appended dataset) is their
        concatenation along the part dimension. A named ``version`` opens that version's own
        group only.

        Raises :class:`StoreError` naming the stage when it has no complete version yet.
        """
        if version is not None:
            return self._open_group(self.path(stage, version, dataset), chunks)
        record = self.record(stage)
        if record is None:
            raise StoreError(
                f"product {stage!r} has no complete version in store {self.url!r}; "
                f"run the pipeline up to stage {stage!r} first"
            )
        dim, versions = record.dataset_parts(dataset)
        parts = [self._open_group(self.path(stage, v, dataset), chunks) for v in versions]
        if len(parts) == 1:
            return parts[0]
        out = xr.concat(
            parts,
            dim,
            data_vars="minimal",
            coords="minimal",
            compat="override",
            join="exact",
            combine_attrs="override",
        )
        out.attrs = dict(parts[-1].attrs)  # the last part's attributes describe the whole
        return out

    def _open_group(self, path: str, chunks: Any) -> xr.Dataset:
        try:
            return xr.open_zarr(
                self.zarr_store,
                group=path,
                consolidated=False,
                chunks=chunks if chunks is not None else {},
                zarr_format=self.zarr_format,
                decode_coords="all",  # the CF grid mapping (spatial_ref) comes back as a coordinate
            )
        except (FileNotFoundError, zarr.errors.NodeNotFoundError, KeyError) as err:
            raise StoreError(f"dataset {path!r} not found in store {self.url!r}") from err

    @property
    def is_local(self) -> bool:
        """True for a store on this machine's disk (a Zarr ``LocalStore``)."""
        return _is_local(self.url)

    def put_group(self, path: str, documents: Mapping[str, bytes]) -> None:
        """Replace the Zarr group at ``path`` with ``documents`` (store key -> bytes), sent at once.

        ``documents`` holds the group's own keys (those under ``path/``, its ``zarr.json`` or
        ``.zgroup`` included) and may hold its parents' group documents; a parent document is
        written only where the store has none (an existing one may carry attributes). Whatever
        is under ``path`` already (an interrupted earlier try) is removed first, as Zarr's
        ``mode="w"`` does. The keys go in one concurrent batch (``fs.pipe``): on S3 that is one
        PUT a key, where creating the arrays through Zarr costs about 17 requests an array
        (listings, parents read and checked, each ``zarr.json`` written twice).
        """
        root = self.root.rstrip("/")
        own = {k: v for k, v in documents.items() if k.startswith(f"{path}/")}
        parents = {
            k: v for k, v in documents.items() if k not in own and not self.fs.exists(f"{root}/{k}")
        }
        if self.fs.exists(f"{root}/{path}"):
            self.fs.rm(f"{root}/{path}", recursive=True)
        self.fs.pipe({f"{root}/{k}": v for k, v in {**parents, **own}.items()})
        self.invalidate()

    def write_file(self, path: str, data: bytes | str) -> str:
        """Write a non-Zarr file (CSV, JSON, HTML, PNG) under the store root; returns its URL."""
        full = f"{self.root.rstrip('/')}/{path}"
        parent = full.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        payload = data.encode() if isinstance(data, str) else data
        if self.is_local:
            tmp = f"{full}.tmp-{os.getpid()}"
            with open(tmp, "wb") as f:
                f.write(payload)
            os.replace(tmp, full)
        else:
            with self.fs.open(full, "wb") as f:
                f.write(payload)
        return full if self.is_local else f"{self.url.split('://')[0]}://{full}"

    def read_file(self, path: str) -> bytes:
        """Read a non-Zarr file written by :meth:`write_file`."""
        with self.fs.open(f"{self.root.rstrip('/')}/{path}", "rb") as f:
            return f.read()


#: Retry and timeout defaults of S3 stores, passed to botocore through s3fs's ``config_kwargs``:
#: "standard" retries (exponential backoff with jitter, capped at 20 s per wait, about a minute
#: in all) of connection errors, throttling and 5xx. botocore's own default gives up after about
#: 3 s of refused connections, shorter than a restart of an S3 endpoint or a network blip.
#: Any of them set in ``storage_options["config_kwargs"]`` wins.
S3_RETRY_DEFAULTS: dict[str, Any] = {
    "config_kwargs": {
        "retries": {"max_attempts": 10, "mode": "standard"},  # botocore: connection errors too
        "connect_timeout": 10,
        "read_timeout": 60,
    },
}


def with_retry_defaults(url: str, storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``storage_options`` with :data:`S3_RETRY_DEFAULTS` filled in for ``s3://`` URLs.

    >>> with_retry_defaults("s3://b/p", {"config_kwargs": {"connect_timeout": 1}})["config_kwargs"]
    {'connect_timeout': 1, 'retries': {'max_attempts': 10, 'mode': 'standard'}, 'read_timeout': 60}
    """
    options = dict(storage_options or {})
    if not str(url).startswith(("s3://", "s3a://")):
        return options
    config = dict(options.get("config_kwargs") or {})
    for key, value in S3_RETRY_DEFAULTS["config_kwargs"].items():
        config.setdefault(key, value)
    options["config_kwargs"] = config
    return options


def open_product(
    store: str | os.PathLike[str] | ProductStore,
    stage: str,
    dataset: str | None = None,
    *,
    chunks: Any = None,
    version: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Open a product of a store lazily, as a CF-1.8 xarray Dataset with its CRS.

    Follows the stage's product record to its current complete version (or ``version``),
    concatenates the parts of an appended dataset, and decodes the ``spatial_ref`` grid mapping
    as a coordinate, so ``ds.rio.crs`` (rioxarray) is the grid's CRS.

    Parameters
    ----------
    store : str, path or ProductStore
        The store root a run wrote (local path, ``s3://bucket/prefix``, any fsspec URL).
    stage : str
        The product: ``sbas``, ``adjust``, ``mosaic``, ``hydro``, ``factors``, ``geodetector``,
        ``analysis``, ``ingest``...
    dataset : str, optional
        The dataset within the product (``"A040"`` for a frame of ``sbas``/``adjust``,
        ``"mass_diagnostic"``, ``"ifg/A040"``...). None opens the product's only dataset, or its
        root dataset (``mosaic``, ``hydro``); a product of several named datasets raises a
        :class:`StoreError` listing them.
    chunks : optional
        Dask chunks (default: the stored chunks).
    version : str, optional
        A version other than the current one (its own group only).
    storage_options : mapping, optional
        fsspec options of a remote store (``endpoint_url``, ``anon``...), when ``store`` is a URL.

    Raises
    ------
    StoreError
        No store there, the product has no complete version, or the dataset does not exist.

    Examples
    --------
    >>> import ncp_subsidence
    >>> ds = ncp_subsidence.open_product("ncp-store", "mosaic")  # doctest: +SKIP
    >>> ds["vertical_velocity"].rio.crs  # doctest: +SKIP
    CRS.from_epsg(4326)
    """
    if not isinstance(store, ProductStore):
        store = ProductStore(str(store), storage_options, must_exist=True)
    if dataset is None and version is None:
        record = store.record(stage)
        if record is None:
            raise StoreError(
                f"product {stage!r} has no complete version in store {store.url!r}; "
                f"run the pipeline up to stage {stage!r} first"
            )
        if "." not in record.datasets:
            if len(record.datasets) != 1:
                raise StoreError(
                    f"product {stage!r} holds the datasets {list(record.datasets)}; name one, "
                    f"e.g. open_product(store, {stage!r}, {record.datasets[0]!r})"
                    if record.datasets
                    else f"product {stage!r} holds no dataset (only files, e.g. CSV or HTML)"
                )
            dataset = record.datasets[0]
    return store.open(stage, dataset, chunks=chunks, version=version)


def open_store(options: Any, *, must_exist: bool = False) -> ProductStore:
    """Open the store described by a :class:`ncp_subsidence.config.StoreOptions`.

    ``must_exist``: a :class:`StoreError` instead of creating an empty store where none is.
    """
    return ProductStore(
        options.url, options.storage_options, options.zarr_format, must_exist=must_exist
    )


def _json_roundtrip(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))
