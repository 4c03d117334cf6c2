"""Errors that used to be swallowed now surface (issue 18): a damaged product is not a missing
report section, a broken regions source is not "no regions", a corrupt store root is not a new
store."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ncp_subsidence.errors import DataError, StoreError
from ncp_subsidence.io.stores import ProductStore


@pytest.fixture
def store_copy(tiny_run, tmp_path):
    _cfg, store = tiny_run
    dest = tmp_path / "store"
    shutil.copytree(store.url, dest)
    return ProductStore(str(dest))


def test_report_refuses_a_damaged_product_instead_of_dropping_its_section(store_copy):
    from ncp_subsidence.stages.report import _open_optional

    record = store_copy.record("sbas")
    assert _open_optional(store_copy, "sbas", "velocity") is not None
    for name in record.datasets:  # damage every dataset's metadata
        group = Path(store_copy.root) / store_copy.path("sbas", record.version, name)
        (group / "zarr.json").unlink()
    with pytest.raises(StoreError, match="not found"):
        _open_optional(store_copy, "sbas", "velocity")


def test_regions_source_present_but_unreadable_is_an_error(store_copy):
    from ncp_subsidence.sources import source_names
    from ncp_subsidence.stages.analysis import load_regions

    assert "regions" in source_names(store_copy)
    regions = load_regions(store_copy)
    assert regions  # the twin's regions
    record = store_copy.record("discover")
    (Path(store_copy.root) / "discover" / record.version / "catalog" / "regions.json").unlink()
    with pytest.raises(DataError, match="regions"):
        load_regions(store_copy)
