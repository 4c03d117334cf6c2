"""Credentials inside URLs never reach a log line, an error line or a saved config."""

from __future__ import annotations

import logging

import pytest

from ncp_subsidence.config import load_config, redacted_dump, to_yaml
from ncp_subsidence.io.stores import ProductStore
from ncp_subsidence.redaction import RedactingFilter, redact_text, redact_url, restore_url

SECRET = "s3cr3t-Qw8-do-not-leak"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            f"https://alice:{SECRET}@data.example.org/a.tif",
            "https://alice:***@data.example.org/a.tif",
        ),
        (f"https://{SECRET}@data.example.org/a.tif", "https://***@data.example.org/a.tif"),
        (
            f"https://x.blob.core.windows.net/c/a.tif?sv=2021&se=2026&sig={SECRET}",
            "https://x.blob.core.windows.net/c/a.tif?sv=2021&se=2026&sig=***",
        ),
        (
            f"https://b.s3.amazonaws.com/k.nc?X-Amz-Credential={SECRET}&X-Amz-Signature={SECRET}"
            f"&X-Amz-Security-Token={SECRET}&X-Amz-Expires=3600",
            "https://b.s3.amazonaws.com/k.nc?X-Amz-Credential=***&X-Amz-Signature=***"
            "&X-Amz-Security-Token=***&X-Amz-Expires=3600",
        ),
        (f"https://h/x?token={SECRET}", "https://h/x?token=***"),
        (f"https://h/x?api_key={SECRET}&page=2", "https://h/x?api_key=***&page=2"),
        # nothing secret: returned unchanged, byte for byte
        ("https://h/x?collections=a,b&limit=10", "https://h/x?collections=a,b&limit=10"),
        ("s3://bucket/path/file.tif", "s3://bucket/path/file.tif"),
        ("/local/path/file.tif", "/local/path/file.tif"),
    ],
)
def test_redact_url(url, expected):
    assert redact_url(url) == expected


def test_redact_text_finds_every_url_in_a_sentence():
    text = f"cannot read 'https://u:{SECRET}@h/a.tif' and https://h/b.tif?token={SECRET}: 503"
    out = redact_text(text)
    assert SECRET not in out
    assert "'https://u:***@h/a.tif'" in out and "https://h/b.tif?token=***: 503" in out


