"""Config: YAML round trip, rejection of unknown keys and out-of-range values, redaction."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from ncp_subsidence.config import (
    STAGE_NAMES,
    Config,
    from_yaml,
    load_config,
    redacted_dump,
    to_yaml,
)
from ncp_subsidence.errors import ConfigError


def test_default_yaml_round_trip():
    cfg = Config()
    text = to_yaml(cfg)
    assert Config.model_validate(from_yaml(text)) == cfg


def test_modified_yaml_round_trip(tmp_path):
    cfg = Config()
    cfg.sbas.method = "nsbas"
    cfg.sbas.weights = "fisher"
    cfg.hydro.chunk_cells = 500
    cfg.analysis.volume_epochs = [("2015-01", "2016-01")]
    cfg.sources.interferograms = {
        "F1": {
            "kind": "stac_api",
            "url": "http://127.0.0.1:1/api",
            "collections": ["c"],
            "bbox": (114, 36, 116, 38),
        }
    }
    path = tmp_path / "c.yaml"
    path.write_text(to_yaml(cfg))
    back = load_config(path)
    assert back == cfg
    assert back.sources.interferograms["F1"].bbox == (114.0, 36.0, 116.0, 38.0)


def test_yaml_has_descriptions_as_comments():
    text = to_yaml(Config())
    described = [f for f in Config.model_fields["sbas"].annotation.model_fields.values()]
    for field in described:
        assert field.description
        assert f"# {field.description.split()[0]}" in text


def test_every_field_is_described():
    def walk(model):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            sub = getattr(field.annotation, "model_fields", None)
            if sub is not None:
                walk(field.annotation)

    walk(Config)


def test_one_section_per_stage():
    assert set(STAGE_NAMES) <= set(Config.model_fields)


def test_unknown_key_rejected_with_path_and_value():
    with pytest.raises(ConfigError) as info:
        load_config(overrides={"sbas.methd": "svd"})
    msg = str(info.value)
    assert "sbas.methd" in msg and "unknown key" in msg and "'svd'" in msg


def test_out_of_range_value_rejected_with_path_and_value(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("sbas:\n  rcond: 0.5\nhydro:\n  chunk_cells: 30\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert "sbas.rcond" in msg and "0.5" in msg
    assert "hydro.chunk_cells" in msg and "30" in msg and "multiple of 25" in msg
    assert "2 invalid field(s)" in msg


def test_wrong_type_rejected():
    with pytest.raises(ConfigError, match=r"cluster\.n_workers.*'many'"):
        load_config(overrides={"cluster.n_workers": "many"})


def test_bad_yaml_and_missing_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("sbas: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "absent.yaml")
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(path)


def test_address_cluster_needs_address():
    with pytest.raises(ValidationError, match="needs cluster.address"):
        Config.model_validate({"cluster": {"kind": "address"}})


def test_bbox_order_checked():
    with pytest.raises(ConfigError, match="west<east"):
        load_config(overrides={"sources.grace": {"url": "x", "bbox": [118, 36, 114, 38]}})


def test_secrets_redacted_in_dump_and_yaml():
    cfg = Config.model_validate(
        {
            "store": {
                "url": "s3://b/p",
                "storage_options": {
                    "key": "AKIAVERYSECRET",
                    "secret": "s3cr3tvalue",
                    "endpoint_url": "http://h",
                },
            },
            "cluster": {"gateway": {"password": "hunter2hunter2"}},
            "sources": {
                "grace": {"url": "https://x", "headers": {"Authorization": "Bearer tok3n-abc"}}
            },
        }
    )
    dumped = repr(redacted_dump(cfg)) + to_yaml(cfg)
    for secret in ("AKIAVERYSECRET", "s3cr3tvalue", "hunter2hunter2", "tok3n-abc"):
        assert secret not in dumped
    assert "http://h" in dumped  # non-secret options stay
    assert redacted_dump(cfg)["store"]["storage_options"]["key"] == "***"
    # redact=False writes a file that loads back to the same config, secrets included
    back = Config.model_validate(yaml.safe_load(to_yaml(cfg, redact=False)))
    assert back.sources.grace.headers["Authorization"].get_secret_value() == "Bearer tok3n-abc"
    assert back.cluster.gateway.password.get_secret_value() == "hunter2hunter2"
    assert back.store.storage_options["secret"] == "s3cr3tvalue"
