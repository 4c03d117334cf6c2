"""One config resolution: ``load_config``, the CLI and ``run_pipeline`` run the same config.

On the twin, the settings of ``TWIN_SETTING_KEYS`` left unset follow the twin preset
(``synthetic.presets.twin_settings``); explicit settings win; real interferograms keep the
defaults.
"""

from __future__ import annotations

import types

import dask
import pytest
import yaml

from ncp_subsidence import cli
from ncp_subsidence.config import (
    TWIN_SETTING_KEYS,
    Config,
    from_yaml,
    load_config,
    redacted_dump,
    resolve_config,
)
from ncp_subsidence.io.stores import ProductStore
from ncp_subsidence.pipeline import fingerprint, run_pipeline
from ncp_subsidence.synthetic.presets import PRESETS, twin_settings
from ncp_subsidence.testing.stages import RampStage

REAL_FRAME = {"kind": "stac_api", "url": "http://127.0.0.1:1/api", "collections": ["c"]}


def _get(cfg: Config, dotted: str):
    section, name = dotted.split(".")
    return getattr(getattr(cfg, section), name)


@pytest.fixture
def twin_file(tmp_path):
    path = tmp_path / "twin.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "store": {"url": str(tmp_path / "store")},
                "sources": {"twin": {"preset": "tiny"}},
                "mosaic": {"resolution_deg": 0.001},  # explicit: wins over the preset
                "sbas": {"method": "nsbas"},
            }
        )
    )
    return path


def test_twin_setting_keys_are_the_presets():
    for preset in PRESETS:
        assert tuple(twin_settings(preset)) == TWIN_SETTING_KEYS


def test_load_config_equals_what_the_cli_runs(twin_file):
    loaded = load_config(twin_file)
    args = cli.build_parser().parse_args(["run", "-c", str(twin_file)])
    assert cli._load(args) == loaded
    # what run_pipeline uses from the same file given as a plain Config (the Python API)
    assert resolve_config(Config.model_validate(from_yaml(twin_file.read_text()))) == loaded
    # and so the same fingerprints, stage by stage
    plain = Config.model_validate(from_yaml(twin_file.read_text()))
    for name in ("ingest", "mosaic", "hydro", "factors"):
        stage = types.SimpleNamespace(name=name, reads=())
        assert fingerprint(stage, loaded, {}) == fingerprint(stage, resolve_config(plain), {})
    tiny = twin_settings("tiny")
    assert loaded.mosaic.resolution_deg == 0.001  # set in the file
    for key in TWIN_SETTING_KEYS[1:]:
        assert _get(loaded, key) == tiny[key]
    assert loaded.sbas.method == "nsbas"


def test_run_pipeline_records_the_resolved_config(tmp_path):
    url = str(tmp_path / "store")
    with dask.config.set(scheduler="synchronous"):
        run_pipeline(Config.model_validate({"store": {"url": url}}), [RampStage()])
    recorded = ProductStore(url).root_attrs()["config"]
    assert recorded == redacted_dump(load_config(None, {"store.url": url}))
    assert recorded["hydro"]["mode"] == twin_settings("demo")["hydro.mode"]


def test_explicit_settings_win_on_the_command_line(twin_file):
    args = cli.build_parser().parse_args(["run", "-c", str(twin_file), "--set", "hydro.mode=paper"])
    cfg = cli._load(args)
    assert cfg.hydro.mode == "paper"
    assert cfg.hydro.resolution_deg == twin_settings("tiny")["hydro.resolution_deg"]
    demo = cli._load(cli.build_parser().parse_args(["demo", "--preset", "large"]))
    for key, value in twin_settings("large").items():
        assert _get(demo, key) == value


def test_real_interferograms_keep_the_defaults():
    cfg = load_config(None, {"sources.interferograms": {"F1": REAL_FRAME}})
    default = Config()
    for key in TWIN_SETTING_KEYS:
        assert _get(cfg, key) == _get(default, key)


def test_resolution_is_idempotent_and_follows_later_changes():
    plain = Config()
    resolved = resolve_config(plain)
    assert plain == Config()  # not changed in place
    assert resolve_config(resolved) == resolved
    for key in TWIN_SETTING_KEYS:  # filled in, still not set by the user
        section, name = key.split(".")
        assert name not in getattr(resolved, section).model_fields_set
    resolved.sources.twin.preset = "tiny"
    tiny = resolve_config(resolved)
    assert tiny.factors.resolution_deg == twin_settings("tiny")["factors.resolution_deg"]
    resolved.sources.interferograms = {"F1": REAL_FRAME}
    real = resolve_config(resolved)
    for key in TWIN_SETTING_KEYS:
        assert _get(real, key) == _get(Config(), key)
