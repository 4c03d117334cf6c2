"""Stage ``discover``: find the items every source offers and save them in the store.

Each configured source is searched (STAC API), walked (static catalog) or taken as a file.
A config that sets no source runs on the embedded NCP twin (written first if it is not
there); one that sets some must set all, unless ``sources.twin.fill_unset`` lets the twin
fill the rest (:func:`check_sources`); optional sources (``gnss_series``) may stay unset in any
config, and the twin fills one in only when it also gives the GNSS velocities. The items
found are saved as one STAC ItemCollection per source under
``discover/<version>/catalog/<source>.json`` (and ``.ndjson``), so a run can be reproduced
exactly, and ingest reads them from there.

The stage's fingerprint includes a digest of the items found, so a rerun after new acquisitions
appear recomputes discovery and everything downstream, and a rerun with nothing new skips.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pystac

from ..config import OPTIONAL_SOURCES, Config, SourceOptions, redacted_dump
from ..errors import ConfigError, DataError
from ..io.stac import discover_items, items_digest, restore_credentials, strip_credentials

__all__ = [
    "OPTIONAL_SOURCE_KEYS",
    "RASTER_FACTORS",
    "SOURCE_KEYS",
    "STAGE",
    "DiscoverStage",
    "check_sources",
    "input_kind",
    "load_items",
    "resolve_sources",
    "twin_directory",
]

log = logging.getLogger(__name__)

#: Single-source inputs by name (interferograms are per frame: ``interferograms/<frame>``).
SOURCE_KEYS = (
    "grace",
    "gldas",
    "fldas",
    "imerg",
    "dem",
    "ndvi",
    "evapotranspiration",
    "precipitation",
    "population",
    "gdp",
    "building_density",
    "faults",
    "gnss",
    "regions",
)

#: Optional inputs (:data:`~ncp_subsidence.config.OPTIONAL_SOURCES`): a config that leaves one
#: unset is still ``real``; the twin fills one in only where it gives the GNSS velocities too
#: (its series are of its own stations).
OPTIONAL_SOURCE_KEYS = OPTIONAL_SOURCES

#: Gridded hydrology, searched over ``sources.hydro_datetime``.
HYDRO_SOURCES = ("grace", "gldas", "fldas", "imerg")

#: Sources that are driving-factor rasters (resampled to the factor grid at ingest).
RASTER_FACTORS = (
    "dem",
    "ndvi",
    "evapotranspiration",
    "precipitation",
    "population",
    "gdp",
    "building_density",
)


def twin_directory(config: Config) -> Path:
    """Where the twin used by this config lives."""
    twin = config.sources.twin
    return Path(twin.directory or f"ncp-twin-{twin.preset}-{twin.seed}").expanduser().resolve()


def _ensure_twin(config: Config) -> Any:
    from ..synthetic import load_manifest, write_twin
    from ..synthetic.presets import resolve_layouts

    directory = twin_directory(config)
    twin = config.sources.twin
    layouts = resolve_layouts(twin.layouts, twin.preset)
    if (directory / "twin.json").exists():
        manifest = load_manifest(directory)
        if (manifest.preset, manifest.seed, manifest.layouts) == (twin.preset, twin.seed, layouts):
            return manifest
        raise DataError(
            f"{directory} holds the twin preset {manifest.preset!r} seed {manifest.seed} "
            f"layouts {manifest.layouts!r}, but the config asks for {twin.preset!r} seed "
            f"{twin.seed} layouts {layouts!r}; set sources.twin.directory to another folder"
        )
    log.info(
        "writing the NCP twin (%s, seed %d, %s layouts) to %s",
        twin.preset,
        twin.seed,
        layouts,
        directory,
    )
    return write_twin(directory, preset=twin.preset, seed=twin.seed, layouts=layouts)


#: Cluster kinds whose workers do not share this machine's disk.
REMOTE_CLUSTERS = ("address", "gateway", "kubernetes", "coiled")


def unset_sources(config: Config) -> list[str]:
    """Names of the sources the config leaves unset (``interferograms`` when it has no frame)."""
    sources = config.sources
    out = [] if sources.interferograms else ["interferograms"]
    return out + [k for k in SOURCE_KEYS if getattr(sources, k) is None]


def input_kind(config: Config) -> str:
    """``twin`` (no source set), ``real`` (every source set) or ``mixed`` (the twin fills some)."""
    unset = unset_sources(config)
    if not unset:
        return "real"
    return "twin" if len(unset) == len(SOURCE_KEYS) + 1 else "mixed"


def _is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def check_sources(config: Config) -> None:
    """Refuse a config whose inputs cannot be read as configured (:class:`ConfigError`).

    A config that sets some sources must set them all, unless ``sources.twin.fill_unset`` lets
    the twin fill the rest (a config setting none runs on the twin entirely). A remote cluster
    (``cluster.kind`` address, gateway, kubernetes, coiled) cannot read a configured source
    from a local path: its workers do not share this machine's disk.
    """
    unset = unset_sources(config)
    kind = input_kind(config)
    if kind == "mixed" and not config.sources.twin.fill_unset:
        raise ConfigError(
            f"sources {', '.join(unset)} are unset while others are set; set them too, or set "
            "sources.twin.fill_unset: true to take the unset ones from the synthetic twin"
        )
    if config.cluster.kind in REMOTE_CLUSTERS:
        named = {f"interferograms/{f}": s for f, s in config.sources.interferograms.items()}
        named.update({k: getattr(config.sources, k) for k in SOURCE_KEYS + OPTIONAL_SOURCE_KEYS})
        for name, src in named.items():
            if src is not None and _is_local(src.url):
                raise ConfigError(
                    f"source {name!r} is a local path ({src.url}) but cluster.kind is "
                    f"{config.cluster.kind!r}, whose workers cannot read this machine's disk; "
                    "serve it from s3:// or https://"
                )


def resolve_sources(config: Config) -> dict[str, SourceOptions]:
    """Every input as a SourceOptions: the configured ones, and the twin's for those left unset.

    Raises :class:`ConfigError` where :func:`check_sources` refuses the config.
    """
    check_sources(config)
    sources = config.sources
    out: dict[str, SourceOptions] = {}
    manifest = _ensure_twin(config) if sources.uses_twin else None
    catalog = str(manifest.catalog) if manifest is not None else None
    if sources.interferograms:
        for frame, src in sources.interferograms.items():
            out[f"interferograms/{frame}"] = src
    else:
        for frame, collection in manifest.frame_collections.items():
            url = catalog
            provider = manifest.frame_sources.get(frame)
            if provider is not None:  # LiCSAR / HyP3 layout: the catalog its adapter made
                from ..synthetic.providers import provider_catalog

                url = str(provider_catalog(manifest.root, frame, provider))
            out[f"interferograms/{frame}"] = SourceOptions(
                kind="static_catalog", url=url, collections=[collection]
            )
    for key in SOURCE_KEYS:
        src = getattr(sources, key)
        if src is None:
            src = SourceOptions(
                kind="static_catalog", url=catalog, collections=[manifest.collections[key]]
            )
        out[key] = src
    for key in OPTIONAL_SOURCE_KEYS:
        src = getattr(sources, key)
        if src is None and manifest is not None and sources.gnss is None:
            collection = manifest.collections.get(key)
            if collection is not None:  # a twin written before it had one has none
                src = SourceOptions(kind="static_catalog", url=catalog, collections=[collection])
        if src is not None:
            out[key] = src
        else:
            log.info(
                "sources.%s is unset: adjust compares GNSS velocities only, no position series",
                key,
            )
    return out


class DiscoverStage:
    """Search every source and save the items found (see the module docstring)."""

    name = "discover"
    reads: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._cache: dict[str, list[pystac.Item]] | None = None
        self._cache_key: str | None = None

    def _discover(self, config: Config, fresh: bool = False) -> dict[str, list[pystac.Item]]:
        """Items of every source; ``fresh`` searches again even if this run already did."""
        key = json.dumps(redacted_dump(config.sources), sort_keys=True)
        if not fresh and self._cache is not None and self._cache_key == key:
            return self._cache
        found: dict[str, list[pystac.Item]] = {}
        for name, src in resolve_sources(config).items():
            window = (
                config.sources.hydro_datetime if name in HYDRO_SOURCES else config.sources.datetime
            )
            items = discover_items(
                src,
                bbox=config.sources.bbox,
                datetime=window,
                retries=config.sources.retries,
                timeout_s=config.sources.timeout_s,
            )
            if not items and config.discover.fail_on_empty:
                raise DataError(
                    f"source {name!r} ({src.url}, collections {src.collections}) returned no items in "
                    f"bbox {list(src.bbox or config.sources.bbox)} and {src.datetime or config.sources.datetime}; "
                    "widen the search or set discover.fail_on_empty: false"
                )
            found[name] = items
        self._cache, self._cache_key = found, key
        return found

    def fingerprint_extra(self, config: Config) -> dict[str, Any]:
        # once per run, before run(): always a fresh search (catalogs grow between runs), which
        # run() then reuses
        found = self._discover(config, fresh=True)
        return {
            "sources": redacted_dump(config.sources),
            "items": {k: items_digest(v) for k, v in sorted(found.items())},
        }

    def run(self, ctx: Any) -> None:
        found = self._discover(ctx.config)
        index, n_stripped = {}, {}
        for name, items in found.items():
            items, n_stripped[name] = strip_credentials(items)
            if n_stripped[name]:
                log.info(
                    "%s: %d asset URL(s) held a credential; saved without it (read again from "
                    "the config when ingest reads them)",
                    name,
                    n_stripped[name],
                )
            collection = pystac.ItemCollection(items)
            ctx.write_file(
                f"catalog/{name}.json",
                json.dumps(collection.to_dict(transform_hrefs=False), sort_keys=True),
            )
            ctx.write_file(
                f"catalog/{name}.ndjson",
                "".join(
                    json.dumps(i.to_dict(transform_hrefs=False), sort_keys=True) + "\n"
                    for i in items
                ),
            )
            index[name] = len(items)
        ctx.write_file("catalog/index.json", json.dumps(index, sort_keys=True, indent=1))
        ctx.write_file(
            "catalog/credentials_removed.json",
            json.dumps({k: v for k, v in n_stripped.items() if v}, sort_keys=True, indent=1),
        )
        log.info("discovered %s", ", ".join(f"{k}: {v}" for k, v in index.items()))


def load_items(
    store: Any, name: str, version: str | None = None, *, config: Config | None = None
) -> list[pystac.Item]:
    """The items a run's discovery saved for source ``name`` (current version by default).

    With ``config``, asset URLs saved without their credential get it back from the config
    (:func:`ncp_subsidence.io.stac.restore_credentials`); without, they stay masked (``***``).
    """
    if version is None:
        record = store.record("discover")
        if record is None:
            raise DataError("no discovery has completed in this store; run stage 'discover' first")
        version = record.version
    try:
        data = json.loads(store.read_file(f"discover/{version}/catalog/{name}.json"))
    except FileNotFoundError as err:
        raise DataError(f"discovery saved no items for source {name!r}") from err
    items = list(pystac.ItemCollection.from_dict(data))
    if config is None:
        return items
    return restore_credentials(items, _configured(config, name), name)


def _configured(config: Config, name: str) -> SourceOptions | None:
    """The configured source behind discovery name ``name`` (None: the twin's)."""
    if name.startswith("interferograms/"):
        return config.sources.interferograms.get(name.split("/", 1)[1])
    return getattr(config.sources, name, None)


def source_names(store: Any) -> list[str]:
    """Names of the sources the current discovery saved."""
    record = store.record("discover")
    if record is None:
        raise DataError("no discovery has completed in this store; run stage 'discover' first")
    return sorted(json.loads(store.read_file(f"discover/{record.version}/catalog/index.json")))


STAGE = DiscoverStage()
