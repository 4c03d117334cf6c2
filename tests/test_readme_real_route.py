"""README's real-data route, run as written: ``catalog licsar`` and ``catalog hyp3`` on a LiCSAR
frame folder and HyP3 zips (the tiny twin's, written in the providers' layouts), a config naming
the catalogs, ``config --check``, then ``run`` through discover, ingest and sbas."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pystac

from ncp_subsidence.io.stores import ProductStore

ROOT = Path(__file__).resolve().parents[1]


def _route() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- real-data-route -->\s*```bash\n(.*?)```", text, re.S)
    assert m, "README.md lost its real-data route block"
    return m.group(1)


def test_readme_real_data_route_runs_as_written(tmp_path, providers_twin, tiny_twin):
    fixtures = providers_twin.root
    (frame,) = sorted((fixtures / "licsar").iterdir())
    zips = fixtures / "hyp3"
    n_licsar = len(list((frame / "interferograms").iterdir()))
    n_hyp3 = len(list(zips.glob("*.zip")))
    work = tmp_path / "work"
    work.mkdir()
    # the block's `twin: {preset: tiny}` fills the unset sources from ./ncp-twin-tiny-0: the
    # session's tiny twin (the same preset and seed) stands there instead of a second copy
    (work / "ncp-twin-tiny-0").symlink_to(tiny_twin.root, target_is_directory=True)
    env = {
        **os.environ,
        "LICSAR_FRAME": str(frame),
        "HYP3_ZIPS": str(zips),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", _route()],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name, n in (("licsar", n_licsar), ("hyp3", n_hyp3)):
        catalog = pystac.Catalog.from_file(str(work / "catalogs" / name / "catalog.json"))
        ids = [i.id for i in catalog.get_items(recursive=True)]
        assert len(ids) == len(set(ids)) == n
    store = ProductStore(str(work / "ncp-store"), must_exist=True)
    for frame_id, fmt, n in ((frame.name, "licsar", n_licsar), ("A142", "hyp3", n_hyp3)):
        ds = store.open("ingest", f"ifg/{frame_id}")
        assert ds.sizes["pair"] == n and ds.attrs["ifg_format"] == fmt
        coh = ds["coherence"].values
        assert np.nanmax(coh) <= 1.0 and np.nanmin(coh) >= 0.0
        assert not np.any(ds["unw_phase"].values == 0.0)  # no no-data read as phase 0
        up = ds["los_up"].values
        assert np.all(up[np.isfinite(up)] > 0.5)  # ground-to-satellite: up component positive
        assert np.isfinite(store.open("sbas", frame_id)["velocity"].values).mean() > 0.5
    assert "32650" in str(store.open("sbas", "A142").attrs.get("crs"))
