"""No silent twin: a config that sets some sources must set all, or say fill_unset."""

from __future__ import annotations

import pytest

from ncp_subsidence.cli import main
from ncp_subsidence.config import Config
from ncp_subsidence.errors import ConfigError
from ncp_subsidence.sources import check_sources, input_kind, resolve_sources

GNSS = {"kind": "file", "url": "https://example.org/midas.IGS14.txt", "collections": ["gnss"]}


def test_no_source_is_the_twin():
    cfg = Config()
    check_sources(cfg)
    assert input_kind(cfg) == "twin"


def test_partial_sources_are_refused_naming_them_and_the_option():
    cfg = Config.model_validate({"sources": {"gnss": GNSS}})
    assert input_kind(cfg) == "mixed"
    with pytest.raises(ConfigError, match="fill_unset") as info:
        resolve_sources(cfg)
    assert "interferograms" in str(info.value) and "grace" in str(info.value)
    assert "gnss," not in str(info.value)


def test_fill_unset_allows_the_mix():
    cfg = Config.model_validate({"sources": {"gnss": GNSS, "twin": {"fill_unset": True}}})
    check_sources(cfg)
    assert input_kind(cfg) == "mixed"


def test_remote_cluster_refuses_local_paths():
    local = {"kind": "file", "url": "/data/midas.txt", "collections": ["gnss"]}
    cfg = Config.model_validate(
        {
            "sources": {"gnss": local, "twin": {"fill_unset": True}},
            "cluster": {"kind": "address", "address": "tcp://10.0.0.1:8786"},
        }
    )
    with pytest.raises(ConfigError, match=r"'gnss'.*s3:// or https://"):
        check_sources(cfg)
    cfg.sources.gnss.url = "https://example.org/midas.txt"
    check_sources(cfg)


def test_preset_is_real_and_checks(tmp_path, capsys):
    out = tmp_path / "ncp.yaml"
    assert main(["config", "--preset", "ncp", "-o", str(out)]) == 0
    assert main(["config", "--check", str(out)]) == 0
    assert "real inputs" in capsys.readouterr().out
    text = out.read_text()
    for cid in (
        "TELLUS_GRAC-GRFO_MASCON_CRI_GRID_RL06.3_V4",
        "GLDAS_NOAH025_M_2.1",
        "FLDAS_NOAH01_C_GL_M_001",
        "GPM_3IMERGM_07",
        "midas.IGS14.txt",
    ):
        assert cid in text


def test_config_check_refuses_a_mix(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("sources:\n  gnss:\n    kind: file\n    url: https://x/m.txt\n")
    assert main(["config", "--check", str(path)]) == 2
    assert "fill_unset" in capsys.readouterr().err


def test_products_record_input_kind(tiny_run):
    cfg, store = tiny_run
    assert input_kind(cfg) == "twin"
    assert store.root_attrs()["input_kind"] == "twin"
    name = store.record("sbas").datasets[0]
    assert store.open("sbas", None if name == "." else name).attrs["input_kind"] == "twin"
