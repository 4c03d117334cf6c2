"""The command line: subcommands, config writing and checking, errors as one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ncp_subsidence.cli import build_parser, main


def _cli(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "ncp_subsidence.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        **kw,
    )


def test_help_lists_subcommands():
    # --help is fast because it imports no heavy module (the next test); its wall time is
    # machine-dependent and not asserted here
    out = _cli("--help")
    assert out.returncode == 0
    for cmd in ("demo", "run", "config", "twin"):
        assert cmd in out.stdout


def test_every_stage_of_the_table_is_a_subcommand():
    from ncp_subsidence.pipeline import STAGES

    args = build_parser().parse_args
    for stage in STAGES:
        assert args([stage]).command == stage


def test_help_imports_no_heavy_modules():
    code = "import sys; from ncp_subsidence.cli import build_parser; build_parser(); print(sorted(m for m in ('dask','xarray','zarr','numpy','distributed') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_version():
    out = _cli("--version")
    assert out.returncode == 0 and "ncp-subsidence" in out.stdout


def test_config_output_passes_check(tmp_path):
    path = tmp_path / "config.yaml"
    assert main(["config", "--out", str(path)]) == 0
    assert path.read_text().startswith("# ncp_subsidence configuration")
    out = _cli("config", "--check", str(path))
    assert out.returncode == 0, out.stderr
    assert "valid" in out.stdout


def test_config_check_prints_every_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("sbas:\n  weights: heavy\n  looks: 0\nstore:\n  zarr_format: 4\n")
    out = _cli("config", "--check", str(path))
    assert out.returncode == 2
    assert out.stderr.count("\n  ") == 3
    for needle in ("sbas.weights", "'heavy'", "sbas.looks", "store.zarr_format", "4"):
        assert needle in out.stderr
    assert "Traceback" not in out.stderr


def test_runtime_error_is_one_line_and_nonzero(tmp_path):
    # run a stage whose input product does not exist: a clear StoreError, exit 1, no traceback
    store = tmp_path / "store"
    out = _cli("run", "--store", str(store), "--stages", "sbas", "--workers", "1", "-q")
    assert out.returncode in (1, 2)
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("ncp-subsidence: error")]
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr


def test_bad_set_override():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--stages", "nonsense"])
    assert main(["run", "--set", "novalue", "-q"]) == 2


_WORKER_ERROR = r"""
import os, sys
from ncp_subsidence.cli import _setup_logging
from ncp_subsidence.cluster import connect
from ncp_subsidence.config import ClusterOptions

def fails():
    raise ValueError("bad block")

for verbose in (False, True):
    if verbose:  # as a fresh `ncp-subsidence -v` process would have it
        os.environ.pop("DASK_LOGGING__DISTRIBUTED", None)
    _setup_logging(verbose, False)
    print(f"--- verbose={verbose}", file=sys.stderr, flush=True)
    with connect(ClusterOptions(n_workers=1, threads_per_worker=1)) as client:
        try:
            client.submit(fails, pure=False).result()
        except ValueError:
            pass
"""


def test_worker_errors_are_quiet_unless_verbose():
    """The CLI's logging keeps distributed's "Compute Failed" block (logged by the worker process
    on its own stderr) out of the output, so the one-line error is all a user sees; --verbose
    shows it (which also shows the check would catch it)."""
    out = subprocess.run(
        [sys.executable, "-c", _WORKER_ERROR], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    quiet, verbose = out.stderr.split("--- verbose=True")
    assert "--- verbose=False" in quiet
    assert "Compute Failed" not in quiet and "Traceback" not in quiet, quiet
    assert "Compute Failed" in verbose
