"""The notebooks execute top to bottom on the tiny twin, so they never rot.

Each notebook's ``parameters`` cell is replaced by one pointing at a store prepared on the tiny
twin (truth-fed ``mosaic``/``hydro``, then ``factors``, ``geodetector``, ``analysis``, ``report``)
and at the stages ``analysis`` and ``report``, which the notebooks' own ``run_pipeline`` call then
finds up to date. Notebooks 1 and 2 start a real 2-worker LocalCluster.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ncp_subsidence.config import to_yaml
from ncp_subsidence.testing.stages import truth_analysis_config, truth_analysis_store

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def config_yaml(tiny_twin, tiny_run, tmp_path_factory):
    dest = tmp_path_factory.getbasetemp() / "analysis-truth-store"
    cfg = truth_analysis_config(tiny_twin, str(dest))
    truth_analysis_store(tiny_twin, tiny_run[0].store.url, str(dest), cfg)
    path = tmp_path_factory.mktemp("notebooks") / "config.yaml"
    path.write_text(to_yaml(cfg, redact=False))
    return path


def test_four_notebooks_exist():
    assert [p.stem[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_are_committed_with_outputs_of_a_demo_run(path):
    """A reader on GitHub sees results: every code cell but the parameters ran, in order, and
    the run found every stage of the demo up to date, so nothing ran again from notebooks/."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code]
    assert all(isinstance(n, int) for n in counts) and counts == sorted(counts), counts
    ran = [c for c in code if "parameters" not in c.metadata.get("tags", [])]
    assert all(c.outputs for c in ran), [c.source[:40] for c in ran if not c.outputs]
    errors = [o for c in code for o in c.outputs if o.get("output_type") == "error"]
    assert not errors
    text = "".join(o.get("text", "") for c in code for o in c.outputs)
    assert "skipped" in text and " ran " not in text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, config_yaml, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "each notebook has exactly one cell tagged 'parameters'"
    tagged[0].source += (
        f"\n# injected by tests/test_notebooks.py\nCONFIG = {str(config_yaml)!r}\n"
        'STAGES = ["analysis", "report"]\nCLUSTER_KIND = "local"\nN_WORKERS = 2\n'
    )
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert "def " not in cell.source or path.stem.startswith("03"), (
                "notebooks hold no logic of their own"
            )
    client = NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    text = "\n".join(
        o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
    )
    assert "skipped" in text  # the notebook's run_pipeline found the products up to date
    if path.stem.startswith(("01", "02")):
        assert "dashboard: http://127.0.0.1:" in text