def test_log_records_are_redacted_by_the_cli_filter():
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    handler = Keep()
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("ncp_subsidence.test_redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("reading %s", f"https://h/a.tif?token={SECRET}")
        try:
            raise OSError(f"HTTP 503 for https://u:{SECRET}@h/a.tif")
        except OSError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    assert records and all(SECRET not in r for r in records)
    assert "token=***" in records[0]
    assert "https://u:***@h/a.tif" in records[1]


def test_config_dumps_redact_urls_in_sources_and_store():
    cfg = load_config(
        None,
        {
            "sources.gnss": {
                "kind": "file",
                "url": f"https://u:{SECRET}@geodesy.example/midas.txt",
            },
            "sources.grace": {"kind": "file", "url": f"https://h/grace.nc?token={SECRET}"},
        },
    )
    dumped = str(redacted_dump(cfg))
    assert SECRET not in dumped and SECRET not in to_yaml(cfg)
    assert "https://u:***@geodesy.example/midas.txt" in dumped


def test_cli_error_line_is_redacted(tmp_path, capsys):
    from ncp_subsidence.cli import main

    config = tmp_path / "c.yaml"
    config.write_text(
        f"sources:\n  gnss: {{kind: file, url: 'https://u:{SECRET}@127.0.0.1:9/m.txt'}}\n"
    )
    code = main(["config", "--check", str(config)])
    out = capsys.readouterr()
    assert SECRET not in out.out + out.err
    assert code in (0, 1, 2)


@pytest.mark.parametrize(
    ("saved", "originals", "expected"),
    [
        (  # user info and a token, from a glob on the same host
            "https://me:***@h.org/d/b.nc?token=***&v=2",
            ["https://other.org/x?token=no", "https://me:pw@h.org/d/*.nc?token=t0k&v=1"],
            "https://me:pw@h.org/d/b.nc?token=t0k&v=2",
        ),
        ("https://h.org/a.tif", [], "https://h.org/a.tif"),  # nothing masked: unchanged
        ("https://h.org/a.tif?sig=***", ["https://h.org/a.tif"], None),  # nothing to give it back
        ("https://h.org:8443/a?key=***", ["https://h.org/a?key=k"], None),  # another port
    ],
)
def test_restore_url_takes_credentials_back_from_the_config_urls(saved, originals, expected):
    assert restore_url(saved, originals) == expected
    if expected is not None and "***" in saved:
        assert redact_url(expected) == saved


def test_saved_catalogs_hold_no_credential_and_ingest_gets_it_back(tiny_twin, tmp_path, caplog):
    """A source URL with a signature (``?token=``): discovery saves its items without it, the
    store holds it nowhere, and the items ingest loads carry it again from the config."""
    import shutil

    from conftest import twin_config

    from ncp_subsidence.config import SourceOptions
    from ncp_subsidence.errors import DataError
    from ncp_subsidence.io.readers import read_midas_checked
    from ncp_subsidence.pipeline import run_pipeline
    from ncp_subsidence.sources import load_items
    from ncp_subsidence.testing.servers import FileServer

    secret = "s1gn3d-v4lue-0042"
    shutil.copy(tiny_twin.gnss_midas, tmp_path / "midas.IGS14.txt")
    cfg = twin_config(tiny_twin, tmp_path / "store")
    with FileServer(tmp_path, query_token=secret) as srv:
        url = f"{srv.url}/midas.IGS14.txt?token={secret}"
        sources = cfg.sources.model_copy(update={"gnss": SourceOptions(kind="file", url=url)})
        cfg = cfg.model_copy(update={"sources": sources})
        with caplog.at_level(logging.DEBUG, logger="ncp_subsidence"):
            run_pipeline(cfg, ["discover"])
        written = [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
        assert any(p.name == "gnss.json" for p in written)
        assert not [p for p in written if secret in p.read_text(errors="replace")]
        assert secret not in caplog.text and "1 asset URL(s) held a credential" in caplog.text
        store = ProductStore(cfg.store.url)
        (saved,) = load_items(store, "gnss")
        assert saved.assets["data"].href.endswith("?token=***")
        (item,) = load_items(store, "gnss", config=cfg)
        table, _ = read_midas_checked(item.assets["data"].href)
        assert len(table) > 10
        # a config that no longer holds the credential: one clear error, the value not in it
        bare = cfg.sources.model_copy(
            update={"gnss": SourceOptions(kind="file", url=url.split("?")[0])}
        )
        with pytest.raises(DataError, match="sources.gnss.headers") as info:
            load_items(store, "gnss", config=cfg.model_copy(update={"sources": bare}))
        assert secret not in str(info.value)


def test_strip_credentials_copies_only_the_items_that_hold_one():
    """Discovery saves stripped items; the caller's items keep their URLs (those with a
    credential are copied, the rest are saved as they are)."""
    import datetime as dt

    import pystac

    from ncp_subsidence.io.stac import strip_credentials

    def item(name, href):
        i = pystac.Item(name, None, None, dt.datetime(2020, 1, 1), {})
        i.add_asset("data", pystac.Asset(href))
        i.add_asset("meta", pystac.Asset(f"https://h/{name}.json"))
        return i

    secret = item("a", f"https://alice:{SECRET}@data.example.org/a.tif")
    plain = item("b", "https://data.example.org/b.tif")
    out, n = strip_credentials([secret, plain])
    assert n == 1
    assert out[0] is not secret and out[0].assets["data"].href.endswith(
        "alice:***@data.example.org/a.tif"
    )
    assert SECRET in secret.assets["data"].href  # the caller's item is untouched
    assert out[0].assets["meta"].href == "https://h/a.json"
    assert out[1] is plain and out[1].assets["data"].href == "https://data.example.org/b.tif"
