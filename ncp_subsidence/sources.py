"""The inputs of a run: which sources a config names, the twin behind the unset ones, and the
items a discovery saved.

A config that sets no source runs on the embedded NCP twin (written first if it is not there);
one that sets some must set all, unless ``sources.twin.fill_unset`` lets the twin fill the rest
(:func:`check_sources`); optional sources (``gnss_series``) may stay unset in any config, and the
twin fills one in only when it also gives the GNSS velocities. :func:`resolve_sources` turns the
config into one :class:`~ncp_subsidence.config.SourceOptions` per input; :func:`load_items` reads
back what the ``discover`` stage saved, credentials restored from the config. Used by the stages,
the CLI and ``io.check``; imports no stage.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pystac

from .config import OPTIONAL_SOURCES, Config, SourceOptions
from .errors import ConfigError, DataError
from .io.stac import restore_credentials

__all__ = [
    "HYDRO_SOURCES",
    "OPTIONAL_SOURCE_KEYS",
    "RASTER_FACTORS",
    "SOURCE_KEYS",
    "check_sources",
    "input_kind",
    "load_items",
    "resolve_sources",
    "source_names",
    "twin_directory",
    "unset_sources",
]

log = logging.getLogger(__name__)


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

#: Single-source inputs by name (interferograms are per frame: ``interferograms/<frame>``).
SOURCE_KEYS = (*HYDRO_SOURCES, *RASTER_FACTORS, "faults", "gnss", "regions")

#: Optional inputs (:data:`~ncp_subsidence.config.OPTIONAL_SOURCES`): a config that leaves one
#: unset is still ``real``; the twin fills one in only where it gives the GNSS velocities too
#: (its series are of its own stations).
OPTIONAL_SOURCE_KEYS = OPTIONAL_SOURCES


def twin_directory(config: Config) -> Path:
    """Where the twin used by this config lives."""
    twin = config.sources.twin
    return Path(twin.directory or f"ncp-twin-{twin.preset}-{twin.seed}").expanduser().resolve()


def _ensure_twin(config: Config) -> Any:
    from .synthetic import load_manifest
    from .synthetic.presets import resolve_layouts

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
    from .synthetic import write_twin  # the writer (rasterio, the truth model): 1.3 s to import

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
                from .synthetic.providers import provider_catalog

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


def load_items(
    store: Any, name: str, version: str | None = None, *, config: Config | None = None
) -> list[pystac.Item]:
    """The items a run's discovery saved for source ``name`` (current version by default).

    With ``config``, asset URLs saved without their credential get it back from the config
    (:func:`ncp_subsidence.io.stac.restore_credentials`); without, they stay masked (``***``).
    """
    data = _saved_items(store, name, version)
    # discovery saved them with this pystac, migrated already: no copy, no second migration
    # (pystac's migration deep-copies every item: 0.8 s of the large preset's ingest)
    current = pystac.get_stac_version()
    items = [
        pystac.Item.from_dict(f, preserve_dict=False, migrate=f.get("stac_version") != current)
        for f in data.get("features", [])
    ]
    if config is None:
        return items
    return restore_credentials(items, _configured(config, name), name)


def _saved_items(store: Any, name: str, version: str | None) -> dict:
    """The ItemCollection dict a run's discovery saved for ``name`` (current version if None)."""
    if version is None:
        record = store.record("discover")
        if record is None:
            raise DataError("no discovery has completed in this store; run stage 'discover' first")
        version = record.version
    try:
        return json.loads(store.read_file(f"discover/{version}/catalog/{name}.json"))
    except FileNotFoundError as err:
        raise DataError(f"discovery saved no items for source {name!r}") from err


def item_bboxes(store: Any, name: str) -> list[list[float]]:
    """The ``bbox`` of each item the current discovery saved for ``name`` (items without one
    skipped), read from the saved JSON without building the items."""
    data = _saved_items(store, name, None)
    return [f["bbox"] for f in data.get("features", []) if f.get("bbox")]


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
