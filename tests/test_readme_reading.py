"""The README's reading examples ("## The store") run as written, against a run's store.

The python blocks of that section are executed in a folder where ``ncp-store`` is the session's
analysis truth store (every product but ``adjust``, shared with test_report and
test_stages_analysis; frames ``A040`` and ``A142``), so a reader copying them gets what they
print: a CRS rioxarray sees and CF-1.8 products.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import pytest

from ncp_subsidence.testing.stages import truth_analysis_config, truth_analysis_store

README = Path(__file__).resolve().parents[1] / "README.md"


def _store_blocks() -> list[str]:
    text = README.read_text()
    section = text.split("\n## The store\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.fixture(scope="module")
def store(tiny_twin, tiny_run, tmp_path_factory):
    dest = tmp_path_factory.getbasetemp() / "analysis-truth-store"
    cfg = truth_analysis_config(tiny_twin, str(dest))
    return truth_analysis_store(tiny_twin, tiny_run[0].store.url, str(dest), cfg)


def test_readme_reading_examples_run_as_written(store, tmp_path, monkeypatch):
    blocks = _store_blocks()
    assert len(blocks) >= 2 and "open_product" in blocks[0] and 'decode_coords="all"' in blocks[1]
    (tmp_path / "ncp-store").symlink_to(store.url, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        namespace: dict = {}
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(block, "README.md", "exec"), namespace)
        assert "EPSG:4326" in printed.getvalue(), (block, printed.getvalue())
        if "mosaic" in namespace and hasattr(namespace["mosaic"], "attrs"):
            assert namespace["mosaic"].attrs["Conventions"] == "CF-1.8"
            assert "CF-1.8" in printed.getvalue()
        if "frame" in namespace:
            assert namespace["frame"].rio.crs is not None
    assert os.getcwd() == str(tmp_path)
