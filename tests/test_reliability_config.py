"""Reliability: every bad config gives one clear line (field path and value) and exit 2.

The cases are generated from the config models themselves: every bounded field (``ge``, ``le``,
``gt``, ``lt``, ``min_length``, ``max_length``, ``multiple_of``, ``Literal`` choices) of every
section, sub-section and source gets an out-of-bounds value, and every scalar field a value of
the wrong type. Each goes through ``ncp-subsidence config --check`` (in process, via
:func:`ncp_subsidence.cli.main`). An unreachable store goes through ``ncp-subsidence run``.
"""

from __future__ import annotations

import logging
import types
import typing
from typing import Any, Literal

import annotated_types as at
import pytest
import yaml
from pydantic import BaseModel, SecretStr

from ncp_subsidence.cli import main
from ncp_subsidence.config import Config, SourceOptions
from ncp_subsidence.testing.servers import free_port

#: Submodels that are None by default need a minimal valid body to hang a bad field on.
_MINIMAL = {SourceOptions: {"url": "https://example.invalid/stac"}}


def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _submodel(annotation: Any) -> type[BaseModel] | None:
    inner = _strip_optional(annotation)
    return inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None


def _fields(model: type[BaseModel] = Config, prefix: tuple[str, ...] = ()):
    """(path, field info, body of the enclosing sections) for every leaf field of the tree."""
    for name, info in model.model_fields.items():
        path = (*prefix, name)
        sub = _submodel(info.annotation)
        if sub is not None:
            yield from _fields(sub, path)
            continue
        origin = typing.get_origin(info.annotation)
        if origin is dict:
            args = typing.get_args(info.annotation)
            inner = _submodel(args[1]) if len(args) == 2 else None
            if inner is not None:  # e.g. sources.interferograms.<frame>
                yield from _fields(inner, (*path, "F1"))
                continue
        yield path, info


def _bad_values(info: Any) -> list[tuple[str, Any]]:
    """Out-of-bounds values of a field, from its metadata and Literal choices."""
    annotation = _strip_optional(info.annotation)
    is_int = annotation is int
    out: list[tuple[str, Any]] = []
    for meta in info.metadata:
        if isinstance(meta, at.Ge):
            out.append(("ge", meta.ge - 1 if is_int else meta.ge - (abs(meta.ge) or 1.0)))
        elif isinstance(meta, at.Gt):
            out.append(("gt", meta.gt))
        elif isinstance(meta, at.Le):
            out.append(("le", meta.le + 1 if is_int else meta.le + (abs(meta.le) or 1.0)))
        elif isinstance(meta, at.Lt):
            out.append(("lt", meta.lt))
        elif isinstance(meta, at.MultipleOf):
            out.append(("multiple_of", info.default + 1))
        elif isinstance(meta, at.MinLen) and meta.min_length > 0:
            out.append(("min_length", "" if annotation is str else []))
        elif isinstance(meta, at.MaxLen):
            if annotation is str:
                out.append(("max_length", "x" * (meta.max_length + 1)))
            elif typing.get_origin(annotation) is dict:
                out.append(("max_length", {f"k{i}": "v" for i in range(meta.max_length + 1)}))
            else:
                out.append(("max_length", ["x"] * (meta.max_length + 1)))
    literal = annotation
    if typing.get_origin(literal) is list:
        (literal,) = typing.get_args(literal)
        if typing.get_origin(literal) is Literal:
            out.append(("choices", ["not-a-choice"]))
    elif typing.get_origin(literal) is Literal:
        out.append(("choices", "not-a-choice"))
    return out


