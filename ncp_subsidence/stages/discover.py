"""Stage ``discover``: find the items every source offers and save them in the store.

Each configured source (:func:`ncp_subsidence.sources.resolve_sources`: the config's, or the
twin's for those left unset) is searched (STAC API), walked (static catalog) or taken as a file.
The items found are saved as one STAC ItemCollection per source under
``discover/<version>/catalog/<source>.json`` (and ``.ndjson``), asset URLs without their
credentials, so a run can be reproduced exactly; ingest reads them back with
:func:`ncp_subsidence.sources.load_items`.

The stage's fingerprint includes a digest of the items found, so a rerun after new acquisitions
appear recomputes discovery and everything downstream, and a rerun with nothing new skips.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pystac

from ..config import Config, redacted_dump
from ..errors import DataError
from ..io.stac import StaticDocuments, discover_items, items_digest, strip_credentials
from ..pipeline import Stage, StageContext
from ..sources import HYDRO_SOURCES, resolve_sources, twin_directory

__all__ = ["STAGE", "DiscoverStage"]

log = logging.getLogger(__name__)


class DiscoverStage(Stage):
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
        # static catalog documents read by this discovery, shared by its sources (the twin's
        # root catalog serves one source per collection); dropped with it: a fresh search
        # reads catalogs again, as they grow between runs
        documents = StaticDocuments()
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
                documents=documents,
            )
            if not items and config.discover.fail_on_empty:
                raise DataError(
                    f"source {name!r} ({src.url}, collections {src.collections}) returned no items in "
                    f"bbox {list(src.bbox or config.sources.bbox)} and {src.datetime or config.sources.datetime}; "
                    "widen the search or set discover.fail_on_empty: false"
                )
            found[name] = items
        log.debug(
            "static catalogs: %d document(s) read, %d read again from memory",
            documents.reads,
            documents.hits,
        )
        self._cache, self._cache_key = found, key
        return found

    def fingerprint_extra(self, config: Config) -> dict[str, Any]:
        # once per run, before run(): always a fresh search (catalogs grow between runs), which
        # run() then reuses
        found = self._discover(config, fresh=True)
        sources = redacted_dump(config.sources)
        # the twin's place, not how it was spelled: "../ncp-twin-demo-0" from notebooks/ is the
        # twin the demo wrote at the top level (its items' hrefs carry the place too)
        sources["twin"]["directory"] = str(twin_directory(config))
        return {
            "sources": sources,
            "items": {k: items_digest(v) for k, v in sorted(found.items())},
        }

    def run(self, ctx: StageContext) -> None:
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
            collection = pystac.ItemCollection(items, clone_items=False)  # only serialised
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


STAGE = DiscoverStage()
