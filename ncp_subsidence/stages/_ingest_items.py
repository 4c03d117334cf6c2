"""Ingest, shared by its datasets: asset hrefs, remote reads, provenance and increments.

Each dataset records the items that made it (``source_item_ids``, ``source_items_digest``) and
how they were read (``source_read_options``); :func:`_increment` compares them with the
current items to decide whether the dataset is reused, appended to, or rewritten whole (the
``ingest`` module docstring).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import xarray as xr

from .. import __version__
from ..config import redacted_dump
from ..io.remote import fsspec_options, retrying
from ..io.stac import choose_asset, items_digest
from ..sources import item_bboxes, source_names

log = logging.getLogger("ncp_subsidence.stages.ingest")


def _hrefs(items: list[Any], keys: tuple[str, ...] = ("data",)) -> list[str]:
    return [
        choose_asset(i, keys)[1].get_absolute_href() or choose_asset(i, keys)[1].href for i in items
    ]


def _remote(config: Any, key: str) -> tuple[int, Any]:
    """The retries and HTTP headers of source ``key`` (headers stay SecretStr until sent)."""
    source = getattr(config.sources, key, None)
    return config.sources.retries, (source.headers if source is not None else None)


def _read_product(config: Any, key: str, hrefs: list[str], read: Any) -> xr.Dataset:
    """``read(storage_options)`` retried on transient failures, authenticated per source."""
    retries, headers = _remote(config, key)
    options = fsspec_options(hrefs[0], headers)
    url = hrefs[0] + (f" (+{len(hrefs) - 1} more)" if len(hrefs) > 1 else "")
    return retrying(
        lambda: read(options),
        url=url,
        what=f"source {key!r}",
        retries=retries,
        headers=headers,
    )


def _provenance(items: list[Any], how: str = "") -> dict[str, str]:
    """Attributes naming what a dataset was made of: its items, and how they were read."""
    return {
        "source_item_ids": json.dumps([i.id for i in items]),
        "source_items_digest": items_digest(items),
        "source_read_options": how,
    }


def _increment(
    ctx: Any, name: str, items: list[Any], how: str = ""
) -> tuple[Any, list[Any]] | None:
    """The previous dataset and the items new since it, when ``name`` can be extended.

    ``how`` describes the reading options that shape the dataset (assets, grid); it must equal
    the previous one's. None when the dataset must be written whole: no previous product (first
    run, ``--force``, ``ingest.incremental`` off), other ingest options, package version or
    reading options than the previous dataset's, an item it was made of is gone or changed, or
    it already has ``ingest.max_parts`` parts.
    """
    opts = ctx.options
    prev_record = ctx.previous
    if not opts.incremental or prev_record is None or name not in prev_record.datasets:
        return None
    _, versions = prev_record.dataset_parts(name)
    previous = ctx.store.open("ingest", name)
    try:
        old_ids = json.loads(previous.attrs["source_item_ids"])
        old_digest = previous.attrs["source_items_digest"]
        old_how = previous.attrs["source_read_options"]
    except KeyError:
        log.info("%s: the previous dataset has no item provenance; rewriting it", name)
        return None
    options = json.dumps(redacted_dump(opts), sort_keys=True)
    if (
        old_how != how
        or previous.attrs.get("ncp_subsidence_options") != options
        or previous.attrs.get("ncp_subsidence_version") != __version__
    ):
        log.info("%s: ingest options or package version changed; rewriting it", name)
        return None
    known = {i.id: i for i in items}
    gone = [i for i in old_ids if i not in known]
    if gone:
        log.info(
            "%s: %d item(s) of the previous run are gone (%s...); rewriting",
            name,
            len(gone),
            gone[0],
        )
        return None
    if items_digest([known[i] for i in old_ids]) != old_digest:
        log.info("%s: items of the previous run were republished; rewriting", name)
        return None
    old = set(old_ids)
    added = [i for i in items if i.id not in old]
    if added and len(versions) >= opts.max_parts:
        log.info("%s: %d parts reached (ingest.max_parts); rewriting it whole", name, len(versions))
        return None
    return previous, added


def _frame_boxes(ctx: Any) -> list[tuple[float, float, float, float]]:
    """Lon/lat bbox of each ingested interferogram frame (the union of its items' ``bbox``)."""
    boxes = []
    for name in source_names(ctx.store):
        if not name.startswith("interferograms/"):
            continue
        bbs = item_bboxes(ctx.store, name)
        if bbs:
            a = np.asarray(bbs, dtype=float)
            boxes.append((a[:, 0].min(), a[:, 1].min(), a[:, 2].max(), a[:, 3].max()))
    return boxes
