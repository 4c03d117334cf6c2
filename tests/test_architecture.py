"""The layering rules, kept true by reading the package's own source (AST, no imports run).

- kernels import only numpy, scipy, the standard library, ``ncp_subsidence.errors`` and
  ``ncp_subsidence.choices`` (and each other);
- no stage imports another stage (a stage may import its own private ``stages/_<stage>_*``
  modules; shared pieces live in ``shared``, ``sources``, ``choices``, ``io``, ``kernels``,
  ``models``);
- only ``cli.py`` configures logging (``logcapture.py`` captures a task's records and restores
  the logger); only ``cluster.py`` creates a Dask client or cluster;
- every module under ``stages/`` is under 500 lines;
- every ``*.md`` file the code cites exists in the repository.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

from ncp_subsidence.config import STAGE_NAMES

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ncp_subsidence"
STAGES = STAGE_NAMES


def _modules(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _dotted(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _imports(path: Path, module: str | None = None) -> set[str]:
    """Absolute names of every module ``path`` (named ``module``) imports, relative resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    module = module or _dotted(path)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base)
                module = f"{prefix}.{node.module}" if node.module else prefix
                if node.module is None:  # from . import x: x may be a module
                    out.update(f"{prefix}.{a.name}" for a in node.names)
            else:
                module = node.module or ""
            out.add(module)
            out.update(f"{module}.{a.name}" for a in node.names)
    return out


def _stage_of(module: str) -> str | None:
    """The stage a ``ncp_subsidence.stages.*`` module belongs to (its private modules too)."""
    if not module.startswith("ncp_subsidence.stages."):
        return None
    name = module.split(".")[2]
    name = name[1:] if name.startswith("_") else name
    return next((s for s in STAGES if name == s or name.startswith(f"{s}_")), None)


@pytest.mark.parametrize("path", _modules(PACKAGE / "kernels"), ids=lambda p: p.name)
def test_kernels_import_only_numpy_scipy_and_errors(path):
    # numba compiles numpy code (kernels/trends.py): still arrays in, arrays out, no I/O, no dask
    allowed = {"numpy", "scipy", "numba", "ncp_subsidence.errors", "ncp_subsidence.choices"}
    bad = set()
    for name in _imports(path):
        top = name.split(".")[0]
        if top in sys.stdlib_module_names or top == "__future__":
            continue
        if name.startswith("ncp_subsidence.kernels") or name == "ncp_subsidence":
            continue
        if not any(name == a or name.startswith(f"{a}.") for a in allowed):
            bad.add(name)
    assert not bad, f"{path.name} imports {sorted(bad)}"


def _foreign_stages(path: Path, module: str) -> set[str]:
    own = _stage_of(module)
    if own is None:
        return set()
    return {m for m in _imports(path, module) if (s := _stage_of(m)) is not None and s != own}


@pytest.mark.parametrize("path", _modules(PACKAGE / "stages"), ids=lambda p: p.name)
def test_no_stage_imports_another(path):
    others = _foreign_stages(path, _dotted(path))
    assert not others, f"{path.name} imports {sorted(others)}"


@pytest.mark.parametrize("path", _modules(PACKAGE / "stages"), ids=lambda p: p.name)
def test_stage_modules_stay_under_500_lines(path):
    n = len(path.read_text().splitlines())
    assert n < 500, f"{path.name} has {n} lines; move numeric work to kernels/ or split it"


def _calls(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            f = node.func
            names.append(f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", ""))
    return names


#: the one module besides cli.py allowed to touch a logger's handlers and level: it captures a
#: worker task's own records for the length of a block and restores the logger (its docstring)
LOG_CAPTURE = PACKAGE / "logcapture.py"


def test_only_the_cli_configures_logging():
    configuring = {"basicConfig", "dictConfig", "fileConfig", "addHandler", "setLevel"}
    offenders = {
        str(p.relative_to(ROOT)): sorted(configuring & set(_calls(p)))
        for p in _modules(PACKAGE)
        if p.name != "cli.py" and p != LOG_CAPTURE and configuring & set(_calls(p))
    }
    assert not offenders, offenders
    # the capture configures nothing that outlives it: what it adds it removes, what it sets
    # it sets back
    calls = _calls(LOG_CAPTURE)
    assert calls.count("addHandler") == calls.count("removeHandler") == 1
    assert calls.count("setLevel") == 3  # the handler's, the logger's, and the logger's restored
    assert not {"basicConfig", "dictConfig", "fileConfig"} & set(calls)


def test_only_cluster_py_creates_clients_or_clusters():
    creating = {"Client", "LocalCluster", "KubeCluster", "new_cluster", "Cluster", "Gateway"}
    offenders = {
        str(p.relative_to(ROOT)): sorted(creating & set(_calls(p)))
        for p in _modules(PACKAGE)
        if p.name != "cluster.py" and creating & set(_calls(p))
    }
    assert not offenders, offenders


#: Markdown files the twin writes into its output folder (cited as where to find them).
TWIN_OUTPUT_DOCS = ("OUT/truth/README.md", "truth/README.md")


def test_every_cited_markdown_file_exists():
    missing = {}
    for path in _modules(PACKAGE):
        for cited in set(re.findall(r"[A-Za-z0-9_./-]+\.md\b", path.read_text())):
            if cited in TWIN_OUTPUT_DOCS:
                continue
            if not any((base / cited).is_file() for base in (ROOT, ROOT / "docs")):
                missing.setdefault(cited, []).append(path.name)
    assert not missing, f"cited but not in the repository: {missing}"


def test_the_checks_see_a_violation(tmp_path):
    """Relative imports are resolved, so a stage's helper importing another stage is caught."""
    probe = tmp_path / "_mosaic_probe.py"
    probe.write_text(
        "from .adjust import STAGE\nfrom ..kernels import sbas\nfrom . import _mosaic_x\n"
    )
    module = "ncp_subsidence.stages._mosaic_probe"
    names = _imports(probe, module)
    assert {"ncp_subsidence.stages.adjust", "ncp_subsidence.kernels.sbas"} <= names
    assert _foreign_stages(probe, module) == {
        "ncp_subsidence.stages.adjust",
        "ncp_subsidence.stages.adjust.STAGE",
    }