def _nest(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """The config body that sets ``path`` to ``value`` (with minimal bodies for optional sources)."""
    body: dict[str, Any] = {}
    node: dict[str, Any] = body
    model: type[BaseModel] | None = Config
    entry_of: type[BaseModel] | None = None  # the model of a dict's entries (next part is a key)
    for part in path[:-1]:
        if entry_of is not None:
            node = node.setdefault(part, dict(_MINIMAL.get(entry_of, {})))
            model, entry_of = entry_of, None
            continue
        info = model.model_fields[part]
        if typing.get_origin(info.annotation) is dict:
            node = node.setdefault(part, {})
            entry_of = _submodel(typing.get_args(info.annotation)[1])
            continue
        sub = _submodel(info.annotation)
        node = node.setdefault(part, dict(_MINIMAL.get(sub, {})))
        model = sub
    node[path[-1]] = value
    return body


def _display(path: tuple[str, ...]) -> str:
    return ".".join(path)


BOUNDED = [
    pytest.param(path, kind, value, id=f"{_display(path)}-{kind}")
    for path, info in _fields()
    for kind, value in _bad_values(info)
]

_SCALARS = {int: "not-a-number", float: "not-a-number", bool: "maybe", str: ["a", "list"]}
WRONG_TYPE = [
    pytest.param(path, _SCALARS[_strip_optional(info.annotation)], id=_display(path))
    for path, info in _fields()
    if _strip_optional(info.annotation) in _SCALARS
]


@pytest.fixture(autouse=True)
def _restore_logging():
    """main() installs its handler on the (captured) stderr; put the test's logging back after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("configs")


def _check(directory, capsys, body: dict[str, Any]) -> tuple[int, list[str]]:
    path = directory / "bad.yaml"
    path.write_text(yaml.safe_dump(body))
    code = main(["config", "--check", str(path)])
    err = capsys.readouterr().err
    return code, err.splitlines()


def test_the_walk_covers_every_section():
    sections = {p[0] for p, _ in _fields()}
    assert sections == set(Config.model_fields)
    assert len(BOUNDED) > 100 and len(WRONG_TYPE) > 80
    # sub-sections and optional sources are reached too
    names = {_display(p) for p, _ in _fields()}
    assert {"cluster.gateway.address", "sources.grace.max_items", "sources.twin.seed"} <= names
    assert "sources.interferograms.F1.max_items" in names


@pytest.mark.parametrize(("path", "kind", "value"), BOUNDED)
def test_out_of_bounds_value_is_one_clear_line(config_dir, capsys, path, kind, value):
    code, lines = _check(config_dir, capsys, _nest(path, value))
    assert code == 2
    assert not any("Traceback" in ln for ln in lines)
    assert lines[0].startswith("ncp-subsidence: error: ConfigError:")
    assert "1 invalid field(s)" in lines[0], lines
    (line,) = [ln for ln in lines if ln.startswith("  ")]
    assert line.strip().startswith((_display(path) + ":", _display(path) + ".")), line
    shown = repr(value[0] if kind == "choices" and isinstance(value, list) else value)
    assert (shown[:60] in line) or (len(shown) > 80 and "..." in line), line


@pytest.mark.parametrize(("path", "value"), WRONG_TYPE)
def test_wrong_type_is_one_clear_line(config_dir, capsys, path, value):
    code, lines = _check(config_dir, capsys, _nest(path, value))
    assert code == 2
    detail = [ln for ln in lines if ln.startswith("  ")]
    assert len(detail) >= 1 and all(_display(path) in ln for ln in detail), lines
    assert repr(value) in detail[0]


@pytest.mark.parametrize(
    "body",
    [
        {"sbas": {"methd": "svd"}},
        {"nonsense_section": {}},
        {"sources": {"grace": {"url": "x", "colections": []}}},
        {"cluster": {"gateway": {"adress": "x"}}},
    ],
    ids=["stage-key", "top-level", "source-key", "nested-section-key"],
)
def test_unknown_key_is_one_clear_line(config_dir, capsys, body):
    code, lines = _check(config_dir, capsys, body)
    assert code == 2
    (line,) = [ln for ln in lines if ln.startswith("  ")]
    assert "unknown key" in line


def test_secret_value_of_a_bad_field_is_not_echoed(config_dir, capsys):
    code, lines = _check(
        config_dir, capsys, {"cluster": {"gateway": {"password": ["hunter2-in-a-list"]}}}
    )
    assert code == 2
    assert "cluster.gateway.password" in "\n".join(lines)
    assert "hunter2-in-a-list" not in "\n".join(lines)


def test_secret_fields_exist_in_the_tree():
    secret = [p for p, info in _fields() if _strip_optional(info.annotation) is SecretStr]
    assert ("cluster", "gateway", "password") in secret


def test_unreachable_store_is_one_line_and_nonzero(tmp_path, capsys):
    """An S3 store whose endpoint refuses connections: exit 1, one line naming the store."""
    port = free_port()  # nothing listens there
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "store": {
                    "url": "s3://unreachable-bucket/store",
                    "storage_options": {
                        "endpoint_url": f"http://127.0.0.1:{port}",
                        "key": "k",
                        "secret": "s",
                        "retries": 1,
                        "config_kwargs": {"connect_timeout": 1, "retries": {"max_attempts": 1}},
                    },
                }
            }
        )
    )
    code = main(["run", "--config", str(config), "--stages", "discover", "--workers", "1", "-q"])
    err = capsys.readouterr().err
    assert code == 1
    errors = [ln for ln in err.splitlines() if ln.startswith("ncp-subsidence: error")]
    assert len(errors) == 1, err
    assert "StoreError" in errors[0] and "s3://unreachable-bucket/store" in errors[0]
    assert "Traceback" not in err
